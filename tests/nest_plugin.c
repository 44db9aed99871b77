/* SPDX-License-Identifier: Apache-2.0
 *
 * nest_plugin.c: a worker plug-in for the nested-work tests
 * (tests/nested_test.c) and the bench's nested case. Its functions submit
 * children through the worker-side client (tg_task_client) and wait on
 * them, so a task waits on nested work from inside the worker:
 *   nest.tree    raw "D": D == 0 returns "1"; else submits two nest.tree
 *                "D-1" children keyed "<key>.0" and "<key>.1", waits,
 *                and returns the sum of their results (2^D).
 *   nest.hold    raw "D": like nest.tree, but the leaves (D == 0) run
 *                until cancelled (at most 60 s, then they fail), so that
 *                a test can cancel a tree while every level runs.
 *   nest.fan     raw "N": submits N tg.inc children over 0..N-1 and
 *                returns the sum of their results as JSON (N(N+1)/2).
 *   nest.thread  asks for tg_task_client from a thread of its own and
 *                returns the status name and message it got.
 * The plug-in ABI and the client API, both provided by taskgrid-worker:
 * it links against no library.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "taskgrid/nested.h"

TG_PLUGIN_DECLARE_ABI()

/* How long a task waits on its children (a hang fails, it never blocks
 * a worker forever). */
#define WAIT_MS 120000
#define FAN_MAX 100000

static int fail(tg_task_ctx *ctx, const char *type, const char *what)
{
    char msg[1024];

    snprintf(msg, sizeof(msg), "%s: %s", what, tg_error_last());
    tg_task_set_error(ctx, type, msg, NULL);
    return -1;
}

/* The task's raw input as a number in [0, max]; -1 if it is not one. */
static long input_number(tg_task_ctx *ctx, long max)
{
    char in[32], *end;
    size_t len;
    const uint8_t *data = tg_task_input(ctx, &len);
    long v;

    if (len == 0 || len >= sizeof(in))
        return -1;
    memcpy(in, data, len);
    in[len] = '\0';
    v = strtol(in, &end, 10);
    return *end != '\0' || v < 0 || v > max ? -1 : v;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Submit `n` children of `func` (inputs in[i], keys "<key>.<i>" when
 * keyed), wait on them, and add up their results as numbers. */
static int children_sum(tg_task_ctx *ctx, const char *func, size_t n,
                        char (*in)[24], const char *codec, bool keyed,
                        long long *sum)
{
    tg_client *c;
    tg_task_def *defs = calloc(n, sizeof(*defs));
    tg_future **fs = calloc(n, sizeof(*fs));
    char(*keys)[TG_KEY_MAX + 1] = keyed ? calloc(n, sizeof(*keys)) : NULL;
    int rc = -1;

    *sum = 0;
    if (defs == NULL || fs == NULL || (keyed && keys == NULL)) {
        tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
        goto out;
    }
    if (tg_task_client(ctx, &c) != TG_OK) {
        rc = fail(ctx, "tg.NoClient", "tg_task_client");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        defs[i] = (tg_task_def)TG_TASK_DEF_INIT;
        if (keyed) {
            snprintf(keys[i], sizeof(keys[i]), "%s.%zu", tg_task_key(ctx), i);
            defs[i].key = keys[i];
        }
        defs[i].func = func;
        defs[i].input = in[i];
        defs[i].input_len = strlen(in[i]);
        defs[i].codec = codec;
    }
    if (tg_client_submit(c, defs, n, fs) != TG_OK) {
        rc = fail(ctx, "tg.SubmitFailed", "submitting children");
        goto out;
    }
    if (tg_client_gather(c, fs, n, WAIT_MS) != TG_OK) {
        rc = fail(ctx, "tg.GatherFailed", "waiting on children");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const void *data;
        size_t len;

        if (tg_future_result(fs[i], &data, &len, NULL) != TG_OK) {
            rc = fail(ctx, "tg.ChildFailed", tg_future_key(fs[i]));
            goto out;
        }
        *sum += strtoll(data, NULL, 10);
    }
    rc = 0;
out:
    for (size_t i = 0; fs != NULL && i < n; i++)
        tg_future_free(fs[i]);
    free(fs);
    free(defs);
    free(keys);
    return rc;
}

static int set_number(tg_task_ctx *ctx, long long v, const char *codec)
{
    char out[32];
    int n = snprintf(out, sizeof(out), "%lld", v);

    return tg_task_set_result(ctx, out, (size_t)n, codec) == TG_OK ? 0 : -1;
}

/* nest.tree and nest.hold (userdata non-NULL: hold the leaves). */
static int fn_tree(tg_task_ctx *ctx, void *ud)
{
    char in[2][24];
    long d = input_number(ctx, 30);
    long long sum;

    if (d < 0) {
        tg_task_set_error(ctx, "TypeError", "expects a depth 0..30 as raw text",
                          NULL);
        return -1;
    }
    if (d == 0 && ud == NULL)
        return set_number(ctx, 1, NULL);
    if (d == 0) {
        for (int64_t end = now_ms() + 60000; now_ms() < end;) {
            if (tg_task_cancelled(ctx))
                return set_number(ctx, 1, NULL);
            nanosleep(&(struct timespec){0, 5000000}, NULL);
        }
        tg_task_set_error(ctx, "TimeoutError", "not cancelled in 60 s", NULL);
        return -1;
    }
    snprintf(in[0], sizeof(in[0]), "%ld", d - 1);
    snprintf(in[1], sizeof(in[1]), "%ld", d - 1);
    if (children_sum(ctx, tg_task_func(ctx), 2, in, NULL, true, &sum) != 0)
        return -1;
    return set_number(ctx, sum, NULL);
}

static int fn_fan(tg_task_ctx *ctx, void *ud)
{
    long n = input_number(ctx, FAN_MAX);
    char(*in)[24];
    long long sum;
    int rc;

    (void)ud;
    if (n < 1) {
        tg_task_set_error(ctx, "TypeError",
                          "expects a count 1..100000 as raw text", NULL);
        return -1;
    }
    if ((in = calloc((size_t)n, sizeof(*in))) == NULL) {
        tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
        return -1;
    }
    for (long i = 0; i < n; i++)
        snprintf(in[i], sizeof(in[i]), "%ld", i);
    rc = children_sum(ctx, "tg.inc", (size_t)n, in, "json", false, &sum);
    free(in);
    return rc != 0 ? -1 : set_number(ctx, sum, "json");
}

struct thread_ask {
    tg_task_ctx *ctx;
    int rc;
    char msg[512];
};

static void *ask_client(void *arg)
{
    struct thread_ask *a = arg;
    tg_client *c;

    a->rc = tg_task_client(a->ctx, &c);
    snprintf(a->msg, sizeof(a->msg), "%s: %s", tg_status_name(a->rc),
             tg_error_last());
    return NULL;
}

static int fn_thread(tg_task_ctx *ctx, void *ud)
{
    struct thread_ask a = {ctx, 0, ""};
    pthread_t th;

    (void)ud;
    if (pthread_create(&th, NULL, ask_client, &a) != 0) {
        tg_task_set_error(ctx, "OSError", "pthread_create failed", NULL);
        return -1;
    }
    pthread_join(th, NULL);
    return tg_task_set_result(ctx, a.msg, strlen(a.msg), NULL) == TG_OK ? 0
                                                                        : -1;
}

static int hold_flag;

TG_PLUGIN_EXPORT int tg_plugin_init(tg_registry *r)
{
    int rc;

    if ((rc = tg_registry_add(r, "nest.tree", fn_tree, NULL)) != TG_OK ||
        (rc = tg_registry_add(r, "nest.hold", fn_tree, &hold_flag)) != TG_OK ||
        (rc = tg_registry_add(r, "nest.fan", fn_fan, NULL)) != TG_OK ||
        (rc = tg_registry_add(r, "nest.thread", fn_thread, NULL)) != TG_OK)
        return rc;
    return 0;
}
