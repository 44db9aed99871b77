/* SPDX-License-Identifier: Apache-2.0
 *
 * life.c: the life cycle of the core and of its tasks: tgs_core_new and
 * tgs_core_free, forgetting tasks (out of the map at once) and freeing
 * them later, when no queued action can point at them any more (see the
 * invariants in internal.h); a forgotten result held on workers is
 * dropped there (data.c), and a forgotten task still named by lineage
 * links is parked (lineage.c). Depends on internal.h, data.c and
 * lineage.c.
 */
#include "scheduler/core/internal.h"

void tgs__task_free(tgs_core *c, tgs_task *t)
{
    if (t->state == TGS_MEMORY) {
        if (t->held)
            tgs__held_free(t);
        free(t->out.result);
    } else if (t->state == TGS_ERRED || t->state == TGS_CANCELLED)
        tgs__error_unref(t->out.error);
    if (t->cls != NULL)
        class_unref(c, t->cls);
    free(t->watchers);
    free(t->dependents);
    free(t);
}

/* Free the tasks forgotten by earlier events (tgs__sweep calls this when
 * there may be any). Deferred until the action queue is empty: queued
 * actions point at tasks, and the caller may read them (results, errors)
 * until it has popped them. */
void tgs__sweep_slow(tgs_core *c)
{
    if (c->alen != 0)
        return;
    while (c->graveyard != NULL) {
        tgs_task *t = c->graveyard;
        c->graveyard = t->u.link;
        if (t->lineage > 0)
            tgs__lineage_park(t); /* freed with its last lineage link */
        else
            tgs__task_free(c, t);
    }
    tgs__collect_classes(c);
}

void tgs__maybe_forget(tgs_core *c, tgs_task *t)
{
    if (!is_final(t->state) || t->holds != 0 || t->needed != 0 ||
        t->unfinished != 0 || (t->flags & (TF_PENDING | TF_FORGOTTEN)) != 0)
        return;
    tgs_map_remove(&c->tasks, t->hash, t);
    count_state(c, t, (tgs_state)t->state, TGS_RELEASED);
    t->flags |= TF_FORGOTTEN;
    if (t->nest & TN_KIN)
        tgs__kin_drop(c, t); /* it leaves the tree of nested work */
    if (t->held)
        tgs__held_forget(c, t); /* its holders drop it (TGS_ACT_FREE) */
    t->u.link = c->graveyard;
    c->graveyard = t;
    c->forgotten++;
}

int tgs_core_new(tgs_core **out, const tgs_core_opts *opts)
{
    if (out == NULL)
        return TGS_EINVAL;
    *out = NULL;
    tgs_core *c = calloc(1, sizeof *c);
    if (c == NULL)
        return TGS_ENOMEM;
    if (opts != NULL)
        c->opts = *opts;
    if (c->opts.no_worker_timeout_ms < 0)
        c->opts.no_worker_timeout_ms = 0;
    if (c->opts.allowed_failures == 0)
        c->opts.allowed_failures = DEFAULT_ALLOWED_FAILURES;
    if (c->opts.allowed_failures > UINT16_MAX) /* tgs_task.killed */
        c->opts.allowed_failures = UINT16_MAX;
    if (c->opts.max_prefetch == 0)
        c->opts.max_prefetch = DEFAULT_MAX_PREFETCH;
    if (c->opts.retry_backoff_ms == 0)
        c->opts.retry_backoff_ms = DEFAULT_RETRY_BACKOFF_MS;
    if (c->opts.retry_backoff_max_ms <= 0)
        c->opts.retry_backoff_max_ms = DEFAULT_RETRY_BACKOFF_MAX_MS;
    if (!(c->opts.transfer_bandwidth > 0) ||
        !isfinite(c->opts.transfer_bandwidth))
        c->opts.transfer_bandwidth = DEFAULT_TRANSFER_BANDWIDTH;
    *out = c;
    return TGS_OK;
}

static void map_free_values(tgs_map *m)
{
    for (size_t i = 0; i < tgs_map_capacity(m); i++)
        free(tgs_map_at(m, i));
    tgs_map_free(m);
}

void tgs_core_free(tgs_core *c)
{
    if (c == NULL)
        return;
    c->alen = 0;
    tgs__sweep(c);
    /* Lineage links first: they free the parked tasks they name. */
    if (c->nlinked > 0) {
        for (size_t i = 0; i < tgs_map_capacity(&c->tasks); i++) {
            tgs_task *t = tgs_map_at(&c->tasks, i);
            if (t != NULL && t->held)
                tgs__lineage_drop(c, t);
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->tasks); i++) {
        tgs_task *t = tgs_map_at(&c->tasks, i);
        if (t != NULL) {
            t->cls = NULL; /* classes go below, all at once */
            tgs__task_free(c, t);
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->funcs); i++) {
        tgs_func *f = tgs_map_at(&c->funcs, i);
        if (f == NULL)
            continue;
        for (uint32_t j = 0; j < f->nclasses; j++)
            tgs__class_free(f->classes[j]);
        free(f->classes);
        free(f);
    }
    for (size_t i = 0; i < c->nworkers; i++)
        tgs__worker_free(c->workers[i]);
    map_free_values(&c->codecs);
    map_free_values(&c->wnames);
    map_free_values(&c->rnames);
    map_free_values(&c->steals);
    tgs__kin_free_all(c);
    tgs_map_free(&c->tasks);
    tgs_map_free(&c->funcs);
    free(c->trans);
    tgs_map_free(&c->classes);
    tgs_map_free(&c->wmap);
    free(c->workers);
    free(c->cand);
    free(c->dirty);
    free(c->victims);
    free(c->starving);
    tg__heap_free(&c->timers);
    free(c->rsort);
    free(c->cres);
    free(c->cnames);
    free(c->pick);
    free(c->est);
    free(c->actions);
    free(c);
}

void tgs_core_set_hash_key(const uint8_t key[16])
{
    tgs_hash_seed(key);
}
