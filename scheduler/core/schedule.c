/* SPDX-License-Identifier: Apache-2.0
 *
 * schedule.c: assignment, the end of every event: READY tasks go to the
 * least loaded worker that can take one (a heap of candidate workers,
 * util/heap.h), each worker taking the best top among the ready heaps of
 * its classes where it has room (its prefetch depth for the function,
 * free resources) or, full, in place of a lower-priority task it has
 * queued, then idle workers steal (steal.c). A task with held inputs goes
 * to the worker where it is estimated to start first, counting the time
 * to move the bytes it lacks (data locality weighed against waiting,
 * local_worker()). Depends on internal.h, ready.c, resources.c,
 * actions.c, place.c and steal.c.
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

/* Always inline: the main loop of tgs__schedule() and assign_local() each
 * have their copy, so that the common path makes no call. */
static inline __attribute__((always_inline)) int
assign(tgs_core *c, tgs_worker *w, tgs_task *t)
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
    t->ran_on = NULL;
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
 * `h`, a holder of some of `t`'s inputs, may queue `t` now: it takes new
 * work (not draining, paused or in quarantine), could run it (function,
 * restrictions and resources of its class, a data service), and has
 * nothing READY of higher priority it would take instead (pick()). A
 * holder may queue a task whose inputs it holds beyond its adaptive
 * prefetch depth, up to max_prefetch beyond its threads: its wait
 * estimate (place.c) grows with each task queued there, and bounds the
 * queue before that.
 */
static bool may_queue(const tgs_core *c, const tgs_worker *h, const tgs_task *t)
{
    const tgs_class *k = t->cls;
    if (h->draining || h->paused || h->nquarantine > 0 ||
        !provides(h, k->func) || !tgs__class_fits(h, k) ||
        (h->nprocs > 0 && t->killed > 0) ||
        h->nprocs >= (uint64_t)h->nthreads + c->opts.max_prefetch ||
        (k->nres != 0 && !res_free(h, k)))
        return false;
    const tgs_task *b = pick(c, h);
    return b == NULL || b->priority <= t->priority;
}

/*
 * Data locality, weighed against waiting: `t` (with a held input) was
 * picked by `w`, the least loaded candidate. Each of `w` and the holders
 * of `t`'s held inputs that may queue it (may_queue()) is given its
 * estimated start of `t`:
 *
 *     wait(X) + (bytes of t's held inputs X does not hold) / bandwidth
 *
 * (place.c: wait(X) is 0 when X has a free thread, else its backlog over
 * its threads). The smallest wins: a free worker fetches small inputs
 * rather than wait, and `t` waits (queued there) for a busy holder when
 * moving its inputs would take longer; if that holder's running task
 * overruns, stealing moves `t` once waiting costs more (steal.c). On a
 * tie, the worker holding more of the bytes; then `w`; then the lighter.
 * O(held inputs * holders) plus, for each busy holder whose transfer
 * alone does not lose already, O(its tasks); paid by tasks with held
 * inputs only. `held.scratch` marks an input counted (a task may name it
 * twice), `local`/`local_listed` sum bytes per holder, listed in
 * c->victims (free until the rebalancing).
 */
static __attribute__((noinline)) tgs_worker *
local_worker(tgs_core *c, tgs_worker *w, tgs_task *t)
{
    uint32_t n = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < t->ndeps; i++) {
        tgs_task *d = t->deps[i];
        if (d == NULL || !d->held || held_of(d)->scratch)
            continue;
        tgs_held *hd = held_of(d);
        hd->scratch = 1;
        total += d->out.result->len;
        for (uint32_t j = 0; j < hd->nholders; j++) {
            tgs_worker *h = hd->holders[j].w;
            if (!h->local_listed) {
                h->local_listed = true;
                h->local = 0;
                c->victims[n++] = h;
            }
            h->local += d->out.result->len;
        }
    }
    for (uint32_t i = 0; i < t->ndeps; i++)
        if (t->deps[i] != NULL && t->deps[i]->held)
            held_of(t->deps[i])->scratch = 0;
    tgs_worker *to = w;
    uint64_t most = w->local_listed ? w->local : 0;
    double best = tgs__wait_ms(c, w) + tgs__transfer_ms(c, total - most);
    for (uint32_t i = 0; i < n; i++) {
        tgs_worker *h = c->victims[i];
        h->local_listed = false;
        if (h == w)
            continue;
        double e = tgs__transfer_ms(c, total - h->local);
        if (e > best || !may_queue(c, h, t))
            continue;
        e += tgs__wait_ms(c, h);
        if (e < best ||
            (e == best && (h->local > most ||
                           (h->local == most && to != w && lighter(h, to))))) {
            to = h;
            most = h->local;
            best = e;
        }
    }
    return to;
}

/*
 * Assign `t` (with a held input), picked by `w` at the top of the
 * candidate heap cand[0, n), to the worker local_worker() chooses, and
 * move that worker down the heap (a holder found by a linear search:
 * only tasks with held inputs pay it). Out of line, so that tasks
 * without held inputs pay one test of their class.
 */
static __attribute__((noinline)) int assign_local(tgs_core *c, tgs_worker *w,
                                                  tgs_task *t, size_t n)
{
    tgs_worker *to = local_worker(c, w, t);
    if (assign(c, to, t) != TGS_OK)
        return TGS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (c->cand[i] == to) {
            tg__heap_sift_down(c->cand, n, i, lighter, NULL);
            break;
        }
    }
    return TGS_OK;
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
    if (__builtin_expect(c->evac_dirty, 0))
        tgs__evacuate(c);
    if (c->counts[TGS_READY] > 0 || c->queued > 0) {
        if (c->ready_added) {
            for (size_t i = 0; i < c->nworkers; i++)
                if (!c->workers[i]->draining && !c->workers[i]->paused)
                    c->cand[n++] = c->workers[i];
        } else {
            for (size_t i = 0; i < c->ndirty; i++)
                if (!c->dirty[i]->draining && !c->dirty[i]->paused)
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
        if (best != NULL && __builtin_expect(best->cls->fetch, 0)) {
            if (assign_local(c, w, best, n) != TGS_OK)
                break; /* out of memory: the task stays READY */
            continue;
        }
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
