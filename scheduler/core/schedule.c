/* SPDX-License-Identifier: Apache-2.0
 *
 * schedule.c: assignment, the end of every event: READY tasks go to the
 * least loaded worker that can take one (a heap of candidate workers,
 * util/heap.h), each worker taking the best top among the ready heaps of
 * its classes where it has room (its prefetch depth for the function,
 * free resources) or, full, in place of a lower-priority task it has
 * queued, then idle workers steal (steal.c). Depends on internal.h,
 * ready.c, resources.c, actions.c and steal.c.
 */
#include "scheduler/core/internal.h"

/*
 * How many tasks of `f` worker `w` may hold at once: its threads plus a
 * prefetch queue holding about PREFETCH_TARGET_MS of work per thread,
 * that is nthreads * (10 ms / avg run time), clamped to
 * [nthreads, max_prefetch]. Before any run time is known, prefetch =
 * nthreads. Millisecond clocks measure short tasks as 0 ms: their average
 * tends to 0 and the prefetch to max_prefetch, which is right for them.
 * (Tasks with resources are further bounded by the resources.)
 */
static uint64_t capacity(const tgs_core *c, const tgs_worker *w,
                         const tgs_func *f)
{
    double nt = w->nthreads;
    double maxp = c->opts.max_prefetch;
    double p;
    if (!f->avg_known)
        p = nt;
    else if (f->avg_ms * maxp <= PREFETCH_TARGET_MS * nt)
        p = maxp;
    else
        p = nt * PREFETCH_TARGET_MS / f->avg_ms;
    if (p < nt)
        p = nt;
    if (p > maxp)
        p = maxp;
    return w->nthreads + (uint64_t)p;
}

/* Candidate workers: lower processing/nthreads first, then earlier
 * join. */
static inline bool lighter(const void *x, const void *y)
{
    const tgs_worker *a = x, *b = y;
    uint64_t la = (uint64_t)a->nprocs * b->nthreads;
    uint64_t lb = (uint64_t)b->nprocs * a->nthreads;
    return la != lb ? la < lb : a->order < b->order;
}

static int assign(tgs_core *c, tgs_worker *w, tgs_task *t)
{
    if (w->nprocs == w->capprocs &&
        tg__array_grow_to(&w->procs, &w->capprocs, (size_t)w->nprocs + 1,
                          sizeof *w->procs, 8, UINT32_MAX) != TG_OK)
        return TGS_ENOMEM;
    if (tgs__action_push(c, TGS_ACT_ASSIGN, w->id, 0, t) != TGS_OK)
        return TGS_ENOMEM;
    tgs_class *k = t->cls;
    tgs__ready_remove(c, t);
    set_state(c, t, TGS_PROCESSING);
    if (k->nres)
        tgs__res_hold(w, k);
    k->nprocessing++;
    if (w->nprocs >= w->nthreads) {
        k->nqueued++; /* queued there: something to steal, perhaps */
        t->flags &= (uint8_t)~TF_DIRECT;
    } else {
        t->flags |= TF_DIRECT;
    }
    t->u.worker = w;
    if (t->priority < w->floor)
        w->floor = t->priority;
    w->disp_memo = false;
    t->at.assigned_ms = c->now;
    t->aseq = c->next_aseq++;
    if (t->killed > 0) {
        t->flags |= TF_QUARANTINE;
        w->nquarantine++;
    }
    c->queued -= queued_on(w);
    t->pos = w->nprocs;
    w->procs[w->nprocs++] = t;
    c->queued += queued_on(w);
    return TGS_OK;
}

/*
 * The task `w` should take next: the best (priority, then FIFO) among the
 * tops of the class heaps it could run, where it has room: its prefetch
 * capacity for the function, and free resources for a class with some.
 * Tops that would not win anyway are skipped before the room checks.
 * Always inline: it is the inner loop of every assignment.
 */
static inline __attribute__((always_inline)) tgs_task *pick(const tgs_core *c,
                                                            const tgs_worker *w)
{
    tgs_task *best = NULL;
    /* Quarantine: a task that was running on a worker that died runs
     * alone, so if its worker dies again the blame is exact and the tasks
     * that shared a worker with it by chance are not failed with it.
     * Known cost: while such a task heads its class queue, that queue
     * waits until a worker that can run it is idle (a short bubble after
     * a loss), which keeps a pick at O(classes of the worker). */
    if (w->nquarantine > 0)
        return NULL;
    for (uint32_t i = 0; i < w->nclasses; i++) {
        const tgs_class *k = w->classes[i];
        tgs_task *top = tg__heap_top(&k->ready);
        if (top == NULL || (best != NULL && !task_before(top, best)))
            continue;
        if (w->nprocs > 0 && top->killed > 0)
            continue;
        if (w->nprocs >= capacity(c, w, k->func) ||
            (k->nres != 0 && !res_free(w, k)))
            continue;
        best = top;
    }
    return best;
}

/*
 * Hand READY tasks to workers, one at a time to the least loaded
 * (processing/nthreads) worker that can take one, so load spreads evenly:
 * O(classes of the worker + log tasks) per assignment (see pick()).
 *
 * Only workers that may have changed are considered: all of them when
 * READY tasks appeared, else those whose load dropped or that joined.
 * Capacity of others is unchanged, and they were already full or without
 * work after the previous pass.
 *
 * A worker without room still takes a READY task of higher priority than
 * one it has queued, which it hands back (see tgs__displace()).
 *
 * Then rebalance: a considered worker left with idle threads (and nothing
 * it can take) steals queued tasks from busy ones (see tgs__steal_for()).
 */
void tgs__schedule(tgs_core *c)
{
    size_t n = 0;
    if (c->counts[TGS_READY] > 0 || c->queued > 0) {
        if (c->ready_added) {
            for (size_t i = 0; i < c->nworkers; i++)
                if (!c->workers[i]->draining)
                    c->cand[n++] = c->workers[i];
        } else {
            for (size_t i = 0; i < c->ndirty; i++)
                if (!c->dirty[i]->draining)
                    c->cand[n++] = c->dirty[i];
        }
    }
    for (size_t i = 0; i < c->ndirty; i++)
        c->dirty[i]->dirty = false;
    c->ndirty = 0;
    c->ready_added = false;

    /* Candidates a pass leaves are swapped behind the heap, so that
     * cand[0, ncand) still holds them all for the rebalancing below. */
    size_t ncand = n;
    tg__heap_heapify(c->cand, n, lighter, NULL);
    while (n > 0 && c->counts[TGS_READY] > 0) {
        tgs_worker *w = c->cand[0];
        tgs_task *best = pick(c, w);
        if (best == NULL)
            best = tgs__displace(c, w); /* in place of a lower one */
        if (best == NULL) {
            c->cand[0] = c->cand[--n];
            c->cand[n] = w;
            if (n > 0)
                tg__heap_sift_down(c->cand, n, 0, lighter, NULL);
            continue;
        }
        if (assign(c, w, best) != TGS_OK)
            break; /* out of memory: the task stays READY */
        tg__heap_sift_down(c->cand, n, 0, lighter, NULL);
    }

    for (size_t i = 0; i < ncand && c->queued > 0; i++) {
        tgs_worker *w = c->cand[i];
        uint32_t busy = w->nprocs + w->incoming;
        if (busy < w->nthreads && pick(c, w) == NULL)
            tgs__steal_for(c, w, w->nthreads - busy);
    }
}
