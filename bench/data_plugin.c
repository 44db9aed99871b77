/* SPDX-License-Identifier: Apache-2.0
 *
 * data_plugin.c: the C worker's side of bench/data_bench.py --worker c, a
 * plug-in (--preload) with two functions, so the data plane is measured
 * without Python's pickling:
 *   bench.make N    N bytes (codec raw), made on the worker
 *   bench.size      the total size of its dependencies' results (JSON)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "taskgrid/plugin.h"

TG_PLUGIN_DECLARE_ABI()

static int bench_make(tg_task_ctx *ctx, void *userdata)
{
    size_t len;
    const char *in = (const char *)tg_task_input(ctx, &len);
    char text[32];
    unsigned long long n;
    void *data;
    int rc;

    (void)userdata;
    if (len == 0 || len >= sizeof(text)) {
        tg_task_set_error(ctx, "TypeError", "bench.make expects N", NULL);
        return -1;
    }
    memcpy(text, in, len);
    text[len] = '\0';
    n = strtoull(text + strcspn(text, "0123456789"), NULL, 10);
    if ((data = malloc(n ? n : 1)) == NULL) {
        tg_task_set_error(ctx, "MemoryError", "bench.make: out of memory",
                          NULL);
        return -1;
    }
    memset(data, 1, n);
    rc = tg_task_set_result(ctx, data, n, "raw");
    free(data);
    return rc;
}

static int bench_size(tg_task_ctx *ctx, void *userdata)
{
    char text[32];
    unsigned long long total = 0;

    (void)userdata;
    for (size_t i = 0; i < tg_task_ndeps(ctx); i++) {
        size_t len = 0;

        (void)tg_task_dep(ctx, i, &len);
        total += len;
    }
    int n = snprintf(text, sizeof(text), "%llu", total);
    return tg_task_set_result(ctx, text, (size_t)n, "json");
}

int tg_plugin_init(tg_registry *reg)
{
    if (tg_registry_add(reg, "bench.make", bench_make, NULL) != 0 ||
        tg_registry_add(reg, "bench.size", bench_size, NULL) != 0)
        return -1;
    return 0;
}
