/* SPDX-License-Identifier: Apache-2.0
 *
 * actions.c: the action queue, the core's only output: a ring (capacity a
 * power of two) that events append to and tgs_core_next_action pops, and
 * the notification of a task's watchers. Depends on internal.h and
 * util/array.h.
 */
#include "scheduler/core/internal.h"

/*
 * Double the ring (c->alen == c->acap). The array grows in place; the
 * queued actions that had wrapped around to its start move behind the
 * old end, so they stay in order from `ahead`.
 */
static int ring_grow(tgs_core *c)
{
    size_t old = c->acap;
    if (tg__array_grow_to(&c->actions, &c->acap, old ? old * 2 : 64,
                          sizeof *c->actions, 64, SIZE_MAX) != TG_OK)
        return TGS_ENOMEM;
    size_t wrapped = c->ahead + c->alen > old ? c->ahead + c->alen - old : 0;
    if (wrapped)
        memcpy(c->actions + old, c->actions, wrapped * sizeof *c->actions);
    return TGS_OK;
}

int tgs__action_push(tgs_core *c, tgs_action_kind kind, uint64_t worker,
                     uint64_t watcher, const tgs_task *task)
{
    if (c->alen == c->acap && ring_grow(c) != TGS_OK)
        return TGS_ENOMEM;
    tgs_action *a = &c->actions[(c->ahead + c->alen) & (c->acap - 1)];
    a->kind = kind;
    a->worker = worker;
    a->watcher = watcher;
    a->task = task;
    a->target = 0;
    c->alen++;
    return TGS_OK;
}

int tgs__action_push_scale(tgs_core *c, uint32_t target)
{
    if (tgs__action_push(c, TGS_ACT_SCALE, 0, 0, NULL) != TGS_OK)
        return TGS_ENOMEM;
    c->actions[(c->ahead + c->alen - 1) & (c->acap - 1)].target = target;
    return TGS_OK;
}

/* Tell the watchers of a task that just became final. Best effort: if the
 * queue cannot grow, the notification is lost (the client's Gather then
 * has to ask again). */
void tgs__notify(tgs_core *c, tgs_task *t)
{
    tgs_watchers *w = t->watchers;
    if (w == NULL)
        return;
    for (uint32_t i = 0; i < w->n; i++)
        tgs__action_push(c, TGS_ACT_NOTIFY, 0, w->ids[i], t);
    free(w);
    t->watchers = NULL;
}

bool tgs_core_next_action(tgs_core *c, tgs_action *out)
{
    if (c == NULL || c->alen == 0)
        return false;
    if (out != NULL)
        *out = c->actions[c->ahead];
    c->ahead = (c->ahead + 1) & (c->acap - 1);
    c->alen--;
    return true;
}
