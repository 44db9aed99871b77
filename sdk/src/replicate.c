/* SPDX-License-Identifier: Apache-2.0
 *
 * replicate.c: tg_client_replicate (Scheduler/Replicate: more holders of
 * results held on workers) and the accessors of its outcome.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "client_impl.h"
#include "methods.h"
#include "util/error.h"

/* The call's own deadline leaves the scheduler time to answer at its
 * limit. */
#define REPLICATE_GRACE_MS 2000

typedef struct rep_entry {
    char *key; /* heap copies, freed with the outcome */
    char *etype;
    char *emsg;
    uint32_t holders;
    uint32_t copied;
    bool inline_result;
} rep_entry;

struct tg_replication {
    size_t n;
    rep_entry *v;
};

void tg_replication_free(tg_replication *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].key);
        free(r->v[i].etype);
        free(r->v[i].emsg);
    }
    free(r->v);
    free(r);
}

size_t tg_replication_count(const tg_replication *r)
{
    return r ? r->n : 0;
}

static const rep_entry *entry(const tg_replication *r, size_t i)
{
    return r != NULL && i < r->n ? &r->v[i] : NULL;
}

const char *tg_replication_key(const tg_replication *r, size_t i)
{
    const rep_entry *e = entry(r, i);
    return e ? e->key : NULL;
}

uint32_t tg_replication_holders(const tg_replication *r, size_t i)
{
    const rep_entry *e = entry(r, i);
    return e ? e->holders : 0;
}

uint32_t tg_replication_copied(const tg_replication *r, size_t i)
{
    const rep_entry *e = entry(r, i);
    return e ? e->copied : 0;
}

bool tg_replication_inline(const tg_replication *r, size_t i)
{
    const rep_entry *e = entry(r, i);
    return e ? e->inline_result : false;
}

const char *tg_replication_error(const tg_replication *r, size_t i,
                                 const char **type)
{
    const rep_entry *e = entry(r, i);
    if (type)
        *type = e ? e->etype : NULL;
    return e ? e->emsg : NULL;
}

/* The response as an outcome (its strings copied). */
static int outcome_of(const taskgrid_v1_ReplicateResponse *resp,
                      tg_replication **out)
{
    tg_replication *r = calloc(1, sizeof(*r));
    bool ok = r != NULL;

    if (ok)
        ok = (r->v = calloc(resp->keys_count ? resp->keys_count : 1,
                            sizeof(*r->v))) != NULL;
    for (pb_size_t i = 0; ok && i < resp->keys_count; i++) {
        const taskgrid_v1_KeyReplication *k = &resp->keys[i];
        rep_entry *e = &r->v[i];

        r->n++;
        e->holders = k->holders;
        e->copied = k->copied;
        e->inline_result = k->inline_result;
        ok = (e->key = tg_pbbuf_strdup(k->key)) != NULL;
        if (ok && k->has_error)
            ok = (e->etype = tg_pbbuf_strdup(k->error.type)) != NULL &&
                 (e->emsg = tg_pbbuf_strdup(k->error.message)) != NULL;
    }
    if (!ok) {
        tg_replication_free(r);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    *out = r;
    return TG_OK;
}

/* The status of the first key that could not be replicated. */
static int first_error(const tg_replication *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const rep_entry *e = &r->v[i];
        int rc = TG_EIO;

        if (e->etype == NULL)
            continue;
        if (strcmp(e->etype, "tg.UnknownKey") == 0)
            rc = TG_ENOTFOUND;
        else if (strcmp(e->etype, "tg.NotFinished") == 0 ||
                 strcmp(e->etype, "tg.Erred") == 0)
            rc = TG_ESTATE;
        else if (strcmp(e->etype, "tg.Timeout") == 0)
            rc = TG_ETIMEDOUT;
        return tg__error_set(rc, "replicate: %s: %s", e->etype, e->emsg);
    }
    return TG_OK;
}

static int check_args(tg_future *const *fs, size_t nf,
                      const char *const *workers, size_t nworkers,
                      int64_t timeout_ms)
{
    if (nf > TG__CHUNK)
        return tg__error_set(TG_EINVAL,
                             "tg_client_replicate: %zu futures (at most %d "
                             "per call)",
                             nf, TG__CHUNK);
    if (nf > 0 && fs == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_replicate: fs is NULL");
    for (size_t i = 0; i < nf; i++)
        if (fs[i] == NULL)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_replicate: future %zu is NULL", i);
    if (nworkers > 0 && workers == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_replicate: workers is NULL");
    for (size_t i = 0; i < nworkers; i++)
        if (workers[i] == NULL || workers[i][0] == '\0')
            return tg__error_set(TG_EINVAL,
                                 "tg_client_replicate: worker name %zu is "
                                 "empty",
                                 i);
    if (timeout_ms < 0 || timeout_ms > UINT32_MAX)
        return tg__error_set(TG_EINVAL,
                             "tg_client_replicate: timeout %" PRId64
                             " ms is out of range (0 to %" PRIu32 ")",
                             timeout_ms, UINT32_MAX);
    return TG_OK;
}

int tg_client_replicate(tg_client *c, tg_future *const *fs, size_t nf,
                        uint32_t n, const char *const *workers, size_t nworkers,
                        int64_t timeout_ms, tg_replication **out)
{
    taskgrid_v1_ReplicateRequest req;
    taskgrid_v1_ReplicateResponse resp;
    tg_replication *r = NULL;
    char **keys = NULL;
    uint8_t *raw = NULL;
    int rc;

    if (out)
        *out = NULL;
    if ((rc = tg__client_enter(c, "tg_client_replicate")) != TG_OK ||
        (rc = check_args(fs, nf, workers, nworkers, timeout_ms)) != TG_OK)
        return rc;
    if (timeout_ms == 0)
        timeout_ms = c->timeout_ms;
    keys = calloc(nf ? nf : 1, sizeof(*keys));
    if (keys == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    for (size_t i = 0; i < nf; i++)
        keys[i] = (char *)(uintptr_t)tg_future_key(fs[i]);
    memset(&req, 0, sizeof(req));
    req.keys_count = (pb_size_t)nf;
    req.keys = keys;
    req.n = n;
    req.workers_count = (pb_size_t)nworkers;
    req.workers = (char **)(uintptr_t)workers;
    req.timeout_ms = (uint32_t)(timeout_ms > 0 ? timeout_ms : 0);
    rc = tg__client_unary(c, TG_METHOD_REPLICATE,
                          taskgrid_v1_ReplicateRequest_fields, &req,
                          taskgrid_v1_ReplicateResponse_fields, &resp, &raw,
                          timeout_ms > 0 ? timeout_ms + REPLICATE_GRACE_MS : 0);
    free(keys);
    if (rc != TG_OK)
        return rc;
    rc = outcome_of(&resp, &r);
    tg__wire_release(taskgrid_v1_ReplicateResponse_fields, &resp);
    free(raw);
    if (rc != TG_OK)
        return rc;
    rc = first_error(r);
    if (out)
        *out = r;
    else
        tg_replication_free(r);
    return rc;
}
