/* SPDX-License-Identifier: Apache-2.0
 *
 * task.c: task creation (one allocation per assignment), the outcome rules
 * of tgw_task_run, and the tg_task_* accessors of the plug-in ABI (see
 * task.h and taskgrid/plugin.h); marks the running task for the
 * worker-side client (util/nest.h). Depends on libc, the registry and the
 * executor's secede/rejoin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "task.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/nest.h"

/* Placement helper: hands out aligned pieces of the task's allocation. */
typedef struct arena {
    uint8_t *p;
} arena;

static void *take(arena *a, size_t n, size_t align)
{
    uintptr_t u = ((uintptr_t)a->p + (align - 1)) & ~(uintptr_t)(align - 1);

    a->p = (uint8_t *)u + n;
    return (void *)u;
}

/* Copy `b` as a NUL-terminated string into the arena. */
static char *take_str(arena *a, tgw_bytes b)
{
    char *s = take(a, b.len + 1, 1);

    if (b.len)
        memcpy(s, b.ptr, b.len);
    s[b.len] = '\0';
    return s;
}

/* Codecs are stored with "raw" for the empty tag, the proto's default. */
static tgw_bytes codec_or_raw(tgw_bytes c)
{
    if (c.len == 0) {
        c.ptr = (const uint8_t *)"raw";
        c.len = 3;
    }
    return c;
}

/* True if the dependency's bytes are held elsewhere (see tgw_dep_spec). */
static bool dep_is_held(const tgw_dep_spec *d)
{
    return d->data.len == 0 && d->nholders > 0;
}

/* Bytes a held dependency adds to the task's allocation: its key, the
 * holder pointers (aligned) and their strings. */
static size_t held_size(const tgw_dep_spec *d)
{
    size_t n = d->key.len + 1 + d->nholders * sizeof(char *) + sizeof(char *);

    for (size_t i = 0; i < d->nholders; i++)
        n += strlen(d->holders[i]) + 1;
    return n;
}

/* Copy a held dependency's key and holders into the arena. */
static void take_held(arena *a, tgw_dep *dep, const tgw_dep_spec *d)
{
    const char **hs = take(a, d->nholders * sizeof(char *), sizeof(char *));

    dep->key = take_str(a, d->key);
    dep->key_len = d->key.len;
    dep->size = d->size;
    for (size_t i = 0; i < d->nholders; i++) {
        tgw_bytes h = {(const uint8_t *)d->holders[i], strlen(d->holders[i])};

        hs[i] = take_str(a, h);
    }
    dep->holders = hs;
    dep->nholders = d->nholders;
}

int tgw_task_new(tg_task_ctx **out, const tgw_task_spec *spec,
                 const tg_registry *reg)
{
    tgw_bytes codec = codec_or_raw(spec->codec);
    size_t size = sizeof(tg_task_ctx) + spec->key.len + spec->func.len +
                  spec->input.len + codec.len + 3 +
                  spec->ndeps * sizeof(tgw_dep) + _Alignof(tgw_dep) + 1;
    tg_task_ctx *t;
    uint8_t *mem;
    arena a;

    *out = NULL;
    for (size_t i = 0; i < spec->ndeps; i++) {
        size +=
            spec->deps[i].data.len + codec_or_raw(spec->deps[i].codec).len + 1;
        if (dep_is_held(&spec->deps[i]))
            size += held_size(&spec->deps[i]);
    }
    mem = malloc(size);
    if (mem == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory for task '%.*s'",
                             (int)spec->key.len, (const char *)spec->key.ptr);
    t = (tg_task_ctx *)mem;
    memset(t, 0, sizeof(*t));
    a.p = mem + sizeof(*t);
    t->deps = take(&a, spec->ndeps * sizeof(tgw_dep), _Alignof(tgw_dep));
    t->key = take_str(&a, spec->key);
    t->key_len = spec->key.len;
    t->func = take_str(&a, spec->func);
    t->codec = take_str(&a, codec);
    t->input = take(&a, spec->input.len, 1);
    if (spec->input.len)
        memcpy((uint8_t *)t->input, spec->input.ptr, spec->input.len);
    t->input_len = spec->input.len;
    for (size_t i = 0; i < spec->ndeps; i++) {
        const tgw_dep_spec *d = &spec->deps[i];
        tgw_dep *dep = &t->deps[i];
        uint8_t *data = take(&a, d->data.len, 1);

        memset(dep, 0, sizeof(*dep));
        if (d->data.len)
            memcpy(data, d->data.ptr, d->data.len);
        dep->data = data;
        dep->len = d->data.len;
        dep->codec = take_str(&a, codec_or_raw(d->codec));
        if (dep_is_held(d)) {
            take_held(&a, dep, d);
            dep->data = NULL;
            t->nheld++;
        }
    }
    t->ndeps = spec->ndeps;
    t->attempt = spec->attempt;
    t->priority = spec->priority;
    atomic_init(&t->cancelled, false);
    t->fn = reg ? tgw_registry_find(reg, t->func) : NULL;
    *out = t;
    return TG_OK;
}

static void clear_outcome(tg_task_ctx *t)
{
    t->held = false;
    free(t->data);
    free(t->out_codec);
    free(t->err_type);
    free(t->err_message);
    free(t->err_traceback);
    t->data = NULL;
    t->data_len = 0;
    t->out_codec = NULL;
    t->err_type = t->err_message = t->err_traceback = NULL;
    t->erred = false;
}

void tgw_task_free(tg_task_ctx *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; t->nheld > 0 && i < t->ndeps; i++)
        if (t->deps[i].unhold != NULL)
            t->deps[i].unhold(t->deps[i].hold);
    clear_outcome(t);
    free(t);
}

static const char *nest_key(tg_task_ctx *t)
{
    return t->key;
}

static const tg__nest_ops nest_ops = {tg__exec_secede, tg__exec_rejoin,
                                      nest_key};

void tgw_task_run(tg_task_ctx *t)
{
    char msg[512];
    int rc;

    if (t->fn == NULL) {
        snprintf(msg, sizeof(msg), "this worker does not provide function '%s'",
                 t->func);
        tg_task_set_error(t, "tg.UnknownFunction", msg, NULL);
        return;
    }
    /* The worker-side client (tg_task_client) finds the task it runs in,
     * and secedes it while it waits on nested work. */
    tg__nest_enter(t, &nest_ops);
    int64_t start = tg__now_us();
    rc = t->fn->fn(t, t->fn->userdata);
    int64_t ran = tg__now_us() - start;
    t->run_us = ran > 0 ? (uint64_t)ran : 0;
    tg__nest_leave();
    if (t->erred)
        return;
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s returned %d without an error message",
                 t->func, rc);
        tg_task_set_error(t, "tg.TaskError", msg, NULL);
    }
}

const char *tgw_task_result_codec(const tg_task_ctx *t)
{
    return t->out_codec ? t->out_codec : "raw";
}

size_t tgw_task_result_size(const tg_task_ctx *t)
{
    size_t n = t->key_len + (t->held ? 0 : t->data_len) + 32;

    if (t->out_codec)
        n += strlen(t->out_codec);
    if (t->erred)
        n += (t->err_type ? strlen(t->err_type) : 0) +
             (t->err_message ? strlen(t->err_message) : 0) +
             (t->err_traceback ? strlen(t->err_traceback) : 0) + 8;
    return n;
}

bool tgw_task_limit_result(tg_task_ctx *t, size_t max_bytes)
{
    char msg[512];
    size_t size = tgw_task_result_size(t);

    if (t->held || size <= max_bytes)
        return false;
    if (t->erred) {
        /* Keep the type and the start of the text. */
        size_t room = max_bytes / 4;

        if (t->err_message && strlen(t->err_message) > room)
            t->err_message[room] = '\0';
        if (t->err_traceback && strlen(t->err_traceback) > room)
            t->err_traceback[room] = '\0';
        return true;
    }
    snprintf(msg, sizeof(msg),
             "the result of %s is %zu bytes (codec %s), over the %zu-byte "
             "limit of one message (%.1f MiB); this worker sends results "
             "inside messages (it has no data service, --data-listen none, "
             "or its scheduler keeps every result inline): return a "
             "smaller value, or run the worker with a data service",
             t->func ? t->func : "the task", t->data_len,
             tgw_task_result_codec(t), max_bytes,
             (double)max_bytes / (1024.0 * 1024.0));
    tg_task_set_error(t, "tg.ResultTooLarge", msg, NULL);
    return true;
}

/* ------------------------------------------------------------------ */
/* The plug-in ABI                                                     */
/* ------------------------------------------------------------------ */

const uint8_t *tg_task_input(tg_task_ctx *ctx, size_t *len)
{
    if (len)
        *len = ctx->input_len;
    return ctx->input;
}

const char *tg_task_codec(tg_task_ctx *ctx)
{
    return ctx->codec;
}

const char *tg_task_key(tg_task_ctx *ctx)
{
    return ctx->key;
}

const char *tg_task_func(tg_task_ctx *ctx)
{
    return ctx->func;
}

size_t tg_task_ndeps(tg_task_ctx *ctx)
{
    return ctx->ndeps;
}

const uint8_t *tg_task_dep(tg_task_ctx *ctx, size_t i, size_t *len)
{
    if (i >= ctx->ndeps) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = ctx->deps[i].len;
    return ctx->deps[i].data;
}

const char *tg_task_dep_codec(tg_task_ctx *ctx, size_t i)
{
    return i < ctx->ndeps ? ctx->deps[i].codec : NULL;
}

int tg_task_set_result(tg_task_ctx *ctx, const void *data, size_t len,
                       const char *codec)
{
    uint8_t *copy = NULL;
    char *ccopy = NULL;

    if (data == NULL && len > 0)
        return tg__error_set(TG_EINVAL, "tg_task_set_result: NULL data");
    if (len > 0) {
        copy = malloc(len);
        if (copy == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        memcpy(copy, data, len);
    }
    if (codec != NULL && *codec != '\0' && strcmp(codec, "raw") != 0) {
        ccopy = strdup(codec);
        if (ccopy == NULL) {
            free(copy);
            return tg__error_set(TG_ENOMEM, "out of memory");
        }
    }
    free(ctx->data);
    free(ctx->out_codec);
    ctx->data = copy;
    ctx->data_len = len;
    ctx->out_codec = ccopy;
    return TG_OK;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int tg_task_set_error(tg_task_ctx *ctx, const char *type, const char *message,
                      const char *traceback)
{
    char *t = strdup(type && *type ? type : "tg.TaskError");
    char *m = dup_or_empty(message);
    char *tb = dup_or_empty(traceback);

    /* An error replaces any result set before it. Out of memory, the task
     * still fails (with whatever text could be copied): reporting success
     * instead would be worse. */
    clear_outcome(ctx);
    ctx->erred = true;
    ctx->err_type = t;
    ctx->err_message = m;
    ctx->err_traceback = tb;
    if (t == NULL || m == NULL || tb == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    return TG_OK;
}

bool tg_task_cancelled(tg_task_ctx *ctx)
{
    return atomic_load_explicit(&ctx->cancelled, memory_order_relaxed);
}

uint32_t tg_task_attempt(tg_task_ctx *ctx)
{
    return ctx->attempt;
}
