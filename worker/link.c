/* SPDX-License-Identifier: Apache-2.0
 *
 * link.c: the worker's session with the scheduler (see link.h). Threads:
 * the caller's thread owns the session (connect, register, receive and
 * dispatch, shutdown); one sender thread per session turns the outbox into
 * batched WorkerMessages and heartbeats; executor threads run tasks and
 * push outcomes into the outbox. Depends on the transport's client side, the
 * codec, the executor, the outbox and the SDK logger.
 *
 * Sessions do not outlive their stream: when it fails (the scheduler
 * restarted or the network broke) the scheduler has already given this
 * worker's tasks to others, so queued tasks are dropped, running ones are
 * cancelled and unsent results are discarded before reconnecting.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor.h"
#include "link.h"
#include "methods.h"
#include "outbox.h"
#include "registry.h"
#include "task.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
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
    m.uptime_ms = (uint64_t)uptime_ms(l);
    rc = send_message(l, &m, REGISTER_TIMEOUT_MS);
    free(funcs);
    free(res);
    return rc;
}

/* One WorkerMessage for a batch; an empty batch is a heartbeat. */
static int send_batch(wlink *l, const tgw_batch *b)
{
    taskgrid_v1_WorkerMessage m;
    size_t i = 0;

    if (reserve(&l->results, &l->nresults_cap, b->nresults,
                sizeof(*l->results)) != 0)
        return tg__error_set(TG_ENOMEM, "out of memory");
    memset(&m, 0, sizeof(m));
    for (const tg_task_ctx *t = b->results; t != NULL; t = t->next, i++) {
        taskgrid_v1_TaskResult *r = &l->results[i];

        memset(r, 0, sizeof(*r));
        r->key = tg_pbbuf_mem(t->key, t->key_len);
        r->attempt = t->attempt;
        if (t->erred) {
            r->state = taskgrid_v1_TaskState_TASK_STATE_ERRED;
            r->has_error = true;
            r->error.type = tg_pbbuf_str(t->err_type);
            r->error.message = tg_pbbuf_str(t->err_message);
            r->error.traceback = tg_pbbuf_str(t->err_traceback);
        } else {
            r->state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
            r->data = tg_pbbuf_mem(t->data, t->data_len);
            r->codec = tg_pbbuf_str(tgw_task_result_codec(t));
        }
    }
    m.results_count = (pb_size_t)b->nresults;
    m.results = b->nresults ? l->results : NULL;
    m.released_count = (pb_size_t)b->nreleased;
    m.released = b->released;
    m.uptime_ms = (uint64_t)uptime_ms(l);
    return send_message(l, &m, SEND_TIMEOUT_MS);
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
            (b.nresults == 0 && b.nreleased == 0 && tg__now_ms() - last < hb)) {
            tgw_outbox_batch_free(&b);
            tgw_outbox_done(l->ob);
            continue;
        }
        rc = send_batch(l, &b);
        if (rc == TG_OK && (b.nresults || b.nreleased))
            TG_LOG_DEBUG("sent %zu results and %zu released keys", b.nresults,
                         b.nreleased);
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
                l->deps[d].data = bytes_of(a->deps[d].data);
                l->deps[d].codec = bytes_of(a->deps[d].codec);
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

static int handle_message(wlink *l, const uint8_t *buf, size_t len)
{
    taskgrid_v1_SchedulerMessage m;

    if (tg__wire_decode(taskgrid_v1_SchedulerMessage_fields, &m, buf, len) !=
        TG_OK)
        return tg__error_set(TG_EPROTO, "bad message from the scheduler: %s",
                             tg_error_last());
    if (m.worker_name.len > 0 && !l->registered) {
        l->registered = true;
        TG_LOG_INFO("registered as %.*s", (int)m.worker_name.len,
                    (const char *)m.worker_name.ptr);
    }
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
}

static session_end run_session(wlink *l)
{
    int rc;

    l->registered = false;
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

static void on_task_done(void *ud, tg_task_ctx *t)
{
    wlink *l = ud;

    /* A result too large for one message would break the stream (and the
     * scheduler would blame the task for a lost worker): fail it here. */
    if (tgw_task_limit_result(t, TGW_RESULT_MAX_BYTES))
        TG_LOG_WARN("task %.*s: %s", (int)t->key_len, t->key,
                    t->err_message ? t->err_message : "outcome too large");
    tgw_outbox_push(l->ob, t);
}

tgw_link_end tgw_link_run(const tgw_config *cfg, const tg__rpc_sec *sec,
                          const tg_registry *reg, atomic_bool *stop)
{
    wlink l;
    tg__exec_opts eo;
    int64_t backoff = BACKOFF_MIN_MS, last_warn = 0, grace;
    unsigned failures = 0;
    tgw_link_end end = TGW_LINK_CLEAN;

    memset(&l, 0, sizeof(l));
    l.cfg = cfg;
    l.sec = sec;
    l.reg = reg;
    l.stop = stop;
    l.start_ms = tg__now_ms();
    atomic_init(&l.heartbeat_ms, cfg->heartbeat_ms);
    atomic_init(&l.sender_stop, false);
    atomic_init(&l.send_failed, false);
    if (tgw_outbox_new(&l.ob) != TG_OK) {
        TG_LOG_ERROR("%s", tg_error_last());
        return TGW_LINK_FAILED;
    }
    eo.nslots = cfg->nthreads;
    eo.done = on_task_done;
    eo.ud = &l;
    if (tg__exec_new(&l.exec, &eo) != TG_OK) {
        TG_LOG_ERROR("%s", tg_error_last());
        tgw_outbox_free(l.ob);
        return TGW_LINK_FAILED;
    }
    tg__rpc_init();

    while (!atomic_load(stop)) {
        bool was_registered;
        session_end se = run_session(&l);

        if (se == SESSION_DONE)
            break;
        if (se == SESSION_REFUSED) {
            TG_LOG_ERROR("the scheduler at %s refused this worker: %s",
                         cfg->address, l.why);
            end = TGW_LINK_FAILED;
            break;
        }
        was_registered = l.registered;
        if (atomic_load(stop))
            break;
        if (was_registered) {
            backoff = BACKOFF_MIN_MS;
            failures = 0;
            TG_LOG_INFO("connection to the scheduler lost (%s); "
                        "reconnecting",
                        l.why);
        } else if (failures++ == 0 ||
                   tg__now_ms() - last_warn >= WARN_EVERY_MS) {
            last_warn = tg__now_ms();
            TG_LOG_WARN("cannot reach the scheduler at %s (%s); retrying",
                        cfg->address, l.why);
        } else {
            TG_LOG_DEBUG("cannot reach the scheduler at %s (%s); retrying "
                         "in %lld ms",
                         cfg->address, l.why, (long long)backoff);
        }
        backoff_sleep(&l, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }

    /* Tasks may still run: cancelled ones from a lost session, or ones
     * abandoned at the stop deadline. Give them what is left of the grace
     * period (at least a moment to notice their cancelled flag). */
    grace = l.closing ? l.close_deadline - tg__now_ms() : STOP_GRACE_MS;
    if (grace < 500)
        grace = 500;
    if (!tg__exec_wait_idle(l.exec, grace)) {
        TG_LOG_WARN("tasks did not stop; exiting without waiting for them");
        end = TGW_LINK_ABANDONED;
    } else {
        tg__exec_free(l.exec);
        tgw_outbox_free(l.ob);
    }
    free(l.tasks);
    free(l.deps);
    free(l.results);
    tg__rpc_shutdown();
    TG_LOG_INFO("exiting");
    return end;
}
