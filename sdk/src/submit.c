/* SPDX-License-Identifier: Apache-2.0
 *
 * submit.c: tg_client_submit: validating task definitions and sending a
 * whole graph in SubmitRequests bounded by count and by size, with the
 * releases of freed futures riding along.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "client_impl.h"
#include "methods.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"

/* Submit messages stay under a quarter of the message limit ("well under"
 * 64 MiB by default), so a worst-case size estimate never overflows. */
#define SUBMIT_BYTES_DIV 4

_Static_assert(TG_KEY_MAX == TG_PROTO_KEY_MAX,
               "the SDK's key limit is the protocol's");
/* ------------------------------------------------------------------ */
/* Submit                                                              */
/* ------------------------------------------------------------------ */

/* Upper bound of the encoded size of a string/bytes field. */
static size_t field_bound(size_t len)
{
    return len + 11; /* tag (1) + length varint (<= 10) */
}

/* Upper bound of one TaskSpec inside a SubmitRequest. */
static size_t spec_bound(const tg_task_def *t, size_t keylen)
{
    size_t n = 16 + field_bound(keylen) + field_bound(strlen(t->func)) +
               field_bound(t->input_len) +
               field_bound(t->codec ? strlen(t->codec) : 0) + 22 +
               field_bound(TG_KEY_MAX); /* the parent of nested work */

    for (size_t i = 0; i < t->ndeps; i++)
        n += field_bound(strlen(t->deps[i]));
    for (size_t i = 0; i < t->nresources; i++)
        n += 11 + field_bound(strlen(t->resources[i].name)) + 9;
    for (size_t i = 0; i < t->nworkers; i++)
        n += field_bound(strlen(t->workers[i]));
    return n;
}

int tg__client_check_resources(const char *what, size_t idx,
                               const tg_resource *res, size_t n)
{
    if (n > 0 && res == NULL)
        return tg__error_set(TG_EINVAL,
                             "%s %zu: nresources is %zu but "
                             "resources is NULL",
                             what, idx, n);
    if (n > 65535)
        return tg__error_set(TG_EINVAL, "%s %zu: more than 65535 resources",
                             what, idx);
    for (size_t i = 0; i < n; i++) {
        if (res[i].name == NULL || res[i].name[0] == '\0')
            return tg__error_set(TG_EINVAL,
                                 "%s %zu: resource %zu has no "
                                 "name",
                                 what, idx, i);
        if (!isfinite(res[i].amount) || res[i].amount < 0)
            return tg__error_set(TG_EINVAL,
                                 "%s %zu: resource '%s' needs a finite "
                                 "amount >= 0",
                                 what, idx, res[i].name);
    }
    return TG_OK;
}

/* Validate one definition; messages name the task by index and key. */
static int check_task(const tg_task_def *t, size_t i)
{
    const char *k = t->key ? t->key : "(generated)";

    if (t->version != TG_TASK_DEF_VERSION)
        return tg__error_set(TG_EINVAL,
                             "task %zu: tg_task_def version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_TASK_DEF_INIT)",
                             i, t->version, TG_TASK_DEF_VERSION);
    if (t->func == NULL || t->func[0] == '\0')
        return tg__error_set(TG_EINVAL, "task %zu ('%s'): no function", i, k);
    if (t->key != NULL && (t->key[0] == '\0' || strlen(t->key) > TG_KEY_MAX))
        return tg__error_set(TG_EINVAL, "task %zu: key must be 1 to %d bytes",
                             i, TG_KEY_MAX);
    if (t->input_len > 0 && t->input == NULL)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): input_len is %zu but input "
                             "is NULL",
                             i, k, t->input_len);
    if (t->ndeps > 0 && t->deps == NULL)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): ndeps is %zu but deps is "
                             "NULL",
                             i, k, t->ndeps);
    if (t->ndeps > 65535 || t->nworkers > 65535)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): more than 65535 deps or "
                             "workers",
                             i, k);
    for (size_t d = 0; d < t->ndeps; d++)
        if (t->deps[d] == NULL || t->deps[d][0] == '\0')
            return tg__error_set(
                TG_EINVAL, "task %zu ('%s'): dependency %zu is empty", i, k, d);
    if (t->nworkers > 0 && t->workers == NULL)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): nworkers is %zu but workers "
                             "is NULL",
                             i, k, t->nworkers);
    for (size_t w = 0; w < t->nworkers; w++)
        if (t->workers[w] == NULL || t->workers[w][0] == '\0')
            return tg__error_set(
                TG_EINVAL, "task %zu ('%s'): worker %zu is empty", i, k, w);
    return tg__client_check_resources("task", i, t->resources, t->nresources);
}

static void fill_spec(taskgrid_v1_TaskSpec *s, const tg_task_def *t,
                      const tg_future *f, taskgrid_v1_Resource *res,
                      const char *parent)
{
    memset(s, 0, sizeof(*s));
    s->parent = tg_pbbuf_str(parent);
    s->key = tg_pbbuf_mem(f->key, f->keylen);
    s->func = tg_pbbuf_str(t->func);
    s->input = tg_pbbuf_mem(t->input, t->input_len);
    s->codec = tg_pbbuf_str(t->codec);
    /* nanopb's encoder only reads these arrays; the casts drop const. */
    s->deps_count = (pb_size_t)t->ndeps;
    s->deps = (char **)(uintptr_t)t->deps;
    s->priority = t->priority;
    s->retries = t->retries;
    s->resources_count = (pb_size_t)t->nresources;
    s->resources = t->nresources ? res : NULL;
    for (size_t r = 0; r < t->nresources; r++) {
        res[r].name = tg_pbbuf_str(t->resources[r].name);
        res[r].amount = t->resources[r].amount;
    }
    s->workers_count = (pb_size_t)t->nworkers;
    s->workers = (char **)(uintptr_t)t->workers;
}

/* Send tasks [from, to) as one SubmitRequest. */
static int submit_chunk(tg_client *c, const tg_task_def *tasks, tg_future *fut,
                        size_t from, size_t to, taskgrid_v1_TaskSpec *specs,
                        taskgrid_v1_Resource *res, char **rel, size_t nrel)
{
    taskgrid_v1_SubmitRequest req;
    taskgrid_v1_SubmitResponse resp;
    uint8_t *raw;
    size_t r = 0;
    int rc;

    /* Nested work: children of the task this thread runs, if any. */
    const char *parent = tg__task_client_parent(c);

    memset(&req, 0, sizeof(req));
    for (size_t i = from; i < to; i++) {
        fill_spec(&specs[i - from], &tasks[i], &fut[i],
                  res != NULL ? res + r : NULL, parent);
        r += tasks[i].nresources;
    }
    req.tasks_count = (pb_size_t)(to - from);
    req.tasks = specs;
    req.client_id = tg_pbbuf_str(c->client_id);
    req.release_count = (pb_size_t)nrel;
    req.release = nrel ? rel : NULL;
    rc = tg__client_unary(c, TG_METHOD_SUBMIT, taskgrid_v1_SubmitRequest_fields,
                          &req, taskgrid_v1_SubmitResponse_fields, &resp, &raw,
                          c->timeout_ms);
    if (rc != TG_OK)
        return rc; /* the scheduler's message is in tg_error_last() */
    tg__wire_release(taskgrid_v1_SubmitResponse_fields, &resp);
    free(raw);
    return TG_OK;
}

int tg_client_submit(tg_client *c, const tg_task_def *tasks, size_t n,
                     tg_future **futures)
{
    tg__fslab *slab = NULL;
    tg_future *fut = NULL;
    taskgrid_v1_TaskSpec *specs = NULL;
    taskgrid_v1_Resource *res = NULL;
    size_t keybytes = 0, limit, maxres = 0, sent = 0;
    char *kp, *rel_arena = NULL, **rel = NULL;
    size_t rel_len = 0, nrel = 0;
    int rc;

    if (c == NULL || n == 0 || tasks == NULL || futures == NULL) {
        if ((rc = tg__client_enter(c, "tg_client_submit")) != TG_OK)
            return rc;
        if (n == 0)
            return TG_OK;
        return tg__error_set(TG_EINVAL,
                             "tg_client_submit: tasks or futures is NULL");
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_task(&tasks[i], i)) != TG_OK) {
            tg__client_flush_releases(c);
            return rc;
        }
        keybytes += tasks[i].key ? strlen(tasks[i].key) + 1
                                 : tg__key_prefix_len(tasks[i].func) + 18;
    }
    /* Keys of freed futures ride on the first Submit (SubmitRequest.release)
     * instead of costing a Release call of their own. */
    if (tg__shared_take_releases(c->sh, &rel_arena, &rel_len, &nrel)) {
        rel = nrel <= TG__CHUNK ? malloc(nrel * sizeof(*rel)) : NULL;
        if (rel == NULL) {
            tg__client_send_releases(c, rel_arena, nrel);
            nrel = 0;
        } else {
            const char *p = rel_arena;
            for (size_t i = 0; i < nrel; i++) {
                rel[i] = (char *)p;
                p += strlen(p) + 1;
            }
        }
    }

    rc = tg__fslab_new(c->sh, n, keybytes, &slab, &fut, &kp);
    if (rc != TG_OK) {
        if (nrel)
            tg__client_send_releases(c, rel_arena, nrel);
        free(rel);
        free(rel_arena);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;

        if (tasks[i].key) {
            len = strlen(tasks[i].key);
            memcpy(kp, tasks[i].key, len + 1);
        } else {
            len = tg__key_write(kp, tasks[i].func);
        }
        tg__future_set_key(&fut[i], kp, len);
        kp += len + 1;
    }
    /* Register first so that a concurrent free of another future with one
     * of these keys does not release it under our feet. */
    rc = tg__fslab_register(slab);
    if (rc != TG_OK) {
        tg__fslab_drop(slab);
        if (nrel)
            tg__client_send_releases(c, rel_arena, nrel);
        free(rel);
        free(rel_arena);
        return rc;
    }

    limit = c->max_message / SUBMIT_BYTES_DIV;
    specs = malloc((n < TG__CHUNK ? n : TG__CHUNK) * sizeof(*specs));
    if (specs == NULL) {
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto fail;
    }
    while (sent < n) {
        size_t end = sent, bytes = 0, nres = 0;

        /* Grow the chunk while it stays under TG__CHUNK tasks and `limit`
         * bytes; a single task may exceed `limit` up to the message
         * limit. */
        while (end < n && end - sent < TG__CHUNK) {
            size_t b = spec_bound(&tasks[end], fut[end].keylen);

            if (b > c->max_message) {
                rc = tg__error_set(TG_ETOOBIG,
                                   "task %zu ('%s') needs up to %zu bytes, "
                                   "over the %zu-byte message limit "
                                   "(tg_client_opts.max_message)",
                                   end, fut[end].key, b, c->max_message);
                goto fail;
            }
            if (end > sent && bytes + b > limit)
                break;
            bytes += b;
            nres += tasks[end].nresources;
            end++;
        }
        if (tg__array_grow_to(&res, &maxres, nres, sizeof(*res), nres,
                              SIZE_MAX) != TG_OK) {
            rc = tg__error_set(TG_ENOMEM, "out of memory");
            goto fail;
        }
        rc = submit_chunk(c, tasks, fut, sent, end, specs, res, rel, nrel);
        /* The scheduler applies the releases even when it refuses the
         * batch; on a transport failure they are lost, as a failed
         * Release call's would be (it costs memory, not correctness). */
        nrel = 0;
        if (rc != TG_OK)
            goto fail;
        sent = end;
    }
    free(specs);
    free(res);
    free(rel);
    free(rel_arena);
    for (size_t i = 0; i < n; i++)
        futures[i] = &fut[i];
    return TG_OK;

fail:
    /*
     * Free every future. Keys of chunks the scheduler accepted are
     * released (the normal path); keys never accepted are only dropped:
     * releasing them could drop a task another client submitted under the
     * same key.
     */
    if (nrel)
        tg__client_send_releases(c, rel_arena, nrel);
    free(rel);
    free(rel_arena);
    free(specs);
    free(res);
    tg__futures_discard(fut, n, sent);
    return rc;
}
