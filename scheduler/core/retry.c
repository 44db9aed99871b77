/* SPDX-License-Identifier: Apache-2.0
 *
 * retry.c: retries after errors and the passing of time. A task that
 * failed with retries left waits (WAITING, TF_BACKOFF) in the core's
 * timer heap (util/heap.h, by due time then FIFO; the due time shares the
 * task's `at` field with the assignment time, which it cannot need while
 * waiting) until its exponential backoff is over; every event releases
 * the due ones first (advance() in internal.h). Also tgs_core_tick: due
 * retries, the no-worker timeout, another look for work to steal when
 * a task waits for the worker holding its inputs, and the scaling
 * policy. Depends on internal.h, ready.c, failure.c, place.c and scale.c.
 */
#include "scheduler/core/internal.h"

/* Timers: sooner first, then FIFO (the task's sequence). */
static inline bool timer_before(const void *a, const void *b)
{
    const tgs_task *x = a, *y = b;
    return x->at.due_ms < y->at.due_ms ||
           (x->at.due_ms == y->at.due_ms && x->seq < y->seq);
}

static int timer_push(tgs_core *c, tgs_task *t, int64_t due)
{
    if (c->timers.n >= UINT32_MAX ||
        tg__heap_reserve(&c->timers, c->timers.n + 1) != TG_OK)
        return TGS_ENOMEM;
    t->at.due_ms = due;
    tg__heap_push(&c->timers, t, timer_before, task_moved);
    return TGS_OK;
}

void tgs__timer_remove(tgs_core *c, tgs_task *t)
{
    tg__heap_remove_at(&c->timers, t->pos, timer_before, task_moved);
    t->flags &= (uint8_t)~TF_BACKOFF;
}

void tgs__release_due(tgs_core *c)
{
    while (c->timers.n > 0) {
        tgs_task *t = tg__heap_top(&c->timers);
        if (t->at.due_ms > c->now)
            break;
        tgs__timer_remove(c, t);
        tgs__ready_push(c, t); /* room reserved: k->nlive */
    }
}

/* Delay before the retry that follows failed attempt `attempt`. */
static int64_t backoff_ms(const tgs_core *c, uint32_t attempt)
{
    int64_t base = c->opts.retry_backoff_ms;
    int64_t max = c->opts.retry_backoff_max_ms;
    if (base <= 0)
        return 0;
    int64_t d = base;
    for (uint32_t i = 1; i < attempt && d < max; i++)
        d = d > INT64_MAX / 2 ? INT64_MAX : d * 2;
    return d < max ? d : max;
}

/* `t` (off its worker) failed with retries left: use one, and come back
 * READY after the backoff (at once if there is none, or if the timer
 * heap cannot grow). */
void tgs__retry_later(tgs_core *c, tgs_task *t)
{
    int64_t delay = backoff_ms(c, t->attempt);
    t->retries--;
    t->attempt++;
    if (delay > 0 && timer_push(c, t, c->now + delay) == TGS_OK) {
        set_state(c, t, TGS_WAITING);
        t->flags |= TF_BACKOFF;
        return;
    }
    tgs__ready_push(c, t);
}

void tgs_core_tick(tgs_core *c, int64_t now_ms)
{
    if (c == NULL)
        return;
    tgs__event_begin(c, now_ms);
    int64_t timeout = c->opts.no_worker_timeout_ms;
    /* Only starving classes are looked at, never all tasks. Walk down: a
     * class leaving the list is replaced by the last one, which has been
     * looked at already. */
    for (uint32_t i = c->nstarving; timeout > 0 && i-- > 0;) {
        if (i >= c->nstarving)
            continue;
        tgs_class *k = c->starving[i];
        if (now_ms - k->since > timeout)
            tgs__fail_unplaceable(c, k, now_ms - k->since);
    }
    if (c->relook)
        tgs__steal_relook(c); /* the estimates moved with the clock */
    tgs__schedule(c);
    tgs__scale_tick(c); /* after the assignments: the demand is settled */
}
