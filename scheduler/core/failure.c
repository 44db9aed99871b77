/* SPDX-License-Identifier: Apache-2.0
 *
 * failure.c: how tasks fail and what a failure takes with it: becoming
 * final (watchers told, dependencies let go, held ones through data.c;
 * a held result keeps its links to them, lineage.c),
 * the cascade of an error or a cancel through every dependent, the tasks
 * of a lost worker (back to READY, or failed with tg.KilledWorker when
 * one keeps killing its workers; the quarantine that makes that blame
 * exact is in schedule.c's pick()), and the no-worker timeout
 * (tg.NoWorker). Depends on internal.h, errors.c, ready.c, retry.c,
 * steal.c, workers.c, why.c and data.c.
 */
#include "scheduler/core/internal.h"

/* Detach a task that just became final from its dependencies (and from
 * the consumers of those held on workers). */
static void release_deps(tgs_core *c, tgs_task *t)
{
    for (uint32_t i = 0; i < t->ndeps; i++) {
        tgs_task *d = t->deps[i];
        if (d == NULL)
            continue;
        if (t->held) { /* in the loop: tasks without deps pay nothing */
            tgs__lineage_keep(c, t); /* a held result keeps its links */
            return;
        }
        t->deps[i] = NULL;
        d->needed--;
        if (d->held)
            tgs__held_release(c, d, t); /* and maybe forget it */
        else
            tgs__maybe_forget(c, d);
    }
}

/* `t` is out of heaps, timers and workers; make it final. */
void tgs__become_final(tgs_core *c, tgs_task *t, tgs_state s)
{
    set_state(c, t, s);
    t->cls->nlive--;
    tgs__notify(c, t);
    release_deps(c, t);
}

/* Take a task out of its ready heap, its retry timer or off its worker
 * before it becomes final. A PROCESSING task being cancelled gets a
 * TGS_ACT_CANCEL. */
void tgs__unschedule(tgs_core *c, tgs_task *t, bool cancel)
{
    if (t->state == TGS_READY) {
        tgs__ready_remove(c, t);
    } else if (t->state == TGS_PROCESSING) {
        if (cancel)
            tgs__action_push(c, TGS_ACT_CANCEL, t->u.worker->id, 0, t);
        tgs__proc_remove(c, t);
    } else if (t->flags & TF_BACKOFF) {
        tgs__timer_remove(c, t);
    }
}

/*
 * Fail `root` (already unscheduled) with `err` in state `s` (ERRED or
 * CANCELLED), then every non-final task depending on it, transitively.
 * An explicit work list threaded through the tasks (u.link) replaces
 * recursion, so a million-deep chain needs neither stack nor memory.
 * @return the number of tasks that became final.
 */
uint32_t tgs__fail_cascade(tgs_core *c, tgs_task *root, tgs_state s,
                           tgs_error *err)
{
    uint32_t n = 1;
    root->out.error = err;
    err->refs++;
    root->flags |= TF_PENDING;
    root->u.link = NULL;
    tgs__become_final(c, root, s);
    tgs_task *work = root;
    while (work != NULL) {
        tgs_task *x = work;
        work = x->u.link;
        x->u.link = NULL;
        x->flags &= (uint8_t)~TF_PENDING;
        for (uint32_t i = 0; i < x->ndependents; i++) {
            tgs_task *d = x->dependents[i];
            d->unfinished--;
            if (is_final(d->state)) {
                tgs__maybe_forget(c, d);
                continue;
            }
            tgs__unschedule(c, d, true); /* WAITING in practice: a no-op */
            d->out.error = x->out.error;
            d->out.error->refs++;
            d->flags |= TF_INHERITED | TF_PENDING;
            d->u.link = work;
            work = d;
            tgs__become_final(c, d, s);
            n++;
        }
        drop_dependents(x);
        tgs__maybe_forget(c, x);
    }
    return n;
}

static int by_aseq(const void *a, const void *b)
{
    const tgs_task *x = *(void *const *)a, *y = *(void *const *)b;
    return x->aseq < y->aseq ? -1 : x->aseq > y->aseq;
}

/* The worker's own run order: priority, then arrival. */
static int by_run_order(const void *a, const void *b)
{
    const tgs_task *x = *(void *const *)a, *y = *(void *const *)b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return by_aseq(a, b);
}

/*
 * Mark (TF_SUSPECT) the tasks `w` had most likely started when it was
 * lost. The core does not see starts, only assignments and results, and a
 * worker may hold many queued tasks (prefetch): blaming them all would
 * fail innocent tasks queued behind a task that kills its workers. A
 * worker runs by (priority, arrival), so a running task is among the
 * `nthreads` it received first or among the `nthreads` it would run first;
 * mark both sets. (Out of memory: mark all, the safe side.)
 */
static void mark_suspects(tgs_core *c, tgs_worker *w)
{
    uint32_t n = w->nprocs, k = w->nthreads;
    if (n <= k ||
        tg__array_grow(&c->pick, &c->cappick, n, sizeof *c->pick) != TG_OK) {
        for (uint32_t i = 0; i < n; i++)
            w->procs[i]->flags |= TF_SUSPECT;
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        c->pick[i] = w->procs[i];
    qsort(c->pick, n, sizeof *c->pick, by_aseq);
    for (uint32_t i = 0; i < k; i++)
        ((tgs_task *)c->pick[i])->flags |= TF_SUSPECT;
    qsort(c->pick, n, sizeof *c->pick, by_run_order);
    for (uint32_t i = 0; i < k; i++)
        ((tgs_task *)c->pick[i])->flags |= TF_SUSPECT;
}

/*
 * The tasks of lost worker `w` (already out of the worker table) go back
 * to READY at once: the scheduler holds every result, so only the runs in
 * progress are lost, and the loss is not the task's fault unless it keeps
 * happening. A task that was running on allowed_failures workers in a
 * row that died is likely killing them: fail it (and its dependents), and
 * only it.
 */
void tgs__requeue_lost(tgs_core *c, tgs_worker *w)
{
    mark_suspects(c, w);
    for (uint32_t i = 0; i < w->nprocs; i++) {
        tgs_task *t = w->procs[i];
        tgs__secede_clear(w, t);
        if (t->flags & TF_STEALING)
            tgs__steal_resolve(c, t);
        t->cls->nprocessing--;
        t->u.worker = NULL;
        if (!(t->flags & TF_SUSPECT)) {
            tgs__ready_push(c, t); /* as if handed back; room: k->nlive */
            continue;
        }
        t->flags &= (uint8_t)~TF_SUSPECT;
        t->killed++;
        if (t->killed >= c->opts.allowed_failures) {
            tgs_error *e = tgs__error_newf(
                "tg.KilledWorker", str_of_key(t),
                "task '%.*s' killed %u workers in a row: each died while "
                "running it (allowed_failures=%u)",
                plen(t->key_len), task_key(t), (unsigned)t->killed,
                c->opts.allowed_failures);
            if (e != NULL) {
                tgs__fail_cascade(c, t, TGS_ERRED, e);
                tgs__error_unref(e);
                continue;
            }
        }
        t->attempt++; /* it will run again */
        tgs__ready_push(c, t);
    }
}

/* Fail the READY tasks of a class no worker could run for `waited` ms.
 * Best effort under memory pressure: a task whose error cannot be
 * allocated stays READY until the next tick. */
void tgs__fail_unplaceable(tgs_core *c, tgs_class *k, int64_t waited)
{
    char why[512];
    tgs__unplaceable_text(c, k, why, sizeof why);
    while (k->ready.n > 0) {
        tgs_task *t = tg__heap_top(&k->ready);
        tgs_error *e =
            tgs__error_newf("tg.NoWorker", str_of_key(t), "%s (waited %lld ms)",
                            why, (long long)waited);
        if (e == NULL)
            return;
        tgs__ready_remove(c, t);
        tgs__fail_cascade(c, t, TGS_ERRED, e);
        tgs__error_unref(e);
    }
}
