/* SPDX-License-Identifier: Apache-2.0
 *
 * nest.h: which task the calling thread runs, for the worker-side client
 * (tg_task_client, nested work). taskgrid-worker marks a task's thread
 * while its function runs (tg__nest_enter/leave) and passes the
 * executor's secede, rejoin and key operations with it; the SDK, which
 * cannot depend on the worker, reads them back (tg__nest_current) to
 * name the parent of nested submissions and to secede while it waits.
 * In a process that is not a worker nothing is ever marked, so the SDK
 * sees no task. Depends on libc only.
 */
#ifndef TG_UTIL_NEST_H
#define TG_UTIL_NEST_H

struct tg_task_ctx;

/* What the SDK may do with the running task (the worker's executor). */
typedef struct tg__nest_ops {
    /* Give the task's slot back / take one again: TG_OK or a tg_status. */
    int (*secede)(struct tg_task_ctx *t);
    int (*rejoin)(struct tg_task_ctx *t);
    /* The task's key (borrowed, valid while it runs). */
    const char *(*key)(struct tg_task_ctx *t);
} tg__nest_ops;

/* Mark the calling thread as running `t` (borrowed `ops`, static). */
void tg__nest_enter(struct tg_task_ctx *t, const tg__nest_ops *ops);

/* The calling thread's task function returned. */
void tg__nest_leave(void);

/* The task the calling thread runs, or NULL; its ops in *ops (may be
 * NULL). */
struct tg_task_ctx *tg__nest_current(const tg__nest_ops **ops);

/* Called once by tg__nest_exit (set by the SDK when it opens the
 * worker-wide client; NULL clears). */
void tg__nest_on_exit(void (*fn)(void));

/* The worker is stopping (every task finished): run the exit hook. */
void tg__nest_exit(void);

#endif
