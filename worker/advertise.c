/* SPDX-License-Identifier: Apache-2.0
 *
 * advertise.c: the data address a worker advertises (see advertise.h).
 * For a wildcard listen host: the local end of the route to the
 * scheduler (util/route.h, as Dask's get_ip). Depends on util/address.h
 * and util/route.h.
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "advertise.h"
#include "util/address.h"
#include "util/route.h"

static bool wildcard_host(const char *listen, int n)
{
    return n == 0 || (n == 7 && strncmp(listen, "0.0.0.0", 7) == 0) ||
           (n == 4 && strncmp(listen, "[::]", 4) == 0) ||
           (n == 2 && strncmp(listen, "::", 2) == 0);
}

/* The local IP address ("10.0.0.5", "[fd00::5]") of the route to the
 * scheduler at `address`, or false (unresolvable, no route, loopback). */
static bool route_ip(const char *address, char *out, size_t len)
{
    char target[512], *colon, *host = target;
    bool tls;

    if (tg__address_parse(address, target, sizeof(target), &tls) != 0 ||
        (colon = strrchr(target, ':')) == NULL)
        return false;
    *colon = '\0';
    if (host[0] == '[' && colon > host && colon[-1] == ']') {
        host++;
        colon[-1] = '\0';
    }
    return tg__route_ip(host, colon + 1, true, out, len);
}

void tgw_advertise_data_address(const tgw_config *c, int port, char *out,
                                size_t len)
{
    const char *listen = c->data_listen;
    int n = (int)(strrchr(listen, ':') - listen);
    char ip[INET6_ADDRSTRLEN + 2];

    if (c->data_address != NULL)
        snprintf(out, len, "%s", c->data_address);
    else if (!wildcard_host(listen, n))
        snprintf(out, len, "%.*s:%d", n, listen, port);
    else if (route_ip(c->address, ip, sizeof(ip)))
        snprintf(out, len, "%s:%d", ip, port);
    else
        snprintf(out, len, "%s:%d", c->host, port);
}
