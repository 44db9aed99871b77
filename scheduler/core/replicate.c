/* SPDX-License-Identifier: Apache-2.0
 *
 * replicate.c: more holders for results held on workers (Replicate, as
 * Dask's Client.replicate). The core chooses the target workers (eligible
 * ones with the most free memory first, see tgs_core_replicate in
 * core.h), asks each to copy the result from a holder (TGS_ACT_COPY) and
 * records the copy under way, linked both ways like holders and stores
 * (tgs_held.copies, tgs_worker.copying), so that a result forgotten or
 * lost, or a worker gone, ends its copies without a scan. A copy that
 * lands makes its worker one more holder: it is then freed with the
 * result, and its loss alone no longer loses the result (data.c).
 * Depends on internal.h and actions.c.
 */
#include "scheduler/core/internal.h"

/* Take copy `slot` out of `h`'s copies; the one moved into its place
 * tells its worker. */
static void copy_unlink_task(tgs_task *h, uint32_t slot)
{
    tgs_held *hd = held_of(h);
    tgs_holder last = hd->copies[--hd->ncopies];
    if (slot != hd->ncopies) {
        hd->copies[slot] = last;
        last.w->copying[last.pos].slot = slot;
    }
}

/* Take entry `pos` out of `w`'s copying; the one moved into its place
 * tells its result. */
static void copy_unlink_worker(tgs_worker *w, uint32_t pos)
{
    tgs_task *t = w->copying[pos].t;
    uint64_t size = t->out.result->len;
    tgs_stored last = w->copying[--w->ncopying];
    w->copy_bytes -= size < w->copy_bytes ? size : w->copy_bytes;
    if (pos != w->ncopying) {
        w->copying[pos] = last;
        held_of(last.t)->copies[last.slot].pos = pos;
    }
}

void tgs__copies_drop(tgs_task *t)
{
    tgs_held *hd = held_of(t);
    while (hd->ncopies > 0) {
        tgs_holder cp = hd->copies[hd->ncopies - 1];
        copy_unlink_worker(cp.w, cp.pos);
        hd->ncopies--;
    }
    free(hd->copies);
    hd->copies = NULL;
    hd->capcopies = 0;
}

void tgs__copies_worker_gone(tgs_worker *w)
{
    while (w->ncopying > 0) {
        tgs_stored e = w->copying[--w->ncopying];
        copy_unlink_task(e.t, e.slot);
    }
    free(w->copying);
    w->copying = NULL;
    w->capcopying = 0;
}

int tgs_core_worker_memory(tgs_core *c, uint64_t wid, uint64_t memory,
                           uint64_t limit)
{
    tgs_worker *w = c ? find_worker(c, wid) : NULL;
    if (w == NULL)
        return TGS_ENOTFOUND;
    w->mem_used = memory;
    w->mem_limit = limit;
    return TGS_OK;
}

/* The slot of `w` among `h`'s holders (copies: among its copies under
 * way), or NONE. */
static uint32_t slot_of(const tgs_holder *v, uint32_t n, const tgs_worker *w)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i].w == w)
            return i;
    return NONE;
}

static bool named(const tgs_worker *w, const tgs_str *names, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (bytes_eq(w->name, w->name_len, names[i]))
            return true;
    return false;
}

/* Free memory as the choice sees it; no limit counts as the most. */
static uint64_t free_memory(const tgs_worker *w)
{
    uint64_t used = w->mem_used + w->copy_bytes;
    uint64_t limit = w->mem_limit ? w->mem_limit : UINT64_MAX;
    return used < limit ? limit - used : 0;
}

/* The best eligible target for `h` (see tgs_core_replicate), or NULL. */
static tgs_worker *best_target(const tgs_core *c, const tgs_task *h,
                               const tgs_str *names, size_t nnames)
{
    const tgs_held *hd = held_of(h);
    tgs_worker *best = NULL;
    uint64_t best_free = 0;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->can_fetch || w->draining || w->paused ||
            !named(w, names, nnames) ||
            slot_of(hd->holders, hd->nholders, w) != NONE ||
            slot_of(hd->copies, hd->ncopies, w) != NONE)
            continue;
        uint64_t f = free_memory(w);
        /* Workers are in join order: on a tie the earlier one stays. */
        if (best == NULL || f > best_free) {
            best = w;
            best_free = f;
        }
    }
    return best;
}

/* Record a copy of `h` to `w` (room made here) and ask for it. */
static int start_copy(tgs_core *c, tgs_task *h, tgs_worker *w)
{
    tgs_held *hd = held_of(h);
    size_t cap = hd->capcopies;
    if (tg__array_grow_to(&hd->copies, &cap, (size_t)hd->ncopies + 1,
                          sizeof *hd->copies, 2, UINT32_MAX) != TG_OK)
        return TGS_ENOMEM;
    hd->capcopies = (uint32_t)cap;
    if (tg__array_grow_to(&w->copying, &w->capcopying, (size_t)w->ncopying + 1,
                          sizeof *w->copying, 4, UINT32_MAX) != TG_OK ||
        tgs__action_push(c, TGS_ACT_COPY, w->id, 0, h) != TGS_OK)
        return TGS_ENOMEM;
    hd->copies[hd->ncopies] = (tgs_holder){w, w->ncopying};
    w->copying[w->ncopying++] = (tgs_stored){h, hd->ncopies};
    hd->ncopies++;
    w->copy_bytes += h->out.result->len;
    return TGS_OK;
}

int tgs__copy_elsewhere(tgs_core *c, tgs_task *h)
{
    tgs_worker *w = best_target(c, h, NULL, 0);
    return w == NULL ? TGS_ENOTFOUND : start_copy(c, h, w);
}

int tgs_core_replicate(tgs_core *c, tgs_str key, uint32_t n,
                       const tgs_str *names, size_t nnames, uint64_t *wids,
                       size_t cap, uint32_t *started)
{
    if (c == NULL || (nnames > 0 && names == NULL) || (cap > 0 && wids == NULL))
        return TGS_EINVAL;
    if (started != NULL)
        *started = 0;
    tgs__event_begin(c, TGS__NO_CLOCK);
    tgs_task *h = find_key(c, key);
    if (h == NULL)
        return TGS_ENOTFOUND;
    if (h->state != TGS_MEMORY || !h->held)
        return TGS_ESTATE;
    uint32_t count = 0;
    int rc = TGS_OK;
    while (count < cap) {
        const tgs_held *hd = held_of(h);
        if (n > 0 && (uint64_t)hd->nholders + hd->ncopies >= n)
            break;
        tgs_worker *w = best_target(c, h, names, nnames);
        if (w == NULL)
            break;
        if ((rc = start_copy(c, h, w)) != TGS_OK)
            break;
        wids[count++] = w->id;
    }
    if (started != NULL)
        *started = count;
    return rc;
}

/* `w` holds `h` now: one more holder, linked both ways (room made). */
static int add_holder(tgs_task *h, tgs_worker *w)
{
    tgs_held *hd = held_of(h);
    size_t cap = hd->capholders;
    if (tg__array_grow_to(&hd->holders, &cap, (size_t)hd->nholders + 1,
                          sizeof *hd->holders, 1, UINT32_MAX) != TG_OK)
        return TGS_ENOMEM;
    hd->capholders = (uint32_t)cap;
    if (tg__array_grow_to(&w->store, &w->capstore, (size_t)w->nstore + 1,
                          sizeof *w->store, 8, UINT32_MAX) != TG_OK)
        return TGS_ENOMEM;
    hd->holders[hd->nholders] = (tgs_holder){w, w->nstore};
    w->store[w->nstore++] = (tgs_stored){h, hd->nholders};
    hd->nholders++;
    return TGS_OK;
}

int tgs_core_copy_done(tgs_core *c, uint64_t wid, tgs_str key, bool ok,
                       int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    tgs_worker *w = find_worker(c, wid);
    tgs_task *h = find_key(c, key);
    uint32_t slot = NONE;
    int rc = TGS_ENOTFOUND;
    if (w != NULL && h != NULL && h->held)
        slot = slot_of(held_of(h)->copies, held_of(h)->ncopies, w);
    if (slot != NONE) {
        copy_unlink_worker(w, held_of(h)->copies[slot].pos);
        copy_unlink_task(h, slot);
        rc = TGS_OK;
        if (ok && slot_of(held_of(h)->holders, held_of(h)->nholders, w) == NONE)
            rc = add_holder(h, w);
        /* A retired holder may now let go of it (or try another copy). */
        c->evac_dirty = c->nevacuating > 0;
    }
    tgs__schedule(c);
    return rc;
}

size_t tgs_task_ncopies(const tgs_task *t)
{
    return t->held ? held_of(t)->ncopies : 0;
}
