/* SPDX-License-Identifier: Apache-2.0
 *
 * memlink.h: the memory manager's part in the scheduler link: its report
 * in every WorkerMessage (MemoryReport), the tg.ResultTooLarge check of a
 * result before it is held, and the wake-up of the sender when the pause
 * state changes. Depends on memory.h, outbox.h, task.h and the codec.
 */
#ifndef TGW_MEMLINK_H
#define TGW_MEMLINK_H

#include <stdbool.h>

#include "memory.h"
#include "outbox.h"
#include "task.h"
#include "wire.h"

/** Set `msg`'s memory report from `m` (NULL: none is sent). */
void tgw_memlink_fill(tgw_memory *m, taskgrid_v1_WorkerMessage *msg);

/**
 * True if `t`'s result may be held; false when it is too large for this
 * worker's memory limit plus its free spill space, after failing `t` with
 * tg.ResultTooLarge (naming the size and the limit; the bytes are freed).
 * Safe with the executor's lock held: one statvfs, no I/O on the data.
 */
bool tgw_memlink_admit(tgw_memory *m, tg_task_ctx *t);

/** tgw_outbox_wake for tgw_memory_on_pause (`ob` is a tgw_outbox). */
void tgw_memlink_wake(void *ob);

#endif
