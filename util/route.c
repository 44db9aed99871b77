/* SPDX-License-Identifier: Apache-2.0
 *
 * route.c: the local address of the route to a host (see route.h).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "route.h"

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

bool tg__route_ip(const char *host, const char *port, bool no_loopback,
                  char *out, size_t len)
{
    struct addrinfo hints = {0}, *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    bool ok = false;
    int fd;

    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
        return false;
    fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        !(no_loopback && loopback_sa(&ss))) {
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
