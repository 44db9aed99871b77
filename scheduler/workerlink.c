/* SPDX-License-Identifier: Apache-2.0
 *
 * workerlink.c: service taskgrid.v1.WorkerLink: a worker's registration (its
 * functions, threads, resources and data address become a core worker)
 * and the messages of its stream (results, held or inline, hand-backs,
 * heartbeats with memory reports, whose pause goes to the core, the
 * chunks and missing keys that relay.c takes, and copies done, which
 * replicate.c takes).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard.h"
#include "methods.h"
#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

/*
 * Is `a` a data address other workers can dial: "host:port", at most 255
 * bytes, a host of letters, digits, '.', '-' and '_' (or an IPv6 literal
 * in brackets) and a port from 1 to 65535. Else false, and why in `why`.
 */
static bool data_address_ok(tg_pbbuf a, char *why, size_t len)
{
    const char *p = (const char *)a.ptr;
    size_t colon = a.len, port = 0, i;

    if (a.len > 255) {
        snprintf(why, len, "is %zu bytes long (at most 255)", a.len);
        return false;
    }
    for (i = 0; i < a.len; i++)
        if (p[i] == ':')
            colon = i;
    if (colon == a.len || colon == 0 || colon + 1 == a.len) {
        snprintf(why, len, "is not host:port");
        return false;
    }
    for (i = colon + 1; i < a.len; i++) {
        if (!isdigit((unsigned char)p[i]) ||
            (port = port * 10 + (size_t)(p[i] - '0')) > 65535) {
            snprintf(why, len, "has no port from 1 to 65535");
            return false;
        }
    }
    if (port == 0) {
        snprintf(why, len, "has no port from 1 to 65535");
        return false;
    }
    bool v6 = p[0] == '[' && p[colon - 1] == ']';
    for (i = v6 ? 1 : 0; i < (v6 ? colon - 1 : colon); i++) {
        unsigned char ch = (unsigned char)p[i];
        if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == '_' ||
              (v6 && (ch == ':' || ch == '%')))) {
            snprintf(why, len, "has an invalid host");
            return false;
        }
    }
    if (v6 && colon <= 2) {
        snprintf(why, len, "has an invalid host");
        return false;
    }
    return true;
}

/* The first message to a worker: its name, the heartbeat and, to one
 * with a data service, the inline limit. */
static void worker_hello(sched *s, peer *w)
{
    taskgrid_v1_SchedulerMessage hello = {0};

    hello.worker_name = tg_pbbuf_str(w->name);
    hello.heartbeat_ms = HEARTBEAT_MS;
    if (w->data_address != NULL)
        hello.inline_limit = s->opts.inline_limit;
    srv_worker_append(s, w, &hello);
}

static void worker_register(sched *s, peer *w, const taskgrid_v1_Register *reg)
{
    tgs_worker_spec spec = {0};
    tgs_str *funcs;
    tgs_resource *res;
    char name[256], why[128], msg[512];
    int rc;

    if (reg->data_address.len > 0 &&
        !data_address_ok(reg->data_address, why, sizeof(why))) {
        snprintf(
            msg, sizeof(msg),
            "Register.data_address '%.*s' %s: give the host:port "
            "other workers reach this worker's data service at",
            (int)(reg->data_address.len > 300 ? 300 : reg->data_address.len),
            (const char *)reg->data_address.ptr, why);
        TG_LOG_WARN("refused a worker (%s): %s", tg__scall_peer(w->call), msg);
        tg__scall_finish(w->call, TG_EINVAL, msg);
        return;
    }

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
    if (reg->data_address.len > 0 &&
        (w->data_address = tg_pbbuf_strdup(reg->data_address)) == NULL) {
        free(funcs);
        free(res);
        tg__scall_finish(w->call, TG_ENOMEM, "scheduler out of memory");
        return;
    }
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
    spec.can_fetch = w->data_address != NULL;
    rc = tgs_core_worker_add(s->core, w->id, &spec, tg__now_ms());
    srv_observe(s);
    if (rc != TGS_OK) {
        free(funcs);
        free(res);
        tg__scall_finish(w->call, rc,
                         rc == TGS_ENOMEM ? "scheduler out of memory"
                                          : "cannot register worker");
        return;
    }
    w->registered = true;
    w->nthreads = spec.nthreads;
    /* Started by our launcher: it counts toward the target from now on
     * and its unit is running (scaling.c marks, at its tick, workers
     * whose unit it did not know yet). */
    if (s->launcher != NULL && w->launch_id != NULL &&
        tgs_launcher_owns(s->launcher, w->launch_id)) {
        tgs_core_worker_managed(s->core, w->id);
        tgs_launcher_seen(s->launcher, w->launch_id);
        w->launched = true;
    }
    {
        char q[256], qd[256];
        const char *d = w->data_address ? w->data_address : "";
        TG_LOG_INFO("worker joined name=%s threads=%u functions=%u peer=%s "
                    "data=%s",
                    tg__log_quote(q, sizeof(q), w->name, strlen(w->name), 200),
                    spec.nthreads, (unsigned)spec.nfuncs,
                    tg__scall_peer(w->call),
                    tg__log_quote(qd, sizeof(qd), d, strlen(d), 200));
    }
    srv_watch_worker(s, w, true, "");
    worker_hello(s, w);
    free(funcs);
    free(res);
}

/*
 * A held result the core did not take (stale: cancelled, or running
 * elsewhere now): unless `w` holds that key for the task as it stands, it
 * keeps bytes nobody will ask for, so tell it to drop them.
 */
static void free_stale(sched *s, peer *w, tg_pbbuf key)
{
    const tgs_task *t = tgs_core_find(s->core, S(key));
    taskgrid_v1_SchedulerMessage m = {0};
    char *k;

    for (size_t i = 0; t != NULL && i < tgs_task_nholders(t); i++) {
        uint64_t wid;
        if (tgs_task_holder(t, i, &wid) && wid == w->id)
            return;
    }
    if ((k = tg_pbbuf_strdup(key)) == NULL)
        return;
    m.free_count = 1;
    m.free = &k;
    srv_worker_append(s, w, &m);
    free(k);
}

/* A memory report: kept for Status; a pause change goes to the core
 * (before the message's results free threads, so a worker that just
 * paused gets nothing new for them). */
static void worker_memory(sched *s, peer *w, const taskgrid_v1_MemoryReport *r,
                          int64_t now)
{
    if (r->paused != w->mem.paused) {
        TG_LOG_INFO("worker %s %s (%llu bytes of held results in memory, "
                    "limit %llu)",
                    w->name, r->paused ? "paused" : "resumed",
                    (unsigned long long)r->memory,
                    (unsigned long long)r->limit);
        tgs_core_worker_pause(s->core, w->id, r->paused, now);
        srv_observe(s);
    }
    w->mem = *r;
    tgs_core_worker_memory(s->core, w->id, r->memory, r->limit);
    srv_observe(s);
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
    if (m.has_memory)
        worker_memory(s, w, &m.memory, now);
    /* Tasks waiting on nested work give their slot back or take it again,
     * in order; stale ones (the task left this worker) are ignored. */
    for (pb_size_t i = 0; i < m.secessions_count; i++) {
        tgs_core_task_seceded(s->core, w->id, S(m.secessions[i].key),
                              m.secessions[i].rejoined, now);
        srv_observe(s);
    }
    for (pb_size_t i = 0; i < m.results_count; i++) {
        const taskgrid_v1_TaskResult *r = &m.results[i];
        tgs_outcome o = {0};

        o.ok = r->state == taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        o.data = r->data.ptr;
        o.data_len = r->data.len;
        o.codec = S(r->codec);
        o.run_us = r->run_us;
        if (!o.ok) {
            o.err_type = r->has_error && r->error.type.len ? S(r->error.type)
                                                           : CS("tg.TaskError");
            o.err_message = S(r->error.message);
            o.err_traceback = S(r->error.traceback);
        } else if (r->held) {
            o.held = true;
            o.size = r->size;
        }
        if (tgs_core_task_finished(s->core, w->id, S(r->key), &o, now) ==
                TGS_ESTATE &&
            o.held && w->data_address != NULL)
            free_stale(s, w, r->key);
        srv_observe(s); /* each event's changes before the next event */
    }
    for (pb_size_t i = 0; i < m.released_count; i++) {
        tgs_core_task_returned(s->core, w->id, CS(m.released[i]), now);
        srv_observe(s);
    }
    /* A key it does not have is no longer counted as held there (before
     * the relays, so none is asked of it again). */
    for (pb_size_t i = 0; i < m.missing_count; i++) {
        tgs_core_result_missing(s->core, w->id, CS(m.missing[i]), now);
        srv_observe(s);
    }
    /* Copies done (Replicate): a copy the core no longer waits for (the
     * key was forgotten or lost meanwhile) is dropped at once. */
    for (pb_size_t i = 0; i < m.copied_count; i++) {
        if (tgs_core_copy_done(s->core, w->id, S(m.copied[i].key),
                               m.copied[i].ok, now) != TGS_OK &&
            m.copied[i].ok)
            free_stale(s, w, m.copied[i].key);
        srv_observe(s);
    }
    if (m.copied_count > 0)
        srv_replicate_copied(s, w, &m);
    srv_run_actions(s);
    if (m.chunks_count > 0 || m.missing_count > 0)
        srv_relay_message(s, w, &m);
    tg__wire_release(taskgrid_v1_WorkerMessage_fields, &m);
}
