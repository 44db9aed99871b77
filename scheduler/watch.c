/* SPDX-License-Identifier: Apache-2.0
 *
 * watch.c: Scheduler.Watch, a server stream of batched WatchUpdates. A
 * watcher follows exact keys (a hash set under the core's keyed hash: one
 * lookup per state change) and key prefixes; what happens meanwhile is
 * accumulated: counts are kept up to date (never dropped), task and
 * worker events are encoded at once into byte buffers bounded by
 * max_events and a byte budget (the rest counted in dropped_events). At
 * most one update is in flight per watcher (the next waits until gRPC has
 * written the previous), at most one per interval_ms, and only when
 * something it carries changed: a slow watcher costs the scheduler a
 * bounded buffer, whatever the rate of tasks. Function counts and worker
 * updates are diffed against what the watcher was last sent, at update
 * time. Depends on sched.h, proto/wire.h and the transport.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "sched.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define WATCH_MAX_PREFIXES 64u
#define WATCH_MAX_INTERVAL_MS 3600000u
#define WATCH_DEFAULT_INTERVAL_MS 100u
#define WATCH_MIN_INTERVAL_MS 10u
#define WATCH_DEFAULT_EVENTS 10000u
#define WATCH_MAX_EVENTS 100000u
/* Bytes of task events kept for one update at most (also at most a
 * quarter of the message limit): with long keys, max_events alone would
 * allow updates over the limit. */
#define WATCH_EVENT_BYTES (16u << 20)
/* Worker joins and leaves kept for one update at most. */
#define WATCH_WORKER_EVENTS 4096u

/* What a watcher was last told of one worker (WorkerEvent UPDATED). */
typedef struct wsnap {
    uint64_t id;
    uint32_t processing, seceded;
    uint64_t memory, spilled, rss;
    bool paused, draining;
} wsnap;

/* What a watcher was last told of one function, by its interned name
 * (the core keeps names for its life, so the pointer is the identity). */
typedef struct fsnap {
    const char *name;
    uint64_t counts[TGS_NSTATES];
} fsnap;

typedef struct watch {
    bool task_events, functions, workers, all;
    uint32_t interval_ms, max_events;
    size_t max_bytes;
    /* Followed keys: `keys` and a table of indexes + 1 (0: empty). */
    char **keys;
    size_t nkeys;
    uint32_t *slots;
    size_t mask;
    uint64_t kcounts[TGS_NSTATES];
    char **prefixes;
    size_t nprefixes;
    /* Pending events, encoded: one-entry WatchUpdates (tasks; workers). */
    outbuf ev, wev;
    uint64_t dropped;
    /* Last sent. */
    uint64_t sent_totals[TGS_NSTATES], sent_kcounts[TGS_NSTATES];
    uint32_t sent_nworkers, sent_target;
    wsnap *snaps;
    size_t nsnaps;
    fsnap *fs; /* open addressing by name pointer, fmask + 1 slots */
    size_t fmask, nfs;
    int64_t last_ms;
} watch;

/* ---- the followed keys ---- */

static size_t key_slot(const watch *w, const char *k, size_t len, uint64_t h,
                       bool *found)
{
    size_t i = (size_t)h & w->mask;

    for (;; i = (i + 1) & w->mask) {
        uint32_t v = w->slots[i];
        if (v == 0) {
            *found = false;
            return i;
        }
        const char *o = w->keys[v - 1];
        if (strlen(o) == len && memcmp(o, k, len) == 0) {
            *found = true;
            return i;
        }
    }
}

/* Is `k` named by the watcher? */
static bool key_named(const watch *w, tgs_str k, uint64_t h)
{
    bool found = false;
    if (w->nkeys > 0)
        key_slot(w, k.ptr, k.len, h, &found);
    return found;
}

static bool key_prefixed(const watch *w, tgs_str k)
{
    if (w->all)
        return true;
    for (size_t i = 0; i < w->nprefixes; i++) {
        size_t n = strlen(w->prefixes[i]);
        if (n <= k.len && memcmp(w->prefixes[i], k.ptr, n) == 0)
            return true;
    }
    return false;
}

/* Copy the request's keys into the set, each once, counting each in its
 * current state. */
static int keys_init(sched *s, watch *w, char **keys, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n)
        cap *= 2;
    w->keys = calloc(n ? n : 1, sizeof(*w->keys));
    w->slots = calloc(cap, sizeof(*w->slots));
    if (w->keys == NULL || w->slots == NULL)
        return tg__error_set(TG_ENOMEM, "scheduler out of memory");
    w->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(keys[i]);
        bool found;
        size_t slot =
            key_slot(w, keys[i], len, tgs_core_hash(keys[i], len), &found);
        const tgs_task *t;
        if (found)
            continue;
        if ((w->keys[w->nkeys] = strdup(keys[i])) == NULL)
            return tg__error_set(TG_ENOMEM, "scheduler out of memory");
        w->slots[slot] = (uint32_t)++w->nkeys;
        t = tgs_core_find(s->core, (tgs_str){keys[i], len});
        w->kcounts[t ? tgs_task_state(t) : TGS_RELEASED]++;
    }
    return TG_OK;
}

/* ---- events ---- */

static bool events_full(const watch *w, const outbuf *b, uint32_t max)
{
    return b->count >= max || b->len >= w->max_bytes;
}

static void append_update(watch *w, outbuf *b, const taskgrid_v1_WatchUpdate *u)
{
    if (tg__wire_append(taskgrid_v1_WatchUpdate_fields, u, &b->p, &b->len,
                        &b->cap) != TG_OK) {
        w->dropped++;
        return;
    }
    b->count++;
}

/* Protobuf by hand for the one hot message: a WatchUpdate holding one
 * TaskEvent (field 4), proto3 style (zero fields left out). nanopb's
 * generic encoder costs several times more per event, and a watcher of
 * every task encodes one per state change. */
static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t field_len(uint64_t v)
{
    return v ? 1 + varint_len(v) : 0;
}

static size_t bytes_len(tgs_str b)
{
    return b.len ? 1 + varint_len(b.len) + b.len : 0;
}

static uint8_t *put_field(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0)
        return p;
    *p++ = (uint8_t)(field << 3);
    return put_varint(p, v);
}

static uint8_t *put_bytes(uint8_t *p, unsigned field, tgs_str b)
{
    if (b.len == 0)
        return p;
    *p++ = (uint8_t)(field << 3 | 2);
    p = put_varint(p, b.len);
    memcpy(p, b.ptr, b.len);
    return p + b.len;
}

static void task_event(sched *s, watch *w, const tgs_transition *tr,
                       int64_t now_us)
{
    const tgs_task *t = tr->task;
    tgs_str key = tgs_task_key(t), fn = tgs_task_func(t), wk, err = {"", 0};
    uint64_t run_us, nbytes = 0, attempt = tgs_task_attempt(t);
    size_t inner, total;
    uint8_t *p;

    if (events_full(w, &w->ev, w->max_events)) {
        w->dropped++;
        return;
    }
    wk = srv_transition_worker(s, tr, &run_us);
    if (tr->to == TGS_MEMORY)
        nbytes = tgs_task_result_size(t);
    else if (tr->to == TGS_ERRED)
        err = tgs_task_err_type(t);
    inner = bytes_len(key) + field_len(tr->from) + field_len(tr->to) +
            bytes_len(fn) + bytes_len(wk) + field_len(attempt) +
            field_len((uint64_t)now_us) + field_len(run_us) +
            field_len(nbytes) + bytes_len(err);
    total = 1 + varint_len(inner) + inner;
    if (tg__array_grow_to(&w->ev.p, &w->ev.cap, w->ev.len + total, 1, 4096,
                          SIZE_MAX) != TG_OK) {
        w->dropped++;
        return;
    }
    p = w->ev.p + w->ev.len;
    *p++ = 4 << 3 | 2; /* WatchUpdate.tasks */
    p = put_varint(p, inner);
    p = put_bytes(p, 1, key);
    p = put_field(p, 2, tr->from);
    p = put_field(p, 3, tr->to);
    p = put_bytes(p, 4, fn);
    p = put_bytes(p, 5, wk);
    p = put_field(p, 6, attempt);
    p = put_field(p, 7, (uint64_t)now_us);
    p = put_field(p, 8, run_us);
    p = put_field(p, 9, nbytes);
    p = put_bytes(p, 10, err);
    w->ev.len = (size_t)(p - w->ev.p);
    w->ev.count++;
}

void srv_watch_transition(sched *s, const tgs_transition *tr, int64_t now_us)
{
    tgs_str k = tgs_task_key(tr->task);
    uint64_t h = 0;
    bool hashed = false;

    for (size_t i = 0; i < s->watches.n; i++) {
        watch *w = s->watches.v[i]->watch;
        bool named = false;
        if (w == NULL || (w->nkeys == 0 && w->nprefixes == 0 && !w->all))
            continue;
        if (w->nkeys > 0) {
            if (!hashed) {
                h = tgs_core_hash(k.ptr, k.len);
                hashed = true;
            }
            named = key_named(w, k, h);
        }
        if (named) {
            tgs_state from = tr->from ? tr->from : TGS_RELEASED;
            if (w->kcounts[from] > 0)
                w->kcounts[from]--;
            w->kcounts[tr->to]++;
        }
        if (w->task_events && (named || key_prefixed(w, k)))
            task_event(s, w, tr, now_us);
    }
}

/* WorkerInfo of `p`; `info` (may be NULL) from the core; `rs` has room
 * for p->nres resources. */
static void fill_worker(const peer *p, const tgs_worker_info *info,
                        taskgrid_v1_WorkerInfo *wi, taskgrid_v1_Resource *rs)
{
    memset(wi, 0, sizeof(*wi));
    wi->name = tg_pbbuf_str(p->name);
    wi->nthreads = info ? info->nthreads : p->nthreads;
    if (info != NULL) {
        wi->processing = info->processing;
        wi->seceded = info->seceded;
        wi->draining = info->draining;
    }
    wi->functions_count = (pb_size_t)p->nfuncs;
    wi->functions = p->funcs;
    wi->resources_count = (pb_size_t)p->nres;
    wi->resources = rs;
    for (size_t k = 0; k < p->nres; k++) {
        rs[k].name = tg_pbbuf_str(p->res_names[k]);
        rs[k].amount = p->res_amounts[k];
    }
    wi->memory = p->mem.memory;
    wi->spilled = p->mem.spilled;
    wi->memory_limit = p->mem.limit;
    wi->paused = p->mem.paused;
    wi->rss = p->mem.rss;
}

/* Encode one WorkerEvent into `b`. */
static void worker_event(watch *w, outbuf *b, const peer *p,
                         const tgs_worker_info *info,
                         taskgrid_v1_WorkerEvent_Kind kind, const char *reason,
                         int64_t now_us)
{
    taskgrid_v1_WatchUpdate u = {0};
    taskgrid_v1_WorkerEvent e = {0};
    taskgrid_v1_Resource *rs = calloc(p->nres ? p->nres : 1, sizeof(*rs));

    if (rs == NULL) {
        w->dropped++;
        return;
    }
    e.kind = kind;
    e.has_worker = true;
    fill_worker(p, info, &e.worker, rs);
    e.reason = tg_pbbuf_str(reason);
    e.time_us = now_us;
    u.workers_count = 1;
    u.workers = &e;
    append_update(w, b, &u);
    free(rs);
}

void srv_watch_worker(sched *s, peer *p, bool joined, const char *reason)
{
    int64_t now_us = srv_wall_us();

    for (size_t i = 0; i < s->watches.n; i++) {
        watch *w = s->watches.v[i]->watch;
        if (w == NULL || !w->workers)
            continue;
        if (w->wev.count >= WATCH_WORKER_EVENTS) {
            w->dropped++;
            continue;
        }
        worker_event(w, &w->wev, p, NULL,
                     joined ? taskgrid_v1_WorkerEvent_Kind_KIND_JOINED
                            : taskgrid_v1_WorkerEvent_Kind_KIND_LEFT,
                     reason, now_us);
    }
}

/* ---- updates ---- */

static void fill_counts(taskgrid_v1_TaskCounts *tc,
                        const uint64_t k[TGS_NSTATES])
{
    tc->waiting = k[TGS_WAITING];
    tc->ready = k[TGS_READY];
    tc->processing = k[TGS_PROCESSING];
    tc->memory = k[TGS_MEMORY];
    tc->erred = k[TGS_ERRED];
    tc->cancelled = k[TGS_CANCELLED];
    tc->released = k[TGS_RELEASED];
}

static int wsnap_cmp(const void *a, const void *b)
{
    uint64_t x = ((const wsnap *)a)->id, y = ((const wsnap *)b)->id;
    return x < y ? -1 : x > y;
}

static const wsnap *wsnap_find(const watch *w, uint64_t id)
{
    wsnap key = {.id = id};
    return w->nsnaps
               ? bsearch(&key, w->snaps, w->nsnaps, sizeof(wsnap), wsnap_cmp)
               : NULL;
}

/* Workers whose load or memory changed since the last update (all of
 * them as JOINED in the first) into `b`; the snapshots renewed. */
static int workers_diff(sched *s, watch *w, outbuf *b, bool first,
                        int64_t now_us)
{
    size_t n = tgs_core_nworkers(s->core), k = 0;
    wsnap *snaps = calloc(n ? n : 1, sizeof(*snaps));

    if (snaps == NULL)
        return tg__error_set(TG_ENOMEM, "scheduler out of memory");
    for (size_t i = 0; i < n; i++) {
        tgs_worker_info info;
        peer *p;
        if (!tgs_core_worker_at(s->core, i, &info) ||
            (p = srv_table_find(&s->workers, info.id)) == NULL)
            continue;
        wsnap now = {info.id,       info.processing, info.seceded,
                     p->mem.memory, p->mem.spilled,  p->mem.rss,
                     p->mem.paused, info.draining};
        const wsnap *old = wsnap_find(w, info.id);
        if (first)
            worker_event(w, b, p, &info,
                         taskgrid_v1_WorkerEvent_Kind_KIND_JOINED, "", now_us);
        else if (old != NULL && memcmp(old, &now, sizeof(now)) != 0)
            worker_event(w, b, p, &info,
                         taskgrid_v1_WorkerEvent_Kind_KIND_UPDATED, "", now_us);
        snaps[k++] = now;
    }
    qsort(snaps, k, sizeof(*snaps), wsnap_cmp);
    free(w->snaps);
    w->snaps = snaps;
    w->nsnaps = k;
    return TG_OK;
}

/* The snapshot slot of function `name` (interned pointer). */
static fsnap *fsnap_slot(watch *w, const char *name)
{
    size_t i = ((uintptr_t)name >> 3) * 0x9E3779B97F4A7C15ull;

    for (i &= w->fmask;; i = (i + 1) & w->fmask)
        if (w->fs[i].name == NULL || w->fs[i].name == name)
            return &w->fs[i];
}

static int fsnap_grow(watch *w, size_t need)
{
    size_t cap = w->fs ? w->fmask + 1 : 0, ncap = cap ? cap : 64;
    fsnap *old = w->fs;

    if (2 * need <= cap)
        return TG_OK;
    while (ncap < 2 * need)
        ncap *= 2;
    if ((w->fs = calloc(ncap, sizeof(*w->fs))) == NULL) {
        w->fs = old;
        return tg__error_set(TG_ENOMEM, "scheduler out of memory");
    }
    w->fmask = ncap - 1;
    for (size_t i = 0; i < cap; i++)
        if (old[i].name != NULL)
            *fsnap_slot(w, old[i].name) = old[i];
    free(old);
    return TG_OK;
}

/* The functions whose counts changed (all in the first update) into
 * `*out` (malloc'd; its names borrowed from the core). */
static int functions_diff(sched *s, watch *w, bool first,
                          taskgrid_v1_FunctionCounts **out, size_t *nout)
{
    size_t pos = 0, n = 0, cap = 0;
    tgs_str name;
    uint64_t k[TGS_NSTATES];
    taskgrid_v1_FunctionCounts *v = NULL;

    *out = NULL;
    *nout = 0;
    while (tgs_core_func_next(s->core, &pos, &name, k)) {
        fsnap *f;
        if (fsnap_grow(w, w->nfs + 1) != TG_OK)
            break;
        f = fsnap_slot(w, name.ptr);
        if (f->name != NULL && !first && memcmp(f->counts, k, sizeof(k)) == 0)
            continue;
        if (f->name == NULL) {
            f->name = name.ptr;
            w->nfs++;
        }
        memcpy(f->counts, k, sizeof(k));
        if (n >= 65535 || tg__array_grow_to(&v, &cap, n + 1, sizeof(*v), 16,
                                            SIZE_MAX) != TG_OK)
            break; /* the rest go in a later update */
        memset(&v[n], 0, sizeof(v[n]));
        v[n].function = B(name);
        v[n].has_counts = true;
        fill_counts(&v[n].counts, k);
        n++;
    }
    *out = v;
    *nout = n;
    return TG_OK;
}

/* Send an update if one is due (always for the first). */
static void watch_flush(sched *s, peer *p, int64_t now_ms, bool first)
{
    watch *w = p->watch;
    taskgrid_v1_WatchUpdate u = {0};
    taskgrid_v1_FunctionCounts *fc = NULL;
    size_t nfc = 0;
    uint64_t totals[TGS_NSTATES];
    uint32_t target = 0, nworkers;
    outbuf out = w->wev;
    bool changed;

    if (!first && (tg__scall_pending(p->call) > 0 ||
                   now_ms - w->last_ms < (int64_t)w->interval_ms))
        return;
    tgs_core_counts(s->core, totals);
    tgs_core_scale_target(s->core, &target);
    nworkers = (uint32_t)tgs_core_nworkers(s->core);
    memset(&w->wev, 0, sizeof(w->wev));
    /* The order of the message: joins and leaves, task events, then the
     * rest (counts, function counts, worker updates): protobuf appends
     * repeated fields of concatenated messages in order. */
    if (w->ev.len > 0 &&
        tg__array_grow_to(&out.p, &out.cap, out.len + w->ev.len, 1, 4096,
                          SIZE_MAX) == TG_OK) {
        memcpy(out.p + out.len, w->ev.p, w->ev.len);
        out.len += w->ev.len;
    }
    if (w->workers) {
        outbuf upd = {0};
        workers_diff(s, w, &upd, first, srv_wall_us());
        if (upd.len > 0 &&
            tg__array_grow_to(&out.p, &out.cap, out.len + upd.len, 1, 4096,
                              SIZE_MAX) == TG_OK) {
            memcpy(out.p + out.len, upd.p, upd.len);
            out.len += upd.len;
        }
        free(upd.p);
        u.nworkers = nworkers;
        u.target_workers = target;
    }
    if (w->functions)
        functions_diff(s, w, first, &fc, &nfc);
    changed = first || out.len > 0 || nfc > 0 || w->dropped > 0 ||
              memcmp(totals, w->sent_totals, sizeof(totals)) != 0 ||
              (w->nkeys > 0 &&
               memcmp(w->kcounts, w->sent_kcounts, sizeof(totals)) != 0) ||
              (w->workers &&
               (nworkers != w->sent_nworkers || target != w->sent_target));
    if (!changed) {
        free(out.p);
        free(fc);
        return;
    }
    u.time_us = srv_wall_us();
    u.has_totals = true;
    fill_counts(&u.totals, totals);
    if (w->nkeys > 0) {
        u.has_keys_counts = true;
        fill_counts(&u.keys_counts, w->kcounts);
    }
    u.dropped_events = w->dropped;
    u.functions_count = (pb_size_t)nfc;
    u.functions = fc;
    if (tg__wire_append(taskgrid_v1_WatchUpdate_fields, &u, &out.p, &out.len,
                        &out.cap) != TG_OK) {
        TG_LOG_ERROR("cannot encode a watch update: %s", tg_error_last());
        free(out.p);
        free(fc);
        return;
    }
    free(fc);
    free(w->ev.p);
    memset(&w->ev, 0, sizeof(w->ev));
    w->dropped = 0;
    memcpy(w->sent_totals, totals, sizeof(totals));
    memcpy(w->sent_kcounts, w->kcounts, sizeof(totals));
    w->sent_nworkers = nworkers;
    w->sent_target = target;
    w->last_ms = now_ms;
    tg__scall_send(p->call, out.p, out.len);
}

void srv_watch_tick(sched *s, int64_t now_ms)
{
    for (size_t i = 0; i < s->watches.n; i++)
        if (s->watches.v[i]->watch != NULL)
            watch_flush(s, s->watches.v[i], now_ms, false);
}

/* ---- the call ---- */

static bool following(const watch *w)
{
    return w->nkeys > 0 || w->nprefixes > 0 || w->all;
}

static void watch_free(watch *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->nkeys; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->slots);
    for (size_t i = 0; i < w->nprefixes; i++)
        free(w->prefixes[i]);
    free(w->prefixes);
    free(w->ev.p);
    free(w->wev.p);
    free(w->snaps);
    free(w->fs);
    free(w);
}

void srv_watch_gone(sched *s, peer *p)
{
    size_t i;

    for (i = 0; i < s->watches.n && s->watches.v[i] != p; i++)
        ;
    if (i < s->watches.n) {
        memmove(&s->watches.v[i], &s->watches.v[i + 1],
                (s->watches.n - i - 1) * sizeof(peer *));
        s->watches.n--;
    }
    if (p->watch != NULL && following(p->watch)) {
        s->nfollowing--;
        srv_observe_update(s);
    }
    watch_free(p->watch);
    p->watch = NULL;
}

/* A string of WatchRequest.`field` over the key size limit: named in
 * `msg`. */
static bool too_long(char **v, pb_size_t n, const char *field, char *msg,
                     size_t cap)
{
    for (pb_size_t i = 0; i < n; i++) {
        size_t len = strlen(v[i]);
        if (len > TG_PROTO_KEY_MAX) {
            snprintf(msg, cap,
                     "WatchRequest.%s[%u] is %zu bytes long, over the key "
                     "limit of %u bytes",
                     field, (unsigned)i, len, (unsigned)TG_PROTO_KEY_MAX);
            return true;
        }
    }
    return false;
}

/* A hostile request: INVALID_ARGUMENT or PERMISSION_DENIED naming the
 * field; NULL when acceptable. */
static const char *check_request(sched *s, const taskgrid_v1_WatchRequest *m,
                                 const char *role, char *msg, size_t cap,
                                 int *code)
{
    *code = TG_EINVAL;
    /* More than 65,535 keys cannot be decoded: the
     * codec's arrays count with 16 bits, and srv_decode refuses them. */
    if (m->key_prefixes_count > WATCH_MAX_PREFIXES) {
        snprintf(msg, cap,
                 "WatchRequest.key_prefixes has %u prefixes, more than %u",
                 (unsigned)m->key_prefixes_count, WATCH_MAX_PREFIXES);
        return msg;
    }
    if (too_long(m->keys, m->keys_count, "keys", msg, cap) ||
        too_long(m->key_prefixes, m->key_prefixes_count, "key_prefixes", msg,
                 cap))
        return msg;
    if (m->interval_ms > WATCH_MAX_INTERVAL_MS) {
        snprintf(msg, cap,
                 "WatchRequest.interval_ms is %u, more than %u (one hour)",
                 (unsigned)m->interval_ms, WATCH_MAX_INTERVAL_MS);
        return msg;
    }
    if (m->max_events > WATCH_MAX_EVENTS) {
        snprintf(msg, cap, "WatchRequest.max_events is %u, more than %u",
                 (unsigned)m->max_events, WATCH_MAX_EVENTS);
        return msg;
    }
    if (m->key_prefixes_count > 0 && s->tls && strcmp(role, "admin") != 0) {
        *code = TG_EPERM;
        snprintf(msg, cap,
                 "WatchRequest.key_prefixes needs role 'admin' (this "
                 "certificate has role '%.40s'): prefixes reveal keys the "
                 "watcher did not name; name the keys instead",
                 role);
        return msg;
    }
    return NULL;
}

static int watch_init(sched *s, watch *w, const taskgrid_v1_WatchRequest *m)
{
    w->task_events = m->task_events;
    w->functions = m->functions;
    w->workers = m->workers;
    w->interval_ms =
        m->interval_ms ? m->interval_ms : WATCH_DEFAULT_INTERVAL_MS;
    if (w->interval_ms < WATCH_MIN_INTERVAL_MS)
        w->interval_ms = WATCH_MIN_INTERVAL_MS;
    w->max_events = m->max_events ? m->max_events : WATCH_DEFAULT_EVENTS;
    w->max_bytes = srv_max_message(s) / 4;
    if (w->max_bytes > WATCH_EVENT_BYTES)
        w->max_bytes = WATCH_EVENT_BYTES;
    if (keys_init(s, w, m->keys, m->keys_count) != TG_OK)
        return TG_ENOMEM;
    w->prefixes = calloc(m->key_prefixes_count ? m->key_prefixes_count : 1,
                         sizeof(char *));
    if (w->prefixes == NULL)
        return tg__error_set(TG_ENOMEM, "scheduler out of memory");
    for (pb_size_t i = 0; i < m->key_prefixes_count; i++) {
        if (m->key_prefixes[i][0] == '\0')
            w->all = true;
        else if ((w->prefixes[w->nprefixes++] = strdup(m->key_prefixes[i])) ==
                 NULL)
            return tg__error_set(TG_ENOMEM, "scheduler out of memory");
    }
    return TG_OK;
}

void srv_do_watch(sched *s, tg__scall *c, const uint8_t *req, size_t len,
                  const char *role)
{
    taskgrid_v1_WatchRequest m;
    char msg[400];
    int code;
    peer *p = NULL;
    watch *w = NULL;

    if (tg__wire_decode(taskgrid_v1_WatchRequest_fields, &m, req, len) !=
        TG_OK) {
        /* The codec's arrays count with 16 bits: an overflow is a list
         * over the limits below. */
        tg__scall_finish(
            c, TG_EINVAL,
            strstr(tg_error_last(), "too many array entries")
                ? "WatchRequest.keys names more than 65535 keys (open more "
                  "streams for more), or WatchRequest.key_prefixes has more "
                  "than 64 prefixes"
                : tg_error_last());
        return;
    }
    if (check_request(s, &m, role, msg, sizeof(msg), &code) != NULL) {
        tg__scall_finish(c, code, msg);
        goto cleanup;
    }
    p = calloc(1, sizeof(*p));
    w = calloc(1, sizeof(*w));
    if (p == NULL || w == NULL || watch_init(s, w, &m) != TG_OK ||
        srv_table_add(&s->watches, p) != TG_OK) {
        free(p);
        watch_free(w);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    p->kind = PEER_WATCH;
    p->id = ++s->next_id;
    p->call = c;
    p->watch = w;
    tg__scall_set_data(c, p);
    if (following(w)) {
        s->nfollowing++;
        srv_observe_update(s);
    }
    watch_flush(s, p, tg__now_ms(), true); /* the current state, at once */

cleanup:
    tg__wire_release(taskgrid_v1_WatchRequest_fields, &m);
}
