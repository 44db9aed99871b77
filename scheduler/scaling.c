/* SPDX-License-Identifier: Apache-2.0
 *
 * scaling.c: the local launcher following the core's scaling target: reaping
 * exited worker processes, marking launched workers as managed, starting
 * processes up to the target (in bounded bursts) and stopping ones that
 * never connected. Which workers to retire is the core's decision.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "methods.h"
#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

static bool launch_connected(void *ud, const char *id)
{
    sched *s = ud;

    for (size_t i = 0; i < s->workers.n; i++) {
        peer *w = s->workers.v[i];
        if (w->registered && w->launch_id && strcmp(w->launch_id, id) == 0)
            return true;
    }
    return false;
}

static void on_child_exit(void *ud, const char *id, int st)
{
    (void)ud;
    if (WIFSIGNALED(st))
        TG_LOG_WARN("worker process %s was killed by signal %d", id,
                    WTERMSIG(st));
    else
        TG_LOG_INFO("worker process %s exited with status %d", id,
                    WEXITSTATUS(st));
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
        if (w->registered && w->launch_id &&
            tgs_launcher_owns(s->launcher, w->launch_id))
            tgs_core_worker_managed(s->core, w->id);
    }
}

void srv_scale_tick(sched *s, int64_t now)
{
    size_t active;
    char id[64];

    if (s->launcher == NULL)
        return;
    tgs_launcher_reap(s->launcher, on_child_exit, s);
    mark_managed(s);
    if (!s->have_target)
        return;
    active = tgs_launcher_active(s->launcher);
    /* Start missing workers (also replaces ones that died), at most a
     * burst per 100 ms so a crashing worker binary cannot fork-bomb. */
    if (active < s->target && now - s->last_spawn_ms >= 100) {
        size_t n = s->target - active;
        if (n > 16)
            n = 16;
        for (size_t i = 0; i < n; i++) {
            if (tgs_launcher_spawn(s->launcher, id, sizeof(id)) != 0) {
                TG_LOG_ERROR("cannot start a worker process");
                break;
            }
            TG_LOG_INFO("started worker process %s", id);
        }
        s->last_spawn_ms = now;
    }
    /* Still too many: stop started processes that never connected (no
     * work to lose). Connected ones are the core's to retire, by
     * draining; it picks the least loaded. */
    while (
        active > s->target &&
        tgs_launcher_pick(s->launcher, launch_connected, s, id, sizeof(id)) &&
        !launch_connected(s, id)) {
        tgs_launcher_retire(s->launcher, id);
        tgs_launcher_signal(s->launcher, id, SIGTERM);
        active--;
    }
    srv_run_actions(s);
}
