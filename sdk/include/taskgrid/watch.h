/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/watch.h: following a cluster from C (Scheduler.Watch). A
 * tg_watch is one server stream of batched updates: counts of tasks per
 * state (cluster-wide, for the keys it follows, per function), the state
 * changes of the tasks it follows, and workers joining, leaving and
 * changing. tg_client_progress() builds a progress callback on it for a
 * set of keys. Depends on taskgrid/client.h.
 *
 * The scheduler sends at most one update per interval (and one at once,
 * with the current state), only when something changed, and keeps at
 * most max_events task events per update, counting the rest in
 * tg_watch_update_dropped(): a watcher that reads slowly misses events,
 * never counts, and never makes the scheduler hold unbounded memory.
 *
 * Threads: a tg_watch is read by one thread at a time; tg_watch_close()
 * may be called from any thread once no other thread reads it. Updates
 * are independent of their watch and of each other.
 */
#ifndef TASKGRID_WATCH_H
#define TASKGRID_WATCH_H

#include "taskgrid/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One Watch stream. Opaque; free with tg_watch_close(). */
typedef struct tg_watch tg_watch;

/** One update of a watch. Opaque; free with tg_watch_update_free(). */
typedef struct tg_watch_update tg_watch_update;

/** Counts indexed by tg_task_state (index 0, TG_TASK_PENDING, is 0). */
#define TG_WATCH_NSTATES 8

#define TG_WATCH_OPTS_VERSION 1

/**
 * What to follow (taskgrid.v1.WatchRequest). Initialise with
 * TG_WATCH_OPTS_INIT. Arrays and strings are borrowed for the call of
 * tg_client_watch() only.
 */
typedef struct tg_watch_opts {
    uint32_t version; /**< TG_WATCH_OPTS_VERSION */
    /** Follow exactly these keys (at most 65,535): every update counts
     *  them per state (tg_watch_update_key_count). A key the scheduler
     *  does not know counts as TG_TASK_RELEASED. */
    const char *const *keys;
    size_t nkeys;
    /** Follow every key starting with one of these (at most 64; "" is
     *  every key). On a TLS cluster only the admin role may. */
    const char *const *key_prefixes;
    size_t nprefixes;
    /** Send each state change of the followed tasks (task events). */
    bool task_events;
    /** Send tasks per function per state. */
    bool functions;
    /** Send worker events and the number of workers. */
    bool workers;
    /** Least time between updates in ms (0: 100; below 10: 10; at most
     *  3,600,000). */
    uint32_t interval_ms;
    /** Most task events per update (0: 10,000; at most 100,000). */
    uint32_t max_events;
} tg_watch_opts;

#define TG_WATCH_OPTS_INIT                                                 \
    {                                                                      \
        TG_WATCH_OPTS_VERSION, NULL, 0, NULL, 0, false, false, false, 0, 0 \
    }

/** One change of a followed task's state. Strings are borrowed from the
 *  update and valid until tg_watch_update_free(). */
typedef struct tg_watch_task_event {
    const char *key;
    /** The state it left (TG_TASK_PENDING: a new task) and entered
     *  (TG_TASK_RELEASED: forgotten). */
    tg_task_state previous;
    tg_task_state state;
    const char *function;
    /** PROCESSING: the worker assigned; MEMORY or ERRED from a run: the
     *  worker that ran it; "" otherwise. */
    const char *worker;
    uint32_t attempt;
    /** When the scheduler saw it, microseconds since the Unix epoch. */
    int64_t time_us;
    /** MEMORY or ERRED from a run: how long the function ran. */
    uint64_t run_us;
    /** MEMORY: the result's size in bytes. */
    uint64_t nbytes;
    /** ERRED: the error's type; "" otherwise. */
    const char *error_type;
} tg_watch_task_event;

typedef enum tg_worker_event_kind {
    TG_WORKER_JOINED = 1,
    TG_WORKER_LEFT = 2,
    TG_WORKER_UPDATED = 3,
} tg_worker_event_kind;

/** A worker joined, left or changed. Strings borrowed from the update. */
typedef struct tg_watch_worker_event {
    tg_worker_event_kind kind;
    const char *name;
    /** LEFT: "disconnected" or "retired". */
    const char *reason;
    uint32_t nthreads;
    uint32_t processing;
    /** Bytes of held results in its memory, and spilled to its disk. */
    uint64_t memory;
    uint64_t spilled;
    bool paused;
    int64_t time_us;
} tg_watch_worker_event;

/**
 * Open a Watch stream on the scheduler of `c`. The first update (the
 * current state) is on its way when this returns.
 *
 * @param c     the client (must outlive the watch).
 * @param opts  what to follow; NULL: only cluster-wide counts.
 * @param out   the new watch; free with tg_watch_close().
 * @return TG_OK, TG_EINVAL for bad options (named), or a failure to
 *         reach the scheduler. A refusal by the scheduler (too many keys,
 *         prefixes without the admin role) comes from tg_watch_next().
 */
TG_EXPORT int tg_client_watch(tg_client *c, const tg_watch_opts *opts,
                              tg_watch **out);

/**
 * Wait at most `timeout_ms` (TG_WAIT_FOREVER: no limit) for the next
 * update.
 *
 * @param out  the update (free with tg_watch_update_free()); NULL unless
 *             TG_OK.
 * @return TG_OK; TG_ETIMEDOUT when none came in time (the watch goes
 *         on); TG_EUNAVAILABLE when the scheduler ended the stream (it
 *         stops) or went away; or the
 *         scheduler's refusal (TG_EINVAL, TG_EPERM, ... with its words in
 *         tg_error_last()). After any code but TG_OK and TG_ETIMEDOUT the
 *         stream is over.
 */
TG_EXPORT int tg_watch_next(tg_watch *w, int64_t timeout_ms,
                            tg_watch_update **out);

/** Cancel the stream and free the watch. NULL is a no-op. */
TG_EXPORT void tg_watch_close(tg_watch *w);

/** When the scheduler made the update, microseconds since the epoch. */
TG_EXPORT int64_t tg_watch_update_time_us(const tg_watch_update *u);
/** Tasks in `state` over the whole cluster (TG_TASK_RELEASED: forgotten
 *  since the scheduler started). */
TG_EXPORT uint64_t tg_watch_update_total(const tg_watch_update *u,
                                         tg_task_state state);
/** Of the followed keys (tg_watch_opts.keys, each counted once), those in
 *  `state` (TG_TASK_RELEASED: not known to the scheduler). */
TG_EXPORT uint64_t tg_watch_update_key_count(const tg_watch_update *u,
                                             tg_task_state state);
/** Task and worker events not sent since the previous update. */
TG_EXPORT uint64_t tg_watch_update_dropped(const tg_watch_update *u);
/** With tg_watch_opts.workers: workers connected, and the scaling target
 *  (0: none). */
TG_EXPORT uint32_t tg_watch_update_nworkers(const tg_watch_update *u);
TG_EXPORT uint32_t tg_watch_update_target_workers(const tg_watch_update *u);

/** Task events in the order they happened. */
TG_EXPORT size_t tg_watch_update_ntask_events(const tg_watch_update *u);
/** The i-th task event (borrowed); NULL when out of range. */
/* (TG_EXPORT and the name on one line: //tests:exports_test) */
/* clang-format off */
TG_EXPORT const tg_watch_task_event *tg_watch_update_task_event(
    const tg_watch_update *u, size_t i);
/* clang-format on */

/** Functions whose counts changed (all in the first update). */
TG_EXPORT size_t tg_watch_update_nfunctions(const tg_watch_update *u);
/** The i-th function's name (borrowed; NULL when out of range) and, in
 *  `counts` (may be NULL), its tasks per state, indexed by tg_task_state. */
/* (TG_EXPORT and the name on one line: //tests:exports_test) */
/* clang-format off */
TG_EXPORT const char *tg_watch_update_function(
    const tg_watch_update *u, size_t i, uint64_t counts[TG_WATCH_NSTATES]);
/* clang-format on */

TG_EXPORT size_t tg_watch_update_nworker_events(const tg_watch_update *u);
/** The i-th worker event (borrowed); NULL when out of range. */
/* (TG_EXPORT and the name on one line: //tests:exports_test) */
/* clang-format off */
TG_EXPORT const tg_watch_worker_event *tg_watch_update_worker_event(
    const tg_watch_update *u, size_t i);
/* clang-format on */

/** Free an update (what it lent goes with it). NULL is a no-op. */
TG_EXPORT void tg_watch_update_free(tg_watch_update *u);

/**
 * Progress of a set of keys: called with the keys' counts per state
 * (indexed by tg_task_state, summed over all keys) and their number
 * (each distinct key once), first at once, then each time they change.
 * Runs on the thread that called tg_client_progress().
 */
typedef void (*tg_progress_fn)(void *userdata,
                               const uint64_t counts[TG_WATCH_NSTATES],
                               uint64_t total);

/**
 * Follow `n` submitted keys until every one is final (memory, erred,
 * cancelled, or released: not known to the scheduler), calling `cb` as
 * their counts change; a progress bar for C. More than 65,535 keys are
 * split over several Watch streams. Call it after submitting: a key not
 * submitted yet counts as released, so as final.
 *
 * @param keys        borrowed for the call.
 * @param cb          may be NULL (then this only waits).
 * @param timeout_ms  TG_WAIT_FOREVER: no limit.
 * @return TG_OK once all are final; TG_ETIMEDOUT; TG_EINVAL for a NULL
 *         or too long key (named); or why a stream failed.
 */
TG_EXPORT int tg_client_progress(tg_client *c, const char *const *keys,
                                 size_t n, tg_progress_fn cb, void *userdata,
                                 int64_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
