/* SPDX-License-Identifier: Apache-2.0
 *
 * secede.c: the secessions of an outbox batch as taskgrid.v1 Secession
 * messages (see secede.h). The executor reports them
 * (tg__exec_opts.secession, which the link points at
 * tgw_outbox_secession), the outbox queues them beside results, and the
 * sender puts them into the next WorkerMessage. Depends on outbox.h,
 * proto/wire.h and the log.
 */
#include <stdlib.h>

#include "secede.h"
#include "util/log.h"

void tgw_secede_fill(tgw_batch *b, taskgrid_v1_WorkerMessage *m)
{
    if (b->nsecessions == 0)
        return;
    taskgrid_v1_Secession *v = calloc(b->nsecessions, sizeof(*v));
    if (v == NULL) {
        TG_LOG_WARN("cannot report %zu secessions: out of memory",
                    b->nsecessions);
        return;
    }
    for (size_t i = 0; i < b->nsecessions; i++) {
        v[i].key = tg_pbbuf_str(b->secessions[i].key);
        v[i].rejoined = b->secessions[i].rejoined;
    }
    free(b->wire);
    b->wire = v;
    m->secessions = v;
    m->secessions_count = (pb_size_t)b->nsecessions;
}
