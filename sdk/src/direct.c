/* SPDX-License-Identifier: Apache-2.0
 *
 * direct.c: tg_client_opts.direct_to_workers, a client fetching results
 * held on workers from a holder instead of through the scheduler. Its
 * Gather streams ask for deferred held results (GatherRequest.defer_held:
 * a held result comes as its TaskResult, with its size, codec and
 * holders' data addresses, and no bytes), which tg__gmap_defer keeps;
 * once the streams are done each one is fetched from its holders in
 * order with the workers' own checked Fetch (fetch/fetch.h: key,
 * offsets, size, CRC-32 of every chunk), straight into the block its
 * futures get. A result no holder delivers (unreachable, refused, not
 * found, a damaged chunk) is logged once, naming each holder and why,
 * and handed back to be gathered through the scheduler, so nothing is
 * lost. Depends on fetch/fetch.h, util/log.h and the gather map
 * (future.h); no gRPC.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_impl.h"
#include "fetch/fetch.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* Longest warning: the key, then every holder and why. */
#define WHY_MAX 4096

int tg__gmap_defer(tg__gmap *m, tg_future *f, const taskgrid_v1_TaskResult *r)
{
    size_t bytes = sizeof(tg__gheld) + r->codec.len + 1;
    tg__gheld *h;
    char *p;

    bytes += r->holders_count * sizeof(char *);
    for (pb_size_t i = 0; i < r->holders_count; i++)
        bytes += strlen(r->holders[i]) + 1;
    if ((h = calloc(1, bytes)) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory for results");
    h->f = f;
    h->size = r->size;
    h->holders = (const char **)(h + 1);
    h->nholders = r->holders_count;
    p = (char *)(h->holders + h->nholders);
    for (size_t i = 0; i < h->nholders; i++) {
        size_t n = strlen(r->holders[i]) + 1;

        h->holders[i] = memcpy(p, r->holders[i], n);
        p += n;
    }
    if (r->codec.len)
        memcpy(p, r->codec.ptr, r->codec.len);
    h->codec = tg_pbbuf_mem(p, r->codec.len);
    if (m->held_tail == NULL)
        m->held_tail = &m->held;
    *m->held_tail = h;
    m->held_tail = &h->next;
    f->deferred = true;
    return TG_OK;
}

void tg__gmap_held_free(tg__gmap *m)
{
    while (m->held != NULL) {
        tg__gheld *h = m->held;

        m->held = h->next;
        h->f->deferred = false;
        free(h);
    }
    m->held_tail = NULL;
}

/* The gather's time limit, for tg__fetch_req.stop. */
static const char *past_deadline(void *ud)
{
    const int64_t *deadline = ud;

    return tg__now_ms() >= *deadline ? "the gather's time limit passed" : NULL;
}

/* Fetch h's result from its holders into `dst`. TG_OK; else the reasons
 * ("holder H: WHY; ...") in `msg`, and TG_ETIMEDOUT when the gather's
 * time ran out. */
static int fetch_held(tg_client *c, const tg__gheld *h, uint8_t *dst,
                      int64_t deadline, char *msg, size_t msglen)
{
    tg__fetch_req req = {.key = h->f->key,
                         .key_len = h->f->keylen,
                         .size = h->size,
                         .buf = dst,
                         .stop = past_deadline,
                         .ud = &deadline};
    size_t n = 0;
    char why[1536];

    msg[0] = '\0';
    for (size_t i = 0; i < h->nholders; i++) {
        int64_t left = deadline - tg__now_ms();
        int rc;

        if (left <= 0)
            return TG_ETIMEDOUT;
        req.timeout_ms = deadline == INT64_MAX ? 0 : left;
        rc = tg__fetch_from(c->direct, h->holders[i], &req, why, sizeof(why));
        if (rc == TG_OK)
            return TG_OK;
        if (tg__now_ms() >= deadline)
            return TG_ETIMEDOUT;
        if (n < msglen)
            n += (size_t)snprintf(msg + n, msglen - n, "%sholder %s: %s",
                                  i ? "; " : "", h->holders[i], why);
    }
    if (h->nholders == 0)
        snprintf(msg, msglen, "no holder known");
    return TG_EUNAVAILABLE;
}

int tg__direct_settle(tg_client *c, tg__gmap *m, int64_t deadline,
                      char ***relay, size_t *nrelay, bool *timed_out)
{
    size_t n = 0;
    char *msg = NULL;
    int rc = TG_OK;

    *relay = NULL;
    *nrelay = 0;
    for (tg__gheld *h = m->held; h != NULL; h = h->next)
        n++;
    if (n == 0)
        return TG_OK;
    *relay = malloc(n * sizeof(**relay));
    msg = malloc(WHY_MAX);
    if (*relay == NULL || msg == NULL) {
        rc = tg__error_set(TG_ENOMEM, "out of memory for %zu results", n);
        goto done;
    }
    for (tg__gheld *h = m->held; h != NULL; h = h->next) {
        tg_future *f = h->f;
        uint8_t *dst;
        int frc;

        if (tg__state_final(f->state))
            continue; /* answered twice; the first one settled it */
        if (tg__now_ms() >= deadline) {
            *timed_out = true; /* it stays pending */
            continue;
        }
        if ((rc = tg__gmap_part_open(m, f, h->size, h->codec, &dst)) != TG_OK)
            goto done;
        if (dst == NULL)
            continue; /* failed already (too large for this process) */
        frc = fetch_held(c, h, dst, deadline, msg, WHY_MAX);
        if (frc == TG_OK) {
            tg__gmap_part_finish(m, f);
            continue;
        }
        tg__gmap_part_cancel(m, f);
        if (frc == TG_ETIMEDOUT) {
            *timed_out = true;
            continue;
        }
        TG_LOG_WARN("direct_to_workers: result '%s' (%" PRIu64
                    " bytes): %s; getting it through the scheduler instead",
                    f->key, h->size, msg);
        (*relay)[(*nrelay)++] = (char *)f->key;
    }
done:
    free(msg);
    if (rc != TG_OK) {
        free(*relay);
        *relay = NULL;
        *nrelay = 0;
    }
    return rc;
}
