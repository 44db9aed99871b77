/* SPDX-License-Identifier: Apache-2.0
 *
 * place.c: the cost model that weighs moving a task's held inputs against
 * waiting for a busy worker that holds them, shared by placement
 * (schedule.c) and stealing (steal.c). The estimated start of task T on
 * worker W is
 *
 *     wait(W) + (bytes of T's held inputs W does not hold) / bandwidth
 *
 * where wait(W) is 0 when W has a free thread, else the work W has
 * (the estimated run times of the tasks it runs and has queued, less
 * what the running ones have done) divided over its threads, and the
 * bandwidth is tgs_core_opts.transfer_bandwidth. Only tasks with held
 * inputs ever get here. Depends on internal.h and steal.c (which tasks
 * of a worker have most likely started).
 */
#include "scheduler/core/internal.h"

double tgs__duration_ms(const tgs_task *t)
{
    const tgs_func *f = t->cls->func;
    return f->avg_known ? f->avg_ms : UNKNOWN_DURATION_MS;
}

double tgs__transfer_ms(const tgs_core *c, uint64_t bytes)
{
    return (double)bytes * 1000.0 / c->opts.transfer_bandwidth;
}

/*
 * What is left to run of `t`, on `w` (ms). A task not started yet: its
 * whole estimate. A started one, `e` ms into a run estimated at `d`: d -
 * e while it is within its estimate; past it, e - d: a task late by x is
 * taken to need about x more (run times are heavy-tailed, and the longer
 * a task has overrun the longer it is likely to go on), so the estimate
 * of a worker stuck behind a long task grows with time and the tasks
 * waiting for it are moved in the end (see steal.c). A task received into
 * a free thread started when it was assigned (TF_DIRECT); one queued
 * first, at the later of its assignment and the worker's last result
 * (the core sees no starts: an approximation).
 */
static double left_ms(const tgs_core *c, const tgs_worker *w, const tgs_task *t,
                      bool started)
{
    double d = tgs__duration_ms(t);
    if (!started)
        return d;
    int64_t from = t->at.assigned_ms;
    if (!(t->flags & TF_DIRECT) && w->has_finished && w->last_finish_ms > from)
        from = w->last_finish_ms;
    double e = (double)(c->now - from);
    if (e < 0)
        e = 0;
    return fabs(d - e);
}

double tgs__backlog_ms(tgs_core *c, const tgs_worker *w)
{
    uint64_t upto = 0;
    bool some = tgs__started_upto(w, &c->est, &c->capest, &upto);
    double sum = 0;
    for (uint32_t i = 0; i < w->nprocs; i++) {
        const tgs_task *t = w->procs[i];
        bool started = (t->flags & TF_DIRECT) || (some && t->aseq <= upto);
        sum += left_ms(c, w, t, started);
    }
    return sum;
}

double tgs__wait_ms(tgs_core *c, const tgs_worker *w)
{
    if (w->nprocs < w->nthreads)
        return 0;
    return tgs__backlog_ms(c, w) / w->nthreads;
}

uint64_t tgs__held_bytes(const tgs_task *t, const tgs_worker *w,
                         uint64_t *total)
{
    uint64_t all = 0, here = 0;
    for (uint32_t i = 0; i < t->ndeps; i++) {
        tgs_task *d = t->deps[i];
        if (d == NULL || !d->held || held_of(d)->scratch)
            continue;
        tgs_held *hd = held_of(d);
        hd->scratch = 1; /* a task may name an input twice: count it once */
        all += d->out.result->len;
        for (uint32_t j = 0; j < hd->nholders; j++) {
            if (hd->holders[j].w == w) {
                here += d->out.result->len;
                break;
            }
        }
    }
    for (uint32_t i = 0; i < t->ndeps; i++)
        if (t->deps[i] != NULL && t->deps[i]->held)
            held_of(t->deps[i])->scratch = 0;
    *total = all;
    return here;
}

void tgs__steal_relook(tgs_core *c)
{
    c->relook = false;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->draining && !w->paused && w->nprocs + w->incoming < w->nthreads)
            mark_dirty(c, w);
    }
}
