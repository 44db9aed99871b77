/* SPDX-License-Identifier: Apache-2.0
 *
 * sdk_chunk_test.c: cmocka tests of the SDK's Gather of results that
 * arrive in chunks (GatherRequest.chunked), against an in-process fake
 * Scheduler served by the server side of the transport: chunks of several
 * keys interleaved over several messages are reassembled into the result
 * the future hands out; a bad CRC-32, a gap or a chunk past the size fails
 * that key only, with an error naming it; a holder lost mid-way ends the
 * key with the scheduler's error; inline results are untouched. With
 * direct_to_workers the fake is the holder too (DataService.Fetch): held
 * results come from it, and those it damages, cuts short or refuses come
 * through the scheduler after one warning each, naming the holder and
 * why. Depends on //sdk:taskgrid, //transport:server, //proto:wire, the
 * harness (stderr capture), zlib and cmocka.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "harness.h"
#include "taskgrid/taskgrid.h"
#include "transport/server.h"
#include "wire.h"

#define MIB (1u << 20)

enum { M_SUBMIT, M_GATHER, M_STATUS, M_RELEASE, M_FETCH, M_COUNT };

/* The fake is a scheduler and, for direct_to_workers, the holder too. */
static const tg__method methods[M_COUNT] = {
    {"/taskgrid.v1.Scheduler/Submit", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Gather", TG__SERVER_STREAM},
    {"/taskgrid.v1.Scheduler/Status", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Release", TG__UNARY},
    {"/taskgrid.v1.DataService/Fetch", TG__SERVER_STREAM},
};

typedef struct fake {
    tg__server *srv;
    pthread_t thread;
    char addr[64];
    char holder[64]; /* its data address, "127.0.0.1:PORT" */
    pthread_mutex_t mu;
    size_t ngathers, nchunked; /* Gather calls; those with chunked set */
    size_t ndeferred;          /* those with defer_held set */
    size_t nfetches;           /* DataService.Fetch calls */
    char relayed[512];         /* keys gathered again without defer_held */
} fake;

/* The result bytes of the tests: a pattern, so misplaced chunks show. */
static uint8_t *pattern(size_t n)
{
    uint8_t *b = malloc(n ? n : 1);

    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 7 + (i >> 12));
    return b;
}

static void send_msg(tg__scall *c, const taskgrid_v1_GatherResponse *r)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(
        tg__wire_encode(taskgrid_v1_GatherResponse_fields, r, &buf, &len),
        TG_OK);
    assert_int_equal(tg__scall_send(c, buf, len), TG_OK);
}

static void reply(tg__scall *c, const pb_msgdesc_t *f, const void *msg)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(tg__wire_encode(f, msg, &buf, &len), TG_OK);
    tg__scall_reply(c, buf, len);
}

static taskgrid_v1_TaskResult header(const char *key, size_t size)
{
    taskgrid_v1_TaskResult r;

    memset(&r, 0, sizeof(r));
    r.key = tg_pbbuf_str(key);
    r.state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
    r.codec = tg_pbbuf_str("raw");
    r.size = size;
    r.attempt = 1;
    return r;
}

/* Chunk `i` (of MIB bytes) of `data`. */
static taskgrid_v1_DataChunk chunk(const char *key, const uint8_t *data,
                                   size_t size, size_t i)
{
    taskgrid_v1_DataChunk c;
    size_t off = i * MIB, n = size - off < MIB ? size - off : MIB;

    memset(&c, 0, sizeof(c));
    c.key = tg_pbbuf_str(key);
    c.offset = off;
    c.data = tg_pbbuf_mem(data + off, n);
    c.size = size;
    c.codec = tg_pbbuf_str("raw");
    c.crc32 = (uint32_t)crc32_z(0L, data + off, n);
    return c;
}

enum { BIG = 3 * MIB + 1234, BIG2 = 2 * MIB + 99, BAD = 2 * MIB + 5 };

/* The script of the first Gather: see the file comment. */
static void script_many(tg__scall *c)
{
    uint8_t *big = pattern(BIG), *big2 = pattern(BIG2), *bad = pattern(BAD);
    taskgrid_v1_TaskResult rs[8];
    taskgrid_v1_DataChunk cs[6];
    taskgrid_v1_GatherResponse r;

    memset(&r, 0, sizeof(r));
    rs[0] = header("big", BIG);
    rs[1] = header("big2", BIG2);
    rs[2] = header("small", 0);
    rs[2].codec = tg_pbbuf_str("json");
    rs[2].data = tg_pbbuf_str("42");
    rs[2].size = 2;
    rs[3] = header("bad", BAD);
    rs[4] = header("gap", BAD);
    rs[5] = header("lost", BAD);
    rs[6] = header("empty", 0);
    rs[7] = header("past", 10);
    r.results = rs;
    r.results_count = 8;
    send_msg(c, &r);

    memset(&r, 0, sizeof(r));
    cs[0] = chunk("big", big, BIG, 0);
    cs[1] = chunk("big2", big2, BIG2, 0);
    cs[2] = chunk("bad", bad, BAD, 0);
    cs[3] = chunk("gap", bad, BAD, 0);
    cs[4] = chunk("lost", bad, BAD, 0);
    cs[5] = chunk("past", bad, 10, 0);
    cs[5].data = tg_pbbuf_mem(bad, 1000); /* says 10 bytes, carries 1000 */
    cs[5].crc32 = (uint32_t)crc32_z(0L, bad, 1000);
    r.chunks = cs;
    r.chunks_count = 6;
    send_msg(c, &r);

    memset(&r, 0, sizeof(r));
    cs[0] = chunk("big2", big2, BIG2, 1);
    cs[1] = chunk("big", big, BIG, 1);
    cs[2] = chunk("bad", bad, BAD, 1);
    cs[2].crc32 ^= 1;
    cs[3] = chunk("gap", bad, BAD, 2);
    r.chunks = cs;
    r.chunks_count = 4;
    send_msg(c, &r);

    memset(&r, 0, sizeof(r));
    memset(rs, 0, sizeof(rs[0]));
    rs[0].key = tg_pbbuf_str("lost");
    rs[0].state = taskgrid_v1_TaskState_TASK_STATE_ERRED;
    rs[0].has_error = true;
    rs[0].error.type = tg_pbbuf_str("tg.DataLost");
    rs[0].error.message =
        tg_pbbuf_str("the result was held only on worker w1, which was lost");
    r.results = rs;
    r.results_count = 1;
    cs[0] = chunk("big", big, BIG, 2);
    cs[1] = chunk("big", big, BIG, 3);
    cs[2] = chunk("bad", bad, BAD, 2);
    cs[3] = chunk("big2", big2, BIG2, 2);
    cs[4] = chunk("lost", bad, BAD, 1);
    r.chunks = cs;
    r.chunks_count = 5;
    send_msg(c, &r);
    tg__scall_finish(c, TG_OK, "");
    free(big);
    free(big2);
    free(bad);
}

/* One message: the header of `key` (`size` bytes of `b`) and its first
 * two chunks. */
static void send_two_chunks(tg__scall *c, const char *key, const uint8_t *b,
                            size_t size)
{
    taskgrid_v1_TaskResult h = header(key, size);
    taskgrid_v1_DataChunk cs[2] = {chunk(key, b, size, 0),
                                   chunk(key, b, size, 1)};
    taskgrid_v1_GatherResponse r;

    memset(&r, 0, sizeof(r));
    r.results = &h;
    r.results_count = 1;
    r.chunks = cs;
    r.chunks_count = 2;
    send_msg(c, &r);
}

/* "short": two of its three chunks, then the end of the call. */
static void script_short(tg__scall *c)
{
    uint8_t *b = pattern(BIG);

    send_two_chunks(c, "short", b, BIG);
    tg__scall_finish(c, TG_OK, "");
    free(b);
}

/* ---- direct_to_workers: the keys "direct-*" ---- */

enum { DSZ = MIB + 77 };

/* A deferred Gather: every key held, by the fake's own data service;
 * "direct-second" first by an address nobody listens on. */
static void script_deferred(fake *f, tg__scall *c,
                            const taskgrid_v1_GatherRequest *g)
{
    char *one[1] = {f->holder}, *two[2] = {"127.0.0.1:1", f->holder};
    taskgrid_v1_TaskResult rs[8];
    taskgrid_v1_GatherResponse r;

    assert_true(g->keys_count <= 8);
    memset(&r, 0, sizeof(r));
    for (pb_size_t i = 0; i < g->keys_count; i++) {
        bool second = strcmp(g->keys[i], "direct-second") == 0;

        rs[i] = header(g->keys[i], DSZ);
        rs[i].held = true;
        rs[i].holders = second ? two : one;
        rs[i].holders_count = second ? 2 : 1;
    }
    r.results = rs;
    r.results_count = g->keys_count;
    send_msg(c, &r);
    tg__scall_finish(c, TG_OK, "");
}

/* A Gather of direct-* keys without defer_held: relayed, whole. */
static void script_relay(fake *f, tg__scall *c,
                         const taskgrid_v1_GatherRequest *g)
{
    uint8_t *b = pattern(DSZ);

    for (pb_size_t i = 0; i < g->keys_count; i++) {
        send_two_chunks(c, g->keys[i], b, DSZ); /* all of its DSZ bytes */
        pthread_mutex_lock(&f->mu);
        snprintf(f->relayed + strlen(f->relayed),
                 sizeof(f->relayed) - strlen(f->relayed), "%s ", g->keys[i]);
        pthread_mutex_unlock(&f->mu);
    }
    tg__scall_finish(c, TG_OK, "");
    free(b);
}

static void send_chunk(tg__scall *c, const taskgrid_v1_DataChunk *ch)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(
        tg__wire_encode(taskgrid_v1_DataChunk_fields, ch, &buf, &len), TG_OK);
    assert_int_equal(tg__scall_send(c, buf, len), TG_OK);
}

/* DataService.Fetch: whole for "direct-good" and "direct-second";
 * damaged, short or refused for the others. */
static void serve_fetch(fake *f, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_FetchRequest fr;
    uint8_t *b = pattern(DSZ + 1000); /* room for "direct-past" */
    taskgrid_v1_DataChunk c0, c1;
    char key[64];

    assert_int_equal(
        tg__wire_decode(taskgrid_v1_FetchRequest_fields, &fr, req, len), TG_OK);
    snprintf(key, sizeof(key), "%.*s", (int)fr.key.len,
             (const char *)fr.key.ptr);
    pthread_mutex_lock(&f->mu);
    f->nfetches++;
    pthread_mutex_unlock(&f->mu);
    c0 = chunk(key, b, DSZ, 0);
    c1 = chunk(key, b, DSZ, 1);
    if (strcmp(key, "direct-missing") == 0) {
        tg__scall_finish(c, TG_ENOTFOUND, "no result 'direct-missing' here");
        free(b);
        return;
    }
    if (strcmp(key, "direct-crc") == 0)
        c1.crc32 ^= 1;
    if (strcmp(key, "direct-past") == 0)
        c1.data.len = 1000; /* 77 bytes were left */
    send_chunk(c, &c0);
    if (strcmp(key, "direct-short") != 0)
        send_chunk(c, &c1);
    tg__scall_finish(c, TG_OK, "");
    free(b);
}

static void on_gather(fake *f, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_GatherRequest g;

    assert_int_equal(
        tg__wire_decode(taskgrid_v1_GatherRequest_fields, &g, req, len), TG_OK);
    pthread_mutex_lock(&f->mu);
    f->ngathers++;
    f->nchunked += g.chunked;
    f->ndeferred += g.defer_held;
    pthread_mutex_unlock(&f->mu);
    if (g.defer_held)
        script_deferred(f, c, &g);
    else if (g.keys_count > 0 && strncmp(g.keys[0], "direct-", 7) == 0)
        script_relay(f, c, &g);
    else if (g.keys_count > 0 && strcmp(g.keys[0], "short") == 0)
        script_short(c);
    else
        script_many(c);
    tg__wire_release(taskgrid_v1_GatherRequest_fields, &g);
}

static void on_call(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len)
{
    fake *f = ud;

    if (method == M_GATHER) {
        on_gather(f, c, req, len);
    } else if (method == M_FETCH) {
        serve_fetch(f, c, req, len);
    } else if (method == M_SUBMIT) {
        taskgrid_v1_SubmitRequest s;
        taskgrid_v1_SubmitResponse r;

        assert_int_equal(
            tg__wire_decode(taskgrid_v1_SubmitRequest_fields, &s, req, len),
            TG_OK);
        memset(&r, 0, sizeof(r));
        r.accepted = s.tasks_count;
        reply(c, taskgrid_v1_SubmitResponse_fields, &r);
        tg__wire_release(taskgrid_v1_SubmitRequest_fields, &s);
    } else if (method == M_STATUS) {
        taskgrid_v1_StatusResponse r;

        memset(&r, 0, sizeof(r));
        reply(c, taskgrid_v1_StatusResponse_fields, &r);
    } else {
        taskgrid_v1_ReleaseResponse r;

        memset(&r, 0, sizeof(r));
        reply(c, taskgrid_v1_ReleaseResponse_fields, &r);
    }
}

static void on_done(void *ud, tg__scall *c)
{
    (void)ud;
    (void)c;
}

static const tg__server_ops ops = {on_call, NULL, on_done, NULL};

static void *run(void *arg)
{
    tg__server_run(((fake *)arg)->srv);
    return NULL;
}

static int setup(void **state)
{
    fake *f = calloc(1, sizeof(*f));
    tg__server_opts o = {"tcp://127.0.0.1:0", NULL, 0, 10};

    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    assert_int_equal(tg__server_new(&f->srv, &o, methods, M_COUNT, &ops, f),
                     TG_OK);
    snprintf(f->addr, sizeof(f->addr), "tcp://127.0.0.1:%d",
             tg__server_port(f->srv));
    snprintf(f->holder, sizeof(f->holder), "127.0.0.1:%d",
             tg__server_port(f->srv));
    assert_int_equal(pthread_create(&f->thread, NULL, run, f), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fake *f = *state;

    tg__server_stop(f->srv);
    pthread_join(f->thread, NULL);
    tg__server_free(f->srv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static tg_client *connect_fake(fake *f, bool direct)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;

    o.connect_timeout_ms = 5000;
    o.direct_to_workers = direct;
    if (tg_client_connect(&c, f->addr, &o) != TG_OK)
        fail_msg("connect %s: %s", f->addr, tg_error_last());
    return c;
}

/* Futures for `keys` (submitted to the fake, which accepts anything). */
static void submit(tg_client *c, const char *const *keys, size_t n,
                   tg_future **fs)
{
    tg_task_def d[16];

    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        d[i] = (tg_task_def)TG_TASK_DEF_INIT;
        d[i].key = keys[i];
        d[i].func = "tg.noop";
    }
    assert_int_equal(tg_client_submit(c, d, n, fs), TG_OK);
}

static void expect_bytes(tg_future *f, const uint8_t *want, size_t n,
                         const char *codec)
{
    const void *data;
    const char *got_codec;
    size_t len;

    if (tg_future_result(f, &data, &len, &got_codec) != TG_OK)
        fail_msg("%s: %s", tg_future_key(f), tg_error_last());
    assert_int_equal(len, n);
    assert_true(n == 0 || memcmp(data, want, n) == 0);
    assert_string_equal(got_codec, codec);
}

static void expect_error(tg_future *f, const char *type, const char *text)
{
    const void *data;
    const char *t, *m, *tb;
    size_t len;
    char key[64];

    assert_int_equal(tg_future_state(f), TG_TASK_ERRED);
    assert_int_equal(tg_future_result(f, &data, &len, NULL), TG_ETASK);
    snprintf(key, sizeof(key), "'%s'", tg_future_key(f));
    if (strstr(tg_error_last(), key) == NULL)
        fail_msg("the error does not name %s: %s", key, tg_error_last());
    assert_int_equal(tg_future_error(f, &t, &m, &tb), TG_OK);
    assert_string_equal(t, type);
    if (strstr(m, text) == NULL)
        fail_msg("%s: message '%s' does not say '%s'", tg_future_key(f), m,
                 text);
    if (strcmp(type, "tg.DataCorrupt") == 0 && strstr(m, key) == NULL)
        fail_msg("%s: message '%s' does not name the key", key, m);
}

static void test_sdk_chunks__reassembled_and_checked(void **state)
{
    static const char *const keys[] = {"big", "big2", "small", "bad",
                                       "gap", "lost", "empty", "past"};
    enum { N = sizeof(keys) / sizeof(keys[0]) };
    fake *f = *state;
    tg_client *c = connect_fake(f, false);
    tg_future *fs[N];
    uint8_t *big = pattern(BIG), *big2 = pattern(BIG2);
    int rc;

    submit(c, keys, N, fs);
    rc = tg_client_gather(c, fs, N, 10000);
    assert_int_equal(rc, TG_OK);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->ngathers, 1);
    assert_int_equal(f->nchunked, 1);
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < N; i++)
        assert_true(tg_future_done(fs[i]));
    expect_bytes(fs[0], big, BIG, "raw");
    expect_bytes(fs[1], big2, BIG2, "raw");
    expect_bytes(fs[2], (const uint8_t *)"42", 2, "json");
    expect_error(fs[3], "tg.DataCorrupt",
                 "CRC-32 mismatch in the chunk at "
                 "offset 1048576");
    expect_error(fs[4], "tg.DataCorrupt",
                 "a chunk at offset 2097152 where offset 1048576 was due");
    expect_error(fs[5], "tg.DataLost", "held only on worker w1");
    expect_bytes(fs[6], NULL, 0, "raw");
    expect_error(fs[7], "tg.DataCorrupt",
                 "the chunk at offset 0 (1000 bytes) runs past the size");
    for (size_t i = 0; i < N; i++)
        tg_future_free(fs[i]);
    free(big);
    free(big2);
    tg_client_free(c);
}

static void test_sdk_chunks__stream_ending_mid_result(void **state)
{
    static const char *const keys[] = {"short"};
    fake *f = *state;
    tg_client *c = connect_fake(f, false);
    tg_future *fs[1];

    submit(c, keys, 1, fs);
    assert_int_equal(tg_client_gather(c, fs, 1, 10000), TG_EPROTO);
    assert_non_null(strstr(tg_error_last(), "1 of 1 keys unanswered"));
    assert_false(tg_future_done(fs[0]));
    tg_future_free(fs[0]);
    tg_client_free(c);
}

static void test_sdk_chunks__direct_fetch_checked_with_fallback(void **state)
{
    static const char *const keys[] = {"direct-good",    "direct-second",
                                       "direct-crc",     "direct-past",
                                       "direct-missing", "direct-short"};
    enum { N = sizeof(keys) / sizeof(keys[0]) };
    fake *f = *state;
    tg_client *c = connect_fake(f, true);
    tg_future *fs[N];
    uint8_t *b = pattern(DSZ);
    char path[600], why[700], *warned;
    const char *tmp = getenv("TEST_TMPDIR");
    int rc;

    snprintf(path, sizeof(path), "%s/sdk_direct.log", tmp ? tmp : "/tmp");
    submit(c, keys, N, fs);
    th_capture_begin(path);
    rc = tg_client_gather(c, fs, N, 10000);
    warned = th_capture_end();
    if (rc != TG_OK)
        fail_msg("gather: %s (client log: %s)", tg_error_last(), warned);
    /* Nothing lost: every key has its bytes, fetched or relayed. */
    for (size_t i = 0; i < N; i++)
        expect_bytes(fs[i], b, DSZ, "raw");
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->ndeferred, 1);
    assert_int_equal(f->ngathers, 2);
    assert_int_equal(f->nfetches, N);
    /* Only those no holder delivered went through the scheduler. */
    assert_string_equal(f->relayed, "direct-crc direct-past direct-missing "
                                    "direct-short ");
    pthread_mutex_unlock(&f->mu);
    /* One warning each, naming the holder and why. */
    assert_int_equal(th_count(warned, "direct_to_workers"), 4);
    assert_int_equal(th_count(warned, "'direct-good'"), 0);
    assert_int_equal(th_count(warned, "'direct-second'"), 0);
    snprintf(why, sizeof(why),
             "result 'direct-crc' (1048653 bytes): holder %s: CRC-32 "
             "mismatch in the chunk at offset 1048576; getting it through "
             "the scheduler instead",
             f->holder);
    assert_int_equal(th_count(warned, why), 1);
    assert_int_equal(th_count(warned, "sent a chunk of 1000 bytes at offset "
                                      "1048576, past the end"),
                     1);
    assert_int_equal(th_count(warned, "NOT_FOUND: no result 'direct-missing' "
                                      "here"),
                     1);
    assert_int_equal(th_count(warned, "the stream ended after 1048576 of "
                                      "1048653 bytes"),
                     1);
    for (size_t i = 0; i < N; i++)
        tg_future_free(fs[i]);
    free(warned);
    free(b);
    tg_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sdk_chunks__reassembled_and_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_chunks__stream_ending_mid_result, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_chunks__direct_fetch_checked_with_fallback, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
