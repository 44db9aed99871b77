/* SPDX-License-Identifier: Apache-2.0
 *
 * memlink.c: the memory manager's part in the scheduler link (see
 * memlink.h). Depends on memory.h, outbox.h, task.h, the codec and the
 * SDK logger.
 */
#include <stdio.h>
#include <string.h>

#include "memlink.h"
#include "taskgrid/plugin.h"
#include "util/log.h"

void tgw_memlink_fill(tgw_memory *m, taskgrid_v1_WorkerMessage *msg)
{
    tgw_memory_report r;

    if (m == NULL)
        return;
    tgw_memory_report_get(m, &r);
    msg->has_memory = true;
    memset(&msg->memory, 0, sizeof(msg->memory));
    msg->memory.memory = r.memory;
    msg->memory.spilled = r.spilled;
    msg->memory.limit = r.limit;
    msg->memory.paused = r.paused;
    msg->memory.rss = r.rss;
}

bool tgw_memlink_admit(tgw_memory *m, tg_task_ctx *t)
{
    char why[512], msg[700];

    if (m == NULL || tgw_memory_fits(m, t->data_len, why, sizeof(why)))
        return true;
    snprintf(msg, sizeof(msg), "%s: %s", t->func ? t->func : "the task", why);
    TG_LOG_WARN("task %.*s: %s", (int)t->key_len, t->key, msg);
    tg_task_set_error(t, "tg.ResultTooLarge", msg, NULL);
    return false;
}

void tgw_memlink_wake(void *ob)
{
    tgw_outbox_wake(ob);
}
