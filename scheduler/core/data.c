/* SPDX-License-Identifier: Apache-2.0
 *
 * data.c: results held on workers. A worker with a data service keeps a
 * large result in its own store and reports it held (tgs_outcome.held):
 * the core records who holds it and its size, never its bytes, and the
 * tasks that need it (its consumers), which move to the fetch variant of
 * their placement class so that only workers able to fetch run them
 * (classes.c). Forgetting a held result tells each holder to drop it
 * (TGS_ACT_FREE). A holder lost, or one saying it no longer has the
 * result, that was its only holder loses it: the task is recomputed
 * from its lineage (lineage.c), or, when it cannot be, becomes ERRED
 * (tg.DataLost) and its consumers inherit the error, as with any error.
 * Inline results are never touched here. Depends on internal.h,
 * classes.c, actions.c, errors.c, failure.c, workers.c and lineage.c.
 */
#include "scheduler/core/internal.h"

static inline uint32_t ptr_hash(const tgs_task *t)
{
    return tgs_hash32(&t, sizeof t);
}

/* Take entry `pos` out of `w`'s store; the entry moved into its place
 * tells its result where it is now. */
static void store_remove(tgs_worker *w, uint32_t pos)
{
    tgs_stored last = w->store[--w->nstore];
    if (pos != w->nstore) {
        w->store[pos] = last;
        held_of(last.t)->holders[last.slot].pos = pos;
    }
}

/* Take holder `slot` out of `h`'s holders (its worker's store is the
 * caller's business); the holder moved into its place tells its worker. */
static void holder_remove(tgs_task *h, uint32_t slot)
{
    tgs_held *hd = held_of(h);
    tgs_holder last = hd->holders[--hd->nholders];
    if (slot != hd->nholders) {
        hd->holders[slot] = last;
        last.w->store[last.pos].slot = slot;
    }
}

void tgs__held_free(tgs_task *t)
{
    tgs_held *hd = held_of(t);
    tgs__copies_drop(t);
    free(hd->holders);
    tgs_map_free(&hd->consumers);
}

/*
 * The fetch classes `t`'s waiting dependents move to once its result is
 * held, made now with room in their ready heaps (`scratch` counts the
 * tasks each will gain), so that the commit cannot fail. c->pick keeps
 * each dependent's class meanwhile.
 */
static int fetch_classes(tgs_core *c, tgs_task *t)
{
    uint32_t n = t->ndependents;
    int rc = TGS_OK;
    if (tg__array_grow(&c->pick, &c->cappick, n, sizeof *c->pick) != TG_OK)
        return TGS_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        tgs_task *d = t->dependents[i];
        tgs_class *k = d->cls;
        c->pick[i] = NULL;
        if (d->state != TGS_WAITING || k->fetch || rc != TGS_OK)
            continue;
        rc = tgs__class_get(c, k->func, k->res, k->nres, k->names, k->nnames,
                            true, &k);
        if (rc == TGS_OK) {
            k->scratch++;
            c->pick[i] = k;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        tgs_class *k = c->pick[i];
        if (k == NULL || k->scratch == 0)
            continue;
        if (rc == TGS_OK &&
            tg__heap_reserve(&k->ready, k->nlive + k->scratch) != TG_OK)
            rc = TGS_ENOMEM;
        k->scratch = 0;
    }
    return rc;
}

/*
 * Everything the commit of `t`'s result held on `w` needs, allocated
 * before anything changes: the record (codec, size, one holder, room for
 * the consumers), room in `w`'s store, and the fetch classes of the
 * dependents. A failure changes nothing (new classes stay, unused, until
 * collected).
 */
int tgs__held_prepare(tgs_core *c, tgs_task *t, tgs_worker *w,
                      const tgs_istr *codec, uint64_t size, tgs_result **out)
{
    tgs_result *r;
    tgs_held *hd;
    size_t cap = 0;
    int rc = TGS_OK;

    if (size > SIZE_MAX)
        return TGS_EINVAL;
    r = calloc(1, sizeof *r + sizeof *hd);
    if (r == NULL)
        return TGS_ENOMEM;
    r->codec = codec;
    r->len = (size_t)size;
    hd = (tgs_held *)(void *)r->data;
    if (tg__array_grow_to(&hd->holders, &cap, 1, sizeof *hd->holders, 1,
                          UINT32_MAX) != TG_OK ||
        (t->ndependents > 0 &&
         tgs_map_reserve(&hd->consumers, t->ndependents) != TGS_OK) ||
        tg__array_grow_to(&w->store, &w->capstore, (size_t)w->nstore + 1,
                          sizeof *w->store, 8, UINT32_MAX) != TG_OK)
        rc = TGS_ENOMEM;
    hd->capholders = (uint32_t)cap;
    if (rc == TGS_OK)
        rc = fetch_classes(c, t);
    if (rc != TGS_OK) {
        free(hd->holders);
        tgs_map_free(&hd->consumers);
        free(r);
        return rc;
    }
    *out = r;
    return TGS_OK;
}

/* `t`'s result `r` (prepared) is held on `w`: link them both ways. */
void tgs__held_commit(tgs_core *c, tgs_task *t, tgs_worker *w, tgs_result *r)
{
    tgs_held *hd = (tgs_held *)(void *)r->data;
    t->held = true;
    hd->holders[0] = (tgs_holder){w, w->nstore};
    hd->nholders = 1;
    w->store[w->nstore++] = (tgs_stored){t, 0};
    if (w->evacuate)
        c->evac_dirty = true; /* to be moved too (retire.c) */
}

/*
 * Waiting task `d` depends on `h`, whose result just became held: it
 * moves to the fetch variant of its class (made by fetch_classes) and
 * becomes one of h's consumers (room reserved).
 */
void tgs__held_consumer(tgs_core *c, tgs_task *h, tgs_task *d)
{
    tgs_class *old = d->cls, *k;
    if (!old->fetch &&
        tgs__class_get(c, old->func, old->res, old->nres, old->names,
                       old->nnames, true, &k) == TGS_OK) {
        /* Found, not made: a lookup cannot fail. */
        old->nlive--;
        class_unref(c, old);
        d->cls = k;
        class_ref(c, k);
        k->nlive++;
    }
    tgs__held_consumer_add(h, d);
}

/* New task `d` needs `h`, held already (room reserved). */
void tgs__held_consumer_add(tgs_task *h, tgs_task *d)
{
    tgs_map_insert(&held_of(h)->consumers, ptr_hash(d), d);
}

/* Consumer `d` of `h` became final: it no longer needs it, and `h` may
 * be forgotten (out of line: tasks without held inputs never come here). */
void tgs__held_release(tgs_core *c, tgs_task *h, const tgs_task *d)
{
    tgs_map_remove(&held_of(h)->consumers, ptr_hash(d), d);
    tgs__maybe_forget(c, h);
}

/*
 * `h` is forgotten: each holder is told to drop it (TGS_ACT_FREE, best
 * effort: out of memory, the worker keeps the bytes until its session
 * ends) and lets go of it, which may let a draining holder close.
 */
void tgs__held_forget(tgs_core *c, tgs_task *h)
{
    tgs_held *hd = held_of(h);
    for (uint32_t i = 0; i < hd->nholders; i++) {
        tgs_worker *w = hd->holders[i].w;
        tgs__action_push(c, TGS_ACT_FREE, w->id, 0, h);
        store_remove(w, hd->holders[i].pos);
        tgs__maybe_close(c, w);
    }
    hd->nholders = 0;
    tgs__lineage_drop(c, h);
}

/*
 * `h` lost its last holder for good (see tgs__result_lost): h becomes
 * ERRED with `e` (its reference is taken), lets go of its lineage links,
 * and every consumer fails with the same error (origin h), with what
 * depends on it.
 */
void tgs__held_lost(tgs_core *c, tgs_task *h, tgs_error *e)
{
    tgs_held *hd = held_of(h);
    tgs_map consumers = hd->consumers;
    hd->consumers = (tgs_map){0};
    tgs__held_free(h);
    free(h->out.result);
    h->held = false;
    set_state(c, h, TGS_ERRED);
    h->out.error = e; /* the reference tgs__error_newf gave */
    tgs__lineage_drop(c, h);
    for (size_t i = 0; i < tgs_map_capacity(&consumers); i++) {
        tgs_task *d = tgs_map_at(&consumers, i);
        /* Listed once per occurrence; the first one failed it. */
        if (d == NULL || is_final(d->state))
            continue;
        tgs__unschedule(c, d, true);
        tgs__fail_cascade(c, d, TGS_ERRED, e);
        d->flags |= TF_INHERITED;
    }
    tgs_map_free(&consumers);
    tgs__maybe_forget(c, h);
}

/*
 * Worker `w` is gone (out of the worker table, nothing running there):
 * it no longer holds anything, and each result it was the only holder of
 * is lost. Two passes, because failing consumers may forget other held
 * results, which must not find `w` among their holders any more.
 */
void tgs__store_lost(tgs_core *c, tgs_worker *w)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->nstore; i++) {
        tgs_task *h = w->store[i].t;
        holder_remove(h, w->store[i].slot);
        if (held_of(h)->nholders == 0)
            w->store[n++].t = h; /* i >= n: read already */
    }
    w->nstore = 0;
    for (uint32_t i = 0; i < n; i++) {
        tgs_task *h = w->store[i].t;
        if (!(h->flags & TF_FORGOTTEN)) /* else no one needs it any more */
            tgs__result_lost(c, h, w, false);
    }
}

void tgs__holder_drop(tgs_core *c, tgs_task *h, tgs_worker *w)
{
    tgs_held *hd = held_of(h);
    for (uint32_t s = 0; s < hd->nholders; s++) {
        if (hd->holders[s].w != w)
            continue;
        uint32_t pos = hd->holders[s].pos;
        tgs__action_push(c, TGS_ACT_FREE, w->id, 0, h); /* best effort */
        holder_remove(h, s);
        store_remove(w, pos);
        tgs__maybe_close(c, w);
        return;
    }
}

int tgs_core_result_missing(tgs_core *c, uint64_t wid, tgs_str key,
                            int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    tgs_worker *w = find_worker(c, wid);
    tgs_task *h = find_key(c, key);
    int rc = TGS_ENOTFOUND;
    if (w != NULL && h != NULL && h->held) {
        tgs_held *hd = held_of(h);
        for (uint32_t s = 0; s < hd->nholders; s++) {
            if (hd->holders[s].w != w)
                continue;
            uint32_t pos = hd->holders[s].pos;
            holder_remove(h, s);
            store_remove(w, pos);
            tgs__maybe_close(c, w);
            if (hd->nholders == 0)
                tgs__result_lost(c, h, w, true);
            rc = TGS_OK;
            break;
        }
    }
    tgs__schedule(c);
    return rc;
}
