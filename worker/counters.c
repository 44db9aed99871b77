/* SPDX-License-Identifier: Apache-2.0
 *
 * counters.c: reading and printing the data-plane counters (see
 * counters.h). Depends on libc only.
 */
#include <inttypes.h>
#include <stdio.h>

#include "counters.h"

void tgw_counters_init(tgw_counters *c)
{
    for (int k = 0; k < TGW_COUNT_KINDS; k++) {
        atomic_init(&c->n[k], 0);
        atomic_init(&c->bytes[k], 0);
    }
}

uint64_t tgw_counters_n(const tgw_counters *c, tgw_counter kind)
{
    return atomic_load_explicit(&((tgw_counters *)c)->n[kind],
                                memory_order_relaxed);
}

uint64_t tgw_counters_bytes(const tgw_counters *c, tgw_counter kind)
{
    return atomic_load_explicit(&((tgw_counters *)c)->bytes[kind],
                                memory_order_relaxed);
}

void tgw_counters_format(const tgw_counters *c, char *buf, size_t len)
{
    static const char *const names[TGW_COUNT_KINDS] = {
        "held", "served", "fetched", "local", "uploaded"};
    size_t off = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
    off += (size_t)snprintf(buf, len, "data:");
    for (int k = 0; k < TGW_COUNT_KINDS && off < len; k++)
        off += (size_t)snprintf(
            buf + off, len - off, "%s %s %" PRIu64 " (%" PRIu64 " bytes)",
            k ? "," : "", names[k], tgw_counters_n(c, (tgw_counter)k),
            tgw_counters_bytes(c, (tgw_counter)k));
}
