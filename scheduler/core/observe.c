/* SPDX-License-Identifier: Apache-2.0
 *
 * observe.c: what the core lets others watch without slowing it down:
 * the changes of task states recorded during an event (when observed),
 * and the tasks of each function per state (kept by count_state() in
 * internal.h at every change). Depends on internal.h.
 */
#include "scheduler/core/internal.h"

void tgs__observe_slow(tgs_core *c, const tgs_task *t, tgs_state from,
                       tgs_state to)
{
    if (c->ntrans == c->captrans &&
        tg__array_grow_to(&c->trans, &c->captrans, c->ntrans + 1,
                          sizeof(*c->trans), 256, SIZE_MAX) != TG_OK) {
        c->trans_dropped++;
        return;
    }
    c->trans[c->ntrans++] = (tgs_transition){t, from, to};
}

void tgs_core_observe(tgs_core *c, bool on)
{
    if (c == NULL)
        return;
    c->observe = on;
    if (!on) {
        free(c->trans);
        c->trans = NULL;
        c->ntrans = c->captrans = 0;
    }
}

const tgs_transition *tgs_core_transitions(const tgs_core *c, size_t *n,
                                           uint64_t *dropped)
{
    if (dropped != NULL)
        *dropped = c ? c->trans_dropped : 0;
    *n = c ? c->ntrans : 0;
    return *n ? c->trans : NULL;
}

void tgs_core_transitions_clear(tgs_core *c)
{
    if (c != NULL)
        c->ntrans = 0;
}

uint64_t tgs_core_hash(const void *data, size_t len)
{
    return tgs_hash_bytes(data, len);
}

bool tgs_core_func_next(const tgs_core *c, size_t *pos, tgs_str *name,
                        uint64_t counts[TGS_NSTATES])
{
    if (c == NULL)
        return false;
    size_t cap = tgs_map_capacity(&c->funcs);
    for (; *pos < cap; (*pos)++) {
        const tgs_func *f = tgs_map_at(&c->funcs, *pos);
        if (f == NULL)
            continue;
        *name = (tgs_str){f->name, f->len};
        memcpy(counts, f->counts, TGS_NSTATES * sizeof counts[0]);
        (*pos)++;
        return true;
    }
    return false;
}
