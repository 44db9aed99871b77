/* SPDX-License-Identifier: Apache-2.0
 *
 * report.c: status reports (tg_client_status, tg_client_key_status) and
 * their accessors.
 */
#include <stdlib.h>

#include "client_impl.h"
#include "methods.h"
#include "util/clock.h"
#include "util/error.h"

/* Copy `b` to *p as a C string and advance *p past its NUL. */
static const char *put_str(char **p, tg_pbbuf b)
{
    char *s = *p;

    if (b.len)
        memcpy(s, b.ptr, b.len);
    s[b.len] = '\0';
    *p += b.len + 1;
    return s;
}

/* ------------------------------------------------------------------ */
/* Status                                                              */
/* ------------------------------------------------------------------ */

typedef struct report_worker {
    const char *name; /* in the report's arena */
    uint32_t nthreads;
    uint32_t processing;
    bool draining;
} report_worker;

struct tg_status_report {
    size_t nworkers;
    report_worker *workers;
    uint64_t counts[TG_TASK_RELEASED + 1];
    uint64_t unplaceable;
    const char *version;
    char *arena;
};

int tg__client_status_call(tg_client *c, const char *key,
                           taskgrid_v1_StatusResponse *resp, uint8_t **raw)
{
    taskgrid_v1_StatusRequest req;
    char *keys[1];

    memset(&req, 0, sizeof(req));
    if (key != NULL) {
        keys[0] = (char *)(uintptr_t)key;
        req.keys_count = 1;
        req.keys = keys;
    }
    return tg__client_unary(
        c, TG_METHOD_STATUS, taskgrid_v1_StatusRequest_fields, &req,
        taskgrid_v1_StatusResponse_fields, resp, raw, c->timeout_ms);
}

int tg_client_status(tg_client *c, tg_status_report **out)
{
    taskgrid_v1_StatusResponse resp;
    tg_status_report *r = NULL;
    uint8_t *raw = NULL;
    size_t bytes;
    char *p;
    int rc;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_status: out is NULL");
    *out = NULL;
    if ((rc = tg__client_enter(c, "tg_client_status")) != TG_OK)
        return rc;
    rc = tg__client_status_call(c, NULL, &resp, &raw);
    if (rc != TG_OK)
        return rc;
    bytes = resp.version.len + 1;
    for (pb_size_t i = 0; i < resp.workers_count; i++)
        bytes += resp.workers[i].name.len + 1;
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->arena = malloc(bytes);
        r->workers = calloc(resp.workers_count ? resp.workers_count : 1,
                            sizeof(*r->workers));
    }
    if (r == NULL || r->arena == NULL || r->workers == NULL) {
        tg_status_report_free(r);
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto cleanup;
    }
    p = r->arena;
    r->version = put_str(&p, resp.version);
    r->nworkers = resp.workers_count;
    for (pb_size_t i = 0; i < resp.workers_count; i++) {
        const taskgrid_v1_WorkerInfo *w = &resp.workers[i];

        r->workers[i].name = put_str(&p, w->name);
        r->workers[i].nthreads = w->nthreads;
        r->workers[i].processing = w->processing;
        r->workers[i].draining = w->draining;
    }
    r->counts[TG_TASK_WAITING] = resp.waiting;
    r->counts[TG_TASK_READY] = resp.ready;
    r->counts[TG_TASK_PROCESSING] = resp.processing;
    r->counts[TG_TASK_MEMORY] = resp.memory;
    r->counts[TG_TASK_ERRED] = resp.erred;
    r->counts[TG_TASK_CANCELLED] = resp.cancelled;
    r->unplaceable = resp.unplaceable;
    *out = r;

cleanup:
    tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
    free(raw);
    return rc;
}

int tg_client_key_status(tg_client *c, const char *key, tg_task_state *state,
                         char *reason, size_t reasonlen)
{
    taskgrid_v1_StatusResponse resp;
    uint8_t *raw = NULL;
    int rc;

    if (reason && reasonlen)
        reason[0] = '\0';
    if (state)
        *state = TG_TASK_RELEASED;
    if ((rc = tg__client_enter(c, "tg_client_key_status")) != TG_OK)
        return rc;
    if (key == NULL || key[0] == '\0' || state == NULL)
        return tg__error_set(TG_EINVAL,
                             "tg_client_key_status: key or state is NULL");
    rc = tg__client_status_call(c, key, &resp, &raw);
    if (rc != TG_OK)
        return rc;
    for (pb_size_t i = 0; i < resp.keys_count; i++) {
        const taskgrid_v1_KeyStatus *k = &resp.keys[i];
        int st = (int)k->state;

        if (!tg_pbbuf_eq(k->key, key))
            continue;
        *state = st >= TG_TASK_WAITING && st <= TG_TASK_RELEASED
                     ? (tg_task_state)st
                     : TG_TASK_RELEASED;
        if (reason && reasonlen) {
            size_t n =
                k->reason.len < reasonlen - 1 ? k->reason.len : reasonlen - 1;
            if (n)
                memcpy(reason, k->reason.ptr, n);
            reason[n] = '\0';
        }
        break;
    }
    tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
    free(raw);
    return TG_OK;
}

size_t tg_status_report_nworkers(const tg_status_report *r)
{
    return r ? r->nworkers : 0;
}

const char *tg_status_report_worker_name(const tg_status_report *r, size_t i)
{
    return r && i < r->nworkers ? r->workers[i].name : NULL;
}

uint32_t tg_status_report_worker_nthreads(const tg_status_report *r, size_t i)
{
    return r && i < r->nworkers ? r->workers[i].nthreads : 0;
}

uint32_t tg_status_report_worker_processing(const tg_status_report *r, size_t i)
{
    return r && i < r->nworkers ? r->workers[i].processing : 0;
}

bool tg_status_report_worker_draining(const tg_status_report *r, size_t i)
{
    return r && i < r->nworkers && r->workers[i].draining;
}

uint32_t tg_status_report_nthreads(const tg_status_report *r)
{
    uint32_t n = 0;

    for (size_t i = 0; r && i < r->nworkers; i++)
        n += r->workers[i].nthreads;
    return n;
}

uint64_t tg_status_report_count(const tg_status_report *r, tg_task_state state)
{
    if (r == NULL || state < TG_TASK_WAITING || state > TG_TASK_CANCELLED)
        return 0;
    return r->counts[state];
}

uint64_t tg_status_report_unplaceable(const tg_status_report *r)
{
    return r ? r->unplaceable : 0;
}

const char *tg_status_report_version(const tg_status_report *r)
{
    return r ? r->version : NULL;
}

void tg_status_report_free(tg_status_report *r)
{
    if (r == NULL)
        return;
    free(r->workers);
    free(r->arena);
    free(r);
}
