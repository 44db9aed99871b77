/* SPDX-License-Identifier: Apache-2.0
 *
 * core.h: the pure scheduling core of taskgrid-scheduler. A deterministic
 * state machine: events in (submit, worker joined/left, task finished,
 * cancel, release, scale, tick), actions out (assign, cancel-on-worker,
 * notify a watcher, close a worker, scale the cluster, retire a worker,
 * free a result held on a worker).
 * Time is injected as `now_ms`. It has no sockets, threads, gRPC or
 * nanopb; its Bazel target (//scheduler:core) depends on libc and two
 * header-level libraries only (the public status codes and the libc-only
 * containers of //util), so tests and fuzzers drive it directly. The
 * implementation lives in scheduler/core/ (one file per concept; see
 * scheduler/core/internal.h).
 *
 * Data structures are sized for millions of tasks: keys in a hash map,
 * ready tasks in priority heaps (one per placement class: a function plus
 * a resource request and worker restrictions), dependents in per-task
 * arrays, retry delays in a timer heap; no event scans all tasks.
 *
 * Scheduling semantics, in short (each is documented where it applies):
 *  - priority: higher first, FIFO among equals (submission order), across
 *    what the core holds READY and what workers hold queued but not
 *    started. A worker runs what it holds by priority (taskgrid.v1
 *    Assignment.priority), and its queue beyond its threads (prefetch) is
 *    bounded (see max_prefetch). When a task is READY that a full worker
 *    could run and it has a higher priority than a task queued there, the
 *    core assigns it to that worker at once, beyond the bound, and asks
 *    the worker to hand the lower one back (TGS_ACT_STEAL); back READY,
 *    that one may in turn take the place of a still lower one. A READY
 *    task whose resources a lower queued task holds is assigned once that
 *    one is back. So a worker never starts a task while a higher one it
 *    could run is READY or queued behind it, in any order of arrival
 *    (submit, dependencies done, retries, hand-backs, Annotate). Limits:
 *    a hand-back racing a start loses (the started task runs, the higher
 *    one next); the core guesses which queued tasks have started, and a
 *    wrong guess costs a request answered by a result; a task needing the
 *    resources of several queued tasks waits for them; across workers,
 *    the tasks queued are the highest ones, but one queued behind a long
 *    task stays there (until that task ends or an idle worker steals it)
 *    while other workers go on with lower ones;
 *  - placement: a task goes only to a worker that provides its function,
 *    is named in its restrictions (if any) and has room for its resources;
 *    among the workers that could take it, the least loaded (then the
 *    first to join);
 *  - data locality: a task with held inputs goes, among the workers that
 *    could take it now (a free slot or prefetch room, its function,
 *    resources, restrictions, able to fetch, and no READY task of higher
 *    priority they could take instead), to the one holding the most bytes
 *    of its distinct held inputs; on a tie with the usual choice, or when
 *    no such holder holds more than it, the usual choice. Locality only
 *    chooses among workers that can take the task now: it never waits for
 *    a busy holder while another worker is free. Tasks without held
 *    inputs pay nothing for it (they are never in a "fetch" class);
 *  - resources: held from assignment until the task leaves the worker
 *    (result, hand-back, cancel, worker lost), never over-committed;
 *  - retries: an error with retries left goes back to READY after a
 *    backoff; a lost worker reschedules its tasks at once without using
 *    retries, and a task whose runs killed `allowed_failures` workers in a
 *    row fails with tg.KilledWorker;
 *  - rebalancing: a worker with idle threads asks the most loaded worker
 *    to hand back queued tasks (TGS_ACT_STEAL);
 *  - scaling: Scale(n) or adaptive Scale(minimum, maximum) set how many
 *    workers the caller's launcher should keep (TGS_ACT_SCALE); surplus
 *    workers are retired by draining (TGS_ACT_RETIRE), those holding no
 *    result first;
 *  - held results: a worker that can fetch (tgs_worker_spec.can_fetch)
 *    may keep a result in its own store and report it held
 *    (tgs_outcome.held): the core records its holders and size, not its
 *    bytes. A task with a held dependency runs only on workers that can
 *    fetch (it moves to the "fetch" variant of its placement class, so
 *    tasks without held inputs pay nothing). Forgetting a held result
 *    emits TGS_ACT_FREE for each holder. A worker lost (or one reporting
 *    it no longer has it, tgs_core_result_missing) that was a result's
 *    only holder loses it; results inline are never lost. A draining
 *    worker closes only once it holds no result;
 *  - lineage: a lost result still needed (a client hold, or a task not
 *    final that depends on it; a forgotten one is not) is computed again
 *    from the graph: the task goes back to WAITING (READY once its
 *    dependencies are final), counts an attempt but uses no retry, and
 *    every task needing it waits for it again (one PROCESSING elsewhere
 *    gets TGS_ACT_CANCEL and goes back). A result with another holder is
 *    not lost. To be recomputed, a held result keeps its specification
 *    and its links to its dependencies while it is held; the links do
 *    not keep a dependency's result in memory, so a dependency released
 *    and no longer needed is forgotten as usual (only its record of a
 *    few hundred bytes stays while a link names it). A dependency lost
 *    in the same event is recomputed first; one forgotten, erred or
 *    cancelled makes the loss final: the task becomes ERRED with
 *    tg.DataLost ("the result was held only on worker W, which was lost,
 *    and its input 'k' was forgotten") and its dependents inherit it.
 *    The allowed_failures-th loss of one result (at most 255) fails it
 *    with tg.KilledWorker ("the result of 'k' was lost N times");
 *  - nested work: a task that waits on tasks it submitted secedes
 *    (tgs_core_task_seceded): it stays PROCESSING on its worker but no
 *    longer counts against the worker's threads, so the core may assign
 *    one more task (and its prefetch) there for each seceded task; nested
 *    work at any depth can never stall a full cluster. A rejoined task
 *    counts again at once, even when that puts its worker over its
 *    threads: the core then assigns that worker no new task until it is
 *    below its threads plus prefetch again. Workers run a rejoining task
 *    before their queued ones, once a running task finishes or secedes,
 *    and never run more non-seceded tasks than their threads; so the
 *    over-count lasts at most until the tasks started meanwhile finish,
 *    and nothing new piles on meanwhile. Tasks submitted from inside a
 *    task name it as their parent (tgs_task_spec.parent): cancelling a
 *    task cancels its unfinished children, recursively. A task's nesting
 *    depth is its number of ancestors (0 without a parent; a parent not
 *    known before the batch counts as depth 0); a new task deeper than
 *    max_nesting_depth is ERRED at once with tg.NestingTooDeep, naming
 *    its key, its depth, its parent and the limit (a runaway recursion
 *    fails fast instead of filling the cluster), and its dependents
 *    inherit the error.
 *
 * Ownership: the core copies everything it is given (keys, inputs, result
 * bytes). Pointers it hands out (tgs_task *, strings from accessors) are
 * borrowed and stay valid until the next call of an event function
 * (tgs_core_submit, _worker_*, _task_finished, _cancel, _release, _tick,
 * _watch, _set_*, _scale, _adapt): tasks are freed lazily, at the start of the
 * next event. (The core frees them only once the action queue has been emptied,
 * so a caller that pops every action after each event can never see a freed
 * task.)
 */
#ifndef TGS_CORE_H
#define TGS_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

/* Status codes of the core: the tg_status values it returns, under the
 * daemon's prefix. Defined from tg_status, so they cannot drift, and a
 * core status can be handed to a client as is. */
enum {
    TGS_OK = TG_OK,
    TGS_EINVAL = TG_EINVAL,
    TGS_ENOMEM = TG_ENOMEM,
    TGS_ENOTFOUND = TG_ENOTFOUND,
    TGS_EEXIST = TG_EEXIST,
    TGS_ESTATE = TG_ESTATE,
};

/* Task states; the numbers equal taskgrid.v1.TaskState. */
typedef enum tgs_state {
    TGS_WAITING = 1,
    TGS_READY = 2,
    TGS_PROCESSING = 3,
    TGS_MEMORY = 4,
    TGS_ERRED = 5,
    TGS_CANCELLED = 6,
    TGS_RELEASED = 7,
} tgs_state;

#define TGS_NSTATES 8

/* A borrowed, not NUL-terminated string. */
typedef struct tgs_str {
    const char *ptr;
    size_t len;
} tgs_str;

typedef struct tgs_resource {
    tgs_str name;
    double amount;
} tgs_resource;

/* One submitted task (all borrowed for the duration of the call). */
typedef struct tgs_task_spec {
    tgs_str key;
    tgs_str func;
    tgs_str codec;
    const uint8_t *input;
    size_t input_len;
    const tgs_str *deps;
    size_t ndeps;
    int32_t priority;
    /* Amounts held while the task runs. Names non-empty; amounts finite
     * and >= 0 (else TGS_EINVAL). A name given twice: the last one wins;
     * an amount of 0 asks for nothing. */
    const tgs_resource *resources;
    size_t nresources;
    uint32_t retries; /* reruns after an error (see tgs_core_task_finished) */
    /* If any: the task runs only on a worker with one of these names
     * (empty names are ignored). */
    const tgs_str *workers;
    size_t nworkers;
    /* Nested work: the key of the task that submitted this one (empty:
     * none; at most 1,024 bytes, else TGS_EINVAL). Recorded only for a
     * task new to the core, and linked (for cancel and Status) only to a
     * task known before this batch; another key is kept as text. */
    tgs_str parent;
} tgs_task_spec;

/* A worker joining (all borrowed for the duration of the call). */
typedef struct tgs_worker_spec {
    tgs_str name;
    uint32_t nthreads;
    const tgs_str *funcs;
    size_t nfuncs;
    /* Capacities (e.g. GPU=1, process=1). A task asking for a resource the
     * worker does not declare does not fit there. Amounts finite and >= 0
     * (else TGS_EINVAL); a name given twice: the last one wins. */
    const tgs_resource *resources;
    size_t nresources;
    /* It has a data service (taskgrid.v1 Register.data_address): it may
     * report results held in its store, and it can fetch inputs held on
     * other workers, so tasks with held dependencies may run there. */
    bool can_fetch;
} tgs_worker_spec;

/* Outcome of one run, reported by a worker (borrowed for the call). */
typedef struct tgs_outcome {
    bool ok;
    const uint8_t *data; /* ok: result bytes; !ok: the serialized error */
    size_t data_len;
    tgs_str codec;
    tgs_str err_type; /* !ok: error */
    tgs_str err_message;
    tgs_str err_traceback;
    /* ok: the result's bytes stay in the worker's store (data_len 0), and
     * `size` is their length. From a worker that cannot fetch, or with
     * bytes inline too, the task fails with tg.ProtocolError (no retry). */
    bool held;
    uint64_t size;
    /* How long the function ran, in microseconds, as the worker measured
     * it (0: unknown). */
    uint64_t run_us;
} tgs_outcome;

typedef struct tgs_core_opts {
    /* Fail READY tasks no connected worker can run (no worker provides the
     * function, none is named in the restrictions, or none could ever fit
     * the resources) after this long, with error type "tg.NoWorker" (0:
     * wait forever; tgs_core_why explains why they wait). */
    int64_t no_worker_timeout_ms;
    /* A task that was running on this many workers in a row that were
     * lost fails with tg.KilledWorker "killed N workers" (0: default 3). */
    uint32_t allowed_failures;
    /* Upper bound of tasks queued on one worker beyond its threads; the
     * actual depth adapts to the measured task duration (0: default 1024).
     * Tasks with resources are never queued beyond the resources. A
     * higher-priority task taking the place of a lower one exceeds it by
     * one until the lower one is handed back. */
    uint32_t max_prefetch;
    /* Delay before a retry after an error: retry_backoff_ms *
     * 2^(attempt-1), at most retry_backoff_max_ms (0: defaults 100 ms and
     * 5000 ms; retry_backoff_ms < 0: retry at once). */
    int64_t retry_backoff_ms;
    int64_t retry_backoff_max_ms;
    /* Bytes per second assumed for moving a held result between workers,
     * which weighs fetching a task's inputs against waiting for a busy
     * worker that holds them (placement and stealing of tasks with held
     * inputs; 0 or not finite and positive: default 100 MB/s). */
    double transfer_bandwidth;
    /* Deepest nesting accepted: a new task with more ancestors (parent,
     * its parent, ...) than this is ERRED at once with tg.NestingTooDeep
     * (0: no limit). */
    uint32_t max_nesting_depth;
} tgs_core_opts;

typedef struct tgs_core tgs_core;
typedef struct tgs_task tgs_task;

typedef enum tgs_action_kind {
    /* Send `task` to `worker`. */
    TGS_ACT_ASSIGN = 1,
    /* Tell `worker` to cancel `task` (running or queued there). */
    TGS_ACT_CANCEL = 2,
    /* `task` reached a final state (memory, erred, cancelled); tell
     * `watcher`. */
    TGS_ACT_NOTIFY = 3,
    /* `worker` finished draining: tell it to stop. */
    TGS_ACT_CLOSE_WORKER = 4,
    /* Ask `worker` to hand `task` back if it has not started it (another
     * worker is idle, or a READY task of higher priority took its place
     * there). The task stays PROCESSING there until the worker
     * answers with tgs_core_task_returned (not started) or
     * tgs_core_task_finished (it had started); either answer is fine. */
    TGS_ACT_STEAL = 5,
    /* Keep `target` workers started (see tgs_core_scale, tgs_core_adapt):
     * start more while fewer are running or starting. Surplus connected
     * workers come as TGS_ACT_RETIRE; started processes that never
     * connected are the caller's to stop. Queued when the target is set
     * and whenever the adaptive policy moves it. */
    TGS_ACT_SCALE = 6,
    /* `worker` (a managed one, see tgs_core_worker_managed) is retired to
     * meet the target: the core has already stopped assigning to it (as
     * tgs_core_worker_drain does), and TGS_ACT_CLOSE_WORKER follows once
     * nothing runs there and it holds no result. Its process no longer
     * counts toward the target. */
    TGS_ACT_RETIRE = 7,
    /* `task`'s result, held on `worker`, is no longer needed (the task was
     * forgotten): tell the worker to drop it. Only its key is meaningful:
     * the task is no longer in the core. */
    TGS_ACT_FREE = 8,
    /* Ask `worker` to copy `task`'s held result from one of its holders
     * into its own store (see tgs_core_replicate); it answers with
     * tgs_core_copy_done. */
    TGS_ACT_COPY = 9,
} tgs_action_kind;

typedef struct tgs_action {
    tgs_action_kind kind;
    uint64_t worker;
    uint64_t watcher;
    const tgs_task *task;
    uint32_t target; /* TGS_ACT_SCALE: workers to keep */
} tgs_action;

/* Adaptive scaling (tgs_core_adapt). */
typedef struct tgs_adapt_opts {
    uint32_t minimum;
    uint32_t maximum; /* > 0 and >= minimum */
    /* Threads of each worker the launcher starts: the demand is the
     * runnable tasks divided by this, rounded up (0: 1). */
    uint32_t nthreads;
    /* Scale down only once the demand has stayed below the target this
     * long, so a gap between two waves of work does not stop and restart
     * workers (0: 2000 ms; < 0: TGS_EINVAL). */
    int64_t hold_ms;
} tgs_adapt_opts;

/* Per-submit answer. */
typedef struct tgs_submit_result {
    uint32_t accepted; /* new tasks */
    uint32_t existing; /* keys already known (not run again) */
} tgs_submit_result;

/* Worker summary for Status. */
typedef struct tgs_worker_info {
    uint64_t id;
    tgs_str name;
    uint32_t nthreads;
    uint32_t processing;
    uint32_t seceded; /* of `processing`, seceded (tgs_core_task_seceded) */
    bool draining;
    size_t nfuncs;
} tgs_worker_info;

/* ---- life cycle ---- */

/** New core; `opts` may be NULL for defaults. Free with tgs_core_free. */
int tgs_core_new(tgs_core **out, const tgs_core_opts *opts);
/**
 * Set the process's secret hash key (16 bytes, copied) for the core's
 * tables. Task keys are chosen by clients; with a known hash they could
 * make every key collide (the tables use keyed SipHash-1-3). The default
 * is a fixed key, so the core is deterministic in tests; taskgrid-scheduler
 * sets a random one at start. Call it before any core exists.
 */
void tgs_core_set_hash_key(const uint8_t key[16]);

/** Free the core and every task; NULL is a no-op. */
void tgs_core_free(tgs_core *c);

/* ---- events ---- */

/**
 * Submit a batch (a graph). Validated as a whole before anything changes:
 * empty key or function, a dependency on a key neither in the batch nor
 * known, or a cycle → TGS_EINVAL with a message naming the key in `err`
 * (`errlen` bytes, may be NULL). A key already known (or repeated in the
 * batch) is the same task: not added twice, counted in `existing`.
 * Each submitted key gains one client hold (see tgs_core_release).
 */
int tgs_core_submit(tgs_core *c, const tgs_task_spec *specs, size_t n,
                    int64_t now_ms, tgs_submit_result *res, char *err,
                    size_t errlen);

/** A worker joined with id `wid` (chosen by the caller, unique). */
int tgs_core_worker_add(tgs_core *c, uint64_t wid, const tgs_worker_spec *w,
                        int64_t now_ms);

/**
 * Worker `wid` is gone. Tasks processing there go back to READY at once;
 * results inline are held by the scheduler, so none is lost or
 * recomputed. Those
 * it had most likely started (the `nthreads` it received first and the
 * `nthreads` it would run first) count an attempt and a lost worker; the
 * others (queued behind them) go back as if handed back. A task that was
 * running on `allowed_failures` lost workers in a row fails with
 * tg.KilledWorker (its dependents with it); other tasks go on. Worker loss
 * does not use the task's `retries`. Each result held only on it and
 * still needed is computed again, and every task needing it waits for it
 * again (a processing one gets TGS_ACT_CANCEL); when it cannot be (an
 * input forgotten, erred or cancelled, or lost too often) it becomes
 * ERRED with tg.DataLost ("the result was held only on worker NAME, which
 * was lost, and ...") or tg.KilledWorker, and every task still needing it
 * inherits the error (see "lineage" above).
 */
int tgs_core_worker_remove(tgs_core *c, uint64_t wid, int64_t now_ms);

/**
 * Stop assigning to `wid`; once nothing is processing there, emit
 * TGS_ACT_CLOSE_WORKER (possibly at once).
 */
int tgs_core_worker_drain(tgs_core *c, uint64_t wid, int64_t now_ms);

/**
 * Pause or resume assigning to `wid` (its memory is over its pause
 * fraction): while paused it gets no new task, takes part in no stealing
 * as a thief, and still counts as providing its functions (it will
 * resume). Tasks already processing there stay. TGS_OK, TGS_EINVAL or
 * TGS_ENOTFOUND.
 */
int tgs_core_worker_pause(tgs_core *c, uint64_t wid, bool paused,
                          int64_t now_ms);

/**
 * Worker `wid` finished `key` with outcome `o`. Copies the result (or,
 * held, records `wid` as its holder and its size; its waiting dependents
 * then run only on workers that can fetch). A report
 * for a task not processing on that worker (stale after a cancel or a
 * reschedule) is ignored and returns TGS_ESTATE.
 * An error with retries left uses one, and the task goes back to READY
 * after a backoff (see tgs_core_opts.retry_backoff_ms; meanwhile it is
 * WAITING and tgs_core_why says when it retries); otherwise the task and,
 * transitively, its dependents become ERRED (dependents carry the same
 * error with origin_key set). Either outcome ends the run of lost workers
 * counted for tg.KilledWorker.
 */
int tgs_core_task_finished(tgs_core *c, uint64_t wid, tgs_str key,
                           const tgs_outcome *o, int64_t now_ms);

/**
 * Task `key`, running on worker `wid`, seceded (waits on nested work;
 * `rejoined` false) or rejoined (`rejoined` true); see "nested work"
 * above. Idempotent: a second secession, or a rejoin of a task that did
 * not secede, changes nothing (TGS_OK). A task not PROCESSING on `wid`
 * (finished, cancelled, handed back, moved; a stale message) is ignored:
 * TGS_ESTATE; an unknown key or worker: TGS_ENOTFOUND. A seceded task
 * counts again once it leaves the worker (result, hand-back, cancel,
 * lost worker).
 */
int tgs_core_task_seceded(tgs_core *c, uint64_t wid, tgs_str key, bool rejoined,
                          int64_t now_ms);

/**
 * Worker `wid` handed `key` back unstarted (it is draining, or answers a
 * TGS_ACT_STEAL): it goes back to READY without counting an attempt.
 */
int tgs_core_task_returned(tgs_core *c, uint64_t wid, tgs_str key,
                           int64_t now_ms);

/**
 * Worker `wid` says it does not hold `key`'s result (taskgrid.v1
 * WorkerMessage.missing): it is no longer counted as a holder. If it was
 * the only one, the result is lost as in tgs_core_worker_remove
 * (recomputed, or an error "... which no longer has it"). TGS_ENOTFOUND
 * if `key` is not a held result of `wid`.
 */
int tgs_core_result_missing(tgs_core *c, uint64_t wid, tgs_str key,
                            int64_t now_ms);

/**
 * Ask to be told (TGS_ACT_NOTIFY with `watcher`) when `key` reaches a final
 * state. If it is final already, nothing is queued and *task is set so the
 * caller answers at once. Unknown key → TGS_ENOTFOUND. `task` may be NULL.
 */
int tgs_core_watch(tgs_core *c, tgs_str key, uint64_t watcher,
                   const tgs_task **task);

/**
 * Cancel `keys` and every task depending on them, transitively, and the
 * unfinished children (tasks submitted with it as their parent) of each
 * named key, whatever its state, and of each child, recursively, with
 * their dependents. Tasks already in memory or erred are not changed.
 * Processing ones get a TGS_ACT_CANCEL for their worker (whose later result is
 * ignored) and their resources are free at once; tasks waiting for a retry
 * leave the timer heap. *count (may be NULL) = tasks cancelled. Unknown keys
 * are skipped.
 */
int tgs_core_cancel(tgs_core *c, const tgs_str *keys, size_t n, int64_t now_ms,
                    uint32_t *count);

/**
 * Drop one client hold of each key. A task with no holds whose result no
 * pending dependent needs is forgotten (its memory returned; a result
 * held on workers gets a TGS_ACT_FREE per holder); *count (may be NULL) =
 * tasks forgotten.
 */
int tgs_core_release(tgs_core *c, const tgs_str *keys, size_t n,
                     uint32_t *count);

/**
 * Add one client hold to each known key, as submitting it again would,
 * without submitting anything (a result kept for a client that did not
 * submit it, e.g. one stored in a coordination primitive); give it back
 * with tgs_core_release. Unknown keys are skipped; *count (may be NULL)
 * = keys held. TGS_EINVAL for a NULL core, or keys NULL with n > 0.
 */
int tgs_core_hold(tgs_core *c, const tgs_str *keys, size_t n, uint32_t *count);

/**
 * As tgs_core_release, but a key not final yet keeps the hold until it
 * is (MEMORY, ERRED or CANCELLED), then drops it and is forgotten if
 * nothing else needs it: the task runs to its end whatever happens to
 * the caller (fire-and-forget). A final key is released at once. Keys
 * unknown, or with no hold left that is not deferred already, are
 * skipped. *count (may be NULL) = tasks forgotten by this call.
 */
int tgs_core_release_when_done(tgs_core *c, const tgs_str *keys, size_t n,
                               uint32_t *count);

/**
 * Retire worker `wid` (Retire): it is drained (no new work; what runs
 * there finishes). With `keep_results`, each result it alone holds is
 * copied to another worker that can fetch (not draining, not paused;
 * TGS_ACT_COPY, as tgs_core_replicate), the worker lets go of every
 * result held elsewhere too (TGS_ACT_FREE to it), and TGS_ACT_CLOSE_WORKER
 * follows once it holds nothing: nothing is lost. A result no other
 * worker can take keeps it open until one joins or the result is
 * released. Without `keep_results` (restart), it closes as soon as
 * nothing runs there, and the results only it held are lost as when a
 * worker is lost (recomputed if needed). Unknown `wid`: TGS_ENOTFOUND.
 * Unlike TGS_ACT_RETIRE, the caller's launcher is not told: the caller
 * decides whether the process still counts toward the target.
 */
int tgs_core_worker_retire(tgs_core *c, uint64_t wid, bool keep_results,
                           int64_t now_ms);

/**
 * Change priority of tasks not yet processing (WAITING or READY; READY
 * ones move in their queue) (Annotate); *count = tasks changed.
 */
int tgs_core_set_priority(tgs_core *c, const tgs_str *keys, size_t n,
                          int32_t priority, uint32_t *count);

/**
 * Replace the resources of tasks not yet processing (WAITING or READY)
 * (Annotate): `res` (`nres` entries, borrowed; nres == 0 clears them),
 * validated as in tgs_task_spec before anything changes (TGS_EINVAL).
 * READY tasks move to the queue of their new placement class, and may be
 * assigned (or become unplaceable) at once. *count = tasks changed.
 * TGS_ENOMEM leaves the remaining keys unchanged.
 */
int tgs_core_set_resources(tgs_core *c, const tgs_str *keys, size_t n,
                           const tgs_resource *res, size_t nres,
                           uint32_t *count);

/** Change retries of tasks not yet finished; *count changed. */
int tgs_core_set_retries(tgs_core *c, const tgs_str *keys, size_t n,
                         uint32_t retries, uint32_t *count);

/**
 * Time passes: READY tasks whose retry delay is over, then the no-worker
 * timeout, then the scaling policy (see tgs_core_adapt; surplus workers
 * are retired here). (Every event taking `now_ms` also releases due
 * retries.)
 */
void tgs_core_tick(tgs_core *c, int64_t now_ms);

/* ---- replication (more holders of held results) ---- */

/**
 * Worker `wid`'s memory as it last reported it (taskgrid.v1
 * MemoryReport): bytes of held results in memory and its limit (0: none
 * or unknown). Only the choice of replication targets reads it.
 * TGS_OK or TGS_ENOTFOUND.
 */
int tgs_core_worker_memory(tgs_core *c, uint64_t wid, uint64_t memory,
                           uint64_t limit);

/**
 * Replicate: give `key`'s held result at least `n` holders (0: every
 * eligible worker), counting the copies already under way. A target is
 * eligible when it can fetch (a data service), is neither draining nor
 * paused, does not hold the result, is not copying it already, and, if
 * `names` (`nnames` worker names) is not empty, is named there. Targets
 * are taken by the most free memory first: its limit less its reported
 * held bytes less the bytes of copies under way to it (a worker without
 * a limit counts as having the most), then by join order. Each gets a
 * TGS_ACT_COPY; its id goes into `wids` (room for `cap`, at least the
 * number of connected workers, or the choice stops there), their number
 * into *started. Fewer eligible workers than needed is no error.
 * TGS_ENOTFOUND: unknown key; TGS_ESTATE: not a result held on workers
 * (inline, not finished, erred); TGS_ENOMEM: nothing started for the
 * targets that found no room (the others stand).
 */
int tgs_core_replicate(tgs_core *c, tgs_str key, uint32_t n,
                       const tgs_str *names, size_t nnames, uint64_t *wids,
                       size_t cap, uint32_t *started);

/**
 * Worker `wid` finished copying `key` (TGS_ACT_COPY): `ok` makes it one
 * more holder (it then counts in tgs_task_nholders, and is freed with
 * the result); !ok only ends the copy. TGS_ENOTFOUND when no such copy
 * is under way (the key was forgotten or lost meanwhile, or the copy was
 * never asked): a worker that copied it should drop its bytes.
 * TGS_ENOMEM: the copy ended without a new holder.
 */
int tgs_core_copy_done(tgs_core *c, uint64_t wid, tgs_str key, bool ok,
                       int64_t now_ms);

/* ---- scaling ---- */

/**
 * Scale(n): keep `n` workers. Queues TGS_ACT_SCALE with target `n` at
 * once and ends adaptive scaling; from the next tgs_core_tick on, managed
 * workers beyond `n` are retired (TGS_ACT_RETIRE), least loaded first.
 */
int tgs_core_scale(tgs_core *c, uint32_t n, int64_t now_ms);

/**
 * Scale(minimum, maximum): at every tgs_core_tick the wanted number of
 * workers is ceil(runnable / o->nthreads), where runnable = READY +
 * PROCESSING tasks minus those no connected worker can run (counted only
 * while some worker is connected: with none, nothing tells them apart),
 * clamped to [minimum, maximum]. The target rises to it at once and
 * falls to it only after it has stayed lower for o->hold_ms (a tick
 * where it is not lower starts the wait again). Starts from the current
 * target clamped to the bounds (minimum when there is none), queued as
 * TGS_ACT_SCALE at once. `o` is copied. minimum > maximum, maximum == 0
 * or hold_ms < 0 → TGS_EINVAL.
 */
int tgs_core_adapt(tgs_core *c, const tgs_adapt_opts *o, int64_t now_ms);

/**
 * Worker `wid` was started by the caller's launcher: scaling counts it
 * toward the target and may retire it. Workers are not managed when they
 * join (started by hand, they are neither counted nor retired).
 * Idempotent; unknown `wid` → TGS_ENOTFOUND.
 */
int tgs_core_worker_managed(tgs_core *c, uint64_t wid);

/**
 * Workers come `step` at a time (a batch job running several): every
 * target, of Scale(n) and of adaptive scaling alike, is rounded up to a
 * multiple of it, so no job is started to be drained at once. Default 1;
 * 0 → TGS_EINVAL.
 */
int tgs_core_set_scale_step(tgs_core *c, uint32_t step);

/**
 * The current scaling target in *target (may be NULL); false (and 0) if
 * neither tgs_core_scale nor tgs_core_adapt was called.
 */
bool tgs_core_scale_target(const tgs_core *c, uint32_t *target);

/* ---- actions ---- */

/** Pop the next action; false when none is queued. */
bool tgs_core_next_action(tgs_core *c, tgs_action *out);

/* ---- queries (no state change) ---- */

/** The task with `key`, or NULL. */
const tgs_task *tgs_core_find(const tgs_core *c, tgs_str key);

/**
 * Number of tasks in each state (indexed by tgs_state), kept up to date
 * incrementally. counts[TGS_RELEASED] is the number of tasks forgotten so
 * far (see tgs_core_release).
 */
void tgs_core_counts(const tgs_core *c, uint64_t counts[TGS_NSTATES]);

/**
 * READY tasks that no connected worker can run: no worker provides the
 * function, none is named in the restrictions, or none could fit the
 * resources even when idle.
 */
uint64_t tgs_core_unplaceable(const tgs_core *c);

/** Number of connected workers. */
size_t tgs_core_nworkers(const tgs_core *c);

/** Info about the i-th worker (0 <= i < nworkers); false if out of range. */
bool tgs_core_worker_at(const tgs_core *c, size_t i, tgs_worker_info *out);

/**
 * The name of the worker whose run made `t` MEMORY or ERRED, and in
 * `*run_us` (may be NULL) how long that run took as the worker measured
 * it. Empty (and 0) when `t` is not final or its outcome came from no run
 * of its own: cancelled, a failed dependency.
 */
tgs_str tgs_task_ran(const tgs_task *t, uint64_t *run_us);

/** The key of the task that submitted `t`, as submitted (empty: none). */
tgs_str tgs_core_task_parent(const tgs_core *c, const tgs_task *t);
/**
 * `t`'s children still known (tasks submitted with it as their parent,
 * while it was known), in no particular order: tgs_core_task_child gives
 * the i-th (NULL when out of range).
 */
size_t tgs_core_task_nchildren(const tgs_core *c, const tgs_task *t);
const tgs_task *tgs_core_task_child(const tgs_core *c, const tgs_task *t,
                                    size_t i);

/**
 * Why `t` is not running, in `buf`; empty if running or final. READY and
 * unplaceable: "no worker provides function 'x.y'", "no worker named 'a'",
 * "no worker has resources GPU=1 (largest: GPU=0)"; READY and placeable:
 * "waiting for a free worker slot" or "waiting for free resources GPU=1";
 * WAITING: "waiting for 3 dependencies" or "retrying in 200 ms (attempt
 * 2)".
 */
void tgs_core_why(const tgs_core *c, const tgs_task *t, char *buf, size_t len);

/* ---- observation (for watchers, dashboards and debug logs) ---- */

/* One change of a task's state. `from` is 0 for a new task; `to` is
 * TGS_RELEASED when the task is forgotten. */
typedef struct tgs_transition {
    const tgs_task *task;
    tgs_state from;
    tgs_state to;
} tgs_transition;

/**
 * Record every change of a task's state (on), or stop (off, the default:
 * then the only cost is one test per change). While on, each event's
 * changes are kept, in order, until the start of the next event, so the
 * caller reads them (tgs_core_transitions) after each event, as it pops
 * the actions. A task that changes twice in one event appears twice; its
 * accessors give its state after the event.
 */
void tgs_core_observe(tgs_core *c, bool on);

/**
 * The changes of the last event (see tgs_core_observe): `*n` of them,
 * borrowed until the next event. `*dropped` (may be NULL) counts, since
 * the core was made, changes not recorded for want of memory.
 */
const tgs_transition *tgs_core_transitions(const tgs_core *c, size_t *n,
                                           uint64_t *dropped);

/**
 * Forget the last event's changes once read (tgs_core_transitions then
 * gives none until the next event records more), so that a caller that
 * reads after every event, and again after a batch of them, sees each
 * change once.
 */
void tgs_core_transitions_clear(tgs_core *c);

/**
 * The core's keyed 64-bit hash of `len` bytes (SipHash under the key of
 * tgs_core_set_hash_key), for the daemon's own tables of client-chosen
 * keys, which must resist hash flooding as the core's do.
 */
uint64_t tgs_core_hash(const void *data, size_t len);

/**
 * Walk the functions the core has seen (interned for the core's life):
 * from `*pos` = 0, each call gives the next one's name and its tasks in
 * each state (indexed by tgs_state; counts[TGS_RELEASED]: forgotten so
 * far) and advances `*pos`; false after the last. Kept up to date
 * incrementally, like tgs_core_counts; a walk costs one step per function
 * (and per empty slot of its table), never per task.
 */
bool tgs_core_func_next(const tgs_core *c, size_t *pos, tgs_str *name,
                        uint64_t counts[TGS_NSTATES]);

/* ---- task accessors (borrowed results) ---- */

tgs_str tgs_task_key(const tgs_task *t);
tgs_str tgs_task_func(const tgs_task *t);
tgs_str tgs_task_codec(const tgs_task *t);
const uint8_t *tgs_task_input(const tgs_task *t, size_t *len);
tgs_state tgs_task_state(const tgs_task *t);
int32_t tgs_task_priority(const tgs_task *t);
/* 1 for the first run; counts retries after errors, reruns after a
 * worker running it was lost, and recomputations of a lost result. */
uint32_t tgs_task_attempt(const tgs_task *t);
/* Retries left. */
uint32_t tgs_task_retries(const tgs_task *t);
/* PROCESSING: true and *wid = the worker running it; else false. */
bool tgs_task_worker(const tgs_task *t, uint64_t *wid);
size_t tgs_task_ndeps(const tgs_task *t);
/* The i-th dependency, in submission order, while the task is not final
 * (what an assignment needs). Once the task is final it lets go of its
 * dependencies, which may then be forgotten, and this returns NULL. */
const tgs_task *tgs_task_dep(const tgs_task *t, size_t i);
/* MEMORY: the result bytes and codec. A result held on workers has no
 * bytes here (NULL and 0): see tgs_task_held. */
const uint8_t *tgs_task_result(const tgs_task *t, size_t *len);
tgs_str tgs_task_result_codec(const tgs_task *t);
/* MEMORY: the result's size in bytes, inline or held; else 0. */
uint64_t tgs_task_result_size(const tgs_task *t);
/* MEMORY with its bytes held on workers (not in the core). */
bool tgs_task_held(const tgs_task *t);
/* The workers holding a held result (none for any other task), in no
 * particular order: tgs_task_holder gives the i-th one's id in *wid
 * (false when out of range). */
size_t tgs_task_nholders(const tgs_task *t);
/* Copies of a held result under way to more workers (replicate). */
size_t tgs_task_ncopies(const tgs_task *t);
bool tgs_task_holder(const tgs_task *t, size_t i, uint64_t *wid);
/* ERRED/CANCELLED: the error (empty strings when none). origin is the key
 * of the task that failed first when inherited from a dependency. */
tgs_str tgs_task_err_type(const tgs_task *t);
tgs_str tgs_task_err_message(const tgs_task *t);
tgs_str tgs_task_err_traceback(const tgs_task *t);
tgs_str tgs_task_err_origin(const tgs_task *t);
/* ERRED: the error as the worker serialized it (tgs_outcome.data and
 * codec of the failed run, e.g. a pickled exception), shared by the
 * dependents that inherit it; NULL and 0 when none. */
const uint8_t *tgs_task_err_data(const tgs_task *t, size_t *len);
tgs_str tgs_task_err_codec(const tgs_task *t);
/* PROCESSING and seceded (see tgs_core_task_seceded). */
bool tgs_task_seceded(const tgs_task *t);
/* Resources the task holds while it runs, sorted by name (zero amounts and
 * repeated names dropped). Out of range: an empty name and 0. */
size_t tgs_task_nresources(const tgs_task *t);
tgs_resource tgs_task_resource(const tgs_task *t, size_t i);
/* Worker names the task is restricted to, sorted, each once. */
size_t tgs_task_nrestrictions(const tgs_task *t);
tgs_str tgs_task_restriction(const tgs_task *t, size_t i);

#endif
