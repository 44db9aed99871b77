/* SPDX-License-Identifier: Apache-2.0
 *
 * workers.c: the worker table: workers joining (their functions,
 * capacities, whether they can fetch, and the classes they could ever
 * run), leaving (their tasks are handed to failure.c, the results they
 * held to data.c), draining, pausing (no new work while its memory is
 * over its pause fraction), and the set of tasks processing on each
 * (`procs`, each task recording its index). Depends on internal.h,
 * intern.c, classes.c, resources.c, ready.c, steal.c, failure.c and
 * data.c.
 */
#include "scheduler/core/internal.h"

void tgs__worker_free(tgs_worker *w)
{
    tgs__copies_worker_gone(w);
    free(w->store);
    free(w->funcs);
    free(w->res);
    free(w->classes);
    free(w->procs);
    free(w);
}

/* A draining worker closes once nothing runs there and it holds no
 * result: closing it would lose them (there is no other copy). */
void tgs__maybe_close(tgs_core *c, tgs_worker *w)
{
    if (w->draining && w->nprocs == 0 && (w->nstore == 0 || w->abandon) &&
        !w->close_sent &&
        tgs__action_push(c, TGS_ACT_CLOSE_WORKER, w->id, 0, NULL) == TGS_OK)
        w->close_sent = true;
}

/* Take a PROCESSING task off its worker, which lets go of its resources
 * (state is the caller's job). */
void tgs__proc_remove(tgs_core *c, tgs_task *t)
{
    tgs_worker *w = t->u.worker;
    tgs_class *k = t->cls;
    c->queued -= queued_on(w);
    tgs__secede_clear(w, t);
    if (t->flags & TF_STEALING) {
        tgs__steal_resolve(c, t);
        w->nsteal--;
    }
    if (k->nres)
        tgs__res_release(w, k);
    k->nprocessing--;
    if (t->flags & TF_QUARANTINE) {
        t->flags &= (uint8_t)~TF_QUARANTINE;
        w->nquarantine--;
    }
    w->steal_memo = false; /* its resources or load changed */
    w->disp_memo = false;
    uint32_t i = t->pos;
    tgs_task *last = w->procs[--w->nprocs];
    if (last != t) {
        w->procs[i] = last;
        last->pos = i;
    }
    c->queued += queued_on(w);
    if (w->nprocs == 0)
        w->floor = INT32_MAX;
    t->u.worker = NULL;
    mark_dirty(c, w);
    tgs__maybe_close(c, w);
}

/* Room for one more worker in the worker table and in the scratch
 * arrays sized like it (all share capworkers). */
static int grow_workers(tgs_core *c)
{
    size_t need = c->nworkers + 1;
    if (need <= c->capworkers)
        return TGS_OK;
    size_t cap[3] = {c->capworkers, c->capworkers, c->capworkers};
    size_t capw = c->capworkers;
    if (tg__array_grow(&c->cand, &cap[0], need, sizeof *c->cand) != TG_OK ||
        tg__array_grow(&c->dirty, &cap[1], need, sizeof *c->dirty) != TG_OK ||
        tg__array_grow(&c->victims, &cap[2], need, sizeof *c->victims) !=
            TG_OK ||
        tg__array_grow(&c->workers, &capw, need, sizeof *c->workers) != TG_OK)
        return TGS_ENOMEM;
    /* Each doubled from the same capacity to the same one. */
    c->capworkers = capw;
    return TGS_OK;
}

/* A worker's capacities: names interned, the last of a repeated name. */
static int worker_resources(tgs_core *c, tgs_worker *w, const tgs_resource *res,
                            size_t n)
{
    if (n > UINT32_MAX)
        return TGS_EINVAL;
    w->res = malloc((n + 1) * sizeof *w->res);
    if (w->res == NULL)
        return TGS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const tgs_istr *name;
        if (res[i].name.len == 0)
            continue;
        int rc = tgs__intern_str(&c->rnames, res[i].name, &name);
        if (rc != TGS_OK)
            return rc;
        tgs_wres *r = wres_find(w, name);
        if (r == NULL)
            r = &w->res[w->nres++];
        *r = (tgs_wres){name, res[i].amount, 0};
    }
    return TGS_OK;
}

/* The classes `w` could ever run, from those of the functions it
 * provides. */
static int worker_classes(tgs_worker *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nfuncs; i++)
        n += w->funcs[i]->nclasses;
    if (n > UINT32_MAX / 2)
        return TGS_ENOMEM;
    if (tgs__class_list_reserve(&w->classes, &w->capclasses, n + 1) != TGS_OK)
        return TGS_ENOMEM;
    for (size_t i = 0; i < w->nfuncs; i++) {
        tgs_func *f = w->funcs[i];
        for (uint32_t j = 0; j < f->nclasses; j++)
            if (tgs__class_fits(w, f->classes[j]))
                w->classes[w->nclasses++] = f->classes[j];
    }
    return TGS_OK;
}

static int add_worker(tgs_core *c, uint64_t wid, const tgs_worker_spec *ws)
{
    if (find_worker(c, wid) != NULL)
        return TGS_EEXIST;
    if (grow_workers(c) != TGS_OK || tgs_map_reserve(&c->wmap, 1) != TGS_OK)
        return TGS_ENOMEM;
    tgs_worker *w = calloc(1, sizeof *w + ws->name.len + 1);
    if (w == NULL)
        return TGS_ENOMEM;
    if (ws->name.len)
        memcpy(w->name, ws->name.ptr, ws->name.len);
    w->name_len = ws->name.len;
    w->id = wid;
    w->hash = tgs_hash32(&wid, sizeof wid);
    w->nthreads = ws->nthreads;
    w->threads = ws->nthreads;
    w->can_fetch = ws->can_fetch;
    w->floor = INT32_MAX;
    w->funcs = malloc((ws->nfuncs + 1) * sizeof *w->funcs);
    int rc = w->funcs ? TGS_OK : TGS_ENOMEM;
    /* Intern the functions, once each (`scratch` marks those seen). */
    for (size_t i = 0; i < ws->nfuncs && rc == TGS_OK; i++) {
        tgs_func *f;
        if (ws->funcs[i].len == 0 || ws->funcs[i].ptr == NULL)
            continue;
        rc = tgs__intern_func(c, ws->funcs[i], &f);
        if (rc == TGS_OK && !f->scratch) {
            f->scratch = 1;
            w->funcs[w->nfuncs++] = f;
        }
    }
    for (size_t i = 0; i < w->nfuncs; i++)
        w->funcs[i]->scratch = 0;
    if (rc == TGS_OK)
        rc = tgs__intern_str(
            &c->wnames,
            (tgs_str){ws->name.len ? ws->name.ptr : "", ws->name.len},
            &w->iname);
    if (rc == TGS_OK)
        rc = worker_resources(c, w, ws->resources, ws->nresources);
    if (rc == TGS_OK)
        rc = worker_classes(w);
    if (rc != TGS_OK) {
        tgs__worker_free(w);
        return rc;
    }
    w->order = c->next_order++;
    w->index = c->nworkers;
    c->workers[c->nworkers++] = w;
    tgs_map_insert(&c->wmap, w->hash, w);
    tgs__worker_link(c, w, +1);
    mark_dirty(c, w);
    return TGS_OK;
}

int tgs_core_worker_add(tgs_core *c, uint64_t wid, const tgs_worker_spec *ws,
                        int64_t now_ms)
{
    if (c == NULL || ws == NULL || ws->nthreads == 0 ||
        (ws->nfuncs > 0 && ws->funcs == NULL) ||
        (ws->nresources > 0 && ws->resources == NULL) ||
        (ws->name.len > 0 && ws->name.ptr == NULL))
        return TGS_EINVAL;
    for (size_t i = 0; i < ws->nresources; i++)
        if ((ws->resources[i].name.len > 0 &&
             ws->resources[i].name.ptr == NULL) ||
            !amount_ok(ws->resources[i].amount))
            return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    int rc = add_worker(c, wid, ws);
    c->evac_dirty = c->nevacuating > 0; /* somewhere to move results to */
    tgs__schedule(c); /* the new worker, and retries that became due */
    return rc;
}

/* Take `w` out of the worker table, its map and the dirty list. */
static void unlink_worker(tgs_core *c, tgs_worker *w)
{
    if (!w->draining)
        tgs__worker_link(c, w, -1);
    if (w->evacuate)
        c->nevacuating--;
    tgs_map_remove(&c->wmap, w->hash, w);
    memmove(&c->workers[w->index], &c->workers[w->index + 1],
            (c->nworkers - w->index - 1) * sizeof *c->workers);
    c->nworkers--;
    for (size_t i = w->index; i < c->nworkers; i++)
        c->workers[i]->index = i;
    if (w->dirty) {
        for (size_t i = 0; i < c->ndirty; i++) {
            if (c->dirty[i] == w) {
                c->dirty[i] = c->dirty[--c->ndirty];
                break;
            }
        }
    }
    c->queued -= queued_on(w);
}

/* The start of an event about worker `wid`: the worker, or NULL when it
 * is unknown (the event is then over: the caller returns TGS_ENOTFOUND). */
static tgs_worker *worker_event(tgs_core *c, uint64_t wid, int64_t now_ms)
{
    tgs__event_begin(c, now_ms);
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL)
        tgs__schedule(c);
    return w;
}

int tgs_core_worker_remove(tgs_core *c, uint64_t wid, int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs_worker *w = worker_event(c, wid, now_ms);
    if (w == NULL)
        return TGS_ENOTFOUND;
    unlink_worker(c, w);
    tgs__requeue_lost(c, w);
    tgs__store_lost(c, w); /* after: no task runs there any more */
    tgs__worker_free(w);
    tgs__schedule(c);
    return TGS_OK;
}

void tgs__drain(tgs_core *c, tgs_worker *w)
{
    if (!w->draining) {
        w->draining = true;
        tgs__worker_link(c, w, -1);
    }
    tgs__maybe_close(c, w);
}

int tgs_core_worker_drain(tgs_core *c, uint64_t wid, int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs_worker *w = worker_event(c, wid, now_ms);
    if (w == NULL)
        return TGS_ENOTFOUND;
    tgs__drain(c, w);
    tgs__schedule(c);
    return TGS_OK;
}

int tgs_core_worker_pause(tgs_core *c, uint64_t wid, bool paused,
                          int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs_worker *w = worker_event(c, wid, now_ms);
    if (w == NULL)
        return TGS_ENOTFOUND;
    if (w->paused && !paused)
        mark_dirty(c, w); /* a candidate again */
    w->paused = paused;
    tgs__schedule(c);
    return TGS_OK;
}
