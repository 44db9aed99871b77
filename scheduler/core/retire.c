/* SPDX-License-Identifier: Apache-2.0
 *
 * retire.c: workers retired by name (Retire, as Dask's retire_workers and
 * restart) and the holds dropped once a task is final (fire-and-forget,
 * tgs_core_release_when_done in requests.c).
 * A retired worker drains; with its results kept, each result it holds
 * alone is copied to another worker (as Replicate would) and, once
 * another worker holds it, the retired one lets go of it, so it closes
 * holding nothing and nothing is lost. Depends on internal.h, workers.c,
 * data.c, replicate.c and life.c.
 */
#include "scheduler/core/internal.h"

int tgs_core_worker_retire(tgs_core *c, uint64_t wid, bool keep_results,
                           int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    tgs_worker *w = find_worker(c, wid);
    if (w == NULL) {
        tgs__schedule(c);
        return TGS_ENOTFOUND;
    }
    if (keep_results && !w->evacuate && !w->abandon) {
        w->evacuate = true;
        c->nevacuating++;
        c->evac_dirty = true;
    } else if (!keep_results && !w->evacuate) {
        w->abandon = true;
    }
    tgs__drain(c, w);
    tgs__schedule(c);
    return TGS_OK;
}

/* One retired worker: results held elsewhere too are let go of; those
 * it alone holds get a copy elsewhere unless one is under way. A result
 * no other worker can take stays (the worker stays until it is
 * released, or until a worker joins that can take it). */
static void evacuate_worker(tgs_core *c, tgs_worker *w)
{
    /* From the end: tgs__holder_drop moves the last entry into the
     * dropped one's place, and that one was looked at already. */
    for (uint32_t i = w->nstore; i-- > 0;) {
        if (i >= w->nstore)
            continue;
        tgs_task *h = w->store[i].t;
        const tgs_held *hd = held_of(h);
        if (hd->nholders > 1)
            tgs__holder_drop(c, h, w);
        else if (hd->ncopies == 0 && tgs__copy_elsewhere(c, h) == TGS_ENOMEM)
            c->evac_dirty = true; /* try again at the next event */
    }
    tgs__maybe_close(c, w);
}

void tgs__evacuate(tgs_core *c)
{
    c->evac_dirty = false;
    for (size_t i = 0; i < c->nworkers; i++)
        if (c->workers[i]->evacuate)
            evacuate_worker(c, c->workers[i]);
}

void tgs__deferred_drop(tgs_task *t)
{
    t->holds -= t->deferred < t->holds ? t->deferred : t->holds;
    t->deferred = 0;
}
