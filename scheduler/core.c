/* SPDX-License-Identifier: Apache-2.0
 *
 * core.c: the pure scheduling core of taskgrid-scheduler (see core.h): the
 * task graph, per-function ready heaps, the worker table, retries,
 * cancellation, forgetting, and the action queue. Deterministic, single
 * threaded, no I/O; time comes in as `now_ms`. Depends on libc and on the
 * two data structures next to it: hashmap.c (tasks, functions, codecs and
 * workers by key) and heap.c (READY tasks of one function).
 *
 * The invariants that keep every event O(size of the change) rather than
 * O(number of tasks):
 *
 *  - A non-final task T is listed in the `dependents` array of each of its
 *    non-final dependencies (once per occurrence); `T->unfinished` counts
 *    those occurrences. When a dependency becomes final it walks its
 *    dependents once, decrements their counters and drops the array: a
 *    final task has no dependents array.
 *  - `D->needed` counts the non-final tasks that list D as a dependency
 *    (once per occurrence). A task drops its dependency pointers (and those
 *    counts) as soon as it is final, because only an assignment needs them.
 *  - A task is forgotten when it is final, has no client holds, is needed
 *    by no one and is listed in no dependents array (`unfinished == 0`).
 *    Forgotten tasks leave the map at once but are freed only at the start
 *    of a later event, when no queued action can still point at them.
 *  - Every function's ready heap has room for all of its non-final tasks,
 *    reserved at submit (where failing is clean), so moving a task back to
 *    READY (a retry, a lost worker) can never fail half-way.
 */
#include "scheduler/core.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/hashmap.h"
#include "scheduler/heap.h"

#define DEFAULT_ALLOWED_FAILURES 3
#define DEFAULT_MAX_PREFETCH 1024
/* Queue about this much work (in ms) per thread on each worker: enough to
 * hide the round trip between a result and the next assignment, little
 * enough that a worker joining later (or a higher-priority task arriving)
 * still finds work to take. */
#define PREFETCH_TARGET_MS 10.0
/* Weight of a new sample in a function's moving average of run time
 * (1/8, as TCP's smoothed round-trip time). */
#define AVG_WEIGHT 0.125
#define NONE UINT32_MAX

/* Task flags. */
enum {
    /* The error came from a dependency: err_origin names the task that
     * failed first. */
    TF_INHERITED = 1,
    /* On the work list of a failure cascade (u.link in use). */
    TF_PENDING = 2,
    /* Out of the map, in the graveyard (u.link in use). */
    TF_FORGOTTEN = 4,
};

/* An interned string (codecs). Never freed before the core. */
typedef struct tgs_istr {
    uint32_t hash;
    uint32_t len;
    char s[];
} tgs_istr;

/* An error, shared (reference counted) by a failed task and every
 * dependent that inherits it, so that failing a million dependents does
 * not copy a traceback a million times. `origin` is the key of the task
 * that failed first; tasks report it only if they inherited the error. */
typedef struct tgs_error {
    uint32_t refs;
    tgs_str type;
    tgs_str message;
    tgs_str traceback;
    tgs_str origin;
    char data[];
} tgs_error;

typedef struct tgs_result {
    const tgs_istr *codec;
    size_t len;
    uint8_t data[];
} tgs_result;

typedef struct tgs_watchers {
    uint32_t n;
    uint32_t cap;
    uint64_t ids[];
} tgs_watchers;

/* Resources and worker restrictions of a task: rare, so out of line and
 * NULL for most tasks. Arrays and strings follow in the same block. */
typedef struct tgs_annot {
    size_t nresources;
    size_t nworkers;
    tgs_resource *resources;
    tgs_str *workers;
} tgs_annot;

/* A function name: interned, with its ready heap and run-time statistics. */
typedef struct tgs_func {
    tgs_heap ready;
    uint64_t nlive;       /* non-final tasks (ready heap capacity) */
    int64_t since;        /* starving: when it started */
    double avg_ms;        /* moving average of measured run time */
    uint32_t nproviders;  /* connected, non-draining workers providing it */
    uint32_t starving_pos; /* index in core->starving, or NONE */
    uint32_t scratch;     /* per-call counter, zero between calls */
    bool avg_known;
    uint32_t hash;
    uint32_t len;
    char name[];
} tgs_func;

typedef struct tgs_worker {
    uint64_t id;
    uint64_t order; /* join order: deterministic tie-break */
    tgs_func **funcs;
    size_t nfuncs;
    tgs_resource *resources; /* names packed behind the array */
    size_t nresources;
    tgs_task **procs; /* tasks processing here; task->hn.pos indexes it */
    uint32_t nprocs;
    uint32_t capprocs;
    uint32_t nthreads;
    uint32_t hash;
    size_t index; /* in core->workers */
    int64_t last_finish_ms;
    bool has_finished;
    bool draining;
    bool close_sent;
    bool dirty; /* in core->dirty */
    size_t name_len;
    char name[];
} tgs_worker;

/*
 * One task, in one allocation: this struct, then the dependency pointers,
 * then the key, then the input bytes. About 136 bytes plus key and input.
 */
struct tgs_task {
    /* Priority and FIFO sequence; `hn.pos` is the task's index in its
     * function's ready heap (READY) or in its worker's `procs` (PROCESSING). */
    tgs_heap_node hn;
    tgs_func *func;
    const tgs_istr *codec;
    tgs_task **dependents; /* non-final dependents; NULL once final */
    union {
        tgs_worker *worker; /* PROCESSING */
        tgs_task *link;     /* failure work list or graveyard */
    } u;
    union {
        tgs_result *result; /* MEMORY */
        tgs_error *error;   /* ERRED, CANCELLED */
    } out;
    tgs_watchers *watchers;
    tgs_annot *annot;
    int64_t assigned_ms;
    uint32_t hash;
    uint32_t key_len;
    uint32_t input_len;
    uint32_t ndeps;
    uint32_t ndependents;
    uint32_t capdependents;
    uint32_t unfinished; /* non-final dependency occurrences */
    uint32_t needed;     /* non-final dependent occurrences */
    uint32_t holds;      /* client holds */
    uint32_t retries;    /* retries left */
    uint32_t attempt;
    uint32_t killed; /* workers lost while it was processing there */
    uint8_t state;
    uint8_t flags;
    tgs_task *deps[]; /* NULL once final */
};

struct tgs_core {
    tgs_core_opts opts;
    int64_t now;
    tgs_map tasks;   /* key -> tgs_task */
    tgs_map funcs;   /* name -> tgs_func */
    tgs_map codecs;  /* name -> tgs_istr */
    tgs_map wmap;    /* id -> tgs_worker */
    tgs_worker **workers; /* join order */
    size_t nworkers;
    size_t capworkers; /* also the capacity of cand and dirty */
    tgs_worker **cand;  /* scratch of schedule() */
    tgs_worker **dirty; /* workers whose load dropped or that joined */
    size_t ndirty;
    tgs_func **starving; /* functions with READY tasks and no provider */
    uint32_t nstarving;
    uint32_t capstarving; /* >= number of functions */
    uint64_t counts[TGS_NSTATES];
    uint64_t unplaceable;
    uint64_t next_seq;
    uint64_t next_order;
    tgs_action *actions; /* ring, capacity a power of two */
    size_t ahead;
    size_t alen;
    size_t acap;
    tgs_task *graveyard;
    uint32_t forgotten; /* during the current event */
    bool ready_added;   /* READY tasks appeared since the last schedule() */
};

/* ---- small helpers ---- */

static const tgs_str EMPTY = {"", 0};

static bool is_final(uint8_t s)
{
    return s == TGS_MEMORY || s == TGS_ERRED || s == TGS_CANCELLED;
}

static bool bytes_eq(const char *a, size_t alen, tgs_str b)
{
    return alen == b.len && (alen == 0 || memcmp(a, b.ptr, alen) == 0);
}

/* printf's %.*s takes an int. */
static int plen(size_t len)
{
    return len > INT_MAX ? INT_MAX : (int)len;
}

static char *task_key(const tgs_task *t)
{
    return (char *)(t->deps + t->ndeps);
}

static void set_state(tgs_core *c, tgs_task *t, tgs_state s)
{
    c->counts[t->state]--;
    c->counts[s]++;
    t->state = (uint8_t)s;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- lookups and interning ---- */

static tgs_task *find_task(const tgs_core *c, tgs_str key, uint32_t h)
{
    if (key.len == 0)
        return NULL;
    size_t pos = tgs_map_start(&c->tasks, h);
    tgs_task *t;
    while ((t = tgs_map_next(&c->tasks, h, &pos)) != NULL)
        if (bytes_eq(task_key(t), t->key_len, key))
            return t;
    return NULL;
}

static tgs_task *find_key(const tgs_core *c, tgs_str key)
{
    if (key.len == 0 || key.ptr == NULL)
        return NULL;
    return find_task(c, key, tgs_hash32(key.ptr, key.len));
}

static tgs_worker *find_worker(const tgs_core *c, uint64_t wid)
{
    uint32_t h = tgs_hash32(&wid, sizeof wid);
    size_t pos = tgs_map_start(&c->wmap, h);
    tgs_worker *w;
    while ((w = tgs_map_next(&c->wmap, h, &pos)) != NULL)
        if (w->id == wid)
            return w;
    return NULL;
}

static int intern_func(tgs_core *c, tgs_str name, tgs_func **out)
{
    uint32_t h = tgs_hash32(name.ptr, name.len);
    size_t pos = tgs_map_start(&c->funcs, h);
    tgs_func *f;
    while ((f = tgs_map_next(&c->funcs, h, &pos)) != NULL) {
        if (bytes_eq(f->name, f->len, name)) {
            *out = f;
            return TGS_OK;
        }
    }
    if (name.len > UINT32_MAX)
        return TGS_EINVAL;
    /* Room in `starving` for every function, so that a function starting
     * to starve never needs an allocation. */
    if (c->funcs.len + 1 > c->capstarving) {
        size_t ncap = c->capstarving ? (size_t)c->capstarving * 2 : 16;
        if (ncap > UINT32_MAX)
            return TGS_ENOMEM;
        tgs_func **s = realloc(c->starving, ncap * sizeof *s);
        if (s == NULL)
            return TGS_ENOMEM;
        c->starving = s;
        c->capstarving = (uint32_t)ncap;
    }
    if (tgs_map_reserve(&c->funcs, 1) != TGS_OK)
        return TGS_ENOMEM;
    f = calloc(1, sizeof *f + name.len + 1);
    if (f == NULL)
        return TGS_ENOMEM;
    memcpy(f->name, name.ptr, name.len);
    f->len = (uint32_t)name.len;
    f->hash = h;
    f->starving_pos = NONE;
    tgs_map_insert(&c->funcs, h, f);
    *out = f;
    return TGS_OK;
}

/* Empty codecs are stored as NULL. */
static int intern_codec(tgs_core *c, tgs_str name, const tgs_istr **out)
{
    *out = NULL;
    if (name.len == 0)
        return TGS_OK;
    if (name.ptr == NULL || name.len > UINT32_MAX)
        return TGS_EINVAL;
    uint32_t h = tgs_hash32(name.ptr, name.len);
    size_t pos = tgs_map_start(&c->codecs, h);
    tgs_istr *s;
    while ((s = tgs_map_next(&c->codecs, h, &pos)) != NULL) {
        if (bytes_eq(s->s, s->len, name)) {
            *out = s;
            return TGS_OK;
        }
    }
    if (tgs_map_reserve(&c->codecs, 1) != TGS_OK)
        return TGS_ENOMEM;
    s = malloc(sizeof *s + name.len + 1);
    if (s == NULL)
        return TGS_ENOMEM;
    memcpy(s->s, name.ptr, name.len);
    s->s[name.len] = '\0';
    s->len = (uint32_t)name.len;
    s->hash = h;
    tgs_map_insert(&c->codecs, h, s);
    *out = s;
    return TGS_OK;
}

static tgs_str istr(const tgs_istr *s)
{
    return s ? (tgs_str){s->s, s->len} : EMPTY;
}

/* ---- errors and results ---- */

static tgs_str put_str(char **p, tgs_str s)
{
    tgs_str r = {*p, s.len};
    if (s.len)
        memcpy(*p, s.ptr, s.len);
    (*p)[s.len] = '\0';
    *p += s.len + 1;
    return r;
}

static tgs_error *error_new(tgs_str type, tgs_str msg, tgs_str tb,
                            tgs_str origin)
{
    size_t total = sizeof(tgs_error) + 4;
    const tgs_str parts[4] = {type, msg, tb, origin};
    for (int i = 0; i < 4; i++) {
        if (parts[i].len > SIZE_MAX - total)
            return NULL;
        total += parts[i].len;
    }
    tgs_error *e = malloc(total);
    if (e == NULL)
        return NULL;
    char *p = e->data;
    e->refs = 1;
    e->type = put_str(&p, type);
    e->message = put_str(&p, msg);
    e->traceback = put_str(&p, tb);
    e->origin = put_str(&p, origin);
    return e;
}

static tgs_error *error_newf(const char *type, tgs_str origin,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static tgs_error *error_newf(const char *type, tgs_str origin,
                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *msg = malloc((size_t)n + 1);
    if (msg == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tgs_error *e = error_new((tgs_str){type, strlen(type)},
                             (tgs_str){msg, (size_t)n}, EMPTY, origin);
    free(msg);
    return e;
}

static void error_unref(tgs_error *e)
{
    if (e != NULL && --e->refs == 0)
        free(e);
}

static tgs_str str_of_key(const tgs_task *t)
{
    return (tgs_str){task_key(t), t->key_len};
}

/* ---- task memory ---- */

static void task_free(tgs_task *t)
{
    if (t->state == TGS_MEMORY)
        free(t->out.result);
    else if (t->state == TGS_ERRED || t->state == TGS_CANCELLED)
        error_unref(t->out.error);
    free(t->watchers);
    free(t->annot);
    free(t->dependents);
    free(t);
}

/* Free the tasks forgotten by earlier events. Deferred until the action
 * queue is empty: queued actions point at tasks, and the caller may read
 * them (results, errors) until it has popped them. */
static void sweep(tgs_core *c)
{
    c->forgotten = 0;
    if (c->alen != 0)
        return;
    while (c->graveyard != NULL) {
        tgs_task *t = c->graveyard;
        c->graveyard = t->u.link;
        task_free(t);
    }
}

static void maybe_forget(tgs_core *c, tgs_task *t)
{
    if (!is_final(t->state) || t->holds != 0 || t->needed != 0 ||
        t->unfinished != 0 || (t->flags & (TF_PENDING | TF_FORGOTTEN)) != 0)
        return;
    tgs_map_remove(&c->tasks, t->hash, t);
    c->counts[t->state]--;
    c->counts[TGS_RELEASED]++;
    t->flags |= TF_FORGOTTEN;
    t->u.link = c->graveyard;
    c->graveyard = t;
    c->forgotten++;
}

/* ---- actions ---- */

static int action_push(tgs_core *c, tgs_action_kind kind, uint64_t worker,
                       uint64_t watcher, const tgs_task *task)
{
    if (c->alen == c->acap) {
        size_t ncap = c->acap ? c->acap * 2 : 64;
        tgs_action *a = malloc(ncap * sizeof *a);
        if (a == NULL)
            return TGS_ENOMEM;
        for (size_t i = 0; i < c->alen; i++)
            a[i] = c->actions[(c->ahead + i) & (c->acap - 1)];
        free(c->actions);
        c->actions = a;
        c->acap = ncap;
        c->ahead = 0;
    }
    tgs_action *a = &c->actions[(c->ahead + c->alen) & (c->acap - 1)];
    a->kind = kind;
    a->worker = worker;
    a->watcher = watcher;
    a->task = task;
    c->alen++;
    return TGS_OK;
}

/* Tell the watchers of a task that just became final. Best effort: if the
 * queue cannot grow, the notification is lost (the client's Gather then
 * has to ask again). */
static void notify(tgs_core *c, tgs_task *t)
{
    tgs_watchers *w = t->watchers;
    if (w == NULL)
        return;
    for (uint32_t i = 0; i < w->n; i++)
        action_push(c, TGS_ACT_NOTIFY, 0, w->ids[i], t);
    free(w);
    t->watchers = NULL;
}

/* ---- ready heaps and starving functions ---- */

static void starving_update(tgs_core *c, tgs_func *f)
{
    bool starving = f->nproviders == 0 && f->ready.n > 0;
    if (starving && f->starving_pos == NONE) {
        f->starving_pos = c->nstarving;
        f->since = c->now;
        c->starving[c->nstarving++] = f; /* capacity reserved at intern */
    } else if (!starving && f->starving_pos != NONE) {
        tgs_func *last = c->starving[--c->nstarving];
        c->starving[f->starving_pos] = last;
        last->starving_pos = f->starving_pos;
        f->starving_pos = NONE;
    }
}

static void ready_push(tgs_core *c, tgs_task *t)
{
    tgs_func *f = t->func;
    set_state(c, t, TGS_READY);
    tgs_heap_push(&f->ready, &t->hn); /* capacity: f->nlive, reserved */
    if (f->nproviders == 0) {
        c->unplaceable++;
        starving_update(c, f);
    }
    c->ready_added = true;
}

static void ready_remove(tgs_core *c, tgs_task *t)
{
    tgs_func *f = t->func;
    tgs_heap_remove(&f->ready, &t->hn);
    if (f->nproviders == 0) {
        c->unplaceable--;
        starving_update(c, f);
    }
}

static void providers_add(tgs_core *c, tgs_worker *w, int delta)
{
    for (size_t i = 0; i < w->nfuncs; i++) {
        tgs_func *f = w->funcs[i];
        if (delta > 0 && f->nproviders++ == 0) {
            c->unplaceable -= f->ready.n;
            starving_update(c, f);
        } else if (delta < 0 && --f->nproviders == 0) {
            c->unplaceable += f->ready.n;
            starving_update(c, f);
        }
    }
}

/* ---- workers' processing sets ---- */

static void mark_dirty(tgs_core *c, tgs_worker *w)
{
    if (!w->dirty) {
        w->dirty = true;
        c->dirty[c->ndirty++] = w;
    }
}

static void maybe_close(tgs_core *c, tgs_worker *w)
{
    if (w->draining && w->nprocs == 0 && !w->close_sent &&
        action_push(c, TGS_ACT_CLOSE_WORKER, w->id, 0, NULL) == TGS_OK)
        w->close_sent = true;
}

/* Take a PROCESSING task off its worker (state is the caller's job). */
static void proc_remove(tgs_core *c, tgs_task *t)
{
    tgs_worker *w = t->u.worker;
    uint32_t i = t->hn.pos;
    tgs_task *last = w->procs[--w->nprocs];
    if (last != t) {
        w->procs[i] = last;
        last->hn.pos = i;
    }
    t->u.worker = NULL;
    mark_dirty(c, w);
    maybe_close(c, w);
}

/*
 * Learn how long tasks of `t`'s function take. The core only sees when a
 * task was assigned and when its result came back, and the worker may
 * have queued it behind others (prefetch), which inflates the first
 * measure. On a busy worker, however, results come back about every
 * run/nthreads, so the gap since the worker's previous result times its
 * threads estimates the run time without the queueing. Take the smaller.
 */
static void record_duration(tgs_worker *w, tgs_task *t, int64_t now)
{
    tgs_func *f = t->func;
    double d = (double)(now - t->assigned_ms);
    if (w->has_finished) {
        double gap = (double)(now - w->last_finish_ms) * w->nthreads;
        if (gap < d)
            d = gap;
    }
    if (d < 0)
        d = 0;
    if (!f->avg_known) {
        f->avg_ms = d;
        f->avg_known = true;
    } else {
        f->avg_ms += (d - f->avg_ms) * AVG_WEIGHT;
    }
    w->last_finish_ms = now;
    w->has_finished = true;
}

/*
 * How many tasks of `f` worker `w` may hold at once: its threads plus a
 * prefetch queue holding about PREFETCH_TARGET_MS of work per thread,
 * that is nthreads * (10 ms / avg run time), clamped to
 * [nthreads, max_prefetch]. Before any run time is known, prefetch =
 * nthreads. Millisecond clocks measure short tasks as 0 ms: their average
 * tends to 0 and the prefetch to max_prefetch, which is right for them.
 */
static uint64_t capacity(const tgs_core *c, const tgs_worker *w,
                         const tgs_func *f)
{
    double nt = w->nthreads;
    double maxp = c->opts.max_prefetch;
    double p;
    if (!f->avg_known)
        p = nt;
    else if (f->avg_ms * maxp <= PREFETCH_TARGET_MS * nt)
        p = maxp;
    else
        p = nt * PREFETCH_TARGET_MS / f->avg_ms;
    if (p < nt)
        p = nt;
    if (p > maxp)
        p = maxp;
    return w->nthreads + (uint64_t)p;
}

/* ---- failure and completion ---- */

/* Detach a task that just became final from its dependencies. */
static void release_deps(tgs_core *c, tgs_task *t)
{
    for (uint32_t i = 0; i < t->ndeps; i++) {
        tgs_task *d = t->deps[i];
        if (d == NULL)
            continue;
        t->deps[i] = NULL;
        d->needed--;
        maybe_forget(c, d);
    }
}

/* `t` is out of heaps and workers; make it final. */
static void become_final(tgs_core *c, tgs_task *t, tgs_state s)
{
    set_state(c, t, s);
    t->func->nlive--;
    notify(c, t);
    release_deps(c, t);
}

static void drop_dependents(tgs_task *t)
{
    free(t->dependents);
    t->dependents = NULL;
    t->ndependents = t->capdependents = 0;
}

/* Take a task out of the ready heap or off its worker before it becomes
 * final. A PROCESSING task being cancelled gets a TGS_ACT_CANCEL. */
static void unschedule(tgs_core *c, tgs_task *t, bool cancel)
{
    if (t->state == TGS_READY) {
        ready_remove(c, t);
    } else if (t->state == TGS_PROCESSING) {
        if (cancel)
            action_push(c, TGS_ACT_CANCEL, t->u.worker->id, 0, t);
        proc_remove(c, t);
    }
}

/*
 * Fail `root` (already unscheduled) with `err` in state `s` (ERRED or
 * CANCELLED), then every non-final task depending on it, transitively.
 * An explicit work list threaded through the tasks (u.link) replaces
 * recursion, so a million-deep chain needs neither stack nor memory.
 * @return the number of tasks that became final.
 */
static uint32_t fail_cascade(tgs_core *c, tgs_task *root, tgs_state s,
                             tgs_error *err)
{
    uint32_t n = 1;
    root->out.error = err;
    err->refs++;
    root->flags |= TF_PENDING;
    root->u.link = NULL;
    become_final(c, root, s);
    tgs_task *work = root;
    while (work != NULL) {
        tgs_task *x = work;
        work = x->u.link;
        x->u.link = NULL;
        x->flags &= (uint8_t)~TF_PENDING;
        for (uint32_t i = 0; i < x->ndependents; i++) {
            tgs_task *d = x->dependents[i];
            d->unfinished--;
            if (is_final(d->state)) {
                maybe_forget(c, d);
                continue;
            }
            unschedule(c, d, true); /* WAITING in practice: a no-op */
            d->out.error = x->out.error;
            d->out.error->refs++;
            d->flags |= TF_INHERITED | TF_PENDING;
            d->u.link = work;
            work = d;
            become_final(c, d, s);
            n++;
        }
        drop_dependents(x);
        maybe_forget(c, x);
    }
    return n;
}

/* `t` (off its worker) produced `res`. */
static void finish_ok(tgs_core *c, tgs_task *t, tgs_result *res)
{
    t->out.result = res;
    become_final(c, t, TGS_MEMORY);
    for (uint32_t i = 0; i < t->ndependents; i++) {
        tgs_task *d = t->dependents[i];
        d->unfinished--;
        if (d->state == TGS_WAITING) {
            if (d->unfinished == 0)
                ready_push(c, d);
        } else {
            maybe_forget(c, d);
        }
    }
    drop_dependents(t);
    maybe_forget(c, t);
}

/* ---- scheduling ---- */

/* Lower processing/nthreads first, then earlier join. */
static bool lighter(const tgs_worker *a, const tgs_worker *b)
{
    uint64_t la = (uint64_t)a->nprocs * b->nthreads;
    uint64_t lb = (uint64_t)b->nprocs * a->nthreads;
    return la != lb ? la < lb : a->order < b->order;
}

static void cand_sift_down(tgs_worker **h, size_t n, size_t i)
{
    tgs_worker *x = h[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t b = l;
        if (l + 1 < n && lighter(h[l + 1], h[l]))
            b = l + 1;
        if (!lighter(h[b], x))
            break;
        h[i] = h[b];
        i = b;
    }
    h[i] = x;
}

static int assign(tgs_core *c, tgs_worker *w, tgs_task *t)
{
    if (w->nprocs == w->capprocs) {
        size_t ncap = w->capprocs ? (size_t)w->capprocs * 2 : 8;
        if (ncap > UINT32_MAX)
            return TGS_ENOMEM;
        tgs_task **p = realloc(w->procs, ncap * sizeof *p);
        if (p == NULL)
            return TGS_ENOMEM;
        w->procs = p;
        w->capprocs = (uint32_t)ncap;
    }
    if (action_push(c, TGS_ACT_ASSIGN, w->id, 0, t) != TGS_OK)
        return TGS_ENOMEM;
    ready_remove(c, t);
    set_state(c, t, TGS_PROCESSING);
    t->u.worker = w;
    t->assigned_ms = c->now;
    t->hn.pos = w->nprocs;
    w->procs[w->nprocs++] = t;
    return TGS_OK;
}

/*
 * Hand READY tasks to workers, one at a time to the least loaded
 * (processing/nthreads) worker that can take one, so load spreads evenly.
 * That worker takes the best task (priority, then FIFO) among the heap
 * tops of the functions it provides and has room for: O(functions of the
 * worker + log tasks) per assignment.
 *
 * Only workers that may have changed are considered: all of them when
 * READY tasks appeared, else those whose load dropped or that joined.
 * Capacity of others is unchanged, and they were already full or without
 * work after the previous pass.
 */
static void schedule(tgs_core *c)
{
    size_t n = 0;
    if (c->counts[TGS_READY] > 0) {
        if (c->ready_added) {
            for (size_t i = 0; i < c->nworkers; i++)
                if (!c->workers[i]->draining)
                    c->cand[n++] = c->workers[i];
        } else {
            for (size_t i = 0; i < c->ndirty; i++)
                if (!c->dirty[i]->draining)
                    c->cand[n++] = c->dirty[i];
        }
    }
    for (size_t i = 0; i < c->ndirty; i++)
        c->dirty[i]->dirty = false;
    c->ndirty = 0;
    c->ready_added = false;

    for (size_t i = n / 2; i-- > 0;)
        cand_sift_down(c->cand, n, i);
    while (n > 0 && c->counts[TGS_READY] > 0) {
        tgs_worker *w = c->cand[0];
        tgs_task *best = NULL;
        for (size_t i = 0; i < w->nfuncs; i++) {
            tgs_func *f = w->funcs[i];
            if (f->ready.n == 0 || w->nprocs >= capacity(c, w, f))
                continue;
            tgs_heap_node *top = tgs_heap_top(&f->ready);
            if (best == NULL || tgs_heap_before(top, &best->hn))
                best = (tgs_task *)top; /* hn is the first member */
        }
        if (best == NULL) {
            c->cand[0] = c->cand[--n];
            if (n > 0)
                cand_sift_down(c->cand, n, 0);
            continue;
        }
        if (assign(c, w, best) != TGS_OK)
            break; /* out of memory: the task stays READY */
        cand_sift_down(c->cand, n, 0);
    }
}

/* ---- life cycle ---- */

int tgs_core_new(tgs_core **out, const tgs_core_opts *opts)
{
    if (out == NULL)
        return TGS_EINVAL;
    *out = NULL;
    tgs_core *c = calloc(1, sizeof *c);
    if (c == NULL)
        return TGS_ENOMEM;
    if (opts != NULL)
        c->opts = *opts;
    if (c->opts.no_worker_timeout_ms < 0)
        c->opts.no_worker_timeout_ms = 0;
    if (c->opts.allowed_failures == 0)
        c->opts.allowed_failures = DEFAULT_ALLOWED_FAILURES;
    if (c->opts.max_prefetch == 0)
        c->opts.max_prefetch = DEFAULT_MAX_PREFETCH;
    *out = c;
    return TGS_OK;
}

static void worker_free(tgs_worker *w)
{
    free(w->funcs);
    free(w->resources);
    free(w->procs);
    free(w);
}

void tgs_core_free(tgs_core *c)
{
    if (c == NULL)
        return;
    c->alen = 0;
    sweep(c);
    for (size_t i = 0; i < tgs_map_capacity(&c->tasks); i++) {
        tgs_task *t = tgs_map_at(&c->tasks, i);
        if (t != NULL)
            task_free(t);
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->funcs); i++) {
        tgs_func *f = tgs_map_at(&c->funcs, i);
        if (f != NULL) {
            tgs_heap_free(&f->ready);
            free(f);
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->codecs); i++)
        free(tgs_map_at(&c->codecs, i));
    for (size_t i = 0; i < c->nworkers; i++)
        worker_free(c->workers[i]);
    tgs_map_free(&c->tasks);
    tgs_map_free(&c->funcs);
    tgs_map_free(&c->codecs);
    tgs_map_free(&c->wmap);
    free(c->workers);
    free(c->cand);
    free(c->dirty);
    free(c->starving);
    free(c->actions);
    free(c);
}

/* ---- submit ---- */

/* Batch-local map values are spec index + 1 (a map value is non-NULL). */
static uint32_t batch_find(const tgs_map *b, const tgs_task_spec *specs,
                           tgs_str key, uint32_t h)
{
    size_t pos = tgs_map_start(b, h);
    void *v;
    while ((v = tgs_map_next(b, h, &pos)) != NULL) {
        uint32_t j = (uint32_t)((uintptr_t)v - 1);
        if (bytes_eq(specs[j].key.ptr, specs[j].key.len, key))
            return j;
    }
    return NONE;
}

/* An edge of the batch: a known task pointer, or (odd) a new task index. */
static bool edge_is_new(uintptr_t e)
{
    return (e & 1) != 0;
}

static uint32_t edge_new(uintptr_t e)
{
    return (uint32_t)(e >> 1);
}

static size_t resources_size(const tgs_resource *r, size_t n)
{
    size_t total = n * sizeof *r;
    for (size_t i = 0; i < n; i++)
        total += r[i].name.len + 1;
    return total;
}

static void resources_copy(tgs_resource *dst, const tgs_resource *src,
                           size_t n, char **p)
{
    for (size_t i = 0; i < n; i++) {
        dst[i].name = put_str(p, src[i].name);
        dst[i].amount = src[i].amount;
    }
}

static tgs_annot *annot_new(const tgs_task_spec *s)
{
    size_t total = sizeof(tgs_annot) +
                   resources_size(s->resources, s->nresources) +
                   s->nworkers * sizeof(tgs_str);
    for (size_t i = 0; i < s->nworkers; i++)
        total += s->workers[i].len + 1;
    tgs_annot *a = malloc(total);
    if (a == NULL)
        return NULL;
    a->nresources = s->nresources;
    a->nworkers = s->nworkers;
    a->resources = (tgs_resource *)(a + 1);
    a->workers = (tgs_str *)(a->resources + s->nresources);
    char *p = (char *)(a->workers + s->nworkers);
    resources_copy(a->resources, s->resources, s->nresources, &p);
    for (size_t i = 0; i < s->nworkers; i++)
        a->workers[i] = put_str(&p, s->workers[i]);
    return a;
}

static tgs_task *task_new(const tgs_task_spec *s, uint32_t h, tgs_func *f,
                          const tgs_istr *codec, uint32_t capdependents)
{
    size_t size = sizeof(tgs_task) + s->ndeps * sizeof(tgs_task *) +
                  s->key.len + s->input_len;
    tgs_task *t = malloc(size);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof *t);
    if (s->nresources != 0 || s->nworkers != 0) {
        t->annot = annot_new(s);
        if (t->annot == NULL)
            goto fail;
    }
    if (capdependents != 0) {
        t->dependents = malloc(capdependents * sizeof *t->dependents);
        if (t->dependents == NULL)
            goto fail;
        t->capdependents = capdependents;
    }
    t->hn.priority = s->priority;
    t->func = f;
    t->codec = codec;
    t->hash = h;
    t->key_len = (uint32_t)s->key.len;
    t->input_len = (uint32_t)s->input_len;
    t->ndeps = (uint32_t)s->ndeps;
    t->retries = s->retries;
    t->attempt = 1;
    t->state = TGS_WAITING;
    char *k = task_key(t);
    memcpy(k, s->key.ptr, s->key.len);
    if (s->input_len)
        memcpy(k + s->key.len, s->input, s->input_len);
    return t;
fail:
    free(t->annot);
    free(t);
    return NULL;
}

static int dependents_push(tgs_task *x, tgs_task *t)
{
    if (x->ndependents == x->capdependents) {
        size_t ncap = x->capdependents ? (size_t)x->capdependents * 2 : 2;
        if (ncap > UINT32_MAX)
            return TGS_ENOMEM;
        tgs_task **d = realloc(x->dependents, ncap * sizeof *d);
        if (d == NULL)
            return TGS_ENOMEM;
        x->dependents = d;
        x->capdependents = (uint32_t)ncap;
    }
    x->dependents[x->ndependents++] = t;
    return TGS_OK;
}

static bool spec_ok(const tgs_task_spec *s)
{
    return (s->ndeps == 0 || s->deps != NULL) &&
           (s->input_len == 0 || s->input != NULL) &&
           (s->codec.len == 0 || s->codec.ptr != NULL) &&
           (s->nresources == 0 || s->resources != NULL) &&
           (s->nworkers == 0 || s->workers != NULL) &&
           s->key.len <= UINT32_MAX && s->input_len <= UINT32_MAX &&
           s->ndeps <= UINT32_MAX;
}

/*
 * Submit in three phases. 1: validate and plan with temporary arrays only
 * (keys, dependency resolution, Kahn's algorithm for a topological order
 * and cycle detection, the initial state of each new task). 2: allocate
 * everything the commit needs (tasks, map and heap room, entries in the
 * dependents arrays of known tasks, which are rolled back on failure).
 * 3: commit, which cannot fail. So a rejected or failed batch changes
 * nothing visible.
 */
int tgs_core_submit(tgs_core *c, const tgs_task_spec *specs, size_t n,
                    int64_t now_ms, tgs_submit_result *res, char *err,
                    size_t errlen)
{
    if (res != NULL)
        res->accepted = res->existing = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (c == NULL || (n > 0 && specs == NULL))
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    if (n == 0)
        return TGS_OK;
    if (n >= UINT32_MAX / 2) {
        seterr(err, errlen, "batch of %zu tasks is too large", n);
        return TGS_EINVAL;
    }

    int rc = TGS_OK;
    tgs_map batch = {0};
    uint32_t *hashes = NULL, *first = NULL, *newidx = NULL, *spec_of = NULL;
    uint32_t *eoff = NULL, *indeg = NULL, *outoff = NULL, *cursor = NULL;
    uint32_t *outadj = NULL, *order = NULL;
    uintptr_t *edges = NULL;
    tgs_task **known = NULL, **tasks = NULL, **appended = NULL;
    uint8_t *st = NULL;
    tgs_error **inh = NULL;
    tgs_func **fn = NULL;
    const tgs_istr **cd = NULL;
    size_t m = 0, nedges = 0, nnew = 0, nappended = 0;

    /* Phase 1: validate. */
    for (size_t i = 0; i < n; i++) {
        const tgs_task_spec *s = &specs[i];
        if (s->key.len == 0 || s->key.ptr == NULL) {
            seterr(err, errlen, "task #%zu has an empty key", i);
            return TGS_EINVAL;
        }
        if (s->func.len == 0 || s->func.ptr == NULL) {
            seterr(err, errlen, "task '%.*s' has no function",
                   plen(s->key.len), s->key.ptr);
            return TGS_EINVAL;
        }
        if (!spec_ok(s)) {
            seterr(err, errlen, "task '%.*s' has an invalid specification",
                   plen(s->key.len), s->key.ptr);
            return TGS_EINVAL;
        }
    }

    hashes = malloc(n * sizeof *hashes);
    first = malloc(n * sizeof *first);
    newidx = malloc(n * sizeof *newidx);
    spec_of = malloc(n * sizeof *spec_of);
    known = malloc(n * sizeof *known);
    if (!hashes || !first || !newidx || !spec_of || !known ||
        tgs_map_reserve(&batch, n) != TGS_OK) {
        rc = TGS_ENOMEM;
        goto out;
    }
    /* The first occurrence of a key defines the task; later ones (and
     * keys already known) only add a hold. */
    for (size_t i = 0; i < n; i++) {
        tgs_str key = specs[i].key;
        uint32_t h = tgs_hash32(key.ptr, key.len);
        hashes[i] = h;
        uint32_t j = batch_find(&batch, specs, key, h);
        known[i] = NULL;
        newidx[i] = NONE;
        if (j != NONE) {
            first[i] = j;
            continue;
        }
        tgs_map_insert(&batch, h, (void *)(uintptr_t)(i + 1));
        first[i] = (uint32_t)i;
        known[i] = find_task(c, key, h);
        if (known[i] == NULL) {
            newidx[i] = (uint32_t)m;
            spec_of[m++] = (uint32_t)i;
        }
    }

    /* Resolve dependencies of the new tasks. */
    for (size_t k = 0; k < m; k++) {
        nedges += specs[spec_of[k]].ndeps;
        if (nedges >= UINT32_MAX / 2) {
            seterr(err, errlen, "batch has too many dependencies");
            rc = TGS_EINVAL;
            goto out;
        }
    }
    eoff = malloc((m + 1) * sizeof *eoff);
    indeg = calloc(m + 1, sizeof *indeg);
    outoff = calloc(m + 1, sizeof *outoff);
    edges = malloc((nedges + 1) * sizeof *edges);
    if (!eoff || !indeg || !outoff || !edges) {
        rc = TGS_ENOMEM;
        goto out;
    }
    size_t e = 0;
    for (size_t k = 0; k < m; k++) {
        const tgs_task_spec *s = &specs[spec_of[k]];
        eoff[k] = (uint32_t)e;
        for (size_t d = 0; d < s->ndeps; d++) {
            tgs_str dk = s->deps[d];
            uint32_t h = dk.len && dk.ptr ? tgs_hash32(dk.ptr, dk.len) : 0;
            uint32_t j = dk.len && dk.ptr ? batch_find(&batch, specs, dk, h)
                                          : NONE;
            tgs_task *t = NULL;
            if (j != NONE && newidx[j] != NONE) {
                uint32_t q = newidx[j];
                edges[e++] = ((uintptr_t)q << 1) | 1;
                indeg[k]++;
                outoff[q + 1]++;
                nnew++;
                continue;
            }
            t = j != NONE ? known[j] : (dk.ptr ? find_task(c, dk, h) : NULL);
            if (t == NULL) {
                seterr(err, errlen, "dependency '%.*s' of task '%.*s' is unknown",
                       plen(dk.len), dk.ptr ? dk.ptr : "", plen(s->key.len),
                       s->key.ptr);
                rc = TGS_EINVAL;
                goto out;
            }
            edges[e++] = (uintptr_t)t;
        }
    }
    eoff[m] = (uint32_t)e;

    /* Kahn's algorithm over the new tasks: a topological order, and any
     * task left over is on or behind a cycle. Iterative, so a
     * million-deep chain needs no stack. */
    for (size_t q = 0; q < m; q++)
        outoff[q + 1] += outoff[q];
    cursor = malloc((m + 1) * sizeof *cursor);
    outadj = malloc((nnew + 1) * sizeof *outadj);
    order = malloc((m + 1) * sizeof *order);
    if (!cursor || !outadj || !order) {
        rc = TGS_ENOMEM;
        goto out;
    }
    memcpy(cursor, outoff, m * sizeof *cursor);
    for (size_t k = 0; k < m; k++)
        for (uint32_t x = eoff[k]; x < eoff[k + 1]; x++)
            if (edge_is_new(edges[x]))
                outadj[cursor[edge_new(edges[x])]++] = (uint32_t)k;
    size_t head = 0, tail = 0;
    for (size_t k = 0; k < m; k++)
        if (indeg[k] == 0)
            order[tail++] = (uint32_t)k;
    while (head < tail) {
        uint32_t v = order[head++];
        for (uint32_t x = outoff[v]; x < outoff[v + 1]; x++)
            if (--indeg[outadj[x]] == 0)
                order[tail++] = outadj[x];
    }
    if (tail < m) {
        /* Every task left has a dependency left: walk dependencies from
         * one until a task repeats; that task is on a cycle. `cursor`
         * serves as the visited mark. */
        uint32_t v = 0;
        while (indeg[v] == 0)
            v++;
        memset(cursor, 0, m * sizeof *cursor);
        while (!cursor[v]) {
            cursor[v] = 1;
            for (uint32_t x = eoff[v]; x < eoff[v + 1]; x++) {
                if (edge_is_new(edges[x]) && indeg[edge_new(edges[x])] > 0) {
                    v = edge_new(edges[x]);
                    break;
                }
            }
        }
        const tgs_task_spec *s = &specs[spec_of[v]];
        seterr(err, errlen, "cycle in graph through task '%.*s'",
               plen(s->key.len), s->key.ptr);
        rc = TGS_EINVAL;
        goto out;
    }

    /* Initial states, in topological order: an erred dependency errs the
     * task, else a cancelled one cancels it, else it waits for non-final
     * dependencies or is ready. */
    st = malloc(m + 1);
    inh = calloc(m + 1, sizeof *inh);
    if (!st || !inh) {
        rc = TGS_ENOMEM;
        goto out;
    }
    for (size_t o = 0; o < m; o++) {
        uint32_t k = order[o];
        tgs_error *erred = NULL, *cancelled = NULL;
        bool waiting = false;
        for (uint32_t x = eoff[k]; x < eoff[k + 1]; x++) {
            uint8_t ds;
            tgs_error *de;
            if (edge_is_new(edges[x])) {
                ds = st[edge_new(edges[x])];
                de = inh[edge_new(edges[x])];
            } else {
                tgs_task *t = (tgs_task *)edges[x];
                ds = t->state;
                de = (ds == TGS_ERRED || ds == TGS_CANCELLED) ? t->out.error
                                                              : NULL;
            }
            if (ds == TGS_ERRED && erred == NULL)
                erred = de;
            else if (ds == TGS_CANCELLED && cancelled == NULL)
                cancelled = de;
            else if (!is_final(ds))
                waiting = true;
        }
        if (erred != NULL) {
            st[k] = TGS_ERRED;
            inh[k] = erred;
        } else if (cancelled != NULL) {
            st[k] = TGS_CANCELLED;
            inh[k] = cancelled;
        } else {
            st[k] = waiting ? TGS_WAITING : TGS_READY;
        }
    }

    /* Phase 2: allocate. Interned names stay even if this batch fails. */
    fn = malloc((m + 1) * sizeof *fn);
    cd = malloc((m + 1) * sizeof *cd);
    tasks = calloc(m + 1, sizeof *tasks);
    if (!fn || !cd || !tasks) {
        rc = TGS_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < m; k++) {
        const tgs_task_spec *s = &specs[spec_of[k]];
        if ((rc = intern_func(c, s->func, &fn[k])) != TGS_OK ||
            (rc = intern_codec(c, s->codec, &cd[k])) != TGS_OK)
            goto out;
    }
    for (size_t k = 0; k < m; k++)
        if (!is_final(st[k]))
            fn[k]->scratch++;
    for (size_t k = 0; k < m; k++) {
        tgs_func *f = fn[k];
        if (f->scratch != 0 && rc == TGS_OK &&
            tgs_heap_reserve(&f->ready, f->nlive + f->scratch) != TGS_OK)
            rc = TGS_ENOMEM;
        f->scratch = 0;
    }
    if (rc != TGS_OK)
        goto out;
    for (size_t k = 0; k < m; k++) {
        uint32_t i = spec_of[k];
        /* Room for the in-batch dependents; a task final at once keeps
         * none (a final task has no dependents array). */
        tasks[k] = task_new(&specs[i], hashes[i], fn[k], cd[k],
                            is_final(st[k]) ? 0 : outoff[k + 1] - outoff[k]);
        if (tasks[k] == NULL) {
            rc = TGS_ENOMEM;
            goto out;
        }
    }
    for (size_t k = 0; k < m; k++)
        for (uint32_t x = eoff[k], d = 0; x < eoff[k + 1]; x++, d++)
            tasks[k]->deps[d] = edge_is_new(edges[x])
                                    ? tasks[edge_new(edges[x])]
                                    : (tgs_task *)edges[x];
    if (tgs_map_reserve(&c->tasks, m) != TGS_OK) {
        rc = TGS_ENOMEM;
        goto out;
    }
    appended = malloc((nedges + 1) * sizeof *appended);
    if (appended == NULL) {
        rc = TGS_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < m && rc == TGS_OK; k++) {
        if (is_final(st[k]))
            continue;
        for (uint32_t x = eoff[k]; x < eoff[k + 1]; x++) {
            tgs_task *d = (tgs_task *)edges[x];
            if (edge_is_new(edges[x]) || is_final(d->state))
                continue;
            if (dependents_push(d, tasks[k]) != TGS_OK) {
                rc = TGS_ENOMEM;
                break;
            }
            appended[nappended++] = d;
        }
    }
    if (rc != TGS_OK) {
        while (nappended > 0)
            appended[--nappended]->ndependents--;
        goto out;
    }

    /* Phase 3: commit; nothing below can fail. */
    for (size_t o = 0; o < m; o++) {
        uint32_t k = order[o];
        tgs_task *t = tasks[k];
        /* FIFO follows the batch order, not the topological order. */
        t->hn.seq = c->next_seq + k;
        tgs_map_insert(&c->tasks, t->hash, t);
        c->counts[TGS_WAITING]++;
        if (is_final(st[k])) {
            set_state(c, t, (tgs_state)st[k]);
            t->out.error = inh[k];
            inh[k]->refs++;
            t->flags |= TF_INHERITED;
            for (uint32_t d = 0; d < t->ndeps; d++)
                t->deps[d] = NULL;
            continue;
        }
        t->func->nlive++;
        for (uint32_t x = eoff[k], d = 0; x < eoff[k + 1]; x++, d++) {
            tgs_task *dep = t->deps[d];
            dep->needed++;
            if (is_final(dep->state))
                continue;
            t->unfinished++;
            if (edge_is_new(edges[x]))
                dep->dependents[dep->ndependents++] = t; /* sized above */
        }
        if (st[k] == TGS_READY)
            ready_push(c, t);
    }
    c->next_seq += m;
    for (size_t i = 0; i < n; i++) {
        uint32_t j = first[i];
        tgs_task *t = newidx[j] != NONE ? tasks[newidx[j]] : known[j];
        t->holds++;
    }
    if (res != NULL) {
        res->accepted = (uint32_t)m;
        res->existing = (uint32_t)(n - m);
    }
    free(tasks);
    tasks = NULL;
    schedule(c);

out:
    if (tasks != NULL) {
        for (size_t k = 0; k < m; k++) {
            if (tasks[k] != NULL) {
                free(tasks[k]->annot);
                free(tasks[k]->dependents);
                free(tasks[k]);
            }
        }
    }
    tgs_map_free(&batch);
    free(hashes);
    free(first);
    free(newidx);
    free(spec_of);
    free(known);
    free(eoff);
    free(indeg);
    free(outoff);
    free(cursor);
    free(outadj);
    free(order);
    free(edges);
    free(st);
    free(inh);
    free(fn);
    free(cd);
    free(tasks);
    free(appended);
    return rc;
}

/* ---- workers ---- */

static int grow_workers(tgs_core *c)
{
    if (c->nworkers < c->capworkers)
        return TGS_OK;
    size_t ncap = c->capworkers ? c->capworkers * 2 : 8;
    tgs_worker **a = realloc(c->workers, ncap * sizeof *a);
    if (a == NULL)
        return TGS_ENOMEM;
    c->workers = a;
    a = realloc(c->cand, ncap * sizeof *a);
    if (a == NULL)
        return TGS_ENOMEM;
    c->cand = a;
    a = realloc(c->dirty, ncap * sizeof *a);
    if (a == NULL)
        return TGS_ENOMEM;
    c->dirty = a;
    c->capworkers = ncap;
    return TGS_OK;
}

int tgs_core_worker_add(tgs_core *c, uint64_t wid, const tgs_worker_spec *ws,
                        int64_t now_ms)
{
    if (c == NULL || ws == NULL || ws->nthreads == 0 ||
        (ws->nfuncs > 0 && ws->funcs == NULL) ||
        (ws->nresources > 0 && ws->resources == NULL) ||
        (ws->name.len > 0 && ws->name.ptr == NULL))
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    if (find_worker(c, wid) != NULL)
        return TGS_EEXIST;
    if (grow_workers(c) != TGS_OK || tgs_map_reserve(&c->wmap, 1) != TGS_OK)
        return TGS_ENOMEM;
    tgs_worker *w = calloc(1, sizeof *w + ws->name.len + 1);
    if (w == NULL)
        return TGS_ENOMEM;
    if (ws->name.len)
        memcpy(w->name, ws->name.ptr, ws->name.len);
    w->name_len = ws->name.len;
    w->id = wid;
    w->hash = tgs_hash32(&wid, sizeof wid);
    w->nthreads = ws->nthreads;
    w->funcs = malloc((ws->nfuncs + 1) * sizeof *w->funcs);
    w->resources = malloc(resources_size(ws->resources, ws->nresources) + 1);
    int rc = (w->funcs && w->resources) ? TGS_OK : TGS_ENOMEM;
    /* Intern the functions, once each (`scratch` marks those seen). */
    for (size_t i = 0; i < ws->nfuncs && rc == TGS_OK; i++) {
        tgs_func *f;
        if (ws->funcs[i].len == 0 || ws->funcs[i].ptr == NULL)
            continue;
        rc = intern_func(c, ws->funcs[i], &f);
        if (rc == TGS_OK && !f->scratch) {
            f->scratch = 1;
            w->funcs[w->nfuncs++] = f;
        }
    }
    for (size_t i = 0; i < w->nfuncs; i++)
        w->funcs[i]->scratch = 0;
    if (rc != TGS_OK) {
        worker_free(w);
        return rc;
    }
    char *p = (char *)(w->resources + ws->nresources);
    resources_copy(w->resources, ws->resources, ws->nresources, &p);
    w->nresources = ws->nresources;
    w->order = c->next_order++;
    w->index = c->nworkers;
    c->workers[c->nworkers++] = w;
    tgs_map_insert(&c->wmap, w->hash, w);
    providers_add(c, w, +1);
    mark_dirty(c, w);
    schedule(c);
    return TGS_OK;
}

int tgs_core_worker_remove(tgs_core *c, uint64_t wid, int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL)
        return TGS_ENOTFOUND;
    if (!w->draining)
        providers_add(c, w, -1);
    tgs_map_remove(&c->wmap, w->hash, w);
    memmove(&c->workers[w->index], &c->workers[w->index + 1],
            (c->nworkers - w->index - 1) * sizeof *c->workers);
    c->nworkers--;
    for (size_t i = w->index; i < c->nworkers; i++)
        c->workers[i]->index = i;
    if (w->dirty) {
        for (size_t i = 0; i < c->ndirty; i++) {
            if (c->dirty[i] == w) {
                c->dirty[i] = c->dirty[--c->ndirty];
                break;
            }
        }
    }
    /* Its tasks go back to READY: the scheduler holds every result, so
     * only the runs in progress are lost. A task that was running on too
     * many workers that died is likely killing them: fail it. */
    for (uint32_t i = 0; i < w->nprocs; i++) {
        tgs_task *t = w->procs[i];
        t->u.worker = NULL;
        t->killed++;
        t->attempt++;
        if (t->killed >= c->opts.allowed_failures) {
            tgs_error *e = error_newf(
                "tg.KilledWorker", str_of_key(t),
                "task '%.*s' was running on %u workers that died "
                "(allowed_failures=%u)",
                plen(t->key_len), task_key(t), t->killed,
                c->opts.allowed_failures);
            if (e != NULL) {
                fail_cascade(c, t, TGS_ERRED, e);
                error_unref(e);
                continue;
            }
        }
        ready_push(c, t); /* room reserved: f->nlive */
    }
    worker_free(w);
    schedule(c);
    return TGS_OK;
}

int tgs_core_worker_drain(tgs_core *c, uint64_t wid, int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL)
        return TGS_ENOTFOUND;
    if (!w->draining) {
        w->draining = true;
        providers_add(c, w, -1);
    }
    maybe_close(c, w);
    schedule(c);
    return TGS_OK;
}

/* ---- results ---- */

static tgs_task *processing_on(tgs_core *c, uint64_t wid, tgs_str key)
{
    tgs_worker *w = find_worker(c, wid);
    tgs_task *t = find_key(c, key);
    if (w == NULL || t == NULL || t->state != TGS_PROCESSING ||
        t->u.worker != w)
        return NULL;
    return t;
}

int tgs_core_task_finished(tgs_core *c, uint64_t wid, tgs_str key,
                           const tgs_outcome *o, int64_t now_ms)
{
    if (c == NULL || o == NULL || (o->ok && o->data_len && !o->data))
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    tgs_task *t = processing_on(c, wid, key);
    if (t == NULL)
        return TGS_ESTATE;
    tgs_worker *w = t->u.worker;

    if (o->ok) {
        const tgs_istr *codec;
        int rc = intern_codec(c, o->codec, &codec);
        if (rc != TGS_OK)
            return rc;
        tgs_result *r = malloc(sizeof *r + o->data_len);
        if (r == NULL)
            return TGS_ENOMEM;
        r->codec = codec;
        r->len = o->data_len;
        if (o->data_len)
            memcpy(r->data, o->data, o->data_len);
        record_duration(w, t, now_ms);
        proc_remove(c, t);
        finish_ok(c, t, r);
    } else if (t->retries > 0) {
        record_duration(w, t, now_ms);
        proc_remove(c, t);
        t->retries--;
        t->attempt++;
        ready_push(c, t);
    } else {
        tgs_error *e = error_new(o->err_type, o->err_message,
                                 o->err_traceback, str_of_key(t));
        if (e == NULL)
            return TGS_ENOMEM;
        record_duration(w, t, now_ms);
        proc_remove(c, t);
        fail_cascade(c, t, TGS_ERRED, e);
        error_unref(e);
    }
    schedule(c);
    return TGS_OK;
}

int tgs_core_task_returned(tgs_core *c, uint64_t wid, tgs_str key,
                           int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    tgs_task *t = processing_on(c, wid, key);
    if (t == NULL)
        return TGS_ESTATE;
    proc_remove(c, t);
    ready_push(c, t);
    schedule(c);
    return TGS_OK;
}

/* ---- client requests ---- */

int tgs_core_watch(tgs_core *c, tgs_str key, uint64_t watcher,
                   const tgs_task **task)
{
    if (task != NULL)
        *task = NULL;
    if (c == NULL)
        return TGS_EINVAL;
    sweep(c);
    tgs_task *t = find_key(c, key);
    if (t == NULL)
        return TGS_ENOTFOUND;
    if (task != NULL)
        *task = t;
    if (is_final(t->state))
        return TGS_OK;
    tgs_watchers *w = t->watchers;
    uint32_t n = w ? w->n : 0;
    for (uint32_t i = 0; i < n; i++)
        if (w->ids[i] == watcher)
            return TGS_OK;
    if (w == NULL || w->n == w->cap) {
        uint32_t ncap = w ? w->cap * 2 : 1;
        if (w != NULL && w->cap > UINT32_MAX / 2)
            return TGS_ENOMEM;
        w = realloc(w, sizeof *w + (size_t)ncap * sizeof w->ids[0]);
        if (w == NULL)
            return TGS_ENOMEM;
        w->n = n;
        w->cap = ncap;
        t->watchers = w;
    }
    w->ids[w->n++] = watcher;
    return TGS_OK;
}

int tgs_core_cancel(tgs_core *c, const tgs_str *keys, size_t n,
                    int64_t now_ms, uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    sweep(c);
    c->now = now_ms;
    int rc = TGS_OK;
    uint32_t total = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || is_final(t->state))
            continue;
        tgs_error *e = error_newf("tg.Cancelled", str_of_key(t),
                                  "task '%.*s' was cancelled",
                                  plen(t->key_len), task_key(t));
        if (e == NULL) {
            rc = TGS_ENOMEM;
            break;
        }
        unschedule(c, t, true);
        total += fail_cascade(c, t, TGS_CANCELLED, e);
        error_unref(e);
    }
    if (count != NULL)
        *count = total;
    schedule(c);
    return rc;
}

int tgs_core_release(tgs_core *c, const tgs_str *keys, size_t n,
                     uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    sweep(c);
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL)
            continue;
        if (t->holds > 0)
            t->holds--;
        maybe_forget(c, t);
    }
    if (count != NULL)
        *count = c->forgotten;
    return TGS_OK;
}

int tgs_core_set_priority(tgs_core *c, const tgs_str *keys, size_t n,
                          int32_t priority, uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    sweep(c);
    uint32_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL ||
            (t->state != TGS_WAITING && t->state != TGS_READY))
            continue;
        t->hn.priority = priority;
        if (t->state == TGS_READY)
            tgs_heap_update(&t->func->ready, &t->hn);
        changed++;
    }
    if (count != NULL)
        *count = changed;
    return TGS_OK;
}

int tgs_core_set_retries(tgs_core *c, const tgs_str *keys, size_t n,
                         uint32_t retries, uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    sweep(c);
    uint32_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || is_final(t->state))
            continue;
        t->retries = retries;
        changed++;
    }
    if (count != NULL)
        *count = changed;
    return TGS_OK;
}

/* Fail the READY tasks of a function no worker has provided for `waited`
 * ms. Best effort under memory pressure: a task whose error cannot be
 * allocated stays READY until the next tick. */
static void fail_unplaceable(tgs_core *c, tgs_func *f, int64_t waited)
{
    while (f->ready.n > 0) {
        tgs_task *t = (tgs_task *)tgs_heap_top(&f->ready);
        tgs_error *e = error_newf(
            "tg.NoWorker", str_of_key(t),
            "no worker provides function '%.*s' (waited %lld ms)",
            plen(f->len), f->name, (long long)waited);
        if (e == NULL)
            return;
        ready_remove(c, t);
        fail_cascade(c, t, TGS_ERRED, e);
        error_unref(e);
    }
}

void tgs_core_tick(tgs_core *c, int64_t now_ms)
{
    if (c == NULL)
        return;
    sweep(c);
    c->now = now_ms;
    int64_t timeout = c->opts.no_worker_timeout_ms;
    if (timeout <= 0)
        return;
    /* Only starving functions are looked at, never all tasks. Walk down:
     * a function leaving the list is replaced by the last one, which has
     * been looked at already. */
    for (uint32_t i = c->nstarving; i-- > 0;) {
        if (i >= c->nstarving)
            continue;
        tgs_func *f = c->starving[i];
        if (now_ms - f->since > timeout)
            fail_unplaceable(c, f, now_ms - f->since);
    }
    schedule(c);
}

/* ---- actions and queries ---- */

bool tgs_core_next_action(tgs_core *c, tgs_action *out)
{
    if (c == NULL || c->alen == 0)
        return false;
    if (out != NULL)
        *out = c->actions[c->ahead];
    c->ahead = (c->ahead + 1) & (c->acap - 1);
    c->alen--;
    return true;
}

const tgs_task *tgs_core_find(const tgs_core *c, tgs_str key)
{
    return c ? find_key(c, key) : NULL;
}

void tgs_core_counts(const tgs_core *c, uint64_t counts[TGS_NSTATES])
{
    if (c == NULL) {
        memset(counts, 0, TGS_NSTATES * sizeof counts[0]);
        return;
    }
    memcpy(counts, c->counts, TGS_NSTATES * sizeof counts[0]);
}

uint64_t tgs_core_unplaceable(const tgs_core *c)
{
    return c ? c->unplaceable : 0;
}

size_t tgs_core_nworkers(const tgs_core *c)
{
    return c ? c->nworkers : 0;
}

bool tgs_core_worker_at(const tgs_core *c, size_t i, tgs_worker_info *out)
{
    if (c == NULL || out == NULL || i >= c->nworkers)
        return false;
    const tgs_worker *w = c->workers[i];
    out->id = w->id;
    out->name = (tgs_str){w->name, w->name_len};
    out->nthreads = w->nthreads;
    out->processing = w->nprocs;
    out->draining = w->draining;
    out->nfuncs = w->nfuncs;
    return true;
}

void tgs_core_why(const tgs_core *c, const tgs_task *t, char *buf,
                  size_t len)
{
    if (buf == NULL || len == 0)
        return;
    buf[0] = '\0';
    if (c == NULL || t == NULL)
        return;
    if (t->state == TGS_READY) {
        if (t->func->nproviders == 0)
            snprintf(buf, len, "no worker provides function '%.*s'",
                     plen(t->func->len), t->func->name);
        else
            snprintf(buf, len, "waiting for a free worker slot");
    } else if (t->state == TGS_WAITING) {
        snprintf(buf, len, "waiting for %u %s", t->unfinished,
                 t->unfinished == 1 ? "dependency" : "dependencies");
    }
}

/* ---- task accessors ---- */

tgs_str tgs_task_key(const tgs_task *t)
{
    return str_of_key(t);
}

tgs_str tgs_task_func(const tgs_task *t)
{
    return (tgs_str){t->func->name, t->func->len};
}

tgs_str tgs_task_codec(const tgs_task *t)
{
    return istr(t->codec);
}

const uint8_t *tgs_task_input(const tgs_task *t, size_t *len)
{
    if (len != NULL)
        *len = t->input_len;
    return (const uint8_t *)task_key(t) + t->key_len;
}

tgs_state tgs_task_state(const tgs_task *t)
{
    return (tgs_state)t->state;
}

int32_t tgs_task_priority(const tgs_task *t)
{
    return t->hn.priority;
}

uint32_t tgs_task_attempt(const tgs_task *t)
{
    return t->attempt;
}

uint32_t tgs_task_retries(const tgs_task *t)
{
    return t->retries;
}

bool tgs_task_worker(const tgs_task *t, uint64_t *wid)
{
    if (t->state != TGS_PROCESSING)
        return false;
    if (wid != NULL)
        *wid = t->u.worker->id;
    return true;
}

size_t tgs_task_ndeps(const tgs_task *t)
{
    return t->ndeps;
}

const tgs_task *tgs_task_dep(const tgs_task *t, size_t i)
{
    return i < t->ndeps ? t->deps[i] : NULL;
}

const uint8_t *tgs_task_result(const tgs_task *t, size_t *len)
{
    if (t->state != TGS_MEMORY) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = t->out.result->len;
    return t->out.result->data;
}

tgs_str tgs_task_result_codec(const tgs_task *t)
{
    return t->state == TGS_MEMORY ? istr(t->out.result->codec) : EMPTY;
}

static const tgs_error *task_error(const tgs_task *t)
{
    return (t->state == TGS_ERRED || t->state == TGS_CANCELLED)
               ? t->out.error
               : NULL;
}

tgs_str tgs_task_err_type(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->type : EMPTY;
}

tgs_str tgs_task_err_message(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->message : EMPTY;
}

tgs_str tgs_task_err_traceback(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->traceback : EMPTY;
}

tgs_str tgs_task_err_origin(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e && (t->flags & TF_INHERITED) ? e->origin : EMPTY;
}

size_t tgs_task_nresources(const tgs_task *t)
{
    return t->annot ? t->annot->nresources : 0;
}

tgs_resource tgs_task_resource(const tgs_task *t, size_t i)
{
    if (t->annot == NULL || i >= t->annot->nresources)
        return (tgs_resource){EMPTY, 0};
    return t->annot->resources[i];
}

size_t tgs_task_nrestrictions(const tgs_task *t)
{
    return t->annot ? t->annot->nworkers : 0;
}

tgs_str tgs_task_restriction(const tgs_task *t, size_t i)
{
    if (t->annot == NULL || i >= t->annot->nworkers)
        return EMPTY;
    return t->annot->workers[i];
}
