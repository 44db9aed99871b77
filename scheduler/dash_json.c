/* SPDX-License-Identifier: Apache-2.0
 *
 * dash_json.c: the dashboard's JSON (/api/dashboard.json): the graph's
 * state counts, the workers, the launcher and its units, progress per
 * function (from the core's per-function counts, tgs_core_func_next) and
 * the task stream (the ring of finished runs, oldest first: key,
 * function, worker, start, stop, erred). Start and stop are seconds relative to
 * the snapshot (<= 0), so the page needs no clock of the scheduler's. Costs
 * O(workers
 * + functions + DASH_RUNS + units x workers), never O(tasks). Depends on
 * dash.h.
 */
#include <stdio.h>
#include <string.h>

#include "dash.h"

/* Functions listed with their progress (the page shows the busiest). */
#define JSON_FUNCS 1000
#define JSON_UNITS 1000

static void field_u64(tgs_text *t, const char *name, uint64_t v, bool comma)
{
    if (comma)
        tgs_text_str(t, ",");
    tgs_text_str(t, "\"");
    tgs_text_str(t, name);
    tgs_text_str(t, "\":");
    tgs_text_u64(t, v);
}

static void state_fields(tgs_text *t, const uint64_t c[TGS_NSTATES])
{
    field_u64(t, "waiting", c[TGS_WAITING], false);
    field_u64(t, "ready", c[TGS_READY], true);
    field_u64(t, "processing", c[TGS_PROCESSING], true);
    field_u64(t, "memory", c[TGS_MEMORY], true);
    field_u64(t, "erred", c[TGS_ERRED], true);
    field_u64(t, "cancelled", c[TGS_CANCELLED], true);
    field_u64(t, "forgotten", c[TGS_RELEASED], true);
}

static void workers_json(const sched *s, tgs_text *t)
{
    size_t nw = tgs_core_nworkers(s->core);

    tgs_text_str(t, ",\"workers\":[");
    for (size_t i = 0; i < nw; i++) {
        tgs_worker_info wi;
        const peer *w;
        if (!tgs_dash_worker_at(s, i, &wi, &w))
            break;
        tgs_text_str(t, i ? ",{\"name\":" : "{\"name\":");
        tgs_text_json(t, wi.name.ptr, wi.name.len);
        field_u64(t, "threads", wi.nthreads, true);
        field_u64(t, "processing", wi.processing, true);
        field_u64(t, "seceded", wi.seceded, true);
        field_u64(t, "memory", w ? w->mem.memory : 0, true);
        field_u64(t, "memory_limit", w ? w->mem.limit : 0, true);
        field_u64(t, "spilled", w ? w->mem.spilled : 0, true);
        field_u64(t, "rss", w ? w->mem.rss : 0, true);
        field_u64(t, "paused", w && w->mem.paused, true);
        field_u64(t, "draining", wi.draining, true);
        tgs_text_str(t, "}");
    }
    tgs_text_str(t, "]");
}

static void functions_json(const sched *s, tgs_text *t)
{
    size_t pos = 0, n = 0;
    tgs_str name;
    uint64_t c[TGS_NSTATES];

    tgs_text_str(t, ",\"functions\":[");
    while (n < JSON_FUNCS && tgs_core_func_next(s->core, &pos, &name, c)) {
        tgs_text_str(t, n++ ? ",{\"name\":" : "{\"name\":");
        tgs_text_json(t, name.ptr, name.len);
        tgs_text_str(t, ",");
        state_fields(t, c);
        tgs_text_str(t, "}");
    }
    tgs_text_str(t, "]");
}

static void stream_json(const struct srv_dash *d, int64_t now_us, tgs_text *t)
{
    uint64_t first = d->nruns > DASH_RUNS ? d->nruns - DASH_RUNS : 0;

    field_u64(t, "stream_total", d->nruns, true);
    tgs_text_str(t, ",\"stream\":[");
    for (uint64_t i = first; i < d->nruns; i++) {
        const dash_run *r = &d->runs[i % DASH_RUNS];
        const char *w = tgs_dash_worker_name(d, r->worker);
        const char *f = d->funcs[r->func].name;
        tgs_text_str(t, i > first ? ",[" : "[");
        tgs_text_json(t, r->key, r->keylen);
        tgs_text_str(t, ",");
        tgs_text_json(t, f, strlen(f));
        tgs_text_str(t, ",");
        tgs_text_json(t, w, strlen(w));
        tgs_text_str(t, ",");
        tgs_text_num(t, (double)(r->start_us - now_us) / 1e6);
        tgs_text_str(t, ",");
        tgs_text_num(t, (double)(r->stop_us - now_us) / 1e6);
        tgs_text_str(t, r->erred ? ",1]" : ",0]");
    }
    tgs_text_str(t, "]");
}

/* The launcher and its units (null with --launcher none), at most
 * JSON_UNITS of them. */
static void launcher_json(const sched *s, tgs_text *t)
{
    const char *kind, *last;
    tgs_unit_info u;
    uint64_t failures;

    if (s->launcher == NULL) {
        tgs_text_str(t, ",\"launcher\":null");
        return;
    }
    kind = tgs_launcher_kind(s->launcher);
    failures = tgs_launcher_failures(s->launcher, &last);
    tgs_text_str(t, ",\"launcher\":{\"kind\":");
    tgs_text_json(t, kind, strlen(kind));
    field_u64(t, "target", s->have_target ? s->target : 0, true);
    field_u64(t, "active", tgs_launcher_active(s->launcher), true);
    field_u64(t, "failures", failures, true);
    tgs_text_str(t, ",\"last_error\":");
    tgs_text_json(t, last, strlen(last));
    tgs_text_str(t, ",\"units\":[");
    for (size_t i = 0;
         i < JSON_UNITS && tgs_launcher_unit_at(s->launcher, i, &u); i++) {
        tgs_text_str(t, i ? ",{\"id\":" : "{\"id\":");
        tgs_text_json(t, u.id, strlen(u.id));
        tgs_text_str(t, ",\"state\":");
        tgs_text_json(t, u.state, strlen(u.state));
        tgs_text_str(t, ",\"where\":");
        tgs_text_json(t, u.where, strlen(u.where));
        field_u64(t, "workers", u.workers, true);
        field_u64(t, "connected",
                  tgs_launcher_unit_connected(s->launcher, i,
                                              srv_launch_connected, (void *)s),
                  true);
        tgs_text_str(t, "}");
    }
    tgs_text_str(t, "]}");
}

void tgs_dash_json(const sched *s, int64_t now_us, tgs_text *t)
{
    uint64_t c[TGS_NSTATES];

    tgs_core_counts(s->core, c);
    tgs_text_str(t, "{\"version\":");
    tgs_text_json(t, TGS_VERSION, strlen(TGS_VERSION));
    tgs_text_str(t, ",\"now\":");
    tgs_text_num(t, (double)now_us / 1e6);
    tgs_text_str(t, ",\"counts\":{");
    state_fields(t, c);
    tgs_text_str(t, "}");
    field_u64(t, "unplaceable", tgs_core_unplaceable(s->core), true);
    workers_json(s, t);
    launcher_json(s, t);
    functions_json(s, t);
    stream_json(s->dashboard, now_us, t);
    tgs_text_str(t, "}");
}
