/* SPDX-License-Identifier: Apache-2.0
 *
 * resources.c: resource accounting. A worker has a capacity and an amount
 * in use per resource; a task of a class with resources is assigned only
 * where every amount fits beside what is in use, and holds them until it
 * leaves the worker. So resource tasks are never prefetched beyond the
 * resources (process=1 runs them one at a time), and the rest stay READY
 * at the scheduler, where priorities still order them. Whether the
 * amounts fit now is res_free() in internal.h (inline: it is on the
 * assignment path). Depends on internal.h.
 */
#include "scheduler/core/internal.h"

/* Validate a request: non-empty names, finite amounts >= 0. */
bool tgs__res_valid(const tgs_resource *res, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        if (res[i].name.len == 0 || res[i].name.ptr == NULL ||
            !amount_ok(res[i].amount)) {
            *bad = i;
            return false;
        }
    }
    return true;
}

/*
 * Could `w` ever run tasks of `k`: it can fetch if their inputs are held
 * on workers, it is named in the restrictions (if any) and each amount is
 * within its capacity. (That it provides the function is the caller's
 * business.) A resource the worker does not declare has capacity 0.
 */
bool tgs__class_fits(const tgs_worker *w, const tgs_class *k)
{
    if (k->fetch && !w->can_fetch)
        return false;
    if (k->nnames != 0) {
        tgs_str me = {w->name, w->name_len};
        bool named = false;
        for (uint32_t i = 0; i < k->nnames && !named; i++)
            named = str_cmp(k->names[i], me) == 0;
        if (!named)
            return false;
    }
    for (uint32_t i = 0; i < k->nres; i++) {
        const tgs_wres *r = wres_find(w, k->res[i].name);
        if (r == NULL || k->res[i].amount > r->cap + res_slack(r->cap))
            return false;
    }
    return true;
}

void tgs__res_hold(tgs_worker *w, const tgs_class *k)
{
    for (uint32_t i = 0; i < k->nres; i++)
        wres_find(w, k->res[i].name)->used += k->res[i].amount;
    w->nheld++;
}

void tgs__res_release(tgs_worker *w, const tgs_class *k)
{
    if (--w->nheld == 0) {
        /* Nothing held: start from an exact 0 again rather than from the
         * rounding residue of many additions and subtractions. */
        for (uint32_t i = 0; i < w->nres; i++)
            w->res[i].used = 0;
        return;
    }
    for (uint32_t i = 0; i < k->nres; i++)
        wres_find(w, k->res[i].name)->used -= k->res[i].amount;
}
