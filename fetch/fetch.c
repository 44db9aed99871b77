/* SPDX-License-Identifier: Apache-2.0
 *
 * fetch.c: the checked DataService.Fetch (see fetch.h). Channels to
 * holders are cached by address and shared by the threads that fetch (a
 * gRPC channel carries many calls at once; a TLS handshake per result
 * would cost more than a small transfer); a channel that failed a fetch
 * is dropped, so a restarted holder gets a fresh connection. Entries are
 * reference-counted: a channel is closed only when no fetch uses it.
 * Each DataChunk is parsed straight from gRPC's slices: its `data` is
 * copied once, to where it belongs in the caller's buffer, and checked
 * there. Depends on transport/client.h, proto/wire.h and util/crc.h.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/fetch.h"
#include "methods.h"
#include "transport/client.h"
#include "util/clock.h"
#include "util/crc.h"
#include "util/error.h"
#include "wire.h"

/* Receive poll: how often a fetch asks whether it should stop. */
#define POLL_MS 200
/* A holder that sends nothing for this long has failed. */
#define IDLE_TIMEOUT_MS 30000

typedef struct chan_entry {
    struct chan_entry *next;
    char *address; /* "tcp://host:port" or "tls://host:port" */
    tg__chan *ch;
    unsigned refs;
    bool dropped; /* unlinked from the cache; closed when refs reach 0 */
} chan_entry;

struct tg__fetch {
    tg__rpc_sec sec; /* this side's material, for the workers' TLS name */
    bool tls;
    pthread_mutex_t mu; /* guards chans */
    chan_entry *chans;
};

int tg__fetch_new(tg__fetch **out, const tg__rpc_sec *sec)
{
    tg__fetch *f = calloc(1, sizeof(*f));

    *out = NULL;
    if (f == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    if (sec != NULL) {
        f->sec = *sec;
        f->sec.hint = NULL;
        /* Holders are verified for the workers' fixed TLS name, not their
         * host (see TG_PROTO_WORKER_TLS_NAME). */
        f->sec.tls_name = TG_PROTO_WORKER_TLS_NAME;
        f->tls = true;
    }
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

void tg__fetch_free(tg__fetch *f)
{
    if (f == NULL)
        return;
    while (f->chans != NULL) {
        chan_entry *e = f->chans;

        f->chans = e->next;
        entry_close(e);
    }
    pthread_mutex_destroy(&f->mu);
    free(f);
    tg__rpc_shutdown();
}

/* A channel to `address` with a reference, or NULL (why in `why`). */
static chan_entry *chan_get(tg__fetch *f, const char *address, char *why,
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
static void chan_put(tg__fetch *f, chan_entry *e, bool failed)
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

/* Receiving one DataChunk straight from gRPC's slices. */
typedef struct chunk_rx {
    const tg__fetch_req *req;
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
static bool key_matches(tg__msg *m, const tg__fetch_req *req, uint64_t len)
{
    char key[TG_PROTO_KEY_MAX];

    if (len != req->key_len || len > sizeof(key)) {
        (void)tg__msg_read(m, NULL, len);
        return false;
    }
    return tg__msg_read(m, key, len) == TG_OK &&
           memcmp(key, req->key, len) == 0;
}

/* The checks of a parsed chunk (`dlen` bytes already at `off`). */
static int check_chunk(chunk_rx *rx, bool key_ok, uint64_t offset,
                       uint64_t size, uint64_t dlen, uint32_t crc)
{
    const tg__fetch_req *req = rx->req;
    uint64_t off = *rx->off;

    if (!key_ok)
        snprintf(rx->why, rx->whylen, "sent a chunk of another key");
    else if (size != req->size)
        snprintf(rx->why, rx->whylen,
                 "says the result is %llu bytes, the scheduler said %llu",
                 (unsigned long long)size, (unsigned long long)req->size);
    else if (offset != off)
        snprintf(rx->why, rx->whylen,
                 "sent a chunk at offset %llu, expected %llu",
                 (unsigned long long)offset, (unsigned long long)off);
    else if (dlen == 0 && off < req->size)
        snprintf(rx->why, rx->whylen, "sent an empty chunk at offset %llu",
                 (unsigned long long)off);
    else if (tg__crc32(req->buf + off, dlen) != crc)
        snprintf(rx->why, rx->whylen,
                 "CRC-32 mismatch in the chunk at offset %llu",
                 (unsigned long long)off);
    else {
        *rx->off = off + dlen;
        rx->bad = false;
        return TG_OK;
    }
    return TG_EPROTO;
}

/* One chunk's fields, in any order (as protobuf allows); unknown fields
 * are skipped. TG_EPROTO with the reason in rx->why. */
static int take_chunk(void *ud, tg__msg *m)
{
    chunk_rx *rx = ud;
    const tg__fetch_req *req = rx->req;
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
                key_ok = key_matches(m, req, v);
            } else if (tag >> 3 == 3) {
                if (has_data) {
                    snprintf(rx->why, rx->whylen,
                             "sent two data fields in the chunk at offset "
                             "%llu",
                             (unsigned long long)off);
                    return TG_EPROTO;
                }
                if (v > req->size - off || v > TG_PROTO_CHUNK_MAX) {
                    snprintf(rx->why, rx->whylen,
                             "sent a chunk of %llu bytes at offset %llu, past "
                             "the end or over the chunk limit",
                             (unsigned long long)v, (unsigned long long)off);
                    return TG_EPROTO;
                }
                if (tg__msg_read(m, req->buf + off, v) != TG_OK)
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
    return check_chunk(rx, key_ok, offset, size, dlen, crc);
bad:
    snprintf(rx->why, rx->whylen, "bad chunk: not a DataChunk message");
    return TG_EPROTO;
}

/* Receive the whole result from an open Fetch stream into req->buf. */
static int receive(tg__cstream *st, const tg__fetch_req *req, char *why,
                   size_t whylen)
{
    uint64_t off = 0;
    int64_t last = tg__now_ms();
    chunk_rx rx = {req, &off, why, whylen, false};

    for (;;) {
        bool ended;
        int rc = tg__cstream_recv_msg(st, take_chunk, &rx, &ended, POLL_MS);

        if (rc == TG_ETIMEDOUT) {
            const char *stop = req->stop != NULL ? req->stop(req->ud) : NULL;

            if (stop != NULL) {
                snprintf(why, whylen, "%s", stop);
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
            if (off == req->size)
                return TG_OK;
            snprintf(why, whylen, "the stream ended after %llu of %llu bytes",
                     (unsigned long long)off, (unsigned long long)req->size);
            return TG_EPROTO;
        }
        last = tg__now_ms();
    }
}

int tg__fetch_from(tg__fetch *f, const char *holder, const tg__fetch_req *req,
                   char *why, size_t whylen)
{
    char address[600];
    taskgrid_v1_FetchRequest fr;
    chan_entry *e;
    tg__cstream *st = NULL;
    uint8_t *enc = NULL;
    size_t enclen;
    int rc;

    snprintf(address, sizeof(address), "%s://%s", f->tls ? "tls" : "tcp",
             holder);
    memset(&fr, 0, sizeof(fr));
    fr.key = tg_pbbuf_mem(req->key, req->key_len);
    if (tg__wire_encode(taskgrid_v1_FetchRequest_fields, &fr, &enc, &enclen) !=
        TG_OK) {
        snprintf(why, whylen, "cannot encode the request: %s", tg_error_last());
        return TG_ENOMEM;
    }
    if ((e = chan_get(f, address, why, whylen)) == NULL) {
        free(enc);
        return TG_EUNAVAILABLE;
    }
    rc = tg__cstream_open_request(&st, e->ch, TG_METHOD_FETCH, enc, enclen,
                                  req->timeout_ms);
    free(enc);
    if (rc != TG_OK)
        snprintf(why, whylen, "%s", tg_error_last());
    else
        rc = receive(st, req, why, whylen);
    tg__cstream_free(st);
    /* An answer (NOT_FOUND, PERMISSION_DENIED) proves the channel works;
     * anything else may be a dead connection: the next fetch makes a new
     * one. */
    chan_put(f, e,
             rc != TG_OK && rc != TG_ECANCELLED && rc != TG_ENOTFOUND &&
                 rc != TG_EPERM);
    return rc;
}
