/* SPDX-License-Identifier: Apache-2.0
 *
 * core.c: the pure scheduling core of taskgrid-scheduler (see core.h): the
 * task graph, placement classes and their ready heaps, resource accounting,
 * the worker table, retries with backoff, work stealing, cancellation,
 * forgetting, and the action queue. Deterministic, single threaded, no
 * I/O; time comes in as `now_ms`. Depends on libc and on the two data
 * structures next to it: hashmap.c (tasks, functions, classes, names and
 * workers by key) and heap.c (READY tasks of one class).
 *
 * Placement classes. A READY task waits in the heap of its class: its
 * function plus its canonical resource request plus its worker
 * restrictions. Tasks of one class are interchangeable for placement, so
 * if the top of a class heap cannot go to a worker, nothing in that heap
 * can, and the worker looks at its other classes instead: a GPU task
 * waiting for the only GPU never blocks CPU tasks behind it. Each function
 * has a plain class (no resources, no restrictions: the common case, kept
 * inside the function); other classes are interned in a map, and there
 * are few in practice (one per distinct request). Each worker lists the
 * classes it could ever run (it provides the function, is named in the
 * restrictions, and its capacities cover the request), built when it
 * joins and extended when a class appears; an assignment looks at the
 * tops of those heaps only: O(classes of the worker + log tasks). A class
 * no connected worker lists is unplaceable ("starving"); the no-worker
 * timeout and tgs_core_why work per class, never per task. Classes no
 * task refers to any more are collected in batches (see sweep()).
 *
 * Resources. A worker has a capacity and an amount in use per resource;
 * a task of a class with resources is assigned only where every amount
 * fits beside what is in use, and holds them until it leaves the worker.
 * So resource tasks are never prefetched beyond the resources (process=1
 * runs them one at a time), and the rest stay READY at the scheduler,
 * where priorities still order them.
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
 *  - Every class's ready heap has room for all of its non-final tasks,
 *    reserved when a task joins the class (submit, set_resources), where
 *    failing is clean, so moving a task back to READY (a retry, a lost
 *    worker, a hand-back) can never fail half-way.
 */
#include "scheduler/core.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/hashmap.h"
#include "scheduler/heap.h"

#define DEFAULT_ALLOWED_FAILURES 3
#define DEFAULT_MAX_PREFETCH 1024
#define DEFAULT_RETRY_BACKOFF_MS 100
#define DEFAULT_RETRY_BACKOFF_MAX_MS 5000
/* Queue about this much work (in ms) per thread on each worker: enough to
 * hide the round trip between a result and the next assignment, little
 * enough that a worker joining later (or a higher-priority task arriving)
 * still finds work to take. */
#define PREFETCH_TARGET_MS 10.0
/* Weight of a new sample in a function's moving average of run time
 * (1/8, as TCP's smoothed round-trip time). */
#define AVG_WEIGHT 0.125
/* Relative slack of resource comparisons: amounts are doubles, and adding
 * then subtracting 0.1 ten times does not give back exactly 0. */
#define RES_EPS 1e-9
/* Collect unused classes once at least this many are unused (and they are
 * at least half of all classes), so that the cost of a collection (a walk
 * over every worker's class list) is amortised over as many creations. */
#define CLASS_GC_MIN 32
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
    /* WAITING for its retry delay; hn.pos is its index in core->timers. */
    TF_BACKOFF = 8,
    /* PROCESSING, and its worker was asked to hand it back (a record in
     * core->steals names the idle worker it is for). */
    TF_STEALING = 16,
    /* Scratch of tgs_core_worker_remove: most likely started there. */
    TF_SUSPECT = 32,
    /* PROCESSING in quarantine: it was blamed for a lost worker before,
     * so it runs alone on its worker (see pick()). */
    TF_QUARANTINE = 64,
};

/* An interned string (codecs, resource names). Never freed before the
 * core. */
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

/* One amount of a class's request: the name is interned, so workers'
 * capacities are found by pointer comparison. */
typedef struct tgs_cres {
    const tgs_istr *name;
    double amount; /* > 0 */
} tgs_cres;

struct tgs_func;

/*
 * A placement class: tasks of one function with the same resource request
 * and the same worker restrictions, in one ready heap. The plain class of
 * a function lives inside it; others are one allocation each (this
 * struct, the request, the names and their bytes).
 */
typedef struct tgs_class {
    tgs_heap ready;
    struct tgs_func *func;
    tgs_cres *res;        /* sorted by name, amounts > 0 */
    tgs_str *names;       /* restrictions: sorted, distinct, non-empty */
    uint64_t nlive;       /* non-final tasks: room reserved in `ready` */
    uint64_t refs;        /* tasks pointing here, in any state */
    uint64_t nprocessing; /* its tasks PROCESSING somewhere */
    uint64_t nqueued;     /* assignments that found no free thread */
    int64_t since;        /* starving: when it started */
    uint32_t nplacers;    /* non-draining workers listing it */
    uint32_t starving_pos; /* index in core->starving, or NONE */
    uint32_t scratch;     /* per-call counter or mark, zero between calls */
    uint32_t hash;
    uint32_t nres;
    uint32_t nnames;
} tgs_class;

/* A function name: interned, with its classes and run-time statistics. */
typedef struct tgs_func {
    tgs_class plain;
    tgs_class **classes; /* every class of this function, plain first */
    uint32_t nclasses;
    uint32_t capclasses;
    double avg_ms;       /* moving average of measured run time */
    uint32_t nproviders; /* connected, non-draining workers providing it */
    uint32_t scratch;    /* per-call mark, zero between calls */
    bool avg_known;
    uint32_t hash;
    uint32_t len;
    char name[];
} tgs_func;

/* A worker's capacity of one resource and the amount its tasks hold. */
typedef struct tgs_wres {
    const tgs_istr *name;
    double cap;
    double used;
} tgs_wres;

typedef struct tgs_worker {
    uint64_t id;
    uint64_t order; /* join order: deterministic tie-break */
    tgs_func **funcs;
    size_t nfuncs;
    tgs_wres *res;
    uint32_t nres;
    uint32_t nheld; /* processing tasks holding resources here */
    tgs_class **classes; /* classes it could ever run (see class_fits) */
    uint32_t nclasses;
    uint32_t capclasses;
    tgs_task **procs; /* tasks processing here; task->hn.pos indexes it */
    uint32_t nprocs;
    uint32_t capprocs;
    uint32_t nthreads;
    uint32_t nsteal;   /* procs with a steal request out */
    uint32_t nquarantine; /* procs with TF_QUARANTINE (0 or 1) */
    uint32_t incoming; /* steal requests out on its behalf */
    /* Its last look for work to steal found none, when the nqueued of
     * its classes added up to steal_seen (see steal_for()). */
    bool steal_memo;
    uint64_t steal_seen;
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
 * Resources and restrictions live in the class, shared by all its tasks.
 */
struct tgs_task {
    /* Priority and FIFO sequence; `hn.pos` is the task's index in its
     * class's ready heap (READY), in its worker's `procs` (PROCESSING) or
     * in the core's timers (WAITING with TF_BACKOFF). */
    tgs_heap_node hn;
    tgs_class *cls;
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
    uint64_t aseq; /* PROCESSING: assignment order (stealing, loss) */
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
    uint32_t killed; /* lost workers in a row while it ran there */
    uint8_t state;
    uint8_t flags;
    tgs_task *deps[]; /* NULL once final */
};

/* A task waiting for its retry delay. */
typedef struct tgs_timer {
    int64_t due;
    tgs_task *task;
} tgs_timer;

/* An outstanding steal request: `task` (on its victim) is for `thief`. */
typedef struct tgs_steal {
    tgs_task *task;
    uint64_t thief;
} tgs_steal;

/* Scratch entry of canonicalisation (a request, before sorting). */
typedef struct tgs_rsort {
    const tgs_istr *name;
    double amount;
    size_t index;
} tgs_rsort;

struct tgs_core {
    tgs_core_opts opts;
    int64_t now;
    tgs_map tasks;   /* key -> tgs_task */
    tgs_map funcs;   /* name -> tgs_func */
    tgs_map codecs;  /* name -> tgs_istr */
    tgs_map rnames;  /* resource name -> tgs_istr */
    tgs_map classes; /* classes other than the plain ones */
    tgs_map wmap;    /* id -> tgs_worker */
    tgs_map steals;  /* task pointer -> tgs_steal */
    size_t nclasses; /* in `classes` */
    size_t nunused;  /* of those, with no task (refs == 0) */
    tgs_worker **workers; /* join order */
    size_t nworkers;
    size_t capworkers; /* also the capacity of cand, dirty and victims */
    tgs_worker **cand;    /* scratch of schedule() */
    tgs_worker **dirty;   /* workers whose load dropped or that joined */
    tgs_worker **victims; /* scratch of steal_for() */
    size_t ndirty;
    tgs_class **starving; /* classes with READY tasks and no placer */
    uint32_t nstarving;
    uint32_t capstarving; /* >= number of classes, plain ones included */
    tgs_timer *timers;    /* min-heap by (due, seq) */
    uint32_t ntimers;
    uint32_t captimers;
    tgs_rsort *rsort; /* scratch of canonicalisation */
    size_t caprsort;
    tgs_cres *cres; /* canonical request being looked up */
    size_t capcres;
    tgs_str *cnames; /* canonical restrictions being looked up */
    size_t capcnames;
    tgs_task **pick; /* scratch of steal_for() and worker_remove() */
    size_t cappick;
    uint64_t counts[TGS_NSTATES];
    uint64_t unplaceable;
    uint64_t queued; /* sum over workers of queued_on() */
    uint64_t next_seq;
    uint64_t next_order;
    uint64_t next_aseq;
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

/* memcmp order of two byte strings (shorter first on a common prefix). */
static int str_cmp(tgs_str a, tgs_str b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (r != 0)
        return r;
    return a.len < b.len ? -1 : a.len > b.len;
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

/* Append to a bounded text buffer; output past the end is dropped. */
static void bufcat(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void bufcat(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    if (*pos >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos += (size_t)n;
    if (*pos >= len)
        *pos = len - 1;
}

/* Grow a scratch array to hold `n` items of `size` bytes. */
static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return TGS_OK;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < n)
        ncap *= 2;
    if (ncap > SIZE_MAX / size)
        return TGS_ENOMEM;
    void *q = realloc(*p, ncap * size);
    if (q == NULL)
        return TGS_ENOMEM;
    *p = q;
    *cap = ncap;
    return TGS_OK;
}

/* A resource amount a request or a capacity may have. */
static bool amount_ok(double a)
{
    return isfinite(a) && a >= 0;
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

/* Room in `starving` for every class, so that a class starting to starve
 * never needs an allocation. */
static int reserve_starving(tgs_core *c, size_t nclasses)
{
    if (nclasses <= c->capstarving)
        return TGS_OK;
    size_t ncap = c->capstarving ? (size_t)c->capstarving * 2 : 16;
    while (ncap < nclasses)
        ncap *= 2;
    if (ncap > UINT32_MAX)
        return TGS_ENOMEM;
    tgs_class **s = realloc(c->starving, ncap * sizeof *s);
    if (s == NULL)
        return TGS_ENOMEM;
    c->starving = s;
    c->capstarving = (uint32_t)ncap;
    return TGS_OK;
}

static size_t total_classes(const tgs_core *c)
{
    return c->funcs.len + c->nclasses;
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
    if (reserve_starving(c, total_classes(c) + 1) != TGS_OK ||
        tgs_map_reserve(&c->funcs, 1) != TGS_OK)
        return TGS_ENOMEM;
    f = calloc(1, sizeof *f + name.len + 1);
    if (f == NULL)
        return TGS_ENOMEM;
    f->classes = malloc(4 * sizeof *f->classes);
    if (f->classes == NULL) {
        free(f);
        return TGS_ENOMEM;
    }
    memcpy(f->name, name.ptr, name.len);
    f->len = (uint32_t)name.len;
    f->hash = h;
    f->capclasses = 4;
    f->nclasses = 1;
    f->classes[0] = &f->plain;
    f->plain.func = f;
    f->plain.starving_pos = NONE;
    f->plain.hash = h;
    tgs_map_insert(&c->funcs, h, f);
    *out = f;
    return TGS_OK;
}

/* Intern `name` in `m` (codecs, resource names). */
static int intern_str(tgs_map *m, tgs_str name, const tgs_istr **out)
{
    if (name.ptr == NULL || name.len > UINT32_MAX)
        return TGS_EINVAL;
    uint32_t h = tgs_hash32(name.ptr, name.len);
    size_t pos = tgs_map_start(m, h);
    tgs_istr *s;
    while ((s = tgs_map_next(m, h, &pos)) != NULL) {
        if (bytes_eq(s->s, s->len, name)) {
            *out = s;
            return TGS_OK;
        }
    }
    if (tgs_map_reserve(m, 1) != TGS_OK)
        return TGS_ENOMEM;
    s = malloc(sizeof *s + name.len + 1);
    if (s == NULL)
        return TGS_ENOMEM;
    if (name.len)
        memcpy(s->s, name.ptr, name.len);
    s->s[name.len] = '\0';
    s->len = (uint32_t)name.len;
    s->hash = h;
    tgs_map_insert(m, h, s);
    *out = s;
    return TGS_OK;
}

/* Empty codecs are stored as NULL. */
static int intern_codec(tgs_core *c, tgs_str name, const tgs_istr **out)
{
    *out = NULL;
    if (name.len == 0)
        return TGS_OK;
    return intern_str(&c->codecs, name, out);
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

/* ---- classes: identity and life ---- */

static bool is_plain(const tgs_class *k)
{
    return k == &k->func->plain;
}

static void class_ref(tgs_core *c, tgs_class *k)
{
    if (k->refs++ == 0 && !is_plain(k))
        c->nunused--;
}

static void class_unref(tgs_core *c, tgs_class *k)
{
    if (--k->refs == 0 && !is_plain(k))
        c->nunused++;
}

static uint32_t class_hash(const tgs_func *f, const tgs_cres *res,
                           size_t nres, const tgs_str *names, size_t nnames)
{
    uint64_t h = f->hash;
    for (size_t i = 0; i < nres; i++) {
        uint64_t part[2];
        part[0] = ((uint64_t)res[i].name->hash << 32) ^ h;
        memcpy(&part[1], &res[i].amount, sizeof part[1]);
        h = tgs_hash_bytes(part, sizeof part);
    }
    for (size_t i = 0; i < nnames; i++)
        h ^= tgs_hash_bytes(names[i].ptr, names[i].len) + (h << 6) + (h >> 2);
    return (uint32_t)(h ^ (h >> 32));
}

static bool class_is(const tgs_class *k, const tgs_func *f,
                     const tgs_cres *res, size_t nres, const tgs_str *names,
                     size_t nnames)
{
    if (k->func != f || k->nres != nres || k->nnames != nnames)
        return false;
    for (size_t i = 0; i < nres; i++)
        if (k->res[i].name != res[i].name ||
            k->res[i].amount != res[i].amount)
            return false;
    for (size_t i = 0; i < nnames; i++)
        if (str_cmp(k->names[i], names[i]) != 0)
            return false;
    return true;
}

static void class_free(tgs_class *k)
{
    tgs_heap_free(&k->ready);
    if (!is_plain(k))
        free(k);
}

static void task_free(tgs_core *c, tgs_task *t)
{
    if (t->state == TGS_MEMORY)
        free(t->out.result);
    else if (t->state == TGS_ERRED || t->state == TGS_CANCELLED)
        error_unref(t->out.error);
    if (t->cls != NULL)
        class_unref(c, t->cls);
    free(t->watchers);
    free(t->dependents);
    free(t);
}

static void drop_class(tgs_class **v, uint32_t *n, uint32_t i)
{
    v[i] = v[--*n];
}

/*
 * Free the classes no task refers to any more, in one batch: every
 * worker's list and every function's list are filtered once. Plain
 * classes stay with their function. A batch runs only when unused classes
 * are at least CLASS_GC_MIN and half of all classes, so its cost is
 * amortised over the creations that made them.
 */
static void collect_classes(tgs_core *c)
{
    if (c->nunused < CLASS_GC_MIN || c->nunused * 2 < c->nclasses)
        return;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        for (uint32_t j = w->nclasses; j-- > 0;) {
            tgs_class *k = w->classes[j];
            if (k->refs == 0 && !is_plain(k))
                drop_class(w->classes, &w->nclasses, j);
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->funcs); i++) {
        tgs_func *f = tgs_map_at(&c->funcs, i);
        if (f == NULL)
            continue;
        for (uint32_t j = f->nclasses; j-- > 0;) {
            tgs_class *k = f->classes[j];
            if (k->refs != 0 || is_plain(k))
                continue;
            drop_class(f->classes, &f->nclasses, j);
            tgs_map_remove(&c->classes, k->hash, k);
            c->nclasses--;
            class_free(k);
        }
    }
    c->nunused = 0;
}

/* ---- task memory ---- */

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
        task_free(c, t);
    }
    collect_classes(c);
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

/* ---- resources ---- */

static tgs_wres *wres_find(const tgs_worker *w, const tgs_istr *name)
{
    for (uint32_t i = 0; i < w->nres; i++)
        if (w->res[i].name == name)
            return &w->res[i];
    return NULL;
}

/* Slack of a comparison against capacity `cap`. */
static double res_slack(double cap)
{
    return RES_EPS * (cap > 1 ? cap : 1);
}

/*
 * Could `w` ever run tasks of `k`: it is named in the restrictions (if
 * any) and each amount is within its capacity. (That it provides the
 * function is the caller's business.) A resource the worker does not
 * declare has capacity 0.
 */
static bool class_fits(const tgs_worker *w, const tgs_class *k)
{
    if (k->nnames != 0) {
        tgs_str me = {w->name, w->name_len};
        bool named = false;
        for (uint32_t i = 0; i < k->nnames && !named; i++)
            named = str_cmp(k->names[i], me) == 0;
        if (!named)
            return false;
    }
    for (uint32_t i = 0; i < k->nres; i++) {
        const tgs_wres *r = wres_find(w, k->res[i].name);
        if (r == NULL || k->res[i].amount > r->cap + res_slack(r->cap))
            return false;
    }
    return true;
}

/* Do the amounts of `k` fit beside what `w`'s tasks hold now. */
static bool res_free(const tgs_worker *w, const tgs_class *k)
{
    for (uint32_t i = 0; i < k->nres; i++) {
        const tgs_wres *r = wres_find(w, k->res[i].name);
        if (r == NULL ||
            r->used + k->res[i].amount > r->cap + res_slack(r->cap))
            return false;
    }
    return true;
}

static void res_hold(tgs_worker *w, const tgs_class *k)
{
    for (uint32_t i = 0; i < k->nres; i++)
        wres_find(w, k->res[i].name)->used += k->res[i].amount;
    w->nheld++;
}

static void res_release(tgs_worker *w, const tgs_class *k)
{
    if (--w->nheld == 0) {
        /* Nothing held: start from an exact 0 again rather than from the
         * rounding residue of many additions and subtractions. */
        for (uint32_t i = 0; i < w->nres; i++)
            w->res[i].used = 0;
        return;
    }
    for (uint32_t i = 0; i < k->nres; i++)
        wres_find(w, k->res[i].name)->used -= k->res[i].amount;
}

/* ---- ready heaps and starving classes ---- */

static void starving_update(tgs_core *c, tgs_class *k)
{
    bool starving = k->nplacers == 0 && k->ready.n > 0;
    if (starving && k->starving_pos == NONE) {
        k->starving_pos = c->nstarving;
        k->since = c->now;
        c->starving[c->nstarving++] = k; /* capacity reserved */
    } else if (!starving && k->starving_pos != NONE) {
        tgs_class *last = c->starving[--c->nstarving];
        c->starving[k->starving_pos] = last;
        last->starving_pos = k->starving_pos;
        k->starving_pos = NONE;
    }
}

static void ready_push(tgs_core *c, tgs_task *t)
{
    tgs_class *k = t->cls;
    set_state(c, t, TGS_READY);
    tgs_heap_push(&k->ready, &t->hn); /* capacity: k->nlive, reserved */
    if (k->nplacers == 0) {
        c->unplaceable++;
        starving_update(c, k);
    }
    c->ready_added = true;
}

static void ready_remove(tgs_core *c, tgs_task *t)
{
    tgs_class *k = t->cls;
    tgs_heap_remove(&k->ready, &t->hn);
    if (k->nplacers == 0) {
        c->unplaceable--;
        starving_update(c, k);
    }
}

static void placers_add(tgs_core *c, tgs_class *k, int delta)
{
    if (delta > 0 && k->nplacers++ == 0) {
        c->unplaceable -= k->ready.n;
        starving_update(c, k);
    } else if (delta < 0 && --k->nplacers == 0) {
        c->unplaceable += k->ready.n;
        starving_update(c, k);
    }
}

/* A worker starts (+1) or stops (-1) taking new work: update the
 * providers of its functions and the placers of its classes. */
static void worker_link(tgs_core *c, tgs_worker *w, int delta)
{
    for (size_t i = 0; i < w->nfuncs; i++) {
        if (delta > 0)
            w->funcs[i]->nproviders++;
        else
            w->funcs[i]->nproviders--;
    }
    for (uint32_t i = 0; i < w->nclasses; i++)
        placers_add(c, w->classes[i], delta);
}

static bool provides(const tgs_worker *w, const tgs_func *f)
{
    for (size_t i = 0; i < w->nfuncs; i++)
        if (w->funcs[i] == f)
            return true;
    return false;
}

static int class_list_reserve(tgs_class ***v, uint32_t *cap, uint32_t n)
{
    if (n <= *cap)
        return TGS_OK;
    size_t ncap = *cap ? (size_t)*cap * 2 : 4;
    while (ncap < n)
        ncap *= 2;
    if (ncap > UINT32_MAX)
        return TGS_ENOMEM;
    tgs_class **p = realloc(*v, ncap * sizeof *p);
    if (p == NULL)
        return TGS_ENOMEM;
    *v = p;
    *cap = (uint32_t)ncap;
    return TGS_OK;
}

/*
 * The class of function `f` with canonical request `res` and
 * restrictions `names` (see canon_res, canon_names): found, or made and
 * listed by every connected worker that could run it. Making one reserves
 * every list it joins first, so a failure leaves nothing half-linked.
 * Unused classes stay until collect_classes().
 */
static int class_get(tgs_core *c, tgs_func *f, const tgs_cres *res,
                     size_t nres, const tgs_str *names, size_t nnames,
                     tgs_class **out)
{
    if (nres == 0 && nnames == 0) {
        *out = &f->plain;
        return TGS_OK;
    }
    uint32_t h = class_hash(f, res, nres, names, nnames);
    size_t pos = tgs_map_start(&c->classes, h);
    tgs_class *k;
    while ((k = tgs_map_next(&c->classes, h, &pos)) != NULL) {
        if (class_is(k, f, res, nres, names, nnames)) {
            *out = k;
            return TGS_OK;
        }
    }
    if (nres > UINT32_MAX || nnames > UINT32_MAX)
        return TGS_EINVAL;
    size_t size = sizeof *k + nres * sizeof *res + nnames * sizeof *names;
    for (size_t i = 0; i < nnames; i++)
        size += names[i].len + 1;
    k = calloc(1, size);
    if (k == NULL)
        return TGS_ENOMEM;
    k->func = f;
    k->hash = h;
    k->starving_pos = NONE;
    k->nres = (uint32_t)nres;
    k->nnames = (uint32_t)nnames;
    k->res = (tgs_cres *)(k + 1);
    k->names = (tgs_str *)(k->res + nres);
    if (nres)
        memcpy(k->res, res, nres * sizeof *res);
    char *p = (char *)(k->names + nnames);
    for (size_t i = 0; i < nnames; i++)
        k->names[i] = put_str(&p, names[i]);

    int rc = reserve_starving(c, total_classes(c) + 1);
    if (rc == TGS_OK)
        rc = tgs_map_reserve(&c->classes, 1);
    if (rc == TGS_OK)
        rc = class_list_reserve(&f->classes, &f->capclasses,
                                f->nclasses + 1);
    for (size_t i = 0; i < c->nworkers && rc == TGS_OK; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->draining && provides(w, f) && class_fits(w, k))
            rc = class_list_reserve(&w->classes, &w->capclasses,
                                    w->nclasses + 1);
    }
    if (rc != TGS_OK) {
        free(k);
        return TGS_ENOMEM;
    }
    tgs_map_insert(&c->classes, h, k);
    c->nclasses++;
    c->nunused++; /* until its first task */
    f->classes[f->nclasses++] = k;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->draining && provides(w, f) && class_fits(w, k)) {
            w->classes[w->nclasses++] = k;
            k->nplacers++; /* no READY task yet: nothing else to update */
        }
    }
    *out = k;
    return TGS_OK;
}

static int rsort_cmp(const void *a, const void *b)
{
    const tgs_rsort *x = a, *y = b;
    if (x->name != y->name) {
        int r = str_cmp(istr(x->name), istr(y->name));
        if (r != 0)
            return r;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * The canonical form of a request, in c->cres: names interned, sorted by
 * name, the last amount of a repeated name, zero amounts dropped. Amounts
 * were validated by the caller. @return the number of entries, or a
 * negative status.
 */
static long canon_res(tgs_core *c, const tgs_resource *res, size_t n)
{
    if (n == 0)
        return 0;
    if (grow((void **)&c->rsort, &c->caprsort, n, sizeof *c->rsort) !=
            TGS_OK ||
        grow((void **)&c->cres, &c->capcres, n, sizeof *c->cres) != TGS_OK)
        return TGS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = intern_str(&c->rnames, res[i].name, &c->rsort[i].name);
        if (rc != TGS_OK)
            return rc;
        c->rsort[i].amount = res[i].amount;
        c->rsort[i].index = i;
    }
    if (n > 1)
        qsort(c->rsort, n, sizeof *c->rsort, rsort_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && c->rsort[i + 1].name == c->rsort[i].name)
            continue; /* a later entry of the same name wins */
        if (c->rsort[i].amount > 0)
            c->cres[m++] = (tgs_cres){c->rsort[i].name, c->rsort[i].amount};
    }
    return (long)m;
}

static int names_cmp(const void *a, const void *b)
{
    return str_cmp(*(const tgs_str *)a, *(const tgs_str *)b);
}

/* The canonical form of restrictions, in c->cnames: sorted, each once, no
 * empty names. @return the number of names, or a negative status. */
static long canon_names(tgs_core *c, const tgs_str *names, size_t n)
{
    if (n == 0)
        return 0;
    if (grow((void **)&c->cnames, &c->capcnames, n, sizeof *c->cnames) !=
        TGS_OK)
        return TGS_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (names[i].len > 0)
            c->cnames[m++] = names[i];
    if (m > 1)
        qsort(c->cnames, m, sizeof *c->cnames, names_cmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || str_cmp(c->cnames[u - 1], c->cnames[i]) != 0)
            c->cnames[u++] = c->cnames[i];
    return (long)u;
}

/* Validate a request: non-empty names, finite amounts >= 0. */
static bool res_valid(const tgs_resource *res, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        if (res[i].name.len == 0 || res[i].name.ptr == NULL ||
            !amount_ok(res[i].amount)) {
            *bad = i;
            return false;
        }
    }
    return true;
}

/* ---- retry timers ---- */

static bool timer_before(const tgs_timer *a, const tgs_timer *b)
{
    return a->due < b->due ||
           (a->due == b->due && a->task->hn.seq < b->task->hn.seq);
}

static void timer_set(tgs_core *c, uint32_t i, tgs_timer x)
{
    c->timers[i] = x;
    x.task->hn.pos = i;
}

static void timer_sift(tgs_core *c, uint32_t i)
{
    tgs_timer x = c->timers[i];
    while (i > 0 && timer_before(&x, &c->timers[(i - 1) / 2])) {
        timer_set(c, i, c->timers[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * (size_t)i + 1;
        if (l >= c->ntimers)
            break;
        size_t b = l;
        if (l + 1 < c->ntimers &&
            timer_before(&c->timers[l + 1], &c->timers[l]))
            b = l + 1;
        if (!timer_before(&c->timers[b], &x))
            break;
        timer_set(c, i, c->timers[b]);
        i = (uint32_t)b;
    }
    timer_set(c, i, x);
}

static int timer_push(tgs_core *c, tgs_task *t, int64_t due)
{
    if (c->ntimers == c->captimers) {
        size_t ncap = c->captimers ? (size_t)c->captimers * 2 : 16;
        if (ncap > UINT32_MAX)
            return TGS_ENOMEM;
        tgs_timer *a = realloc(c->timers, ncap * sizeof *a);
        if (a == NULL)
            return TGS_ENOMEM;
        c->timers = a;
        c->captimers = (uint32_t)ncap;
    }
    c->timers[c->ntimers] = (tgs_timer){due, t};
    timer_sift(c, c->ntimers++);
    return TGS_OK;
}

static void timer_remove(tgs_core *c, tgs_task *t)
{
    uint32_t i = t->hn.pos;
    tgs_timer last = c->timers[--c->ntimers];
    if (i < c->ntimers) {
        c->timers[i] = last;
        timer_sift(c, i);
    }
    t->flags &= (uint8_t)~TF_BACKOFF;
}

static void release_due(tgs_core *c)
{
    while (c->ntimers > 0 && c->timers[0].due <= c->now) {
        tgs_task *t = c->timers[0].task;
        timer_remove(c, t);
        ready_push(c, t); /* room reserved: k->nlive */
    }
}

/* The event clock moves to `now`: tasks whose retry delay is over become
 * READY (assigned by the event's schedule()). Inline: every event starts
 * here, and there is rarely a timer due. */
static inline void advance(tgs_core *c, int64_t now)
{
    c->now = now;
    if (c->ntimers > 0 && c->timers[0].due <= now)
        release_due(c);
}

/* Delay before the retry that follows failed attempt `attempt`. */
static int64_t backoff_ms(const tgs_core *c, uint32_t attempt)
{
    int64_t base = c->opts.retry_backoff_ms;
    int64_t max = c->opts.retry_backoff_max_ms;
    if (base <= 0)
        return 0;
    int64_t d = base;
    for (uint32_t i = 1; i < attempt && d < max; i++)
        d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
    return d < max ? d : max;
}

/* ---- workers' processing sets ---- */

/* Tasks queued on `w` beyond its threads that no steal request covers:
 * what an idle worker may take from it. */
static uint32_t queued_on(const tgs_worker *w)
{
    uint32_t busy = w->nprocs - w->nsteal;
    return busy > w->nthreads ? busy - w->nthreads : 0;
}

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

static tgs_steal *steal_find(const tgs_core *c, const tgs_task *t,
                             uint32_t *hash)
{
    *hash = tgs_hash32(&t, sizeof t);
    size_t pos = tgs_map_start(&c->steals, *hash);
    tgs_steal *s;
    while ((s = tgs_map_next(&c->steals, *hash, &pos)) != NULL)
        if (s->task == t)
            return s;
    return NULL;
}

/* The steal request for `t`, if any, is answered (hand-back, result,
 * cancel, lost worker): the idle worker it was for may ask again. The
 * victim's count is the caller's business. */
static void steal_resolve(tgs_core *c, tgs_task *t)
{
    uint32_t h;
    tgs_steal *s = steal_find(c, t, &h);
    t->flags &= (uint8_t)~TF_STEALING;
    if (s == NULL)
        return;
    tgs_worker *thief = find_worker(c, s->thief);
    if (thief != NULL && thief->incoming > 0) {
        thief->incoming--;
        mark_dirty(c, thief); /* it may want to steal again */
    }
    tgs_map_remove(&c->steals, h, s);
    free(s);
}

/* Take a PROCESSING task off its worker, which lets go of its resources
 * (state is the caller's job). */
static void proc_remove(tgs_core *c, tgs_task *t)
{
    tgs_worker *w = t->u.worker;
    tgs_class *k = t->cls;
    c->queued -= queued_on(w);
    if (t->flags & TF_STEALING) {
        steal_resolve(c, t);
        w->nsteal--;
    }
    if (k->nres)
        res_release(w, k);
    k->nprocessing--;
    if (t->flags & TF_QUARANTINE) {
        t->flags &= (uint8_t)~TF_QUARANTINE;
        w->nquarantine--;
    }
    w->steal_memo = false; /* its resources or load changed */
    uint32_t i = t->hn.pos;
    tgs_task *last = w->procs[--w->nprocs];
    if (last != t) {
        w->procs[i] = last;
        last->hn.pos = i;
    }
    c->queued += queued_on(w);
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
    tgs_func *f = t->cls->func;
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
 * (Tasks with resources are further bounded by the resources.)
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

/* `t` is out of heaps, timers and workers; make it final. */
static void become_final(tgs_core *c, tgs_task *t, tgs_state s)
{
    set_state(c, t, s);
    t->cls->nlive--;
    notify(c, t);
    release_deps(c, t);
}

static void drop_dependents(tgs_task *t)
{
    free(t->dependents);
    t->dependents = NULL;
    t->ndependents = t->capdependents = 0;
}

/* Take a task out of its ready heap, its retry timer or off its worker
 * before it becomes final. A PROCESSING task being cancelled gets a
 * TGS_ACT_CANCEL. */
static void unschedule(tgs_core *c, tgs_task *t, bool cancel)
{
    if (t->state == TGS_READY) {
        ready_remove(c, t);
    } else if (t->state == TGS_PROCESSING) {
        if (cancel)
            action_push(c, TGS_ACT_CANCEL, t->u.worker->id, 0, t);
        proc_remove(c, t);
    } else if (t->flags & TF_BACKOFF) {
        timer_remove(c, t);
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
    tgs_class *k = t->cls;
    ready_remove(c, t);
    set_state(c, t, TGS_PROCESSING);
    if (k->nres)
        res_hold(w, k);
    k->nprocessing++;
    if (w->nprocs >= w->nthreads)
        k->nqueued++; /* queued there: something to steal, perhaps */
    t->u.worker = w;
    t->assigned_ms = c->now;
    t->aseq = c->next_aseq++;
    if (t->killed > 0) {
        t->flags |= TF_QUARANTINE;
        w->nquarantine++;
    }
    c->queued -= queued_on(w);
    t->hn.pos = w->nprocs;
    w->procs[w->nprocs++] = t;
    c->queued += queued_on(w);
    return TGS_OK;
}

/*
 * The task `w` should take next: the best (priority, then FIFO) among the
 * tops of the class heaps it could run, where it has room: its prefetch
 * capacity for the function, and free resources for a class with some.
 * Tops that would not win anyway are skipped before the room checks.
 * Always inline: it is the inner loop of every assignment.
 */
static inline __attribute__((always_inline)) tgs_task *
pick(const tgs_core *c, const tgs_worker *w)
{
    tgs_task *best = NULL;
    /* Quarantine: a task that was running on a worker that died runs
     * alone, so if its worker dies again the blame is exact and the tasks
     * that shared a worker with it by chance are not failed with it.
     * Known cost: while such a task heads its class queue, that queue
     * waits until a worker that can run it is idle (a short bubble after
     * a loss), which keeps a pick at O(classes of the worker). */
    if (w->nquarantine > 0)
        return NULL;
    for (uint32_t i = 0; i < w->nclasses; i++) {
        const tgs_class *k = w->classes[i];
        tgs_heap_node *top = tgs_heap_top(&k->ready);
        if (top == NULL || (best != NULL && !tgs_heap_before(top, &best->hn)))
            continue;
        if (w->nprocs > 0 && ((const tgs_task *)top)->killed > 0)
            continue;
        if (w->nprocs >= capacity(c, w, k->func) ||
            (k->nres != 0 && !res_free(w, k)))
            continue;
        best = (tgs_task *)top; /* hn is the first member */
    }
    return best;
}

/* Most queued per thread first, then earlier join. */
static int victim_cmp(const void *a, const void *b)
{
    const tgs_worker *x = *(tgs_worker *const *)a;
    const tgs_worker *y = *(tgs_worker *const *)b;
    uint64_t lx = (uint64_t)queued_on(x) * y->nthreads;
    uint64_t ly = (uint64_t)queued_on(y) * x->nthreads;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Min-heap of candidates by assignment order (scratch of steal_for). */
static void pick_sift_down(tgs_task **h, size_t n, size_t i)
{
    tgs_task *x = h[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t b = l;
        if (l + 1 < n && h[l + 1]->aseq < h[l]->aseq)
            b = l + 1;
        if (h[b]->aseq >= x->aseq)
            break;
        h[i] = h[b];
        i = b;
    }
    h[i] = x;
}

static void pick_sift_up(tgs_task **h, size_t i)
{
    tgs_task *x = h[i];
    while (i > 0 && x->aseq < h[(i - 1) / 2]->aseq) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

/* Ask `v` to hand `t` back for `thief`. */
static bool steal_request(tgs_core *c, tgs_worker *v, tgs_task *t,
                          tgs_worker *thief)
{
    uint32_t h = tgs_hash32(&t, sizeof t);
    tgs_steal *s = malloc(sizeof *s);
    if (s == NULL || tgs_map_reserve(&c->steals, 1) != TGS_OK ||
        action_push(c, TGS_ACT_STEAL, v->id, 0, t) != TGS_OK) {
        free(s);
        return false;
    }
    s->task = t;
    s->thief = thief->id;
    tgs_map_insert(&c->steals, h, s);
    c->queued -= queued_on(v);
    t->flags |= TF_STEALING;
    v->nsteal++;
    c->queued += queued_on(v);
    thief->incoming++;
    return true;
}

/*
 * Worker `th` has `want` idle threads and nothing READY it can take: ask
 * the most loaded workers to hand back queued tasks it could run now (its
 * classes, with free resources for it), up to `want` in all and never
 * more than a victim has queued beyond its threads. Candidates are the
 * tasks a victim received last: the worker runs in (priority, arrival)
 * order, so those are the least likely to have started; a started one is
 * no harm (the victim answers with its result instead).
 *
 * A look that finds nothing is not repeated until a task of one of its
 * classes is queued somewhere (the sum of their nqueued grows) or the
 * thief's own load or resources change: otherwise idle workers that share
 * a function with busy ones but cannot take their queued tasks would scan
 * them at every event.
 */
static void steal_for(tgs_core *c, tgs_worker *th, uint32_t want)
{
    bool any = false;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < th->nclasses; i++) {
        tgs_class *k = th->classes[i];
        if (k->nprocessing > 0 && (k->nres == 0 || res_free(th, k))) {
            k->scratch = 1;
            seen += k->nqueued;
            any = true;
        }
    }
    if (th->steal_memo && th->steal_seen == seen)
        any = false;
    uint32_t wanted = want;
    size_t nv = 0;
    for (size_t i = 0; any && i < c->nworkers; i++) {
        tgs_worker *v = c->workers[i];
        if (v != th && queued_on(v) > 0)
            c->victims[nv++] = v;
    }
    if (nv > 1)
        qsort(c->victims, nv, sizeof *c->victims, victim_cmp);
    for (size_t vi = 0; vi < nv && want > 0; vi++) {
        tgs_worker *v = c->victims[vi];
        uint32_t take = queued_on(v) < want ? queued_on(v) : want;
        if (take == 0 || grow((void **)&c->pick, &c->cappick, take,
                              sizeof *c->pick) != TGS_OK)
            continue;
        /* The `take` most recently assigned candidates: a min-heap by
         * assignment order, O(procs log take). */
        size_t n = 0;
        for (uint32_t i = 0; i < v->nprocs; i++) {
            tgs_task *t = v->procs[i];
            if (!t->cls->scratch || (t->flags & TF_STEALING))
                continue;
            if (n < take) {
                c->pick[n++] = t;
                pick_sift_up(c->pick, n - 1);
            } else if (t->aseq > c->pick[0]->aseq) {
                c->pick[0] = t;
                pick_sift_down(c->pick, n, 0);
            }
        }
        for (size_t i = 0; i < n && want > 0; i++)
            if (steal_request(c, v, c->pick[i], th))
                want--;
    }
    for (uint32_t i = 0; i < th->nclasses; i++)
        th->classes[i]->scratch = 0;
    th->steal_memo = want == wanted;
    th->steal_seen = seen;
}

/*
 * Hand READY tasks to workers, one at a time to the least loaded
 * (processing/nthreads) worker that can take one, so load spreads evenly:
 * O(classes of the worker + log tasks) per assignment (see pick()).
 *
 * Only workers that may have changed are considered: all of them when
 * READY tasks appeared, else those whose load dropped or that joined.
 * Capacity of others is unchanged, and they were already full or without
 * work after the previous pass.
 *
 * Then rebalance: a considered worker left with idle threads (and nothing
 * it can take) steals queued tasks from busy ones (see steal_for()).
 */
static void schedule(tgs_core *c)
{
    size_t n = 0;
    if (c->counts[TGS_READY] > 0 || c->queued > 0) {
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

    /* Candidates a pass leaves are swapped behind the heap, so that
     * cand[0, ncand) still holds them all for the rebalancing below. */
    size_t ncand = n;
    for (size_t i = n / 2; i-- > 0;)
        cand_sift_down(c->cand, n, i);
    while (n > 0 && c->counts[TGS_READY] > 0) {
        tgs_worker *w = c->cand[0];
        tgs_task *best = pick(c, w);
        if (best == NULL) {
            c->cand[0] = c->cand[--n];
            c->cand[n] = w;
            if (n > 0)
                cand_sift_down(c->cand, n, 0);
            continue;
        }
        if (assign(c, w, best) != TGS_OK)
            break; /* out of memory: the task stays READY */
        cand_sift_down(c->cand, n, 0);
    }

    for (size_t i = 0; i < ncand && c->queued > 0; i++) {
        tgs_worker *w = c->cand[i];
        uint32_t busy = w->nprocs + w->incoming;
        if (busy < w->nthreads && pick(c, w) == NULL)
            steal_for(c, w, w->nthreads - busy);
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
    if (c->opts.retry_backoff_ms == 0)
        c->opts.retry_backoff_ms = DEFAULT_RETRY_BACKOFF_MS;
    if (c->opts.retry_backoff_max_ms <= 0)
        c->opts.retry_backoff_max_ms = DEFAULT_RETRY_BACKOFF_MAX_MS;
    *out = c;
    return TGS_OK;
}

static void worker_free(tgs_worker *w)
{
    free(w->funcs);
    free(w->res);
    free(w->classes);
    free(w->procs);
    free(w);
}

static void map_free_values(tgs_map *m)
{
    for (size_t i = 0; i < tgs_map_capacity(m); i++)
        free(tgs_map_at(m, i));
    tgs_map_free(m);
}

void tgs_core_free(tgs_core *c)
{
    if (c == NULL)
        return;
    c->alen = 0;
    sweep(c);
    for (size_t i = 0; i < tgs_map_capacity(&c->tasks); i++) {
        tgs_task *t = tgs_map_at(&c->tasks, i);
        if (t != NULL) {
            t->cls = NULL; /* classes go below, all at once */
            task_free(c, t);
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->funcs); i++) {
        tgs_func *f = tgs_map_at(&c->funcs, i);
        if (f == NULL)
            continue;
        for (uint32_t j = 0; j < f->nclasses; j++)
            class_free(f->classes[j]);
        free(f->classes);
        free(f);
    }
    for (size_t i = 0; i < c->nworkers; i++)
        worker_free(c->workers[i]);
    map_free_values(&c->codecs);
    map_free_values(&c->rnames);
    map_free_values(&c->steals);
    tgs_map_free(&c->tasks);
    tgs_map_free(&c->funcs);
    tgs_map_free(&c->classes);
    tgs_map_free(&c->wmap);
    free(c->workers);
    free(c->cand);
    free(c->dirty);
    free(c->victims);
    free(c->starving);
    free(c->timers);
    free(c->rsort);
    free(c->cres);
    free(c->cnames);
    free(c->pick);
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

static tgs_task *task_new(const tgs_task_spec *s, uint32_t h,
                          const tgs_istr *codec, uint32_t capdependents)
{
    size_t size = sizeof(tgs_task) + s->ndeps * sizeof(tgs_task *) +
                  s->key.len + s->input_len;
    tgs_task *t = malloc(size);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof *t);
    if (capdependents != 0) {
        t->dependents = malloc(capdependents * sizeof *t->dependents);
        if (t->dependents == NULL) {
            free(t);
            return NULL;
        }
        t->capdependents = capdependents;
    }
    t->hn.priority = s->priority;
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
static int submit_batch(tgs_core *c, const tgs_task_spec *specs, size_t n,
                        tgs_submit_result *res, char *err, size_t errlen)
{
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
    tgs_class **cls = NULL;
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
        size_t bad;
        if (!res_valid(s->resources, s->nresources, &bad)) {
            const tgs_resource *r = &s->resources[bad];
            if (r->name.len == 0 || r->name.ptr == NULL)
                seterr(err, errlen,
                       "task '%.*s' asks for a resource with no name",
                       plen(s->key.len), s->key.ptr);
            else
                seterr(err, errlen,
                       "task '%.*s' asks for an invalid amount %g of "
                       "resource '%.*s'",
                       plen(s->key.len), s->key.ptr, r->amount,
                       plen(r->name.len), r->name.ptr);
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

    /* Phase 2: allocate. Interned names and classes stay even if this
     * batch fails (unused classes are collected later). */
    fn = malloc((m + 1) * sizeof *fn);
    cls = malloc((m + 1) * sizeof *cls);
    cd = malloc((m + 1) * sizeof *cd);
    tasks = calloc(m + 1, sizeof *tasks);
    if (!fn || !cls || !cd || !tasks) {
        rc = TGS_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < m; k++) {
        const tgs_task_spec *s = &specs[spec_of[k]];
        if ((rc = intern_func(c, s->func, &fn[k])) != TGS_OK ||
            (rc = intern_codec(c, s->codec, &cd[k])) != TGS_OK)
            goto out;
        cls[k] = &fn[k]->plain;
        if (s->nresources == 0 && s->nworkers == 0)
            continue; /* the common case: no canonical form to build */
        long nr = canon_res(c, s->resources, s->nresources);
        long nn = nr < 0 ? 0 : canon_names(c, s->workers, s->nworkers);
        if (nr < 0 || nn < 0) {
            rc = (int)(nr < 0 ? nr : nn);
            goto out;
        }
        rc = class_get(c, fn[k], c->cres, (size_t)nr, c->cnames, (size_t)nn,
                       &cls[k]);
        if (rc != TGS_OK)
            goto out;
    }
    for (size_t k = 0; k < m; k++)
        if (!is_final(st[k]))
            cls[k]->scratch++;
    for (size_t k = 0; k < m; k++) {
        tgs_class *q = cls[k];
        if (q->scratch != 0 && rc == TGS_OK &&
            tgs_heap_reserve(&q->ready, q->nlive + q->scratch) != TGS_OK)
            rc = TGS_ENOMEM;
        q->scratch = 0;
    }
    if (rc != TGS_OK)
        goto out;
    for (size_t k = 0; k < m; k++) {
        uint32_t i = spec_of[k];
        /* Room for the in-batch dependents; a task final at once keeps
         * none (a final task has no dependents array). */
        tasks[k] = task_new(&specs[i], hashes[i], cd[k],
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
        t->cls = cls[k];
        class_ref(c, t->cls);
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
        t->cls->nlive++;
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

out:
    if (tasks != NULL) {
        for (size_t k = 0; k < m; k++) {
            if (tasks[k] != NULL) {
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
    free(cls);
    free(cd);
    free(tasks);
    free(appended);
    return rc;
}


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
    advance(c, now_ms);
    int rc = submit_batch(c, specs, n, res, err, errlen);
    schedule(c); /* new tasks, and retries that became due */
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
    a = realloc(c->victims, ncap * sizeof *a);
    if (a == NULL)
        return TGS_ENOMEM;
    c->victims = a;
    c->capworkers = ncap;
    return TGS_OK;
}

/* A worker's capacities: names interned, the last of a repeated name. */
static int worker_resources(tgs_core *c, tgs_worker *w,
                            const tgs_resource *res, size_t n)
{
    if (n > UINT32_MAX)
        return TGS_EINVAL;
    w->res = malloc((n + 1) * sizeof *w->res);
    if (w->res == NULL)
        return TGS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const tgs_istr *name;
        if (res[i].name.len == 0)
            continue;
        int rc = intern_str(&c->rnames, res[i].name, &name);
        if (rc != TGS_OK)
            return rc;
        tgs_wres *r = wres_find(w, name);
        if (r == NULL)
            r = &w->res[w->nres++];
        *r = (tgs_wres){name, res[i].amount, 0};
    }
    return TGS_OK;
}

/* The classes `w` could ever run, from those of the functions it
 * provides. */
static int worker_classes(tgs_worker *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nfuncs; i++)
        n += w->funcs[i]->nclasses;
    if (n > UINT32_MAX / 2)
        return TGS_ENOMEM;
    if (class_list_reserve(&w->classes, &w->capclasses, (uint32_t)n + 1) !=
        TGS_OK)
        return TGS_ENOMEM;
    for (size_t i = 0; i < w->nfuncs; i++) {
        tgs_func *f = w->funcs[i];
        for (uint32_t j = 0; j < f->nclasses; j++)
            if (class_fits(w, f->classes[j]))
                w->classes[w->nclasses++] = f->classes[j];
    }
    return TGS_OK;
}

static int add_worker(tgs_core *c, uint64_t wid, const tgs_worker_spec *ws)
{
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
    int rc = w->funcs ? TGS_OK : TGS_ENOMEM;
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
    if (rc == TGS_OK)
        rc = worker_resources(c, w, ws->resources, ws->nresources);
    if (rc == TGS_OK)
        rc = worker_classes(w);
    if (rc != TGS_OK) {
        worker_free(w);
        return rc;
    }
    w->order = c->next_order++;
    w->index = c->nworkers;
    c->workers[c->nworkers++] = w;
    tgs_map_insert(&c->wmap, w->hash, w);
    worker_link(c, w, +1);
    mark_dirty(c, w);
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
    for (size_t i = 0; i < ws->nresources; i++)
        if ((ws->resources[i].name.len > 0 &&
             ws->resources[i].name.ptr == NULL) ||
            !amount_ok(ws->resources[i].amount))
            return TGS_EINVAL;
    sweep(c);
    advance(c, now_ms);
    int rc = add_worker(c, wid, ws);
    schedule(c); /* the new worker, and retries that became due */
    return rc;
}

static int by_aseq(const void *a, const void *b)
{
    const tgs_task *x = *(tgs_task *const *)a, *y = *(tgs_task *const *)b;
    return x->aseq < y->aseq ? -1 : x->aseq > y->aseq;
}

/* The worker's own run order: priority, then arrival. */
static int by_run_order(const void *a, const void *b)
{
    const tgs_task *x = *(tgs_task *const *)a, *y = *(tgs_task *const *)b;
    if (x->hn.priority != y->hn.priority)
        return x->hn.priority > y->hn.priority ? -1 : 1;
    return by_aseq(a, b);
}

/*
 * Mark (TF_SUSPECT) the tasks `w` had most likely started when it was
 * lost. The core does not see starts, only assignments and results, and a
 * worker may hold many queued tasks (prefetch): blaming them all would
 * fail innocent tasks queued behind a task that kills its workers. A
 * worker runs by (priority, arrival), so a running task is among the
 * `nthreads` it received first or among the `nthreads` it would run first;
 * mark both sets. (Out of memory: mark all, the safe side.)
 */
static void mark_suspects(tgs_core *c, tgs_worker *w)
{
    uint32_t n = w->nprocs, k = w->nthreads;
    if (n <= k || grow((void **)&c->pick, &c->cappick, n, sizeof *c->pick) !=
                      TGS_OK) {
        for (uint32_t i = 0; i < n; i++)
            w->procs[i]->flags |= TF_SUSPECT;
        return;
    }
    memcpy(c->pick, w->procs, n * sizeof *c->pick);
    qsort(c->pick, n, sizeof *c->pick, by_aseq);
    for (uint32_t i = 0; i < k; i++)
        c->pick[i]->flags |= TF_SUSPECT;
    qsort(c->pick, n, sizeof *c->pick, by_run_order);
    for (uint32_t i = 0; i < k; i++)
        c->pick[i]->flags |= TF_SUSPECT;
}

int tgs_core_worker_remove(tgs_core *c, uint64_t wid, int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    sweep(c);
    advance(c, now_ms);
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL) {
        schedule(c);
        return TGS_ENOTFOUND;
    }
    if (!w->draining)
        worker_link(c, w, -1);
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
    c->queued -= queued_on(w);
    mark_suspects(c, w);
    /* Its tasks go back to READY at once: the scheduler holds every
     * result, so only the runs in progress are lost, and the loss is not
     * the task's fault unless it keeps happening. A task that was running
     * on allowed_failures workers in a row that died is likely killing
     * them: fail it (and its dependents), and only it. */
    for (uint32_t i = 0; i < w->nprocs; i++) {
        tgs_task *t = w->procs[i];
        if (t->flags & TF_STEALING)
            steal_resolve(c, t);
        t->cls->nprocessing--;
        t->u.worker = NULL;
        if (!(t->flags & TF_SUSPECT)) {
            ready_push(c, t); /* as if handed back; room: k->nlive */
            continue;
        }
        t->flags &= (uint8_t)~TF_SUSPECT;
        t->killed++;
        if (t->killed >= c->opts.allowed_failures) {
            tgs_error *e = error_newf(
                "tg.KilledWorker", str_of_key(t),
                "task '%.*s' killed %u workers in a row: each died while "
                "running it (allowed_failures=%u)",
                plen(t->key_len), task_key(t), t->killed,
                c->opts.allowed_failures);
            if (e != NULL) {
                fail_cascade(c, t, TGS_ERRED, e);
                error_unref(e);
                continue;
            }
        }
        t->attempt++; /* it will run again */
        ready_push(c, t);
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
    advance(c, now_ms);
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL) {
        schedule(c);
        return TGS_ENOTFOUND;
    }
    if (!w->draining) {
        w->draining = true;
        worker_link(c, w, -1);
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

/* `t` (off its worker) failed with retries left: use one, and come back
 * READY after the backoff (at once if there is none, or if the timer
 * heap cannot grow). */
static void retry_later(tgs_core *c, tgs_task *t)
{
    int64_t delay = backoff_ms(c, t->attempt);
    t->retries--;
    t->attempt++;
    if (delay > 0 && timer_push(c, t, c->now + delay) == TGS_OK) {
        set_state(c, t, TGS_WAITING);
        t->flags |= TF_BACKOFF;
        return;
    }
    ready_push(c, t);
}

int tgs_core_task_finished(tgs_core *c, uint64_t wid, tgs_str key,
                           const tgs_outcome *o, int64_t now_ms)
{
    if (c == NULL || o == NULL || (o->ok && o->data_len && !o->data))
        return TGS_EINVAL;
    sweep(c);
    advance(c, now_ms);
    tgs_task *t = processing_on(c, wid, key);
    if (t == NULL) {
        schedule(c);
        return TGS_ESTATE;
    }
    tgs_worker *w = t->u.worker;
    int rc = TGS_OK;

    /* A run that ended with an outcome did not kill its worker: the run
     * of lost workers counted for tg.KilledWorker is over. */
    if (o->ok) {
        const tgs_istr *codec;
        tgs_result *r = NULL;
        rc = intern_codec(c, o->codec, &codec);
        if (rc == TGS_OK && (r = malloc(sizeof *r + o->data_len)) == NULL)
            rc = TGS_ENOMEM;
        if (rc == TGS_OK) {
            r->codec = codec;
            r->len = o->data_len;
            if (o->data_len)
                memcpy(r->data, o->data, o->data_len);
            record_duration(w, t, now_ms);
            proc_remove(c, t);
            t->killed = 0;
            finish_ok(c, t, r);
        }
    } else if (t->retries > 0) {
        record_duration(w, t, now_ms);
        proc_remove(c, t);
        t->killed = 0;
        retry_later(c, t);
    } else {
        tgs_error *e = error_new(o->err_type, o->err_message,
                                 o->err_traceback, str_of_key(t));
        if (e == NULL) {
            rc = TGS_ENOMEM;
        } else {
            record_duration(w, t, now_ms);
            proc_remove(c, t);
            t->killed = 0;
            fail_cascade(c, t, TGS_ERRED, e);
            error_unref(e);
        }
    }
    schedule(c);
    return rc;
}

int tgs_core_task_returned(tgs_core *c, uint64_t wid, tgs_str key,
                           int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    sweep(c);
    advance(c, now_ms);
    tgs_task *t = processing_on(c, wid, key);
    if (t == NULL) {
        schedule(c);
        return TGS_ESTATE;
    }
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
    advance(c, now_ms);
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

static bool not_started(const tgs_task *t)
{
    return t->state == TGS_WAITING || t->state == TGS_READY;
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
        if (t == NULL || !not_started(t))
            continue;
        t->hn.priority = priority;
        if (t->state == TGS_READY)
            tgs_heap_update(&t->cls->ready, &t->hn);
        changed++;
    }
    if (count != NULL)
        *count = changed;
    return TGS_OK;
}

/* Move a task that has not started to class `k` (room reserved there). */
static void move_class(tgs_core *c, tgs_task *t, tgs_class *k)
{
    bool ready = t->state == TGS_READY;
    if (ready) {
        ready_remove(c, t);
        set_state(c, t, TGS_WAITING); /* for a moment */
    }
    t->cls->nlive--;
    class_unref(c, t->cls);
    t->cls = k;
    class_ref(c, k);
    k->nlive++;
    if (ready)
        ready_push(c, t);
}

int tgs_core_set_resources(tgs_core *c, const tgs_str *keys, size_t n,
                           const tgs_resource *res, size_t nres,
                           uint32_t *count)
{
    size_t bad;
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL) || (nres > 0 && res == NULL) ||
        !res_valid(res, nres, &bad))
        return TGS_EINVAL;
    sweep(c);
    long nr = canon_res(c, res, nres);
    if (nr < 0)
        return (int)nr;
    int rc = TGS_OK;
    uint32_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || !not_started(t))
            continue;
        tgs_class *old = t->cls, *k;
        /* c->cres holds the canonical request throughout: class_get does
         * not touch it. The restrictions stay those of the old class. */
        rc = class_get(c, old->func, c->cres, (size_t)nr, old->names,
                       old->nnames, &k);
        if (rc == TGS_OK && k != old &&
            tgs_heap_reserve(&k->ready, k->nlive + 1) != TGS_OK)
            rc = TGS_ENOMEM;
        if (rc != TGS_OK)
            break;
        if (k != old)
            move_class(c, t, k);
        changed++;
    }
    if (count != NULL)
        *count = changed;
    schedule(c); /* a READY task may fit somewhere now */
    return rc;
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

/* ---- why a class cannot be placed ---- */

static bool named_in(const tgs_class *k, const tgs_worker *w)
{
    tgs_str me = {w->name, w->name_len};
    for (uint32_t i = 0; i < k->nnames; i++)
        if (str_cmp(k->names[i], me) == 0)
            return true;
    return false;
}

static void names_text(const tgs_class *k, char *buf, size_t len,
                       size_t *pos)
{
    for (uint32_t i = 0; i < k->nnames; i++)
        bufcat(buf, len, pos, "%s'%.*s'", i ? " or " : "",
               plen(k->names[i].len), k->names[i].ptr);
}

static void res_text(const tgs_class *k, char *buf, size_t len, size_t *pos)
{
    for (uint32_t i = 0; i < k->nres; i++)
        bufcat(buf, len, pos, "%s%s=%g", i ? ", " : "", k->res[i].name->s,
               k->res[i].amount);
}

/*
 * Why no connected worker lists class `k` (which has READY tasks), from
 * the first missing piece: the function, a worker with one of the names,
 * or the resources (with the largest capacity of each among the workers
 * that provide the function and carry a name). O(workers): a query, and
 * once per class at the no-worker timeout, never per task.
 */
static void unplaceable_text(const tgs_core *c, const tgs_class *k,
                             char *buf, size_t len)
{
    const tgs_func *f = k->func;
    size_t pos = 0;
    buf[0] = '\0';
    if (f->nproviders == 0) {
        bufcat(buf, len, &pos, "no worker provides function '%.*s'",
               plen(f->len), f->name);
        return;
    }
    if (k->nnames != 0) {
        bool named = false, named_provider = false;
        for (size_t i = 0; i < c->nworkers; i++) {
            const tgs_worker *w = c->workers[i];
            if (w->draining || !named_in(k, w))
                continue;
            named = true;
            named_provider = named_provider || provides(w, f);
        }
        if (!named_provider) {
            bufcat(buf, len, &pos, "no worker named ");
            names_text(k, buf, len, &pos);
            if (named)
                bufcat(buf, len, &pos, " provides function '%.*s'",
                       plen(f->len), f->name);
            return;
        }
    }
    if (k->nres == 0) {
        bufcat(buf, len, &pos, "no worker can run it");
        return;
    }
    bufcat(buf, len, &pos, "no worker has resources ");
    res_text(k, buf, len, &pos);
    bufcat(buf, len, &pos, " (largest: ");
    for (uint32_t r = 0; r < k->nres; r++) {
        double largest = 0;
        for (size_t i = 0; i < c->nworkers; i++) {
            const tgs_worker *w = c->workers[i];
            if (w->draining || !provides(w, f) ||
                (k->nnames != 0 && !named_in(k, w)))
                continue;
            const tgs_wres *wr = wres_find(w, k->res[r].name);
            if (wr != NULL && wr->cap > largest)
                largest = wr->cap;
        }
        bufcat(buf, len, &pos, "%s%s=%g", r ? ", " : "", k->res[r].name->s,
               largest);
    }
    bufcat(buf, len, &pos, ")");
}

/* Fail the READY tasks of a class no worker could run for `waited` ms.
 * Best effort under memory pressure: a task whose error cannot be
 * allocated stays READY until the next tick. */
static void fail_unplaceable(tgs_core *c, tgs_class *k, int64_t waited)
{
    char why[512];
    unplaceable_text(c, k, why, sizeof why);
    while (k->ready.n > 0) {
        tgs_task *t = (tgs_task *)tgs_heap_top(&k->ready);
        tgs_error *e = error_newf("tg.NoWorker", str_of_key(t),
                                  "%s (waited %lld ms)", why,
                                  (long long)waited);
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
    advance(c, now_ms);
    int64_t timeout = c->opts.no_worker_timeout_ms;
    /* Only starving classes are looked at, never all tasks. Walk down: a
     * class leaving the list is replaced by the last one, which has been
     * looked at already. */
    for (uint32_t i = c->nstarving; timeout > 0 && i-- > 0;) {
        if (i >= c->nstarving)
            continue;
        tgs_class *k = c->starving[i];
        if (now_ms - k->since > timeout)
            fail_unplaceable(c, k, now_ms - k->since);
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

/* Does a worker that lists `k` have its resources free now. */
static bool res_free_somewhere(const tgs_core *c, const tgs_class *k)
{
    for (size_t i = 0; i < c->nworkers; i++) {
        const tgs_worker *w = c->workers[i];
        if (w->draining || !res_free(w, k))
            continue;
        for (uint32_t j = 0; j < w->nclasses; j++)
            if (w->classes[j] == k)
                return true;
    }
    return false;
}

void tgs_core_why(const tgs_core *c, const tgs_task *t, char *buf,
                  size_t len)
{
    if (buf == NULL || len == 0)
        return;
    buf[0] = '\0';
    if (c == NULL || t == NULL)
        return;
    const tgs_class *k = t->cls;
    size_t pos = 0;
    if (t->state == TGS_READY) {
        if (k->nplacers == 0) {
            unplaceable_text(c, k, buf, len);
        } else if (k->nres != 0 && !res_free_somewhere(c, k)) {
            bufcat(buf, len, &pos, "waiting for free resources ");
            res_text(k, buf, len, &pos);
        } else {
            bufcat(buf, len, &pos, "waiting for a free worker slot");
        }
    } else if (t->state == TGS_WAITING && (t->flags & TF_BACKOFF)) {
        int64_t left = c->timers[t->hn.pos].due - c->now;
        bufcat(buf, len, &pos, "retrying in %lld ms (attempt %u)",
               (long long)(left > 0 ? left : 0), t->attempt);
    } else if (t->state == TGS_WAITING) {
        bufcat(buf, len, &pos, "waiting for %u %s", t->unfinished,
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
    return (tgs_str){t->cls->func->name, t->cls->func->len};
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
    return t->cls->nres;
}

tgs_resource tgs_task_resource(const tgs_task *t, size_t i)
{
    if (i >= t->cls->nres)
        return (tgs_resource){EMPTY, 0};
    const tgs_cres *r = &t->cls->res[i];
    return (tgs_resource){istr(r->name), r->amount};
}

size_t tgs_task_nrestrictions(const tgs_task *t)
{
    return t->cls->nnames;
}

tgs_str tgs_task_restriction(const tgs_task *t, size_t i)
{
    return i < t->cls->nnames ? t->cls->names[i] : EMPTY;
}
