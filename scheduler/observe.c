/* SPDX-License-Identifier: Apache-2.0
 *
 * observe.c: the core's record of task state changes (tgs_core_observe)
 * read after each event and handed, once each, to the watchers (watch.c),
 * the debug log (one key=value line per change) and the dashboard; the
 * record is on only while one of them needs it, so a scheduler nobody
 * watches pays one test per change. Also SetLogLevel, which moves the
 * debug log (and so the record) at run time. Depends on sched.h and
 * util/log.h.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dashboard.h"
#include "sched.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* Longest part of a key or name a log line shows (it says the full
 * length beyond). */
#define LOG_VALUE_MAX 200

static const char *state_name(tgs_state st)
{
    static const char *names[] = {"new",        "waiting", "ready",
                                  "processing", "memory",  "erred",
                                  "cancelled",  "released"};
    return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

tgs_str srv_transition_worker(sched *s, const tgs_transition *tr,
                              uint64_t *run_us)
{
    uint64_t wid;

    *run_us = 0;
    if (tr->to == TGS_PROCESSING) {
        peer *w;
        if (!tgs_task_worker(tr->task, &wid) ||
            (w = srv_table_find(&s->workers, wid)) == NULL || w->name == NULL)
            return CS("");
        return CS(w->name);
    }
    if (tr->to == TGS_MEMORY || tr->to == TGS_ERRED)
        return tgs_task_ran(tr->task, run_us);
    return CS("");
}

int64_t srv_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One debug line: task key="k" from=ready to=processing func="f"
 * worker="w1" attempt=1 (run_us, nbytes, error when they apply). */
static void log_transition(sched *s, const tgs_transition *tr)
{
    char key[LOG_VALUE_MAX * 4 + 64], fn[LOG_VALUE_MAX * 4 + 64];
    char wk[LOG_VALUE_MAX * 4 + 64], extra[LOG_VALUE_MAX * 4 + 96];
    tgs_str k = tgs_task_key(tr->task), f = tgs_task_func(tr->task);
    uint64_t run_us;
    tgs_str w = srv_transition_worker(s, tr, &run_us);

    extra[0] = '\0';
    if (tr->to == TGS_MEMORY) {
        snprintf(extra, sizeof(extra), " run_us=%llu nbytes=%llu",
                 (unsigned long long)run_us,
                 (unsigned long long)tgs_task_result_size(tr->task));
    } else if (tr->to == TGS_ERRED || tr->to == TGS_CANCELLED) {
        tgs_str e = tgs_task_err_type(tr->task);
        char et[LOG_VALUE_MAX * 4 + 64];
        snprintf(extra, sizeof(extra), " run_us=%llu error=%s",
                 (unsigned long long)run_us,
                 tg__log_quote(et, sizeof(et), e.ptr, e.len, LOG_VALUE_MAX));
    }
    tg__log(TG__LOG_DEBUG,
            "task key=%s from=%s to=%s func=%s worker=%s attempt=%u%s",
            tg__log_quote(key, sizeof(key), k.ptr, k.len, LOG_VALUE_MAX),
            state_name(tr->from), state_name(tr->to),
            tg__log_quote(fn, sizeof(fn), f.ptr, f.len, LOG_VALUE_MAX),
            tg__log_quote(wk, sizeof(wk), w.ptr, w.len, LOG_VALUE_MAX),
            (unsigned)tgs_task_attempt(tr->task), extra);
}

void srv_observe_slow(sched *s)
{
    size_t n;
    const tgs_transition *tr = tgs_core_transitions(s->core, &n, NULL);
    bool debug = tg__log_enabled(TG__LOG_DEBUG);
    int64_t now_us, mono_us;

    if (n == 0)
        return;
    now_us = srv_wall_us();
    /* The dashboard's task stream is measured on the monotonic clock, as
     * its snapshots are. */
    mono_us = s->dashboard_observes ? tg__now_us() : 0;
    for (size_t i = 0; i < n; i++) {
        if (debug)
            log_transition(s, &tr[i]);
        if (s->nfollowing > 0)
            srv_watch_transition(s, &tr[i], now_us);
        if (s->dashboard_observes)
            srv_dashboard_record(s, &tr[i], mono_us);
    }
    /* Read once: a later call before the next event sees nothing. */
    tgs_core_transitions_clear(s->core);
}

void srv_observe_update(sched *s)
{
    bool on = s->nfollowing > 0 || tg__log_enabled(TG__LOG_DEBUG) ||
              s->dashboard_observes;

    if (on == s->observing)
        return;
    s->observing = on;
    tgs_core_observe(s->core, on);
}

void srv_do_set_log_level(sched *s, tg__scall *c, const uint8_t *req,
                          size_t len)
{
    taskgrid_v1_SetLogLevelRequest m;
    taskgrid_v1_SetLogLevelResponse r = {0};
    char level[16], msg[256], shown[96];
    const char *prev = tg__log_level_name();

    if (!srv_decode(c, taskgrid_v1_SetLogLevelRequest_fields, &m, req, len))
        return;
    r.previous = tg_pbbuf_str(prev);
    if (m.level.len > 0) {
        if (m.level.len >= sizeof(level)) {
            level[0] = '\0'; /* too long to be a level: refused below */
        } else {
            memcpy(level, m.level.ptr, m.level.len);
            level[m.level.len] = '\0';
        }
        if (level[0] == '\0' || strlen(level) != m.level.len ||
            tg__log_set_level(level) != TG_OK) {
            snprintf(msg, sizeof(msg),
                     "SetLogLevelRequest.level %s is not a log level "
                     "(accepted: error, warn, info, debug; empty to read "
                     "it)",
                     tg__log_quote(shown, sizeof(shown),
                                   (const char *)m.level.ptr, m.level.len, 40));
            tg__scall_finish(c, TG_EINVAL, msg);
            return;
        }
        if (strcmp(prev, level) != 0)
            TG_LOG_WARN("log level set to %s (was %s) by %s", level, prev,
                        tg__scall_peer(c));
        srv_observe_update(s);
    }
    r.level = tg_pbbuf_str(tg__log_level_name());
    srv_reply(c, taskgrid_v1_SetLogLevelResponse_fields, &r);
}
