/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/nested.h: nested work from C. A task function running on
 * taskgrid-worker (a --preload plug-in) gets a client bound to the
 * worker's own scheduler with tg_task_client(), submits children with it
 * and waits on them like any client:
 *
 *     static int fan_out(tg_task_ctx *t, void *ud)
 *     {
 *         tg_client *c;
 *         tg_future *f[2];
 *         if (tg_task_client(t, &c) != TG_OK) {
 *             tg_task_set_error(t, "tg.NoClient", tg_error_last(), NULL);
 *             return 1;
 *         }
 *         tg_client_submit(c, defs, 2, f);     // children of this task
 *         tg_client_gather(c, f, 2, TG_WAIT_FOREVER);  // secedes meanwhile
 *         ... tg_future_result(f[i], ...); tg_future_free(f[i]) ...
 *         return 0;
 *     }
 *
 * What the client does differently from one of tg_client_connect():
 * - Every task it submits from the task's thread carries the running
 *   task's key as its parent (TaskSpec.parent), so cancelling the parent
 *   cancels its unfinished children, and Status shows the tree.
 * - A wait that may block (tg_client_gather(), tg_future_wait() with a
 *   timeout other than 0, on futures not all final yet) secedes the task
 *   first: the task gives its worker slot back, the worker tells the
 *   scheduler (WorkerMessage.secessions), and other tasks, its children
 *   among them, may run in the slot; after the wait the task rejoins
 *   (takes a slot again, before queued tasks). So nesting of any depth
 *   cannot deadlock a cluster of any size, even 1 worker x 1 thread.
 * - It connects with the worker's own address and credentials (with TLS,
 *   the worker's certificate, key and CA, which the scheduler admits for
 *   nested work).
 *
 * Ownership and sharing: the client is the worker's, one per worker
 * process, opened by the first call and shared by all its tasks (one
 * connection, no handshake per task); it lives until the worker stops.
 * Do not free it: tg_client_free() on it does nothing. Futures from it
 * are the caller's, as usual (free them with tg_future_free(); a task
 * should free its futures before it returns). Waits and submissions from
 * threads the task started itself are plain: no parent, no seceding.
 *
 * The functions are provided both by libtaskgrid and by taskgrid-worker
 * (which links the SDK and exports its tg_* API to plug-ins), so a
 * plug-in links against no library. Outside a task running on a worker,
 * tg_task_client() fails with TG_ESTATE.
 */
#ifndef TASKGRID_NESTED_H
#define TASKGRID_NESTED_H

#include "taskgrid/export.h"

#include "taskgrid/client.h"
#include "taskgrid/plugin.h"
#include "taskgrid/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The worker-side client of the running task `t`.
 *
 * @param t    the task, as passed to its function; call from the thread
 *             running that function, while it runs.
 * @param out  receives the worker's client (borrowed, see above); NULL
 *             on failure.
 * @return TG_OK; TG_ESTATE ("tg_task_client: not inside a task running
 *         on a worker") when `t` is NULL or not the task the calling
 *         thread runs on a worker; else the error of connecting to the
 *         scheduler (see tg_client_connect()), and the next call tries
 *         again.
 */
TG_EXPORT int tg_task_client(tg_task_ctx *t, tg_client **out);

#ifdef __cplusplus
}
#endif
#endif
