/* SPDX-License-Identifier: Apache-2.0
 *
 * advertise.h: the address a worker's data service advertises in its
 * Register message (Register.data_address), the one other workers dial.
 * Depends on the worker's configuration and POSIX sockets only.
 */
#ifndef TGW_ADVERTISE_H
#define TGW_ADVERTISE_H

#include <stddef.h>

#include "config.h"

/**
 * Write the data address for a data service bound to `port` into `out`
 * (`len` bytes): --data-address if given; else the --data-listen host for
 * a specific one; else, for a wildcard (0.0.0.0, ::), the local IP address
 * of the route to the scheduler, which is the address peers on other
 * hosts can reach too. A host name would do only where every host
 * resolves it alike, and many map their own name to a loopback address
 * (Debian's /etc/hosts), so it is the fallback only: when the scheduler
 * cannot be resolved, or the route to it is loopback.
 */
void tgw_advertise_data_address(const tgw_config *c, int port, char *out,
                                size_t len);

#endif
