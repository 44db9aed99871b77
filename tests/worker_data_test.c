/* SPDX-License-Identifier: Apache-2.0
 *
 * worker_data_test.c: the C worker's data plane, end to end in one
 * process. The real worker (tgw_link_run, its data service and fetcher)
 * runs on threads against a fake scheduler written here on the
 * transport's server side, which registers workers, sends the inline
 * limit, assignments, uploads and frees, and records what workers send
 * back. Raw DataService.Fetch calls go through the transport's client.
 * Covered: held results (size, held flag, exact bytes in CRC-checked
 * chunks), NOT_FOUND for unknown and freed keys, inputs from the local
 * store (no fetch) and from a peer, holders tried in order, unreachable
 * holders failing the task with tg.FetchFailed, uploads in chunks with
 * their id and missing keys, held results dropped with the session,
 * inline-only workers, an empty result, the role check over mutual TLS,
 * the counters' exit line and the new options; memory management (held
 * results spilled to files past the target and still served, uploaded
 * and used whole, pause reported and cleared, tg.ResultTooLarge, the exit
 * past the terminate fraction, the options). Every wait is bounded.
 * Depends on //worker:worker_net, //transport, //proto:wire, util, zlib
 * and cmocka.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "harness.h"
#include "methods.h"
#include "transport/client.h"
#include "transport/server.h"
#include "util/certs.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/tls.h"
#include "wire.h"
#include "worker/builtins.h"
#include "worker/config.h"
#include "worker/counters.h"
#include "worker/dataservice.h"
#include "worker/link.h"
#include "worker/memory.h"
#include "worker/registry.h"
#include "worker/store.h"

#define WAIT_MS 15000 /* bound of every wait */
#define MIB (1024u * 1024u)
#define MAX_CONNS 16
#define MAX_RESULTS 256
#define MAX_CHUNKS 512
#define MAX_MISSING 64
#define MAX_OUT 64

/* ------------------------------------------------------------------ */
/* Test functions run by the workers                                   */
/* ------------------------------------------------------------------ */

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i % 251);
}

/* test.bytes: a raw result of N bytes (N is the input, in decimal). */
static int fn_bytes(tg_task_ctx *ctx, void *ud)
{
    size_t len, n;
    const uint8_t *in = tg_task_input(ctx, &len);
    char num[32];
    uint8_t *buf;
    int rc;

    (void)ud;
    snprintf(num, sizeof(num), "%.*s", (int)len, (const char *)in);
    n = (size_t)strtoull(num, NULL, 10);
    buf = malloc(n ? n : 1);
    if (buf == NULL)
        return tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(i);
    rc = tg_task_set_result(ctx, buf, n, "raw");
    free(buf);
    return rc;
}

/* test.digest: "LEN:CRC32" of each dependency, joined by spaces. */
static int fn_digest(tg_task_ctx *ctx, void *ud)
{
    char out[512] = "";
    size_t off = 0;

    (void)ud;
    for (size_t i = 0; i < tg_task_ndeps(ctx); i++) {
        size_t len;
        const uint8_t *d = tg_task_dep(ctx, i, &len);
        unsigned long crc = crc32(0L, len ? d : Z_NULL, (uInt)len);

        off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%zu:%08lx",
                                i ? " " : "", len, crc);
    }
    return tg_task_set_result(ctx, out, strlen(out), "raw");
}

/* The digest test.digest gives for a test.bytes result of `n` bytes. */
static void expected_digest(size_t n, char *buf, size_t len)
{
    uint8_t *b = malloc(n ? n : 1);

    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern(i);
    snprintf(buf, len, "%zu:%08lx", n,
             (unsigned long)crc32(0L, n ? b : Z_NULL, (uInt)n));
    free(b);
}

/* ------------------------------------------------------------------ */
/* The fake scheduler                                                  */
/* ------------------------------------------------------------------ */

typedef struct fs_conn {
    tg__scall *c;
    char name[64];
    char data_address[160];
    bool live;
    /* The last WorkerMessage.memory, and how many came. */
    taskgrid_v1_MemoryReport mem;
    int nmem;
} fs_conn;

typedef struct rec_result {
    int conn;
    char *key;
    int state;
    bool held;
    uint64_t size;
    uint8_t *data;
    size_t len;
    char *err_type;
    char *err_msg;
} rec_result;

typedef struct rec_chunk {
    uint64_t upload;
    char *key;
    uint64_t offset;
    uint8_t *data;
    size_t len;
    uint64_t size;
    uint32_t crc;
} rec_chunk;

typedef struct out_msg {
    int conn;
    uint8_t *buf; /* NULL: end the stream */
    size_t len;
} out_msg;

typedef struct fake_sched {
    tg__server *srv;
    pthread_t thread;
    char addr[64];
    uint64_t inline_limit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fs_conn conns[MAX_CONNS];
    int nconns;
    rec_result res[MAX_RESULTS];
    size_t nres;
    rec_chunk chunks[MAX_CHUNKS];
    size_t nchunks;
    size_t max_chunk_bytes_per_msg;
    char *missing[MAX_MISSING];
    size_t nmissing;
    out_msg out[MAX_OUT];
    size_t nout;
} fake_sched;

static const tg__method fs_methods[] = {{TG_METHOD_CONNECT, TG__BIDI}};

static char *dup_buf(tg_pbbuf b)
{
    char *s = tg_pbbuf_strdup(b);

    assert_non_null(s);
    return s;
}

static void fs_call(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len)
{
    fake_sched *fs = ud;

    (void)method;
    (void)req;
    (void)len;
    pthread_mutex_lock(&fs->mu);
    assert_true(fs->nconns < MAX_CONNS);
    fs->conns[fs->nconns].c = c;
    fs->conns[fs->nconns].live = true;
    tg__scall_set_data(c, (void *)(intptr_t)(fs->nconns + 1));
    fs->nconns++;
    pthread_mutex_unlock(&fs->mu);
}

/* The first SchedulerMessage: the name, a heartbeat and the limit. */
static void fs_welcome(fake_sched *fs, tg__scall *c, const char *name)
{
    taskgrid_v1_SchedulerMessage m;
    uint8_t *buf;
    size_t len;

    memset(&m, 0, sizeof(m));
    m.worker_name = tg_pbbuf_str(name);
    m.heartbeat_ms = 200;
    m.inline_limit = fs->inline_limit;
    assert_int_equal(
        tg__wire_encode(taskgrid_v1_SchedulerMessage_fields, &m, &buf, &len),
        TG_OK);
    tg__scall_send(c, buf, len);
}

static void fs_record(fake_sched *fs, int conn,
                      const taskgrid_v1_WorkerMessage *m)
{
    size_t chunk_bytes = 0;

    for (pb_size_t i = 0; i < m->results_count; i++) {
        const taskgrid_v1_TaskResult *r = &m->results[i];
        rec_result *x = &fs->res[fs->nres++];

        assert_true(fs->nres <= MAX_RESULTS);
        memset(x, 0, sizeof(*x));
        x->conn = conn;
        x->key = dup_buf(r->key);
        x->state = r->state;
        x->held = r->held;
        x->size = r->size;
        x->len = r->data.len;
        x->data = malloc(r->data.len + 1);
        assert_non_null(x->data);
        memcpy(x->data, r->data.ptr ? r->data.ptr : (const uint8_t *)"",
               r->data.len);
        x->data[r->data.len] = '\0';
        if (r->has_error) {
            x->err_type = dup_buf(r->error.type);
            x->err_msg = dup_buf(r->error.message);
        }
    }
    for (pb_size_t i = 0; i < m->chunks_count; i++) {
        const taskgrid_v1_DataChunk *d = &m->chunks[i];
        rec_chunk *x = &fs->chunks[fs->nchunks++];

        assert_true(fs->nchunks <= MAX_CHUNKS);
        x->upload = d->upload;
        x->key = dup_buf(d->key);
        x->offset = d->offset;
        x->len = d->data.len;
        x->data = malloc(d->data.len ? d->data.len : 1);
        assert_non_null(x->data);
        if (d->data.len)
            memcpy(x->data, d->data.ptr, d->data.len);
        x->size = d->size;
        x->crc = d->crc32;
        chunk_bytes += d->data.len;
    }
    if (chunk_bytes > fs->max_chunk_bytes_per_msg)
        fs->max_chunk_bytes_per_msg = chunk_bytes;
    for (pb_size_t i = 0; i < m->missing_count; i++) {
        assert_true(fs->nmissing < MAX_MISSING);
        fs->missing[fs->nmissing++] = strdup(m->missing[i]);
    }
}

static void fs_message(void *ud, tg__scall *c, const uint8_t *msg, size_t len)
{
    fake_sched *fs = ud;
    int conn = (int)(intptr_t)tg__scall_data(c) - 1;
    taskgrid_v1_WorkerMessage m;

    assert_int_equal(
        tg__wire_decode(taskgrid_v1_WorkerMessage_fields, &m, msg, len), TG_OK);
    pthread_mutex_lock(&fs->mu);
    if (m.has_registration) {
        fs_conn *w = &fs->conns[conn];

        snprintf(w->name, sizeof(w->name), "%.*s", (int)m.registration.name.len,
                 (const char *)m.registration.name.ptr);
        snprintf(w->data_address, sizeof(w->data_address), "%.*s",
                 (int)m.registration.data_address.len,
                 (const char *)m.registration.data_address.ptr);
        fs_welcome(fs, c, w->name);
    }
    fs_record(fs, conn, &m);
    if (m.has_memory) {
        fs->conns[conn].mem = m.memory;
        fs->conns[conn].nmem++;
    }
    pthread_cond_broadcast(&fs->cv);
    pthread_mutex_unlock(&fs->mu);
    tg__wire_release(taskgrid_v1_WorkerMessage_fields, &m);
}

static void fs_done(void *ud, tg__scall *c)
{
    fake_sched *fs = ud;
    int conn = (int)(intptr_t)tg__scall_data(c) - 1;

    pthread_mutex_lock(&fs->mu);
    if (conn >= 0) {
        fs->conns[conn].live = false;
        fs->conns[conn].c = NULL;
    }
    pthread_cond_broadcast(&fs->cv);
    pthread_mutex_unlock(&fs->mu);
}

/* Messages the test thread queued go out on the loop thread, which owns
 * the calls. */
static void fs_tick(void *ud, int64_t now)
{
    fake_sched *fs = ud;

    (void)now;
    pthread_mutex_lock(&fs->mu);
    for (size_t i = 0; i < fs->nout; i++) {
        out_msg *o = &fs->out[i];
        fs_conn *w = &fs->conns[o->conn];

        if (!w->live) {
            free(o->buf);
        } else if (o->buf == NULL) {
            tg__scall_finish(w->c, TG_EUNAVAILABLE, "fake scheduler restarts");
        } else {
            tg__scall_send(w->c, o->buf, o->len);
        }
    }
    fs->nout = 0;
    pthread_mutex_unlock(&fs->mu);
}

static const tg__server_ops fs_ops = {fs_call, fs_message, fs_done, fs_tick};

static void *fs_main(void *arg)
{
    tg__server_run(((fake_sched *)arg)->srv);
    return NULL;
}

static fake_sched *fs_start(const tg__rpc_sec *sec, uint64_t inline_limit)
{
    fake_sched *fs = calloc(1, sizeof(*fs));
    tg__server_opts so;
    pthread_condattr_t ca;

    assert_non_null(fs);
    fs->inline_limit = inline_limit;
    pthread_mutex_init(&fs->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fs->cv, &ca);
    pthread_condattr_destroy(&ca);
    memset(&so, 0, sizeof(so));
    so.listen = sec ? "tls://127.0.0.1:0" : "tcp://127.0.0.1:0";
    so.sec = sec;
    so.tick_ms = 10;
    assert_int_equal(tg__server_new(&fs->srv, &so, fs_methods, 1, &fs_ops, fs),
                     TG_OK);
    snprintf(fs->addr, sizeof(fs->addr), "%s://127.0.0.1:%d",
             sec ? "tls" : "tcp", tg__server_port(fs->srv));
    assert_int_equal(pthread_create(&fs->thread, NULL, fs_main, fs), 0);
    return fs;
}

static void fs_free(fake_sched *fs)
{
    tg__server_stop(fs->srv);
    pthread_join(fs->thread, NULL);
    tg__server_free(fs->srv);
    for (size_t i = 0; i < fs->nres; i++) {
        free(fs->res[i].key);
        free(fs->res[i].data);
        free(fs->res[i].err_type);
        free(fs->res[i].err_msg);
    }
    for (size_t i = 0; i < fs->nchunks; i++) {
        free(fs->chunks[i].key);
        free(fs->chunks[i].data);
    }
    for (size_t i = 0; i < fs->nmissing; i++)
        free(fs->missing[i]);
    for (size_t i = 0; i < fs->nout; i++)
        free(fs->out[i].buf);
    pthread_cond_destroy(&fs->cv);
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}

/* The latest live connection of worker `name` (-1 if none); lock held. */
static int conn_of_locked(fake_sched *fs, const char *name)
{
    for (int i = fs->nconns - 1; i >= 0; i--)
        if (fs->conns[i].live && strcmp(fs->conns[i].name, name) == 0)
            return i;
    return -1;
}

/* Wait until `name` has registered `n` times in all (the n-th
 * connection is live); its data address into `addr`. */
static void fs_wait_registered(fake_sched *fs, const char *name, int n,
                               char *addr, size_t len)
{
    struct timespec dl = tg__deadline_ms(WAIT_MS);

    pthread_mutex_lock(&fs->mu);
    for (;;) {
        int seen = 0, last = -1;

        for (int i = 0; i < fs->nconns; i++)
            if (strcmp(fs->conns[i].name, name) == 0) {
                seen++;
                last = i;
            }
        if (seen >= n && fs->conns[last].live) {
            if (addr)
                snprintf(addr, len, "%s", fs->conns[last].data_address);
            break;
        }
        if (pthread_cond_timedwait(&fs->cv, &fs->mu, &dl) != 0) {
            pthread_mutex_unlock(&fs->mu);
            fail_msg("worker %s did not register (%d times)", name, n);
        }
    }
    pthread_mutex_unlock(&fs->mu);
}

/* Queue `m` for worker `name`. */
static void fs_send(fake_sched *fs, const char *name,
                    const taskgrid_v1_SchedulerMessage *m)
{
    uint8_t *buf = NULL;
    size_t len;

    if (m != NULL)
        assert_int_equal(
            tg__wire_encode(taskgrid_v1_SchedulerMessage_fields, m, &buf, &len),
            TG_OK);
    pthread_mutex_lock(&fs->mu);
    assert_true(fs->nout < MAX_OUT);
    fs->out[fs->nout].conn = conn_of_locked(fs, name);
    assert_true(fs->out[fs->nout].conn >= 0);
    fs->out[fs->nout].buf = buf;
    fs->out[fs->nout].len = m ? len : 0;
    fs->nout++;
    pthread_mutex_unlock(&fs->mu);
}

/* The recorded result of `key` (waits for it); valid until fs_free. */
static const rec_result *fs_result(fake_sched *fs, const char *key)
{
    struct timespec dl = tg__deadline_ms(WAIT_MS);

    pthread_mutex_lock(&fs->mu);
    for (;;) {
        for (size_t i = 0; i < fs->nres; i++)
            if (strcmp(fs->res[i].key, key) == 0) {
                pthread_mutex_unlock(&fs->mu);
                return &fs->res[i];
            }
        if (pthread_cond_timedwait(&fs->cv, &fs->mu, &dl) != 0) {
            pthread_mutex_unlock(&fs->mu);
            fail_msg("no result for '%s'", key);
        }
    }
}

/* A dependency held by `holders` (n of them). */
typedef struct dep_def {
    const char *key;
    uint64_t size;
    const char *holders[4];
    size_t nholders;
} dep_def;

/* Assign `key` = func(input) with held dependencies to worker `name`. */
static void fs_assign(fake_sched *fs, const char *name, const char *key,
                      const char *func, const char *input, const dep_def *deps,
                      size_t ndeps)
{
    taskgrid_v1_SchedulerMessage m;
    taskgrid_v1_Assignment a;
    taskgrid_v1_TaskResult d[4];

    assert_true(ndeps <= 4);
    memset(&m, 0, sizeof(m));
    memset(&a, 0, sizeof(a));
    memset(d, 0, sizeof(d));
    a.key = tg_pbbuf_str(key);
    a.func = tg_pbbuf_str(func);
    a.input = tg_pbbuf_str(input);
    a.codec = tg_pbbuf_str("raw");
    a.attempt = 1;
    for (size_t i = 0; i < ndeps; i++) {
        d[i].key = tg_pbbuf_str(deps[i].key);
        d[i].state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        d[i].codec = tg_pbbuf_str("raw");
        d[i].size = deps[i].size;
        d[i].holders_count = (pb_size_t)deps[i].nholders;
        d[i].holders = (char **)deps[i].holders;
    }
    a.deps_count = (pb_size_t)ndeps;
    a.deps = d;
    m.assign_count = 1;
    m.assign = &a;
    fs_send(fs, name, &m);
}

/* Ask worker `name` for bytes [off, off + len) of `key` (len 0: to the
 * end) as upload `id`. */
static void fs_upload_range(fake_sched *fs, const char *name, uint64_t id,
                            const char *key, uint64_t off, uint64_t len)
{
    taskgrid_v1_SchedulerMessage m;
    taskgrid_v1_Upload u;

    memset(&m, 0, sizeof(m));
    memset(&u, 0, sizeof(u));
    u.id = id;
    u.key = tg_pbbuf_str(key);
    u.offset = off;
    u.length = len;
    m.upload_count = 1;
    m.upload = &u;
    fs_send(fs, name, &m);
}

static void fs_upload(fake_sched *fs, const char *name, uint64_t id,
                      const char *key)
{
    fs_upload_range(fs, name, id, key, 0, 0);
}

static void fs_free_key(fake_sched *fs, const char *name, const char *key)
{
    taskgrid_v1_SchedulerMessage m;
    char *keys[1] = {(char *)key};

    memset(&m, 0, sizeof(m));
    m.free_count = 1;
    m.free = keys;
    fs_send(fs, name, &m);
}

/* Wait for a missing report of `key`. */
static void fs_wait_missing(fake_sched *fs, const char *key)
{
    struct timespec dl = tg__deadline_ms(WAIT_MS);

    pthread_mutex_lock(&fs->mu);
    for (;;) {
        for (size_t i = 0; i < fs->nmissing; i++)
            if (strcmp(fs->missing[i], key) == 0) {
                pthread_mutex_unlock(&fs->mu);
                return;
            }
        if (pthread_cond_timedwait(&fs->cv, &fs->mu, &dl) != 0) {
            pthread_mutex_unlock(&fs->mu);
            fail_msg("'%s' was not reported missing", key);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Workers on threads                                                  */
/* ------------------------------------------------------------------ */

typedef struct test_worker {
    tgw_config cfg;
    tg_registry *reg;
    const tg__rpc_sec *sec;
    atomic_bool stop;
    tgw_counters counters;
    pthread_t thread;
    tgw_link_end end;
} test_worker;

static void *worker_main(void *arg)
{
    test_worker *w = arg;

    w->end = tgw_link_run(&w->cfg, w->sec, w->reg, &w->stop, &w->counters);
    return NULL;
}

/* Start a worker named `name` on `fs` with extra options (NULL-ended). */
static test_worker *worker_start(fake_sched *fs, const char *name,
                                 const tg__rpc_sec *sec, const char *const *x)
{
    test_worker *w = calloc(1, sizeof(*w));
    char *argv[32];
    int argc = 0;

    assert_non_null(w);
    argv[argc++] = "taskgrid-worker";
    argv[argc++] = fs->addr;
    argv[argc++] = "--name";
    argv[argc++] = (char *)name;
    argv[argc++] = "--nthreads";
    argv[argc++] = "2";
    if (sec != NULL) {
        /* The files are only named here; the PEM text comes in `sec`. */
        argv[argc++] = "--tls-ca=ca.pem";
        argv[argc++] = "--tls-cert=worker.pem";
        argv[argc++] = "--tls-key=worker-key.pem";
    }
    for (; x != NULL && *x != NULL; x++)
        argv[argc++] = (char *)*x;
    argv[argc] = NULL;
    if (tgw_config_parse(&w->cfg, argc, argv) != TG_OK)
        fail_msg("config: %s", tg_error_last());
    assert_int_equal(tgw_registry_new(&w->reg), TG_OK);
    assert_int_equal(tgw_builtins_register(w->reg), TG_OK);
    assert_int_equal(tg_registry_add(w->reg, "test.bytes", fn_bytes, NULL),
                     TG_OK);
    assert_int_equal(tg_registry_add(w->reg, "test.digest", fn_digest, NULL),
                     TG_OK);
    tgw_registry_freeze(w->reg);
    w->sec = sec;
    atomic_init(&w->stop, false);
    tgw_counters_init(&w->counters);
    assert_int_equal(pthread_create(&w->thread, NULL, worker_main, w), 0);
    return w;
}

static void worker_stop(test_worker *w)
{
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    assert_int_equal(w->end, TGW_LINK_CLEAN);
    tgw_registry_free(w->reg);
    tgw_config_free(&w->cfg);
    free(w);
}

/* ------------------------------------------------------------------ */
/* Raw DataService.Fetch                                               */
/* ------------------------------------------------------------------ */

typedef struct fetched {
    int rc;
    char msg[1024];
    uint8_t *data;
    size_t len;
    size_t nchunks;
    uint64_t size;
} fetched;

/* Fetch `key` from `addr` ("host:port"), checking every chunk. */
static fetched raw_fetch(const char *addr, const tg__rpc_sec *sec,
                         const char *key)
{
    fetched f;
    char target[256];
    taskgrid_v1_FetchRequest req;
    tg__chan *ch = NULL;
    tg__cstream *st = NULL;
    uint8_t *enc;
    size_t enclen;

    memset(&f, 0, sizeof(f));
    snprintf(target, sizeof(target), "%s://%s", sec ? "tls" : "tcp", addr);
    memset(&req, 0, sizeof(req));
    req.key = tg_pbbuf_str(key);
    assert_int_equal(
        tg__wire_encode(taskgrid_v1_FetchRequest_fields, &req, &enc, &enclen),
        TG_OK);
    if (sec != NULL) {
        /* As a fetching worker does: the holder's fixed TLS name. */
        tg__rpc_sec named = *sec;

        named.tls_name = TG_PROTO_WORKER_TLS_NAME;
        assert_int_equal(tg__chan_open(&ch, target, &named, 0), TG_OK);
    } else {
        assert_int_equal(tg__chan_open(&ch, target, NULL, 0), TG_OK);
    }
    assert_int_equal(tg__cstream_open_request(&st, ch, TG_METHOD_FETCH, enc,
                                              enclen, WAIT_MS),
                     TG_OK);
    free(enc);
    for (;;) {
        uint8_t *m = NULL;
        size_t mlen = 0;
        taskgrid_v1_DataChunk c;

        f.rc = tg__cstream_recv(st, &m, &mlen, WAIT_MS);
        if (f.rc != TG_OK || m == NULL) {
            snprintf(f.msg, sizeof(f.msg), "%s", tg_error_last());
            break;
        }
        assert_int_equal(
            tg__wire_decode(taskgrid_v1_DataChunk_fields, &c, m, mlen), TG_OK);
        assert_true(tg_pbbuf_eq(c.key, key));
        assert_true(c.data.len <= TG_PROTO_CHUNK_MAX);
        assert_int_equal(c.offset, f.len);
        assert_int_equal(c.crc32,
                         (uint32_t)crc32(0L, c.data.len ? c.data.ptr : Z_NULL,
                                         (uInt)c.data.len));
        assert_true(tg_pbbuf_eq(c.codec, "raw"));
        f.size = c.size;
        f.data = realloc(f.data, f.len + c.data.len + 1);
        assert_non_null(f.data);
        if (c.data.len)
            memcpy(f.data + f.len, c.data.ptr, c.data.len);
        f.len += c.data.len;
        f.nchunks++;
        tg__wire_release(taskgrid_v1_DataChunk_fields, &c);
        free(m);
    }
    tg__cstream_free(st);
    tg__chan_close(ch);
    return f;
}

static void assert_pattern(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] != pattern(i))
            fail_msg("byte %zu is %u, expected %u", i, d[i], pattern(i));
}

static void must_contain(const char *s, const char *part)
{
    if (s == NULL || strstr(s, part) == NULL)
        fail_msg("'%s' does not contain '%s'", s ? s : "(null)", part);
}

#define BIG (3u * MIB + 5u) /* four chunks: three full, one of 5 bytes */
#define BIG_S "3145733"

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static void test_worker_data__large_results_are_held_and_served(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wa", NULL, NULL);
    char addr[160];
    const rec_result *small, *big;
    fetched f;

    (void)state;
    fs_wait_registered(fs, "wa", 1, addr, sizeof(addr));
    /* A scheduler on loopback: the service listens on 127.0.0.1. */
    assert_int_equal(strncmp(addr, "127.0.0.1:", 10), 0);
    fs_assign(fs, "wa", "small", "test.bytes", "100", NULL, 0);
    fs_assign(fs, "wa", "big", "test.bytes", BIG_S, NULL, 0);
    small = fs_result(fs, "small");
    assert_int_equal(small->state, taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    assert_false(small->held);
    assert_int_equal(small->size, 100);
    assert_int_equal(small->len, 100);
    assert_pattern(small->data, 100);
    big = fs_result(fs, "big");
    assert_int_equal(big->state, taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    assert_true(big->held);
    assert_int_equal(big->size, BIG);
    assert_int_equal(big->len, 0);
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_HELD), 1);
    assert_int_equal(tgw_counters_bytes(&w->counters, TGW_COUNT_HELD), BIG);

    f = raw_fetch(addr, NULL, "big");
    assert_int_equal(f.rc, TG_OK);
    assert_int_equal(f.len, BIG);
    assert_int_equal(f.size, BIG);
    assert_int_equal(f.nchunks, 4);
    assert_pattern(f.data, f.len);
    free(f.data);
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_SERVED), 1);
    assert_int_equal(tgw_counters_bytes(&w->counters, TGW_COUNT_SERVED), BIG);

    f = raw_fetch(addr, NULL, "nope");
    assert_int_equal(f.rc, TG_ENOTFOUND);
    must_contain(f.msg, "no result 'nope' on worker wa");
    free(f.data);

    /* Freed: gone. */
    fs_free_key(fs, "wa", "big");
    for (int64_t end = tg__now_ms() + WAIT_MS;;) {
        f = raw_fetch(addr, NULL, "big");
        free(f.data);
        if (f.rc == TG_ENOTFOUND || tg__now_ms() > end)
            break;
        usleep(20000);
    }
    assert_int_equal(f.rc, TG_ENOTFOUND);
    worker_stop(w);
    fs_free(fs);
}

static void test_worker_data__inputs_local_peer_and_in_order(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *a = worker_start(fs, "wa", NULL, NULL);
    test_worker *b = worker_start(fs, "wb", NULL, NULL);
    char addr_a[160], addr_b[160], want[64];
    const size_t n = 2 * MIB + 12345;
    dep_def dep = {"in", n, {NULL}, 1};
    const rec_result *r;

    (void)state;
    fs_wait_registered(fs, "wa", 1, addr_a, sizeof(addr_a));
    fs_wait_registered(fs, "wb", 1, addr_b, sizeof(addr_b));
    fs_assign(fs, "wa", "in", "test.bytes", "2109497", NULL, 0);
    assert_true(fs_result(fs, "in")->held);
    expected_digest(n, want, sizeof(want));

    /* On the holder itself: the local bytes, no fetch. */
    dep.holders[0] = addr_a;
    fs_assign(fs, "wa", "use-a", "test.digest", "", &dep, 1);
    r = fs_result(fs, "use-a");
    assert_null(r->err_type);
    assert_string_equal((const char *)r->data, want);
    assert_int_equal(tgw_counters_n(&a->counters, TGW_COUNT_LOCAL), 1);
    assert_int_equal(tgw_counters_bytes(&a->counters, TGW_COUNT_LOCAL), n);
    assert_int_equal(tgw_counters_n(&a->counters, TGW_COUNT_FETCHED), 0);
    assert_int_equal(tgw_counters_n(&a->counters, TGW_COUNT_SERVED), 0);

    /* On another worker: fetched from the holder. */
    fs_assign(fs, "wb", "use-b", "test.digest", "", &dep, 1);
    r = fs_result(fs, "use-b");
    assert_null(r->err_type);
    assert_string_equal((const char *)r->data, want);
    assert_int_equal(tgw_counters_n(&b->counters, TGW_COUNT_FETCHED), 1);
    assert_int_equal(tgw_counters_bytes(&b->counters, TGW_COUNT_FETCHED), n);
    assert_int_equal(tgw_counters_n(&b->counters, TGW_COUNT_LOCAL), 0);
    assert_int_equal(tgw_counters_n(&a->counters, TGW_COUNT_SERVED), 1);

    /* Holders in order: an unreachable one first, then the holder. */
    dep.holders[0] = "127.0.0.1:1";
    dep.holders[1] = addr_a;
    dep.nholders = 2;
    fs_assign(fs, "wb", "use-b2", "test.digest", "", &dep, 1);
    r = fs_result(fs, "use-b2");
    assert_null(r->err_type);
    assert_string_equal((const char *)r->data, want);
    assert_int_equal(tgw_counters_n(&b->counters, TGW_COUNT_FETCHED), 2);
    worker_stop(b);
    worker_stop(a);
    fs_free(fs);
}

static void test_worker_data__no_holder_delivers_fetch_failed(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *a = worker_start(fs, "wa", NULL, NULL);
    test_worker *b = worker_start(fs, "wb", NULL, NULL);
    char addr_a[160], addr_b[160];
    dep_def dep = {"gone", 200000, {"127.0.0.1:1", NULL, NULL}, 1};
    const rec_result *r;

    (void)state;
    fs_wait_registered(fs, "wa", 1, addr_a, sizeof(addr_a));
    fs_wait_registered(fs, "wb", 1, addr_b, sizeof(addr_b));
    fs_assign(fs, "wb", "t1", "test.digest", "", &dep, 1);
    r = fs_result(fs, "t1");
    assert_int_equal(r->state, taskgrid_v1_TaskState_TASK_STATE_ERRED);
    assert_string_equal(r->err_type, "tg.FetchFailed");
    must_contain(r->err_msg, "input 'gone' (200000 bytes)");
    must_contain(r->err_msg, "holder 127.0.0.1:1: UNAVAILABLE");

    /* A holder without the key, and this worker named as a holder while
     * it does not hold the key (reported missing). */
    dep.holders[0] = addr_a;
    dep.holders[1] = addr_b;
    dep.nholders = 2;
    fs_assign(fs, "wb", "t2", "test.digest", "", &dep, 1);
    r = fs_result(fs, "t2");
    assert_string_equal(r->err_type, "tg.FetchFailed");
    must_contain(r->err_msg, "NOT_FOUND");
    must_contain(r->err_msg, "no result 'gone' on worker wa");
    must_contain(r->err_msg, addr_b);
    fs_wait_missing(fs, "gone");
    assert_int_equal(tgw_counters_n(&b->counters, TGW_COUNT_FETCHED), 0);
    worker_stop(b);
    worker_stop(a);
    fs_free(fs);
}

/* A fake holder that answers every Fetch wrongly, in one of four ways, or
 * rightly but as a protobuf encoder other than ours may (ODD_ORDER). */
typedef enum bad_mode {
    BAD_CRC,
    BAD_GAP,
    BAD_SHORT,
    BAD_TWICE,
    ODD_ORDER
} bad_mode;

typedef struct bad_holder {
    tg__server *srv;
    pthread_t thread;
    bad_mode mode;
    char addr[64];
} bad_holder;

static const tg__method bad_methods[] = {{TG_METHOD_FETCH, TG__SERVER_STREAM}};

static void bad_send(tg__scall *c, tg_pbbuf key, uint64_t off, size_t n,
                     uint64_t size, bool good_crc)
{
    static uint8_t data[1000];
    taskgrid_v1_DataChunk ch;
    uint8_t *buf;
    size_t len;

    for (size_t i = 0; i < n; i++)
        data[i] = pattern((size_t)off + i);
    memset(&ch, 0, sizeof(ch));
    ch.key = key;
    ch.offset = off;
    ch.data = tg_pbbuf_mem(data, n);
    ch.size = size;
    ch.codec = tg_pbbuf_str("raw");
    ch.crc32 = (uint32_t)crc32(0L, data, (uInt)n) ^ (good_crc ? 0 : 1);
    assert_int_equal(
        tg__wire_encode(taskgrid_v1_DataChunk_fields, &ch, &buf, &len), TG_OK);
    tg__scall_send(c, buf, len);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

static size_t put_bytes(uint8_t *p, unsigned field, const void *b, size_t n)
{
    size_t k = put_varint(p, field << 3 | 2);

    k += put_varint(p + k, n);
    memcpy(p + k, b, n);
    return k + n;
}

/* A chunk of 1000 bytes at `off` encoded by hand: every field in reverse
 * order, fields this version does not know (a varint, a fixed64, a
 * string), and with `twice` the data field repeated. */
static void odd_send(tg__scall *c, tg_pbbuf key, uint64_t off, bool twice)
{
    uint8_t data[1000], *buf = malloc(4000);
    uint32_t crc;
    size_t n = 0;

    assert_non_null(buf);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = pattern((size_t)off + i);
    crc = (uint32_t)crc32(0L, data, sizeof(data));
    n += put_varint(buf + n, 15 << 3 | 0); /* unknown varint */
    n += put_varint(buf + n, 123456789);
    n += put_varint(buf + n, 7 << 3 | 0); /* upload */
    n += put_varint(buf + n, 0);
    n += put_varint(buf + n, 6 << 3 | 5); /* crc32, fixed32 */
    for (int i = 0; i < 4; i++)
        buf[n++] = (uint8_t)(crc >> (8 * i));
    n += put_bytes(buf + n, 5, "raw", 3);
    n += put_varint(buf + n, 16 << 3 | 1); /* unknown fixed64 */
    memset(buf + n, 0xee, 8);
    n += 8;
    n += put_varint(buf + n, 4 << 3 | 0); /* size */
    n += put_varint(buf + n, 3000);
    n += put_bytes(buf + n, 3, data, sizeof(data));
    if (twice)
        n += put_bytes(buf + n, 3, data, sizeof(data));
    n += put_bytes(buf + n, 17, "future", 6); /* unknown string */
    n += put_varint(buf + n, 2 << 3 | 0);     /* offset */
    n += put_varint(buf + n, off);
    n += put_bytes(buf + n, 1, key.ptr, key.len);
    tg__scall_send(c, buf, n);
}

static void bad_call(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                     size_t len)
{
    bad_holder *b = ud;
    taskgrid_v1_FetchRequest r;

    (void)method;
    assert_int_equal(
        tg__wire_decode(taskgrid_v1_FetchRequest_fields, &r, req, len), TG_OK);
    /* Every fake result is 3000 bytes. */
    if (b->mode == ODD_ORDER || b->mode == BAD_TWICE) {
        for (uint64_t off = 0; off < 3000; off += 1000)
            odd_send(c, r.key, off, b->mode == BAD_TWICE && off == 1000);
        tg__scall_finish(c, TG_OK, "");
        return;
    }
    bad_send(c, r.key, 0, 1000, 3000, b->mode != BAD_CRC);
    if (b->mode == BAD_GAP)
        bad_send(c, r.key, 2000, 1000, 3000, true);
    else if (b->mode == BAD_CRC)
        bad_send(c, r.key, 1000, 1000, 3000, true);
    tg__scall_finish(c, TG_OK, "");
}

static const tg__server_ops bad_ops = {bad_call, NULL, NULL, NULL};

static void *bad_main(void *arg)
{
    tg__server_run(((bad_holder *)arg)->srv);
    return NULL;
}

static bad_holder *bad_start(bad_mode mode)
{
    bad_holder *b = calloc(1, sizeof(*b));
    tg__server_opts so;

    assert_non_null(b);
    b->mode = mode;
    memset(&so, 0, sizeof(so));
    so.listen = "tcp://127.0.0.1:0";
    so.tick_ms = 20;
    assert_int_equal(tg__server_new(&b->srv, &so, bad_methods, 1, &bad_ops, b),
                     TG_OK);
    snprintf(b->addr, sizeof(b->addr), "127.0.0.1:%d", tg__server_port(b->srv));
    assert_int_equal(pthread_create(&b->thread, NULL, bad_main, b), 0);
    return b;
}

static void bad_free(bad_holder *b)
{
    tg__server_stop(b->srv);
    pthread_join(b->thread, NULL);
    tg__server_free(b->srv);
    free(b);
}

static void test_worker_data__corrupt_or_partial_inputs_fail(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wa", NULL, NULL);
    bad_holder *crc = bad_start(BAD_CRC), *gap = bad_start(BAD_GAP),
               *shrt = bad_start(BAD_SHORT), *twice = bad_start(BAD_TWICE);
    dep_def dep = {
        "x", 3000, {crc->addr, gap->addr, shrt->addr, twice->addr}, 4};
    const rec_result *r;

    (void)state;
    fs_wait_registered(fs, "wa", 1, NULL, 0);
    fs_assign(fs, "wa", "t", "test.digest", "", &dep, 1);
    r = fs_result(fs, "t");
    assert_string_equal(r->err_type, "tg.FetchFailed");
    must_contain(r->err_msg, "input 'x' (3000 bytes)");
    must_contain(r->err_msg, "CRC-32 mismatch in the chunk at offset 0");
    must_contain(r->err_msg, "sent a chunk at offset 2000, expected 1000");
    must_contain(r->err_msg, "the stream ended after 1000 of 3000 bytes");
    must_contain(r->err_msg, "sent two data fields in the chunk at offset "
                             "1000");
    /* The holders in the scheduler's order. */
    assert_true(strstr(r->err_msg, crc->addr) < strstr(r->err_msg, gap->addr));
    assert_true(strstr(r->err_msg, gap->addr) < strstr(r->err_msg, shrt->addr));
    assert_true(strstr(r->err_msg, shrt->addr) <
                strstr(r->err_msg, twice->addr));
    /* A size that disagrees with the scheduler's is refused too. */
    dep.size = 2999;
    dep.holders[0] = shrt->addr;
    dep.nholders = 1;
    fs_assign(fs, "wa", "t2", "test.digest", "", &dep, 1);
    r = fs_result(fs, "t2");
    must_contain(r->err_msg,
                 "says the result is 3000 bytes, the scheduler said 2999");
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_FETCHED), 0);
    worker_stop(w);
    bad_free(crc);
    bad_free(gap);
    bad_free(shrt);
    bad_free(twice);
    fs_free(fs);
}

/* Protobuf lets fields come in any order and unknown ones be skipped: a
 * holder whose encoder orders them otherwise still serves the input. */
static void test_worker_data__chunks_in_any_field_order(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wa", NULL, NULL);
    bad_holder *odd = bad_start(ODD_ORDER);
    dep_def dep = {"x", 3000, {odd->addr}, 1};
    const rec_result *r;
    char want[64];

    (void)state;
    fs_wait_registered(fs, "wa", 1, NULL, 0);
    fs_assign(fs, "wa", "t", "test.digest", "", &dep, 1);
    r = fs_result(fs, "t");
    assert_null(r->err_type);
    expected_digest(3000, want, sizeof(want));
    assert_int_equal(r->len, strlen(want));
    assert_memory_equal(r->data, want, r->len);
    assert_int_equal(tgw_counters_bytes(&w->counters, TGW_COUNT_FETCHED), 3000);
    worker_stop(w);
    bad_free(odd);
    fs_free(fs);
}

/* The chunks of upload `id` of a result of `size` bytes, in order from
 * byte `from`, reassembled once `want` bytes came (never more). */
static uint8_t *upload_range(fake_sched *fs, uint64_t id, uint64_t size,
                             uint64_t from, uint64_t want)
{
    struct timespec dl = tg__deadline_ms(WAIT_MS);
    uint8_t *out = malloc(want ? want : 1);
    size_t got = 0;

    assert_non_null(out);
    pthread_mutex_lock(&fs->mu);
    for (;;) {
        got = 0;
        for (size_t i = 0; i < fs->nchunks; i++) {
            const rec_chunk *c = &fs->chunks[i];

            if (c->upload != id)
                continue;
            assert_int_equal(c->offset, from + got);
            assert_int_equal(c->size, size);
            assert_true(c->len <= TG_PROTO_CHUNK_MAX);
            assert_true(got + c->len <= want);
            assert_int_equal(c->crc, (uint32_t)crc32(0L, c->data, c->len));
            memcpy(out + got, c->data, c->len);
            got += c->len;
        }
        if (got == want)
            break;
        if (pthread_cond_timedwait(&fs->cv, &fs->mu, &dl) != 0) {
            pthread_mutex_unlock(&fs->mu);
            fail_msg("upload %llu: %zu of %llu bytes", (unsigned long long)id,
                     got, (unsigned long long)want);
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return out;
}

/* The chunks of upload `id`, in order, reassembled. */
static uint8_t *upload_bytes(fake_sched *fs, uint64_t id, uint64_t want,
                             size_t *len)
{
    *len = (size_t)want;
    return upload_range(fs, id, want, 0, want);
}

/* The chunks recorded for upload `id`. */
static size_t upload_nchunks(fake_sched *fs, uint64_t id)
{
    size_t n = 0;

    pthread_mutex_lock(&fs->mu);
    for (size_t i = 0; i < fs->nchunks; i++)
        n += fs->chunks[i].upload == id;
    pthread_mutex_unlock(&fs->mu);
    return n;
}

/* Upload.offset and .length: only the bytes asked, in order, ranges of
 * one id answered in the order asked; nothing for a range past the end;
 * the result counts as uploaded once, at its last byte. */
static void test_worker_data__upload_ranges(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wr", NULL, NULL);
    const uint64_t n = 9 * MIB + 7, a = MIB + 3, alen = 5 * MIB / 2;
    uint8_t *d;

    (void)state;
    fs_wait_registered(fs, "wr", 1, NULL, 0);
    fs_assign(fs, "wr", "big", "test.bytes", "9437191", NULL, 0);
    assert_true(fs_result(fs, "big")->held);
    fs_upload_range(fs, "wr", 5, "big", a, alen);
    fs_upload_range(fs, "wr", 5, "big", a + alen, 0); /* to the end */
    fs_upload_range(fs, "wr", 6, "big", n, 10);       /* past the end */
    fs_upload_range(fs, "wr", 7, "big", n - 10, 100); /* clipped */
    d = upload_range(fs, 5, n, a, n - a);
    for (uint64_t i = 0; i < n - a; i++)
        if (d[i] != pattern(a + i))
            fail_msg("byte %llu differs", (unsigned long long)(a + i));
    free(d);
    d = upload_range(fs, 7, n, n - 10, 10);
    for (uint64_t i = 0; i < 10; i++)
        assert_int_equal(d[i], pattern(n - 10 + i));
    free(d);
    /* Upload 7 was asked after 6, and is answered: 6 sent nothing. */
    assert_int_equal(upload_nchunks(fs, 6), 0);
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_UPLOADED), 2);
    assert_int_equal(tgw_counters_bytes(&w->counters, TGW_COUNT_UPLOADED),
                     n - a + 10);
    worker_stop(w);
    fs_free(fs);
}

static void test_worker_data__upload_in_chunks_and_missing(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wa", NULL, NULL);
    const size_t n = 9 * MIB + 7;
    uint8_t *d;
    size_t len;

    (void)state;
    fs_wait_registered(fs, "wa", 1, NULL, 0);
    fs_assign(fs, "wa", "big", "test.bytes", "9437191", NULL, 0);
    assert_true(fs_result(fs, "big")->held);
    fs_upload(fs, "wa", 77, "big");
    fs_upload(fs, "wa", 78, "unknown");
    /* Results keep flowing while the upload goes out. */
    fs_assign(fs, "wa", "small", "test.bytes", "10", NULL, 0);
    d = upload_bytes(fs, 77, n, &len);
    assert_int_equal(len, n);
    assert_pattern(d, len);
    free(d);
    fs_wait_missing(fs, "unknown");
    assert_false(fs_result(fs, "small")->held);
    pthread_mutex_lock(&fs->mu);
    assert_true(fs->max_chunk_bytes_per_msg <= 4 * MIB);
    pthread_mutex_unlock(&fs->mu);
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_UPLOADED), 1);
    assert_int_equal(tgw_counters_bytes(&w->counters, TGW_COUNT_UPLOADED), n);
    worker_stop(w);
    fs_free(fs);
}

static void test_worker_data__session_end_drops_held_results(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wa", NULL, NULL);
    char addr[160], addr2[160];
    fetched f;

    (void)state;
    fs_wait_registered(fs, "wa", 1, addr, sizeof(addr));
    fs_assign(fs, "wa", "big", "test.bytes", "200000", NULL, 0);
    assert_true(fs_result(fs, "big")->held);
    f = raw_fetch(addr, NULL, "big");
    assert_int_equal(f.rc, TG_OK);
    free(f.data);
    fs_send(fs, "wa", NULL); /* the scheduler ends the stream */
    fs_wait_registered(fs, "wa", 2, addr2, sizeof(addr2));
    /* A new session, the same data service, an empty store. */
    assert_string_equal(addr, addr2);
    f = raw_fetch(addr, NULL, "big");
    assert_int_equal(f.rc, TG_ENOTFOUND);
    free(f.data);
    worker_stop(w);
    fs_free(fs);
}

static void test_worker_data__inline_only_workers(void **state)
{
    static const char *const none[] = {"--data-listen", "none", NULL};
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    fake_sched *fs0 = fs_start(NULL, 0); /* --inline-limit 0 */
    test_worker *w = worker_start(fs, "wn", NULL, none);
    test_worker *w0 = worker_start(fs0, "w0", NULL, NULL);
    char addr[160];
    const rec_result *r;

    (void)state;
    fs_wait_registered(fs, "wn", 1, addr, sizeof(addr));
    assert_string_equal(addr, "");
    fs_assign(fs, "wn", "big", "test.bytes", "300000", NULL, 0);
    r = fs_result(fs, "big");
    assert_false(r->held);
    assert_int_equal(r->len, 300000);
    assert_int_equal(r->size, 300000);
    assert_pattern(r->data, r->len);

    fs_wait_registered(fs0, "w0", 1, addr, sizeof(addr));
    assert_true(addr[0] != '\0');
    fs_assign(fs0, "w0", "big", "test.bytes", "300000", NULL, 0);
    r = fs_result(fs0, "big");
    assert_false(r->held);
    assert_int_equal(r->len, 300000);
    assert_int_equal(tgw_counters_n(&w0->counters, TGW_COUNT_HELD), 0);
    worker_stop(w0);
    worker_stop(w);
    fs_free(fs0);
    fs_free(fs);
}

static void test_worker_data__empty_result_is_one_empty_chunk(void **state)
{
    tgw_store *store = NULL;
    tgw_dataservice *ds = NULL;
    tgw_dataservice_opts o;
    tgw_counters c;
    char addr[64];
    uint8_t *data = malloc(1);
    fetched f;

    (void)state;
    tgw_counters_init(&c);
    assert_int_equal(tgw_store_new(&store), TG_OK);
    assert_int_equal(tgw_store_put(store, "empty", 5, data, 0, NULL), TG_OK);
    memset(&o, 0, sizeof(o));
    o.listen = "127.0.0.1:0";
    o.store = store;
    o.counters = &c;
    o.name = "ws";
    assert_int_equal(tgw_dataservice_start(&ds, &o), TG_OK);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tgw_dataservice_port(ds));
    f = raw_fetch(addr, NULL, "empty");
    assert_int_equal(f.rc, TG_OK);
    assert_int_equal(f.nchunks, 1);
    assert_int_equal(f.len, 0);
    assert_int_equal(f.size, 0);
    free(f.data);
    assert_int_equal(tgw_counters_n(&c, TGW_COUNT_SERVED), 1);
    tgw_dataservice_stop(ds);
    tgw_store_free(store);
}

/* The whole file at `path`, NUL-terminated (free()). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = malloc(1u << 16);
    size_t n;

    assert_non_null(fp);
    assert_non_null(buf);
    n = fread(buf, 1, (1u << 16) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void load_sec(const char *dir, const char *role, tg__rpc_sec *sec)
{
    char path[700];

    memset(sec, 0, sizeof(*sec));
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    sec->ca_pem = slurp(path);
    snprintf(path, sizeof(path), "%s/%s.pem", dir, role);
    sec->cert_pem = slurp(path);
    snprintf(path, sizeof(path), "%s/%s-key.pem", dir, role);
    sec->key_pem = slurp(path);
    sec->hint = NULL;
}

static void free_sec(tg__rpc_sec *sec)
{
    free((char *)sec->ca_pem);
    free((char *)sec->cert_pem);
    free((char *)sec->key_pem);
}

/* Worker certificates from taskgrid-certs can serve the data service;
 * one without the name, or a client-only one, is refused with a reason. */
static void check_server_certs(const tg__rpc_sec *worker)
{
    char why[300], *cert = NULL, *key = NULL;
    tg__certs_ca *ca = NULL;
    tg__certs_leaf leaf = {0};

    assert_int_equal(tg__tls_server_check(worker->cert_pem,
                                          TG_PROTO_WORKER_TLS_NAME, why,
                                          sizeof(why)),
                     TG_OK);
    assert_int_equal(
        tg__tls_server_check(worker->cert_pem, "[::1]", why, sizeof(why)),
        TG_ETLS);
    must_contain(why, "does not name '::1'");
    leaf.cn = "old worker";
    leaf.role = "worker";
    leaf.hosts = "127.0.0.1";
    leaf.validity.not_before_s = -60;
    leaf.validity.not_after_s = 3600;
    assert_int_equal(tg__certs_ca_new(&ca, "test CA", leaf.validity), TG_OK);
    assert_int_equal(tg__certs_issue(ca, &leaf, &cert, &key), TG_OK);
    assert_int_equal(tg__tls_server_check(cert, "127.0.0.1", why, sizeof(why)),
                     TG_ETLS);
    must_contain(why, "not a server certificate");
    free(cert);
    free(key);
    tg__certs_ca_free(ca);
}

/* A new cluster CA (in a directory of its own) and one certificate of
 * each role, loaded. */
typedef struct test_pki {
    tg__rpc_sec sched, worker, client, admin;
} test_pki;

static void pki_make(test_pki *p)
{
    const char *tmp = getenv("TEST_TMPDIR");
    tg__certs_dir_opts co = {0};
    char dir[600];

    snprintf(dir, sizeof(dir), "%s/certs-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    co.hosts = "localhost,127.0.0.1";
    assert_int_equal(tg__certs_write_dir(dir, &co), TG_OK);
    load_sec(dir, "scheduler", &p->sched);
    load_sec(dir, "worker", &p->worker);
    load_sec(dir, "client", &p->client);
    load_sec(dir, "admin", &p->admin);
}

static void pki_free(test_pki *p)
{
    free_sec(&p->sched);
    free_sec(&p->worker);
    free_sec(&p->client);
    free_sec(&p->admin);
}

/* A TLS fake scheduler and a worker (`extra` options) holding "big",
 * 150000 bytes; its data address in `addr`. */
static test_worker *tls_holder(const test_pki *p, fake_sched **fs,
                               const char *const *extra, char *addr, size_t cap)
{
    test_worker *w;

    *fs = fs_start(&p->sched, TG_PROTO_INLINE_LIMIT_DEFAULT);
    w = worker_start(*fs, "wt", &p->worker, extra);
    fs_wait_registered(*fs, "wt", 1, addr, cap);
    fs_assign(*fs, "wt", "big", "test.bytes", "150000", NULL, 0);
    assert_true(fs_result(*fs, "big")->held);
    return w;
}

/* A Fetch of "big" from `addr` with `sec` delivers its 150000 bytes. */
static void assert_fetches(const char *addr, const tg__rpc_sec *sec)
{
    fetched f = raw_fetch(addr, sec, "big");

    assert_int_equal(f.rc, TG_OK);
    assert_int_equal(f.len, 150000);
    assert_pattern(f.data, f.len);
    free(f.data);
}

/* A Fetch of "big" from `addr` with `sec` is refused, saying `a` and `b`. */
static void assert_refused(const char *addr, const tg__rpc_sec *sec,
                           const char *a, const char *b)
{
    fetched f = raw_fetch(addr, sec, "big");

    assert_int_equal(f.rc, TG_EPERM);
    must_contain(f.msg, a);
    must_contain(f.msg, b);
    free(f.data);
}

static void test_worker_data__tls_fetch_needs_the_worker_role(void **state)
{
    test_pki p;
    fake_sched *fs;
    test_worker *w;
    char addr[160];

    (void)state;
    pki_make(&p);
    w = tls_holder(&p, &fs, NULL, addr, sizeof(addr));
    assert_refused(addr, &p.client, "DataService.Fetch needs the worker role",
                   "role 'client' (the worker's operator can admit clients "
                   "with --data-clients)");
    assert_refused(addr, &p.admin, "needs the worker role", "role 'admin'");
    assert_fetches(addr, &p.worker);
    worker_stop(w);
    check_server_certs(&p.worker);
    fs_free(fs);
    pki_free(&p);
}

/* --data-clients: a client certificate may fetch too (clients fetching
 * held results directly); an admin one still may not. */
static void test_worker_data__data_clients_admits_the_client_role(void **state)
{
    const char *const extra[] = {"--data-clients", NULL};
    test_pki p;
    fake_sched *fs;
    test_worker *w;
    char addr[160];

    (void)state;
    pki_make(&p);
    w = tls_holder(&p, &fs, extra, addr, sizeof(addr));
    assert_fetches(addr, &p.client);
    assert_refused(addr, &p.admin, "needs the worker or client role",
                   "role 'admin'");
    assert_fetches(addr, &p.worker);
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_SERVED), 2);
    worker_stop(w);
    fs_free(fs);
    pki_free(&p);
}

static void test_worker_data__counters_line(void **state)
{
    tgw_counters c;
    char line[512];

    (void)state;
    tgw_counters_init(&c);
    tgw_counters_add(&c, TGW_COUNT_HELD, 100);
    tgw_counters_add(&c, TGW_COUNT_HELD, 23);
    tgw_counters_add(&c, TGW_COUNT_SERVED, 7);
    tgw_counters_add(&c, TGW_COUNT_UPLOADED, 0);
    tgw_counters_add_bytes(&c, TGW_COUNT_UPLOADED, 5);
    tgw_counters_format(&c, line, sizeof(line));
    assert_string_equal(line, "data: held 2 (123 bytes), served 1 (7 bytes), "
                              "fetched 0 (0 bytes), local 0 (0 bytes), "
                              "uploaded 1 (5 bytes)");
}

static int parse(tgw_config *cfg, const char *a, const char *b, const char *c,
                 const char *d)
{
    char *argv[6] = {"taskgrid-worker", (char *)a, (char *)b,
                     (char *)c,         (char *)d, NULL};
    int argc = 1;

    while (argc < 5 && argv[argc] != NULL)
        argc++;
    return tgw_config_parse(cfg, argc, argv);
}

static void test_worker_data__options(void **state)
{
    tgw_config cfg;

    (void)state;
    assert_int_equal(parse(&cfg, "tcp://127.0.0.1:1", NULL, NULL, NULL), TG_OK);
    assert_string_equal(cfg.data_listen, "127.0.0.1:0");
    assert_null(cfg.data_address);
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://localhost:1", NULL, NULL, NULL), TG_OK);
    assert_string_equal(cfg.data_listen, "127.0.0.1:0");
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://10.1.2.3:1", NULL, NULL, NULL), TG_OK);
    assert_string_equal(cfg.data_listen, "0.0.0.0:0");
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--data-listen", "none", NULL),
                     TG_OK);
    assert_null(cfg.data_listen);
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--data-listen=10.0.0.5:7000",
                           "--data-address", "w1.example:7000"),
                     TG_OK);
    assert_string_equal(cfg.data_listen, "10.0.0.5:7000");
    assert_string_equal(cfg.data_address, "w1.example:7000");
    tgw_config_free(&cfg);

    assert_int_equal(
        parse(&cfg, "tcp://h:1", "--data-listen", "tcp://x:1", NULL),
        TG_EINVAL);
    must_contain(tg_error_last(), "without a scheme");
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--data-listen", "x:99999", NULL),
                     TG_EINVAL);
    must_contain(tg_error_last(), "HOST:PORT");
    tgw_config_free(&cfg);
    assert_int_equal(
        parse(&cfg, "tcp://h:1", "--data-listen=none", "--data-address", "x:1"),
        TG_EINVAL);
    must_contain(tg_error_last(), "--data-listen none");
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", NULL, NULL, NULL), TG_OK);
    assert_false(cfg.data_clients);
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--data-clients", NULL, NULL),
                     TG_OK);
    assert_true(cfg.data_clients);
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--data-clients=yes", NULL, NULL),
                     TG_EINVAL);
    must_contain(tg_error_last(), "--data-clients takes no value");
    tgw_config_free(&cfg);
    assert_int_equal(
        parse(&cfg, "tcp://h:1", "--data-listen=none", "--data-clients", NULL),
        TG_EINVAL);
    must_contain(tg_error_last(), "--data-clients needs a data service");
    tgw_config_free(&cfg);
    must_contain(tgw_config_usage(), "--data-clients");
    must_contain(tgw_config_usage(), "--data-listen HOST:PORT");
    must_contain(tgw_config_usage(), "--data-address HOST:PORT");
}

/* The real program: its help names the options, and its last lines give
 * the data service's address and the counters. */
static void test_worker_data__program_logs_counters_at_exit(void **state)
{
    char *argv[] = {th_worker_bin, "tcp://127.0.0.1:1", "--name",
                    "wx",          "--log-level",       "info",
                    NULL};
    char *help[] = {th_worker_bin, "--help", NULL};
    th_proc p;
    char *err, out[8192];
    ssize_t n;

    (void)state;
    th_find_bins();
    p = th_spawn(help, true, false);
    assert_int_equal(th_wait_exit(&p, WAIT_MS), 0);
    n = read(p.out_fd, out, sizeof(out) - 1);
    out[n > 0 ? n : 0] = '\0';
    th_close(&p);
    must_contain(out, "--data-listen HOST:PORT");
    must_contain(out, "--data-address HOST:PORT");

    p = th_spawn(argv, false, true);
    th_sleep_ms(500);
    kill(p.pid, SIGTERM);
    assert_int_equal(th_wait_exit(&p, WAIT_MS), 0);
    err = th_read_err(&p);
    th_close(&p);
    must_contain(err, "data service on 127.0.0.1:0 (advertised as "
                      "127.0.0.1:");
    must_contain(err, "INFO  worker: data: held 0 (0 bytes), served 0 (0 "
                      "bytes), fetched 0 (0 bytes), local 0 (0 bytes), "
                      "uploaded 0 (0 bytes)");
    free(err);
}

/* ------------------------------------------------------------------ */
/* Memory management                                                   */
/* ------------------------------------------------------------------ */

typedef bool (*mem_pred)(const taskgrid_v1_MemoryReport *r);

/* Wait for a memory report of `name` for which `ok` holds; a copy. */
static taskgrid_v1_MemoryReport fs_wait_mem(fake_sched *fs, const char *name,
                                            mem_pred ok, const char *what)
{
    struct timespec dl = tg__deadline_ms(WAIT_MS);
    taskgrid_v1_MemoryReport r;

    pthread_mutex_lock(&fs->mu);
    for (;;) {
        int c = conn_of_locked(fs, name);

        if (c >= 0 && fs->conns[c].nmem > 0 && ok(&fs->conns[c].mem)) {
            r = fs->conns[c].mem;
            break;
        }
        if (pthread_cond_timedwait(&fs->cv, &fs->mu, &dl) != 0) {
            pthread_mutex_unlock(&fs->mu);
            fail_msg("worker %s never reported %s", name, what);
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return r;
}

static bool mem_spilled3(const taskgrid_v1_MemoryReport *r)
{
    return r->spilled >= 3 * (2 * MIB + 1) && r->memory <= 4 * MIB;
}

static bool mem_paused(const taskgrid_v1_MemoryReport *r)
{
    return r->paused;
}

static bool mem_unpaused_empty(const taskgrid_v1_MemoryReport *r)
{
    return !r->paused && r->memory == 0 && r->spilled == 0;
}

static size_t count_files(const char *dir)
{
    char cmd[600], line[64] = "";
    FILE *p;

    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    if (fgets(line, sizeof(line), p) == NULL)
        line[0] = '\0';
    pclose(p);
    return (size_t)strtoul(line, NULL, 10);
}

static void test_worker_data__memory_spills_and_reads_back(void **state)
{
    char dir[] = "/tmp/tg-spill-test-XXXXXX", opt[600], addr[160], want[64];
    const char *x[] = {
        "--memory-limit", "8MiB", "--memory-target", "0.5", opt, NULL};
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w;
    const size_t n = 2 * MIB + 1;
    dep_def dep = {"r0", n, {NULL}, 1};
    taskgrid_v1_MemoryReport r;
    const char *keys[4] = {"r0", "r1", "r2", "r3"};
    uint8_t *d;
    size_t len;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(opt, sizeof(opt), "--spill-dir=%s", dir);
    w = worker_start(fs, "wm", NULL, x);
    fs_wait_registered(fs, "wm", 1, addr, sizeof(addr));
    for (int i = 0; i < 4; i++) {
        fs_assign(fs, "wm", keys[i], "test.bytes", "2097153", NULL, 0);
        assert_true(fs_result(fs, keys[i])->held);
    }
    /* 8 MiB held, 4 MiB allowed in memory: the three oldest spill. */
    r = fs_wait_mem(fs, "wm", mem_spilled3, "three results spilled");
    assert_int_equal(r.limit, 8 * MIB);
    assert_int_equal(r.spilled, 3 * n);
    assert_int_equal(r.memory, n);
    assert_false(r.paused);
    assert_int_equal(count_files(dir), 3);

    /* Spilled or not, every way out gives the exact bytes. */
    for (int i = 0; i < 4; i++) {
        fetched f = raw_fetch(addr, NULL, keys[i]);

        assert_int_equal(f.rc, TG_OK);
        assert_int_equal(f.len, n);
        assert_int_equal(f.nchunks, 3);
        assert_pattern(f.data, f.len);
        free(f.data);
    }
    fs_upload(fs, "wm", 5, "r1");
    d = upload_bytes(fs, 5, n, &len);
    assert_int_equal(len, n);
    assert_pattern(d, len);
    free(d);
    dep.holders[0] = addr;
    expected_digest(n, want, sizeof(want));
    fs_assign(fs, "wm", "use", "test.digest", "", &dep, 1);
    assert_null(fs_result(fs, "use")->err_type);
    assert_string_equal((const char *)fs_result(fs, "use")->data, want);
    assert_int_equal(tgw_counters_n(&w->counters, TGW_COUNT_LOCAL), 1);

    /* Freed: the files go too. */
    for (int i = 0; i < 4; i++)
        fs_free_key(fs, "wm", keys[i]);
    fs_wait_mem(fs, "wm", mem_unpaused_empty, "an empty store");
    assert_int_equal(count_files(dir), 0);
    worker_stop(w);
    fs_free(fs);
    rmdir(dir);
}

static void test_worker_data__memory_pause_reported_and_cleared(void **state)
{
    const char *x[] = {"--memory-limit",
                       "4MiB",
                       "--memory-target",
                       "none",
                       "--memory-pause",
                       "0.5",
                       NULL};
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wp", NULL, x);
    taskgrid_v1_MemoryReport r;

    (void)state;
    fs_wait_registered(fs, "wp", 1, NULL, 0);
    fs_assign(fs, "wp", "a", "test.bytes", "1048576", NULL, 0);
    assert_true(fs_result(fs, "a")->held);
    fs_assign(fs, "wp", "b", "test.bytes", "2097152", NULL, 0);
    assert_true(fs_result(fs, "b")->held);
    /* 3 MiB in memory, over half of 4 MiB; nothing spills. */
    r = fs_wait_mem(fs, "wp", mem_paused, "paused");
    assert_int_equal(r.memory, 3 * MIB);
    assert_int_equal(r.spilled, 0);
    assert_int_equal(r.limit, 4 * MIB);
    fs_free_key(fs, "wp", "b");
    fs_free_key(fs, "wp", "a");
    fs_wait_mem(fs, "wp", mem_unpaused_empty, "unpaused");
    worker_stop(w);
    fs_free(fs);
}

static void test_worker_data__memory_result_too_large(void **state)
{
    const char *x[] = {"--memory-limit", "1MiB", "--memory-target", "none",
                       NULL};
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    test_worker *w = worker_start(fs, "wt", NULL, x);
    const rec_result *r;

    (void)state;
    fs_wait_registered(fs, "wt", 1, NULL, 0);
    /* 2 MiB: over the limit, and no disk to spill to. */
    fs_assign(fs, "wt", "huge", "test.bytes", "2097152", NULL, 0);
    r = fs_result(fs, "huge");
    assert_int_equal(r->state, taskgrid_v1_TaskState_TASK_STATE_ERRED);
    assert_string_equal(r->err_type, "tg.ResultTooLarge");
    must_contain(r->err_msg, "2097152 bytes");
    must_contain(r->err_msg, "memory limit 1048576 bytes");
    /* The worker goes on. */
    fs_assign(fs, "wt", "next", "test.bytes", "500000", NULL, 0);
    r = fs_result(fs, "next");
    assert_int_equal(r->state, taskgrid_v1_TaskState_TASK_STATE_MEMORY);
    assert_true(r->held);
    worker_stop(w);
    fs_free(fs);
}

static void test_worker_data__memory_terminate_exits(void **state)
{
    fake_sched *fs = fs_start(NULL, TG_PROTO_INLINE_LIMIT_DEFAULT);
    char *argv[] = {th_worker_bin,
                    fs->addr,
                    "--name",
                    "wx",
                    "--memory-limit",
                    "2MiB",
                    "--memory-target",
                    "none",
                    "--memory-terminate",
                    "0.5",
                    NULL};
    th_proc p;
    char *err, *input = malloc(1500001);
    int st;

    (void)state;
    assert_non_null(input);
    memset(input, 'x', 1500000);
    input[1500000] = '\0';
    th_find_bins();
    argv[0] = th_worker_bin;
    p = th_spawn(argv, false, true);
    fs_wait_registered(fs, "wx", 1, NULL, 0);
    /* Held (over the inline limit), 1.5 MB in memory > 0.5 of 2 MiB. */
    fs_assign(fs, "wx", "big", "tg.echo", input, NULL, 0);
    free(input);
    st = th_wait_exit(&p, WAIT_MS);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), TGW_EXIT_MEMORY);
    err = th_read_err(&p);
    th_close(&p);
    must_contain(err, "over the terminate fraction 0.50 of the memory limit "
                      "2097152 bytes; exiting with status 3");
    free(err);
    fs_free(fs);
}

static void test_worker_data__memory_options(void **state)
{
    tgw_config cfg;
    uint64_t v;

    (void)state;
    assert_int_equal(tgw_memory_parse_limit("--memory-limit", "4GiB", &v),
                     TG_OK);
    assert_int_equal(v, 4ull << 30);
    assert_int_equal(tgw_memory_parse_limit("--memory-limit", "500MB", &v),
                     TG_OK);
    assert_int_equal(v, 500000000ull);
    assert_int_equal(tgw_memory_parse_limit("--memory-limit", "1.5kib", &v),
                     TG_OK);
    assert_int_equal(v, 1536);
    assert_int_equal(tgw_memory_parse_limit("--memory-limit", "none", &v),
                     TG_OK);
    assert_int_equal(v, 0);
    assert_int_equal(tgw_memory_parse_limit("--memory-limit", "auto", &v),
                     TG_OK);
    assert_true(v > 0);
    assert_int_equal(v, tgw_memory_total());
    assert_int_equal(tgw_memory_parse_limit("--memory-limit", "4XB", &v),
                     TG_EINVAL);
    must_contain(tg_error_last(), "--memory-limit must be bytes");

    assert_int_equal(parse(&cfg, "tcp://h:1", NULL, NULL, NULL), TG_OK);
    assert_int_equal(cfg.memory_limit, tgw_memory_total());
    assert_true(cfg.memory_target == 0.6 && cfg.memory_pause == 0.8 &&
                cfg.memory_terminate == 0.95);
    assert_null(cfg.spill_dir);
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--memory-limit=64MiB",
                           "--memory-pause=none", "--spill-dir=/x"),
                     TG_OK);
    assert_int_equal(cfg.memory_limit, 64 * MIB);
    assert_true(cfg.memory_pause == 0);
    assert_string_equal(cfg.spill_dir, "/x");
    tgw_config_free(&cfg);
    assert_int_equal(parse(&cfg, "tcp://h:1", "--memory-target", "1.5", NULL),
                     TG_EINVAL);
    must_contain(tg_error_last(), "--memory-target must be a fraction");
    tgw_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_data__large_results_are_held_and_served),
        cmocka_unit_test(test_worker_data__inputs_local_peer_and_in_order),
        cmocka_unit_test(test_worker_data__no_holder_delivers_fetch_failed),
        cmocka_unit_test(test_worker_data__corrupt_or_partial_inputs_fail),
        cmocka_unit_test(test_worker_data__chunks_in_any_field_order),
        cmocka_unit_test(test_worker_data__upload_in_chunks_and_missing),
        cmocka_unit_test(test_worker_data__upload_ranges),
        cmocka_unit_test(test_worker_data__session_end_drops_held_results),
        cmocka_unit_test(test_worker_data__inline_only_workers),
        cmocka_unit_test(test_worker_data__empty_result_is_one_empty_chunk),
        cmocka_unit_test(test_worker_data__tls_fetch_needs_the_worker_role),
        cmocka_unit_test(test_worker_data__data_clients_admits_the_client_role),
        cmocka_unit_test(test_worker_data__counters_line),
        cmocka_unit_test(test_worker_data__options),
        cmocka_unit_test(test_worker_data__program_logs_counters_at_exit),
        cmocka_unit_test(test_worker_data__memory_spills_and_reads_back),
        cmocka_unit_test(test_worker_data__memory_pause_reported_and_cleared),
        cmocka_unit_test(test_worker_data__memory_result_too_large),
        cmocka_unit_test(test_worker_data__memory_terminate_exits),
        cmocka_unit_test(test_worker_data__memory_options),
    };

    tg__log_set_component("worker");
    tg__log_set_level(getenv("TG_TEST_DEBUG") ? "debug" : "warn");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
