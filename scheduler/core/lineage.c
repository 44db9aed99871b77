/* SPDX-License-Identifier: Apache-2.0
 *
 * lineage.c: recomputing results lost with their last holder. A task
 * whose result is held on workers keeps, while it is held, its
 * specification (function, input, codec, class: always in the task) and
 * its dependency links ("lineage links"). A link does not keep the
 * dependency in memory: it may be forgotten as usual (its result freed,
 * its key out of the map), but its struct stays, without result, error or
 * watchers, until no link names it (`lineage` counts them; such a task is
 * "parked": forgotten, swept, state TGS_RELEASED), so a link never
 * dangles and says which input was forgotten.
 *
 * When the last holder of a result still needed (forgotten results are
 * not) is lost, or says it no longer has it, the task is recomputed: it
 * goes back to WAITING (READY once its dependencies are final), counts an
 * attempt but no retry, links to its dependencies again as a waiting task
 * does (a dependency lost in the same event is recomputed first or
 * waited for), and every task needing it waits for it again (a READY one
 * leaves its queue, a processing one is cancelled on its worker, one
 * waiting for a retry loses its delay). It cannot be recomputed, and
 * fails with tg.DataLost naming the reason, when a dependency was
 * forgotten, erred or was cancelled; the Nth loss of one result (N =
 * allowed_failures, at most 255) fails it with tg.KilledWorker. Inline
 * results are never lost, so never recomputed. Depends on internal.h,
 * ready.c, retry.c, workers.c, actions.c, errors.c and life.c.
 */
#include "scheduler/core/internal.h"

#include <stdio.h>

/* Most losses of one result counted (tgs_task.nlost is a byte). */
#define MAX_LOSSES 255

/* Drop the lineage links of `t`, a held result forgotten, lost for good
 * or recomputed; a parked dependency no other link names is freed (no
 * queued action can point at it: it was swept). */
void tgs__lineage_drop(tgs_core *c, tgs_task *t)
{
    bool linked = false;
    for (uint32_t i = 0; i < t->ndeps; i++) {
        tgs_task *d = t->deps[i];
        if (d == NULL)
            continue;
        linked = true;
        t->deps[i] = NULL;
        if (--d->lineage == 0 && d->state == TGS_RELEASED)
            tgs__task_free(c, d);
    }
    if (linked)
        c->nlinked--;
}

/* `t` becomes MEMORY with a held result: it lets go of its dependencies
 * (their `needed` counts and consumer entries) but keeps the links. */
void tgs__lineage_keep(tgs_core *c, tgs_task *t)
{
    c->nlinked++;
    for (uint32_t i = 0; i < t->ndeps; i++) {
        tgs_task *d = t->deps[i];
        if (d == NULL)
            continue;
        d->lineage++;
        d->needed--;
        if (d->held)
            tgs__held_release(c, d, t); /* and maybe forget it */
        else
            tgs__maybe_forget(c, d);
    }
}

/* A forgotten task still named by links, swept: keep its struct only. */
void tgs__lineage_park(tgs_task *t)
{
    if (t->state == TGS_MEMORY) {
        if (t->held)
            tgs__held_free(t);
        free(t->out.result);
    } else if (t->state == TGS_ERRED || t->state == TGS_CANCELLED) {
        tgs__error_unref(t->out.error);
    }
    t->out.result = NULL;
    t->held = false;
    free(t->watchers);
    t->watchers = NULL;
    drop_dependents(t);
    t->state = TGS_RELEASED;
}

/* Why `h` cannot be recomputed, in `buf` (empty if it can). */
static void lineage_gap(const tgs_task *h, char *buf, size_t len)
{
    buf[0] = '\0';
    for (uint32_t i = 0; i < h->ndeps; i++) {
        const tgs_task *d = h->deps[i];
        const char *why = NULL;
        if (d == NULL || (d->flags & TF_FORGOTTEN))
            why = "was forgotten";
        else if (d->state == TGS_ERRED)
            why = "erred";
        else if (d->state == TGS_CANCELLED)
            why = "was cancelled";
        if (why == NULL)
            continue;
        if (d == NULL)
            snprintf(buf, len, ", and an input %s", why);
        else
            snprintf(buf, len, ", and its input '%.*s' %s", plen(d->key_len),
                     task_key(d), why);
        return;
    }
}

/* Room for everything recompute() links, so that it cannot fail half-way:
 * `h` in its class's ready heap, its dependents array (one entry per
 * consumer occurrence, in *deps), one entry per occurrence in each
 * dependency's dependents array (not final) or consumers (held). */
static int recompute_prepare(tgs_task *h, size_t ncons, tgs_task ***deps)
{
    tgs_class *k = h->cls;
    if (tg__heap_reserve(&k->ready, k->nlive + 1) != TG_OK)
        return TGS_ENOMEM;
    for (uint32_t i = 0; i < h->ndeps; i++) {
        tgs_task *d = h->deps[i];
        if (d->held &&
            tgs_map_reserve(&held_of(d)->consumers, h->ndeps) != TGS_OK)
            return TGS_ENOMEM;
        if (is_final(d->state))
            continue;
        size_t cap = d->capdependents;
        if (tg__array_grow_to(&d->dependents, &cap,
                              (size_t)d->ndependents + h->ndeps,
                              sizeof *d->dependents, 2, UINT32_MAX) != TG_OK)
            return TGS_ENOMEM;
        d->capdependents = (uint32_t)cap;
    }
    *deps = NULL;
    if (ncons > 0 && (*deps = malloc(ncons * sizeof **deps)) == NULL)
        return TGS_ENOMEM;
    return TGS_OK;
}

/* Consumer `x` of `h` (not final) waits for it again. */
static void wait_again(tgs_core *c, tgs_task *h, tgs_task *x)
{
    if (x->state == TGS_READY) {
        tgs__ready_remove(c, x);
        set_state(c, x, TGS_WAITING);
    } else if (x->state == TGS_PROCESSING) {
        tgs__action_push(c, TGS_ACT_CANCEL, x->u.worker->id, 0, x);
        tgs__proc_remove(c, x);
        set_state(c, x, TGS_WAITING);
    } else if (x->flags & TF_BACKOFF) {
        tgs__timer_remove(c, x);
    }
    x->unfinished++;
    h->dependents[h->ndependents++] = x;
}

/* Recompute `h` (see the top of this file). TGS_ENOMEM changes nothing. */
static int recompute(tgs_core *c, tgs_task *h)
{
    tgs_held *hd = held_of(h);
    size_t ncons = hd->consumers.len;
    tgs_task **deps;
    if (ncons > UINT32_MAX || recompute_prepare(h, ncons, &deps) != TGS_OK)
        return TGS_ENOMEM;
    tgs_map consumers = hd->consumers;
    hd->consumers = (tgs_map){0};
    tgs__held_free(h);
    free(h->out.result);
    h->out.result = NULL;
    h->held = false;
    h->ran_on = NULL;
    set_state(c, h, TGS_WAITING);
    h->cls->nlive++;
    h->attempt++;
    h->nlost++;
    h->dependents = deps;
    h->capdependents = (uint32_t)ncons;
    if (h->ndeps > 0)
        c->nlinked--; /* its links become dependencies again */
    for (uint32_t i = 0; i < h->ndeps; i++) {
        tgs_task *d = h->deps[i];
        d->lineage--; /* a link again: d is not forgotten */
        d->needed++;
        if (d->held)
            tgs__held_consumer_add(d, h);
        if (!is_final(d->state)) {
            h->unfinished++;
            d->dependents[d->ndependents++] = h;
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&consumers); i++) {
        tgs_task *x = tgs_map_at(&consumers, i);
        if (x != NULL)
            wait_again(c, h, x);
    }
    tgs_map_free(&consumers);
    if (h->unfinished == 0)
        tgs__ready_push(c, h);
    return TGS_OK;
}

/*
 * `h` (held, needed) lost its last holder `w`: recompute it, or fail it
 * (tg.DataLost, or tg.KilledWorker once lost too often) with its
 * consumers. Out of memory for the error: h stays MEMORY without a
 * holder, and a task needing it fails when its worker cannot fetch it.
 */
void tgs__result_lost(tgs_core *c, tgs_task *h, const tgs_worker *w,
                      bool missing)
{
    char gap[256];
    uint32_t bound = c->opts.allowed_failures < MAX_LOSSES
                         ? c->opts.allowed_failures
                         : MAX_LOSSES;
    const char *how = missing ? "no longer has it" : "was lost";
    tgs_error *e;
    if ((uint32_t)h->nlost + 1 >= bound) {
        e = tgs__error_newf(
            "tg.KilledWorker", str_of_key(h),
            "the result of '%.*s' was lost %u times (allowed_failures=%u): "
            "last held only on worker %.*s, which %s",
            plen(h->key_len), task_key(h), (unsigned)h->nlost + 1,
            c->opts.allowed_failures, plen(w->name_len), w->name, how);
    } else {
        lineage_gap(h, gap, sizeof gap);
        if (gap[0] == '\0' && recompute(c, h) == TGS_OK)
            return;
        e = tgs__error_newf("tg.DataLost", str_of_key(h),
                            "the result was held only on worker %.*s, which "
                            "%s%s",
                            plen(w->name_len), w->name, how, gap);
    }
    if (e != NULL)
        tgs__held_lost(c, h, e);
}
