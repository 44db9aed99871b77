/* SPDX-License-Identifier: Apache-2.0
 *
 * link.c: the worker's session with the scheduler (see link.h). Threads:
 * the caller's thread owns the session (connect, register, receive and
 * dispatch, shutdown); one sender thread per session turns the outbox into
 * batched WorkerMessages (results, handed-back keys, upload chunks) and
 * heartbeats; executor threads fetch held inputs (fetcher.h), run tasks
 * and push outcomes into the outbox, keeping large results in the store;
 * the data service (dataservice.h) serves the store to peers on a thread
 * of its own. Depends on the transport's client side, the codec, util/crc.h,
 * the executor, the outbox, the store, the fetcher, the data service and
 * the SDK logger.
 *
 * Sessions do not outlive their stream: when it fails (the scheduler
 * restarted or the network broke) the scheduler has already given this
 * worker's tasks to others and counts its held results as lost, so queued
 * tasks are dropped, running ones are cancelled, unsent results are
 * discarded and the store is emptied before reconnecting.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "advertise.h"
#include "copy.h"
#include "dataservice.h"
#include "executor.h"
#include "fetcher.h"
#include "link.h"
#include "memlink.h"
#include "methods.h"
#include "outbox.h"
#include "registry.h"
#include "secede.h"
#include "store.h"
#include "task.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/crc.h"
#include "util/error.h"
#include "util/log.h"
#include "util/tls.h"
#include "wire.h"

#define AGENT "taskgrid-worker/0.1 (C)"

/* Receive poll: also how often the session notices a stop request. */
#define RECV_POLL_MS 200
/* A send gRPC has not accepted after this long means a wedged stream. */
#define SEND_TIMEOUT_MS 10000
/* Registering includes connecting; an unreachable host must not delay a
 * stop request for long. */
#define REGISTER_TIMEOUT_MS 5000
/* Batch caps: well under the 65,535 entries and the 64 MiB message limit
 * of the protocol, and large enough to amortise a message's fixed cost. */
#define BATCH_MAX_ITEMS 4096
#define BATCH_MAX_BYTES (4u * 1024u * 1024u)
/* One message is at most the protocol's limit: a batch that would pass it
 * with its next result ends before that result (see outbox.c). */
_Static_assert(BATCH_MAX_BYTES <= TGW_RESULT_MAX_BYTES, "batch cap");
/* Upload chunks ride beside a batch of results (see tgw_outbox_take). */
_Static_assert(BATCH_MAX_BYTES + TGW_BATCH_CHUNK_BYTES <= TGW_RESULT_MAX_BYTES,
               "batch and chunks cap");
_Static_assert(TGW_CHUNK_MAX == TG_PROTO_CHUNK_MAX, "chunk size");
/* After a stop signal: how long running tasks may take to finish. */
#define STOP_GRACE_MS 10000
/* How long to wait for unsent results to go out before closing. */
#define FLUSH_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* While the scheduler stays unreachable, warn at most this often. */
#define WARN_EVERY_MS 5000

typedef struct wlink {
    const tgw_config *cfg;
    const tg__rpc_sec *sec;
    const tg_registry *reg;
    atomic_bool *stop;
    tg__exec *exec;
    tgw_outbox *ob;
    int64_t start_ms;
    atomic_int heartbeat_ms;

    /* The data plane (see store.h, fetcher.h, dataservice.h). */
    tgw_store *store;
    tgw_memory *mem; /* spills the store, pauses (memory.h) */
    tgw_fetcher *fetcher;
    tgw_copier *copier;     /* copies asked by the scheduler (copy.h) */
    tgw_dataservice *ds;    /* NULL with --data-listen none */
    char data_address[600]; /* advertised; "" without a data service */
    tgw_counters *counters; /* the caller's, or own_counters */
    tgw_counters own_counters;
    /* Results longer than this are held (0: all inline). From the
     * scheduler's first message; read by executor threads. */
    atomic_uint_fast64_t inline_limit;
    bool first_message; /* the session's first message is still to come */

    /* The current session. */
    tg__chan *ch;
    tg__cstream *st;
    pthread_t sender;
    bool sender_started;
    atomic_bool sender_stop;
    atomic_bool send_failed;
    bool registered; /* the scheduler answered our registration */
    bool draining;   /* the scheduler asked us to drain */
    bool closing;    /* a signal asked us to stop */
    int64_t close_deadline;
    char why[512]; /* why the session ended */

    /* Scratch reused across messages (receive side / sender side). */
    tg_task_ctx **tasks;
    size_t ntasks_cap;
    tgw_dep_spec *deps;
    size_t ndeps_cap;
    taskgrid_v1_TaskResult *results;
    size_t nresults_cap;
    taskgrid_v1_DataChunk *chunks;
    size_t nchunks_cap;
} wlink;

static void set_why(wlink *l, const char *fmt, const char *detail)
{
    snprintf(l->why, sizeof(l->why), fmt, detail);
}

static int64_t uptime_ms(const wlink *l)
{
    return tg__now_ms() - l->start_ms;
}

static tgw_bytes bytes_of(tg_pbbuf b)
{
    tgw_bytes r = {b.ptr, b.len};

    return r;
}

/* Grow a scratch array to hold `n` elements of `size` bytes. */
static int reserve(void *arr, size_t *cap, size_t n, size_t size)
{
    return tg__array_grow_to(arr, cap, n, size, 64, SIZE_MAX);
}

/* ------------------------------------------------------------------ */
/* Outgoing                                                            */
/* ------------------------------------------------------------------ */

static int send_message(wlink *l, const taskgrid_v1_WorkerMessage *m,
                        int64_t timeout_ms)
{
    uint8_t *buf;
    size_t len;
    int rc;

    if (tg__wire_encode(taskgrid_v1_WorkerMessage_fields, m, &buf, &len) !=
        TG_OK)
        return tg__error_set(TG_EINTERNAL, "%s", tg_error_last());
    rc = tg__cstream_send(l->st, buf, len, timeout_ms);
    free(buf);
    return rc;
}

static int send_registration(wlink *l)
{
    const tgw_config *c = l->cfg;
    size_t nf = tgw_registry_count(l->reg);
    taskgrid_v1_WorkerMessage m;
    taskgrid_v1_Register *r = &m.registration;
    char **funcs = calloc(nf ? nf : 1, sizeof(*funcs));
    taskgrid_v1_Resource *res =
        calloc(c->nresources ? c->nresources : 1, sizeof(*res));
    int rc;

    if (funcs == NULL || res == NULL) {
        free(funcs);
        free(res);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < nf; i++)
        funcs[i] = (char *)tgw_registry_at(l->reg, i)->name;
    for (size_t i = 0; i < c->nresources; i++) {
        res[i].name = tg_pbbuf_str(c->resources[i].name);
        res[i].amount = c->resources[i].amount;
    }
    /* The generated _init_zero macros predate tg_pbbuf: zero by hand. */
    memset(&m, 0, sizeof(m));
    m.has_registration = true;
    r->name = tg_pbbuf_str(c->name);
    r->nthreads = c->nthreads;
    r->functions_count = (pb_size_t)nf;
    r->functions = funcs;
    r->resources_count = (pb_size_t)c->nresources;
    r->resources = res;
    r->agent = tg_pbbuf_str(AGENT);
    r->pid = (uint32_t)getpid();
    r->host = tg_pbbuf_str(c->host);
    r->launch_id = tg_pbbuf_str(c->launch_id);
    r->data_address = tg_pbbuf_str(l->data_address);
    m.uptime_ms = (uint64_t)uptime_ms(l);
    rc = send_message(l, &m, REGISTER_TIMEOUT_MS);
    free(funcs);
    free(res);
    return rc;
}

/* The batch's upload chunks as DataChunks pointing into the store (or
 * the batch's copies of spilled ones); a piece that could not be read
 * makes the key missing instead. Returns the number filled. */
static size_t fill_chunks(wlink *l, const tgw_batch *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->nchunks; i++) {
        const tgw_chunk *c = &b->chunks[i];
        taskgrid_v1_DataChunk *d = &l->chunks[n];

        if (c->failed) {
            TG_LOG_WARN("upload of '%s': %s", c->h->key, tg_error_last());
            tgw_outbox_push_missing(l->ob, c->h->key, c->h->key_len);
            continue;
        }
        memset(d, 0, sizeof(*d));
        d->key = tg_pbbuf_mem(c->h->key, c->h->key_len);
        d->offset = c->offset;
        d->data = tg_pbbuf_mem(c->bytes, c->len);
        d->size = c->h->len;
        d->codec = tg_pbbuf_str(c->h->codec);
        d->crc32 = tg__crc32(c->bytes, c->len);
        d->upload = c->upload;
        n++;
    }
    return n;
}

/* One WorkerMessage for a batch; an empty batch is a heartbeat. */
static int send_batch(wlink *l, tgw_batch *b)
{
    taskgrid_v1_WorkerMessage m;
    size_t i = 0;

    if (reserve(&l->results, &l->nresults_cap, b->nresults,
                sizeof(*l->results)) != 0 ||
        reserve(&l->chunks, &l->nchunks_cap, b->nchunks, sizeof(*l->chunks)) !=
            0)
        return tg__error_set(TG_ENOMEM, "out of memory");
    memset(&m, 0, sizeof(m));
    for (const tg_task_ctx *t = b->results; t != NULL; t = t->next, i++) {
        taskgrid_v1_TaskResult *r = &l->results[i];

        memset(r, 0, sizeof(*r));
        r->key = tg_pbbuf_mem(t->key, t->key_len);
        r->attempt = t->attempt;
        r->run_us = t->run_us;
        if (t->erred) {
            r->state = taskgrid_v1_TaskState_TASK_STATE_ERRED;
            r->has_error = true;
            r->error.type = tg_pbbuf_str(t->err_type);
            r->error.message = tg_pbbuf_str(t->err_message);
            r->error.traceback = tg_pbbuf_str(t->err_traceback);
        } else {
            r->state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
            /* A held result's bytes stay in the store. */
            r->data = tg_pbbuf_mem(t->data, t->held ? 0 : t->data_len);
            r->size = t->data_len;
            r->held = t->held;
            r->codec = tg_pbbuf_str(tgw_task_result_codec(t));
        }
    }
    m.chunks_count = (pb_size_t)fill_chunks(l, b);
    m.chunks = m.chunks_count ? l->chunks : NULL;
    tgw_memlink_fill(l->mem, &m);
    tgw_copier_fill(l->copier, &m);
    tgw_secede_fill(b, &m);
    m.results_count = (pb_size_t)b->nresults;
    m.results = b->nresults ? l->results : NULL;
    m.released_count = (pb_size_t)b->nreleased;
    m.released = b->released;
    m.missing_count = (pb_size_t)b->nmissing;
    m.missing = b->missing;
    m.uptime_ms = (uint64_t)uptime_ms(l);
    return send_message(l, &m, SEND_TIMEOUT_MS);
}

static bool batch_empty(const tgw_batch *b)
{
    return b->nresults == 0 && b->nreleased == 0 && b->nmissing == 0 &&
           b->nchunks == 0 && b->nsecessions == 0;
}

/* Uploads count once each (at the result's last chunk, so a result
 * asked for by ranges counts once), bytes chunk by chunk. */
static void count_uploads(wlink *l, const tgw_batch *b)
{
    for (size_t i = 0; i < b->nchunks; i++) {
        if (b->chunks[i].last)
            tgw_counters_add(l->counters, TGW_COUNT_UPLOADED, 0);
        tgw_counters_add_bytes(l->counters, TGW_COUNT_UPLOADED,
                               b->chunks[i].len);
    }
}

/* The sender: whatever waits in the outbox goes out as one message; when
 * nothing was sent for a heartbeat interval, an empty one goes out. */
static void *sender_main(void *arg)
{
    wlink *l = arg;
    int64_t last = tg__now_ms();

    while (!atomic_load(&l->sender_stop)) {
        int64_t hb = atomic_load(&l->heartbeat_ms);
        int64_t wait = last + hb - tg__now_ms();
        tgw_batch b;
        int rc;

        tgw_outbox_take(l->ob, &b, BATCH_MAX_ITEMS, BATCH_MAX_BYTES,
                        wait > 0 ? wait : 0);
        if (atomic_load(&l->sender_stop) ||
            (batch_empty(&b) && !tgw_memory_report_due(l->mem) &&
             !tgw_copier_due(l->copier) && tg__now_ms() - last < hb)) {
            tgw_outbox_batch_free(&b);
            tgw_outbox_done(l->ob);
            continue;
        }
        rc = send_batch(l, &b);
        if (rc == TG_OK && !batch_empty(&b)) {
            count_uploads(l, &b);
            TG_LOG_DEBUG("sent %zu results, %zu released keys, %zu missing "
                         "keys and %zu upload chunks",
                         b.nresults, b.nreleased, b.nmissing, b.nchunks);
        }
        tgw_outbox_batch_free(&b);
        tgw_outbox_done(l->ob);
        if (rc != TG_OK) {
            TG_LOG_DEBUG("send failed: %s", tg_error_last());
            atomic_store(&l->send_failed, true);
            break;
        }
        last = tg__now_ms();
    }
    return NULL;
}

static void stop_sender(wlink *l)
{
    if (!l->sender_started)
        return;
    atomic_store(&l->sender_stop, true);
    tgw_outbox_wake(l->ob);
    pthread_join(l->sender, NULL);
    l->sender_started = false;
}

/* ------------------------------------------------------------------ */
/* Incoming                                                            */
/* ------------------------------------------------------------------ */

static void release_key(wlink *l, const char *key)
{
    if (tgw_outbox_push_released(l->ob, key) != TG_OK)
        TG_LOG_WARN("cannot hand task '%s' back: out of memory", key);
}

static void accept_assignments(wlink *l, const taskgrid_v1_SchedulerMessage *m)
{
    size_t n = 0, nreleased = 0;
    bool refuse = l->closing || l->draining;

    if (reserve(&l->tasks, &l->ntasks_cap, m->assign_count,
                sizeof(*l->tasks)) != 0) {
        refuse = true;
        TG_LOG_WARN("out of memory: handing %u tasks back",
                    (unsigned)m->assign_count);
    }
    for (pb_size_t i = 0; i < m->assign_count; i++) {
        const taskgrid_v1_Assignment *a = &m->assign[i];
        tgw_task_spec spec;
        tg_task_ctx *t = NULL;

        if (!refuse && reserve(&l->deps, &l->ndeps_cap, a->deps_count,
                               sizeof(*l->deps)) == 0) {
            for (pb_size_t d = 0; d < a->deps_count; d++) {
                const taskgrid_v1_TaskResult *r = &a->deps[d];

                l->deps[d].data = bytes_of(r->data);
                l->deps[d].codec = bytes_of(r->codec);
                l->deps[d].key = bytes_of(r->key);
                l->deps[d].size = r->size;
                l->deps[d].holders = (const char *const *)r->holders;
                l->deps[d].nholders = r->holders_count;
            }
            memset(&spec, 0, sizeof(spec));
            spec.key = bytes_of(a->key);
            spec.func = bytes_of(a->func);
            spec.input = bytes_of(a->input);
            spec.codec = bytes_of(a->codec);
            spec.deps = l->deps;
            spec.ndeps = a->deps_count;
            spec.attempt = a->attempt;
            spec.priority = a->priority;
            if (tgw_task_new(&t, &spec, l->reg) != TG_OK)
                t = NULL;
        }
        if (t != NULL) {
            l->tasks[n++] = t;
        } else {
            /* Refused (stopping, draining, out of memory): hand it back
             * so the scheduler places it elsewhere at once. */
            char *key = tg_pbbuf_strdup(a->key);

            if (key != NULL) {
                release_key(l, key);
                free(key);
            }
            nreleased++;
        }
    }
    if (nreleased)
        TG_LOG_DEBUG("handed %zu assigned tasks back (%s)", nreleased,
                     l->closing    ? "stopping"
                     : l->draining ? "draining"
                                   : "out of memory");
    if (n == 0)
        return;
    if (tg__exec_submit(l->exec, l->tasks, n) != TG_OK) {
        TG_LOG_WARN("%s: handing %zu tasks back", tg_error_last(), n);
        for (size_t i = 0; i < n; i++) {
            release_key(l, l->tasks[i]->key);
            tgw_task_free(l->tasks[i]);
        }
        return;
    }
    TG_LOG_DEBUG("queued %zu tasks", n);
}

/* The scheduler's first message sets the inline limit; only a worker
 * with a data service holds results (0 keeps everything inline). */
static void set_inline_limit(wlink *l, const taskgrid_v1_SchedulerMessage *m)
{
    uint64_t limit = l->ds != NULL ? m->inline_limit : 0;

    if (!l->first_message && m->inline_limit == 0)
        return; /* later messages leave it as it is */
    l->first_message = false;
    atomic_store_explicit(&l->inline_limit, limit, memory_order_relaxed);
    if (limit > 0)
        TG_LOG_DEBUG("results over %llu bytes stay here (served at %s)",
                     (unsigned long long)limit, l->data_address);
}

/* Uploads (before frees: a key uploaded and freed in one message still
 * goes out, its bytes kept alive by the upload's reference), then frees. */
static void data_requests(wlink *l, const taskgrid_v1_SchedulerMessage *m)
{
    for (pb_size_t i = 0; i < m->upload_count; i++) {
        const taskgrid_v1_Upload *u = &m->upload[i];
        tgw_held *h =
            tgw_store_get(l->store, (const char *)u->key.ptr, u->key.len);

        if (h != NULL) {
            if (tgw_outbox_push_upload(l->ob, u->id, h, u->offset, u->length) !=
                TG_OK)
                TG_LOG_WARN("cannot upload '%.*s': out of memory",
                            (int)u->key.len, (const char *)u->key.ptr);
        } else if (tgw_outbox_push_missing(l->ob, (const char *)u->key.ptr,
                                           u->key.len) != TG_OK) {
            TG_LOG_WARN("cannot report '%.*s' missing: out of memory",
                        (int)u->key.len, (const char *)u->key.ptr);
        }
    }
    for (pb_size_t i = 0; i < m->free_count; i++)
        tgw_store_remove(l->store, m->free[i], strlen(m->free[i]));
}

static int handle_message(wlink *l, const uint8_t *buf, size_t len)
{
    taskgrid_v1_SchedulerMessage m;

    if (tg__wire_decode(taskgrid_v1_SchedulerMessage_fields, &m, buf, len) !=
        TG_OK)
        return tg__error_set(TG_EPROTO, "bad message from the scheduler: %s",
                             tg_error_last());
    if (m.worker_name.len > 0 && !l->registered) {
        char *name = tg_pbbuf_strdup(m.worker_name);

        l->registered = true;
        TG_LOG_INFO("registered as %.*s", (int)m.worker_name.len,
                    (const char *)m.worker_name.ptr);
        if (l->ds != NULL && name != NULL)
            tgw_dataservice_set_name(l->ds, name);
        free(name);
    }
    set_inline_limit(l, &m);
    if (m.heartbeat_ms > 0) {
        uint32_t hb = m.heartbeat_ms;

        atomic_store(&l->heartbeat_ms, (int)(hb < 10        ? 10
                                             : hb > 3600000 ? 3600000
                                                            : hb));
    }
    /* Cancels and steals first: they refer to earlier assignments. If a
     * key is cancelled and assigned anew in one message, the new run must
     * live (the reverse order would leave the scheduler waiting forever). */
    for (pb_size_t i = 0; i < m.cancel_count; i++) {
        size_t n = tg__exec_cancel(l->exec, m.cancel[i]);

        TG_LOG_DEBUG("cancel '%s': %zu task%s", m.cancel[i], n,
                     n == 1 ? "" : "s");
    }
    /* Steals: hand back what has not started; running ones report. */
    for (pb_size_t i = 0; i < m.steal_count; i++) {
        size_t n = tg__exec_steal(l->exec, m.steal[i]);

        if (n > 0)
            release_key(l, m.steal[i]);
        TG_LOG_DEBUG("steal '%s': %s", m.steal[i],
                     n > 0 ? "handed back" : "running or unknown");
    }
    if (m.assign_count > 0)
        accept_assignments(l, &m);
    if (m.upload_count > 0 || m.free_count > 0)
        data_requests(l, &m);
    if (m.copy_count > 0)
        tgw_copier_push(l->copier, &m);
    if (m.drain && !l->draining) {
        tg__exec_stats st;

        l->draining = true;
        tg__exec_stats_get(l->exec, &st);
        TG_LOG_INFO("draining: finishing %zu queued and %zu running tasks, "
                    "then exiting",
                    st.queued, st.running);
    }
    tg__wire_release(taskgrid_v1_SchedulerMessage_fields, &m);
    return TG_OK;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */
/* ------------------------------------------------------------------ */

typedef enum session_end {
    SESSION_RETRY,   /* the stream failed: reconnect */
    SESSION_DONE,    /* stopped or drained: exit */
    SESSION_REFUSED, /* the scheduler refused this worker's identity
                      * (PERMISSION_DENIED / UNAUTHENTICATED): retrying
                      * cannot help, exit with an error */
} session_end;

static bool refusal(int rc)
{
    return rc == TG_EPERM || rc == TG_EUNAUTHENTICATED;
}

/* A signal asked us to stop: hand queued tasks back, let running ones
 * finish within the grace period. */
static void begin_close(wlink *l)
{
    tg_task_ctx **q = NULL;
    size_t n = 0;
    tg__exec_stats st;

    l->closing = true;
    l->close_deadline = tg__now_ms() + STOP_GRACE_MS;
    if (tg__exec_take_queued(l->exec, &q, &n) != TG_OK) {
        /* Could not even list them: drop them; the scheduler reschedules
         * them when the stream ends. */
        tg__exec_cancel_all(l->exec);
    }
    for (size_t i = 0; i < n; i++) {
        release_key(l, q[i]->key);
        tgw_task_free(q[i]);
    }
    free(q);
    tg__exec_stats_get(l->exec, &st);
    TG_LOG_INFO("stopping: handed %zu queued tasks back, waiting for %zu "
                "running (up to %d s)",
                n, st.running, STOP_GRACE_MS / 1000);
}

static bool exec_idle(wlink *l)
{
    tg__exec_stats st;

    tg__exec_stats_get(l->exec, &st);
    return st.queued == 0 && st.running == 0;
}

static void close_stream(wlink *l)
{
    tg__cstream_free(l->st);
    l->st = NULL;
    tg__chan_close(l->ch);
    l->ch = NULL;
}

/* The end of a session that failed: nothing of it is worth keeping. */
static void teardown(wlink *l)
{
    stop_sender(l);
    tg__exec_cancel_all(l->exec);
    tgw_outbox_clear(l->ob);
    close_stream(l);
    tgw_copier_clear(l->copier);
    tgw_store_clear(l->store);
}

/* A clean end: send what is left, half-close, and let the scheduler see
 * the end of the stream. */
static void finish(wlink *l)
{
    if (!atomic_load(&l->send_failed) &&
        !tgw_outbox_flush(l->ob, FLUSH_TIMEOUT_MS))
        TG_LOG_WARN("could not send %zu results before exiting",
                    tgw_outbox_pending(l->ob));
    stop_sender(l);
    tgw_outbox_clear(l->ob);
    if (!atomic_load(&l->send_failed)) {
        uint8_t *buf = NULL;
        size_t len;

        tg__cstream_close_send(l->st, 1000);
        /* Wait (briefly) for the scheduler to end the call, so it sees a
         * clean goodbye rather than a cancellation. */
        for (int i = 0; i < 5; i++) {
            int rc = tg__cstream_recv(l->st, &buf, &len, RECV_POLL_MS);

            if (rc == TG_OK && buf != NULL) {
                free(buf);
                continue;
            }
            if (rc != TG_ETIMEDOUT)
                break;
        }
    }
    close_stream(l);
    tgw_copier_clear(l->copier);
    tgw_store_clear(l->store);
}

static session_end run_session(wlink *l)
{
    int rc;

    l->registered = false;
    l->first_message = true;
    atomic_store(&l->inline_limit, 0);
    atomic_store(&l->sender_stop, false);
    atomic_store(&l->send_failed, false);
    rc = tg__chan_open(&l->ch, l->cfg->address, l->sec, 0);
    if (rc == TG_OK)
        rc = tg__cstream_open(&l->st, l->ch, TG_METHOD_CONNECT, 0);
    if (rc == TG_OK)
        rc = send_registration(l);
    if (rc != TG_OK) {
        uint8_t *buf = NULL;
        size_t len;

        set_why(l, "%s", tg_error_last());
        /* The call's final status says more than "stream is broken". */
        if (l->st != NULL) {
            int rs = tg__cstream_recv(l->st, &buf, &len, 1000);

            if (rs != TG_OK && rs != TG_ETIMEDOUT) {
                set_why(l, "%s", tg_error_last());
                rc = rs;
            }
            free(buf);
        }
        close_stream(l);
        return refusal(rc) ? SESSION_REFUSED : SESSION_RETRY;
    }
    TG_LOG_INFO("connected to %s as %s (%u threads, %zu functions)",
                l->cfg->address, l->cfg->name, l->cfg->nthreads,
                tgw_registry_count(l->reg));
    if (pthread_create(&l->sender, NULL, sender_main, l) != 0) {
        set_why(l, "%s", "cannot start the sender thread");
        close_stream(l);
        return SESSION_RETRY;
    }
    l->sender_started = true;

    for (;;) {
        uint8_t *buf = NULL;
        size_t len = 0;

        if (atomic_load(l->stop) && !l->closing)
            begin_close(l);
        if ((l->closing || l->draining) && exec_idle(l)) {
            finish(l);
            return SESSION_DONE;
        }
        if (l->closing && tg__now_ms() >= l->close_deadline) {
            tg__exec_stats st;

            tg__exec_stats_get(l->exec, &st);
            TG_LOG_WARN("%zu tasks still running after %d s: abandoning "
                        "them",
                        st.running, STOP_GRACE_MS / 1000);
            tg__exec_cancel_all(l->exec);
            finish(l);
            return SESSION_DONE;
        }
        if (atomic_load(&l->send_failed)) {
            set_why(l, "%s", "sending to the scheduler failed");
            rc = TG_EUNAVAILABLE;
            break;
        }
        rc = tg__cstream_recv(l->st, &buf, &len, RECV_POLL_MS);
        if (rc == TG_ETIMEDOUT)
            continue;
        if (rc == TG_OK && buf != NULL) {
            rc = handle_message(l, buf, len);
            free(buf);
            if (rc != TG_OK) {
                set_why(l, "%s", tg_error_last());
                break;
            }
            continue;
        }
        if (rc == TG_OK)
            set_why(l, "%s", "the scheduler ended the stream");
        else
            set_why(l, "%s", tg_error_last());
        break;
    }
    /* The stream is gone. */
    if (refusal(rc)) {
        teardown(l);
        return SESSION_REFUSED;
    }
    if (l->closing || l->draining) {
        /* A scheduler may end the call itself once this worker drained. */
        if (rc == TG_OK && l->draining && exec_idle(l))
            TG_LOG_INFO("the scheduler ended the stream after the drain");
        else
            TG_LOG_WARN("lost the scheduler while %s: %s",
                        l->closing ? "stopping" : "draining", l->why);
        teardown(l);
        return SESSION_DONE;
    }
    teardown(l);
    return SESSION_RETRY;
}

/* Sleep `ms`, waking early if a stop is requested. */
static void backoff_sleep(wlink *l, int64_t ms)
{
    int64_t end = tg__now_ms() + ms;

    while (!atomic_load(l->stop)) {
        int64_t left = end - tg__now_ms();
        struct timespec ts;

        if (left <= 0)
            break;
        if (left > 50)
            left = 50;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)left * 1000000L;
        nanosleep(&ts, NULL);
    }
}

/* Move a large result into the store; it is reported held. Runs with the
 * executor's lock held: one allocation and the store's lock, no copy. */
static void hold_result(wlink *l, tg_task_ctx *t)
{
    size_t len = t->data_len;

    if (tgw_store_put(l->store, t->key, t->key_len, t->data, len,
                      tgw_task_result_codec(t)) != TG_OK) {
        TG_LOG_WARN("task %s: %s; sending its result inline", t->key,
                    tg_error_last());
        return;
    }
    t->data = NULL;
    t->held = true;
    tgw_counters_add(l->counters, TGW_COUNT_HELD, len);
}

static bool prepare_task(void *ud, tg_task_ctx *t)
{
    return tgw_fetcher_resolve(((wlink *)ud)->fetcher, t);
}

static void on_task_done(void *ud, tg_task_ctx *t)
{
    wlink *l = ud;
    uint64_t limit =
        atomic_load_explicit(&l->inline_limit, memory_order_relaxed);

    if (limit > 0 && t->data_len > limit && !t->erred &&
        tgw_memlink_admit(l->mem, t))
        hold_result(l, t);
    /* A result too large for one message would break the stream (and the
     * scheduler would blame the task for a lost worker): fail it here. A
     * held result does not travel in a message and is left alone. */
    if (tgw_task_limit_result(t, TGW_RESULT_MAX_BYTES))
        TG_LOG_WARN("task %.*s: %s", (int)t->key_len, t->key,
                    t->err_message ? t->err_message : "outcome too large");
    tgw_outbox_push(l->ob, t);
}

/* The store, the data service (unless --data-listen none) and the
 * fetcher. TG_OK, or an error (logged by the caller). */
static int data_start(wlink *l)
{
    tgw_fetcher_opts fo;
    int rc;

    rc = tgw_store_new(&l->store);
    if (rc == TG_OK)
        rc = tgw_memory_new(&l->mem, l->store, l->cfg);
    if (rc == TG_OK)
        tgw_memory_on_pause(l->mem, tgw_memlink_wake, l->ob);
    if (rc == TG_OK && l->cfg->data_listen != NULL) {
        tgw_dataservice_opts o;

        memset(&o, 0, sizeof(o));
        o.listen = l->cfg->data_listen;
        o.sec = l->sec;
        o.store = l->store;
        o.counters = l->counters;
        o.name = l->cfg->name;
        o.clients = l->cfg->data_clients;
        rc = tgw_dataservice_start(&l->ds, &o);
        if (rc == TG_OK) {
            tgw_advertise_data_address(l->cfg, tgw_dataservice_port(l->ds),
                                       l->data_address,
                                       sizeof(l->data_address));
            TG_LOG_INFO("data service on %s (advertised as %s)",
                        l->cfg->data_listen, l->data_address);
            tgw_dataservice_check_cert(l->sec, l->cfg->tls_cert);
        }
    }
    if (rc != TG_OK)
        return rc;
    memset(&fo, 0, sizeof(fo));
    fo.sec = l->sec;
    fo.self = l->ds != NULL ? l->data_address : NULL;
    fo.store = l->store;
    fo.ob = l->ob;
    fo.counters = l->counters;
    rc = tgw_fetcher_new(&l->fetcher, &fo);
    if (rc == TG_OK)
        rc = tgw_copier_new(&l->copier,
                            &(tgw_copier_opts){l->fetcher, l->store, l->mem,
                                               l->ob, l->counters});
    return rc;
}

/* Everything the sessions share; TG_OK or an error (logged here). */
static int link_start(wlink *l)
{
    tg__exec_opts eo;
    int rc = tgw_outbox_new(&l->ob);

    if (rc == TG_OK)
        rc = data_start(l);
    if (rc == TG_OK) {
        /* Secessions go out through the outbox, beside results. */
        eo = (tg__exec_opts){l->cfg->nthreads, on_task_done,         l,
                             prepare_task,     tgw_outbox_secession, l->ob};
        rc = tg__exec_new(&l->exec, &eo);
    }
    if (rc != TG_OK)
        TG_LOG_ERROR("cannot start: %s", tg_error_last());
    return rc;
}

/* Free what link_start made; with running tasks (`abandoned`) only what
 * they cannot touch. */
static void link_stop(wlink *l, bool abandoned)
{
    tgw_dataservice_stop(l->ds);
    l->ds = NULL;
    if (abandoned)
        return;
    tg__exec_free(l->exec);
    tgw_copier_free(l->copier); /* it uses the fetcher and the outbox */
    tgw_outbox_free(l->ob);
    tgw_fetcher_free(l->fetcher);
    tgw_memory_free(l->mem); /* its thread reads the store */
    tgw_store_free(l->store);
    free(l->tasks);
    free(l->deps);
    free(l->results);
    free(l->chunks);
}

/* Sessions until a stop, a drain or a refusal. */
static tgw_link_end run_sessions(wlink *l)
{
    const tgw_config *cfg = l->cfg;
    int64_t backoff = BACKOFF_MIN_MS, last_warn = 0;
    int64_t unreached = tg__now_ms(); /* since when no scheduler */
    unsigned failures = 0;

    while (!atomic_load(l->stop)) {
        session_end se = run_session(l);

        if (se == SESSION_DONE)
            break;
        if (se == SESSION_REFUSED) {
            TG_LOG_ERROR("the scheduler at %s refused this worker: %s",
                         cfg->address, l->why);
            return TGW_LINK_FAILED;
        }
        if (atomic_load(l->stop))
            break;
        if (l->registered) {
            backoff = BACKOFF_MIN_MS;
            failures = 0;
            unreached = tg__now_ms();
            TG_LOG_INFO("connection to the scheduler lost (%s); "
                        "reconnecting",
                        l->why);
        } else if (failures++ == 0 ||
                   tg__now_ms() - last_warn >= WARN_EVERY_MS) {
            last_warn = tg__now_ms();
            TG_LOG_WARN("cannot reach the scheduler at %s (%s); retrying",
                        cfg->address, l->why);
        } else {
            TG_LOG_DEBUG("cannot reach the scheduler at %s (%s); retrying "
                         "in %lld ms",
                         cfg->address, l->why, (long long)backoff);
        }
        if (cfg->death_timeout_ms > 0) {
            int64_t left = unreached + cfg->death_timeout_ms - tg__now_ms();
            if (left <= 0) {
                TG_LOG_ERROR("no scheduler at %s for %lld s (--death-timeout; "
                             "last: %s); exiting",
                             cfg->address,
                             (long long)(cfg->death_timeout_ms / 1000), l->why);
                return TGW_LINK_FAILED;
            }
            backoff_sleep(l, backoff < left ? backoff : left);
        } else {
            backoff_sleep(l, backoff);
        }
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return TGW_LINK_CLEAN;
}

tgw_link_end tgw_link_run(const tgw_config *cfg, const tg__rpc_sec *sec,
                          const tg_registry *reg, atomic_bool *stop,
                          tgw_counters *counters)
{
    wlink l;
    int64_t grace;
    tgw_link_end end;
    char line[512];

    memset(&l, 0, sizeof(l));
    l.cfg = cfg;
    l.sec = sec;
    l.reg = reg;
    l.stop = stop;
    l.start_ms = tg__now_ms();
    atomic_init(&l.heartbeat_ms, cfg->heartbeat_ms);
    atomic_init(&l.sender_stop, false);
    atomic_init(&l.send_failed, false);
    atomic_init(&l.inline_limit, 0);
    tgw_counters_init(&l.own_counters);
    l.counters = counters != NULL ? counters : &l.own_counters;
    tg__rpc_init();
    if (link_start(&l) != TG_OK) {
        link_stop(&l, false);
        tg__rpc_shutdown();
        return TGW_LINK_FAILED;
    }
    end = run_sessions(&l);

    /* Tasks may still run: cancelled ones from a lost session, or ones
     * abandoned at the stop deadline. Give them what is left of the grace
     * period (at least a moment to notice their cancelled flag). */
    grace = l.closing ? l.close_deadline - tg__now_ms() : STOP_GRACE_MS;
    if (grace < 500)
        grace = 500;
    if (!tg__exec_wait_idle(l.exec, grace)) {
        TG_LOG_WARN("tasks did not stop; exiting without waiting for them");
        end = TGW_LINK_ABANDONED;
    }
    tgw_counters_format(l.counters, line, sizeof(line));
    TG_LOG_INFO("%s", line);
    link_stop(&l, end == TGW_LINK_ABANDONED);
    tg__rpc_shutdown();
    TG_LOG_INFO("exiting");
    return end;
}
