/* SPDX-License-Identifier: Apache-2.0
 *
 * gather.c: tg_client_gather: waiting for futures over a window of Gather
 * streams (server-streaming), applying each GatherResponse to the futures
 * as it arrives. With direct_to_workers the streams ask for held results
 * as their holders (GatherRequest.defer_held); direct.c fetches them
 * after, and those no holder delivered are gathered again through the
 * scheduler, in a second pass.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "client_impl.h"
#include "methods.h"
#include "util/clock.h"
#include "util/error.h"

/* Gather streams open at once: enough to keep the scheduler answering
 * while we decode, few enough to bound its per-call memory. */
#define GATHER_WINDOW 8
/* Extra time given to the scheduler to send its final answer after the
 * Gather time limit it was told about. */
#define GATHER_GRACE_MS 2000

/* ------------------------------------------------------------------ */
/* Gather                                                              */
/* ------------------------------------------------------------------ */

/* Open one Gather stream for `n` keys. */
static int gather_open(tg_client *c, char **keys, size_t n, bool defer,
                       int64_t timeout_ms, int64_t remaining, tg__cstream **out)
{
    taskgrid_v1_GatherRequest req;
    uint8_t *buf = NULL, *junk = NULL;
    size_t len = 0, junklen = 0;
    int64_t call_ms;
    int rc, rc2;

    memset(&req, 0, sizeof(req));
    *out = NULL;
    req.keys_count = (pb_size_t)n;
    req.keys = keys;
    /* Results held on workers come as chunks (tg__gmap_apply), or, with
     * direct_to_workers, as their holders (direct.c). */
    req.chunked = true;
    req.defer_held = defer;
    if (timeout_ms == 0) {
        /* A poll: the scheduler answers with the current states. */
        req.no_wait = true;
        call_ms = c->timeout_ms;
    } else if (timeout_ms < 0) {
        call_ms = 0; /* no deadline */
    } else {
        /* The scheduler answers pending keys with their state when its
         * limit passes; the call's own deadline leaves it time to. */
        req.timeout_ms =
            (uint32_t)(remaining > UINT32_MAX ? UINT32_MAX : remaining);
        if (req.timeout_ms == 0)
            req.timeout_ms = 1;
        call_ms = remaining + GATHER_GRACE_MS;
    }
    if (tg__wire_encode(taskgrid_v1_GatherRequest_fields, &req, &buf, &len) !=
        TG_OK)
        return tg__error_set(TG_EINTERNAL, "Gather: %s", tg_error_last());
    /* Request and half-close in one batch: no wait before the first
     * response. */
    rc = tg__cstream_open_request(out, c->ch, TG_METHOD_GATHER, buf, len,
                                  call_ms);
    free(buf);
    if (rc != TG_OK && *out != NULL) {
        /* A failed send says little ("stream is broken"); the call's
         * status says why (unavailable, refused...). */
        rc2 = tg__cstream_recv(*out, &junk, &junklen, 1000);
        free(junk);
        if (rc2 != TG_OK && rc2 != TG_ETIMEDOUT)
            rc = rc2;
        tg__cstream_free(*out);
        *out = NULL;
    }
    return rc;
}

/* Decode and apply one GatherResponse. */
static int gather_apply(tg__gmap *m, const uint8_t *buf, size_t len)
{
    taskgrid_v1_GatherResponse resp;
    int rc;

    if (tg__wire_decode(taskgrid_v1_GatherResponse_fields, &resp, buf, len) !=
        TG_OK)
        return tg__error_set(TG_EPROTO, "Gather: %s", tg_error_last());
    rc = tg__gmap_apply(m, &resp);
    tg__wire_release(taskgrid_v1_GatherResponse_fields, &resp);
    return rc;
}

/* One Gather of a call: its keys, how long, and what came of it. */
typedef struct gather_pass {
    char **keys; /* borrowed from the futures */
    size_t nkeys;
    bool defer;         /* GatherRequest.defer_held */
    int64_t timeout_ms; /* as given to tg_client_gather */
    int64_t deadline;   /* tg__now_ms() time; INT64_MAX: none */
    bool timed_out;     /* out: the time limit ended it */
} gather_pass;

/* Read one open stream to its end, applying each answer to `m`. */
static int gather_drain(tg__cstream *st, tg__gmap *m, gather_pass *gp)
{
    for (;;) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int64_t wait;
        int rc;

        if (gp->deadline == INT64_MAX) {
            wait = -1;
        } else {
            wait = gp->deadline + GATHER_GRACE_MS - tg__now_ms();
            if (wait < 0)
                wait = 0;
        }
        rc = tg__cstream_recv(st, &buf, &len, wait);
        if (rc == TG_OK && buf != NULL) {
            rc = gather_apply(m, buf, len);
            free(buf);
            if (rc != TG_OK)
                return rc;
            continue;
        }
        if (rc == TG_ETIMEDOUT) {
            /* Our limit passed, or the scheduler's (it then sent the
             * current states and ended the call): either way, stop. */
            gp->timed_out = true;
            return TG_OK;
        }
        return rc; /* TG_OK: every key of this stream answered */
    }
}

/* Gather gp's keys over a window of streams, applying answers to `m`. */
static int gather_pass_run(tg_client *c, tg__gmap *m, gather_pass *gp)
{
    tg__cstream *streams[GATHER_WINDOW] = {NULL};
    size_t nchunks = (gp->nkeys + TG__CHUNK - 1) / TG__CHUNK;
    size_t opened = 0, next = 0;
    int rc = TG_OK;

    /*
     * Up to GATHER_WINDOW streams are open at once so the scheduler
     * answers all their keys as tasks finish; we read them in order (one
     * receiver per stream), and what a later stream already answered waits
     * in its buffers, so nothing is lost and no key costs a round trip.
     */
    while (next < nchunks) {
        size_t slot = next % GATHER_WINDOW;

        while (!gp->timed_out && opened < nchunks &&
               opened - next < GATHER_WINDOW) {
            int64_t now = tg__now_ms();
            size_t from = opened * TG__CHUNK;
            size_t cnt =
                gp->nkeys - from < TG__CHUNK ? gp->nkeys - from : TG__CHUNK;

            if (gp->timeout_ms > 0 && now >= gp->deadline) {
                gp->timed_out = true;
                break;
            }
            rc = gather_open(c, gp->keys + from, cnt, gp->defer, gp->timeout_ms,
                             gp->deadline - now,
                             &streams[opened % GATHER_WINDOW]);
            if (rc != TG_OK)
                goto cleanup;
            opened++;
        }
        if (next >= opened)
            break; /* timed out before this chunk was asked for */
        if ((rc = gather_drain(streams[slot], m, gp)) != TG_OK)
            goto cleanup;
        tg__cstream_free(streams[slot]);
        streams[slot] = NULL;
        next++;
    }

cleanup:
    for (size_t i = 0; i < GATHER_WINDOW; i++)
        tg__cstream_free(streams[i]);
    return rc;
}

/* direct_to_workers: the held results the first pass deferred, from
 * their holders; those no holder delivered through the scheduler. */
static int gather_held(tg_client *c, tg__gmap *m, gather_pass *first)
{
    gather_pass relay = *first;
    int rc;

    relay.defer = false;
    relay.timed_out = false;
    rc = tg__direct_settle(c, m, first->deadline, &relay.keys, &relay.nkeys,
                           &first->timed_out);
    if (rc == TG_OK && relay.nkeys > 0) {
        m->defer = false; /* their bytes this time, as chunks */
        rc = gather_pass_run(c, m, &relay);
        first->timed_out |= relay.timed_out;
    }
    free(relay.keys);
    return rc;
}

int tg_client_gather(tg_client *c, tg_future *const *fs, size_t n,
                     int64_t timeout_ms)
{
    tg__gmap m;
    gather_pass gp;
    int64_t start;
    bool seceded;
    int rc;

    if ((rc = tg__client_enter(c, "tg_client_gather")) != TG_OK)
        return rc;
    if (n == 0)
        return TG_OK;
    if (fs == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_gather: futures is NULL");
    if (timeout_ms < 0 && timeout_ms != TG_WAIT_FOREVER)
        return tg__error_set(TG_EINVAL,
                             "tg_client_gather: timeout %" PRId64
                             " ms (use >= 0 or TG_WAIT_FOREVER)",
                             timeout_ms);
    for (size_t i = 0; i < n; i++) {
        if (fs[i] == NULL)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_gather: future %zu is NULL", i);
        if (tg__future_shared(fs[i]) != c->sh)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_gather: future '%s' belongs to "
                                 "another client",
                                 fs[i]->key);
    }
    rc = tg__gmap_init(&m, fs, n);
    if (rc != TG_OK || m.pending == 0)
        return rc;

    /* A task waiting on nested work gives its slot back meanwhile. */
    seceded = timeout_ms != 0 && tg__task_client_secede(c);
    start = tg__now_ms();
    memset(&gp, 0, sizeof(gp));
    gp.keys = m.keys;
    gp.nkeys = m.nkeys;
    gp.defer = m.defer = c->direct != NULL;
    gp.timeout_ms = timeout_ms;
    gp.deadline = timeout_ms < 0    ? INT64_MAX
                  : timeout_ms == 0 ? start + c->timeout_ms
                                    : start + timeout_ms;
    rc = gather_pass_run(c, &m, &gp);
    if (rc == TG_OK && m.held != NULL)
        rc = gather_held(c, &m, &gp);
    if (rc != TG_OK)
        goto cleanup;
    if (m.pending > 0 && gp.timed_out)
        rc = tg__error_set(TG_ETIMEDOUT,
                           "%zu of %zu keys not finished after %" PRId64 " ms",
                           m.pending, m.nkeys, tg__now_ms() - start);
    else if (m.pending > 0 && timeout_ms == 0)
        rc = tg__error_set(TG_ETIMEDOUT, "%zu of %zu keys not finished yet",
                           m.pending, m.nkeys);
    else if (m.pending > 0)
        rc = tg__error_set(TG_EPROTO,
                           "the scheduler ended Gather with %zu of %zu keys "
                           "unanswered",
                           m.pending, m.nkeys);

cleanup:
    tg__task_client_rejoin(c, seceded);
    tg__gmap_free(&m);
    return rc;
}
