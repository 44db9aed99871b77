/* SPDX-License-Identifier: Apache-2.0
 *
 * dataplane_test.c: a real taskgrid-scheduler (plaintext, loopback) and a
 * fake worker written here that speaks WorkerLink raw: it registers with
 * a data address, reports a result held in its (pretend) store, and
 * answers the scheduler's uploads with chunks. A client speaking the
 * Scheduler service raw gathers it: chunked=true gets the TaskResult then
 * the relayed chunks, chunked=false the bytes inline (or tg.ResultTooLarge
 * past the message limit); a dependent's assignment names the holder; a
 * release frees the result on the worker; a holder answering `missing`,
 * lost mid-upload or sending a bad chunk ends the key with tg.DataLost
 * (for that gather: a result lost with its holder is computed again);
 * a worker whose memory report says paused gets no new task until it
 * reports unpaused, and Status shows its report. This proves the
 * scheduler's relay without the real worker. Every wait is bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "harness.h"
#include "methods.h"
#include "transport/client.h"
#include "wire.h"

#define WAIT_MS 10000

static char addr[256];
static th_proc sched = TH_PROC_NONE;

/* ---- bytes on the wire ---- */

static void send_msg(tg__cstream *st, const pb_msgdesc_t *f, const void *m)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(tg__wire_encode(f, m, &buf, &len), TG_OK);
    assert_int_equal(tg__cstream_send(st, buf, len, WAIT_MS), TG_OK);
    free(buf);
}

static int unary(tg__chan *ch, const char *method, const pb_msgdesc_t *f,
                 const void *req, const pb_msgdesc_t *rf, void *resp)
{
    uint8_t *buf, *out = NULL;
    size_t len, olen = 0;
    int rc;

    assert_int_equal(tg__wire_encode(f, req, &buf, &len), TG_OK);
    rc = tg__chan_unary(ch, method, buf, len, &out, &olen, WAIT_MS);
    free(buf);
    if (rc == TG_OK)
        assert_int_equal(tg__wire_decode(rf, resp, out, olen), TG_OK);
    free(out); /* the responses used here keep no pointer into it */
    return rc;
}

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(i * 131 + (i >> 9));
}

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* ---- the fake worker ---- */

typedef struct fake {
    tg__chan *ch;
    tg__cstream *st;
    uint64_t inline_limit;
    bool hello;
    /* What the scheduler asked, as it came (copied out). */
    char assigned[8][64];
    size_t nassigned;
    char dep_holder[64]; /* holders[0] of the first held dep seen */
    uint64_t dep_size;
    uint64_t upload_id[64];
    char upload_key[64][64];
    uint64_t upload_off[64], upload_len[64]; /* the range asked */
    size_t nuploads;
    char freed[8][64];
    size_t nfreed;
} fake;

static void copy_key(char dst[64], tg_pbbuf b)
{
    assert_true(b.len < 64);
    memcpy(dst, b.ptr, b.len);
    dst[b.len] = '\0';
}

/* Receive one SchedulerMessage within `ms` and note what it asks; false
 * if none came. */
static bool fake_pump_within(fake *f, int64_t ms)
{
    taskgrid_v1_SchedulerMessage m;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tg__cstream_recv(f->st, &buf, &len, ms);

    if (rc == TG_ETIMEDOUT)
        return false;
    assert_int_equal(rc, TG_OK);
    assert_non_null(buf);
    assert_int_equal(
        tg__wire_decode(taskgrid_v1_SchedulerMessage_fields, &m, buf, len),
        TG_OK);
    if (m.worker_name.len > 0) {
        f->hello = true;
        f->inline_limit = m.inline_limit;
    }
    for (pb_size_t i = 0; i < m.assign_count; i++) {
        const taskgrid_v1_Assignment *a = &m.assign[i];
        assert_true(f->nassigned < 8);
        copy_key(f->assigned[f->nassigned++], a->key);
        for (pb_size_t d = 0; d < a->deps_count; d++) {
            if (a->deps[d].holders_count == 0)
                continue;
            assert_int_equal(a->deps[d].data.len, 0);
            snprintf(f->dep_holder, sizeof(f->dep_holder), "%s",
                     a->deps[d].holders[0]);
            f->dep_size = a->deps[d].size;
        }
    }
    for (pb_size_t i = 0; i < m.upload_count; i++) {
        assert_true(f->nuploads < 64);
        f->upload_id[f->nuploads] = m.upload[i].id;
        f->upload_off[f->nuploads] = m.upload[i].offset;
        f->upload_len[f->nuploads] = m.upload[i].length;
        copy_key(f->upload_key[f->nuploads++], m.upload[i].key);
    }
    for (pb_size_t i = 0; i < m.free_count; i++) {
        assert_true(f->nfreed < 8);
        snprintf(f->freed[f->nfreed++], 64, "%s", m.free[i]);
    }
    tg__wire_release(taskgrid_v1_SchedulerMessage_fields, &m);
    free(buf);
    return true;
}

static void fake_pump(fake *f)
{
    assert_true(fake_pump_within(f, WAIT_MS));
}

static fake *fake_start(const char *name, const char *data_address)
{
    taskgrid_v1_WorkerMessage m = {0};
    char *funcs[] = {"fake.big"};
    fake *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(tg__chan_open(&f->ch, addr, NULL, 0), TG_OK);
    assert_int_equal(tg__cstream_open(&f->st, f->ch, TG_METHOD_CONNECT, 0),
                     TG_OK);
    m.has_registration = true;
    m.registration.name = tg_pbbuf_str(name);
    m.registration.nthreads = 4;
    m.registration.functions_count = 1;
    m.registration.functions = funcs;
    m.registration.data_address = tg_pbbuf_str(data_address);
    send_msg(f->st, taskgrid_v1_WorkerMessage_fields, &m);
    return f;
}

static void fake_free(fake *f)
{
    tg__cstream_free(f->st);
    tg__chan_close(f->ch);
    free(f);
}

static void fake_wait_hello(fake *f)
{
    while (!f->hello)
        fake_pump(f);
}

/* Wait until `key` was assigned to `f` at least `n` times. */
static void fake_wait_assigned_n(fake *f, const char *key, size_t n)
{
    for (;;) {
        size_t k = 0;
        for (size_t i = 0; i < f->nassigned; i++)
            if (strcmp(f->assigned[i], key) == 0)
                k++;
        if (k >= n)
            return;
        fake_pump(f);
    }
}

static void fake_wait_assigned(fake *f, const char *key)
{
    fake_wait_assigned_n(f, key, 1);
}

/* The id of the first upload of `key` not taken yet (then taken), and
 * its range in *off and *len (NULL: not wanted); 0 if none came within
 * `ms`. */
static uint64_t fake_next_upload(fake *f, const char *key, uint64_t *off,
                                 uint64_t *len, int64_t ms)
{
    for (;;) {
        for (size_t i = 0; i < f->nuploads; i++) {
            if (strcmp(f->upload_key[i], key) == 0) {
                f->upload_key[i][0] = '\0';
                if (off != NULL)
                    *off = f->upload_off[i];
                if (len != NULL)
                    *len = f->upload_len[i];
                return f->upload_id[i];
            }
        }
        if (!fake_pump_within(f, ms))
            return 0;
    }
}

static uint64_t fake_wait_upload(fake *f, const char *key)
{
    uint64_t id = fake_next_upload(f, key, NULL, NULL, WAIT_MS);

    assert_true(id != 0);
    return id;
}

static void fake_wait_freed(fake *f, const char *key)
{
    for (;;) {
        for (size_t i = 0; i < f->nfreed; i++)
            if (strcmp(f->freed[i], key) == 0)
                return;
        fake_pump(f);
    }
}

/* Report `key` done: held (`size` bytes in the store) or inline. */
static void fake_result(fake *f, const char *key, uint64_t size, bool held)
{
    taskgrid_v1_WorkerMessage m = {0};
    taskgrid_v1_TaskResult r;

    memset(&r, 0, sizeof(r));
    r.key = tg_pbbuf_str(key);
    r.state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
    r.codec = tg_pbbuf_str("raw");
    r.size = size;
    r.held = held;
    r.attempt = 1;
    if (!held)
        r.data = tg_pbbuf_str("42");
    m.results_count = 1;
    m.results = &r;
    send_msg(f->st, taskgrid_v1_WorkerMessage_fields, &m);
}

/* Send chunks [from, to) of the `size`-byte pattern result `key` (its
 * bytes xor `seed`) for upload `id`, `chunk` bytes each, one per
 * message. */
static void fake_chunks_seeded(fake *f, uint64_t id, const char *key,
                               uint64_t size, uint64_t from, uint64_t to,
                               size_t chunk, uint8_t seed)
{
    uint8_t *buf = malloc(chunk);

    assert_non_null(buf);
    for (uint64_t off = from; off < to; off += chunk) {
        size_t n = (size_t)(to - off < chunk ? to - off : chunk);
        taskgrid_v1_WorkerMessage m = {0};
        taskgrid_v1_DataChunk c;

        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(off + i) ^ seed;
        memset(&c, 0, sizeof(c));
        c.key = tg_pbbuf_str(key);
        c.offset = off;
        c.data = tg_pbbuf_mem(buf, n);
        c.size = size;
        c.codec = tg_pbbuf_str("raw");
        c.crc32 = crc_of(buf, n);
        c.upload = id;
        m.chunks_count = 1;
        m.chunks = &c;
        send_msg(f->st, taskgrid_v1_WorkerMessage_fields, &m);
    }
    free(buf);
}

static void fake_chunks(fake *f, uint64_t id, const char *key, uint64_t size,
                        uint64_t from, uint64_t to, size_t chunk)
{
    fake_chunks_seeded(f, id, key, size, from, to, chunk, 0);
}

/* Answer the next upload of `key` asked within `ms` with exactly the
 * range asked, of the pattern xor `seed`. Returns the range's end (0 if
 * none was asked); *off (may be NULL) = its start. */
static uint64_t fake_serve(fake *f, const char *key, uint64_t size,
                           uint8_t seed, uint64_t *off, int64_t ms)
{
    uint64_t from, len, to;
    uint64_t id = fake_next_upload(f, key, &from, &len, ms);

    if (id == 0)
        return 0;
    to = len == 0 || len > size - from ? size : from + len;
    fake_chunks_seeded(f, id, key, size, from, to, TG_PROTO_CHUNK_MAX, seed);
    if (off != NULL)
        *off = from;
    return to;
}

static void fake_missing(fake *f, const char *key)
{
    taskgrid_v1_WorkerMessage m = {0};
    char *keys[] = {(char *)key};

    m.missing_count = 1;
    m.missing = keys;
    send_msg(f->st, taskgrid_v1_WorkerMessage_fields, &m);
}

/* ---- the client ---- */

static void submit(tg__chan *ch, const char *key, const char *dep)
{
    taskgrid_v1_SubmitRequest req = {0};
    taskgrid_v1_SubmitResponse resp;
    taskgrid_v1_TaskSpec t;
    char *deps[] = {(char *)dep};

    memset(&t, 0, sizeof(t));
    t.key = tg_pbbuf_str(key);
    t.func = tg_pbbuf_str("fake.big");
    if (dep != NULL) {
        t.deps_count = 1;
        t.deps = deps;
    }
    req.tasks_count = 1;
    req.tasks = &t;
    assert_int_equal(unary(ch, TG_METHOD_SUBMIT,
                           taskgrid_v1_SubmitRequest_fields, &req,
                           taskgrid_v1_SubmitResponse_fields, &resp),
                     TG_OK);
}

static void release(tg__chan *ch, const char *key)
{
    taskgrid_v1_ReleaseRequest req = {0};
    taskgrid_v1_ReleaseResponse resp;
    char *keys[] = {(char *)key};

    req.keys_count = 1;
    req.keys = keys;
    assert_int_equal(unary(ch, TG_METHOD_RELEASE,
                           taskgrid_v1_ReleaseRequest_fields, &req,
                           taskgrid_v1_ReleaseResponse_fields, &resp),
                     TG_OK);
}

/* Cancel `keys` (and what depends on them). @return how many were
 * cancelled. */
static uint32_t cancel(tg__chan *ch, char **keys, size_t n)
{
    taskgrid_v1_CancelRequest req = {0};
    taskgrid_v1_CancelResponse resp;

    req.keys_count = (pb_size_t)n;
    req.keys = keys;
    assert_int_equal(unary(ch, TG_METHOD_CANCEL,
                           taskgrid_v1_CancelRequest_fields, &req,
                           taskgrid_v1_CancelResponse_fields, &resp),
                     TG_OK);
    return resp.cancelled;
}

/* What one Gather of one key brought. */
typedef struct gathered {
    size_t nresults;
    int state[4]; /* of each TaskResult, in order */
    uint64_t size[4];
    size_t inline_len[4];
    char err_type[64];
    char err_message[512];
    uint8_t *bytes; /* inline data, or the chunks reassembled */
    uint64_t nbytes;
    size_t nchunks;
    int status; /* how the stream ended */
} gathered;

static void gathered_free(gathered *g)
{
    free(g->bytes);
    memset(g, 0, sizeof(*g));
}

static void take_result(gathered *g, const taskgrid_v1_TaskResult *r)
{
    size_t i = g->nresults++;

    assert_true(i < 4);
    g->state[i] = r->state;
    g->size[i] = r->size;
    g->inline_len[i] = r->data.len;
    if (r->state == taskgrid_v1_TaskState_TASK_STATE_MEMORY &&
        r->data.len > 0) {
        g->bytes = malloc(r->data.len);
        assert_non_null(g->bytes);
        memcpy(g->bytes, r->data.ptr, r->data.len);
        g->nbytes = r->data.len;
    }
    if (r->has_error) {
        snprintf(g->err_type, sizeof(g->err_type), "%.*s",
                 (int)r->error.type.len, (const char *)r->error.type.ptr);
        snprintf(g->err_message, sizeof(g->err_message), "%.*s",
                 (int)r->error.message.len, (const char *)r->error.message.ptr);
    }
}

/* A chunk must follow the previous ones of the key, checked as a client
 * does (offset, size, CRC-32). */
static void take_chunk(gathered *g, const taskgrid_v1_DataChunk *c)
{
    assert_int_equal(c->upload, 0);
    assert_true(tg_pbbuf_eq(c->codec, "raw"));
    assert_int_equal(c->offset, g->nbytes);
    assert_true(c->offset + c->data.len <= c->size);
    assert_true(c->data.len <= TG_PROTO_CHUNK_MAX);
    assert_int_equal(crc_of(c->data.ptr, c->data.len), c->crc32);
    if (g->bytes == NULL)
        g->bytes = malloc(c->size ? c->size : 1);
    assert_non_null(g->bytes);
    memcpy(g->bytes + c->offset, c->data.ptr, c->data.len);
    g->nbytes += c->data.len;
    g->nchunks++;
}

/* Open a Gather of `nkeys` keys; the caller serves the worker side
 * meanwhile, then reads the stream. */
static tg__cstream *gather_open_keys(tg__chan *ch, char **keys, size_t nkeys,
                                     bool chunked, uint32_t timeout_ms)
{
    taskgrid_v1_GatherRequest req = {0};
    tg__cstream *st;
    uint8_t *buf;
    size_t len;

    req.keys_count = (pb_size_t)nkeys;
    req.keys = keys;
    req.chunked = chunked;
    req.timeout_ms = timeout_ms;
    assert_int_equal(
        tg__wire_encode(taskgrid_v1_GatherRequest_fields, &req, &buf, &len),
        TG_OK);
    assert_int_equal(
        tg__cstream_open_request(&st, ch, TG_METHOD_GATHER, buf, len, WAIT_MS),
        TG_OK);
    free(buf);
    return st;
}

/* The same for one key (gather_read reads it). */
static tg__cstream *gather_open(tg__chan *ch, const char *key, bool chunked)
{
    char *keys[] = {(char *)key};

    return gather_open_keys(ch, keys, 1, chunked, 0);
}

/* Read one message of the gather within `ms` into `g`. Returns 1 once
 * the stream ended (g->status says how), else 0. */
static int gather_step(tg__cstream *st, gathered *g, int64_t ms)
{
    taskgrid_v1_GatherResponse m;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tg__cstream_recv(st, &buf, &len, ms);

    if (rc == TG_ETIMEDOUT && ms < WAIT_MS)
        return 0;
    if (rc != TG_OK || buf == NULL) {
        g->status = rc;
        return 1;
    }
    assert_int_equal(
        tg__wire_decode(taskgrid_v1_GatherResponse_fields, &m, buf, len),
        TG_OK);
    for (pb_size_t i = 0; i < m.results_count; i++)
        take_result(g, &m.results[i]);
    for (pb_size_t i = 0; i < m.chunks_count; i++)
        take_chunk(g, &m.chunks[i]);
    tg__wire_release(taskgrid_v1_GatherResponse_fields, &m);
    free(buf);
    return 0;
}

/* Read until `nchunks` chunks came (the stream must go on). */
static void gather_read_chunks(tg__cstream *st, gathered *g, size_t nchunks)
{
    while (g->nchunks < nchunks)
        assert_int_equal(gather_step(st, g, WAIT_MS), 0);
}

static void gather_read(tg__cstream *st, gathered *g)
{
    while (gather_step(st, g, WAIT_MS) == 0)
        ;
    tg__cstream_free(st);
}

static void assert_pattern(const gathered *g, uint64_t size)
{
    assert_int_equal(g->nbytes, size);
    for (uint64_t i = 0; i < size; i++)
        if (g->bytes[i] != pattern(i))
            fail_msg("byte %llu differs", (unsigned long long)i);
}

/* A fake worker with a held result `key` of `size` bytes. */
static fake *held_result(tg__chan *ch, const char *name, const char *key,
                         uint64_t size)
{
    fake *f = fake_start(name, "127.0.0.1:1");

    fake_wait_hello(f);
    submit(ch, key, NULL);
    fake_wait_assigned(f, key);
    fake_result(f, key, size, true);
    return f;
}

/* A fake worker with two held results `k1` and `k2` of `size` bytes. */
static fake *held_two(tg__chan *ch, const char *name, const char *k1,
                      const char *k2, uint64_t size)
{
    fake *f = held_result(ch, name, k1, size);

    submit(ch, k2, NULL);
    fake_wait_assigned(f, k2);
    fake_result(f, k2, size, true);
    return f;
}

/* ---- tests ---- */

static void test_dataplane__relay_chunked_and_inline(void **state)
{
    /* Two chunks, and small enough to come inline (the limit is 2 MiB). */
    const uint64_t size = TG_PROTO_CHUNK_MAX + 512345;
    tg__chan *ch;
    gathered g = {0};
    tg__cstream *st;
    uint64_t id;
    fake *f;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = held_result(ch, "fake-a", "big", size);
    assert_int_equal(f->inline_limit, TG_PROTO_INLINE_LIMIT_DEFAULT);

    /* chunked=true: the TaskResult (size, no bytes), then the chunks. */
    st = gather_open(ch, "big", true);
    id = fake_wait_upload(f, "big");
    assert_true(id != 0);
    fake_chunks(f, id, "big", size, 0, size, TG_PROTO_CHUNK_MAX);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_int_equal(g.state[0], taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    assert_int_equal(g.size[0], size);
    assert_int_equal(g.inline_len[0], 0);
    assert_int_equal(g.nchunks, 2);
    assert_pattern(&g, size);
    gathered_free(&g);

    /* chunked=false: the scheduler collects them and answers inline (the
     * worker may send smaller chunks). */
    st = gather_open(ch, "big", false);
    id = fake_wait_upload(f, "big");
    fake_chunks(f, id, "big", size, 0, size, 300000);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_int_equal(g.state[0], taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    assert_int_equal(g.inline_len[0], size);
    assert_int_equal(g.nchunks, 0);
    assert_pattern(&g, size);
    gathered_free(&g);

    /* A dependent's assignment names the holder, with the size and no
     * bytes; the dependent's own small result comes inline. */
    submit(ch, "dep", "big");
    fake_wait_assigned(f, "dep");
    assert_string_equal(f->dep_holder, "127.0.0.1:1");
    assert_int_equal(f->dep_size, size);
    fake_result(f, "dep", 2, false);
    st = gather_open(ch, "dep", true);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.inline_len[0], 2);
    gathered_free(&g);

    /* Released, and needed by no one: the worker is told to drop it. */
    release(ch, "big");
    fake_wait_freed(f, "big");
    fake_free(f);
    tg__chan_close(ch);
}

/* Larger than the message limit: chunked=false answers
 * tg.ResultTooLarge naming both sizes, chunked=true still works. */
static void test_dataplane__too_large_inline(void **state)
{
    const uint64_t size = 3u << 20;
    char max[32];
    tg__chan *ch;
    gathered g = {0};
    tg__cstream *st;
    fake *f;

    (void)state;
    snprintf(max, sizeof(max), "%u", 2u << 20);
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = held_result(ch, "fake-b", "huge", size);
    st = gather_open(ch, "huge", false);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_int_equal(g.state[0], taskgrid_v1_TaskState_TASK_STATE_ERRED);
    assert_string_equal(g.err_type, "tg.ResultTooLarge");
    assert_non_null(strstr(g.err_message, "3145728 bytes"));
    assert_non_null(strstr(g.err_message, max));
    gathered_free(&g);

    st = gather_open(ch, "huge", true);
    fake_chunks(f, fake_wait_upload(f, "huge"), "huge", size, 0, size,
                TG_PROTO_CHUNK_MAX);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_pattern(&g, size);
    gathered_free(&g);
    /* Released before its holder goes: forgotten, not computed again on
     * the next test's worker. */
    release(ch, "huge");
    fake_free(f);
    tg__chan_close(ch);
}

/* The only holder fails the relay before any byte was sent: a bad chunk
 * (the worker is told to drop its copy) or `missing`. The result is
 * computed again, and the gather, which waited, gets it whole; lost
 * allowed_failures (3) times, it ends with the core's tg.KilledWorker. */
static void test_dataplane__holder_failures(void **state)
{
    const uint64_t size = 2 * TG_PROTO_CHUNK_MAX;
    tg__chan *ch;
    gathered g = {0};
    tg__cstream *st;
    uint64_t id;
    fake *f;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = held_result(ch, "fake-c", "k1", size);

    /* A chunk out of place. */
    st = gather_open(ch, "k1", true);
    id = fake_wait_upload(f, "k1");
    fake_chunks(f, id, "k1", size, TG_PROTO_CHUNK_MAX, size,
                TG_PROTO_CHUNK_MAX);
    fake_wait_freed(f, "k1");
    fake_wait_assigned_n(f, "k1", 2);
    fake_result(f, "k1", size, true);
    assert_int_equal(fake_serve(f, "k1", size, 0, NULL, WAIT_MS), size);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_int_equal(g.state[0], taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    assert_pattern(&g, size);
    gathered_free(&g);

    /* `missing`. */
    st = gather_open(ch, "k1", true);
    (void)fake_wait_upload(f, "k1");
    fake_missing(f, "k1");
    fake_wait_assigned_n(f, "k1", 3);
    fake_result(f, "k1", size, true);
    assert_int_equal(fake_serve(f, "k1", size, 0, NULL, WAIT_MS), size);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_pattern(&g, size);
    gathered_free(&g);

    /* The third loss: it cannot be had any more. */
    st = gather_open(ch, "k1", true);
    (void)fake_wait_upload(f, "k1");
    fake_missing(f, "k1");
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_int_equal(g.state[0], taskgrid_v1_TaskState_TASK_STATE_ERRED);
    assert_string_equal(g.err_type, "tg.KilledWorker");
    assert_int_equal(g.nchunks, 0);
    gathered_free(&g);
    release(ch, "k1");
    fake_free(f);
    tg__chan_close(ch);
}

/* Relay `key` (`size` bytes, held on `a`) until one chunk reached the
 * client, then lose `a`: `b` computes it again. Returns the stream. */
static tg__cstream *lose_midway(tg__chan *ch, fake *a, fake *b, const char *key,
                                uint64_t size, gathered *g, uint32_t timeout_ms)
{
    char *keys[] = {(char *)key};
    tg__cstream *st = gather_open_keys(ch, keys, 1, true, timeout_ms);
    uint64_t id = fake_wait_upload(a, key);

    fake_chunks(a, id, key, size, 0, TG_PROTO_CHUNK_MAX, TG_PROTO_CHUNK_MAX);
    gather_read_chunks(st, g, 1);
    assert_int_equal(g->nresults, 1);
    assert_int_equal(g->state[0], taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    fake_free(a);
    if (b != NULL) {
        fake_wait_assigned(b, key);
        fake_result(b, key, size, true);
    }
    return st;
}

/* The holder is lost half-way: the result is computed again on another
 * worker; the same bytes: checked against the chunk already sent (asked
 * for alone, first), then the rest follows, each byte sent once. Other
 * bytes: tg.DataLost saying so, and a new gather gets the new result
 * whole. A gather with a deadline waits no longer than it. */
static void test_dataplane__holder_lost_midway(void **state)
{
    const uint64_t size = 3 * TG_PROTO_CHUNK_MAX + 5;
    uint64_t from;
    gathered g = {0};
    tg__cstream *st;
    tg__chan *ch;
    fake *a, *b, *c;
    int64_t t0;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    a = held_two(ch, "fake-m1", "m1", "m2", size);
    b = fake_start("fake-m2", "127.0.0.1:4");
    fake_wait_hello(b);

    st = lose_midway(ch, a, b, "m1", size, &g, 0);
    assert_int_equal(fake_serve(b, "m1", size, 0, &from, WAIT_MS),
                     TG_PROTO_CHUNK_MAX);
    assert_int_equal(from, 0);
    assert_int_equal(fake_serve(b, "m1", size, 0, &from, WAIT_MS), size);
    assert_int_equal(from, TG_PROTO_CHUNK_MAX);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1); /* no error after the first header */
    assert_int_equal(g.nchunks, 4);
    assert_pattern(&g, size);
    gathered_free(&g);

    /* m2 was lost with `a` too, and is on `b` now: lose `b` half-way,
     * and `c` computes other bytes. */
    fake_wait_assigned(b, "m2");
    fake_result(b, "m2", size, true);
    c = fake_start("fake-m3", "127.0.0.1:5");
    fake_wait_hello(c);
    st = lose_midway(ch, b, c, "m2", size, &g, 0);
    assert_int_equal(fake_serve(c, "m2", size, 0x5a, NULL, WAIT_MS),
                     TG_PROTO_CHUNK_MAX);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 2);
    assert_int_equal(g.state[1], taskgrid_v1_TaskState_TASK_STATE_ERRED);
    assert_string_equal(g.err_type, "tg.DataLost");
    assert_non_null(strstr(g.err_message, "differs from what was already "
                                          "sent"));
    assert_non_null(strstr(g.err_message, "gather it again"));
    gathered_free(&g);
    st = gather_open(ch, "m2", true);
    assert_int_equal(fake_serve(c, "m2", size, 0x5a, NULL, WAIT_MS), size);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(g.nresults, 1);
    assert_int_equal(g.nbytes, size);
    for (uint64_t i = 0; i < size; i++)
        if (g.bytes[i] != (pattern(i) ^ 0x5a))
            fail_msg("byte %llu differs", (unsigned long long)i);
    gathered_free(&g);
    release(ch, "m2");

    /* No worker to compute it again once `c` goes: the gather's deadline
     * ends the wait. (m1, lost with `b` too, is on `c` now.) */
    fake_wait_assigned(c, "m1");
    fake_result(c, "m1", size, true);
    release(ch, "m1");
    submit(ch, "m3", NULL);
    fake_wait_assigned(c, "m3");
    fake_result(c, "m3", size, true);
    t0 = th_now_ms();
    st = lose_midway(ch, c, NULL, "m3", size, &g, 1500);
    gather_read(st, &g);
    assert_int_equal(g.status, TG_ETIMEDOUT);
    assert_true(th_now_ms() - t0 < WAIT_MS);
    assert_int_equal(g.nresults, 1); /* its header only */
    gathered_free(&g);
    char *lost[] = {"m3"};
    assert_int_equal(cancel(ch, lost, 1), 1);
    tg__chan_close(ch);
}

/* A client that does not read: the scheduler asks for the result a range
 * (at most 4 MiB) at a time, in order, and stops asking once a few MiB
 * wait for the client; as the client reads, the rest is asked for. */
static void test_dataplane__ranges_follow_the_stream(void **state)
{
    const uint64_t size = 40 * TG_PROTO_CHUNK_MAX + 123;
    uint64_t end = 0, e, from;
    gathered g = {0};
    tg__cstream *st;
    tg__chan *ch;
    fake *f;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = held_result(ch, "fake-r", "r1", size);
    st = gather_open(ch, "r1", true);
    while ((e = fake_serve(f, "r1", size, 0, &from, 1000)) != 0) {
        assert_int_equal(from, end);
        assert_true(e - from <= 4 * TG_PROTO_CHUNK_MAX);
        end = e;
    }
    assert_true(end >= 4 * TG_PROTO_CHUNK_MAX);
    if (end > 20 * TG_PROTO_CHUNK_MAX)
        fail_msg("%llu bytes asked for a client that reads nothing",
                 (unsigned long long)end);
    while (gather_step(st, &g, 20) == 0) {
        if ((e = fake_serve(f, "r1", size, 0, &from, 20)) != 0) {
            assert_int_equal(from, end);
            assert_true(e - from <= 4 * TG_PROTO_CHUNK_MAX);
            end = e;
        }
    }
    tg__cstream_free(st);
    assert_int_equal(g.status, TG_OK);
    assert_int_equal(end, size);
    assert_pattern(&g, size);
    gathered_free(&g);
    release(ch, "r1");
    fake_free(f);
    tg__chan_close(ch);
}

/* Two held keys in one chunked Gather: both uploads run at once, their
 * chunks interleave on the stream, and each key reassembles on its own;
 * the stream ends once both are complete. */
static void test_dataplane__two_keys_interleaved(void **state)
{
    const uint64_t size = TG_PROTO_CHUNK_MAX + 1000;
    char *keys[] = {"i1", "i2"};
    gathered g[2] = {{0}, {0}};
    size_t nheads = 0;
    tg__chan *ch;
    tg__cstream *st;
    uint64_t id[2];
    fake *f;
    int rc;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = held_two(ch, "fake-d", "i1", "i2", size);
    st = gather_open_keys(ch, keys, 2, true, 0);
    id[0] = fake_wait_upload(f, "i1");
    id[1] = fake_wait_upload(f, "i2");
    for (uint64_t off = 0; off < size; off += TG_PROTO_CHUNK_MAX) {
        uint64_t end =
            off + TG_PROTO_CHUNK_MAX < size ? off + TG_PROTO_CHUNK_MAX : size;
        fake_chunks(f, id[1], "i2", size, off, end, TG_PROTO_CHUNK_MAX);
        fake_chunks(f, id[0], "i1", size, off, end, TG_PROTO_CHUNK_MAX);
    }
    for (;;) {
        taskgrid_v1_GatherResponse m;
        uint8_t *buf = NULL;
        size_t len = 0;

        rc = tg__cstream_recv(st, &buf, &len, WAIT_MS);
        if (rc != TG_OK || buf == NULL)
            break;
        assert_int_equal(
            tg__wire_decode(taskgrid_v1_GatherResponse_fields, &m, buf, len),
            TG_OK);
        for (pb_size_t i = 0; i < m.results_count; i++) {
            assert_int_equal(m.results[i].state,
                             taskgrid_v1_TaskState_TASK_STATE_MEMORY);
            assert_int_equal(m.results[i].size, size);
            nheads++;
        }
        for (pb_size_t i = 0; i < m.chunks_count; i++)
            take_chunk(&g[tg_pbbuf_eq(m.chunks[i].key, "i1") ? 0 : 1],
                       &m.chunks[i]);
        tg__wire_release(taskgrid_v1_GatherResponse_fields, &m);
        free(buf);
    }
    tg__cstream_free(st);
    assert_int_equal(rc, TG_OK);
    assert_int_equal(nheads, 2);
    for (int k = 0; k < 2; k++) {
        assert_pattern(&g[k], size);
        gathered_free(&g[k]);
    }
    release(ch, "i1"); /* forgotten before their holder goes */
    release(ch, "i2");
    fake_free(f);
    tg__chan_close(ch);
}

/* A held result the scheduler no longer wants (its task was cancelled
 * while it ran) is freed on the worker at once. */
static void test_dataplane__stale_held_result_freed(void **state)
{
    char *keys[] = {"gone"};
    tg__chan *ch;
    fake *f;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = fake_start("fake-e", "127.0.0.1:2");
    fake_wait_hello(f);
    submit(ch, "gone", NULL);
    fake_wait_assigned(f, "gone");
    assert_int_equal(cancel(ch, keys, 1), 1);
    fake_result(f, "gone", 500000, true);
    fake_wait_freed(f, "gone");
    fake_free(f);
    tg__chan_close(ch);
}

/* A bad data address is refused at registration, clearly; a worker
 * without one gets no inline limit, and a held result from it fails its
 * task with tg.ProtocolError. */
static void test_dataplane__registration(void **state)
{
    static const char *const bad[] = {"no-port", "host:0",   "host:99999",
                                      ":80",     "ho st:80", "[::1:80"};
    gathered g = {0};
    tg__chan *ch;
    fake *f;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *buf = NULL;
        size_t len;
        f = fake_start("fake-bad", bad[i]);
        assert_int_equal(tg__cstream_recv(f->st, &buf, &len, WAIT_MS),
                         TG_EINVAL);
        assert_non_null(strstr(tg_error_last(), "Register.data_address"));
        fake_free(f);
    }
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = fake_start("fake-plain", "");
    fake_wait_hello(f);
    assert_int_equal(f->inline_limit, 0);
    submit(ch, "p1", NULL);
    fake_wait_assigned(f, "p1");
    fake_result(f, "p1", 100000, true);
    gather_read(gather_open(ch, "p1", true), &g);
    assert_int_equal(g.state[0], taskgrid_v1_TaskState_TASK_STATE_ERRED);
    assert_string_equal(g.err_type, "tg.ProtocolError");
    gathered_free(&g);
    fake_free(f);

    /* IPv6 literals and host names are fine. */
    f = fake_start("fake-v6", "[::1]:4242");
    fake_wait_hello(f);
    fake_free(f);
    tg__chan_close(ch);
}

/* Send a memory report. */
static void fake_memory(fake *f, bool paused, uint64_t memory, uint64_t spilled)
{
    taskgrid_v1_WorkerMessage m = {0};

    m.has_memory = true;
    m.memory.memory = memory;
    m.memory.spilled = spilled;
    m.memory.limit = 1000000;
    m.memory.paused = paused;
    m.memory.rss = 12345;
    send_msg(f->st, taskgrid_v1_WorkerMessage_fields, &m);
}

/* Wait until Status shows worker `name` with `paused`; key's state. */
static int status_until(tg__chan *ch, const char *name, bool paused,
                        const char *key, taskgrid_v1_WorkerInfo *out)
{
    for (int64_t end = th_now_ms() + WAIT_MS;;) {
        taskgrid_v1_StatusRequest req = {0};
        taskgrid_v1_StatusResponse r;
        char *keys[] = {(char *)key};
        int state = -1;
        bool seen = false;

        req.keys_count = 1;
        req.keys = keys;
        assert_int_equal(unary(ch, TG_METHOD_STATUS,
                               taskgrid_v1_StatusRequest_fields, &req,
                               taskgrid_v1_StatusResponse_fields, &r),
                         TG_OK);
        for (pb_size_t i = 0; i < r.workers_count; i++)
            /* Only this test's worker reports a limit (the names point
             * into a buffer unary() has freed). */
            if (r.workers[i].memory_limit == 1000000 &&
                r.workers[i].paused == paused) {
                *out = r.workers[i];
                out->name = tg_pbbuf_str("");
                seen = true;
            }
        if (r.keys_count == 1)
            state = r.keys[0].state;
        tg__wire_release(taskgrid_v1_StatusResponse_fields, &r);
        if (seen)
            return state;
        if (th_now_ms() >= end)
            fail_msg("worker %s not shown with paused=%d", name, paused);
        th_sleep_ms(20);
    }
}

/* A paused worker (WorkerMessage.memory) gets no new task until it
 * reports unpaused, and Status shows its memory report. */
static void test_dataplane__paused_worker_gets_nothing_new(void **state)
{
    taskgrid_v1_WorkerInfo wi;
    tg__chan *ch;
    fake *f;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    f = fake_start("fake-p", "127.0.0.1:3");
    fake_wait_hello(f);
    fake_memory(f, true, 900000, 77);
    status_until(ch, "fake-p", true, "pz", &wi);
    assert_int_equal(wi.memory, 900000);
    assert_int_equal(wi.spilled, 77);
    assert_int_equal(wi.memory_limit, 1000000);
    assert_int_equal(wi.rss, 12345);
    submit(ch, "pz", NULL);
    th_sleep_ms(300);
    assert_int_equal(status_until(ch, "fake-p", true, "pz", &wi),
                     taskgrid_v1_TaskState_TASK_STATE_READY);
    fake_memory(f, false, 1000, 77);
    fake_wait_assigned(f, "pz");
    assert_int_equal(status_until(ch, "fake-p", false, "pz", &wi),
                     taskgrid_v1_TaskState_TASK_STATE_PROCESSING);
    assert_int_equal(wi.memory, 1000);
    fake_result(f, "pz", 0, false);
    fake_free(f);
    tg__chan_close(ch);
}

static int group_setup(void **state)
{
    const char *extra[] = {"--max-message", "2097152", NULL};

    (void)state;
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    assert_int_equal(th_stop(&sched, SIGTERM), 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataplane__relay_chunked_and_inline),
        cmocka_unit_test(test_dataplane__too_large_inline),
        cmocka_unit_test(test_dataplane__holder_failures),
        cmocka_unit_test(test_dataplane__holder_lost_midway),
        cmocka_unit_test(test_dataplane__ranges_follow_the_stream),
        cmocka_unit_test(test_dataplane__two_keys_interleaved),
        cmocka_unit_test(test_dataplane__stale_held_result_freed),
        cmocka_unit_test(test_dataplane__registration),
        cmocka_unit_test(test_dataplane__paused_worker_gets_nothing_new),
    };

    signal(SIGPIPE, SIG_IGN);
    th_find_bins();
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
