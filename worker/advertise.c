/* SPDX-License-Identifier: Apache-2.0
 *
 * advertise.c: the data address a worker advertises (see advertise.h).
 * Finds the local end of the route to the scheduler as Dask's get_ip
 * does: connect() a UDP socket to the scheduler's address, which sends
 * nothing and only picks the route, then getsockname(). Depends on
 * util/address.h and POSIX sockets.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "advertise.h"
#include "util/address.h"

static bool wildcard_host(const char *listen, int n)
{
    return n == 0 || (n == 7 && strncmp(listen, "0.0.0.0", 7) == 0) ||
           (n == 4 && strncmp(listen, "[::]", 4) == 0) ||
           (n == 2 && strncmp(listen, "::", 2) == 0);
}

static bool loopback_sa(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
               IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) ||
               IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr);
    }
    return true;
}

/* The local IP address ("10.0.0.5", "[fd00::5]") of the route to the
 * scheduler at `address`, or false (unresolvable, no route, loopback). */
static bool route_ip(const char *address, char *out, size_t len)
{
    char target[512], ip[INET6_ADDRSTRLEN], *colon, *host = target;
    struct addrinfo hints = {0}, *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    bool ok = false;
    bool tls;
    int fd;

    if (tg__address_parse(address, target, sizeof(target), &tls) != 0 ||
        (colon = strrchr(target, ':')) == NULL)
        return false;
    *colon = '\0';
    if (host[0] == '[' && colon > host && colon[-1] == ']') {
        host++;
        colon[-1] = '\0';
    }
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL)
        return false;
    fd = socket(res->ai_family, SOCK_DGRAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        !loopback_sa(&ss)) {
        const void *a =
            ss.ss_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (inet_ntop(ss.ss_family, a, ip, sizeof(ip)) != NULL) {
            snprintf(out, len, ss.ss_family == AF_INET6 ? "[%s]" : "%s", ip);
            ok = true;
        }
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return ok;
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
