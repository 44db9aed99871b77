/* SPDX-License-Identifier: Apache-2.0
 *
 * scale.c: the scaling policy. Scale(n) fixes how many workers the
 * caller's launcher should keep; Scale(minimum, maximum) lets the core
 * follow the runnable work between those bounds, up at once and down
 * only after the demand has stayed lower for the hold time (hysteresis:
 * a gap between two waves of work does not stop and restart workers).
 * The core only decides: it queues TGS_ACT_SCALE with the target and
 * TGS_ACT_RETIRE for the workers it drains; starting, signalling and
 * reaping processes is the caller's. Only managed workers (started by the
 * launcher, see tgs_core_worker_managed) count toward the target and are
 * retired. Depends on internal.h, actions.c and workers.c.
 */
#include "scheduler/core/internal.h"

/* `n` rounded up to whole steps (workers per job). */
static uint64_t whole_steps(const tgs_scale *s, uint64_t n)
{
    uint64_t step = s->step ? s->step : 1;
    return (n + step - 1) / step * step;
}

/* Set the target, telling the caller when it moves (or is set anew). */
static void set_target(tgs_core *c, uint32_t target, bool always)
{
    tgs_scale *s = &c->scale;
    uint64_t whole = whole_steps(s, target);
    target = whole > UINT32_MAX ? UINT32_MAX : (uint32_t)whole;
    if (!always && s->have_target && s->target == target)
        return;
    s->target = target;
    s->have_target = true;
    /* Out of memory: the caller keeps the old target until the next
     * change; tgs_core_scale_target still gives the new one. */
    tgs__action_push_scale(c, target);
}

int tgs_core_scale(tgs_core *c, uint32_t n, int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    c->scale.adaptive = false;
    c->scale.low = false;
    set_target(c, n, true);
    tgs__schedule(c); /* retries that became due */
    return TGS_OK;
}

int tgs_core_adapt(tgs_core *c, const tgs_adapt_opts *o, int64_t now_ms)
{
    if (c == NULL || o == NULL || o->maximum == 0 || o->minimum > o->maximum ||
        o->hold_ms < 0)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    tgs_scale *s = &c->scale;
    s->adaptive = true;
    s->minimum = o->minimum;
    s->maximum = o->maximum;
    s->nthreads = o->nthreads ? o->nthreads : 1;
    s->hold_ms = o->hold_ms ? o->hold_ms : DEFAULT_SCALE_HOLD_MS;
    s->low = false;
    uint32_t target = s->target;
    if (!s->have_target || target < o->minimum)
        target = o->minimum;
    if (target > o->maximum)
        target = o->maximum;
    set_target(c, target, true);
    tgs__schedule(c);
    return TGS_OK;
}

int tgs_core_worker_managed(tgs_core *c, uint64_t wid)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL)
        return TGS_ENOTFOUND;
    w->managed = true;
    return TGS_OK;
}

int tgs_core_set_scale_step(tgs_core *c, uint32_t step)
{
    if (c == NULL || step == 0)
        return TGS_EINVAL;
    c->scale.step = step;
    return TGS_OK;
}

bool tgs_core_scale_target(const tgs_core *c, uint32_t *target)
{
    bool have = c != NULL && c->scale.have_target;
    if (target != NULL)
        *target = have ? c->scale.target : 0;
    return have;
}

/*
 * Workers wanted for the work: ceil(runnable / nthreads), where runnable
 * is READY + PROCESSING minus the READY tasks no connected worker can
 * run, which would not run on more of the same workers either. With no
 * worker connected nothing tells those apart, so they count (the
 * launched workers provide the built-ins and plug-ins). Clamped to the
 * bounds.
 */
static uint64_t demand(const tgs_core *c)
{
    const tgs_scale *s = &c->scale;
    uint64_t runnable = c->counts[TGS_READY] + c->counts[TGS_PROCESSING];
    if (c->nworkers > 0)
        runnable -= c->unplaceable < runnable ? c->unplaceable : runnable;
    uint64_t want = (runnable + s->nthreads - 1) / s->nthreads;
    if (want < s->minimum)
        want = s->minimum;
    if (want > s->maximum)
        want = s->maximum;
    return whole_steps(s, want);
}

/* Adaptive: up at once; down once the demand has stayed lower for
 * hold_ms; a tick where it is not lower starts the wait again. */
static void adapt(tgs_core *c)
{
    tgs_scale *s = &c->scale;
    uint64_t want = demand(c);
    if (want > s->target) {
        set_target(c, (uint32_t)want, false);
        s->low = false;
    } else if (want < s->target) {
        if (!s->low) {
            s->low = true;
            s->low_since = c->now;
        } else if (c->now - s->low_since >= s->hold_ms) {
            set_target(c, (uint32_t)want, false);
            s->low = false;
        }
    } else {
        s->low = false;
    }
}

/* The managed, non-draining worker to retire first: one holding no
 * result (a retired worker closes only once its held results are freed),
 * then the least loaded (processing per thread); among equals the one
 * that joined last, the least likely to hold warm state. NULL if none. */
static tgs_worker *retire_choice(const tgs_core *c, size_t *nmanaged)
{
    tgs_worker *best = NULL;
    size_t n = 0;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->managed || w->draining)
            continue;
        n++;
        if (best == NULL) {
            best = w;
            continue;
        }
        if ((w->nstore == 0) != (best->nstore == 0)) {
            if (w->nstore == 0)
                best = w;
            continue;
        }
        uint64_t lw = (uint64_t)w->nprocs * best->nthreads;
        uint64_t lb = (uint64_t)best->nprocs * w->nthreads;
        if (lw < lb || (lw == lb && w->order > best->order))
            best = w;
    }
    *nmanaged = n;
    return best;
}

/*
 * The end of tgs_core_tick: move an adaptive target, then retire managed
 * workers beyond the target, one at a time (O(workers) each: workers are
 * few and retirements rarer still). A retired worker is drained: its
 * work finishes and its results stay with the scheduler.
 */
void tgs__scale_tick(tgs_core *c)
{
    if (!c->scale.have_target)
        return;
    if (c->scale.adaptive)
        adapt(c);
    for (;;) {
        size_t nmanaged;
        tgs_worker *w = retire_choice(c, &nmanaged);
        if (w == NULL || nmanaged <= c->scale.target)
            break;
        if (tgs__action_push(c, TGS_ACT_RETIRE, w->id, 0, NULL) != TGS_OK)
            break; /* out of memory: try again at the next tick */
        tgs__drain(c, w);
    }
}
