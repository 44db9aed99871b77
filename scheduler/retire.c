/* SPDX-License-Identifier: Apache-2.0
 *
 * retire.c: Retire (workers retired by name, or restarted; admin role),
 * Release's when_done (fire-and-forget), and the holders Status names
 * for each key (as Dask's who_has). The decisions are the core's
 * (tgs_core_worker_retire, tgs_core_release_when_done); this decodes,
 * checks names, keeps the launcher's count right and answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

/* The connected, registered worker named `name` (NULL: none). */
static peer *worker_named(sched *s, const char *name)
{
    for (size_t i = 0; i < s->workers.n; i++) {
        peer *w = s->workers.v[i];
        if (w->registered && w->name != NULL && strcmp(w->name, name) == 0)
            return w;
    }
    return NULL;
}

/* The workers a RetireRequest names (every registered one if none), in
 * `out` (room for s->workers.n); false, the call answered NOT_FOUND
 * naming the first unknown name, if one is not connected. */
static bool retire_targets(sched *s, tg__scall *c,
                           const taskgrid_v1_RetireRequest *m, peer **out,
                           size_t *n)
{
    char msg[400];

    *n = 0;
    if (m->workers_count == 0) {
        for (size_t i = 0; i < s->workers.n; i++)
            if (s->workers.v[i]->registered)
                out[(*n)++] = s->workers.v[i];
        return true;
    }
    for (pb_size_t i = 0; i < m->workers_count; i++) {
        peer *w = worker_named(s, m->workers[i]);
        if (w == NULL) {
            snprintf(msg, sizeof(msg),
                     "no connected worker is named '%.200s' (nothing was "
                     "retired)",
                     m->workers[i]);
            tg__scall_finish(c, TG_ENOTFOUND, msg);
            return false;
        }
        bool dup = false;
        for (size_t j = 0; j < *n; j++)
            dup = dup || out[j] == w;
        if (!dup && *n < s->workers.n)
            out[(*n)++] = w;
    }
    return true;
}

void srv_do_retire(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_RetireRequest m;
    taskgrid_v1_RetireResponse r = {0};
    peer **targets;
    size_t n = 0, managed = 0;
    int64_t now = tg__now_ms();

    if (!srv_decode(c, taskgrid_v1_RetireRequest_fields, &m, req, len))
        return;
    targets = calloc(s->workers.n ? s->workers.n : 1, sizeof(*targets));
    r.workers = calloc(s->workers.n ? s->workers.n : 1, sizeof(char *));
    if (targets == NULL || r.workers == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    if (!retire_targets(s, c, &m, targets, &n))
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        peer *w = targets[i];
        if (tgs_core_worker_retire(s->core, w->id, !m.restart, now) != TGS_OK)
            continue;
        TG_LOG_INFO("%s worker %s", m.restart ? "restarting" : "retiring",
                    w->name);
        /* Its process no longer counts toward the launcher's target, so
         * a restart gets a new one; a retirement lowers the target. */
        if (s->launcher != NULL && w->launch_id != NULL &&
            tgs_launcher_owns(s->launcher, w->launch_id)) {
            tgs_launcher_retire(s->launcher, w->launch_id);
            managed++;
        }
        r.workers[r.workers_count++] = w->name;
    }
    if (!m.restart && managed > 0 && s->have_target) {
        uint32_t t = s->target > managed ? s->target - (uint32_t)managed : 0;
        tgs_core_scale(s->core, t, now);
    }
    srv_reply(c, taskgrid_v1_RetireResponse_fields, &r);
    srv_run_actions(s);

cleanup:
    free(r.workers);
    free(targets);
    tg__wire_release(taskgrid_v1_RetireRequest_fields, &m);
}

int srv_release_when_done(sched *s, char **keys, pb_size_t n, uint32_t *count)
{
    tgs_str *v = calloc(n ? n : 1, sizeof(*v));

    if (v == NULL)
        return TG_ENOMEM;
    for (pb_size_t i = 0; i < n; i++)
        v[i] = CS(keys[i]);
    int rc = tgs_core_release_when_done(s->core, v, n, count);
    free(v);
    return rc;
}

void *srv_status_holders(sched *s, const taskgrid_v1_StatusRequest *m,
                         taskgrid_v1_KeyStatus *ks)
{
    size_t total = 0;
    for (pb_size_t i = 0; i < m->keys_count; i++) {
        const tgs_task *t = tgs_core_find(s->core, CS(m->keys[i]));
        if (t != NULL && tgs_task_state(t) == TGS_MEMORY)
            total += tgs_task_nholders(t);
    }
    /* The names are the peers', borrowed until the reply is encoded. */
    char **names = calloc(total ? total : 1, sizeof(*names));
    if (names == NULL)
        return NULL;
    size_t at = 0;
    for (pb_size_t i = 0; i < m->keys_count; i++) {
        const tgs_task *t = tgs_core_find(s->core, CS(m->keys[i]));
        if (t == NULL || tgs_task_state(t) != TGS_MEMORY)
            continue;
        ks[i].inline_result = !tgs_task_held(t);
        ks[i].holders = &names[at];
        size_t nh = tgs_task_nholders(t);
        if (nh > 65535) /* pb_size_t; never in practice */
            nh = 65535;
        for (size_t j = 0; j < nh && at < total; j++) {
            uint64_t wid;
            peer *w;
            if (!tgs_task_holder(t, j, &wid) ||
                (w = srv_table_find(&s->workers, wid)) == NULL ||
                w->name == NULL)
                continue;
            names[at++] = w->name;
            ks[i].holders_count++;
        }
    }
    return names;
}
