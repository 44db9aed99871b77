/* SPDX-License-Identifier: Apache-2.0
 *
 * address.h (internal): the syntax of a scheduler address, shared by the
 * SDK, the worker, the scheduler and the transport. libc only.
 */
#ifndef TG_UTIL_ADDRESS_H
#define TG_UTIL_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "taskgrid/status.h"

/**
 * Split "tcp://host:port", "tls://host:port" or "host:port" into a gRPC
 * target "host:port" (in `target`, `tlen` bytes) and whether TLS is asked
 * for (*tls). TG_EINVAL with a message for anything else.
 */
int tg__address_parse(const char *address, char *target, size_t tlen,
                      bool *tls);

#endif
