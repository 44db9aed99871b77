/* SPDX-License-Identifier: Apache-2.0
 *
 * secede.h: the secessions of a taken outbox batch (running tasks that
 * gave their slot back to wait on nested work, or took it again) in
 * their wire form, taskgrid.v1 WorkerMessage.secessions, so that the
 * scheduler does not count a seceded task against this worker's threads.
 * Depends on outbox.h and the generated messages (proto/wire.h).
 */
#ifndef TGW_SECEDE_H
#define TGW_SECEDE_H

#include "outbox.h"
#include "wire.h"

/**
 * Set m->secessions from `b` (its memory is the batch's, freed with
 * tgw_outbox_batch_free). Out of memory they are dropped, logged.
 */
void tgw_secede_fill(tgw_batch *b, taskgrid_v1_WorkerMessage *m);

#endif
