/* SPDX-License-Identifier: Apache-2.0
 *
 * accessors.c: queries that change nothing: tasks by key, counts per
 * state, the worker list, and the accessors of a task (borrowed results,
 * valid until the next event; see core.h). Depends on internal.h.
 */
#include "scheduler/core/internal.h"

const tgs_task *tgs_core_find(const tgs_core *c, tgs_str key)
{
    return c ? find_key(c, key) : NULL;
}

void tgs_core_counts(const tgs_core *c, uint64_t counts[TGS_NSTATES])
{
    if (c == NULL) {
        memset(counts, 0, TGS_NSTATES * sizeof counts[0]);
        return;
    }
    memcpy(counts, c->counts, TGS_NSTATES * sizeof counts[0]);
}

uint64_t tgs_core_unplaceable(const tgs_core *c)
{
    return c ? c->unplaceable : 0;
}

size_t tgs_core_nworkers(const tgs_core *c)
{
    return c ? c->nworkers : 0;
}

bool tgs_core_worker_at(const tgs_core *c, size_t i, tgs_worker_info *out)
{
    if (c == NULL || out == NULL || i >= c->nworkers)
        return false;
    const tgs_worker *w = c->workers[i];
    out->id = w->id;
    out->name = (tgs_str){w->name, w->name_len};
    out->nthreads = w->threads;
    out->processing = w->nprocs;
    out->seceded = w->nseceded;
    out->draining = w->draining;
    out->nfuncs = w->nfuncs;
    return true;
}

tgs_str tgs_task_key(const tgs_task *t)
{
    return str_of_key(t);
}

tgs_str tgs_task_func(const tgs_task *t)
{
    return (tgs_str){t->cls->func->name, t->cls->func->len};
}

tgs_str tgs_task_codec(const tgs_task *t)
{
    return istr(t->codec);
}

const uint8_t *tgs_task_input(const tgs_task *t, size_t *len)
{
    if (len != NULL)
        *len = t->input_len;
    return (const uint8_t *)task_key(t) + t->key_len;
}

tgs_state tgs_task_state(const tgs_task *t)
{
    return (tgs_state)t->state;
}

int32_t tgs_task_priority(const tgs_task *t)
{
    return t->priority;
}

uint32_t tgs_task_attempt(const tgs_task *t)
{
    return t->attempt;
}

uint32_t tgs_task_retries(const tgs_task *t)
{
    return t->retries;
}

bool tgs_task_worker(const tgs_task *t, uint64_t *wid)
{
    if (t->state != TGS_PROCESSING)
        return false;
    if (wid != NULL)
        *wid = t->u.worker->id;
    return true;
}

size_t tgs_task_ndeps(const tgs_task *t)
{
    return t->ndeps;
}

const tgs_task *tgs_task_dep(const tgs_task *t, size_t i)
{
    return i < t->ndeps && !is_final(t->state) ? t->deps[i] : NULL;
}

const uint8_t *tgs_task_result(const tgs_task *t, size_t *len)
{
    if (t->state != TGS_MEMORY || t->held) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = t->out.result->len;
    return t->out.result->data;
}

tgs_str tgs_task_result_codec(const tgs_task *t)
{
    return t->state == TGS_MEMORY ? istr(t->out.result->codec) : EMPTY;
}

static const tgs_error *task_error(const tgs_task *t)
{
    return (t->state == TGS_ERRED || t->state == TGS_CANCELLED) ? t->out.error
                                                                : NULL;
}

tgs_str tgs_task_err_type(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->type : EMPTY;
}

tgs_str tgs_task_err_message(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->message : EMPTY;
}

tgs_str tgs_task_err_traceback(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->traceback : EMPTY;
}

tgs_str tgs_task_err_origin(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e && (t->flags & TF_INHERITED) ? e->origin : EMPTY;
}

const uint8_t *tgs_task_err_data(const tgs_task *t, size_t *len)
{
    const tgs_error *e = task_error(t);

    *len = e ? e->payload.len : 0;
    return e && e->payload.len ? (const uint8_t *)e->payload.ptr : NULL;
}

tgs_str tgs_task_err_codec(const tgs_task *t)
{
    const tgs_error *e = task_error(t);
    return e ? e->payload_codec : EMPTY;
}

size_t tgs_task_nresources(const tgs_task *t)
{
    return t->cls->nres;
}

tgs_resource tgs_task_resource(const tgs_task *t, size_t i)
{
    if (i >= t->cls->nres)
        return (tgs_resource){EMPTY, 0};
    const tgs_cres *r = &t->cls->res[i];
    return (tgs_resource){istr(r->name), r->amount};
}

size_t tgs_task_nrestrictions(const tgs_task *t)
{
    return t->cls->nnames;
}

tgs_str tgs_task_restriction(const tgs_task *t, size_t i)
{
    return i < t->cls->nnames ? t->cls->names[i] : EMPTY;
}

uint64_t tgs_task_result_size(const tgs_task *t)
{
    return t->state == TGS_MEMORY ? t->out.result->len : 0;
}

bool tgs_task_held(const tgs_task *t)
{
    return t->held;
}

size_t tgs_task_nholders(const tgs_task *t)
{
    return t->held ? held_of(t)->nholders : 0;
}

bool tgs_task_holder(const tgs_task *t, size_t i, uint64_t *wid)
{
    if (!t->held || i >= held_of(t)->nholders)
        return false;
    if (wid != NULL)
        *wid = held_of(t)->holders[i].w->id;
    return true;
}
