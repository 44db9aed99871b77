/* SPDX-License-Identifier: Apache-2.0
 *
 * shout_plugin.c: an example taskgrid-worker plug-in, the C twin of the
 * seeds' Prefect flow `count_to(10)`: its task "example.shout" sleeps half
 * a second (cancellably), prints "#<n>" on the worker's stdout and returns
 * n. Build it as a shared library and start a worker with
 * `taskgrid-worker tcp://HOST:PORT --preload libshout.so`. Depends only on
 * the public taskgrid/plugin.h; the tg_* functions it calls are resolved
 * from the worker executable when it is loaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "taskgrid/plugin.h"

TG_PLUGIN_DECLARE_ABI()

/*
 * The input is the JSON number n, as the built-ins take it: either "7" or
 * the one-element argument list "[7]". A plug-in may of course use any
 * JSON library; this one needs no more than strtoll.
 */
static int parse_number(const uint8_t *in, size_t len, long long *out)
{
    char text[64], *p, *end;

    if (len == 0 || len >= sizeof(text))
        return -1;
    memcpy(text, in, len);
    text[len] = '\0';
    p = text;
    while (*p == ' ' || *p == '[')
        p++;
    *out = strtoll(p, &end, 10);
    if (end == p)
        return -1;
    while (*end == ' ' || *end == ']' || *end == '\n')
        end++;
    return *end == '\0' ? 0 : -1;
}

static int shout(tg_task_ctx *ctx, void *userdata)
{
    size_t len;
    const uint8_t *in = tg_task_input(ctx, &len);
    long long n;
    char text[32];
    int textlen;

    (void)userdata;
    if (parse_number(in, len, &n) != 0) {
        tg_task_set_error(ctx, "TypeError",
                          "example.shout expects one integer (JSON)", NULL);
        return -1;
    }
    /* time.sleep(0.5), in slices so that a cancel stops it early. */
    for (int i = 0; i < 10; i++) {
        struct timespec slice = {0, 50 * 1000 * 1000};

        if (tg_task_cancelled(ctx)) {
            tg_task_set_error(ctx, "tg.Cancelled",
                              "example.shout was cancelled", NULL);
            return -1;
        }
        nanosleep(&slice, NULL);
    }
    printf("#%lld\n", n);
    fflush(stdout);
    textlen = snprintf(text, sizeof(text), "%lld", n);
    return tg_task_set_result(ctx, text, (size_t)textlen, "json");
}

TG_PLUGIN_EXPORT int tg_plugin_init(tg_registry *r)
{
    return tg_registry_add(r, "example.shout", shout, NULL);
}
