/* SPDX-License-Identifier: Apache-2.0
 *
 * link.h: the worker's connection to its scheduler: the WorkerLink.Connect
 * stream, registration, assignments into the executor, batched results
 * and heartbeats out, reconnection with backoff, and the two ways to stop
 * (a signal, or drain=true from the scheduler). Depends on the client
 * side of the transport (transport/client.h), the codec (proto/wire.h),
 * the executor and the outbox.
 */
#ifndef TGW_LINK_H
#define TGW_LINK_H

#include <stdatomic.h>

#include "config.h"
#include "taskgrid/plugin.h"
#include "transport/client.h"

/* How tgw_link_run ended. */
typedef enum tgw_link_end {
    TGW_LINK_CLEAN = 0,     /* everything finished and was freed */
    TGW_LINK_ABANDONED = 1, /* tasks were still running at the deadline:
                             * nothing could be freed; exit now */
    TGW_LINK_FAILED = 2,    /* could not start (message logged) */
} tgw_link_end;

/**
 * Serve the scheduler at cfg->address until `*stop` becomes true (set it
 * from a signal handler) or the scheduler drains this worker. Connection
 * failures are retried forever with backoff.
 *
 * @param cfg  the worker's configuration (borrowed).
 * @param sec  TLS material, or NULL for tcp:// (borrowed).
 * @param reg  the frozen registry of functions (borrowed).
 * @param stop polled at least every 200 ms.
 */
tgw_link_end tgw_link_run(const tgw_config *cfg, const tg__rpc_sec *sec,
                          const tg_registry *reg, atomic_bool *stop);

#endif
