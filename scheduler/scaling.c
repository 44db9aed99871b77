/* SPDX-License-Identifier: Apache-2.0
 *
 * scaling.c: the launcher (local processes, Slurm jobs or SSH hosts: see
 * launcher.h) following the core's scaling target: polling its units,
 * marking launched workers as managed, starting units up to the target
 * (in bounded bursts, backing off after failures) and stopping units none
 * of whose workers connected. Which connected workers to retire is the
 * core's decision; they drain first, so nothing is lost.
 */
#include <string.h>

#include "methods.h"
#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

bool srv_launch_connected(void *ud, const char *id)
{
    const sched *s = ud;

    for (size_t i = 0; i < s->workers.n; i++) {
        const peer *w = s->workers.v[i];
        if (w->registered && w->launch_id && strcmp(w->launch_id, id) == 0)
            return true;
    }
    return false;
}

/*
 * The scaling policy is the core's (tgs_core_scale, tgs_core_adapt,
 * decided at tgs_core_tick); this only meets it with processes. The
 * target comes as TGS_ACT_SCALE, connected workers to retire as
 * TGS_ACT_RETIRE (act_retire). The core counts only the workers this
 * launcher started: tell it which they are (once connected).
 */
static void mark_managed(sched *s)
{
    for (size_t i = 0; i < s->workers.n; i++) {
        peer *w = s->workers.v[i];
        if (w->registered && !w->launched && w->launch_id &&
            tgs_launcher_owns(s->launcher, w->launch_id)) {
            tgs_core_worker_managed(s->core, w->id);
            tgs_launcher_seen(s->launcher, w->launch_id);
            w->launched = true;
        }
    }
}

void srv_scale_tick(sched *s, int64_t now)
{
    size_t active, slots;

    if (s->launcher == NULL)
        return;
    tgs_launcher_poll(s->launcher, now);
    mark_managed(s);
    if (!s->have_target)
        return;
    active = tgs_launcher_active(s->launcher);
    slots = tgs_launcher_slots(s->launcher);
    /* Start missing units (also replaces ones that ended), at most a
     * burst of 16 per 100 ms so a crashing worker cannot fork-bomb, and
     * none while backing off after failed starts. Units still starting
     * (a batch job waiting in the queue) count: nothing is started twice
     * for the same demand. */
    if (active < s->target && now - s->last_spawn_ms >= 100) {
        for (int i = 0; i < 16 && active < s->target &&
                        tgs_launcher_ready(s->launcher, now);
             i++) {
            if (tgs_launcher_start(s->launcher, now) != 0)
                break;
            active += slots;
        }
        s->last_spawn_ms = now;
    }
    /* Still too many: stop units none of whose workers connected (no
     * work to lose), newest first, while whole units can go. Connected
     * workers are the core's to retire, by draining; it picks the least
     * loaded. */
    while (
        active > s->target &&
        tgs_launcher_stop_idle(s->launcher, s->target, srv_launch_connected, s))
        active = tgs_launcher_active(s->launcher);
    srv_run_actions(s);
}
