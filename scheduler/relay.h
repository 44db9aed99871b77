/* SPDX-License-Identifier: Apache-2.0
 *
 * relay.h (private to relay.c and relay_in.c): one relay per held result
 * a gather answers through the scheduler, and what the two files share.
 * relay.c starts relays, asks their holders for ranges within the byte
 * budget and answers the gather; relay_in.c takes what holders send and
 * recovers from a failed holder. Depends on sched.h.
 */
#ifndef TGS_RELAY_H
#define TGS_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "sched.h"

/* Bytes asked of a holder in one Upload. */
#define RELAY_RANGE (4u << 20)
/* A gather's share: bytes asked and not arrived, plus bytes its stream
 * has not written, past which it asks for nothing more (two ranges: one
 * arriving while the other is written). */
#define RELAY_GATHER_BYTES (2u * RELAY_RANGE)

/* CRC-32 and length of one chunk forwarded to the client. */
typedef struct relay_seg {
    uint32_t len, crc;
} relay_seg;

typedef struct relay {
    struct relay *prev, *next; /* in its gather's list */
    peer *g;
    uint64_t id;     /* the current upload, 0 when none */
    uint64_t holder; /* the worker asked */
    char *key;
    char *codec;
    uint64_t size;
    uint32_t attempt; /* of the bytes relayed (a recomputation counts one) */
    bool waiting;     /* for its result to be had again (looked at often) */
    bool head_sent;   /* chunked: the key's TaskResult went out */
    uint64_t done;    /* bytes forwarded (chunked) or collected (inline) */
    uint64_t pos;     /* the next byte expected from the holder */
    uint64_t asked;   /* the end of the bytes asked of the holder */
    relay_seg *segs;  /* chunked: each chunk forwarded, in order */
    size_t nsegs, capsegs;
    /* Checking a recomputed result (pos < done): the segment compared,
     * the CRC-32 of its bytes so far and their count. */
    size_t vseg;
    uint32_t vcrc, vlen;
    uint8_t *buf; /* inline: the bytes collected (size, in relay_inline) */
} relay;

/* Append one GatherResponse of about `approx` bytes to `g`'s stream. */
void relay_gather_put(sched *s, peer *g, const taskgrid_v1_GatherResponse *m,
                      size_t approx);
/* Answer `r`'s key ERRED with `type` and `msg` (no data). */
void relay_put_error(sched *s, relay *r, const char *type, const char *msg);
/* `r` is answered: out of every table, freed; its gather goes on. */
void relay_done(sched *s, relay *r);
/* `r` has no holder any more: out of the uploads, its asked bytes
 * forgotten (ready for relay_resume). */
void relay_detach(sched *s, relay *r);
/* Resume `r` (detached) from what the core knows of its task now: ask
 * another holder, or wait, or answer it (then it is done and freed). */
void relay_resume(sched *s, relay *r);
/* The relay of upload `id`, or NULL (a gather that ended). */
relay *relay_upload_find(const sched *s, uint64_t id);

/* relay_in.c: a recomputed result whose bytes are in the core (`len` at
 * `p`): checked against what `r` forwarded, then the rest forwarded, or
 * tg.DataLost; either way `r` is answered (the caller finishes it). */
void relay_take_inline(sched *s, relay *r, const uint8_t *p, size_t len);
/* Answer `r` with tg.DataLost: its result, computed again, differs from
 * the bytes already sent (`what`: "its size", "its bytes"...). */
void relay_differs(sched *s, relay *r, const char *what);

#endif
