/* SPDX-License-Identifier: Apache-2.0
 *
 * steal.c: work stealing. A worker left with idle threads and nothing
 * READY it can take asks the most loaded workers to hand back tasks they
 * have queued beyond their threads (TGS_ACT_STEAL); the answer is a
 * hand-back or a result, either of which resolves the request. Depends on
 * internal.h, hashmap.h (outstanding requests by task), util/heap.h and
 * actions.c.
 */
#include "scheduler/core/internal.h"

static tgs_steal *steal_find(const tgs_core *c, const tgs_task *t,
                             uint32_t *hash)
{
    *hash = tgs_hash32(&t, sizeof t);
    size_t pos = tgs_map_start(&c->steals, *hash);
    tgs_steal *s;
    while ((s = tgs_map_next(&c->steals, *hash, &pos)) != NULL)
        if (s->task == t)
            return s;
    return NULL;
}

/* The steal request for `t`, if any, is answered (hand-back, result,
 * cancel, lost worker): the idle worker it was for may ask again. The
 * victim's count is the caller's business. */
void tgs__steal_resolve(tgs_core *c, tgs_task *t)
{
    uint32_t h;
    tgs_steal *s = steal_find(c, t, &h);
    t->flags &= (uint8_t)~TF_STEALING;
    if (s == NULL)
        return;
    tgs_worker *thief = find_worker(c, s->thief);
    if (thief != NULL && thief->incoming > 0) {
        thief->incoming--;
        mark_dirty(c, thief); /* it may want to steal again */
    }
    tgs_map_remove(&c->steals, h, s);
    free(s);
}

/* Most queued per thread first, then earlier join. */
static int victim_cmp(const void *a, const void *b)
{
    const tgs_worker *x = *(tgs_worker *const *)a;
    const tgs_worker *y = *(tgs_worker *const *)b;
    uint64_t lx = (uint64_t)queued_on(x) * y->nthreads;
    uint64_t ly = (uint64_t)queued_on(y) * x->nthreads;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Steal candidates: a min-heap by assignment order. */
static inline bool earlier_assigned(const void *a, const void *b)
{
    return ((const tgs_task *)a)->aseq < ((const tgs_task *)b)->aseq;
}

/* Ask `v` to hand `t` back for `thief`. */
static bool steal_request(tgs_core *c, tgs_worker *v, tgs_task *t,
                          tgs_worker *thief)
{
    uint32_t h = tgs_hash32(&t, sizeof t);
    tgs_steal *s = malloc(sizeof *s);
    if (s == NULL || tgs_map_reserve(&c->steals, 1) != TGS_OK ||
        tgs__action_push(c, TGS_ACT_STEAL, v->id, 0, t) != TGS_OK) {
        free(s);
        return false;
    }
    s->task = t;
    s->thief = thief->id;
    tgs_map_insert(&c->steals, h, s);
    c->queued -= queued_on(v);
    t->flags |= TF_STEALING;
    v->nsteal++;
    c->queued += queued_on(v);
    thief->incoming++;
    return true;
}

/*
 * Worker `th` has `want` idle threads and nothing READY it can take: ask
 * the most loaded workers to hand back queued tasks it could run now (its
 * classes, with free resources for it), up to `want` in all and never
 * more than a victim has queued beyond its threads. Candidates are the
 * tasks a victim received last: the worker runs in (priority, arrival)
 * order, so those are the least likely to have started; a started one is
 * no harm (the victim answers with its result instead).
 *
 * A look that finds nothing is not repeated until a task of one of its
 * classes is queued somewhere (the sum of their nqueued grows) or the
 * thief's own load or resources change: otherwise idle workers that share
 * a function with busy ones but cannot take their queued tasks would scan
 * them at every event.
 */
void tgs__steal_for(tgs_core *c, tgs_worker *th, uint32_t want)
{
    bool any = false;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < th->nclasses; i++) {
        tgs_class *k = th->classes[i];
        if (k->nprocessing > 0 && (k->nres == 0 || res_free(th, k))) {
            k->scratch = 1;
            seen += k->nqueued;
            any = true;
        }
    }
    if (th->steal_memo && th->steal_seen == seen)
        any = false;
    uint32_t wanted = want;
    size_t nv = 0;
    for (size_t i = 0; any && i < c->nworkers; i++) {
        tgs_worker *v = c->workers[i];
        if (v != th && queued_on(v) > 0)
            c->victims[nv++] = v;
    }
    if (nv > 1)
        qsort(c->victims, nv, sizeof *c->victims, victim_cmp);
    for (size_t vi = 0; vi < nv && want > 0; vi++) {
        tgs_worker *v = c->victims[vi];
        uint32_t take = queued_on(v) < want ? queued_on(v) : want;
        if (take == 0 || tg__array_grow(&c->pick, &c->cappick, take,
                                        sizeof *c->pick) != TG_OK)
            continue;
        /* The `take` most recently assigned candidates: a min-heap by
         * assignment order, O(procs log take). */
        size_t n = 0;
        for (uint32_t i = 0; i < v->nprocs; i++) {
            tgs_task *t = v->procs[i];
            if (!t->cls->scratch || (t->flags & TF_STEALING))
                continue;
            if (n < take) {
                c->pick[n++] = t;
                tg__heap_sift_up(c->pick, n - 1, earlier_assigned, NULL);
            } else if (earlier_assigned(c->pick[0], t)) {
                c->pick[0] = t;
                tg__heap_sift_down(c->pick, n, 0, earlier_assigned, NULL);
            }
        }
        for (size_t i = 0; i < n && want > 0; i++)
            if (steal_request(c, v, c->pick[i], th))
                want--;
    }
    for (uint32_t i = 0; i < th->nclasses; i++)
        th->classes[i]->scratch = 0;
    th->steal_memo = want == wanted;
    th->steal_seen = seen;
}
