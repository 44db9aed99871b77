/* SPDX-License-Identifier: Apache-2.0
 *
 * nest.c: nested work. Seceded tasks (a running task waiting on tasks it
 * submitted holds no thread of its worker: the worker's nthreads counts
 * one more thread for it until it rejoins or leaves), and the tree of
 * parents and children (tasks submitted from inside a task name it as
 * their parent; cancelling a task cancels its unfinished children,
 * recursively; a task nested deeper than the core's max_nesting_depth
 * is refused, ERRED at once, in submit.c). Depends on internal.h, errors.c,
 * failure.c and schedule.c.
 *
 * The tree lives beside the tasks, in core->kin (one tgs_kin per task
 * with a parent or children, found by the task pointer; TN_KIN marks
 * them), so tasks outside nested work pay nothing for it. A child links
 * only to a parent known before its batch, so links always point to older
 * tasks and form a forest: every walk down it ends, visiting each task
 * once.
 */
#include "scheduler/core/internal.h"

#include <inttypes.h>

/* Parent keys are task keys: the same bound. */
#define PARENT_KEY_MAX 1024

/* ---- seceded tasks ---- */

/* `w` counts `delta` (+1 or -1) more threads for a seceded task. */
static void slots_change(tgs_core *c, tgs_worker *w, int delta)
{
    c->queued -= queued_on(w);
    w->nthreads = (uint32_t)((int64_t)w->nthreads + delta);
    w->nseceded = (uint32_t)((int64_t)w->nseceded + delta);
    c->queued += queued_on(w);
    w->steal_memo = false; /* its room changed */
    w->disp_memo = false;
    mark_dirty(c, w);
}

void tgs__secede_clear(tgs_worker *w, tgs_task *t)
{
    if (t->nest & TN_SECEDED) {
        t->nest &= (uint8_t)~TN_SECEDED;
        w->nthreads--;
        w->nseceded--;
    }
}

int tgs_core_task_seceded(tgs_core *c, uint64_t wid, tgs_str key, bool rejoined,
                          int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    int rc = TGS_OK;
    tgs_worker *w = find_worker(c, wid);
    tgs_task *t = find_key(c, key);
    if (w == NULL || t == NULL)
        rc = TGS_ENOTFOUND;
    else if (t->state != TGS_PROCESSING || t->u.worker != w)
        rc = TGS_ESTATE; /* stale: it left that worker */
    else if (!rejoined && !(t->nest & TN_SECEDED)) {
        t->nest |= TN_SECEDED;
        slots_change(c, w, +1);
    } else if (rejoined && (t->nest & TN_SECEDED)) {
        t->nest &= (uint8_t)~TN_SECEDED;
        slots_change(c, w, -1);
    }
    tgs__schedule(c);
    return rc;
}

/* ---- the tree of parents and children ---- */

static tgs_kin *kin_find(const tgs_core *c, const tgs_task *t)
{
    if (!(t->nest & TN_KIN))
        return NULL;
    uint32_t h = tgs_hash32(&t, sizeof t);
    size_t pos = tgs_map_start(&c->kin, h);
    tgs_kin *k;
    while ((k = tgs_map_next(&c->kin, h, &pos)) != NULL)
        if (k->task == t)
            return k;
    return NULL;
}

/* The record of `t`, made (with parent key `pkey` and nesting depth
 * `depth`) if it has none. */
static tgs_kin *kin_get(tgs_core *c, tgs_task *t, tgs_str pkey, uint32_t depth)
{
    tgs_kin *k = kin_find(c, t);
    if (k != NULL)
        return k;
    if (tgs_map_reserve(&c->kin, 1) != TGS_OK)
        return NULL;
    k = calloc(1, sizeof *k + pkey.len + 1);
    if (k == NULL)
        return NULL;
    k->task = t;
    k->hash = tgs_hash32(&t, sizeof t);
    k->depth = depth;
    k->plen = (uint32_t)pkey.len;
    if (pkey.len)
        memcpy(k->pkey, pkey.ptr, pkey.len);
    tgs_map_insert(&c->kin, k->hash, k); /* room reserved */
    t->nest |= TN_KIN;
    return k;
}

static int kids_push(tgs_kin *p, tgs_kin *k)
{
    if (p->nkids == p->capkids) {
        if (p->capkids > UINT32_MAX / 2)
            return TGS_ENOMEM;
        uint32_t cap = p->capkids ? p->capkids * 2 : 4;
        tgs_kin **v = realloc(p->kids, (size_t)cap * sizeof *v);
        if (v == NULL)
            return TGS_ENOMEM;
        p->kids = v;
        p->capkids = cap;
    }
    k->parent = p;
    k->at = p->nkids;
    p->kids[p->nkids++] = k;
    return TGS_OK;
}

bool tgs__parent_ok(tgs_str pkey)
{
    return pkey.len <= PARENT_KEY_MAX && (pkey.len == 0 || pkey.ptr != NULL);
}

/*
 * The depth is fixed when a task is submitted, from its parent's record:
 * so it stays right when ancestors are forgotten meanwhile (a parent that
 * returned without waiting on its children), and finding it costs one
 * lookup, not a walk up the chain. It saturates rather than wraps.
 */
uint32_t tgs__kin_depth(const tgs_core *c, tgs_str pkey, const tgs_task *parent)
{
    if (pkey.len == 0)
        return 0;
    const tgs_kin *p = parent != NULL ? kin_find(c, parent) : NULL;
    uint32_t d = p != NULL ? p->depth : 0;
    return d < UINT32_MAX ? d + 1 : d;
}

int tgs__nest_check(const tgs_core *c, tgs_str key, tgs_str pkey,
                    tgs_error **out)
{
    *out = NULL;
    uint32_t limit = c->opts.max_nesting_depth;
    if (limit == 0 || pkey.len == 0)
        return TGS_OK;
    uint32_t depth = tgs__kin_depth(c, pkey, find_key(c, pkey));
    if (depth <= limit)
        return TGS_OK;
    /* Long keys are cut: the message must stay readable. */
    *out = tgs__error_newf(
        "tg.NestingTooDeep", key,
        "task '%.*s' is nested %" PRIu32 " levels deep (submitted from "
        "inside '%.*s'), deeper than the scheduler's limit of %" PRIu32
        " (--max-nesting-depth): a task that submits tasks from inside its "
        "run recursed too far",
        plen(key.len > 200 ? 200 : key.len), key.ptr, depth,
        plen(pkey.len > 200 ? 200 : pkey.len), pkey.ptr, limit);
    return *out != NULL ? TGS_OK : TGS_ENOMEM;
}

void tgs__kin_add(tgs_core *c, tgs_task *t, tgs_str pkey,
                  const tgs_task *parent)
{
    if (pkey.len == 0)
        return;
    tgs_kin *k = kin_get(c, t, pkey, tgs__kin_depth(c, pkey, parent));
    if (k == NULL || parent == NULL)
        return;
    tgs_kin *p = kin_get(c, (tgs_task *)parent, EMPTY, 0);
    if (p != NULL)
        kids_push(p, k);
}

void tgs__kin_drop(tgs_core *c, tgs_task *t)
{
    tgs_kin *k = kin_find(c, t);
    t->nest &= (uint8_t)~TN_KIN;
    if (k == NULL)
        return;
    tgs_kin *p = k->parent;
    if (p != NULL) {
        tgs_kin *last = p->kids[--p->nkids];
        p->kids[k->at] = last;
        last->at = k->at;
    }
    for (uint32_t i = 0; i < k->nkids; i++)
        k->kids[i]->parent = NULL; /* they keep the key as text */
    tgs_map_remove(&c->kin, k->hash, k);
    free(k->kids);
    free(k);
}

void tgs__kin_free_all(tgs_core *c)
{
    for (size_t i = 0; i < tgs_map_capacity(&c->kin); i++) {
        tgs_kin *k = tgs_map_at(&c->kin, i);
        if (k != NULL) {
            free(k->kids);
            free(k);
        }
    }
    tgs_map_free(&c->kin);
    free(c->tree);
}

/* Append the children of `t` to c->tree[*n...]; false without memory. */
static bool push_kids(tgs_core *c, const tgs_task *t, size_t *n)
{
    tgs_kin *k = kin_find(c, t);
    if (k == NULL || k->nkids == 0)
        return true;
    if (tg__array_grow(&c->tree, &c->captree, *n + k->nkids, sizeof *c->tree) !=
        TG_OK)
        return false;
    for (uint32_t i = 0; i < k->nkids; i++)
        c->tree[(*n)++] = k->kids[i]->task;
    return true;
}

/*
 * Every descendant of the named keys goes into c->tree, in breadth-first
 * order, before anything is cancelled: cancelling may forget a task, and
 * with it its record. Without memory the walk stops where it is (those
 * found are still cancelled).
 */
size_t tgs__kin_collect(tgs_core *c, const tgs_str *keys, size_t n)
{
    size_t len = 0;
    if (c->kin.len == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const tgs_task *t = find_key(c, keys[i]);
        if (t != NULL && !push_kids(c, t, &len))
            return len;
    }
    for (size_t i = 0; i < len; i++)
        if (!push_kids(c, c->tree[i], &len))
            break;
    return len;
}

uint32_t tgs__kin_cancel(tgs_core *c, size_t ncollected)
{
    uint32_t total = 0;
    for (size_t i = 0; i < ncollected; i++) {
        tgs_task *t = c->tree[i];
        /* Cancelled above (a dependent of a named key, or of an earlier
         * child), or finished: nothing to do. Forgotten tasks are final
         * and freed only at the next event, so the pointer is valid. */
        if (is_final(t->state))
            continue;
        tgs_kin *k = kin_find(c, t);
        tgs_str pk = k ? (tgs_str){k->pkey, k->plen} : EMPTY;
        tgs_error *e = tgs__error_newf(
            "tg.Cancelled", str_of_key(t),
            "task '%.*s' was cancelled with its parent '%.*s'",
            plen(t->key_len), task_key(t), plen(pk.len), pk.ptr);
        if (e == NULL)
            break;
        tgs__unschedule(c, t, true);
        total += tgs__fail_cascade(c, t, TGS_CANCELLED, e);
        tgs__error_unref(e);
    }
    return total;
}

/* ---- accessors ---- */

bool tgs_task_seceded(const tgs_task *t)
{
    return t->state == TGS_PROCESSING && (t->nest & TN_SECEDED);
}

tgs_str tgs_core_task_parent(const tgs_core *c, const tgs_task *t)
{
    const tgs_kin *k = c && t ? kin_find(c, t) : NULL;
    return k ? (tgs_str){k->pkey, k->plen} : EMPTY;
}

size_t tgs_core_task_nchildren(const tgs_core *c, const tgs_task *t)
{
    const tgs_kin *k = c && t ? kin_find(c, t) : NULL;
    return k ? k->nkids : 0;
}

const tgs_task *tgs_core_task_child(const tgs_core *c, const tgs_task *t,
                                    size_t i)
{
    const tgs_kin *k = c && t ? kin_find(c, t) : NULL;
    return k && i < k->nkids ? k->kids[i]->task : NULL;
}
