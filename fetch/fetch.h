/* SPDX-License-Identifier: Apache-2.0
 *
 * fetch.h (internal): the client side of DataService.Fetch, shared by the
 * worker (a task's held inputs, copies for Replicate) and the SDK (held
 * results fetched directly by a client). One tg__fetch caches a channel
 * per holder address and fetches a result from one holder into a buffer
 * the caller gives, every chunk checked as it lands: the key is the one
 * asked for, offsets follow each other, every chunk states the size the
 * caller expects, no data runs past the end or over the chunk limit, its
 * CRC-32 matches, and the stream ends exactly at the size. Over TLS the
 * holder's certificate must chain to the cluster CA and name the
 * workers' fixed TLS name (TG_PROTO_WORKER_TLS_NAME), since holders'
 * addresses are not known when certificates are made. Depends on
 * transport/client.h (no gRPC call here), proto/wire.h for the request
 * and util/crc.h.
 */
#ifndef TG_FETCH_FETCH_H
#define TG_FETCH_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "transport/transport.h"

typedef struct tg__fetch tg__fetch;

/**
 * A new fetch client; free with tg__fetch_free. `sec` NULL: holders are
 * plaintext (tcp://); else this side's TLS material (the PEM strings are
 * borrowed and must outlive the fetch client; `hint` and `tls_name` are
 * ignored). TG_OK or TG_ENOMEM.
 */
int tg__fetch_new(tg__fetch **out, const tg__rpc_sec *sec);

/** Close the cached channels and free. NULL is a no-op. */
void tg__fetch_free(tg__fetch *f);

/** One result to fetch. */
typedef struct tg__fetch_req {
    const char *key; /* borrowed */
    size_t key_len;
    uint64_t size; /* what the scheduler says it is */
    uint8_t *buf;  /* `size` bytes (at least 1), filled by the fetch */
    /* Polled while the holder is silent (every 200 ms): a non-NULL
     * reason ("the task was cancelled") stops the fetch with
     * TG_ECANCELLED and that reason. NULL: never stops early. */
    const char *(*stop)(void *ud);
    void *ud;
    /* Limit of the whole call, in ms (then TG_ETIMEDOUT); 0: none. */
    int64_t timeout_ms;
} tg__fetch_req;

/**
 * Fetch `req` from `holder` ("host:port", the TLS mode of the fetch
 * client) into req->buf. Blocks while the transfer takes (at most
 * req->timeout_ms, if set); gives up on a holder that sends nothing for
 * 30 s. Thread-safe: many fetches may run
 * at once. A channel whose fetch failed for a reason other than an
 * answer (NOT_FOUND, PERMISSION_DENIED) or a stop is dropped, so a
 * restarted holder gets a new connection.
 *
 * @return TG_OK when all `size` bytes arrived and were checked; else the
 *         code (TG_EUNAVAILABLE, TG_ENOTFOUND, TG_EPERM, TG_EPROTO for a
 *         bad chunk, TG_ETIMEDOUT, TG_ECANCELLED, ...) with the reason,
 *         as a phrase naming no holder ("CRC-32 mismatch in the chunk at
 *         offset 1048576"), in `why`. On failure req->buf holds no
 *         meaning.
 */
int tg__fetch_from(tg__fetch *f, const char *holder, const tg__fetch_req *req,
                   char *why, size_t whylen);

#endif
