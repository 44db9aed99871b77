/* SPDX-License-Identifier: Apache-2.0
 *
 * steal.c: handing queued tasks back. Work stealing: a worker left with
 * idle threads and nothing READY it can take asks the most loaded workers
 * to hand back tasks they have queued beyond their threads
 * (TGS_ACT_STEAL). Displacement: a READY task of higher priority than one
 * queued on a full worker takes its place there, and the lower one is
 * asked back the same way. The answer is a hand-back or a result, either
 * of which resolves the request.
 *
 * The stealing rule for a task with inputs held on workers: an idle
 * worker F takes task T queued on worker V only if moving T does not
 * cost more than it gains, that is only if
 *
 *     transfer(T, F) - transfer(T, V)  <  wait(T on V)
 *
 * where transfer(T, X) is the time to move the bytes of T's held inputs
 * that X lacks at the configured bandwidth, and wait(T on V) is how long
 * T would still queue on V: 0 when V has a thread free for it, else V's
 * backlog without T divided over its threads (place.c; F is idle, so T
 * would start there at once). This is placement's rule (schedule.c) seen
 * from the thief, so a task handed back is not sent back to its victim.
 * As a running task overruns its estimate V's backlog grows, so a task
 * stuck behind a long one is taken once waiting costs more than moving;
 * a look that passed over such a task is repeated at each tick (relook)
 * for as long as one waits. Tasks without held inputs cost nothing to
 * move and are stolen as before, with no added cost. Depends on
 * internal.h, hashmap.h (outstanding requests by task), util/heap.h,
 * actions.c and place.c.
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

/*
 * The stealing rule above: is moving `t` (with held inputs, queued on
 * `v`) to the idle `th` worth its bytes. `backlog` caches v's backlog
 * (NAN until computed) across the tasks of one victim.
 */
static bool worth_moving(tgs_core *c, const tgs_task *t, const tgs_worker *v,
                         const tgs_worker *th, double *backlog)
{
    uint64_t total = 0;
    uint64_t on_th = tgs__held_bytes(t, th, &total);
    uint64_t on_v = tgs__held_bytes(t, v, &total);
    double cost =
        tgs__transfer_ms(c, total - on_th) - tgs__transfer_ms(c, total - on_v);
    if (cost <= 0)
        return true;
    if (v->nprocs <= v->nthreads)
        return false; /* a thread of v is (about to be) free for it */
    if (isnan(*backlog))
        *backlog = tgs__backlog_ms(c, v);
    /* Without t itself: what runs before it (or beside it). */
    double d = tgs__duration_ms(t);
    double ahead = *backlog > d ? *backlog - d : 0;
    return ahead / v->nthreads > cost;
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
    bool passed = false; /* over a task not worth moving */
    for (size_t vi = 0; vi < nv && want > 0; vi++) {
        tgs_worker *v = c->victims[vi];
        uint32_t take = queued_on(v) < want ? queued_on(v) : want;
        if (take == 0 || tg__array_grow(&c->pick, &c->cappick, take,
                                        sizeof *c->pick) != TG_OK)
            continue;
        /* The `take` most recently assigned candidates: a min-heap by
         * assignment order, O(procs log take). */
        size_t n = 0;
        double backlog = NAN;
        for (uint32_t i = 0; i < v->nprocs; i++) {
            tgs_task *t = v->procs[i];
            if (!t->cls->scratch || (t->flags & TF_STEALING))
                continue;
            if (__builtin_expect(t->cls->fetch, 0) &&
                !worth_moving(c, t, v, th, &backlog)) {
                passed = true;
                continue;
            }
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
    /* A look that passed over a task may find it worth moving later: no
     * memo, and idle workers look again at the next tick. */
    th->steal_memo = want == wanted && !passed;
    th->steal_seen = seen;
    if (passed)
        c->relook = true;
}

/* ---- higher priority takes the place of lower queued work ---- */

/* Later in a worker's run order: lower priority, then later arrival. */
static inline bool runs_after(const tgs_task *a, const tgs_task *b)
{
    return a->priority < b->priority ||
           (a->priority == b->priority && a->aseq > b->aseq);
}

/* Max-heap of assignment order (the latest on top). */
static inline bool later_assigned(const void *a, const void *b)
{
    return ((const tgs_task *)a)->aseq > ((const tgs_task *)b)->aseq;
}

/*
 * The assignment order up to which `w`'s queued tasks have most likely
 * started. The core sees assignments and results, not starts. A task
 * received into a free thread started at once (TF_DIRECT); as threads
 * free up, a worker starts the best it has queued, so among equal
 * priorities the earliest received: take that many (its threads not held
 * by TF_DIRECT tasks) of the earliest. False (none) when there are no
 * such threads or tasks, or the scratch cannot grow.
 */
bool tgs__started_upto(const tgs_worker *w, void ***scratch, size_t *cap,
                       uint64_t *upto)
{
    uint32_t k = w->nthreads;
    for (uint32_t i = 0; i < w->nprocs && k > 0; i++)
        if (w->procs[i]->flags & TF_DIRECT)
            k--;
    if (k == 0 || tg__array_grow(scratch, cap, k, sizeof **scratch) != TG_OK)
        return false;
    void **h = *scratch;
    size_t n = 0;
    for (uint32_t i = 0; i < w->nprocs; i++) {
        tgs_task *t = w->procs[i];
        if (t->flags & TF_DIRECT)
            continue;
        if (n < k) {
            h[n++] = t;
            tg__heap_sift_up(h, n - 1, later_assigned, NULL);
        } else if (t->aseq < ((tgs_task *)h[0])->aseq) {
            h[0] = t;
            tg__heap_sift_down(h, n, 0, later_assigned, NULL);
        }
    }
    if (n == 0)
        return false;
    *upto = ((tgs_task *)h[0])->aseq;
    return true;
}

/* Would `k`'s request fit on `w` once `v` (there) let go of its own. */
static bool fits_without(const tgs_worker *w, const tgs_class *k,
                         const tgs_class *v)
{
    for (uint32_t i = 0; i < k->nres; i++) {
        const tgs_wres *r = wres_find(w, k->res[i].name);
        if (r == NULL)
            return false;
        double used = r->used;
        for (uint32_t j = 0; j < v->nres; j++)
            if (v->res[j].name == k->res[i].name)
                used -= v->res[j].amount;
        if (used + k->res[i].amount > r->cap + res_slack(r->cap))
            return false;
    }
    return true;
}

/*
 * The task of `w` to hand back for `top`: one without a steal request,
 * not TF_DIRECT, of lower priority, and (unless `top` fits already) whose
 * resources make room for `top`'s. Among them the one `w` would run
 * last, preferring those it has most likely not started (see
 * started_upto(); the guess may be wrong when a later, higher task went
 * first, so a likely started one is asked for when no other will do: if
 * it had started, `w` answers with its result, and it is not asked
 * twice).
 * Also makes w->floor exact: the lowest priority of its tasks without a
 * steal request once the one returned has one.
 */
static tgs_task *victim(tgs_core *c, tgs_worker *w, const tgs_task *top,
                        bool fits)
{
    uint64_t upto = 0;
    bool some = tgs__started_upto(w, &c->pick, &c->cappick, &upto);
    tgs_task *best = NULL;
    bool best_started = true;
    int32_t lo1 = INT32_MAX, lo2 = INT32_MAX; /* the two lowest */
    for (uint32_t i = 0; i < w->nprocs; i++) {
        tgs_task *t = w->procs[i];
        if (t->flags & TF_STEALING)
            continue;
        if (t->priority < lo1) {
            lo2 = lo1;
            lo1 = t->priority;
        } else if (t->priority < lo2) {
            lo2 = t->priority;
        }
        if (t->priority >= top->priority || (t->flags & TF_DIRECT) ||
            (!fits &&
             (t->cls->nres == 0 || !fits_without(w, top->cls, t->cls))))
            continue;
        bool started = some && t->aseq <= upto;
        if (best == NULL || (best_started && !started) ||
            (started == best_started && runs_after(t, best))) {
            best = t;
            best_started = started;
        }
    }
    w->floor = best != NULL && best->priority == lo1 ? lo2 : lo1;
    return best;
}

/* Ask `w` to hand `t` back (no idle worker waits for it). */
static bool hand_back(tgs_core *c, tgs_worker *w, tgs_task *t)
{
    if (tgs__action_push(c, TGS_ACT_STEAL, w->id, 0, t) != TGS_OK)
        return false;
    c->queued -= queued_on(w);
    t->flags |= TF_STEALING;
    w->nsteal++;
    c->queued += queued_on(w);
    return true;
}

/*
 * Priority across the scheduler and the workers' queues. `w` has no room
 * (pick() found nothing): if a READY task it could run has a higher
 * priority than a task queued there, ask `w` to hand the lower one back
 * (TGS_ACT_STEAL; it returns to READY, from where it may in turn take the
 * place of a still lower one) and return the higher one, for the caller
 * to assign to `w` at once: `w` runs its queue by priority, so it starts
 * the higher one next even if the hand-back comes too late. A READY task
 * whose resources are held by the lower one is not returned: it is
 * assigned once they are back. NULL: nothing to do.
 *
 * O(classes of `w`) when nothing queued there is lower (w->floor), which
 * is the hot path; O(tasks on `w`) for a look, not repeated until its
 * tasks change or a higher READY task appears (disp_memo).
 */
tgs_task *tgs__displace(tgs_core *c, tgs_worker *w)
{
    if (w->nquarantine > 0 || w->nprocs <= w->nthreads)
        return NULL;
    tgs_task *top = NULL;
    for (uint32_t i = 0; i < w->nclasses; i++) {
        tgs_task *t = tg__heap_top(&w->classes[i]->ready);
        if (t != NULL && t->priority > w->floor && t->killed == 0 &&
            (top == NULL || task_before(t, top)))
            top = t;
    }
    if (top == NULL || (w->disp_memo && top->priority <= w->disp_prio))
        return NULL;
    bool fits = top->cls->nres == 0 || res_free(w, top->cls);
    tgs_task *v = victim(c, w, top, fits);
    if (v != NULL && hand_back(c, w, v)) {
        if (fits)
            return top;
        /* `top` waits for v's resources: no second hand-back for it. */
    } else if (v != NULL && v->priority < w->floor) {
        w->floor = v->priority; /* it still has no request */
    }
    w->disp_memo = true;
    w->disp_prio = top->priority;
    return NULL;
}
