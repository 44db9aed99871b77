/* SPDX-License-Identifier: Apache-2.0
 *
 * fetcher.c: resolving held inputs (see fetcher.h). Channels to peers are
 * cached by address and shared by the executor threads (a gRPC channel
 * carries many calls at once; a TLS handshake per input would cost more
 * than a small transfer); a channel that failed a fetch is dropped, so a
 * restarted peer gets a fresh connection. Entries are reference-counted:
 * a channel is closed only when no fetch uses it. Depends on
 * transport/client.h, proto/wire.h, util/crc.h, the store, the outbox, the
 * counters and the task.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetcher.h"
#include "methods.h"
#include "transport/client.h"
#include "util/bigmem.h"
#include "util/clock.h"
#include "util/crc.h"
#include "util/error.h"
#include "util/log.h"
#include "wire.h"

/* Receive poll: how often a fetch notices that its task was cancelled. */
#define POLL_MS 200
/* A holder that sends nothing for this long has failed. */
#define IDLE_TIMEOUT_MS 30000
/* Longest FetchFailed message. */
#define WHY_MAX 4096

typedef struct chan_entry {
    struct chan_entry *next;
    char *address; /* "tcp://host:port" or "tls://host:port" */
    tg__chan *ch;
    unsigned refs;
    bool dropped; /* unlinked from the cache; closed when refs reach 0 */
} chan_entry;

struct tgw_fetcher {
    tg__rpc_sec sec; /* the worker's material, without the scheduler hint */
    bool tls;
    char *self;
    tgw_store *store;
    tgw_outbox *ob;
    tgw_counters *counters;
    pthread_mutex_t mu; /* guards chans */
    chan_entry *chans;
};

int tgw_fetcher_new(tgw_fetcher **out, const tgw_fetcher_opts *opts)
{
    tgw_fetcher *f = calloc(1, sizeof(*f));

    *out = NULL;
    if (f == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    if (opts->sec != NULL) {
        f->sec = *opts->sec;
        f->sec.hint = NULL;
        /* Holders are verified for the workers' fixed TLS name, not their
         * host (see TG_PROTO_WORKER_TLS_NAME). */
        f->sec.tls_name = TG_PROTO_WORKER_TLS_NAME;
        f->tls = true;
    }
    if (opts->self != NULL && (f->self = strdup(opts->self)) == NULL) {
        free(f);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    f->store = opts->store;
    f->ob = opts->ob;
    f->counters = opts->counters;
    pthread_mutex_init(&f->mu, NULL);
    tg__rpc_init();
    *out = f;
    return TG_OK;
}

static void entry_close(chan_entry *e)
{
    tg__chan_close(e->ch);
    free(e->address);
    free(e);
}

void tgw_fetcher_free(tgw_fetcher *f)
{
    if (f == NULL)
        return;
    while (f->chans != NULL) {
        chan_entry *e = f->chans;

        f->chans = e->next;
        entry_close(e);
    }
    pthread_mutex_destroy(&f->mu);
    free(f->self);
    free(f);
    tg__rpc_shutdown();
}

/* A channel to `address` with a reference, or NULL (why in `why`). */
static chan_entry *chan_get(tgw_fetcher *f, const char *address, char *why,
                            size_t whylen)
{
    chan_entry *e;

    pthread_mutex_lock(&f->mu);
    for (e = f->chans; e != NULL; e = e->next)
        if (strcmp(e->address, address) == 0) {
            e->refs++;
            pthread_mutex_unlock(&f->mu);
            return e;
        }
    pthread_mutex_unlock(&f->mu);
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->address = strdup(address)) == NULL) {
        free(e);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if (tg__chan_open(&e->ch, address, f->tls ? &f->sec : NULL, 0) != TG_OK) {
        snprintf(why, whylen, "%s", tg_error_last());
        free(e->address);
        free(e);
        return NULL;
    }
    tg__chan_set_peer_kind(e->ch, "worker");
    e->refs = 1;
    /* Another thread may have opened one meanwhile: both work; the
     * newer one serves later fetches. */
    pthread_mutex_lock(&f->mu);
    e->next = f->chans;
    f->chans = e;
    pthread_mutex_unlock(&f->mu);
    return e;
}

/* Let go of `e`; after a failure, drop it from the cache. */
static void chan_put(tgw_fetcher *f, chan_entry *e, bool failed)
{
    bool close_it;

    pthread_mutex_lock(&f->mu);
    if (failed && !e->dropped) {
        chan_entry **pp = &f->chans;

        while (*pp != NULL && *pp != e)
            pp = &(*pp)->next;
        if (*pp == e)
            *pp = e->next;
        e->dropped = true;
    }
    close_it = --e->refs == 0 && e->dropped;
    pthread_mutex_unlock(&f->mu);
    if (close_it)
        entry_close(e);
}

/* Receiving one DataChunk straight from gRPC's slices: its `data` is
 * copied once, to where it belongs in the result, and checked there. */
typedef struct chunk_rx {
    const tgw_dep *dep;
    uint8_t *buf;  /* the result being filled */
    uint64_t *off; /* bytes filled so far */
    char *why;
    size_t whylen;
    bool bad; /* take_chunk refused a chunk (why says why) */
} chunk_rx;

static int read_varint(tg__msg *m, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;

        if (tg__msg_read(m, &b, 1) != TG_OK)
            return TG_EPROTO;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return TG_OK;
    }
    return TG_EPROTO;
}

/* Field 1: the key, which must be the one asked for. */
static bool key_matches(tg__msg *m, const tgw_dep *dep, uint64_t len)
{
    char key[TG_PROTO_KEY_MAX];

    if (len != dep->key_len || len > sizeof(key)) {
        (void)tg__msg_read(m, NULL, len);
        return false;
    }
    return tg__msg_read(m, key, len) == TG_OK &&
           memcmp(key, dep->key, len) == 0;
}

/* One chunk's fields, in any order (as protobuf allows); unknown fields
 * are skipped. TG_EPROTO with the reason in rx->why. */
static int take_chunk(void *ud, tg__msg *m)
{
    chunk_rx *rx = ud;
    const tgw_dep *dep = rx->dep;
    uint64_t off = *rx->off, offset = 0, size = 0, dlen = 0;
    uint32_t crc = 0;
    uint8_t le[4];
    bool key_ok = false, has_data = false;

    rx->bad = true; /* until the chunk is taken */
    while (tg__msg_left(m) > 0) {
        uint64_t tag, v;

        if (read_varint(m, &tag) != TG_OK)
            goto bad;
        switch (tag & 7) {
        case 0: /* varint: offset 2, size 4, upload 7 */
            if (read_varint(m, &v) != TG_OK)
                goto bad;
            if (tag >> 3 == 2)
                offset = v;
            else if (tag >> 3 == 4)
                size = v;
            break;
        case 5: /* 32-bit: crc32 6 (fixed32, little-endian) */
            if (tg__msg_read(m, le, 4) != TG_OK)
                goto bad;
            if (tag >> 3 == 6)
                crc = (uint32_t)le[0] | (uint32_t)le[1] << 8 |
                      (uint32_t)le[2] << 16 | (uint32_t)le[3] << 24;
            break;
        case 1: /* 64-bit */
            if (tg__msg_read(m, NULL, 8) != TG_OK)
                goto bad;
            break;
        case 2: /* length-delimited: key 1, data 3, codec 5 */
            if (read_varint(m, &v) != TG_OK || v > tg__msg_left(m))
                goto bad;
            if (tag >> 3 == 1) {
                key_ok = key_matches(m, dep, v);
            } else if (tag >> 3 == 3) {
                if (has_data) {
                    snprintf(rx->why, rx->whylen,
                             "sent two data fields in the chunk at offset "
                             "%llu",
                             (unsigned long long)off);
                    return TG_EPROTO;
                }
                if (v > dep->size - off || v > TG_PROTO_CHUNK_MAX) {
                    snprintf(rx->why, rx->whylen,
                             "sent a chunk of %llu bytes at offset %llu, past "
                             "the end or over the chunk limit",
                             (unsigned long long)v, (unsigned long long)off);
                    return TG_EPROTO;
                }
                if (tg__msg_read(m, rx->buf + off, v) != TG_OK)
                    goto bad;
                has_data = true;
                dlen = v;
            } else if (tg__msg_read(m, NULL, v) != TG_OK) {
                goto bad;
            }
            break;
        default:
            goto bad;
        }
    }
    if (!key_ok)
        snprintf(rx->why, rx->whylen, "sent a chunk of another key");
    else if (size != dep->size)
        snprintf(rx->why, rx->whylen,
                 "says the result is %llu bytes, the scheduler said %llu",
                 (unsigned long long)size, (unsigned long long)dep->size);
    else if (offset != off)
        snprintf(rx->why, rx->whylen,
                 "sent a chunk at offset %llu, expected %llu",
                 (unsigned long long)offset, (unsigned long long)off);
    else if (dlen == 0 && off < dep->size)
        snprintf(rx->why, rx->whylen, "sent an empty chunk at offset %llu",
                 (unsigned long long)off);
    else if (tg__crc32(rx->buf + off, dlen) != crc)
        snprintf(rx->why, rx->whylen,
                 "CRC-32 mismatch in the chunk at offset %llu",
                 (unsigned long long)off);
    else {
        *rx->off = off + dlen;
        rx->bad = false;
        return TG_OK;
    }
    return TG_EPROTO;
bad:
    snprintf(rx->why, rx->whylen, "bad chunk: not a DataChunk message");
    return TG_EPROTO;
}

/* Receive the whole result from an open Fetch stream into `buf`. */
static int receive(tg__cstream *st, tg_task_ctx *t, const tgw_dep *dep,
                   uint8_t *buf, char *why, size_t whylen)
{
    uint64_t off = 0;
    int64_t last = tg__now_ms();
    chunk_rx rx = {dep, buf, &off, why, whylen, false};

    for (;;) {
        bool ended;
        int rc = tg__cstream_recv_msg(st, take_chunk, &rx, &ended, POLL_MS);

        if (rc == TG_ETIMEDOUT) {
            if (tg_task_cancelled(t)) {
                snprintf(why, whylen, "the task was cancelled");
                return TG_ECANCELLED;
            }
            if (tg__now_ms() - last >= IDLE_TIMEOUT_MS) {
                snprintf(why, whylen, "sent nothing for %d s",
                         IDLE_TIMEOUT_MS / 1000);
                return TG_ETIMEDOUT;
            }
            continue;
        }
        if (rx.bad)
            return TG_EPROTO; /* `why` says what was wrong with the chunk */
        if (rc != TG_OK) {
            snprintf(why, whylen, "%s: %s", tg__rpc_status_name(rc),
                     tg_error_last());
            return rc;
        }
        if (ended) { /* the call ended with OK */
            if (off == dep->size)
                return TG_OK;
            snprintf(why, whylen, "the stream ended after %llu of %llu bytes",
                     (unsigned long long)off, (unsigned long long)dep->size);
            return TG_EPROTO;
        }
        last = tg__now_ms();
    }
}

/* Fetch `dep` from `holder` into a new buffer (*out, dep->size bytes). */
static int fetch_from(tgw_fetcher *f, tg_task_ctx *t, const tgw_dep *dep,
                      const char *holder, uint8_t **out, char *why,
                      size_t whylen)
{
    char address[600];
    taskgrid_v1_FetchRequest req;
    chan_entry *e;
    tg__cstream *st = NULL;
    uint8_t *enc = NULL, *buf = NULL;
    size_t enclen;
    int rc;

    *out = NULL;
    snprintf(address, sizeof(address), "%s://%s", f->tls ? "tls" : "tcp",
             holder);
    memset(&req, 0, sizeof(req));
    req.key = tg_pbbuf_mem(dep->key, dep->key_len);
    if (tg__wire_encode(taskgrid_v1_FetchRequest_fields, &req, &enc, &enclen) !=
            TG_OK ||
        (buf = malloc(dep->size ? (size_t)dep->size : 1)) == NULL) {
        free(enc);
        snprintf(why, whylen, "out of memory for %llu bytes",
                 (unsigned long long)dep->size);
        return TG_ENOMEM;
    }
    tg__bigmem_hint(buf, (size_t)dep->size);
    if ((e = chan_get(f, address, why, whylen)) == NULL) {
        free(enc);
        free(buf);
        return TG_EUNAVAILABLE;
    }
    rc = tg__cstream_open_request(&st, e->ch, TG_METHOD_FETCH, enc, enclen, 0);
    free(enc);
    if (rc != TG_OK)
        snprintf(why, whylen, "%s", tg_error_last());
    else
        rc = receive(st, t, dep, buf, why, whylen);
    tg__cstream_free(st);
    /* An answer (NOT_FOUND, PERMISSION_DENIED) proves the channel works;
     * anything else may be a dead connection: the next fetch makes a new
     * one. */
    chan_put(f, e,
             rc != TG_OK && rc != TG_ECANCELLED && rc != TG_ENOTFOUND &&
                 rc != TG_EPERM);
    if (rc != TG_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    return TG_OK;
}

static void unhold_held(void *h)
{
    tgw_held_release(h);
}

/* Append ": holder H: WHY", then "; holder H: WHY", to `msg`. */
static void add_reason(char *msg, size_t *n, size_t *tried, const char *holder,
                       const char *why)
{
    if (*n < WHY_MAX)
        *n += (size_t)snprintf(msg + *n, WHY_MAX - *n, "%sholder %s: %s",
                               (*tried)++ ? "; " : ": ", holder, why);
}

/* A local input spilled to disk: read back into memory for the task (the
 * task needs it whole), dropped after it. */
static bool local_spilled(tgw_fetcher *f, tgw_dep *dep, tgw_held *h, char *msg)
{
    uint8_t *buf = malloc(h->len ? h->len : 1);
    int rc = buf != NULL ? tgw_held_read(h, 0, buf, h->len) : TG_ENOMEM;

    if (rc != TG_OK) {
        snprintf(msg, WHY_MAX,
                 "input '%s' (%zu bytes): this worker's spilled "
                 "copy: %s",
                 dep->key, h->len,
                 buf != NULL ? tg_error_last() : "out of memory");
        free(buf);
        tgw_held_release(h);
        return false;
    }
    dep->data = buf;
    dep->len = h->len;
    dep->hold = buf;
    dep->unhold = free;
    tgw_counters_add(f->counters, TGW_COUNT_LOCAL, h->len);
    tgw_held_release(h);
    return true;
}

/* Resolve one held dependency; false with the reason in `msg`. */
static bool resolve_dep(tgw_fetcher *f, tg_task_ctx *t, tgw_dep *dep, char *msg)
{
    size_t n = 0, tried = 0;
    tgw_held *h = tgw_store_get(f->store, dep->key, dep->key_len);
    char why[1536];

    if (h != NULL && h->spilled)
        return local_spilled(f, dep, h, msg);
    if (h != NULL) {
        dep->data = h->data;
        dep->len = h->len;
        dep->hold = h;
        dep->unhold = unhold_held;
        tgw_counters_add(f->counters, TGW_COUNT_LOCAL, h->len);
        return true;
    }
    n = (size_t)snprintf(msg, WHY_MAX, "input '%s' (%llu bytes)", dep->key,
                         (unsigned long long)dep->size);
    for (size_t i = 0; i < dep->nholders; i++) {
        const char *holder = dep->holders[i];
        uint8_t *buf;

        if (f->self != NULL && strcmp(holder, f->self) == 0) {
            /* The scheduler thinks we hold it: tell it we do not. */
            if (f->ob != NULL)
                tgw_outbox_push_missing(f->ob, dep->key, dep->key_len);
            add_reason(msg, &n, &tried, holder,
                       "this worker, which does not hold it");
            continue;
        }
        if (fetch_from(f, t, dep, holder, &buf, why, sizeof(why)) == TG_OK) {
            dep->data = buf;
            dep->len = (size_t)dep->size;
            dep->hold = buf;
            dep->unhold = free;
            tgw_counters_add(f->counters, TGW_COUNT_FETCHED, dep->size);
            TG_LOG_DEBUG("task '%s': fetched '%s' (%llu bytes) from %s", t->key,
                         dep->key, (unsigned long long)dep->size, holder);
            return true;
        }
        add_reason(msg, &n, &tried, holder, why);
        if (tg_task_cancelled(t))
            break;
    }
    return false;
}

bool tgw_fetcher_resolve(tgw_fetcher *f, tg_task_ctx *t)
{
    char *msg = malloc(WHY_MAX);

    for (size_t i = 0; i < t->ndeps; i++) {
        tgw_dep *dep = &t->deps[i];

        if (dep->nholders == 0 || dep->unhold != NULL)
            continue;
        if (msg == NULL) {
            tg_task_set_error(t, "tg.FetchFailed",
                              "out of memory resolving inputs", NULL);
            return false;
        }
        if (!resolve_dep(f, t, dep, msg)) {
            if (!tg_task_cancelled(t))
                TG_LOG_WARN("task '%s': %s", t->key, msg);
            tg_task_set_error(t, "tg.FetchFailed", msg, NULL);
            free(msg);
            return false;
        }
    }
    free(msg);
    return true;
}
