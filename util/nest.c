/* SPDX-License-Identifier: Apache-2.0
 *
 * nest.c: the calling thread's running task for the worker-side client
 * (see nest.h): one thread-local pair, set by the worker around each
 * task function, and the exit hook of the worker-wide client.
 */
#include <stddef.h>

#include "nest.h"

static _Thread_local struct tg_task_ctx *current_task;
static _Thread_local const tg__nest_ops *current_ops;

/* Written by the one thread that opens the worker-wide client, under the
 * SDK's lock; read at exit, after every task finished. */
static void (*exit_hook)(void);

void tg__nest_enter(struct tg_task_ctx *t, const tg__nest_ops *ops)
{
    current_task = t;
    current_ops = ops;
}

void tg__nest_leave(void)
{
    current_task = NULL;
    current_ops = NULL;
}

struct tg_task_ctx *tg__nest_current(const tg__nest_ops **ops)
{
    if (ops != NULL)
        *ops = current_ops;
    return current_task;
}

void tg__nest_on_exit(void (*fn)(void))
{
    exit_hook = fn;
}

void tg__nest_exit(void)
{
    void (*fn)(void) = exit_hook;

    exit_hook = NULL;
    if (fn != NULL)
        fn();
}
