/* SPDX-License-Identifier: Apache-2.0
 *
 * copy.h: copies of held results asked by the scheduler (Replicate:
 * SchedulerMessage.copy). A copy thread of its own fetches each result
 * from its holders with the fetcher (the same checked chunks as a task's
 * input), keeps it in the store as a result this worker produced (it
 * counts toward the memory limit and may spill), and queues the answer
 * (WorkerMessage.copied), which the link's sender takes. A result larger
 * than the memory limit plus the free spill space is refused before any
 * transfer. Depends on the fetcher, the store, the memory manager, the
 * outbox (to wake the sender), the counters and the codec.
 */
#ifndef TGW_COPY_H
#define TGW_COPY_H

#include <stdbool.h>

#include "counters.h"
#include "fetcher.h"
#include "memory.h"
#include "outbox.h"
#include "store.h"
#include "wire.h"

typedef struct tgw_copier tgw_copier;

typedef struct tgw_copier_opts {
    tgw_fetcher *fetcher;   /* borrowed */
    tgw_store *store;       /* borrowed */
    tgw_memory *mem;        /* borrowed; NULL: no limit */
    tgw_outbox *ob;         /* borrowed; woken when an answer waits */
    tgw_counters *counters; /* borrowed */
} tgw_copier_opts;

/** New copier and its thread; free with tgw_copier_free. TG_OK, or
 * TG_ENOMEM / TG_EINTERNAL (no thread) with the reason set. */
int tgw_copier_new(tgw_copier **out, const tgw_copier_opts *opts);

/** Stop the thread (a copy under way is cancelled) and free. NULL is a
 * no-op. */
void tgw_copier_free(tgw_copier *c);

/** Queue the copies of `m` (copied out of the message). Out of memory, a
 * copy is answered as failed. */
void tgw_copier_push(tgw_copier *c, const taskgrid_v1_SchedulerMessage *m);

/** True when answers wait to be sent. */
bool tgw_copier_due(tgw_copier *c);

/**
 * Move the waiting answers into `msg->copied` (the sender's thread only;
 * they stay valid until the next call or tgw_copier_free).
 */
void tgw_copier_fill(tgw_copier *c, taskgrid_v1_WorkerMessage *msg);

/** The session ended: queued copies and unsent answers are dropped, a
 * copy under way is cancelled and its bytes are not kept. */
void tgw_copier_clear(tgw_copier *c);

#endif
