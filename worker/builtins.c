/* SPDX-License-Identifier: Apache-2.0
 *
 * builtins.c: the tg.* functions of the C worker (see builtins.h). Each is
 * an ordinary tg_task_fn using only the plug-in ABI plus the JSON helpers,
 * so it doubles as a reference for plug-in authors. Depends on libc, the
 * JSON layer (json.c, jansson values) and the task accessors.
 *
 * Arithmetic keeps integers exact: int64 sums stay int64 until they would
 * overflow, then continue as doubles (Python would keep an exact big
 * integer, but JSON readers in Go and JavaScript could not hold it anyway).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "builtins.h"
#include "util/clock.h"

/* ------------------------------------------------------------------ */
/* Arguments and results                                               */
/* ------------------------------------------------------------------ */

/* Append `v`, taking over its reference (released on failure too). */
static int push_arg(tgw_args *a, size_t *cap, json_t *v)
{
    if (a->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        json_t **p = realloc(a->v, nc * sizeof(*p));

        if (p == NULL) {
            json_decref(v);
            return TG_ENOMEM;
        }
        a->v = p;
        *cap = nc;
    }
    a->v[a->n++] = v;
    return TG_OK;
}

/* Parse one JSON-coded value (the input or a dependency result). */
static int parse_one(tg_task_ctx *ctx, const char *fname, const char *what,
                     const uint8_t *data, size_t len, const char *codec,
                     json_t **out)
{
    char msg[512];
    int rc;

    if (strcmp(codec, "json") != 0) {
        /* An empty "raw" dependency result (e.g. of tg.noop) is null. */
        if (len == 0 && strcmp(codec, "raw") == 0) {
            *out = json_null();
            return TG_OK;
        }
        snprintf(msg, sizeof(msg),
                 "%s takes JSON arguments, but %s has codec '%s'", fname, what,
                 codec);
        tg_task_set_error(ctx, "TypeError", msg, NULL);
        return TG_EINVAL;
    }
    rc = tgw_json_parse(out, data, len);
    if (rc == TG_ENOMEM) {
        tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
    } else if (rc != TG_OK) {
        snprintf(msg, sizeof(msg), "%s: %s is not valid JSON: %s", fname, what,
                 tg_error_last());
        tg_task_set_error(ctx, "ValueError", msg, NULL);
    }
    return rc;
}

int tgw_args_parse(tg_task_ctx *ctx, const char *fname, tgw_args *out)
{
    size_t len, cap = 0;
    const uint8_t *in = tg_task_input(ctx, &len);
    json_t *v, *item;
    size_t i;
    int rc;

    out->v = NULL;
    out->n = 0;
    if (len > 0) {
        rc =
            parse_one(ctx, fname, "the input", in, len, tg_task_codec(ctx), &v);
        if (rc != TG_OK)
            return rc;
        if (json_is_array(v)) {
            rc = TG_OK;
            json_array_foreach(v, i, item)
            {
                if (rc == TG_OK)
                    rc = push_arg(out, &cap, json_incref(item));
            }
            json_decref(v);
        } else {
            rc = push_arg(out, &cap, v);
        }
        if (rc != TG_OK)
            goto oom;
    }
    for (i = 0; i < tg_task_ndeps(ctx); i++) {
        char what[64];
        size_t dlen;
        const uint8_t *d = tg_task_dep(ctx, i, &dlen);

        snprintf(what, sizeof(what), "dependency %zu", i + 1);
        rc =
            parse_one(ctx, fname, what, d, dlen, tg_task_dep_codec(ctx, i), &v);
        if (rc != TG_OK)
            return rc;
        if (push_arg(out, &cap, v) != TG_OK)
            goto oom;
    }
    return TG_OK;
oom:
    tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
    return TG_ENOMEM;
}

void tgw_args_free(tgw_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        json_decref(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

/* Store what `b` holds (unless it ran out of memory) as a JSON result. */
static int set_buf_result(tg_task_ctx *ctx, tgw_buf *b)
{
    int rc = -1;

    if (b->oom)
        tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
    else
        rc = tg_task_set_result(ctx, b->ptr, b->len, "json") == TG_OK ? 0 : -1;
    tgw_buf_free(b);
    return rc;
}

static int set_json_result(tg_task_ctx *ctx, const json_t *v)
{
    tgw_buf b = {0};

    tgw_json_write(&b, v);
    return set_buf_result(ctx, &b);
}

/* "1 argument" / "2 arguments" */
static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

/* ------------------------------------------------------------------ */
/* Numbers                                                             */
/* ------------------------------------------------------------------ */

/* A running sum that stays an exact int64 while it can. */
typedef struct acc {
    bool is_int;
    int64_t i;
    double d;
} acc;

static void acc_add(acc *a, const json_t *v)
{
    if (a->is_int && json_is_integer(v)) {
        int64_t r;

        if (!__builtin_add_overflow(a->i, (int64_t)json_integer_value(v), &r)) {
            a->i = r;
            return;
        }
    }
    if (a->is_int) {
        a->is_int = false;
        a->d = (double)a->i;
    }
    a->d += json_number_value(v);
}

/* The sum as the task's result. Written directly: a double sum may be
 * infinite, which no json_t can hold (it prints as null). */
static int set_acc_result(tg_task_ctx *ctx, const acc *a)
{
    tgw_buf b = {0};
    char text[24];

    if (a->is_int) {
        snprintf(text, sizeof(text), "%" PRId64, a->i);
        tgw_buf_append(&b, text, strlen(text));
    } else {
        tgw_json_write_double(&b, a->d);
    }
    return set_buf_result(ctx, &b);
}

/* tg.inc / tg.dec: one number plus `delta`. */
static int step(tg_task_ctx *ctx, const char *fname, int64_t delta)
{
    tgw_args a;
    acc sum = {true, delta, 0};
    int rc = -1;

    if (tgw_args_parse(ctx, fname, &a) != 0)
        goto out;
    if (a.n != 1 || !json_is_number(a.v[0])) {
        char msg[256];

        if (a.n != 1)
            snprintf(msg, sizeof(msg),
                     "%s expects one number, got %zu argument%s", fname, a.n,
                     plural(a.n));
        else
            snprintf(msg, sizeof(msg), "%s expects one number, got %s", fname,
                     tgw_json_type_name(a.v[0]));
        tg_task_set_error(ctx, "TypeError", msg, NULL);
        goto out;
    }
    acc_add(&sum, a.v[0]);
    rc = set_acc_result(ctx, &sum);
out:
    tgw_args_free(&a);
    return rc;
}

static int fn_inc(tg_task_ctx *ctx, void *ud)
{
    (void)ud;
    return step(ctx, "tg.inc", 1);
}

static int fn_dec(tg_task_ctx *ctx, void *ud)
{
    (void)ud;
    return step(ctx, "tg.dec", -1);
}

static int number_error(tg_task_ctx *ctx, const char *fname, size_t i,
                        const json_t *v)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s expects numbers, got %s as argument %zu",
             fname, tgw_json_type_name(v), i + 1);
    tg_task_set_error(ctx, "TypeError", msg, NULL);
    return -1;
}

static int fn_add(tg_task_ctx *ctx, void *ud)
{
    tgw_args a;
    acc sum = {true, 0, 0};
    int rc = -1;

    (void)ud;
    if (tgw_args_parse(ctx, "tg.add", &a) != 0)
        goto out;
    if (a.n < 2) {
        char msg[256];

        snprintf(msg, sizeof(msg),
                 "tg.add expects at least two numbers, got %zu argument%s", a.n,
                 plural(a.n));
        tg_task_set_error(ctx, "TypeError", msg, NULL);
        goto out;
    }
    for (size_t i = 0; i < a.n; i++) {
        if (!json_is_number(a.v[i])) {
            number_error(ctx, "tg.add", i, a.v[i]);
            goto out;
        }
        acc_add(&sum, a.v[i]);
    }
    rc = set_acc_result(ctx, &sum);
out:
    tgw_args_free(&a);
    return rc;
}

/* tg.sum: every number, with arrays flattened one level, so both
 * tg.sum([1,2,3]) and a sum over 100 dependency results work. */
static int fn_sum(tg_task_ctx *ctx, void *ud)
{
    tgw_args a;
    acc sum = {true, 0, 0};
    int rc = -1;

    (void)ud;
    if (tgw_args_parse(ctx, "tg.sum", &a) != 0)
        goto out;
    for (size_t i = 0; i < a.n; i++) {
        const json_t *v = a.v[i], *item;
        size_t j;

        if (json_is_array(v)) {
            json_array_foreach(v, j, item)
            {
                if (!json_is_number(item)) {
                    char msg[256];

                    snprintf(msg, sizeof(msg),
                             "tg.sum expects numbers or arrays of numbers, "
                             "got %s in argument %zu",
                             tgw_json_type_name(item), i + 1);
                    tg_task_set_error(ctx, "TypeError", msg, NULL);
                    goto out;
                }
                acc_add(&sum, item);
            }
        } else if (json_is_number(v)) {
            acc_add(&sum, v);
        } else {
            number_error(ctx, "tg.sum", i, v);
            goto out;
        }
    }
    rc = set_acc_result(ctx, &sum);
out:
    tgw_args_free(&a);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The others                                                          */
/* ------------------------------------------------------------------ */

static int fn_noop(tg_task_ctx *ctx, void *ud)
{
    (void)ctx;
    (void)ud;
    return 0; /* no result: an empty "raw" one */
}

static int fn_echo(tg_task_ctx *ctx, void *ud)
{
    size_t len;
    const uint8_t *in = tg_task_input(ctx, &len);

    (void)ud;
    return tg_task_set_result(ctx, in, len, tg_task_codec(ctx)) == TG_OK ? 0
                                                                         : -1;
}

/* Sleep in short slices so a cancel ends it within one slice. */
#define SLEEP_SLICE_NS 20000000L

static int fn_sleep(tg_task_ctx *ctx, void *ud)
{
    tgw_args a;
    struct timespec end;
    double secs;
    int rc = -1;

    (void)ud;
    if (tgw_args_parse(ctx, "tg.sleep", &a) != 0)
        goto out;
    if (a.n != 1 || !json_is_number(a.v[0]) ||
        !(json_number_value(a.v[0]) >= 0)) {
        char msg[256];

        if (a.n != 1)
            snprintf(msg, sizeof(msg),
                     "tg.sleep expects one number of seconds, got %zu "
                     "argument%s",
                     a.n, plural(a.n));
        else
            snprintf(msg, sizeof(msg),
                     "tg.sleep expects a non-negative number of seconds, "
                     "got %s",
                     json_is_number(a.v[0]) ? "a negative number"
                                            : tgw_json_type_name(a.v[0]));
        tg_task_set_error(ctx, "TypeError", msg, NULL);
        goto out;
    }
    secs = json_number_value(a.v[0]);
    if (secs > 1e9) /* ~31 years: still a representable deadline */
        secs = 1e9;
    end = tg__deadline_ns((int64_t)(secs * 1e9));
    for (;;) {
        struct timespec now, wake;

        if (tg_task_cancelled(ctx)) {
            tg_task_set_error(ctx, "tg.Cancelled", "tg.sleep was cancelled",
                              NULL);
            goto out;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!tg__ts_before(now, end))
            break;
        wake = tg__deadline_ns(SLEEP_SLICE_NS);
        if (tg__ts_before(end, wake))
            wake = end;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL);
    }
    rc = set_json_result(ctx, a.v[0]);
out:
    tgw_args_free(&a);
    return rc;
}

static int fn_fail(tg_task_ctx *ctx, void *ud)
{
    tgw_args a;
    tgw_buf b = {0};

    (void)ud;
    if (tgw_args_parse(ctx, "tg.fail", &a) != 0) {
        tgw_args_free(&a);
        return -1;
    }
    /* The message: a string argument as it is, anything else as JSON. */
    if (a.n == 1 && json_is_string(a.v[0])) {
        tg_task_set_error(ctx, "tg.Fail", json_string_value(a.v[0]), NULL);
    } else if (a.n == 0) {
        tg_task_set_error(ctx, "tg.Fail", "tg.fail was called", NULL);
    } else {
        for (size_t i = 0; i < a.n; i++) {
            if (i)
                tgw_buf_append(&b, " ", 1);
            tgw_json_write(&b, a.v[i]);
        }
        tgw_buf_append(&b, "", 1);
        tg_task_set_error(ctx, "tg.Fail",
                          b.oom ? "tg.fail was called" : (char *)b.ptr, NULL);
        tgw_buf_free(&b);
    }
    tgw_args_free(&a);
    return -1;
}

static int fn_print(tg_task_ctx *ctx, void *ud)
{
    tgw_args a;
    tgw_buf b = {0};
    int rc = -1;

    (void)ud;
    if (tgw_args_parse(ctx, "tg.print", &a) != 0)
        goto out;
    if (a.n != 1) {
        char msg[256];

        snprintf(msg, sizeof(msg),
                 "tg.print expects one argument, got %zu argument%s", a.n,
                 plural(a.n));
        tg_task_set_error(ctx, "TypeError", msg, NULL);
        goto out;
    }
    if (tgw_json_write(&b, a.v[0]) != TG_OK ||
        tgw_buf_append(&b, "\n", 1) != TG_OK) {
        tg_task_set_error(ctx, "MemoryError", "out of memory", NULL);
        goto out;
    }
    /* One locked write per line: lines from concurrent tasks never mix. */
    flockfile(stdout);
    fwrite(b.ptr, 1, b.len, stdout);
    fflush(stdout);
    funlockfile(stdout);
    rc = tg_task_set_result(ctx, b.ptr, b.len - 1, "json") == TG_OK ? 0 : -1;
out:
    tgw_buf_free(&b);
    tgw_args_free(&a);
    return rc;
}

int tgw_builtins_register(tg_registry *r)
{
    static const struct {
        const char *name;
        tg_task_fn fn;
    } table[] = {
        {"tg.noop", fn_noop}, {"tg.echo", fn_echo}, {"tg.sleep", fn_sleep},
        {"tg.inc", fn_inc},   {"tg.dec", fn_dec},   {"tg.add", fn_add},
        {"tg.sum", fn_sum},   {"tg.fail", fn_fail}, {"tg.print", fn_print},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int rc = tg_registry_add(r, table[i].name, table[i].fn, NULL);

        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}
