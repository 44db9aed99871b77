/* SPDX-License-Identifier: Apache-2.0
 *
 * executor.h: the worker's thread pool. It runs tasks on `nslots` slots,
 * highest Assignment.priority first and FIFO among equals, and lets a
 * running task give its slot back while it waits on nested work
 * (tg__exec_secede) and take one again after (tg__exec_rejoin), so nested
 * work cannot deadlock a full pool. Depends on pthreads, task.h and the
 * SDK's log and error helpers; it knows nothing of the network.
 *
 * Prefix: tg__exec_ (library-internal), not the worker's tgw_, because the
 * SDK's worker-side client (tg_task_client) is meant to call secede and
 * rejoin from inside a task.
 *
 * Threads: a slot is a right to run, not a thread. The pool starts one
 * thread per slot; a seceded task keeps its thread (it is blocked in user
 * code), so the pool starts another to use the freed slot; once tasks
 * rejoin or finish, surplus threads exit the next time they find no work.
 */
#ifndef TGW_EXECUTOR_H
#define TGW_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task.h"

typedef struct tg__exec tg__exec;

/*
 * Called on the executor thread when a task finished and was not
 * cancelled; takes ownership of `t` (free it with tgw_task_free). It runs
 * with the executor's lock held, which is what makes "cancelled means no
 * result" exact (see tg__exec_cancel_all): it must be quick and must not
 * call tg__exec_* functions.
 */
typedef void (*tg__exec_done_fn)(void *ud, tg_task_ctx *t);

/*
 * Called on the executor thread, without the executor's lock, just
 * before a task's function would run; it may block (fetching the task's
 * inputs from peers) and holds the task's slot meanwhile. Return true to
 * run the function, false when it set the task's outcome itself (an
 * error: then the function does not run). Only called for tasks with
 * held inputs (tg_task_ctx.nheld > 0), so other tasks pay nothing.
 */
typedef bool (*tg__exec_prepare_fn)(void *ud, tg_task_ctx *t);

/*
 * Called on the task's thread, with the executor's lock held (it must be
 * quick and must not call tg__exec_* functions), when task `key` seceded
 * (`rejoined` false: tg__exec_secede gave its slot back) and when it asks
 * for a slot again (`rejoined` true: tg__exec_rejoin, before it waits),
 * so that the scheduler stops counting it against the slots meanwhile.
 */
typedef void (*tg__exec_secession_fn)(void *ud, const char *key, bool rejoined);

typedef struct tg__exec_opts {
    unsigned nslots;                 /* tasks running at once (>= 1) */
    tg__exec_done_fn done;           /* required */
    void *ud;                        /* passed to done and prepare */
    tg__exec_prepare_fn prepare;     /* optional (NULL: run every task as is) */
    tg__exec_secession_fn secession; /* optional */
    void *secession_ud;              /* passed to secession */
} tg__exec_opts;

/* A snapshot of the pool, for logs and tests. */
typedef struct tg__exec_stats {
    size_t queued;    /* waiting for a slot */
    size_t running;   /* started, not finished (seceded ones included) */
    size_t active;    /* running and holding a slot */
    size_t seceded;   /* running without a slot (incl. waiting to rejoin) */
    size_t rejoining; /* blocked in tg__exec_rejoin */
    size_t threads;   /* live pool threads */
} tg__exec_stats;

/** Start a pool; free with tg__exec_free. TG_OK, TG_EINVAL or TG_ENOMEM. */
int tg__exec_new(tg__exec **out, const tg__exec_opts *opts);

/**
 * Stop the pool: running tasks are flagged cancelled and waited for (their
 * outcomes discarded), queued tasks are freed, threads are joined. Call it
 * once tg__exec_wait_idle said the pool is idle, unless abandoning work.
 * NULL is a no-op.
 */
void tg__exec_free(tg__exec *e);

/** Queue `n` tasks (ownership moves to the pool). TG_OK or TG_ENOMEM (then
 * none was queued and the caller still owns them all). */
int tg__exec_submit(tg__exec *e, tg_task_ctx **tasks, size_t n);

/**
 * Cancel every task with key `key`: a queued one is dropped (freed, no
 * result); a running one gets its cancelled flag and its outcome is
 * discarded. Returns how many tasks were affected.
 */
size_t tg__exec_cancel(tg__exec *e, const char *key);

/**
 * Work stealing: drop the queued (unstarted) tasks with key `key` so the
 * scheduler can run them elsewhere; a running one is left alone and
 * reports its outcome as usual. Returns how many were dropped (the caller
 * hands their key back).
 */
size_t tg__exec_steal(tg__exec *e, const char *key);

/** Cancel everything: drop all queued tasks, flag all running ones. Once it
 * returns, the done callback is never called for any of them. */
void tg__exec_cancel_all(tg__exec *e);

/**
 * Remove every queued (unstarted) task and hand them to the caller in a
 * malloc'd array (*out, *n; free the tasks with tgw_task_free and the
 * array with free()). Running tasks go on. TG_OK or TG_ENOMEM.
 */
int tg__exec_take_queued(tg__exec *e, tg_task_ctx ***out, size_t *n);

/** Wait until nothing is queued or running, at most `timeout_ms` (< 0:
 * forever). True if idle. */
bool tg__exec_wait_idle(tg__exec *e, int64_t timeout_ms);

/** Current counters. */
void tg__exec_stats_get(tg__exec *e, tg__exec_stats *st);

/**
 * Give the slot of the calling task back while it waits on something
 * outside the pool (nested tasks). Another queued task may start at once.
 * Must be called from the task's own function.
 *
 * @param ctx the running task.
 * @return TG_OK; TG_ESTATE if `ctx` is not running in a pool or already
 *         seceded; TG_ENOMEM if no thread could be started for the slot
 *         (the task then keeps its slot).
 */
int tg__exec_secede(tg_task_ctx *ctx);

/**
 * Take a slot again after tg__exec_secede, blocking until one is free.
 * Rejoining tasks go before queued ones: they are further along.
 *
 * @param ctx the running, seceded task.
 * @return TG_OK, or TG_ESTATE if `ctx` had not seceded.
 */
int tg__exec_rejoin(tg_task_ctx *ctx);

#endif
