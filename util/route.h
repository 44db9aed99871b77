/* SPDX-License-Identifier: Apache-2.0
 *
 * route.h (internal): this machine's address on the route to a host, as
 * Dask's get_ip finds it: connect() a UDP socket to the host (which sends
 * nothing, only picks the route), then getsockname(). The worker
 * advertises its data service there; the ssh launcher gives it to the
 * workers of each host as the scheduler's. POSIX sockets.
 */
#ifndef TG_UTIL_ROUTE_H
#define TG_UTIL_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

/**
 * The local IP address of the route to `host` (a name or an address,
 * without brackets) and `port` into `out` ("10.0.0.5", "[fd00::5]").
 * False if `host` does not resolve (getaddrinfo may block on DNS), has
 * no route, or, with `no_loopback`, the address is a loopback or
 * link-local one.
 */
bool tg__route_ip(const char *host, const char *port, bool no_loopback,
                  char *out, size_t len);

#endif
