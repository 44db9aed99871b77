/* SPDX-License-Identifier: Apache-2.0
 *
 * workerlink.c: service taskgrid.v1.WorkerLink: a worker's registration (its
 * functions, threads and resources become a core worker) and the messages
 * of its stream (results, hand-backs, heartbeats).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

static void worker_register(sched *s, peer *w, const taskgrid_v1_Register *reg)
{
    tgs_worker_spec spec = {0};
    tgs_str *funcs;
    tgs_resource *res;
    taskgrid_v1_SchedulerMessage hello = {0};
    char name[256];
    int rc;

    funcs =
        calloc(reg->functions_count ? reg->functions_count : 1, sizeof(*funcs));
    res = calloc(reg->resources_count ? reg->resources_count : 1, sizeof(*res));
    if (funcs == NULL || res == NULL) {
        free(funcs);
        free(res);
        tg__scall_finish(w->call, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    /* Names are unique in the cluster: suffix duplicates with the id. */
    snprintf(name, sizeof(name), "%.*s",
             (int)(reg->name.len > 200 ? 200 : reg->name.len),
             (const char *)reg->name.ptr);
    if (name[0] == '\0')
        snprintf(name, sizeof(name), "worker-%llu", (unsigned long long)w->id);
    for (size_t i = 0; i < s->workers.n; i++) {
        peer *o = s->workers.v[i];
        if (o != w && o->registered && strcmp(o->name, name) == 0) {
            size_t n = strlen(name);
            snprintf(name + n, sizeof(name) - n, "-%llu",
                     (unsigned long long)w->id);
            break;
        }
    }
    w->name = strdup(name);
    w->launch_id = tg_pbbuf_strdup(reg->launch_id);
    w->funcs =
        calloc(reg->functions_count ? reg->functions_count : 1, sizeof(char *));
    w->res_names =
        calloc(reg->resources_count ? reg->resources_count : 1, sizeof(char *));
    w->res_amounts =
        calloc(reg->resources_count ? reg->resources_count : 1, sizeof(double));
    if (w->funcs && w->res_names && w->res_amounts) {
        for (pb_size_t i = 0; i < reg->functions_count; i++)
            if ((w->funcs[w->nfuncs] = strdup(reg->functions[i])) != NULL)
                w->nfuncs++;
        for (pb_size_t i = 0; i < reg->resources_count; i++) {
            w->res_names[w->nres] = tg_pbbuf_strdup(reg->resources[i].name);
            w->res_amounts[w->nres] = reg->resources[i].amount;
            if (w->res_names[w->nres] != NULL)
                w->nres++;
        }
    }
    for (pb_size_t i = 0; i < reg->functions_count; i++)
        funcs[i] = CS(reg->functions[i]);
    for (pb_size_t i = 0; i < reg->resources_count; i++) {
        res[i].name = S(reg->resources[i].name);
        res[i].amount = reg->resources[i].amount;
    }
    spec.name = CS(w->name);
    spec.nthreads = reg->nthreads ? reg->nthreads : 1;
    spec.funcs = funcs;
    spec.nfuncs = reg->functions_count;
    spec.resources = res;
    spec.nresources = reg->resources_count;
    rc = tgs_core_worker_add(s->core, w->id, &spec, tg__now_ms());
    if (rc != TGS_OK) {
        free(funcs);
        free(res);
        tg__scall_finish(w->call, rc,
                         rc == TGS_ENOMEM ? "scheduler out of memory"
                                          : "cannot register worker");
        return;
    }
    w->registered = true;
    TG_LOG_INFO("worker %s joined (%u threads, %u functions, %s)", w->name,
                spec.nthreads, (unsigned)spec.nfuncs, tg__scall_peer(w->call));
    hello.worker_name = tg_pbbuf_str(w->name);
    hello.heartbeat_ms = HEARTBEAT_MS;
    srv_worker_append(s, w, &hello);
    free(funcs);
    free(res);
}

void srv_worker_message(sched *s, peer *w, const uint8_t *msg, size_t len)
{
    taskgrid_v1_WorkerMessage m;
    int64_t now = tg__now_ms();

    if (tg__wire_decode(taskgrid_v1_WorkerMessage_fields, &m, msg, len) !=
        TG_OK) {
        TG_LOG_WARN("malformed message from worker %s: %s",
                    w->name ? w->name : tg__scall_peer(w->call),
                    tg_error_last());
        tg__scall_finish(w->call, TG_EINVAL, tg_error_last());
        return;
    }
    if (m.has_registration && !w->registered)
        worker_register(s, w, &m.registration);
    if (!w->registered) {
        tg__wire_release(taskgrid_v1_WorkerMessage_fields, &m);
        tg__scall_finish(w->call, TG_EINVAL,
                         "the first WorkerLink message must carry "
                         "registration");
        return;
    }
    for (pb_size_t i = 0; i < m.results_count; i++) {
        const taskgrid_v1_TaskResult *r = &m.results[i];
        tgs_outcome o = {0};

        o.ok = r->state == taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        o.data = r->data.ptr;
        o.data_len = r->data.len;
        o.codec = S(r->codec);
        if (!o.ok) {
            o.err_type = r->has_error && r->error.type.len ? S(r->error.type)
                                                           : CS("tg.TaskError");
            o.err_message = S(r->error.message);
            o.err_traceback = S(r->error.traceback);
        }
        tgs_core_task_finished(s->core, w->id, S(r->key), &o, now);
    }
    for (pb_size_t i = 0; i < m.released_count; i++)
        tgs_core_task_returned(s->core, w->id, CS(m.released[i]), now);
    tg__wire_release(taskgrid_v1_WorkerMessage_fields, &m);
    srv_run_actions(s);
}
