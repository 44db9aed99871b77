/* SPDX-License-Identifier: Apache-2.0
 *
 * watch.c: tg_client_watch (Scheduler.Watch read as a stream of
 * tg_watch_update snapshots, each decoded once into plain C: its strings
 * copied, NUL-terminated, into one block the update owns) and
 * tg_client_progress on top of it (the keys split over streams of at most
 * 65,535). Depends on client_impl.h and the transport's client streams.
 */
#include <stdlib.h>
#include <string.h>

#include "client_impl.h"
#include "methods.h"
#include "taskgrid/watch.h"
#include "util/clock.h"
#include "util/error.h"

/* Keys per stream of tg_client_progress (WatchRequest.keys' limit). */
#define PROGRESS_KEYS_PER_STREAM 65535u

struct tg_watch {
    tg__cstream *st;
};

struct tg_watch_update {
    int64_t time_us;
    uint64_t totals[TG_WATCH_NSTATES], keys[TG_WATCH_NSTATES];
    uint64_t dropped;
    uint32_t nworkers, target;
    tg_watch_task_event *ev;
    size_t nev;
    const char **fn;
    uint64_t (*fc)[TG_WATCH_NSTATES];
    size_t nfn;
    tg_watch_worker_event *wk;
    size_t nwk;
    char *strings; /* every string above */
};

int tg_client_watch(tg_client *c, const tg_watch_opts *o, tg_watch **out)
{
    taskgrid_v1_WatchRequest req = {0};
    uint8_t *buf = NULL;
    size_t len;
    tg_watch *w;
    int rc;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_watch: out is NULL");
    *out = NULL;
    if ((rc = tg__client_enter(c, "tg_client_watch")) != TG_OK)
        return rc;
    if (o != NULL) {
        if (o->version < 1 || o->version > TG_WATCH_OPTS_VERSION)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_watch: opts version %u is not "
                                 "%d (initialise with TG_WATCH_OPTS_INIT)",
                                 (unsigned)o->version, TG_WATCH_OPTS_VERSION);
        if (o->nkeys > PROGRESS_KEYS_PER_STREAM || (o->nkeys && !o->keys))
            return tg__error_set(TG_EINVAL,
                                 "tg_client_watch: %zu keys (at most 65535 "
                                 "per watch, and keys not NULL)",
                                 o->nkeys);
        if (o->nprefixes > 64 || (o->nprefixes && !o->key_prefixes))
            return tg__error_set(TG_EINVAL,
                                 "tg_client_watch: %zu key prefixes (at "
                                 "most 64, and key_prefixes not NULL)",
                                 o->nprefixes);
        for (size_t i = 0; i < o->nkeys; i++)
            if (o->keys[i] == NULL)
                return tg__error_set(TG_EINVAL,
                                     "tg_client_watch: keys[%zu] is NULL", i);
        for (size_t i = 0; i < o->nprefixes; i++)
            if (o->key_prefixes[i] == NULL)
                return tg__error_set(
                    TG_EINVAL, "tg_client_watch: key_prefixes[%zu] is NULL", i);
        /* The codec reads these arrays and does not write them. */
        req.keys = (char **)o->keys;
        req.keys_count = (pb_size_t)o->nkeys;
        req.key_prefixes = (char **)o->key_prefixes;
        req.key_prefixes_count = (pb_size_t)o->nprefixes;
        req.task_events = o->task_events;
        req.functions = o->functions;
        req.workers = o->workers;
        req.interval_ms = o->interval_ms;
        req.max_events = o->max_events;
    }
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    if (tg__wire_encode(taskgrid_v1_WatchRequest_fields, &req, &buf, &len) !=
        TG_OK) {
        free(w);
        return tg__error_set(TG_EINTERNAL, "Watch: %s", tg_error_last());
    }
    rc = tg__cstream_open_request(&w->st, c->ch, TG_METHOD_WATCH, buf, len, -1);
    free(buf);
    if (rc != TG_OK) {
        tg__cstream_free(w->st);
        free(w);
        return rc;
    }
    *out = w;
    return TG_OK;
}

void tg_watch_close(tg_watch *w)
{
    if (w == NULL)
        return;
    tg__cstream_free(w->st);
    free(w);
}

static void counts_of(uint64_t k[TG_WATCH_NSTATES],
                      const taskgrid_v1_TaskCounts *c)
{
    k[TG_TASK_PENDING] = 0;
    k[TG_TASK_WAITING] = c->waiting;
    k[TG_TASK_READY] = c->ready;
    k[TG_TASK_PROCESSING] = c->processing;
    k[TG_TASK_MEMORY] = c->memory;
    k[TG_TASK_ERRED] = c->erred;
    k[TG_TASK_CANCELLED] = c->cancelled;
    k[TG_TASK_RELEASED] = c->released;
}

/* A received state as the SDK's (unknown values from a newer scheduler
 * read as PENDING). */
static tg_task_state state_of(taskgrid_v1_TaskState s)
{
    return s >= 1 && s <= 7 ? (tg_task_state)s : TG_TASK_PENDING;
}

static size_t strings_size(const taskgrid_v1_WatchUpdate *m)
{
    size_t n = 0;
    for (pb_size_t i = 0; i < m->tasks_count; i++) {
        const taskgrid_v1_TaskEvent *e = &m->tasks[i];
        n += e->key.len + e->function.len + e->worker.len + e->error_type.len +
             4;
    }
    for (pb_size_t i = 0; i < m->functions_count; i++)
        n += m->functions[i].function.len + 1;
    for (pb_size_t i = 0; i < m->workers_count; i++)
        n += m->workers[i].worker.name.len + m->workers[i].reason.len + 2;
    return n + 1;
}

static int update_fill(tg_watch_update *u, const taskgrid_v1_WatchUpdate *m)
{
    char *at;

    u->time_us = m->time_us;
    counts_of(u->totals, &m->totals);
    counts_of(u->keys, &m->keys_counts);
    u->dropped = m->dropped_events;
    u->nworkers = m->nworkers;
    u->target = m->target_workers;
    u->strings = malloc(strings_size(m));
    u->ev = calloc(m->tasks_count ? m->tasks_count : 1, sizeof(*u->ev));
    u->fn = calloc(m->functions_count ? m->functions_count : 1, sizeof(*u->fn));
    u->fc = calloc(m->functions_count ? m->functions_count : 1, sizeof(*u->fc));
    u->wk = calloc(m->workers_count ? m->workers_count : 1, sizeof(*u->wk));
    if (!u->strings || !u->ev || !u->fn || !u->fc || !u->wk)
        return tg__error_set(TG_ENOMEM, "out of memory");
    at = u->strings;
    for (pb_size_t i = 0; i < m->tasks_count; i++) {
        const taskgrid_v1_TaskEvent *e = &m->tasks[i];
        tg_watch_task_event *d = &u->ev[i];
        d->key = tg__strings_put(&at, e->key);
        d->previous = state_of(e->previous);
        d->state = state_of(e->state);
        d->function = tg__strings_put(&at, e->function);
        d->worker = tg__strings_put(&at, e->worker);
        d->attempt = e->attempt;
        d->time_us = e->time_us;
        d->run_us = e->run_us;
        d->nbytes = e->nbytes;
        d->error_type = tg__strings_put(&at, e->error_type);
    }
    u->nev = m->tasks_count;
    for (pb_size_t i = 0; i < m->functions_count; i++) {
        u->fn[i] = tg__strings_put(&at, m->functions[i].function);
        counts_of(u->fc[i], &m->functions[i].counts);
    }
    u->nfn = m->functions_count;
    for (pb_size_t i = 0; i < m->workers_count; i++) {
        const taskgrid_v1_WorkerEvent *e = &m->workers[i];
        tg_watch_worker_event *d = &u->wk[i];
        d->kind = (tg_worker_event_kind)e->kind;
        d->name = tg__strings_put(&at, e->worker.name);
        d->reason = tg__strings_put(&at, e->reason);
        d->nthreads = e->worker.nthreads;
        d->processing = e->worker.processing;
        d->memory = e->worker.memory;
        d->spilled = e->worker.spilled;
        d->paused = e->worker.paused;
        d->time_us = e->time_us;
    }
    u->nwk = m->workers_count;
    return TG_OK;
}

int tg_watch_next(tg_watch *w, int64_t timeout_ms, tg_watch_update **out)
{
    taskgrid_v1_WatchUpdate m;
    tg_watch_update *u;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    if (out == NULL || w == NULL)
        return tg__error_set(TG_EINVAL, "tg_watch_next: watch or out is NULL");
    *out = NULL;
    rc = tg__cstream_recv(w->st, &buf, &len, timeout_ms < 0 ? -1 : timeout_ms);
    if (rc != TG_OK)
        return rc;
    if (buf == NULL)
        return tg__error_set(TG_EUNAVAILABLE,
                             "the scheduler ended the watch (it is stopping)");
    if (tg__wire_decode(taskgrid_v1_WatchUpdate_fields, &m, buf, len) !=
        TG_OK) {
        free(buf);
        return tg__error_set(TG_EPROTO, "Watch: %s", tg_error_last());
    }
    if ((u = calloc(1, sizeof(*u))) == NULL ||
        (rc = update_fill(u, &m)) != TG_OK) {
        tg_watch_update_free(u);
        rc = tg__error_set(TG_ENOMEM, "out of memory");
    } else {
        *out = u;
    }
    tg__wire_release(taskgrid_v1_WatchUpdate_fields, &m);
    free(buf);
    return rc;
}

void tg_watch_update_free(tg_watch_update *u)
{
    if (u == NULL)
        return;
    free(u->ev);
    free(u->fn);
    free(u->fc);
    free(u->wk);
    free(u->strings);
    free(u);
}

static size_t state_index(tg_task_state s)
{
    return (unsigned)s < TG_WATCH_NSTATES ? (size_t)s : 0;
}

int64_t tg_watch_update_time_us(const tg_watch_update *u)
{
    return u ? u->time_us : 0;
}

uint64_t tg_watch_update_total(const tg_watch_update *u, tg_task_state s)
{
    return u ? u->totals[state_index(s)] : 0;
}

uint64_t tg_watch_update_key_count(const tg_watch_update *u, tg_task_state s)
{
    return u ? u->keys[state_index(s)] : 0;
}

uint64_t tg_watch_update_dropped(const tg_watch_update *u)
{
    return u ? u->dropped : 0;
}

uint32_t tg_watch_update_nworkers(const tg_watch_update *u)
{
    return u ? u->nworkers : 0;
}

uint32_t tg_watch_update_target_workers(const tg_watch_update *u)
{
    return u ? u->target : 0;
}

size_t tg_watch_update_ntask_events(const tg_watch_update *u)
{
    return u ? u->nev : 0;
}

const tg_watch_task_event *tg_watch_update_task_event(const tg_watch_update *u,
                                                      size_t i)
{
    return u && i < u->nev ? &u->ev[i] : NULL;
}

size_t tg_watch_update_nfunctions(const tg_watch_update *u)
{
    return u ? u->nfn : 0;
}

const char *tg_watch_update_function(const tg_watch_update *u, size_t i,
                                     uint64_t counts[TG_WATCH_NSTATES])
{
    if (u == NULL || i >= u->nfn)
        return NULL;
    if (counts != NULL)
        memcpy(counts, u->fc[i], sizeof(u->fc[i]));
    return u->fn[i];
}

size_t tg_watch_update_nworker_events(const tg_watch_update *u)
{
    return u ? u->nwk : 0;
}

const tg_watch_worker_event *
tg_watch_update_worker_event(const tg_watch_update *u, size_t i)
{
    return u && i < u->nwk ? &u->wk[i] : NULL;
}

/* ---- tg_client_progress ---- */

typedef struct progress_stream {
    tg_watch *w;
    uint64_t counts[TG_WATCH_NSTATES];
    bool seen; /* its first update arrived */
} progress_stream;

static uint64_t final_of(const uint64_t k[TG_WATCH_NSTATES])
{
    return k[TG_TASK_MEMORY] + k[TG_TASK_ERRED] + k[TG_TASK_CANCELLED] +
           k[TG_TASK_RELEASED];
}

static uint64_t sum_of(const uint64_t k[TG_WATCH_NSTATES])
{
    uint64_t n = 0;
    for (size_t i = 1; i < TG_WATCH_NSTATES; i++)
        n += k[i];
    return n;
}

/* Read what stream `p` has (waiting at most `wait_ms`); *changed when its
 * counts moved. */
static int progress_read(progress_stream *p, int64_t wait_ms, bool *changed)
{
    tg_watch_update *u;
    int rc = tg_watch_next(p->w, wait_ms, &u);

    if (rc == TG_ETIMEDOUT)
        return TG_OK;
    if (rc != TG_OK)
        return rc;
    for (size_t s = 0; s < TG_WATCH_NSTATES; s++) {
        uint64_t v = tg_watch_update_key_count(u, (tg_task_state)s);
        if (v != p->counts[s] || !p->seen)
            *changed = true;
        p->counts[s] = v;
    }
    p->seen = true;
    tg_watch_update_free(u);
    return TG_OK;
}

static int progress_open(tg_client *c, const char *const *keys, size_t n,
                         progress_stream *ps, size_t nstreams)
{
    for (size_t i = 0; i < nstreams; i++) {
        tg_watch_opts o = TG_WATCH_OPTS_INIT;
        size_t first = i * PROGRESS_KEYS_PER_STREAM;
        o.keys = keys + first;
        o.nkeys = n - first < PROGRESS_KEYS_PER_STREAM
                      ? n - first
                      : PROGRESS_KEYS_PER_STREAM;
        int rc = tg_client_watch(c, &o, &ps[i].w);
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}

int tg_client_progress(tg_client *c, const char *const *keys, size_t n,
                       tg_progress_fn cb, void *userdata, int64_t timeout_ms)
{
    size_t nstreams =
        (n + PROGRESS_KEYS_PER_STREAM - 1) / PROGRESS_KEYS_PER_STREAM;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : tg__now_ms() + timeout_ms;
    progress_stream *ps;
    int rc;

    if (n > 0 && keys == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_progress: keys is NULL");
    for (size_t i = 0; i < n; i++)
        if (keys[i] == NULL || strlen(keys[i]) > TG_KEY_MAX)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_progress: keys[%zu] is %s", i,
                                 keys[i] ? "longer than TG_KEY_MAX" : "NULL");
    if (n == 0)
        return TG_OK;
    if ((ps = calloc(nstreams, sizeof(*ps))) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    rc = progress_open(c, keys, n, ps, nstreams);
    for (;;) {
        uint64_t sum[TG_WATCH_NSTATES] = {0};
        bool changed = false, all_seen = true;
        int64_t left = deadline == INT64_MAX ? -1 : deadline - tg__now_ms();
        if (rc != TG_OK)
            break;
        if (deadline != INT64_MAX && left <= 0) {
            rc = tg__error_set(TG_ETIMEDOUT,
                               "tg_client_progress: %zu keys not all final "
                               "after %lld ms",
                               n, (long long)timeout_ms);
            break;
        }
        /* One stream: block on it; several: take turns briefly. */
        for (size_t i = 0; i < nstreams && rc == TG_OK; i++)
            rc = progress_read(&ps[i],
                               nstreams == 1           ? left
                               : left < 0 || left > 20 ? 20
                                                       : left,
                               &changed);
        if (rc != TG_OK)
            break;
        for (size_t i = 0; i < nstreams; i++) {
            all_seen = all_seen && ps[i].seen;
            for (size_t s = 0; s < TG_WATCH_NSTATES; s++)
                sum[s] += ps[i].counts[s];
        }
        if (!all_seen)
            continue;
        if (changed && cb != NULL)
            cb(userdata, sum, sum_of(sum));
        if (final_of(sum) == sum_of(sum))
            break;
    }
    for (size_t i = 0; i < nstreams; i++)
        tg_watch_close(ps[i].w);
    free(ps);
    return rc;
}
