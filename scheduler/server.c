/* SPDX-License-Identifier: Apache-2.0
 *
 * server.c: taskgrid-scheduler's transport (see server.h). One event-loop
 * thread (tg__server_run) owns everything: the core, the worker and gather
 * tables, the launcher. Each RPC is decoded with nanopb (proto/wire.h),
 * turned into core events, and the actions the core emits are encoded at
 * once into per-destination byte buffers (one-entry messages appended, which
 * protobuf merges into one batch), flushed after each turn of the loop. So
 * many tasks ride in one gRPC message both ways. No scheduling decision is
 * taken here.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "core.h"
#include "launcher.h"
#include "util/clock.h"
#include "util/log.h"
#include "transport/server.h"
#include "util/address.h"
#include "server.h"
#include "wire.h"
#include "methods.h"

#define TGS_VERSION "taskgrid-scheduler/0.1"
/* Flush a destination's buffer early past this size, to bound latency and
 * stay far below the message limit. */
#define FLUSH_BYTES (1u << 20)
#define HEARTBEAT_MS 2000u

enum method {
    M_SUBMIT,
    M_GATHER,
    M_SCALE,
    M_ANNOTATE,
    M_CANCEL,
    M_RELEASE,
    M_STATUS,
    M_CONNECT,
    M_HEALTH,
    M_COUNT,
};

static const tg__method methods[M_COUNT] = {
    [M_SUBMIT] = {TG_METHOD_SUBMIT, TG__UNARY},
    [M_GATHER] = {TG_METHOD_GATHER, TG__SERVER_STREAM},
    [M_SCALE] = {TG_METHOD_SCALE, TG__UNARY},
    [M_ANNOTATE] = {TG_METHOD_ANNOTATE, TG__UNARY},
    [M_CANCEL] = {TG_METHOD_CANCEL, TG__UNARY},
    [M_RELEASE] = {TG_METHOD_RELEASE, TG__UNARY},
    [M_STATUS] = {TG_METHOD_STATUS, TG__UNARY},
    [M_CONNECT] = {TG_METHOD_CONNECT, TG__BIDI},
    [M_HEALTH] = {TG_METHOD_HEALTH_CHECK, TG__UNARY},
};

/* A growable buffer of appended one-entry messages. */
typedef struct outbuf {
    uint8_t *p;
    size_t len, cap;
    uint32_t count;
} outbuf;

typedef enum peer_kind { PEER_RPC = 0, PEER_WORKER, PEER_GATHER } peer_kind;

/* Per-call state (tg__scall data). Workers and gathers are found by id in
 * sorted arrays (ids only grow), so a stale id from the core is harmless. */
typedef struct peer {
    peer_kind kind;
    uint64_t id;
    tg__scall *call;
    outbuf out;
    /* worker */
    bool registered;
    char *name;
    char *launch_id;
    char **funcs; /* as registered, for Status */
    size_t nfuncs;
    char **res_names;
    double *res_amounts;
    size_t nres;
    /* gather */
    size_t outstanding;
    int64_t deadline_ms; /* 0: none */
    bool finished;
} peer;

typedef struct peer_table {
    peer **v;
    size_t n, cap;
} peer_table;

typedef struct sched {
    tgs_server_opts opts;
    tgs_core *core;
    tg__server *srv;
    tgs_launcher *launcher;
    peer_table workers, gathers;
    peer **dirty; /* peers with buffered output */
    size_t ndirty, dirtycap;
    uint64_t next_id;
    /* Scaling: the core decides (tgs_core_scale, tgs_core_adapt); this
     * keeps its last TGS_ACT_SCALE target, which the launcher meets. */
    uint32_t target;
    bool have_target;
    int64_t last_spawn_ms;
    char address[300];
    bool tls; /* mutual TLS: every call is checked against auth.c */
} sched;

static volatile sig_atomic_t got_signal;
static tg__server *signal_server;

static void on_signal(int sig)
{
    got_signal = sig;
    if (signal_server)
        tg__server_stop(signal_server);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static tgs_str S(tg_pbbuf b)
{
    tgs_str s = {(const char *)b.ptr, b.len};
    return s;
}

static tg_pbbuf B(tgs_str s)
{
    return tg_pbbuf_mem(s.ptr, s.len);
}

static tgs_str CS(const char *s)
{
    tgs_str r = {s, s ? strlen(s) : 0};
    return r;
}

static int table_add(peer_table *t, peer *p)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        peer **nv = realloc(t->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        t->v = nv;
        t->cap = ncap;
    }
    t->v[t->n++] = p; /* ids grow, so the array stays sorted */
    return 0;
}

static size_t table_index(const peer_table *t, uint64_t id)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < t->n && t->v[lo]->id == id) ? lo : SIZE_MAX;
}

static peer *table_find(const peer_table *t, uint64_t id)
{
    size_t i = table_index(t, id);
    return i == SIZE_MAX ? NULL : t->v[i];
}

static void table_remove(peer_table *t, uint64_t id)
{
    size_t i = table_index(t, id);

    if (i == SIZE_MAX)
        return;
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(peer *));
    t->n--;
}

static void mark_dirty(sched *s, peer *p)
{
    if (p->out.count != 1)
        return; /* already listed (count went 0 -> 1 once) */
    if (s->ndirty == s->dirtycap) {
        size_t ncap = s->dirtycap ? s->dirtycap * 2 : 16;
        peer **nd = realloc(s->dirty, ncap * sizeof(*nd));
        if (nd == NULL)
            return;
        s->dirty = nd;
        s->dirtycap = ncap;
    }
    s->dirty[s->ndirty++] = p;
}

/* Hand the buffered bytes of `p` to gRPC as one message. */
static void flush_peer(peer *p)
{
    if (p->out.count == 0 || p->call == NULL)
        return;
    tg__scall_send(p->call, p->out.p, p->out.len);
    p->out.p = NULL;
    p->out.len = p->out.cap = 0;
    p->out.count = 0;
}

static uint8_t *encode(const pb_msgdesc_t *f, const void *msg, size_t *len)
{
    uint8_t *buf;

    if (tg__wire_encode(f, msg, &buf, len) != TG_OK) {
        TG_LOG_ERROR("%s", tg_error_last());
        return NULL;
    }
    return buf;
}

/* Reply to a unary call, or fail it if the response cannot be encoded. */
static void reply(tg__scall *c, const pb_msgdesc_t *f, const void *msg)
{
    size_t len;
    uint8_t *buf = encode(f, msg, &len);

    if (buf == NULL)
        tg__scall_finish(c, TG_EINTERNAL, "cannot encode the response");
    else
        tg__scall_reply(c, buf, len);
}

static bool decode(tg__scall *c, const pb_msgdesc_t *f, void *msg,
                   const uint8_t *req, size_t len)
{
    if (tg__wire_decode(f, msg, req, len) != TG_OK) {
        tg__scall_finish(c, TG_EINVAL, tg_error_last());
        return false;
    }
    return true;
}

/* Fill a TaskResult for a task in its current state. */
static void fill_result(taskgrid_v1_TaskResult *r, const tgs_task *t)
{
    tgs_state st = tgs_task_state(t);

    memset(r, 0, sizeof(*r));
    r->key = B(tgs_task_key(t));
    r->state = (taskgrid_v1_TaskState)st;
    r->attempt = tgs_task_attempt(t);
    if (st == TGS_MEMORY) {
        size_t n;
        const uint8_t *d = tgs_task_result(t, &n);
        r->data = tg_pbbuf_mem(d, n);
        r->codec = B(tgs_task_result_codec(t));
    } else if (st == TGS_ERRED || st == TGS_CANCELLED) {
        r->has_error = true;
        r->error.type = B(tgs_task_err_type(t));
        r->error.message = B(tgs_task_err_message(t));
        r->error.traceback = B(tgs_task_err_traceback(t));
        r->error.origin_key = B(tgs_task_err_origin(t));
    }
}

/* ------------------------------------------------------------------ */
/* Actions: core -> messages                                           */
/* ------------------------------------------------------------------ */

static void gather_append(sched *s, peer *g, const taskgrid_v1_TaskResult *r)
{
    taskgrid_v1_GatherResponse m = {0};

    m.results_count = 1;
    m.results = (taskgrid_v1_TaskResult *)r;
    if (tg__wire_append(taskgrid_v1_GatherResponse_fields, &m, &g->out.p,
                       &g->out.len, &g->out.cap) != TG_OK) {
        TG_LOG_ERROR("cannot encode a result for a gather");
        return;
    }
    g->out.count++;
    mark_dirty(s, g);
    if (g->out.len >= FLUSH_BYTES)
        flush_peer(g);
}

static void worker_append(sched *s, peer *w,
                          const taskgrid_v1_SchedulerMessage *m)
{
    if (tg__wire_append(taskgrid_v1_SchedulerMessage_fields, m, &w->out.p,
                       &w->out.len, &w->out.cap) != TG_OK) {
        TG_LOG_ERROR("cannot encode a message for worker %s", w->name);
        return;
    }
    w->out.count++;
    mark_dirty(s, w);
    if (w->out.len >= FLUSH_BYTES)
        flush_peer(w);
}

static void act_assign(sched *s, uint64_t wid, const tgs_task *t)
{
    peer *w = table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};
    taskgrid_v1_Assignment a = {0};
    taskgrid_v1_TaskResult small[8], *deps = small;
    size_t nd = tgs_task_ndeps(t), len;

    if (w == NULL)
        return; /* the core learns of the loss from on_done */
    if (nd > 8) {
        deps = malloc(nd * sizeof(*deps));
        if (deps == NULL) {
            TG_LOG_ERROR("out of memory assigning a task");
            return;
        }
    }
    for (size_t i = 0; i < nd; i++)
        fill_result(&deps[i], tgs_task_dep(t, i));
    a.key = B(tgs_task_key(t));
    a.func = B(tgs_task_func(t));
    a.input.ptr = tgs_task_input(t, &len);
    a.input.len = len;
    a.codec = B(tgs_task_codec(t));
    a.deps_count = (pb_size_t)nd;
    a.deps = deps;
    a.attempt = tgs_task_attempt(t);
    a.priority = tgs_task_priority(t);
    m.assign_count = 1;
    m.assign = &a;
    worker_append(s, w, &m);
    if (deps != small)
        free(deps);
    if (tg__log_enabled(TG__LOG_DEBUG)) {
        tgs_str k = tgs_task_key(t);
        TG_LOG_DEBUG("task %.*s: processing on %s", (int)k.len, k.ptr,
                     w->name);
    }
}

/* Cancel and steal: a key in one of the repeated string fields. */
static void act_key(sched *s, uint64_t wid, const tgs_task *t, bool steal)
{
    peer *w = table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};
    tgs_str k = tgs_task_key(t);
    char *key;

    if (w == NULL)
        return;
    key = malloc(k.len + 1);
    if (key == NULL)
        return;
    memcpy(key, k.ptr, k.len);
    key[k.len] = '\0';
    if (steal) {
        m.steal_count = 1;
        m.steal = &key;
    } else {
        m.cancel_count = 1;
        m.cancel = &key;
    }
    worker_append(s, w, &m);
    free(key);
}

static void gather_maybe_finish(sched *s, peer *g)
{
    if (g->outstanding == 0 && !g->finished && g->call) {
        /* The last results and the OK status leave in one batch. */
        if (g->out.count > 0) {
            tg__scall_reply(g->call, g->out.p, g->out.len);
            g->out.p = NULL;
            g->out.len = g->out.cap = 0;
            g->out.count = 0;
        } else {
            tg__scall_finish(g->call, TG_OK, "");
        }
        g->finished = true;
    }
    (void)s;
}

static void act_notify(sched *s, uint64_t watcher, const tgs_task *t)
{
    peer *g = table_find(&s->gathers, watcher);
    taskgrid_v1_TaskResult r;

    if (g == NULL || g->finished)
        return;
    fill_result(&r, t);
    gather_append(s, g, &r);
    if (g->outstanding > 0)
        g->outstanding--;
    gather_maybe_finish(s, g);
}

static void act_close_worker(sched *s, uint64_t wid)
{
    peer *w = table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};

    if (w == NULL)
        return;
    TG_LOG_INFO("worker %s drained; asking it to stop", w->name);
    m.drain = true;
    worker_append(s, w, &m);
    flush_peer(w);
}

/* The core's scaling target: scale_tick starts processes up to it. */
static void act_scale(sched *s, uint32_t target)
{
    if (!s->have_target || s->target != target)
        TG_LOG_INFO("scaling to %u workers", target);
    s->target = target;
    s->have_target = true;
}

/* The core retires (drains) worker `wid`: its process no longer counts
 * toward the target, and it stops once drained (TGS_ACT_CLOSE_WORKER). */
static void act_retire(sched *s, uint64_t wid)
{
    peer *w = table_find(&s->workers, wid);

    if (w == NULL)
        return;
    TG_LOG_INFO("retiring worker %s", w->name);
    if (s->launcher != NULL && w->launch_id != NULL)
        tgs_launcher_retire(s->launcher, w->launch_id);
}

static void run_actions(sched *s)
{
    tgs_action a;

    while (tgs_core_next_action(s->core, &a)) {
        switch (a.kind) {
        case TGS_ACT_ASSIGN:
            act_assign(s, a.worker, a.task);
            break;
        case TGS_ACT_CANCEL:
            act_key(s, a.worker, a.task, false);
            break;
        case TGS_ACT_STEAL:
            act_key(s, a.worker, a.task, true);
            break;
        case TGS_ACT_NOTIFY:
            act_notify(s, a.watcher, a.task);
            break;
        case TGS_ACT_CLOSE_WORKER:
            act_close_worker(s, a.worker);
            break;
        case TGS_ACT_SCALE:
            act_scale(s, a.target);
            break;
        case TGS_ACT_RETIRE:
            act_retire(s, a.worker);
            break;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Scheduler service                                                   */
/* ------------------------------------------------------------------ */

/* Key lists (Cancel, Release, SubmitRequest.release) as core strings. */
static tgs_str *keys_of(char **keys, pb_size_t n)
{
    tgs_str *v = calloc(n ? n : 1, sizeof(*v));

    for (pb_size_t i = 0; v && i < n; i++)
        v[i] = CS(keys[i]);
    return v;
}

static void do_submit(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_SubmitRequest m;
    taskgrid_v1_SubmitResponse resp = {0};
    tgs_task_spec *specs = NULL;
    tgs_str *strs = NULL;
    tgs_resource *res = NULL;
    size_t nstr = 0, nres = 0, si = 0, ri = 0;
    tgs_submit_result sr = {0};
    char err[512];
    int rc;

    if (!decode(c, taskgrid_v1_SubmitRequest_fields, &m, req, len))
        return;
    if (m.release_count > 0) {
        tgs_str *rel = keys_of(m.release, m.release_count);
        if (rel != NULL)
            tgs_core_release(s->core, rel, m.release_count, NULL);
        free(rel);
    }
    for (pb_size_t i = 0; i < m.tasks_count; i++) {
        nstr += m.tasks[i].deps_count + m.tasks[i].workers_count;
        nres += m.tasks[i].resources_count;
    }
    specs = calloc(m.tasks_count ? m.tasks_count : 1, sizeof(*specs));
    strs = calloc(nstr ? nstr : 1, sizeof(*strs));
    res = calloc(nres ? nres : 1, sizeof(*res));
    if (specs == NULL || strs == NULL || res == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    for (pb_size_t i = 0; i < m.tasks_count; i++) {
        const taskgrid_v1_TaskSpec *t = &m.tasks[i];
        tgs_task_spec *p = &specs[i];

        p->key = S(t->key);
        p->func = S(t->func);
        p->codec = S(t->codec);
        p->input = t->input.ptr;
        p->input_len = t->input.len;
        p->priority = t->priority;
        p->retries = t->retries;
        p->deps = &strs[si];
        p->ndeps = t->deps_count;
        for (pb_size_t d = 0; d < t->deps_count; d++)
            strs[si++] = CS(t->deps[d]);
        p->workers = &strs[si];
        p->nworkers = t->workers_count;
        for (pb_size_t d = 0; d < t->workers_count; d++)
            strs[si++] = CS(t->workers[d]);
        p->resources = &res[ri];
        p->nresources = t->resources_count;
        for (pb_size_t d = 0; d < t->resources_count; d++) {
            res[ri].name = S(t->resources[d].name);
            res[ri].amount = t->resources[d].amount;
            ri++;
        }
        if (t->key.len > 4096) {
            snprintf(err, sizeof(err),
                     "task #%u: key of %zu bytes is longer than the limit "
                     "of 4096",
                     (unsigned)i, t->key.len);
            tg__scall_finish(c, TG_EINVAL, err);
            goto cleanup;
        }
    }
    err[0] = '\0';
    rc = tgs_core_submit(s->core, specs, m.tasks_count, tg__now_ms(), &sr,
                         err, sizeof(err));
    if (rc != TGS_OK) {
        /* The core's codes are tg_status values (core.h): they keep their
         * meaning on the wire. */
        tg__scall_finish(c, rc, err[0] ? err : "invalid graph");
        goto cleanup;
    }
    TG_LOG_DEBUG("submit: %u new, %u existing", sr.accepted, sr.existing);
    resp.accepted = sr.accepted;
    resp.existing = sr.existing;
    reply(c, taskgrid_v1_SubmitResponse_fields, &resp);
    run_actions(s);

cleanup:
    free(specs);
    free(strs);
    free(res);
    tg__wire_release(taskgrid_v1_SubmitRequest_fields, &m);
}

static void do_gather(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_GatherRequest m;
    peer *g;

    if (!decode(c, taskgrid_v1_GatherRequest_fields, &m, req, len))
        return;
    g = calloc(1, sizeof(*g));
    if (g == NULL || table_add(&s->gathers, g) != 0) {
        free(g);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        tg__wire_release(taskgrid_v1_GatherRequest_fields, &m);
        return;
    }
    g->kind = PEER_GATHER;
    g->id = ++s->next_id;
    g->call = c; /* the newest id is the largest: the table stays sorted */
    tg__scall_set_data(c, g);
    if (m.timeout_ms)
        g->deadline_ms = tg__now_ms() + m.timeout_ms;
    for (pb_size_t i = 0; i < m.keys_count; i++) {
        tgs_str key = CS(m.keys[i]);
        const tgs_task *t = NULL;
        taskgrid_v1_TaskResult r;
        int rc;

        if (m.no_wait) {
            t = tgs_core_find(s->core, key);
            rc = t ? TGS_OK : TGS_ENOTFOUND;
        } else {
            rc = tgs_core_watch(s->core, key, g->id, &t);
        }
        if (rc == TGS_ENOTFOUND) {
            char msg[512];
            memset(&r, 0, sizeof(r));
            r.key = B(key);
            r.state = taskgrid_v1_TaskState_TASK_STATE_RELEASED;
            r.has_error = true;
            r.error.type = tg_pbbuf_str("tg.UnknownKey");
            snprintf(msg, sizeof(msg),
                     "key '%.400s' is not known to the scheduler (never "
                     "submitted, or released)",
                     m.keys[i]);
            r.error.message = tg_pbbuf_str(msg);
            gather_append(s, g, &r);
            continue;
        }
        if (rc != TGS_OK || t == NULL)
            continue;
        switch (tgs_task_state(t)) {
        case TGS_MEMORY:
        case TGS_ERRED:
        case TGS_CANCELLED:
            fill_result(&r, t);
            gather_append(s, g, &r);
            break;
        default:
            if (m.no_wait) {
                fill_result(&r, t);
                gather_append(s, g, &r);
            } else {
                g->outstanding++;
            }
        }
    }
    tg__wire_release(taskgrid_v1_GatherRequest_fields, &m);
    gather_maybe_finish(s, g);
}

static void do_scale(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_ScaleRequest m;
    taskgrid_v1_ScaleResponse r = {0};

    if (!decode(c, taskgrid_v1_ScaleRequest_fields, &m, req, len))
        return;
    if (s->launcher == NULL) {
        tg__scall_finish(c, TG_ESTATE,
                         s->tls && s->opts.worker_tls_cert == NULL &&
                                 (s->opts.launcher == NULL ||
                                  strcmp(s->opts.launcher, "local") == 0)
                             ? "this TLS scheduler has no worker certificate "
                               "for the workers it would start (give "
                               "--worker-tls-cert and --worker-tls-key); "
                               "start or stop workers yourself"
                             : "this scheduler has no launcher (started "
                               "with --launcher none); start or stop "
                               "workers yourself");
        return;
    }
    if (m.maximum > 0) {
        if (m.minimum > m.maximum) {
            tg__scall_finish(c, TG_EINVAL,
                             "adaptive scaling: minimum is larger than "
                             "maximum");
            return;
        }
        /* The policy is the core's: demand per --nthreads worker, up at
         * once, down after 2 s lower (hold_ms 0: the core's default). */
        tgs_adapt_opts ao = {0};
        ao.minimum = m.minimum;
        ao.maximum = m.maximum;
        ao.nthreads = s->opts.worker_nthreads;
        tgs_core_adapt(s->core, &ao, tg__now_ms());
        TG_LOG_INFO("adaptive scaling between %u and %u workers", m.minimum,
                    m.maximum);
    } else {
        tgs_core_scale(s->core, m.workers, tg__now_ms());
        TG_LOG_INFO("scale to %u workers", m.workers);
    }
    r.workers = (uint32_t)tgs_core_nworkers(s->core);
    tgs_core_scale_target(s->core, &r.target);
    reply(c, taskgrid_v1_ScaleResponse_fields, &r);
    run_actions(s); /* the new target (TGS_ACT_SCALE) */
}

static void do_annotate(sched *s, tg__scall *c, const uint8_t *req,
                        size_t len)
{
    taskgrid_v1_AnnotateRequest m;
    taskgrid_v1_AnnotateResponse r = {0};
    tgs_str *keys;
    uint32_t n = 0;

    if (!decode(c, taskgrid_v1_AnnotateRequest_fields, &m, req, len))
        return;
    keys = calloc(m.keys_count ? m.keys_count : 1, sizeof(*keys));
    if (keys == NULL) {
        tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &m);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    for (pb_size_t i = 0; i < m.keys_count; i++)
        keys[i] = CS(m.keys[i]);
    if (m.annotation.has_priority) {
        tgs_core_set_priority(s->core, keys, m.keys_count,
                              m.annotation.priority, &n);
        r.changed = n;
    }
    if (m.annotation.has_retries) {
        tgs_core_set_retries(s->core, keys, m.keys_count,
                             m.annotation.retries, &n);
        if (n > r.changed)
            r.changed = n;
    }
    if (m.annotation.has_resources) {
        pb_size_t nr = m.annotation.resources_count;
        tgs_resource *res = calloc(nr ? nr : 1, sizeof(*res));
        int rc;

        for (pb_size_t i = 0; res && i < nr; i++) {
            res[i].name = S(m.annotation.resources[i].name);
            res[i].amount = m.annotation.resources[i].amount;
        }
        rc = res ? tgs_core_set_resources(s->core, keys, m.keys_count, res,
                                          nr, &n)
                 : TGS_ENOMEM;
        free(res);
        if (rc != TGS_OK) {
            free(keys);
            tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &m);
            tg__scall_finish(c, rc,
                             rc == TGS_ENOMEM
                                 ? "scheduler out of memory"
                                 : "invalid resources: names must be "
                                   "non-empty and amounts finite and >= 0");
            run_actions(s);
            return;
        }
        if (n > r.changed)
            r.changed = n;
    }
    free(keys);
    tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &m);
    reply(c, taskgrid_v1_AnnotateResponse_fields, &r);
    run_actions(s);
}

static void do_cancel(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_CancelRequest m;
    taskgrid_v1_CancelResponse r = {0};
    tgs_str *keys;

    if (!decode(c, taskgrid_v1_CancelRequest_fields, &m, req, len))
        return;
    keys = keys_of(m.keys, m.keys_count);
    if (keys)
        tgs_core_cancel(s->core, keys, m.keys_count, tg__now_ms(),
                        &r.cancelled);
    free(keys);
    tg__wire_release(taskgrid_v1_CancelRequest_fields, &m);
    reply(c, taskgrid_v1_CancelResponse_fields, &r);
    run_actions(s);
}

static void do_release(sched *s, tg__scall *c, const uint8_t *req,
                       size_t len)
{
    taskgrid_v1_ReleaseRequest m;
    taskgrid_v1_ReleaseResponse r = {0};
    tgs_str *keys;

    if (!decode(c, taskgrid_v1_ReleaseRequest_fields, &m, req, len))
        return;
    keys = keys_of(m.keys, m.keys_count);
    if (keys)
        tgs_core_release(s->core, keys, m.keys_count, &r.released);
    free(keys);
    tg__wire_release(taskgrid_v1_ReleaseRequest_fields, &m);
    reply(c, taskgrid_v1_ReleaseResponse_fields, &r);
    run_actions(s);
}

static void do_status(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_StatusRequest m;
    taskgrid_v1_StatusResponse r = {0};
    uint64_t counts[TGS_NSTATES];
    size_t nw = tgs_core_nworkers(s->core);
    taskgrid_v1_WorkerInfo *wi;
    taskgrid_v1_KeyStatus *ks;
    taskgrid_v1_Resource *rs;
    size_t nrs = 0, ri = 0;
    char(*why)[256];

    if (!decode(c, taskgrid_v1_StatusRequest_fields, &m, req, len))
        return;
    for (size_t i = 0; i < s->workers.n; i++)
        nrs += s->workers.v[i]->nres;
    rs = calloc(nrs ? nrs : 1, sizeof(*rs));
    wi = calloc(nw ? nw : 1, sizeof(*wi));
    ks = calloc(m.keys_count ? m.keys_count : 1, sizeof(*ks));
    why = calloc(m.keys_count ? m.keys_count : 1, sizeof(*why));
    if (wi == NULL || ks == NULL || why == NULL || rs == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    tgs_core_counts(s->core, counts);
    r.waiting = counts[TGS_WAITING];
    r.ready = counts[TGS_READY];
    r.processing = counts[TGS_PROCESSING];
    r.memory = counts[TGS_MEMORY];
    r.erred = counts[TGS_ERRED];
    r.cancelled = counts[TGS_CANCELLED];
    r.unplaceable = tgs_core_unplaceable(s->core);
    r.version = tg_pbbuf_str(TGS_VERSION);
    for (size_t i = 0; i < nw; i++) {
        tgs_worker_info info;
        if (!tgs_core_worker_at(s->core, i, &info))
            break;
        wi[i].name = B(info.name);
        wi[i].nthreads = info.nthreads;
        wi[i].processing = info.processing;
        wi[i].draining = info.draining;
        {
            peer *w = table_find(&s->workers, info.id);
            if (w != NULL) {
                wi[i].functions_count = (pb_size_t)w->nfuncs;
                wi[i].functions = w->funcs;
                wi[i].resources = &rs[ri];
                wi[i].resources_count = (pb_size_t)w->nres;
                for (size_t k = 0; k < w->nres && ri < nrs; k++, ri++) {
                    rs[ri].name = tg_pbbuf_str(w->res_names[k]);
                    rs[ri].amount = w->res_amounts[k];
                }
            }
        }
        r.workers_count++;
    }
    r.workers = wi;
    for (pb_size_t i = 0; i < m.keys_count; i++) {
        const tgs_task *t = tgs_core_find(s->core, CS(m.keys[i]));
        ks[i].key = tg_pbbuf_str(m.keys[i]);
        if (t == NULL) {
            ks[i].state = taskgrid_v1_TaskState_TASK_STATE_RELEASED;
            ks[i].reason = tg_pbbuf_str("not known to the scheduler");
            continue;
        }
        ks[i].state = (taskgrid_v1_TaskState)tgs_task_state(t);
        tgs_core_why(s->core, t, why[i], sizeof(why[i]));
        ks[i].reason = tg_pbbuf_str(why[i]);
    }
    r.keys_count = m.keys_count;
    r.keys = ks;
    reply(c, taskgrid_v1_StatusResponse_fields, &r);

cleanup:
    free(rs);
    free(wi);
    free(ks);
    free(why);
    tg__wire_release(taskgrid_v1_StatusRequest_fields, &m);
}

static void do_health(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    grpc_health_v1_HealthCheckRequest m;
    grpc_health_v1_HealthCheckResponse r = {0};

    (void)s;
    if (!decode(c, grpc_health_v1_HealthCheckRequest_fields, &m, req, len))
        return;
    if (m.service.len == 0 || tg_pbbuf_eq(m.service, "taskgrid.v1.Scheduler") ||
        tg_pbbuf_eq(m.service, "taskgrid.v1.WorkerLink")) {
        r.status = grpc_health_v1_HealthCheckResponse_ServingStatus_SERVING;
        reply(c, grpc_health_v1_HealthCheckResponse_fields, &r);
    } else {
        tg__scall_finish(c, TG_ENOTFOUND, "unknown service");
    }
}

/* ------------------------------------------------------------------ */
/* WorkerLink                                                          */
/* ------------------------------------------------------------------ */

static void worker_register(sched *s, peer *w,
                            const taskgrid_v1_Register *reg)
{
    tgs_worker_spec spec = {0};
    tgs_str *funcs;
    tgs_resource *res;
    taskgrid_v1_SchedulerMessage hello = {0};
    char name[256];
    int rc;

    funcs = calloc(reg->functions_count ? reg->functions_count : 1,
                   sizeof(*funcs));
    res = calloc(reg->resources_count ? reg->resources_count : 1,
                 sizeof(*res));
    if (funcs == NULL || res == NULL) {
        free(funcs);
        free(res);
        tg__scall_finish(w->call, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    /* Names are unique in the cluster: suffix duplicates with the id. */
    snprintf(name, sizeof(name), "%.*s", (int)(reg->name.len > 200 ? 200 : reg->name.len),
             (const char *)reg->name.ptr);
    if (name[0] == '\0')
        snprintf(name, sizeof(name), "worker-%llu", (unsigned long long)w->id);
    for (size_t i = 0; i < s->workers.n; i++) {
        peer *o = s->workers.v[i];
        if (o != w && o->registered && strcmp(o->name, name) == 0) {
            size_t n = strlen(name);
            snprintf(name + n, sizeof(name) - n, "-%llu",
                     (unsigned long long)w->id);
            break;
        }
    }
    w->name = strdup(name);
    w->launch_id = tg_pbbuf_strdup(reg->launch_id);
    w->funcs = calloc(reg->functions_count ? reg->functions_count : 1,
                      sizeof(char *));
    w->res_names = calloc(reg->resources_count ? reg->resources_count : 1,
                          sizeof(char *));
    w->res_amounts = calloc(reg->resources_count ? reg->resources_count : 1,
                            sizeof(double));
    if (w->funcs && w->res_names && w->res_amounts) {
        for (pb_size_t i = 0; i < reg->functions_count; i++)
            if ((w->funcs[w->nfuncs] = strdup(reg->functions[i])) != NULL)
                w->nfuncs++;
        for (pb_size_t i = 0; i < reg->resources_count; i++) {
            w->res_names[w->nres] = tg_pbbuf_strdup(reg->resources[i].name);
            w->res_amounts[w->nres] = reg->resources[i].amount;
            if (w->res_names[w->nres] != NULL)
                w->nres++;
        }
    }
    for (pb_size_t i = 0; i < reg->functions_count; i++)
        funcs[i] = CS(reg->functions[i]);
    for (pb_size_t i = 0; i < reg->resources_count; i++) {
        res[i].name = S(reg->resources[i].name);
        res[i].amount = reg->resources[i].amount;
    }
    spec.name = CS(w->name);
    spec.nthreads = reg->nthreads ? reg->nthreads : 1;
    spec.funcs = funcs;
    spec.nfuncs = reg->functions_count;
    spec.resources = res;
    spec.nresources = reg->resources_count;
    rc = tgs_core_worker_add(s->core, w->id, &spec, tg__now_ms());
    if (rc != TGS_OK) {
        free(funcs);
        free(res);
        tg__scall_finish(w->call, rc,
                         rc == TGS_ENOMEM ? "scheduler out of memory"
                                          : "cannot register worker");
        return;
    }
    w->registered = true;
    TG_LOG_INFO("worker %s joined (%u threads, %u functions, %s)", w->name,
                spec.nthreads, (unsigned)spec.nfuncs, tg__scall_peer(w->call));
    hello.worker_name = tg_pbbuf_str(w->name);
    hello.heartbeat_ms = HEARTBEAT_MS;
    worker_append(s, w, &hello);
    free(funcs);
    free(res);
}

static void worker_message(sched *s, peer *w, const uint8_t *msg, size_t len)
{
    taskgrid_v1_WorkerMessage m;
    int64_t now = tg__now_ms();

    if (tg__wire_decode(taskgrid_v1_WorkerMessage_fields, &m, msg, len) !=
        TG_OK) {
        TG_LOG_WARN("malformed message from worker %s: %s",
                    w->name ? w->name : tg__scall_peer(w->call),
                    tg_error_last());
        tg__scall_finish(w->call, TG_EINVAL, tg_error_last());
        return;
    }
    if (m.has_registration && !w->registered)
        worker_register(s, w, &m.registration);
    if (!w->registered) {
        tg__wire_release(taskgrid_v1_WorkerMessage_fields, &m);
        tg__scall_finish(w->call, TG_EINVAL,
                         "the first WorkerLink message must carry "
                         "registration");
        return;
    }
    for (pb_size_t i = 0; i < m.results_count; i++) {
        const taskgrid_v1_TaskResult *r = &m.results[i];
        tgs_outcome o = {0};

        o.ok = r->state == taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        o.data = r->data.ptr;
        o.data_len = r->data.len;
        o.codec = S(r->codec);
        if (!o.ok) {
            o.err_type = r->has_error && r->error.type.len
                             ? S(r->error.type)
                             : CS("tg.TaskError");
            o.err_message = S(r->error.message);
            o.err_traceback = S(r->error.traceback);
        }
        tgs_core_task_finished(s->core, w->id, S(r->key), &o, now);
    }
    for (pb_size_t i = 0; i < m.released_count; i++)
        tgs_core_task_returned(s->core, w->id, CS(m.released[i]), now);
    tg__wire_release(taskgrid_v1_WorkerMessage_fields, &m);
    run_actions(s);
}

/* ------------------------------------------------------------------ */
/* Launcher and Scale                                                  */
/* ------------------------------------------------------------------ */

static bool launch_connected(void *ud, const char *id)
{
    sched *s = ud;

    for (size_t i = 0; i < s->workers.n; i++) {
        peer *w = s->workers.v[i];
        if (w->registered && w->launch_id && strcmp(w->launch_id, id) == 0)
            return true;
    }
    return false;
}

static void on_child_exit(void *ud, const char *id, int st)
{
    (void)ud;
    if (WIFSIGNALED(st))
        TG_LOG_WARN("worker process %s was killed by signal %d", id,
                    WTERMSIG(st));
    else
        TG_LOG_INFO("worker process %s exited with status %d", id,
                    WEXITSTATUS(st));
}

/*
 * The scaling policy is the core's (tgs_core_scale, tgs_core_adapt,
 * decided at tgs_core_tick); this only meets it with processes. The
 * target comes as TGS_ACT_SCALE, connected workers to retire as
 * TGS_ACT_RETIRE (act_retire). The core counts only the workers this
 * launcher started: tell it which they are (once connected).
 */
static void mark_managed(sched *s)
{
    for (size_t i = 0; i < s->workers.n; i++) {
        peer *w = s->workers.v[i];
        if (w->registered && w->launch_id &&
            tgs_launcher_owns(s->launcher, w->launch_id))
            tgs_core_worker_managed(s->core, w->id);
    }
}

static void scale_tick(sched *s, int64_t now)
{
    size_t active;
    char id[64];

    if (s->launcher == NULL)
        return;
    tgs_launcher_reap(s->launcher, on_child_exit, s);
    mark_managed(s);
    if (!s->have_target)
        return;
    active = tgs_launcher_active(s->launcher);
    /* Start missing workers (also replaces ones that died), at most a
     * burst per 100 ms so a crashing worker binary cannot fork-bomb. */
    if (active < s->target && now - s->last_spawn_ms >= 100) {
        size_t n = s->target - active;
        if (n > 16)
            n = 16;
        for (size_t i = 0; i < n; i++) {
            if (tgs_launcher_spawn(s->launcher, id, sizeof(id)) != 0) {
                TG_LOG_ERROR("cannot start a worker process");
                break;
            }
            TG_LOG_INFO("started worker process %s", id);
        }
        s->last_spawn_ms = now;
    }
    /* Still too many: stop started processes that never connected (no
     * work to lose). Connected ones are the core's to retire, by
     * draining; it picks the least loaded. */
    while (active > s->target &&
           tgs_launcher_pick(s->launcher, launch_connected, s, id,
                             sizeof(id)) &&
           !launch_connected(s, id)) {
        tgs_launcher_retire(s->launcher, id);
        tgs_launcher_signal(s->launcher, id, SIGTERM);
        active--;
    }
    run_actions(s);
}

/* ------------------------------------------------------------------ */
/* rpc callbacks                                                       */
/* ------------------------------------------------------------------ */

/*
 * The access policy (auth.c) for one call of a TLS scheduler: the role in
 * the peer's certificate must be one the method admits. A plaintext
 * scheduler has no identities to check.
 */
static bool authorized(sched *s, tg__scall *c, size_t method)
{
    char role[64], msg[400];
    unsigned roles;

    if (!s->tls)
        return true;
    roles = tgs_auth_method_roles(methods[method].path);
    tg__scall_role(c, role, sizeof(role));
    if (tgs_auth_allows(roles, role))
        return true;
    tgs_auth_refusal(methods[method].path, roles, role, msg, sizeof(msg));
    TG_LOG_WARN("refused a call from %s: %s", tg__scall_peer(c), msg);
    tg__scall_finish(c, TG_EPERM, msg);
    return false;
}

static void cb_call(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len)
{
    sched *s = ud;

    if (!authorized(s, c, method))
        return;
    switch (method) {
    case M_SUBMIT:
        do_submit(s, c, req, len);
        break;
    case M_GATHER:
        do_gather(s, c, req, len);
        break;
    case M_SCALE:
        do_scale(s, c, req, len);
        break;
    case M_ANNOTATE:
        do_annotate(s, c, req, len);
        break;
    case M_CANCEL:
        do_cancel(s, c, req, len);
        break;
    case M_RELEASE:
        do_release(s, c, req, len);
        break;
    case M_STATUS:
        do_status(s, c, req, len);
        break;
    case M_HEALTH:
        do_health(s, c, req, len);
        break;
    case M_CONNECT: {
        peer *w = calloc(1, sizeof(*w));
        if (w == NULL || table_add(&s->workers, w) != 0) {
            free(w);
            tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
            return;
        }
        w->kind = PEER_WORKER;
        w->id = ++s->next_id;
        w->call = c;
        tg__scall_set_data(c, w);
        break;
    }
    default:
        tg__scall_finish(c, TG_EUNIMPLEMENTED, "not implemented");
    }
}

static void cb_message(void *ud, tg__scall *c, const uint8_t *msg, size_t len)
{
    peer *w = tg__scall_data(c);

    if (w != NULL && w->kind == PEER_WORKER)
        worker_message(ud, w, msg, len);
}

static void drop_dirty(sched *s, peer *p)
{
    for (size_t i = 0; i < s->ndirty; i++)
        if (s->dirty[i] == p)
            s->dirty[i] = NULL;
}

static void cb_done(void *ud, tg__scall *c)
{
    sched *s = ud;
    peer *p = tg__scall_data(c);

    if (p == NULL)
        return;
    drop_dirty(s, p);
    if (p->kind == PEER_WORKER) {
        table_remove(&s->workers, p->id);
        if (p->registered) {
            TG_LOG_INFO("worker %s left", p->name);
            tgs_core_worker_remove(s->core, p->id, tg__now_ms());
            run_actions(s);
        }
        free(p->name);
        free(p->launch_id);
        for (size_t i = 0; i < p->nfuncs; i++)
            free(p->funcs[i]);
        free(p->funcs);
        for (size_t i = 0; i < p->nres; i++)
            free(p->res_names[i]);
        free(p->res_names);
        free(p->res_amounts);
    } else if (p->kind == PEER_GATHER) {
        table_remove(&s->gathers, p->id);
    }
    free(p->out.p);
    free(p);
}

static void cb_tick(void *ud, int64_t now)
{
    sched *s = ud;
    static int64_t last_slow;

    if (now - last_slow >= 100) {
        last_slow = now;
        tgs_core_tick(s->core, now);
        run_actions(s);
        scale_tick(s, now);
        /* Gather timeouts (few gathers; a linear pass is fine). */
        for (size_t i = 0; i < s->gathers.n; i++) {
            peer *g = s->gathers.v[i];
            if (!g->finished && g->deadline_ms && now >= g->deadline_ms) {
                flush_peer(g);
                tg__scall_finish(g->call, TG_ETIMEDOUT,
                                 "gather timed out before every key "
                                 "finished");
                g->finished = true;
            }
        }
    }
    for (size_t i = 0; i < s->ndirty; i++)
        if (s->dirty[i])
            flush_peer(s->dirty[i]);
    s->ndirty = 0;
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static char *find_worker_bin(void)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    const char *env = getenv("PATH");

    if (n > 0) {
        char *slash;
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/taskgrid-worker", self);
            if (access(path, X_OK) == 0)
                return strdup(path);
            /* bazel-bin/scheduler -> bazel-bin/worker */
            snprintf(path, sizeof(path), "%s/../worker/taskgrid-worker", self);
            if (access(path, X_OK) == 0)
                return strdup(path);
        }
    }
    if (env) {
        char *copy = strdup(env), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(path, sizeof(path), "%s/taskgrid-worker", d);
            if (access(path, X_OK) == 0) {
                free(copy);
                return strdup(path);
            }
        }
        free(copy);
    }
    return NULL;
}

int tgs_server_main(const tgs_server_opts *o)
{
    sched s;
    tgs_core_opts co = {0};
    tg__server_opts so = {0};
    tg__rpc_sec sec = {o->ca_pem, o->cert_pem, o->key_pem, NULL};
    tg__server_ops ops = {cb_call, cb_message, cb_done, cb_tick};
    struct sigaction sa;
    char host[256];
    const char *listen = o->listen;
    char *worker_bin = NULL;
    bool tls = false;
    int rc = 0;

    memset(&s, 0, sizeof(s));
    s.opts = *o;
    s.tls = o->ca_pem != NULL;
    co.no_worker_timeout_ms = o->no_worker_timeout_ms;
    co.allowed_failures = o->allowed_failures;
    co.retry_backoff_ms = o->retry_backoff_ms;
    co.retry_backoff_max_ms = o->retry_backoff_max_ms;
    if (tgs_core_new(&s.core, &co) != TGS_OK) {
        fprintf(stderr, "taskgrid-scheduler: out of memory\n");
        return 1;
    }
    so.listen = listen;
    so.sec = o->ca_pem ? &sec : NULL;
    so.max_msg = o->max_message;
    so.tick_ms = 100;
    if (tg__server_new(&s.srv, &so, methods, M_COUNT, &ops, &s) != TG_OK) {
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
        tgs_core_free(s.core);
        return 1;
    }
    /* The address clients and local workers should use. */
    tg__address_parse(listen, host, sizeof(host), &tls);
    *strrchr(host, ':') = '\0';
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0 ||
        host[0] == '\0')
        snprintf(host, sizeof(host), "127.0.0.1");
    snprintf(s.address, sizeof(s.address), "%s://%s:%d", tls ? "tls" : "tcp",
             host, tg__server_port(s.srv));

    if ((o->launcher == NULL || strcmp(o->launcher, "local") == 0) && s.tls &&
        o->worker_tls_cert == NULL) {
        /* Workers we start must present a worker certificate; without one
         * they could never join. */
        if (o->workers > 0) {
            fprintf(stderr,
                    "taskgrid-scheduler: a TLS scheduler starting workers "
                    "needs a worker certificate for them: give "
                    "--worker-tls-cert and --worker-tls-key\n");
            rc = 2;
            goto cleanup;
        }
    } else if (o->launcher == NULL || strcmp(o->launcher, "local") == 0) {
        tgs_launcher_opts lo = {0};
        worker_bin = o->worker_bin ? strdup(o->worker_bin) : find_worker_bin();
        if (worker_bin == NULL) {
            if (o->workers > 0) {
                fprintf(stderr,
                        "taskgrid-scheduler: cannot find taskgrid-worker to "
                        "start workers (looked next to this program and in "
                        "PATH); pass --worker-bin PATH or build it with "
                        "'bazel build //worker'\n");
                rc = 1;
                goto cleanup;
            }
        } else {
            lo.worker_bin = worker_bin;
            lo.address = s.address;
            lo.nthreads = o->worker_nthreads;
            lo.resources = o->worker_resources;
            lo.preload = o->worker_preload;
            lo.npreload = o->nworker_preload;
            lo.log_level = o->worker_log_level;
            lo.tls_ca = o->worker_tls_ca;
            lo.tls_cert = o->worker_tls_cert;
            lo.tls_key = o->worker_tls_key;
            tgs_launcher_new(&s.launcher, &lo);
        }
    } else if (strcmp(o->launcher, "none") != 0) {
        fprintf(stderr, "taskgrid-scheduler: unknown launcher '%s' (use "
                        "'local' or 'none')\n",
                o->launcher);
        rc = 2;
        goto cleanup;
    }
    if (o->workers > 0) /* Scale(n) from the start: the core keeps it */
        tgs_core_scale(s.core, o->workers, tg__now_ms());

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal_server = s.srv;

    printf("taskgrid-scheduler listening on %s\n", s.address);
    fflush(stdout);
    TG_LOG_INFO("listening on %s%s", s.address,
                s.launcher ? " (local launcher)" : "");
    tg__server_run(s.srv);
    TG_LOG_INFO("shutting down (signal %d)", (int)got_signal);

cleanup:
    signal_server = NULL;
    /* Tell our workers to stop, end every call (so nobody waits on this
     * loop, which no longer runs), then reap the workers with a bound:
     * they are children and must not outlive us. */
    tgs_launcher_terminate(s.launcher);
    tg__server_free(s.srv);
    s.srv = NULL;
    tgs_launcher_free(s.launcher, 3000);
    tgs_core_free(s.core);
    free(s.workers.v);
    free(s.gathers.v);
    free(s.dirty);
    free(worker_bin);
    return rc;
}
