/* SPDX-License-Identifier: Apache-2.0
 *
 * big_result_plugin.c: a C worker plug-in for test_large_results.py,
 * built by the test with the system C compiler:
 *   big.bytes N    returns N bytes (codec raw): a result as large as wanted,
 *                  made on the worker (an input that size could not even be
 *                  submitted)
 *   big.pid   ""   returns the worker's pid (JSON), to see it survived
 *   big.len        returns the total size in bytes of its dependencies'
 *                  results (JSON), whatever their codec (test_data_plane.py)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskgrid/plugin.h"

TG_PLUGIN_DECLARE_ABI()

static int big_bytes(tg_task_ctx *ctx, void *userdata)
{
    size_t len;
    const uint8_t *in = tg_task_input(ctx, &len);
    char text[32];
    unsigned long long n;
    void *data;
    int rc;

    (void)userdata;
    if (len == 0 || len >= sizeof(text)) {
        tg_task_set_error(ctx, "TypeError", "big.bytes expects N", NULL);
        return -1;
    }
    memcpy(text, in, len);
    text[len] = '\0';
    /* The input is JSON: 123, "123" or ["123"]. */
    n = strtoull(text + strcspn(text, "0123456789"), NULL, 10);
    data = malloc(n ? n : 1);
    if (data == NULL) {
        tg_task_set_error(ctx, "MemoryError", "big.bytes: out of memory", NULL);
        return -1;
    }
    memset(data, 'x', n);
    rc = tg_task_set_result(ctx, data, n, "raw");
    free(data);
    return rc;
}

static int big_pid(tg_task_ctx *ctx, void *userdata)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%d", (int)getpid());

    (void)userdata;
    return tg_task_set_result(ctx, text, (size_t)n, "json");
}

static int big_len(tg_task_ctx *ctx, void *userdata)
{
    char text[32];
    unsigned long long total = 0;
    int n;

    (void)userdata;
    for (size_t i = 0; i < tg_task_ndeps(ctx); i++) {
        size_t len = 0;
        (void)tg_task_dep(ctx, i, &len);
        total += len;
    }
    n = snprintf(text, sizeof(text), "%llu", total);
    return tg_task_set_result(ctx, text, (size_t)n, "json");
}

int tg_plugin_init(tg_registry *reg)
{
    if (tg_registry_add(reg, "big.bytes", big_bytes, NULL) != 0 ||
        tg_registry_add(reg, "big.pid", big_pid, NULL) != 0 ||
        tg_registry_add(reg, "big.len", big_len, NULL) != 0)
        return -1;
    return 0;
}
