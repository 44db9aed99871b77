/* SPDX-License-Identifier: Apache-2.0
 *
 * link.h: the worker's connection to its scheduler: the WorkerLink.Connect
 * stream, registration, assignments into the executor, batched results
 * and heartbeats out, reconnection with backoff, and the two ways to stop
 * (a signal, or drain=true from the scheduler); and the data plane:
 * large results held in the store and served to peers by the data
 * service, held inputs fetched before their tasks run, uploads and frees
 * asked by the scheduler. Depends on the client side of the transport
 * (transport/client.h), the codec (proto/wire.h), the executor, the
 * outbox, the store, the fetcher and the data service.
 */
#ifndef TGW_LINK_H
#define TGW_LINK_H

#include <stdatomic.h>

#include "config.h"
#include "counters.h"
#include "taskgrid/plugin.h"
#include "transport/client.h"

/* How tgw_link_run ended. */
typedef enum tgw_link_end {
    TGW_LINK_CLEAN = 0,     /* everything finished and was freed */
    TGW_LINK_ABANDONED = 1, /* tasks were still running at the deadline:
                             * nothing could be freed; exit now */
    TGW_LINK_FAILED = 2,    /* could not start, was refused, or no
                             * scheduler for --death-timeout (logged) */
} tgw_link_end;

/**
 * Serve the scheduler at cfg->address until `*stop` becomes true (set it
 * from a signal handler) or the scheduler drains this worker. Connection
 * failures are retried forever with backoff.
 * The data service (cfg->data_listen) listens for the whole run; held
 * results last one session. At the end one INFO line gives the data
 * counters (tgw_counters_format).
 *
 * @param cfg      the worker's configuration (borrowed).
 * @param sec      TLS material, or NULL for tcp:// (borrowed); the data
 *                 service and fetches from peers use it too.
 * @param reg      the frozen registry of functions (borrowed).
 * @param stop     polled at least every 200 ms.
 * @param counters data counters to add to (borrowed; tests read them),
 *                 or NULL for the run's own.
 */
tgw_link_end tgw_link_run(const tgw_config *cfg, const tg__rpc_sec *sec,
                          const tg_registry *reg, atomic_bool *stop,
                          tgw_counters *counters);

#endif
