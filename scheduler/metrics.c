/* SPDX-License-Identifier: Apache-2.0
 *
 * metrics.c: the Prometheus text (format 0.0.4) of /metrics, named after
 * Dask's conventions with the taskgrid_ prefix: the graph's tasks per
 * state, workers, run times and completions per function (at most
 * DASH_FUNCS function labels, then "other"), bytes relayed through the
 * scheduler, RPC counts and latencies, and each worker as the scheduler
 * sees it (label worker). Counts and names only: no task key appears
 * here. Costs O(workers + functions + methods). Depends on dash.h.
 */
#include <stdio.h>
#include <string.h>

#include "dash.h"
#include "transport/transport.h"

static void family(tgs_text *t, const char *name, const char *type,
                   const char *help)
{
    tgs_text_str(t, "# HELP ");
    tgs_text_str(t, name);
    tgs_text_str(t, " ");
    tgs_text_str(t, help);
    tgs_text_str(t, "\n# TYPE ");
    tgs_text_str(t, name);
    tgs_text_str(t, " ");
    tgs_text_str(t, type);
    tgs_text_str(t, "\n");
}

/* name{label="value"[,label2="value2"]} v */
static void sample(tgs_text *t, const char *name, const char *label,
                   const char *value, size_t vlen, const char *label2,
                   const char *value2, double v)
{
    tgs_text_str(t, name);
    if (label != NULL) {
        tgs_text_str(t, "{");
        tgs_text_str(t, label);
        tgs_text_str(t, "=\"");
        tgs_text_prom_label(t, value, vlen);
        tgs_text_str(t, "\"");
        if (label2 != NULL) {
            tgs_text_str(t, ",");
            tgs_text_str(t, label2);
            tgs_text_str(t, "=\"");
            tgs_text_prom_label(t, value2, strlen(value2));
            tgs_text_str(t, "\"");
        }
        tgs_text_str(t, "}");
    }
    tgs_text_str(t, " ");
    tgs_text_num(t, v);
    tgs_text_str(t, "\n");
}

/* One histogram's samples (the family line is the caller's). */
static void histogram(tgs_text *t, const char *name, const char *label,
                      const char *value, const dash_hist *h,
                      const double *bounds, size_t nb)
{
    char n[128], le[32];
    uint64_t cum = 0;

    snprintf(n, sizeof(n), "%s_bucket", name);
    for (size_t b = 0; b <= nb; b++) {
        cum += h->bucket[b];
        if (b < nb)
            snprintf(le, sizeof(le), "%.9g", bounds[b]);
        else
            snprintf(le, sizeof(le), "+Inf");
        sample(t, n, label, value, strlen(value), "le", le, (double)cum);
    }
    snprintf(n, sizeof(n), "%s_sum", name);
    sample(t, n, label, value, strlen(value), NULL, NULL, h->sum);
    snprintf(n, sizeof(n), "%s_count", name);
    sample(t, n, label, value, strlen(value), NULL, NULL, (double)h->count);
}

/* The launcher's target, workers and units by state (a pending batch
 * job is capacity on its way), and its failed starts; nothing with
 * --launcher none. */
static void launcher_metrics(const sched *s, tgs_text *t)
{
    static const char *const states[] = {"starting", "pending", "running",
                                         "stopping"};
    const char *kind, *last;
    tgs_unit_info u;
    double n[4] = {0};

    if (s->launcher == NULL)
        return;
    kind = tgs_launcher_kind(s->launcher);
    for (size_t i = 0; tgs_launcher_unit_at(s->launcher, i, &u); i++)
        for (size_t k = 0; k < 4; k++)
            n[k] += strcmp(u.state, states[k]) == 0;
    family(t, "taskgrid_scheduler_launcher_target", "gauge",
           "Workers the scaling target asks the launcher for.");
    sample(t, "taskgrid_scheduler_launcher_target", "launcher", kind,
           strlen(kind), NULL, NULL, s->have_target ? (double)s->target : 0);
    family(t, "taskgrid_scheduler_launcher_workers", "gauge",
           "Workers the launcher started and not retired: connected, or "
           "still starting (pending batch jobs included).");
    sample(t, "taskgrid_scheduler_launcher_workers", "launcher", kind,
           strlen(kind), NULL, NULL, (double)tgs_launcher_active(s->launcher));
    family(t, "taskgrid_scheduler_launcher_units", "gauge",
           "Units the launcher started (processes, batch jobs, SSH "
           "processes) by state.");
    for (size_t k = 0; k < 4; k++)
        sample(t, "taskgrid_scheduler_launcher_units", "launcher", kind,
               strlen(kind), "state", states[k], n[k]);
    family(t, "taskgrid_scheduler_launcher_failures_total", "counter",
           "Starts that failed (a job refused, a host unreachable, a unit "
           "ended before any of its workers connected).");
    sample(t, "taskgrid_scheduler_launcher_failures_total", "launcher", kind,
           strlen(kind), NULL, NULL,
           (double)tgs_launcher_failures(s->launcher, &last));
}

static void scheduler_metrics(const sched *s, tgs_text *t)
{
    static const struct {
        const char *name;
        tgs_state state;
    } states[] = {
        {"waiting", TGS_WAITING},       {"ready", TGS_READY},
        {"processing", TGS_PROCESSING}, {"memory", TGS_MEMORY},
        {"erred", TGS_ERRED},           {"cancelled", TGS_CANCELLED},
    };
    uint64_t counts[TGS_NSTATES];

    tgs_core_counts(s->core, counts);
    family(t, "taskgrid_scheduler_tasks", "gauge",
           "Tasks the scheduler knows, by state.");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        sample(t, "taskgrid_scheduler_tasks", "state", states[i].name,
               strlen(states[i].name), NULL, NULL,
               (double)counts[states[i].state]);
    family(t, "taskgrid_scheduler_tasks_forgotten_total", "counter",
           "Tasks forgotten (released and no longer needed).");
    sample(t, "taskgrid_scheduler_tasks_forgotten_total", NULL, NULL, 0, NULL,
           NULL, (double)counts[TGS_RELEASED]);
    family(t, "taskgrid_scheduler_workers", "gauge", "Connected workers.");
    sample(t, "taskgrid_scheduler_workers", NULL, NULL, 0, NULL, NULL,
           (double)tgs_core_nworkers(s->core));
    launcher_metrics(s, t);
    family(t, "taskgrid_scheduler_unplaceable_tasks", "gauge",
           "Ready tasks no connected worker can run.");
    sample(t, "taskgrid_scheduler_unplaceable_tasks", NULL, NULL, 0, NULL, NULL,
           (double)tgs_core_unplaceable(s->core));
    family(t, "taskgrid_scheduler_relayed_bytes_total", "counter",
           "Bytes of results held on workers relayed through the scheduler "
           "to clients.");
    sample(t, "taskgrid_scheduler_relayed_bytes_total", NULL, NULL, 0, NULL,
           NULL, (double)s->relayed_bytes);
}

/* The i-th function with a label (0 <= i <= DASH_FUNCS), or NULL: "other"
 * only once it counted a run. */
static const dash_func *func_at(const struct srv_dash *d, uint32_t i)
{
    if (i < DASH_FUNCS)
        return i < d->nfuncs ? &d->funcs[i] : NULL;
    return d->funcs[i].hist.count ? &d->funcs[i] : NULL;
}

static void function_metrics(const struct srv_dash *d, tgs_text *t)
{
    const dash_func *f;

    family(t, "taskgrid_scheduler_tasks_completed_total", "counter",
           "Runs finished on workers, by function and outcome (state memory "
           "or erred).");
    for (uint32_t i = 0; i <= DASH_FUNCS; i++) {
        if ((f = func_at(d, i)) == NULL)
            continue;
        sample(t, "taskgrid_scheduler_tasks_completed_total", "function",
               f->name, strlen(f->name), "state", "memory", (double)f->memory);
        sample(t, "taskgrid_scheduler_tasks_completed_total", "function",
               f->name, strlen(f->name), "state", "erred", (double)f->erred);
    }
    family(t, "taskgrid_scheduler_task_duration_seconds", "histogram",
           "How long finished runs took on their worker, by function.");
    for (uint32_t i = 0; i <= DASH_FUNCS; i++)
        if ((f = func_at(d, i)) != NULL)
            histogram(t, "taskgrid_scheduler_task_duration_seconds", "function",
                      f->name, &f->hist, tgs_dash_run_bounds, DASH_RUN_BUCKETS);
}

/* "/taskgrid.v1.Scheduler/Submit" -> "Submit" */
static const char *method_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void rpc_metrics(const struct srv_dash *d, tgs_text *t)
{
    size_t n = d->nmethods < DASH_MAX_METHODS ? d->nmethods : DASH_MAX_METHODS;

    family(t, "taskgrid_scheduler_rpc_total", "counter",
           "RPCs the scheduler answered, by method and gRPC status code.");
    for (size_t m = 0; m < n; m++)
        for (int c = 0; c < DASH_CODES; c++) {
            const char *name = method_name(d->methods[m].path);
            if (d->rpc[m].count[c] == 0 && c != 0)
                continue;
            sample(t, "taskgrid_scheduler_rpc_total", "method", name,
                   strlen(name), "code", tg__grpc_code_name(c),
                   (double)d->rpc[m].count[c]);
        }
    family(t, "taskgrid_scheduler_rpc_duration_seconds", "histogram",
           "How long unary RPCs took, from their arrival to their end.");
    for (size_t m = 0; m < n; m++)
        if (d->methods[m].kind == TG__UNARY)
            histogram(t, "taskgrid_scheduler_rpc_duration_seconds", "method",
                      method_name(d->methods[m].path), &d->rpc[m].hist,
                      tgs_dash_rpc_bounds, DASH_RPC_BUCKETS);
}

typedef struct worker_gauge {
    const char *name, *help;
} worker_gauge;

static const worker_gauge gauges[] = {
    {"taskgrid_worker_threads", "Threads of the worker."},
    {"taskgrid_worker_tasks", "Tasks assigned to the worker and not done."},
    {"taskgrid_worker_memory_bytes",
     "Bytes of held results in the worker's memory (its last report)."},
    {"taskgrid_worker_memory_limit_bytes",
     "The worker's memory limit (0: none)."},
    {"taskgrid_worker_spilled_bytes",
     "Bytes of held results the worker spilled to disk."},
    {"taskgrid_worker_rss_bytes", "Resident memory of the worker process."},
    {"taskgrid_worker_paused",
     "1 while the worker is paused for memory, else 0."},
};

static double gauge_value(size_t g, const tgs_worker_info *wi, const peer *w)
{
    switch (g) {
    case 0:
        return wi->nthreads;
    case 1:
        return wi->processing;
    case 2:
        return w ? (double)w->mem.memory : 0;
    case 3:
        return w ? (double)w->mem.limit : 0;
    case 4:
        return w ? (double)w->mem.spilled : 0;
    case 5:
        return w ? (double)w->mem.rss : 0;
    default:
        return w && w->mem.paused ? 1 : 0;
    }
}

static void worker_metrics(const sched *s, tgs_text *t)
{
    size_t nw = tgs_core_nworkers(s->core);

    for (size_t g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
        family(t, gauges[g].name, "gauge", gauges[g].help);
        for (size_t i = 0; i < nw; i++) {
            tgs_worker_info wi;
            const peer *w;
            if (!tgs_dash_worker_at(s, i, &wi, &w))
                break;
            sample(t, gauges[g].name, "worker", wi.name.ptr, wi.name.len, NULL,
                   NULL, gauge_value(g, &wi, w));
        }
    }
}

void tgs_dash_metrics(const sched *s, tgs_text *t)
{
    scheduler_metrics(s, t);
    function_metrics(s->dashboard, t);
    rpc_metrics(s->dashboard, t);
    worker_metrics(s, t);
}
