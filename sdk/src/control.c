/* SPDX-License-Identifier: Apache-2.0
 *
 * control.c: the calls that change tasks or the cluster: tg_client_cancel,
 * tg_client_release, tg_client_annotate, tg_client_scale and
 * tg_client_adapt.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "client_impl.h"
#include "methods.h"
#include "util/clock.h"
#include "util/error.h"

/* ------------------------------------------------------------------ */
/* Cancel, release, annotate, scale                                    */
/* ------------------------------------------------------------------ */

static int check_keys(const char *what, const char *const *keys, size_t n)
{
    if (n > 0 && keys == NULL)
        return tg__error_set(TG_EINVAL, "%s: keys is NULL", what);
    for (size_t i = 0; i < n; i++)
        if (keys[i] == NULL || keys[i][0] == '\0')
            return tg__error_set(TG_EINVAL, "%s: key %zu is empty", what, i);
    return TG_OK;
}

int tg_client_cancel(tg_client *c, const char *const *keys, size_t n,
                     uint32_t *count)
{
    uint32_t total = 0;
    int rc;

    if (count)
        *count = 0;
    if ((rc = tg__client_enter(c, "tg_client_cancel")) != TG_OK ||
        (rc = check_keys("tg_client_cancel", keys, n)) != TG_OK)
        return rc;
    for (size_t i = 0; i < n; i += TG__CHUNK) {
        taskgrid_v1_CancelRequest req;
        taskgrid_v1_CancelResponse resp;
        uint8_t *raw;

        memset(&req, 0, sizeof(req));
        req.keys_count = (pb_size_t)(n - i < TG__CHUNK ? n - i : TG__CHUNK);
        req.keys = (char **)(uintptr_t)(keys + i);
        rc = tg__client_unary(
            c, TG_METHOD_CANCEL, taskgrid_v1_CancelRequest_fields, &req,
            taskgrid_v1_CancelResponse_fields, &resp, &raw, c->timeout_ms);
        if (rc != TG_OK)
            return rc;
        total += resp.cancelled;
        tg__wire_release(taskgrid_v1_CancelResponse_fields, &resp);
        free(raw);
    }
    if (count)
        *count = total;
    return TG_OK;
}

int tg_client_release(tg_client *c, const char *const *keys, size_t n)
{
    int rc;

    if ((rc = tg__client_enter(c, "tg_client_release")) != TG_OK ||
        (rc = check_keys("tg_client_release", keys, n)) != TG_OK)
        return rc;
    return tg__client_release_keys(c, (char *const *)(uintptr_t)keys, n);
}

int tg_client_annotate(tg_client *c, const char *const *keys, size_t n,
                       const tg_annotation *a, uint32_t *changed)
{
    taskgrid_v1_Resource *res = NULL;
    uint32_t total = 0;
    int rc;

    if (changed)
        *changed = 0;
    if ((rc = tg__client_enter(c, "tg_client_annotate")) != TG_OK ||
        (rc = check_keys("tg_client_annotate", keys, n)) != TG_OK)
        return rc;
    if (a == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_annotate: no annotation");
    if (a->version != TG_ANNOTATION_VERSION)
        return tg__error_set(TG_EINVAL,
                             "tg_annotation version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_ANNOTATION_INIT)",
                             a->version, TG_ANNOTATION_VERSION);
    if (a->set_resources &&
        (rc = tg__client_check_resources("annotation", 0, a->resources,
                                         a->nresources)) != TG_OK)
        return rc;
    if (a->set_resources && a->nresources > 0) {
        res = calloc(a->nresources, sizeof(*res));
        if (res == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        for (size_t r = 0; r < a->nresources; r++) {
            res[r].name = tg_pbbuf_str(a->resources[r].name);
            res[r].amount = a->resources[r].amount;
        }
    }
    for (size_t i = 0; i < n; i += TG__CHUNK) {
        taskgrid_v1_AnnotateRequest req;
        taskgrid_v1_AnnotateResponse resp;
        uint8_t *raw;

        memset(&req, 0, sizeof(req));
        req.keys_count = (pb_size_t)(n - i < TG__CHUNK ? n - i : TG__CHUNK);
        req.keys = (char **)(uintptr_t)(keys + i);
        req.has_annotation = true;
        req.annotation.has_priority = a->set_priority;
        req.annotation.priority = a->priority;
        req.annotation.has_resources = a->set_resources;
        req.annotation.resources_count =
            (pb_size_t)(a->set_resources ? a->nresources : 0);
        req.annotation.resources = res;
        req.annotation.has_retries = a->set_retries;
        req.annotation.retries = a->retries;
        rc = tg__client_unary(
            c, TG_METHOD_ANNOTATE, taskgrid_v1_AnnotateRequest_fields, &req,
            taskgrid_v1_AnnotateResponse_fields, &resp, &raw, c->timeout_ms);
        if (rc != TG_OK)
            break;
        total += resp.changed;
        tg__wire_release(taskgrid_v1_AnnotateResponse_fields, &resp);
        free(raw);
    }
    free(res);
    if (rc == TG_OK && changed)
        *changed = total;
    return rc;
}

static int scale_call(tg_client *c, const taskgrid_v1_ScaleRequest *req,
                      uint32_t *workers_now)
{
    taskgrid_v1_ScaleResponse resp;
    uint8_t *raw;
    int rc;

    rc = tg__client_unary(c, TG_METHOD_SCALE, taskgrid_v1_ScaleRequest_fields,
                          req, taskgrid_v1_ScaleResponse_fields, &resp, &raw,
                          c->timeout_ms);
    if (rc != TG_OK)
        return rc;
    if (workers_now)
        *workers_now = resp.workers;
    tg__wire_release(taskgrid_v1_ScaleResponse_fields, &resp);
    free(raw);
    return TG_OK;
}

int tg_client_scale(tg_client *c, uint32_t n, uint32_t *workers_now)
{
    taskgrid_v1_ScaleRequest req;
    int rc;

    memset(&req, 0, sizeof(req));
    if (workers_now)
        *workers_now = 0;
    if ((rc = tg__client_enter(c, "tg_client_scale")) != TG_OK)
        return rc;
    req.workers = n;
    return scale_call(c, &req, workers_now);
}

int tg_client_adapt(tg_client *c, uint32_t minimum, uint32_t maximum)
{
    taskgrid_v1_ScaleRequest req;
    int rc;

    memset(&req, 0, sizeof(req));
    if ((rc = tg__client_enter(c, "tg_client_adapt")) != TG_OK)
        return rc;
    if (maximum == 0 || minimum > maximum)
        return tg__error_set(TG_EINVAL,
                             "tg_client_adapt: need 0 <= minimum <= maximum "
                             "and maximum > 0 (got %" PRIu32 "..%" PRIu32 ")",
                             minimum, maximum);
    req.minimum = minimum;
    req.maximum = maximum;
    return scale_call(c, &req, NULL);
}
