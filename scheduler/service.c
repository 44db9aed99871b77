/* SPDX-License-Identifier: Apache-2.0
 *
 * service.c: service taskgrid.v1.Scheduler (Submit, Gather, Scale, Annotate,
 * Cancel, Release, Status) and grpc.health.v1.Health: each request
 * decoded (proto/wire.h), checked, and turned into core events; errors
 * keep their tg_status meaning on the wire.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "reflection/serve.h"
#include "sched.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* Key lists (Cancel, Release, SubmitRequest.release) as core strings. */
static tgs_str *keys_of(char **keys, pb_size_t n)
{
    tgs_str *v = calloc(n ? n : 1, sizeof(*v));

    for (pb_size_t i = 0; v && i < n; i++)
        v[i] = CS(keys[i]);
    return v;
}

void srv_do_submit(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_SubmitRequest m;
    taskgrid_v1_SubmitResponse resp = {0};
    tgs_task_spec *specs = NULL;
    tgs_str *strs = NULL;
    tgs_resource *res = NULL;
    size_t nstr = 0, nres = 0, si = 0, ri = 0;
    tgs_submit_result sr = {0};
    char err[512];
    int rc;

    if (!srv_decode(c, taskgrid_v1_SubmitRequest_fields, &m, req, len))
        return;
    if (m.release_count > 0) {
        tgs_str *rel = keys_of(m.release, m.release_count);
        if (rel != NULL)
            tgs_core_release(s->core, rel, m.release_count, NULL);
        free(rel);
        srv_observe(s); /* forgotten before the submit's event */
    }
    for (pb_size_t i = 0; i < m.tasks_count; i++) {
        nstr += m.tasks[i].deps_count + m.tasks[i].workers_count;
        nres += m.tasks[i].resources_count;
    }
    specs = calloc(m.tasks_count ? m.tasks_count : 1, sizeof(*specs));
    strs = calloc(nstr ? nstr : 1, sizeof(*strs));
    res = calloc(nres ? nres : 1, sizeof(*res));
    if (specs == NULL || strs == NULL || res == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    for (pb_size_t i = 0; i < m.tasks_count; i++) {
        const taskgrid_v1_TaskSpec *t = &m.tasks[i];
        tgs_task_spec *p = &specs[i];

        p->key = S(t->key);
        p->func = S(t->func);
        p->codec = S(t->codec);
        p->input = t->input.ptr;
        p->input_len = t->input.len;
        p->priority = t->priority;
        p->retries = t->retries;
        p->parent = S(t->parent);
        p->deps = &strs[si];
        p->ndeps = t->deps_count;
        for (pb_size_t d = 0; d < t->deps_count; d++)
            strs[si++] = CS(t->deps[d]);
        p->workers = &strs[si];
        p->nworkers = t->workers_count;
        for (pb_size_t d = 0; d < t->workers_count; d++)
            strs[si++] = CS(t->workers[d]);
        p->resources = &res[ri];
        p->nresources = t->resources_count;
        for (pb_size_t d = 0; d < t->resources_count; d++) {
            res[ri].name = S(t->resources[d].name);
            res[ri].amount = t->resources[d].amount;
            ri++;
        }
        if (t->key.len > TG_PROTO_KEY_MAX) {
            snprintf(err, sizeof(err),
                     "task #%u: key of %zu bytes is longer than the limit "
                     "of %d",
                     (unsigned)i, t->key.len, TG_PROTO_KEY_MAX);
            tg__scall_finish(c, TG_EINVAL, err);
            goto cleanup;
        }
    }
    err[0] = '\0';
    rc = tgs_core_submit(s->core, specs, m.tasks_count, tg__now_ms(), &sr, err,
                         sizeof(err));
    if (rc != TGS_OK) {
        /* The core's codes are tg_status values (core.h): they keep their
         * meaning on the wire. */
        tg__scall_finish(c, rc, err[0] ? err : "invalid graph");
        goto cleanup;
    }
    TG_LOG_DEBUG("submit: %u new, %u existing", sr.accepted, sr.existing);
    resp.accepted = sr.accepted;
    resp.existing = sr.existing;
    srv_reply(c, taskgrid_v1_SubmitResponse_fields, &resp);
    srv_run_actions(s);

cleanup:
    free(specs);
    free(strs);
    free(res);
    tg__wire_release(taskgrid_v1_SubmitRequest_fields, &m);
}

/* Keep a copy of a key a gather with a deadline waits for. */
static int gather_remember(peer *g, const char *key)
{
    char *k;

    if (tg__array_grow(&g->pending, &g->pendingcap, g->npending + 1,
                       sizeof(*g->pending)) != TG_OK ||
        (k = strdup(key)) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    g->pending[g->npending++] = k;
    return TG_OK;
}

void srv_do_gather(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_GatherRequest m;
    peer *g;

    if (!srv_decode(c, taskgrid_v1_GatherRequest_fields, &m, req, len))
        return;
    g = calloc(1, sizeof(*g));
    if (g == NULL || srv_table_add(&s->gathers, g) != 0) {
        free(g);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        tg__wire_release(taskgrid_v1_GatherRequest_fields, &m);
        return;
    }
    g->kind = PEER_GATHER;
    g->id = ++s->next_id;
    g->call = c; /* the newest id is the largest: the table stays sorted */
    g->chunked = m.chunked;
    g->defer_held = m.defer_held;
    tg__scall_set_data(c, g);
    if (m.timeout_ms)
        g->deadline_ms = tg__now_ms() + m.timeout_ms;
    for (pb_size_t i = 0; i < m.keys_count; i++) {
        tgs_str key = CS(m.keys[i]);
        const tgs_task *t = NULL;
        taskgrid_v1_TaskResult r;
        int rc;

        if (m.no_wait) {
            t = tgs_core_find(s->core, key);
            rc = t ? TGS_OK : TGS_ENOTFOUND;
        } else {
            rc = tgs_core_watch(s->core, key, g->id, &t);
        }
        if (rc == TGS_ENOTFOUND) {
            char msg[512];
            memset(&r, 0, sizeof(r));
            r.key = B(key);
            r.state = taskgrid_v1_TaskState_TASK_STATE_RELEASED;
            r.has_error = true;
            r.error.type = tg_pbbuf_str("tg.UnknownKey");
            snprintf(msg, sizeof(msg),
                     "key '%.400s' is not known to the scheduler (never "
                     "submitted, or released)",
                     m.keys[i]);
            r.error.message = tg_pbbuf_str(msg);
            srv_gather_append(s, g, &r);
            continue;
        }
        if (rc != TGS_OK || t == NULL)
            continue;
        switch (tgs_task_state(t)) {
        case TGS_MEMORY:
            srv_gather_answer(s, g, t); /* a held one through a relay */
            break;
        case TGS_ERRED:
        case TGS_CANCELLED:
            srv_fill_result(&r, t);
            srv_gather_append(s, g, &r);
            break;
        default:
            if (m.no_wait) {
                srv_fill_result(&r, t);
                srv_gather_append(s, g, &r);
            } else if (g->deadline_ms &&
                       gather_remember(g, m.keys[i]) != TG_OK) {
                tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
                g->finished = true;
            } else {
                g->outstanding++;
            }
        }
        if (g->finished)
            break; /* out of memory: the call is over */
    }
    tg__wire_release(taskgrid_v1_GatherRequest_fields, &m);
    srv_gather_maybe_finish(s, g);
}

void srv_do_scale(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_ScaleRequest m;
    taskgrid_v1_ScaleResponse r = {0};

    if (!srv_decode(c, taskgrid_v1_ScaleRequest_fields, &m, req, len))
        return;
    if (s->launcher == NULL) {
        tg__scall_finish(c, TG_ESTATE,
                         s->tls && s->opts.worker_tls_cert == NULL &&
                                 (s->opts.launcher == NULL ||
                                  strcmp(s->opts.launcher, "local") == 0)
                             ? "this TLS scheduler has no worker certificate "
                               "for the workers it would start (give "
                               "--worker-tls-cert and --worker-tls-key); "
                               "start or stop workers yourself"
                             : "this scheduler has no launcher (started "
                               "with --launcher none); start or stop "
                               "workers yourself");
        return;
    }
    if (m.maximum > 0) {
        if (m.minimum > m.maximum) {
            tg__scall_finish(c, TG_EINVAL,
                             "adaptive scaling: minimum is larger than "
                             "maximum");
            return;
        }
        /* The policy is the core's: demand per --nthreads worker, up at
         * once, down after 2 s lower (hold_ms 0: the core's default). */
        tgs_adapt_opts ao = {0};
        ao.minimum = m.minimum;
        ao.maximum = m.maximum;
        ao.nthreads = s->opts.worker_nthreads;
        tgs_core_adapt(s->core, &ao, tg__now_ms());
        TG_LOG_INFO("adaptive scaling between %u and %u workers", m.minimum,
                    m.maximum);
    } else {
        tgs_core_scale(s->core, m.workers, tg__now_ms());
        TG_LOG_INFO("scale to %u workers", m.workers);
    }
    r.workers = (uint32_t)tgs_core_nworkers(s->core);
    tgs_core_scale_target(s->core, &r.target);
    srv_reply(c, taskgrid_v1_ScaleResponse_fields, &r);
    srv_run_actions(s); /* the new target (TGS_ACT_SCALE) */
}

void srv_do_annotate(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_AnnotateRequest m;
    taskgrid_v1_AnnotateResponse r = {0};
    tgs_str *keys;
    uint32_t n = 0;

    if (!srv_decode(c, taskgrid_v1_AnnotateRequest_fields, &m, req, len))
        return;
    keys = calloc(m.keys_count ? m.keys_count : 1, sizeof(*keys));
    if (keys == NULL) {
        tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &m);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    for (pb_size_t i = 0; i < m.keys_count; i++)
        keys[i] = CS(m.keys[i]);
    if (m.annotation.has_priority) {
        tgs_core_set_priority(s->core, keys, m.keys_count,
                              m.annotation.priority, &n);
        srv_observe(s);
        r.changed = n;
    }
    if (m.annotation.has_retries) {
        tgs_core_set_retries(s->core, keys, m.keys_count, m.annotation.retries,
                             &n);
        srv_observe(s);
        if (n > r.changed)
            r.changed = n;
    }
    if (m.annotation.has_resources) {
        pb_size_t nr = m.annotation.resources_count;
        tgs_resource *res = calloc(nr ? nr : 1, sizeof(*res));
        int rc;

        for (pb_size_t i = 0; res && i < nr; i++) {
            res[i].name = S(m.annotation.resources[i].name);
            res[i].amount = m.annotation.resources[i].amount;
        }
        rc = res ? tgs_core_set_resources(s->core, keys, m.keys_count, res, nr,
                                          &n)
                 : TGS_ENOMEM;
        free(res);
        if (rc != TGS_OK) {
            free(keys);
            tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &m);
            tg__scall_finish(c, rc,
                             rc == TGS_ENOMEM
                                 ? "scheduler out of memory"
                                 : "invalid resources: names must be "
                                   "non-empty and amounts finite and >= 0");
            srv_run_actions(s);
            return;
        }
        if (n > r.changed)
            r.changed = n;
    }
    free(keys);
    tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &m);
    srv_reply(c, taskgrid_v1_AnnotateResponse_fields, &r);
    srv_run_actions(s);
}

void srv_do_cancel(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_CancelRequest m;
    taskgrid_v1_CancelResponse r = {0};
    tgs_str *keys;

    if (!srv_decode(c, taskgrid_v1_CancelRequest_fields, &m, req, len))
        return;
    keys = keys_of(m.keys, m.keys_count);
    if (keys == NULL) {
        /* Say so rather than answer "none cancelled" unlooked-at. */
        tg__wire_release(taskgrid_v1_CancelRequest_fields, &m);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    tgs_core_cancel(s->core, keys, m.keys_count, tg__now_ms(), &r.cancelled);
    free(keys);
    tg__wire_release(taskgrid_v1_CancelRequest_fields, &m);
    srv_reply(c, taskgrid_v1_CancelResponse_fields, &r);
    srv_run_actions(s);
}

void srv_do_release(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_ReleaseRequest m;
    taskgrid_v1_ReleaseResponse r = {0};
    tgs_str *keys;

    if (!srv_decode(c, taskgrid_v1_ReleaseRequest_fields, &m, req, len))
        return;
    if (m.when_done) { /* fire-and-forget (retire.c) */
        int rc = srv_release_when_done(s, m.keys, m.keys_count, &r.released);
        tg__wire_release(taskgrid_v1_ReleaseRequest_fields, &m);
        if (rc != TG_OK)
            tg__scall_finish(c, rc, "scheduler out of memory");
        else
            srv_reply(c, taskgrid_v1_ReleaseResponse_fields, &r);
        srv_run_actions(s);
        return;
    }
    keys = keys_of(m.keys, m.keys_count);
    if (keys == NULL) {
        /* Say so rather than answer "none released" unlooked-at. */
        tg__wire_release(taskgrid_v1_ReleaseRequest_fields, &m);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    tgs_core_release(s->core, keys, m.keys_count, &r.released);
    free(keys);
    tg__wire_release(taskgrid_v1_ReleaseRequest_fields, &m);
    srv_reply(c, taskgrid_v1_ReleaseResponse_fields, &r);
    srv_run_actions(s);
}

/* StatusResponse.launcher: the units and the counts scaling uses. Returns
 * the units array (to free after the reply), or NULL when out of memory
 * or with no launcher (then has_launcher is false). */
static taskgrid_v1_LauncherUnit *
status_launcher(sched *s, taskgrid_v1_LauncherStatus *ls, bool *has)
{
    tgs_unit_info info;
    const char *last;
    size_t n = 0, starting = 0;
    taskgrid_v1_LauncherUnit *u;

    *has = false;
    if (s->launcher == NULL)
        return NULL;
    while (tgs_launcher_unit_at(s->launcher, n, &info))
        n++;
    if (n > 4096)
        n = 4096;
    if ((u = calloc(n ? n : 1, sizeof(*u))) == NULL)
        return NULL;
    for (size_t i = 0; i < n && tgs_launcher_unit_at(s->launcher, i, &info);
         i++) {
        u[i].id = tg_pbbuf_str(info.id);
        u[i].state = tg_pbbuf_str(info.state);
        u[i].where = tg_pbbuf_str(info.where);
        u[i].workers = info.workers;
        u[i].connected = tgs_launcher_unit_connected(s->launcher, i,
                                                     srv_launch_connected, s);
        if (strcmp(info.state, "stopping") != 0)
            starting += info.workers - u[i].connected;
    }
    ls->kind = tg_pbbuf_str(tgs_launcher_kind(s->launcher));
    ls->target = s->have_target ? s->target : 0;
    ls->active = (uint32_t)tgs_launcher_active(s->launcher);
    ls->starting = (uint32_t)(starting < ls->active ? starting : ls->active);
    ls->failures = tgs_launcher_failures(s->launcher, &last);
    ls->last_error = tg_pbbuf_str(last);
    ls->units = u;
    ls->units_count = (pb_size_t)n;
    *has = true;
    return u;
}

void srv_do_status(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_StatusRequest m;
    taskgrid_v1_StatusResponse r = {0};
    uint64_t counts[TGS_NSTATES];
    size_t nw = tgs_core_nworkers(s->core);
    taskgrid_v1_WorkerInfo *wi;
    taskgrid_v1_KeyStatus *ks;
    taskgrid_v1_Resource *rs;
    size_t nrs = 0, ri = 0;
    char(*why)[256];
    void *tree = NULL, *holders = NULL, *units = NULL;

    if (!srv_decode(c, taskgrid_v1_StatusRequest_fields, &m, req, len))
        return;
    units = status_launcher(s, &r.launcher, &r.has_launcher);
    for (size_t i = 0; i < s->workers.n; i++)
        nrs += s->workers.v[i]->nres;
    rs = calloc(nrs ? nrs : 1, sizeof(*rs));
    wi = calloc(nw ? nw : 1, sizeof(*wi));
    ks = calloc(m.keys_count ? m.keys_count : 1, sizeof(*ks));
    why = calloc(m.keys_count ? m.keys_count : 1, sizeof(*why));
    if (wi == NULL || ks == NULL || why == NULL || rs == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    tgs_core_counts(s->core, counts);
    r.waiting = counts[TGS_WAITING];
    r.ready = counts[TGS_READY];
    r.processing = counts[TGS_PROCESSING];
    r.memory = counts[TGS_MEMORY];
    r.erred = counts[TGS_ERRED];
    r.cancelled = counts[TGS_CANCELLED];
    r.unplaceable = tgs_core_unplaceable(s->core);
    r.version = tg_pbbuf_str(TGS_VERSION);
    for (size_t i = 0; i < nw; i++) {
        tgs_worker_info info;
        if (!tgs_core_worker_at(s->core, i, &info))
            break;
        wi[i].name = B(info.name);
        wi[i].nthreads = info.nthreads;
        wi[i].processing = info.processing;
        wi[i].seceded = info.seceded;
        wi[i].draining = info.draining;
        {
            peer *w = srv_table_find(&s->workers, info.id);
            if (w != NULL) {
                wi[i].functions_count = (pb_size_t)w->nfuncs;
                wi[i].functions = w->funcs;
                wi[i].resources = &rs[ri];
                wi[i].resources_count = (pb_size_t)w->nres;
                for (size_t k = 0; k < w->nres && ri < nrs; k++, ri++) {
                    rs[ri].name = tg_pbbuf_str(w->res_names[k]);
                    rs[ri].amount = w->res_amounts[k];
                }
                wi[i].memory = w->mem.memory;
                wi[i].spilled = w->mem.spilled;
                wi[i].memory_limit = w->mem.limit;
                wi[i].paused = w->mem.paused;
                wi[i].rss = w->mem.rss;
            }
        }
        r.workers_count++;
    }
    r.workers = wi;
    for (pb_size_t i = 0; i < m.keys_count; i++) {
        const tgs_task *t = tgs_core_find(s->core, CS(m.keys[i]));
        ks[i].key = tg_pbbuf_str(m.keys[i]);
        if (t == NULL) {
            ks[i].state = taskgrid_v1_TaskState_TASK_STATE_RELEASED;
            ks[i].reason = tg_pbbuf_str("not known to the scheduler");
            continue;
        }
        ks[i].state = (taskgrid_v1_TaskState)tgs_task_state(t);
        ks[i].worker = B(tgs_task_ran(t, &ks[i].run_us));
        tgs_core_why(s->core, t, why[i], sizeof(why[i]));
        ks[i].reason = tg_pbbuf_str(why[i]);
    }
    r.keys_count = m.keys_count;
    r.keys = ks;
    tree = srv_status_tree(s, &m, ks);
    holders = srv_status_holders(s, &m, ks);
    if (tree == NULL || holders == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    srv_reply(c, taskgrid_v1_StatusResponse_fields, &r);

cleanup:
    free(units);
    free(tree);
    free(holders);
    free(rs);
    free(wi);
    free(ks);
    free(why);
    tg__wire_release(taskgrid_v1_StatusRequest_fields, &m);
}

void srv_do_health(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    tg__refl_serve_health(s->refl, c, req, len);
}
