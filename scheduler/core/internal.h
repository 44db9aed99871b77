/* SPDX-License-Identifier: Apache-2.0
 *
 * internal.h: what the files of the scheduling core (scheduler/core/)
 * share and nothing outside them may use: the structs of tasks, placement
 * classes, functions and workers and of the core itself, small static
 * inline helpers, and the functions one file defines for the others
 * (prefixed tgs__; everything else is static in its file). The one public
 * interface stays scheduler/core.h. Depends on libc, the core's hash map
 * (hashmap.h) and the libc-only containers of //util (util/heap.h,
 * util/array.h).
 *
 * The files, one concept each: life.c (new, free, freeing forgotten
 * tasks), actions.c (the action queue), intern.c (interned names),
 * errors.c (shared error records), classes.c (placement classes),
 * resources.c (resource accounting), ready.c (ready heaps, starving
 * classes), submit.c (graph validation and insertion), schedule.c
 * (assignment), steal.c (work stealing, and higher-priority tasks
 * taking the place of lower ones queued on a worker), workers.c (the
 * worker table), complete.c (results and hand-backs), failure.c (failure
 * cascades, lost workers and quarantine, the no-worker timeout), retry.c
 * (retry timers and the tick), requests.c (cancel, release, annotate,
 * watch), why.c ("why is this task waiting"), scale.c (the scaling
 * policy), data.c (results held on workers: holders, consumers, frees,
 * data loss), lineage.c (recomputing lost results), nest.c (nested work:
 * seceded tasks, parents and children), accessors.c (queries and task
 * accessors).
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
 *    counts) as soon as it is final, because only an assignment needs them;
 *    a held result keeps the pointers as lineage links (counted in
 *    `D->lineage`, not in `needed`) until it is forgotten, lost for good or
 *    recomputed. A forgotten task still named by a link is "parked" when
 *    swept (state TGS_RELEASED, no result) and freed with its last link.
 *  - A task is forgotten when it is final, has no client holds, is needed
 *    by no one and is listed in no dependents array (`unfinished == 0`).
 *    Forgotten tasks leave the map at once but are freed only at the start
 *    of a later event, when no queued action can still point at them.
 *  - Every class's ready heap has room for all of its non-final tasks,
 *    reserved when a task joins the class (submit, set_resources, a
 *    dependency's result held on a worker), where failing is clean, so
 *    moving a task back to READY (a retry, a lost worker, a hand-back)
 *    can never fail half-way.
 *  - A MEMORY task whose result is held on workers (`held`) lists its
 *    holders, each of which lists it back (tgs_worker.store), and the
 *    non-final tasks that need it (tgs_held.consumers, once per
 *    occurrence: as many as `needed`). Both lists are kept exact, so a
 *    lost worker finds what it held, and a lost result what depends on
 *    it, without a scan. Tasks without held dependencies never touch
 *    them.
 */
#ifndef TGS_CORE_INTERNAL_H
#define TGS_CORE_INTERNAL_H

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/core.h"
#include "scheduler/core/hashmap.h"
#include "util/array.h"
#include "util/heap.h"

#define DEFAULT_ALLOWED_FAILURES 3
#define DEFAULT_MAX_PREFETCH 1024
#define DEFAULT_RETRY_BACKOFF_MS 100
#define DEFAULT_RETRY_BACKOFF_MAX_MS 5000
/* Scale down only after the demand stayed lower this long. */
#define DEFAULT_SCALE_HOLD_MS 2000

/* Bytes per second assumed between workers (tgs_core_opts), as Dask's
 * distributed.scheduler.bandwidth. */
#define DEFAULT_TRANSFER_BANDWIDTH 100e6

/* The run time assumed for a function none of whose tasks has finished
 * yet (ms), as Dask's distributed.scheduler.unknown-task-duration. */
#define UNKNOWN_DURATION_MS 500.0

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

/* "No index" of uint32_t positions and batch indices. */
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
    /* WAITING for its retry delay; pos is its index in core->timers. */
    TF_BACKOFF = 8,
    /* PROCESSING, and its worker was asked to hand it back (a record in
     * core->steals names the idle worker it is for). */
    TF_STEALING = 16,
    /* Scratch of tgs_core_worker_remove: most likely started there. */
    TF_SUSPECT = 32,
    /* PROCESSING in quarantine: it was blamed for a lost worker before,
     * so it runs alone on its worker (see pick()). */
    TF_QUARANTINE = 64,
    /* PROCESSING, received into a free thread of its worker: started
     * there at once, so never handed back for a higher-priority task (see
     * tgs__displace()). */
    TF_DIRECT = 128,
};

/* Nested work flags (tgs_task.nest; nest.c). */
enum {
    /* PROCESSING, and it seceded (it waits on nested work): its worker's
     * nthreads counts one more thread for it. */
    TN_SECEDED = 1,
    /* It has a tgs_kin record in core->kin (a parent, children, or
     * both). */
    TN_KIN = 2,
};

/* A task's place in the tree of nested work (nest.c): its parent's key
 * as submitted, its parent's record while the parent is known, and its
 * children. One per task that has a parent or children, in core->kin
 * keyed by the task pointer. */
typedef struct tgs_kin {
    tgs_task *task;
    struct tgs_kin *parent; /* NULL: none, or not known (any more) */
    struct tgs_kin **kids;  /* its children, in no particular order */
    uint32_t nkids;
    uint32_t capkids;
    uint32_t at;    /* index in parent->kids */
    uint32_t hash;  /* of `task` (the pointer) */
    uint32_t depth; /* its ancestors when submitted (tgs__kin_depth) */
    uint32_t plen;  /* its parent's key, as submitted (may be empty) */
    char pkey[];
} tgs_kin;

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
    /* The error as the worker serialized it (e.g. a pickled exception),
     * with its codec; empty when none came. Opaque bytes. */
    tgs_str payload;
    tgs_str payload_codec;
    char data[];
} tgs_error;

/* A result. Inline: `len` bytes in `data`. Held on workers (task->held):
 * `len` is its size, and `data` holds the tgs_held record instead of
 * bytes (one allocation either way; see held_of()). */
typedef struct tgs_result {
    const tgs_istr *codec;
    size_t len;
    uint8_t data[];
} tgs_result;

struct tgs_worker;

/* One holder of a held result: the worker, and the index of the result's
 * entry in that worker's `store`. */
typedef struct tgs_holder {
    struct tgs_worker *w;
    uint32_t pos;
} tgs_holder;

/* An entry of a worker's `store`: a held result, and the index of this
 * worker in its holders. */
typedef struct tgs_stored {
    tgs_task *t;
    uint32_t slot;
} tgs_stored;

/* The bookkeeping of a result held on workers (no bytes: those stay with
 * the holders). */
typedef struct tgs_held {
    tgs_holder *holders;
    uint32_t nholders;
    uint32_t capholders;
    /* The non-final tasks that need it, once per occurrence (values: task
     * pointers, keyed by the hash of the pointer), so that losing it fails
     * exactly them. */
    tgs_map consumers;
    uint32_t scratch; /* per-call counter (submit), zero between calls */
    /* Copies of it under way (replicate.c): each target worker, and the
     * index of this result in that worker's `copying`. */
    tgs_holder *copies;
    uint32_t ncopies;
    uint32_t capcopies;
} tgs_held;

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
    tg__heap ready; /* its READY tasks, by task_before() */
    struct tgs_func *func;
    tgs_cres *res;         /* sorted by name, amounts > 0 */
    tgs_str *names;        /* restrictions: sorted, distinct, non-empty */
    uint64_t nlive;        /* non-final tasks: room reserved in `ready` */
    uint64_t refs;         /* tasks pointing here, in any state */
    uint64_t nprocessing;  /* its tasks PROCESSING somewhere */
    uint64_t nqueued;      /* assignments that found no free thread */
    int64_t since;         /* starving: when it started */
    uint32_t nplacers;     /* non-draining workers listing it */
    uint32_t starving_pos; /* index in core->starving, or NONE */
    uint32_t scratch;      /* per-call counter or mark, zero between calls */
    uint32_t hash;
    uint32_t nres;
    uint32_t nnames;
    /* Its tasks have an input held on workers: only workers that can
     * fetch (tgs_worker_spec.can_fetch) run them (see class_fits). */
    bool fetch;
} tgs_class;

/* A function name: interned, with its classes and run-time statistics. */
typedef struct tgs_func {
    tgs_class plain;
    tgs_class **classes; /* every class of this function, plain first */
    uint32_t nclasses;
    size_t capclasses;
    double avg_ms;       /* moving average of measured run time */
    uint32_t nproviders; /* connected, non-draining workers providing it */
    uint32_t scratch;    /* per-call mark, zero between calls */
    bool avg_known;
    uint32_t hash;
    uint32_t len;
    /* Tasks of this function in each state (RELEASED: forgotten so far),
     * as tgs_core.counts (see tgs_core_func_at). */
    uint64_t counts[TGS_NSTATES];
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
    uint32_t nheld;      /* processing tasks holding resources here */
    tgs_class **classes; /* classes it could ever run (see class_fits) */
    uint32_t nclasses;
    size_t capclasses;
    tgs_task **procs; /* tasks processing here; task->pos indexes it */
    uint32_t nprocs;
    size_t capprocs;
    /* Its threads as the core counts them: those it registered
     * (`threads`) plus one per seceded task (`nseceded`, procs with
     * TN_SECEDED), which waits on nested work and holds no thread there. */
    uint32_t nthreads;
    uint32_t threads;
    uint32_t nseceded;
    uint32_t nsteal;      /* procs with a steal request out */
    uint32_t nquarantine; /* procs with TF_QUARANTINE (0 or 1) */
    uint32_t incoming;    /* steal requests out on its behalf */
    /* A lower bound of the priorities of its tasks without a steal
     * request (INT32_MAX when it has none): a READY task it could run
     * with a higher priority may take the place of one of them (see
     * tgs__displace()); at or below it, nothing queued there is lower, and
     * the check costs one comparison. Lowered at each assignment, made
     * exact by each look. */
    int32_t floor;
    /* Its last look for a task to hand back found none for a READY task
     * of priority disp_prio, and its tasks have not changed since. */
    bool disp_memo;
    int32_t disp_prio;
    /* Its last look for work to steal found none, when the nqueued of
     * its classes added up to steal_seen (see tgs__steal_for()). */
    bool steal_memo;
    uint64_t steal_seen;
    uint32_t hash;
    size_t index; /* in core->workers */
    int64_t last_finish_ms;
    bool has_finished;
    bool draining;
    bool paused; /* tgs_core_worker_pause: not a candidate for work */
    bool close_sent;
    bool managed;   /* started by the caller's launcher (scale.c) */
    bool dirty;     /* in core->dirty */
    bool can_fetch; /* has a data service (tgs_worker_spec.can_fetch) */
    /* Retired (retire.c): with `evacuate`, its held results move to other
     * workers before it closes; with `abandon`, it closes once nothing
     * runs there, whatever it holds. */
    bool evacuate;
    bool abandon;
    /* Scratch of the locality choice (schedule.c): bytes of the task's
     * held inputs it holds, and whether it is listed. */
    bool local_listed;
    uint64_t local;
    /* The held results it holds (see tgs_held); a draining worker closes
     * only once it holds none. */
    tgs_stored *store;
    uint32_t nstore;
    size_t capstore;
    /* Held results being copied to it (replicate.c; entries as in
     * `store`, `slot` indexing the result's copies), their bytes, and
     * its memory as last reported (tgs_core_worker_memory; limit 0:
     * none or unknown). */
    tgs_stored *copying;
    uint32_t ncopying;
    size_t capcopying;
    uint64_t copy_bytes;
    uint64_t mem_used;
    uint64_t mem_limit;
    const tgs_istr *iname; /* `name`, interned in core->wnames */
    size_t name_len;
    char name[];
} tgs_worker;

/*
 * One task, in one allocation: this struct, then the dependency pointers,
 * then the key, then the input bytes. 144 bytes plus key and input.
 * Resources and restrictions live in the class, shared by all its tasks.
 */
struct tgs_task {
    /* Priority (higher first) and FIFO sequence (submission order); `pos`
     * is the task's index in its class's ready heap (READY), in its
     * worker's `procs` (PROCESSING) or in the core's timers (WAITING with
     * TF_BACKOFF). */
    int32_t priority;
    uint32_t pos;
    uint64_t seq;
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
    union {
        int64_t assigned_ms; /* PROCESSING: when it was assigned */
        int64_t due_ms;      /* WAITING with TF_BACKOFF: when it retries */
        uint64_t run_us;     /* final, ran_on set: the run's length */
    } at;
    /* MEMORY or ERRED from its own run: the worker of that (last) run;
     * NULL otherwise (never ran, or ran again since). */
    const tgs_istr *ran_on;
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
    /* Lost workers in a row while it ran there (allowed_failures is at
     * most UINT16_MAX, so it never wraps). */
    uint16_t killed;
    uint8_t nest; /* TN_* flags (nest.c) */
    uint8_t state;
    uint8_t flags;
    /* MEMORY, and the result's bytes are held on workers: its record is a
     * tgs_held (see held_of()). A byte of its own, in what was padding, so
     * that tasks without held results test it in one instruction. */
    bool held;
    uint8_t nlost; /* times its result was lost and recomputed */
    /* Client holds dropped once it is final (retire.c,
     * tgs_core_release_when_done); at most `holds`. */
    uint8_t deferred;
    uint32_t lineage; /* lineage links naming it (see lineage.c) */
    tgs_task *deps[]; /* NULL once final, unless held (lineage links) */
};

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

/* The scaling policy's state (scale.c). */
typedef struct tgs_scale {
    bool have_target; /* Scale or adaptive scaling was asked for */
    bool adaptive;
    bool low;         /* demand below target since low_since */
    uint32_t target;  /* workers to keep */
    uint32_t minimum; /* adaptive bounds */
    uint32_t maximum;
    uint32_t nthreads; /* per launched worker, >= 1 */
    uint32_t step;     /* targets are multiples of it (0: 1) */
    int64_t hold_ms;
    int64_t low_since;
} tgs_scale;

struct tgs_core {
    tgs_core_opts opts;
    int64_t now;
    tgs_map tasks;  /* key -> tgs_task */
    tgs_map funcs;  /* name -> tgs_func */
    tgs_map codecs; /* name -> tgs_istr */
    tgs_map wnames; /* worker name -> tgs_istr (tgs_task.ran_on) */
    /* The last function and codec interned: tasks of a batch mostly share
     * them, and a compare is far cheaper than the keyed hash. Interned
     * names live as long as the core, so these never dangle. */
    tgs_func *last_func;
    const tgs_istr *last_codec;
    tgs_map rnames;       /* resource name -> tgs_istr */
    tgs_map classes;      /* classes other than the plain ones */
    tgs_map wmap;         /* id -> tgs_worker */
    tgs_map steals;       /* task pointer -> tgs_steal */
    size_t nclasses;      /* in `classes` */
    size_t nunused;       /* of those, with no task (refs == 0) */
    tgs_worker **workers; /* join order */
    size_t nworkers;
    size_t capworkers;    /* also the capacity of cand, dirty and victims */
    void **cand;          /* scratch heap of tgs__schedule() (workers) */
    tgs_worker **dirty;   /* workers whose load dropped or that joined */
    tgs_worker **victims; /* scratch of tgs__steal_for() */
    size_t ndirty;
    tgs_class **starving; /* classes with READY tasks and no placer */
    uint32_t nstarving;
    size_t capstarving; /* >= number of classes, plain ones included */
    tg__heap timers;    /* tasks in TF_BACKOFF, by (at.due_ms, seq) */
    tgs_rsort *rsort;   /* scratch of canonicalisation */
    size_t caprsort;
    tgs_cres *cres; /* canonical request being looked up */
    size_t capcres;
    tgs_str *cnames; /* canonical restrictions being looked up */
    size_t capcnames;
    void **pick; /* scratch (tasks) of tgs__steal_for(), mark_suspects() */
    size_t cappick;
    void **est; /* scratch (tasks) of the cost model (place.c) */
    size_t capest;
    uint64_t counts[TGS_NSTATES];
    /* Observation (observe.c): with `observe`, every change of a task's
     * state during the current event, in order; emptied at the start of
     * the next event. */
    tgs_transition *trans;
    size_t ntrans, captrans;
    uint64_t trans_dropped; /* not recorded for want of memory, in all */
    bool observe;
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
    uint64_t nlinked;   /* held results keeping lineage links */
    tgs_map kin;        /* task pointer -> tgs_kin (nest.c) */
    void **tree;        /* scratch (tasks) of the cancel of children */
    size_t captree;
    bool ready_added; /* READY tasks appeared since the last tgs__schedule() */
    /* A look for work to steal passed over a task whose inputs cost more
     * to move than waiting for its worker: idle workers look again at the
     * next tick, as the estimates change with time (steal.c). */
    bool relook;
    tgs_scale scale;
    /* Workers retired with `evacuate` (retire.c), and whether an event
     * may have changed what they can move (tgs__schedule looks then). */
    uint32_t nevacuating;
    bool evac_dirty;
};

static const tgs_str EMPTY = {"", 0};

/* ---- functions shared between the files ---- */

/* life.c */
void tgs__task_free(tgs_core *c, tgs_task *t);
void tgs__sweep_slow(tgs_core *c);
void tgs__maybe_forget(tgs_core *c, tgs_task *t);

/* retry.c */
void tgs__release_due(tgs_core *c);
void tgs__timer_remove(tgs_core *c, tgs_task *t);
void tgs__retry_later(tgs_core *c, tgs_task *t);

/* actions.c */
int tgs__action_push(tgs_core *c, tgs_action_kind kind, uint64_t worker,
                     uint64_t watcher, const tgs_task *task);
void tgs__notify(tgs_core *c, tgs_task *t);
int tgs__action_push_scale(tgs_core *c, uint32_t target);

/* intern.c */
int tgs__intern_func(tgs_core *c, tgs_str name, tgs_func **out);
int tgs__intern_str(tgs_map *m, tgs_str name, const tgs_istr **out);
int tgs__intern_codec(tgs_core *c, tgs_str name, const tgs_istr **out);

/* errors.c */
tgs_str tgs__put_str(char **p, tgs_str s);
/* An error record carrying the worker's serialized error too. */
tgs_error *tgs__error_new_payload(tgs_str type, tgs_str msg, tgs_str tb,
                                  tgs_str origin, tgs_str payload,
                                  tgs_str payload_codec);
tgs_error *tgs__error_new(tgs_str type, tgs_str msg, tgs_str tb,
                          tgs_str origin);
tgs_error *tgs__error_newf(const char *type, tgs_str origin, const char *fmt,
                           ...) __attribute__((format(printf, 3, 4)));
void tgs__error_unref(tgs_error *e);

/* classes.c */
void tgs__class_free(tgs_class *k);
void tgs__collect_classes(tgs_core *c);
int tgs__class_list_reserve(tgs_class ***v, size_t *cap, size_t n);
int tgs__class_get(tgs_core *c, tgs_func *f, const tgs_cres *res, size_t nres,
                   const tgs_str *names, size_t nnames, bool fetch,
                   tgs_class **out);
long tgs__canon_res(tgs_core *c, const tgs_resource *res, size_t n);
long tgs__canon_names(tgs_core *c, const tgs_str *names, size_t n);

/* resources.c */
bool tgs__res_valid(const tgs_resource *res, size_t n, size_t *bad);
bool tgs__class_fits(const tgs_worker *w, const tgs_class *k);
void tgs__res_hold(tgs_worker *w, const tgs_class *k);
void tgs__res_release(tgs_worker *w, const tgs_class *k);

/* ready.c */
int tgs__reserve_starving(tgs_core *c, size_t nclasses);
void tgs__ready_push(tgs_core *c, tgs_task *t);
void tgs__ready_remove(tgs_core *c, tgs_task *t);
void tgs__worker_link(tgs_core *c, tgs_worker *w, int delta);

/* schedule.c */
void tgs__schedule(tgs_core *c);

/* steal.c */
void tgs__steal_resolve(tgs_core *c, tgs_task *t);
void tgs__steal_for(tgs_core *c, tgs_worker *th, uint32_t want);
tgs_task *tgs__displace(tgs_core *c, tgs_worker *w);
/* The assignment order up to which `w`'s queued (not TF_DIRECT) tasks
 * have most likely started, in *upto; false when none has. `scratch`
 * (capacity *cap) is a task array of the caller's, grown as needed. */
bool tgs__started_upto(const tgs_worker *w, void ***scratch, size_t *cap,
                       uint64_t *upto);

/* place.c: the cost of moving held inputs against waiting (ms) */
/* The run time expected of a task of `t`'s function: its measured
 * average, UNKNOWN_DURATION_MS before any. */
double tgs__duration_ms(const tgs_task *t);
/* Moving `bytes` between workers at the configured bandwidth. */
double tgs__transfer_ms(const tgs_core *c, uint64_t bytes);
/* What is left to run of every task on `w`, added up. O(tasks on w). */
double tgs__backlog_ms(tgs_core *c, const tgs_worker *w);
/* Until `w` has a free thread: 0 if it has one now, else its backlog
 * divided over its threads. */
double tgs__wait_ms(tgs_core *c, const tgs_worker *w);
/* The bytes of `t`'s distinct held inputs that `w` holds; all of their
 * bytes in *total. O(held inputs * holders). */
uint64_t tgs__held_bytes(const tgs_task *t, const tgs_worker *w,
                         uint64_t *total);
/* Mark every idle worker dirty, so that the next pass has it look for
 * work to steal again (clears core->relook). */
void tgs__steal_relook(tgs_core *c);

/* workers.c */
void tgs__worker_free(tgs_worker *w);
void tgs__maybe_close(tgs_core *c, tgs_worker *w);
void tgs__proc_remove(tgs_core *c, tgs_task *t);
/* Stop assigning to `w`; TGS_ACT_CLOSE_WORKER once it is empty. */
void tgs__drain(tgs_core *c, tgs_worker *w);

/* replicate.c */
/* `t` (held) is freed or loses its record: its copies under way end. */
void tgs__copies_drop(tgs_task *t);
/* `w` is freed: the copies to it end. */
void tgs__copies_worker_gone(tgs_worker *w);
/* Start one more copy of held `h` to the best eligible worker (as
 * tgs_core_replicate): TGS_OK, TGS_ENOTFOUND when none is eligible, or
 * TGS_ENOMEM. */
int tgs__copy_elsewhere(tgs_core *c, tgs_task *h);

/* failure.c */
void tgs__become_final(tgs_core *c, tgs_task *t, tgs_state s);
void tgs__unschedule(tgs_core *c, tgs_task *t, bool cancel);
uint32_t tgs__fail_cascade(tgs_core *c, tgs_task *root, tgs_state s,
                           tgs_error *err);
void tgs__requeue_lost(tgs_core *c, tgs_worker *w);
void tgs__fail_unplaceable(tgs_core *c, tgs_class *k, int64_t waited);

/* lineage.c */
void tgs__lineage_drop(tgs_core *c, tgs_task *t);
void tgs__lineage_keep(tgs_core *c, tgs_task *t);
void tgs__lineage_park(tgs_task *t);
void tgs__result_lost(tgs_core *c, tgs_task *h, const tgs_worker *w,
                      bool missing);

/* data.c */
int tgs__held_prepare(tgs_core *c, tgs_task *t, tgs_worker *w,
                      const tgs_istr *codec, uint64_t size, tgs_result **out);
void tgs__held_commit(tgs_core *c, tgs_task *t, tgs_worker *w, tgs_result *r);
void tgs__held_consumer(tgs_core *c, tgs_task *h, tgs_task *d);
void tgs__held_consumer_add(tgs_task *h, tgs_task *d);
void tgs__held_release(tgs_core *c, tgs_task *h, const tgs_task *d);
void tgs__held_forget(tgs_core *c, tgs_task *h);
void tgs__held_free(tgs_task *t);
void tgs__store_lost(tgs_core *c, tgs_worker *w);
void tgs__held_lost(tgs_core *c, tgs_task *h, tgs_error *e);
/* `w` stops holding `h`, which has another holder: it is told to drop
 * it (TGS_ACT_FREE), and may close if it drains. */
void tgs__holder_drop(tgs_core *c, tgs_task *h, tgs_worker *w);

/* nest.c */
/* A parent key a spec may carry (length, pointer). */
bool tgs__parent_ok(tgs_str pkey);
/* `t` leaves its worker's procs: it no longer counts as seceded. */
void tgs__secede_clear(tgs_worker *w, tgs_task *t);
/* New task `t` (committed) was submitted by `parent` (its key; a task
 * known before the batch or NULL). Best effort: without memory the link
 * is not made. */
void tgs__kin_add(tgs_core *c, tgs_task *t, tgs_str pkey,
                  const tgs_task *parent);
/* The nesting depth of a new task submitted with parent key `pkey`: 0
 * without one, else the depth of `parent` (the task known by that key
 * before the batch; NULL: none, counted as depth 0) plus one. */
uint32_t tgs__kin_depth(const tgs_core *c, tgs_str pkey,
                        const tgs_task *parent);
/* Submit: `*out` is the tg.NestingTooDeep error of new task `key` with
 * parent key `pkey` when that nests it deeper than max_nesting_depth
 * (the caller owns it), NULL if not. TGS_ENOMEM if it cannot be made. */
int tgs__nest_check(const tgs_core *c, tgs_str key, tgs_str pkey,
                    tgs_error **out);
/* `t` (with TN_KIN) is forgotten: it leaves the tree. */
void tgs__kin_drop(tgs_core *c, tgs_task *t);
/* Cancel: collect the descendants of the named keys (before anything is
 * cancelled), then cancel those not final; returns how many. */
size_t tgs__kin_collect(tgs_core *c, const tgs_str *keys, size_t n);
uint32_t tgs__kin_cancel(tgs_core *c, size_t ncollected);
void tgs__kin_free_all(tgs_core *c);

/* why.c */
void tgs__unplaceable_text(const tgs_core *c, const tgs_class *k, char *buf,
                           size_t len);

/* scale.c */
void tgs__scale_tick(tgs_core *c);

/* retire.c */
/* `t` became final: its deferred holds are dropped (the caller's event
 * forgets it if nothing else needs it, as for any task turning final). */
void tgs__deferred_drop(tgs_task *t);
/* Move what retired workers hold (see tgs_core_worker_retire). */
void tgs__evacuate(tgs_core *c);

/* ---- small helpers ---- */

static inline bool is_final(uint8_t s)
{
    return s == TGS_MEMORY || s == TGS_ERRED || s == TGS_CANCELLED;
}

static inline bool bytes_eq(const char *a, size_t alen, tgs_str b)
{
    return alen == b.len && (alen == 0 || memcmp(a, b.ptr, alen) == 0);
}

/* memcmp order of two byte strings (shorter first on a common prefix). */
static inline int str_cmp(tgs_str a, tgs_str b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (r != 0)
        return r;
    return a.len < b.len ? -1 : a.len > b.len;
}

/* printf's %.*s takes an int. */
static inline int plen(size_t len)
{
    return len > INT_MAX ? INT_MAX : (int)len;
}

static inline char *task_key(const tgs_task *t)
{
    return (char *)(t->deps + t->ndeps);
}

void tgs__observe_slow(tgs_core *c, const tgs_task *t, tgs_state from,
                       tgs_state to);

/* `t` moves from state `from` (0: new) to `to`: counted per function, and
 * recorded when observed. Every change of a task's state goes through
 * here (set_state, commit of a new task, forgetting). */
static inline void count_state(tgs_core *c, tgs_task *t, tgs_state from,
                               tgs_state to)
{
    tgs_func *f = t->cls->func;
    if (from != 0) {
        c->counts[from]--;
        f->counts[from]--;
    }
    c->counts[to]++;
    f->counts[to]++;
    if (c->observe)
        tgs__observe_slow(c, t, from, to);
}

static inline void set_state(tgs_core *c, tgs_task *t, tgs_state s)
{
    count_state(c, t, (tgs_state)t->state, s);
    t->state = (uint8_t)s;
    if (__builtin_expect(t->deferred != 0, 0) && is_final((uint8_t)s))
        tgs__deferred_drop(t);
}

/* A resource amount a request or a capacity may have. */
static inline bool amount_ok(double a)
{
    return isfinite(a) && a >= 0;
}

static inline tgs_task *find_task(const tgs_core *c, tgs_str key, uint32_t h)
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

static inline tgs_task *find_key(const tgs_core *c, tgs_str key)
{
    if (key.len == 0 || key.ptr == NULL)
        return NULL;
    return find_task(c, key, tgs_hash32(key.ptr, key.len));
}

static inline tgs_worker *find_worker(const tgs_core *c, uint64_t wid)
{
    uint32_t h = tgs_hash32(&wid, sizeof wid);
    size_t pos = tgs_map_start(&c->wmap, h);
    tgs_worker *w;
    while ((w = tgs_map_next(&c->wmap, h, &pos)) != NULL)
        if (w->id == wid)
            return w;
    return NULL;
}

/* The record of a held result (task->held), in its result's data area. */
static inline tgs_held *held_of(const tgs_task *t)
{
    return (tgs_held *)(void *)t->out.result->data;
}

static inline tgs_str istr(const tgs_istr *s)
{
    return s ? (tgs_str){s->s, s->len} : EMPTY;
}

static inline tgs_str str_of_key(const tgs_task *t)
{
    return (tgs_str){task_key(t), t->key_len};
}

static inline bool is_plain(const tgs_class *k)
{
    return k == &k->func->plain;
}

static inline void class_ref(tgs_core *c, tgs_class *k)
{
    if (k->refs++ == 0 && !is_plain(k))
        c->nunused--;
}

static inline void class_unref(tgs_core *c, tgs_class *k)
{
    if (--k->refs == 0 && !is_plain(k))
        c->nunused++;
}

static inline tgs_wres *wres_find(const tgs_worker *w, const tgs_istr *name)
{
    for (uint32_t i = 0; i < w->nres; i++)
        if (w->res[i].name == name)
            return &w->res[i];
    return NULL;
}

/* Slack of a comparison against capacity `cap`. */
static inline double res_slack(double cap)
{
    return RES_EPS * (cap > 1 ? cap : 1);
}

/* Do the amounts of `k` fit beside what `w`'s tasks hold now. */
static inline bool res_free(const tgs_worker *w, const tgs_class *k)
{
    for (uint32_t i = 0; i < k->nres; i++) {
        const tgs_wres *r = wres_find(w, k->res[i].name);
        if (r == NULL ||
            r->used + k->res[i].amount > r->cap + res_slack(r->cap))
            return false;
    }
    return true;
}

/* Tasks queued on `w` beyond its threads that no steal request covers:
 * what an idle worker may take from it. */
static inline uint32_t queued_on(const tgs_worker *w)
{
    uint32_t busy = w->nprocs - w->nsteal;
    return busy > w->nthreads ? busy - w->nthreads : 0;
}

static inline void mark_dirty(tgs_core *c, tgs_worker *w)
{
    if (!w->dirty) {
        w->dirty = true;
        c->dirty[c->ndirty++] = w;
    }
}

static inline bool provides(const tgs_worker *w, const tgs_func *f)
{
    for (size_t i = 0; i < w->nfuncs; i++)
        if (w->funcs[i] == f)
            return true;
    return false;
}

static inline void drop_dependents(tgs_task *t)
{
    free(t->dependents);
    t->dependents = NULL;
    t->ndependents = t->capdependents = 0;
}

/* The event clock moves to `now`: tasks whose retry delay is over become
 * READY (assigned by the event's tgs__schedule()). Inline: every event
 * starts here, and there is rarely a timer due. */
static inline void advance(tgs_core *c, int64_t now)
{
    c->now = now;
    if (c->timers.n > 0 &&
        ((const tgs_task *)c->timers.items[0])->at.due_ms <= now)
        tgs__release_due(c);
}

static inline size_t total_classes(const tgs_core *c)
{
    return c->funcs.len + c->nclasses;
}

/* ---- ordering of tasks in heaps ---- */

/* Ready heaps: higher priority first, then lower sequence (FIFO among
 * equals). */
static inline bool task_before(const void *a, const void *b)
{
    const tgs_task *x = a, *y = b;
    return x->priority > y->priority ||
           (x->priority == y->priority && x->seq < y->seq);
}

/* Every heap of tasks records each task's index in `pos`. */
static inline void task_moved(void *t, size_t pos)
{
    ((tgs_task *)t)->pos = (uint32_t)pos;
}

/* ---- the start of every event ---- */

/* Free the tasks forgotten by earlier events (see tgs__sweep_slow); the
 * check is inline because every event starts here and there is rarely
 * anything to free. */
static inline void tgs__sweep(tgs_core *c)
{
    c->forgotten = 0;
    c->ntrans = 0;
    if (c->alen == 0 && (c->graveyard != NULL || c->nunused >= CLASS_GC_MIN))
        tgs__sweep_slow(c);
}

/* `now_ms` of events that take no time (the clock stays where it is). */
#define TGS__NO_CLOCK INT64_MIN

/*
 * The start of every event: free what earlier events forgot (no queued
 * action can point at it any more once the caller has popped them all),
 * then move the clock, which releases the retries that became due.
 */
static inline void tgs__event_begin(tgs_core *c, int64_t now_ms)
{
    tgs__sweep(c);
    if (now_ms != TGS__NO_CLOCK)
        advance(c, now_ms);
}

#endif
