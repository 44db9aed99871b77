/* SPDX-License-Identifier: Apache-2.0
 *
 * client.c: tg_client, the C client of service taskgrid.v1.Scheduler (see
 * taskgrid/client.h): connecting (with TLS material from tg_security),
 * freeing, and the helpers every call family shares (client_impl.h): the
 * unary call, batched releases of freed futures. Depends on the client
 * side of the transport (transport/client.h), the codec (proto/wire.h)
 * and futures (future.h); it never touches gRPC itself.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "client_impl.h"
#include "methods.h"
#include "util/clock.h"
#include "util/error.h"

#include "util/address.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/*
 * One unary call: encode `req`, call, decode into `resp`. On TG_OK the
 * caller owns *raw (free() after tg__wire_release(respf, resp)): decoded
 * strings point into it.
 */
int tg__client_unary(tg_client *c, const char *method, const pb_msgdesc_t *reqf,
                     const void *req, const pb_msgdesc_t *respf, void *resp,
                     uint8_t **raw, int64_t timeout_ms)
{
    uint8_t *buf = NULL, *out = NULL;
    size_t len = 0, outlen = 0;
    int rc;

    *raw = NULL;
    if (tg__wire_encode(reqf, req, &buf, &len) != TG_OK)
        return tg__error_set(TG_EINTERNAL, "%s: %s", method, tg_error_last());
    rc = tg__chan_unary(c->ch, method, buf, len, &out, &outlen, timeout_ms);
    free(buf);
    if (rc != TG_OK)
        return rc;
    if (tg__wire_decode(respf, resp, out, outlen) != TG_OK) {
        free(out);
        return tg__error_set(TG_EPROTO, "%s: %s", method, tg_error_last());
    }
    *raw = out;
    return TG_OK;
}

/*
 * Send the batched releases of freed futures (one Release call per TG__CHUNK
 * keys). Errors are dropped: a key not released costs scheduler memory
 * until it is released by other means, not correctness, and the caller's
 * own call must not fail for it.
 */
/* Release `n` keys in Release calls of at most TG__CHUNK keys; stops at and
 * returns the first failure. */
int tg__client_release_keys(tg_client *c, char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i += TG__CHUNK) {
        taskgrid_v1_ReleaseRequest req;
        taskgrid_v1_ReleaseResponse resp;
        uint8_t *raw;
        int rc;

        memset(&req, 0, sizeof(req));
        req.keys_count = (pb_size_t)(n - i < TG__CHUNK ? n - i : TG__CHUNK);
        req.keys = (char **)(uintptr_t)(keys + i);
        rc = tg__client_unary(
            c, TG_METHOD_RELEASE, taskgrid_v1_ReleaseRequest_fields, &req,
            taskgrid_v1_ReleaseResponse_fields, &resp, &raw, c->timeout_ms);
        if (rc != TG_OK)
            return rc;
        tg__wire_release(taskgrid_v1_ReleaseResponse_fields, &resp);
        free(raw);
    }
    return TG_OK;
}

/* Release the NUL-separated keys of `arena` (freed futures). Errors are
 * dropped: see flush_releases. */
void tg__client_send_releases(tg_client *c, const char *arena, size_t n)
{
    char **keys = malloc((n ? n : 1) * sizeof(*keys));
    const char *p = arena;

    if (keys == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        keys[i] = (char *)p;
        p += strlen(p) + 1;
    }
    if (tg__client_release_keys(c, keys, n) != TG_OK)
        tg__error_clear();
    free(keys);
}

void tg__client_flush_releases(tg_client *c)
{
    char *arena;
    size_t len, n;

    if (!tg__shared_take_releases(c->sh, &arena, &len, &n))
        return;
    tg__client_send_releases(c, arena, n);
    free(arena);
}

/* Start of every public call that talks to the scheduler. */
int tg__client_enter(tg_client *c, const char *what)
{
    if (c == NULL)
        return tg__error_set(TG_EINVAL, "%s: client is NULL", what);
    tg__client_flush_releases(c);
    return TG_OK;
}

/* Copy of the thread's last error, for messages that quote it (the
 * message buffer cannot be a vsnprintf argument into itself). */
static void last_error_copy(char *buf, size_t len)
{
    snprintf(buf, len, "%s", tg_error_last());
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */
/* ------------------------------------------------------------------ */

static void client_destroy(tg_client *c)
{
    tg__chan_close(c->ch);
    tg__fetch_free(c->direct);
    tg__shared_unref(c->sh);
    free(c->address);
    free(c->client_id);
    tg__tls_clear(&c->tls); /* wipes the private key */
    free(c);
}

/*
 * Check that a scheduler answers at c->address, retrying refused
 * connections until `timeout_ms` passes: a scheduler started together with
 * its client may not listen yet (Dask's Client waits the same way).
 */
static int check_alive(tg_client *c, int64_t timeout_ms)
{
    int64_t start = tg__now_ms(), left = timeout_ms;
    char why[512];
    int rc;

    for (;;) {
        taskgrid_v1_StatusRequest req;
        taskgrid_v1_StatusResponse resp;
        uint8_t *raw;
        struct timespec nap = {0, 100 * 1000 * 1000};

        memset(&req, 0, sizeof(req));
        rc = tg__client_unary(
            c, TG_METHOD_STATUS, taskgrid_v1_StatusRequest_fields, &req,
            taskgrid_v1_StatusResponse_fields, &resp, &raw, left);
        if (rc == TG_OK) {
            tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
            free(raw);
            return TG_OK;
        }
        left = timeout_ms - (tg__now_ms() - start);
        if (rc != TG_EUNAVAILABLE || left <= 0)
            break;
        if (left < 100)
            nap.tv_nsec = (long)left * 1000000L;
        nanosleep(&nap, NULL);
        left = timeout_ms - (tg__now_ms() - start);
        if (left <= 0)
            break;
    }
    /* TLS refusals already say which side refused what. */
    if (rc == TG_ETLS)
        return rc;
    last_error_copy(why, sizeof(why));
    if (rc == TG_ETIMEDOUT || rc == TG_EUNAVAILABLE)
        return tg__error_set(TG_EUNAVAILABLE,
                             "no taskgrid scheduler answers at %s after "
                             "%" PRId64 " ms (%s); start one (bazel run "
                             "//scheduler) or use a local cluster "
                             "(tg_cluster_start)",
                             c->address, tg__now_ms() - start, why);
    return tg__error_set(rc,
                         "the scheduler at %s refused the connection "
                         "check: %s",
                         c->address, why);
}

int tg_client_connect(tg_client **out, const char *address,
                      const tg_client_opts *opts)
{
    static const tg_client_opts defaults = TG_CLIENT_OPTS_INIT;
    tg_client *c = NULL;
    tg__rpc_sec sec;
    char idbuf[32];
    int64_t connect_ms;
    int rc;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_connect: out is NULL");
    *out = NULL;
    if (address == NULL || address[0] == '\0')
        return tg__error_set(TG_EINVAL,
                             "tg_client_connect: no scheduler address "
                             "(e.g. tcp://127.0.0.1:8786)");
    if (opts == NULL)
        opts = &defaults;
    /* Version 1 ends before direct_to_workers: never read it there. */
    if (opts->version != 1 && opts->version != TG_CLIENT_OPTS_VERSION)
        return tg__error_set(TG_EINVAL,
                             "tg_client_opts version %" PRIu32
                             " is not supported (expected 1 to %d; "
                             "initialise with TG_CLIENT_OPTS_INIT)",
                             opts->version, TG_CLIENT_OPTS_VERSION);
    if (opts->timeout_ms < 0 || opts->connect_timeout_ms < 0)
        return tg__error_set(TG_EINVAL,
                             "tg_client_opts: timeouts must be >= 0");
    if (opts->client_id != NULL &&
        (opts->client_id[0] == '\0' || strlen(opts->client_id) > 256))
        return tg__error_set(TG_EINVAL,
                             "tg_client_opts: client_id must be 1 to 256 "
                             "bytes");

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    c->max_message =
        opts->max_message > 0 ? opts->max_message : TG__RPC_DEFAULT_MAX_MSG;
    connect_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
    if (opts->client_id == NULL)
        tg__key_write(idbuf, "client");
    c->address = strdup(address);
    c->client_id = strdup(opts->client_id ? opts->client_id : idbuf);
    if (c->address == NULL || c->client_id == NULL) {
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto fail;
    }
    rc = tg__shared_new(&c->sh, c);
    if (rc != TG_OK)
        goto fail;
    /* Scheme and security options must agree before anything is read. */
    {
        char target[512];
        bool tls = false;

        rc = tg__address_parse(address, target, sizeof(target), &tls);
        if (rc != TG_OK)
            goto fail;
        if (tls && opts->security == NULL) {
            rc = tg__error_set(TG_ETLS,
                               "address '%s' asks for TLS but no security "
                               "options (CA, certificate, key) were given",
                               address);
            goto fail;
        }
        if (!tls && opts->security != NULL) {
            rc = tg__error_set(TG_ETLS,
                               "security options were given but address "
                               "'%s' is plaintext; use tls://",
                               address);
            goto fail;
        }
    }
    /* Files exist and parse, key and certificate match, dates are valid:
     * a clear local error now beats a failed handshake later. */
    if (opts->security != NULL &&
        (rc = tg__tls_load(&c->tls, opts->security, "client")) != TG_OK)
        goto fail;
    memset(&sec, 0, sizeof(sec));
    sec.ca_pem = c->tls.ca_pem;
    sec.cert_pem = c->tls.cert_pem;
    sec.key_pem = c->tls.key_pem;
    sec.hint = c->tls.hint[0] ? c->tls.hint : NULL;
    rc = tg__chan_open(&c->ch, address, opts->security ? &sec : NULL,
                       c->max_message);
    if (rc != TG_OK)
        goto fail;
    /* Data services speak the scheduler address's TLS mode; this client
     * presents its own certificate to them. */
    if (opts->version >= 2 && opts->direct_to_workers &&
        (rc = tg__fetch_new(&c->direct, opts->security ? &sec : NULL)) != TG_OK)
        goto fail;
    if (!opts->lazy) {
        rc = check_alive(c, connect_ms);
        if (rc != TG_OK)
            goto fail;
    }
    *out = c;
    return TG_OK;

fail:
    client_destroy(c);
    return rc;
}

void tg_client_free(tg_client *c)
{
    /* The worker-wide client of tg_task_client is the worker's to close. */
    if (c == NULL || c->task_client)
        return;
    tg__shared_close(c->sh);
    tg__client_flush_releases(c);
    client_destroy(c);
}

const char *tg_client_address(const tg_client *c)
{
    return c ? c->address : NULL;
}

const char *tg_client_id(const tg_client *c)
{
    return c ? c->client_id : NULL;
}
