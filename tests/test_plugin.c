/* SPDX-License-Identifier: Apache-2.0
 *
 * test_plugin.c: a worker plug-in for the scheduling-semantics tests
 * (tests/semantics_test.c). Its functions take raw text input and make
 * behaviour observable from outside the worker:
 *   test.record  "PATH TAG"  appends TAG to PATH (execution order)
 *   test.count   "PATH MS"   sleeps MS ms, then appends the task key to
 *                            PATH (how often each task ran)
 *   test.pid     ""          returns the worker's pid (placement)
 *   test.exclusive ""        fails if another test.exclusive runs at once
 *                            in this worker (serialization), sleeps 20 ms
 *   test.flaky   "N"         fails until attempt N, then returns N
 *   test.crash   ""          kills its own worker process (SIGKILL)
 *   test.sleep_ms "MS"       sleeps MS milliseconds, returns 0
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "taskgrid/plugin.h"

TG_PLUGIN_DECLARE_ABI()

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void input_text(tg_task_ctx *ctx, char *buf, size_t cap)
{
    size_t len;
    const uint8_t *in = tg_task_input(ctx, &len);

    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(buf, in, len);
    buf[len] = '\0';
}

static int append_line(tg_task_ctx *ctx, const char *path, const char *line)
{
    char text[1200];
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    int n = snprintf(text, sizeof(text), "%s\n", line);

    /* One write() with O_APPEND: lines from several workers never mix. */
    if (fd < 0 || write(fd, text, (size_t)n) != n) {
        tg_task_set_error(ctx, "OSError", strerror(errno), NULL);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int fn_record(tg_task_ctx *ctx, void *ud)
{
    char in[1100], *space;

    (void)ud;
    input_text(ctx, in, sizeof(in));
    space = strrchr(in, ' ');
    if (space == NULL) {
        tg_task_set_error(ctx, "TypeError", "test.record expects 'PATH TAG'",
                          NULL);
        return -1;
    }
    *space = '\0';
    if (append_line(ctx, in, space + 1) != 0)
        return -1;
    return tg_task_set_result(ctx, space + 1, strlen(space + 1), "json");
}

static int fn_count(tg_task_ctx *ctx, void *ud)
{
    char in[1100], *space;

    (void)ud;
    input_text(ctx, in, sizeof(in));
    space = strrchr(in, ' ');
    if (space != NULL) {
        *space = '\0';
        sleep_ms(strtol(space + 1, NULL, 10));
    }
    if (append_line(ctx, in, tg_task_key(ctx)) != 0)
        return -1;
    return tg_task_set_result(ctx, "1", 1, "json");
}

static int fn_pid(tg_task_ctx *ctx, void *ud)
{
    char out[32];
    int n = snprintf(out, sizeof(out), "%ld", (long)getpid());

    (void)ud;
    return tg_task_set_result(ctx, out, (size_t)n, "json");
}

static atomic_int running_exclusive;

static int fn_exclusive(tg_task_ctx *ctx, void *ud)
{
    int before = atomic_fetch_add(&running_exclusive, 1);

    (void)ud;
    sleep_ms(20);
    atomic_fetch_sub(&running_exclusive, 1);
    if (before != 0) {
        tg_task_set_error(ctx, "test.Overlap",
                          "another test.exclusive was running", NULL);
        return -1;
    }
    return tg_task_set_result(ctx, "0", 1, "json");
}

static int fn_flaky(tg_task_ctx *ctx, void *ud)
{
    char in[32], out[32], msg[64];
    long want;
    uint32_t attempt = tg_task_attempt(ctx);

    (void)ud;
    input_text(ctx, in, sizeof(in));
    want = strtol(in, NULL, 10);
    if ((long)attempt < want) {
        snprintf(msg, sizeof(msg), "failing on attempt %u of %ld", attempt,
                 want);
        tg_task_set_error(ctx, "test.Flaky", msg, NULL);
        return -1;
    }
    snprintf(out, sizeof(out), "%u", attempt);
    return tg_task_set_result(ctx, out, strlen(out), "json");
}

static int fn_crash(tg_task_ctx *ctx, void *ud)
{
    (void)ctx;
    (void)ud;
    raise(SIGKILL);
    return -1;
}

static int fn_sleep_ms(tg_task_ctx *ctx, void *ud)
{
    char in[32];

    (void)ud;
    input_text(ctx, in, sizeof(in));
    sleep_ms(strtol(in, NULL, 10));
    return tg_task_set_result(ctx, "0", 1, "json");
}

TG_PLUGIN_EXPORT int tg_plugin_init(tg_registry *r)
{
    int rc = 0;

    rc |= tg_registry_add(r, "test.record", fn_record, NULL);
    rc |= tg_registry_add(r, "test.count", fn_count, NULL);
    rc |= tg_registry_add(r, "test.pid", fn_pid, NULL);
    rc |= tg_registry_add(r, "test.exclusive", fn_exclusive, NULL);
    rc |= tg_registry_add(r, "test.flaky", fn_flaky, NULL);
    rc |= tg_registry_add(r, "test.crash", fn_crash, NULL);
    rc |= tg_registry_add(r, "test.sleep_ms", fn_sleep_ms, NULL);
    return rc;
}
