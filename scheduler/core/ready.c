/* SPDX-License-Identifier: Apache-2.0
 *
 * ready.c: the ready heaps of the placement classes (one util/heap.h heap
 * per class, by priority then FIFO, each task recording its index), the
 * count of unplaceable READY tasks and the list of starving classes (with
 * READY tasks and no placer), and the placers of each class as workers
 * start or stop taking work. Depends on internal.h and util/heap.h.
 */
#include "scheduler/core/internal.h"

/* Room in `starving` for every class, so that a class starting to starve
 * never needs an allocation. */
int tgs__reserve_starving(tgs_core *c, size_t nclasses)
{
    if (nclasses <= c->capstarving)
        return TGS_OK;
    return tg__array_grow_to(&c->starving, &c->capstarving, nclasses,
                             sizeof *c->starving, 16, UINT32_MAX) == TG_OK
               ? TGS_OK
               : TGS_ENOMEM;
}

static void starving_update(tgs_core *c, tgs_class *k)
{
    bool starving = k->nplacers == 0 && k->ready.n > 0;
    if (starving && k->starving_pos == NONE) {
        k->starving_pos = c->nstarving;
        k->since = c->now;
        c->starving[c->nstarving++] = k; /* capacity reserved */
    } else if (!starving && k->starving_pos != NONE) {
        tgs_class *last = c->starving[--c->nstarving];
        c->starving[k->starving_pos] = last;
        last->starving_pos = k->starving_pos;
        k->starving_pos = NONE;
    }
}

void tgs__ready_push(tgs_core *c, tgs_task *t)
{
    tgs_class *k = t->cls;
    set_state(c, t, TGS_READY);
    /* capacity: k->nlive, reserved */
    tg__heap_push(&k->ready, t, task_before, task_moved);
    if (k->nplacers == 0) {
        c->unplaceable++;
        starving_update(c, k);
    }
    c->ready_added = true;
}

void tgs__ready_remove(tgs_core *c, tgs_task *t)
{
    tgs_class *k = t->cls;
    tg__heap_remove_at(&k->ready, t->pos, task_before, task_moved);
    if (k->nplacers == 0) {
        c->unplaceable--;
        starving_update(c, k);
    }
}

static void placers_add(tgs_core *c, tgs_class *k, int delta)
{
    if (delta > 0 && k->nplacers++ == 0) {
        c->unplaceable -= k->ready.n;
        starving_update(c, k);
    } else if (delta < 0 && --k->nplacers == 0) {
        c->unplaceable += k->ready.n;
        starving_update(c, k);
    }
}

/* A worker starts (+1) or stops (-1) taking new work: update the
 * providers of its functions and the placers of its classes. */
void tgs__worker_link(tgs_core *c, tgs_worker *w, int delta)
{
    for (size_t i = 0; i < w->nfuncs; i++) {
        if (delta > 0)
            w->funcs[i]->nproviders++;
        else
            w->funcs[i]->nproviders--;
    }
    for (uint32_t i = 0; i < w->nclasses; i++)
        placers_add(c, w->classes[i], delta);
}
