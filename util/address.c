/* SPDX-License-Identifier: Apache-2.0
 *
 * address.c: the syntax of taskgrid addresses (address.h). Pure string
 * handling, libc only, so the worker's configuration and the SDK can check
 * an address without touching the network.
 */
#include <string.h>

#include "taskgrid/status.h"
#include "util/address.h"
#include "util/error.h"

int tg__address_parse(const char *address, char *target, size_t tlen, bool *tls)
{
    const char *rest = address;
    const char *colon;

    if (address == NULL || *address == '\0')
        return tg__error_set(TG_EINVAL, "empty scheduler address");
    *tls = false;
    if (strncmp(address, "tcp://", 6) == 0) {
        rest = address + 6;
    } else if (strncmp(address, "tls://", 6) == 0) {
        rest = address + 6;
        *tls = true;
    } else if (strstr(address, "://") != NULL) {
        return tg__error_set(TG_EINVAL,
                             "unsupported address '%s' (use tcp://host:port "
                             "or tls://host:port)",
                             address);
    }
    colon = strrchr(rest, ':');
    if (colon == NULL || colon == rest || colon[1] == '\0' ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return tg__error_set(TG_EINVAL,
                             "address '%s' has no host:port (e.g. "
                             "tcp://127.0.0.1:8786)",
                             address);
    if (strlen(rest) + 1 > tlen)
        return tg__error_set(TG_EINVAL, "address '%s' is too long", address);
    memcpy(target, rest, strlen(rest) + 1);
    return TG_OK;
}
