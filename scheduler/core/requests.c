/* SPDX-License-Identifier: Apache-2.0
 *
 * requests.c: what clients ask of tasks: watch one (be told when it is
 * final), cancel (with every dependent), release (forget results no one
 * needs, now or once final: fire-and-forget), hold (keep a result for a
 * client that did not submit it), and annotate tasks not yet running
 * (priority, resources, retries). Depends on internal.h, errors.c,
 * failure.c, classes.c, ready.c and schedule.c.
 */
#include "scheduler/core/internal.h"

int tgs_core_watch(tgs_core *c, tgs_str key, uint64_t watcher,
                   const tgs_task **task)
{
    if (task != NULL)
        *task = NULL;
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, TGS__NO_CLOCK);
    tgs_task *t = find_key(c, key);
    if (t == NULL)
        return TGS_ENOTFOUND;
    if (task != NULL)
        *task = t;
    if (is_final(t->state))
        return TGS_OK;
    tgs_watchers *w = t->watchers;
    uint32_t n = w ? w->n : 0;
    for (uint32_t i = 0; i < n; i++)
        if (w->ids[i] == watcher)
            return TGS_OK;
    /* The watcher list is one allocation with its counts (a task without
     * watchers pays one pointer), so it grows here rather than with
     * tg__array_grow. */
    if (w == NULL || w->n == w->cap) {
        uint32_t ncap = w ? w->cap * 2 : 1;
        if (w != NULL && w->cap > UINT32_MAX / 2)
            return TGS_ENOMEM;
        w = realloc(w, sizeof *w + (size_t)ncap * sizeof w->ids[0]);
        if (w == NULL)
            return TGS_ENOMEM;
        w->n = n;
        w->cap = ncap;
        t->watchers = w;
    }
    w->ids[w->n++] = watcher;
    return TGS_OK;
}

int tgs_core_cancel(tgs_core *c, const tgs_str *keys, size_t n, int64_t now_ms,
                    uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    int rc = TGS_OK;
    uint32_t total = 0;
    /* Their children first, before cancelling forgets any record. */
    size_t nkids = tgs__kin_collect(c, keys, n);
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || is_final(t->state))
            continue;
        tgs_error *e = tgs__error_newf("tg.Cancelled", str_of_key(t),
                                       "task '%.*s' was cancelled",
                                       plen(t->key_len), task_key(t));
        if (e == NULL) {
            rc = TGS_ENOMEM;
            break;
        }
        tgs__unschedule(c, t, true);
        total += tgs__fail_cascade(c, t, TGS_CANCELLED, e);
        tgs__error_unref(e);
    }
    if (rc == TGS_OK)
        total += tgs__kin_cancel(c, nkids);
    if (count != NULL)
        *count = total;
    tgs__schedule(c);
    return rc;
}

typedef enum hold_change {
    HOLD_ADD,          /* one more (*count = keys held) */
    HOLD_RELEASE,      /* one less, forgetting what nobody needs */
    HOLD_RELEASE_DONE, /* one less once final (fire-and-forget) */
} hold_change;

/* Change one client hold of each known key (see hold_change); a release
 * drops only holds not deferred already (*count = tasks forgotten). */
static int change_holds(tgs_core *c, const tgs_str *keys, size_t n,
                        hold_change how, uint32_t *count)
{
    uint32_t held = 0;

    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    tgs__event_begin(c, TGS__NO_CLOCK);
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL)
            continue;
        if (how == HOLD_ADD) {
            t->holds++;
            held++;
            continue;
        }
        if (t->holds <= t->deferred)
            ; /* no hold left that is not deferred already */
        else if (how == HOLD_RELEASE || is_final(t->state))
            t->holds--;
        else if (t->deferred < UINT8_MAX)
            t->deferred++; /* dropped once final (set_state) */
        /* (With 255 deferred holds already, the hold stays: the result is
         * kept until a plain release, never lost.) */
        tgs__maybe_forget(c, t);
    }
    if (count != NULL)
        *count = how == HOLD_ADD ? held : c->forgotten;
    return TGS_OK;
}

int tgs_core_release(tgs_core *c, const tgs_str *keys, size_t n,
                     uint32_t *count)
{
    return change_holds(c, keys, n, HOLD_RELEASE, count);
}

int tgs_core_hold(tgs_core *c, const tgs_str *keys, size_t n, uint32_t *count)
{
    return change_holds(c, keys, n, HOLD_ADD, count);
}

int tgs_core_release_when_done(tgs_core *c, const tgs_str *keys, size_t n,
                               uint32_t *count)
{
    return change_holds(c, keys, n, HOLD_RELEASE_DONE, count);
}

static bool not_started(const tgs_task *t)
{
    return t->state == TGS_WAITING || t->state == TGS_READY;
}

int tgs_core_set_priority(tgs_core *c, const tgs_str *keys, size_t n,
                          int32_t priority, uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    tgs__event_begin(c, TGS__NO_CLOCK);
    uint32_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || !not_started(t))
            continue;
        t->priority = priority;
        if (t->state == TGS_READY) {
            tg__heap_fix(t->cls->ready.items, t->cls->ready.n, t->pos,
                         task_before, task_moved);
            c->ready_added = true; /* it may now beat work queued */
        }
        changed++;
    }
    if (count != NULL)
        *count = changed;
    tgs__schedule(c);
    return TGS_OK;
}

/* Move a task that has not started to class `k` (room reserved there). */
static void move_class(tgs_core *c, tgs_task *t, tgs_class *k)
{
    bool ready = t->state == TGS_READY;
    if (ready) {
        tgs__ready_remove(c, t);
        set_state(c, t, TGS_WAITING); /* for a moment */
    }
    t->cls->nlive--;
    class_unref(c, t->cls);
    t->cls = k;
    class_ref(c, k);
    k->nlive++;
    if (ready)
        tgs__ready_push(c, t);
}

int tgs_core_set_resources(tgs_core *c, const tgs_str *keys, size_t n,
                           const tgs_resource *res, size_t nres,
                           uint32_t *count)
{
    size_t bad;
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL) || (nres > 0 && res == NULL) ||
        !tgs__res_valid(res, nres, &bad))
        return TGS_EINVAL;
    tgs__event_begin(c, TGS__NO_CLOCK);
    long nr = tgs__canon_res(c, res, nres);
    if (nr < 0)
        return (int)nr;
    int rc = TGS_OK;
    uint32_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || !not_started(t))
            continue;
        tgs_class *old = t->cls, *k;
        /* c->cres holds the canonical request throughout: class_get does
         * not touch it. The restrictions (and a held input) stay those of
         * the old class. */
        rc = tgs__class_get(c, old->func, c->cres, (size_t)nr, old->names,
                            old->nnames, old->fetch, &k);
        if (rc == TGS_OK && k != old &&
            tg__heap_reserve(&k->ready, k->nlive + 1) != TG_OK)
            rc = TGS_ENOMEM;
        if (rc != TGS_OK)
            break;
        if (k != old)
            move_class(c, t, k);
        changed++;
    }
    if (count != NULL)
        *count = changed;
    tgs__schedule(c); /* a READY task may fit somewhere now */
    return rc;
}

int tgs_core_set_retries(tgs_core *c, const tgs_str *keys, size_t n,
                         uint32_t retries, uint32_t *count)
{
    if (count != NULL)
        *count = 0;
    if (c == NULL || (n > 0 && keys == NULL))
        return TGS_EINVAL;
    tgs__event_begin(c, TGS__NO_CLOCK);
    uint32_t changed = 0;
    for (size_t i = 0; i < n; i++) {
        tgs_task *t = find_key(c, keys[i]);
        if (t == NULL || is_final(t->state))
            continue;
        t->retries = retries;
        changed++;
    }
    if (count != NULL)
        *count = changed;
    return TGS_OK;
}
