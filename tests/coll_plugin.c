/* SPDX-License-Identifier: Apache-2.0
 *
 * coll_plugin.c: a worker plug-in for the collection tests
 * (tests/collections_test.c) that generates partitions on the worker:
 *   coll.range  JSON [START, COUNT]  returns the JSON array START, START+1,
 *               ..., START+COUNT-1 (about 7 bytes a number, so a partition
 *               of 1,000 numbers is held on its worker under a small
 *               --inline-limit, and moves peer to peer to its combine)
 * The plug-in ABI only.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "taskgrid/plugin.h"

TG_PLUGIN_DECLARE_ABI()

/* The most numbers one call makes (bounds the result). */
#define RANGE_MAX 1000000

static int fn_range(tg_task_ctx *ctx, void *ud)
{
    char in[128], *out;
    size_t len, cap, pos = 0;
    const uint8_t *data = tg_task_input(ctx, &len);
    long long start, count;
    int rc;

    (void)ud;
    if (len >= sizeof(in))
        len = sizeof(in) - 1;
    memcpy(in, data, len);
    in[len] = '\0';
    if (sscanf(in, " [ %lld , %lld ]", &start, &count) != 2 || count < 0 ||
        count > RANGE_MAX) {
        tg_task_set_error(ctx, "TypeError",
                          "coll.range expects [START, COUNT] with 0 <= COUNT "
                          "<= 1000000",
                          NULL);
        return -1;
    }
    cap = (size_t)count * 24 + 3;
    if ((out = malloc(cap)) == NULL) {
        tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
        return -1;
    }
    out[pos++] = '[';
    for (long long i = 0; i < count; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, "%s%lld", i ? "," : "",
                                start + i);
    out[pos++] = ']';
    rc = tg_task_set_result(ctx, out, pos, "json");
    free(out);
    return rc == TG_OK ? 0 : -1;
}

TG_PLUGIN_EXPORT int tg_plugin_init(tg_registry *r)
{
    return tg_registry_add(r, "coll.range", fn_range, NULL);
}
