/* SPDX-License-Identifier: Apache-2.0
 *
 * why.c: why a task is not running (tgs_core_why), and why no connected
 * worker can run a placement class, the text of tg.NoWorker errors. Built
 * from the first missing piece (function, worker name, resources), per
 * class and never per task. Depends on internal.h.
 */
#include "scheduler/core/internal.h"

#include <stdarg.h>
#include <stdio.h>

/* Append to a bounded text buffer; output past the end is dropped. */
static void bufcat(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void bufcat(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    if (*pos >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos += (size_t)n;
    if (*pos >= len)
        *pos = len - 1;
}

static bool named_in(const tgs_class *k, const tgs_worker *w)
{
    tgs_str me = {w->name, w->name_len};
    for (uint32_t i = 0; i < k->nnames; i++)
        if (str_cmp(k->names[i], me) == 0)
            return true;
    return false;
}

static void names_text(const tgs_class *k, char *buf, size_t len, size_t *pos)
{
    for (uint32_t i = 0; i < k->nnames; i++)
        bufcat(buf, len, pos, "%s'%.*s'", i ? " or " : "",
               plen(k->names[i].len), k->names[i].ptr);
}

static void res_text(const tgs_class *k, char *buf, size_t len, size_t *pos)
{
    for (uint32_t i = 0; i < k->nres; i++)
        bufcat(buf, len, pos, "%s%s=%g", i ? ", " : "", k->res[i].name->s,
               k->res[i].amount);
}

/* Could `w` run tasks of `k` but for the resources: it provides the
 * function, carries a name (if any) and can fetch (if need be). */
static bool runs_but_res(const tgs_class *k, const tgs_worker *w)
{
    return !w->draining && provides(w, k->func) &&
           (k->nnames == 0 || named_in(k, w)) && (!k->fetch || w->can_fetch);
}

/*
 * Why no connected worker lists class `k` (which has READY tasks), from
 * the first missing piece: the function, a worker with one of the names,
 * a data service (an input is held on workers), or the resources (with
 * the largest capacity of each among the workers that could run it
 * otherwise). O(workers): a query, and once per class at the no-worker
 * timeout, never per task.
 */
void tgs__unplaceable_text(const tgs_core *c, const tgs_class *k, char *buf,
                           size_t len)
{
    const tgs_func *f = k->func;
    size_t pos = 0;
    buf[0] = '\0';
    if (f->nproviders == 0) {
        bufcat(buf, len, &pos, "no worker provides function '%.*s'",
               plen(f->len), f->name);
        return;
    }
    if (k->nnames != 0) {
        bool named = false, named_provider = false;
        for (size_t i = 0; i < c->nworkers; i++) {
            const tgs_worker *w = c->workers[i];
            if (w->draining || !named_in(k, w))
                continue;
            named = true;
            named_provider = named_provider || provides(w, f);
        }
        if (!named_provider) {
            bufcat(buf, len, &pos, "no worker named ");
            names_text(k, buf, len, &pos);
            if (named)
                bufcat(buf, len, &pos, " provides function '%.*s'",
                       plen(f->len), f->name);
            return;
        }
    }
    if (k->fetch) {
        bool any = false;
        for (size_t i = 0; i < c->nworkers && !any; i++)
            any = runs_but_res(k, c->workers[i]);
        if (!any) {
            bufcat(buf, len, &pos,
                   "no worker with a data service provides function "
                   "'%.*s' (an input is held on a worker)",
                   plen(f->len), f->name);
            return;
        }
    }
    if (k->nres == 0) {
        bufcat(buf, len, &pos, "no worker can run it");
        return;
    }
    bufcat(buf, len, &pos, "no worker has resources ");
    res_text(k, buf, len, &pos);
    bufcat(buf, len, &pos, " (largest: ");
    for (uint32_t r = 0; r < k->nres; r++) {
        double largest = 0;
        for (size_t i = 0; i < c->nworkers; i++) {
            const tgs_worker *w = c->workers[i];
            if (!runs_but_res(k, w))
                continue;
            const tgs_wres *wr = wres_find(w, k->res[r].name);
            if (wr != NULL && wr->cap > largest)
                largest = wr->cap;
        }
        bufcat(buf, len, &pos, "%s%s=%g", r ? ", " : "", k->res[r].name->s,
               largest);
    }
    bufcat(buf, len, &pos, ")");
}

/* Does a worker that lists `k` have its resources free now. */
static bool res_free_somewhere(const tgs_core *c, const tgs_class *k)
{
    for (size_t i = 0; i < c->nworkers; i++) {
        const tgs_worker *w = c->workers[i];
        if (w->draining || !res_free(w, k))
            continue;
        for (uint32_t j = 0; j < w->nclasses; j++)
            if (w->classes[j] == k)
                return true;
    }
    return false;
}

void tgs_core_why(const tgs_core *c, const tgs_task *t, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return;
    buf[0] = '\0';
    if (c == NULL || t == NULL)
        return;
    const tgs_class *k = t->cls;
    size_t pos = 0;
    if (t->state == TGS_READY) {
        if (k->nplacers == 0) {
            tgs__unplaceable_text(c, k, buf, len);
        } else if (k->nres != 0 && !res_free_somewhere(c, k)) {
            bufcat(buf, len, &pos, "waiting for free resources ");
            res_text(k, buf, len, &pos);
        } else {
            bufcat(buf, len, &pos, "waiting for a free worker slot");
        }
    } else if (t->state == TGS_WAITING && (t->flags & TF_BACKOFF)) {
        int64_t left = t->at.due_ms - c->now;
        bufcat(buf, len, &pos, "retrying in %lld ms (attempt %u)",
               (long long)(left > 0 ? left : 0), t->attempt);
    } else if (t->state == TGS_WAITING) {
        bufcat(buf, len, &pos, "waiting for %u %s", t->unfinished,
               t->unfinished == 1 ? "dependency" : "dependencies");
    }
}
