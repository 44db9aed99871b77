/* SPDX-License-Identifier: Apache-2.0
 *
 * outbox.h: what the worker has to tell the scheduler and has not sent
 * yet: finished tasks (results), keys handed back unstarted, keys it was
 * asked for but does not hold (missing), running tasks that seceded or
 * rejoined (nested work), and the bytes of held results the scheduler
 * asked to upload. Executor threads and the link push; the
 * link's sender thread takes everything that is waiting as one batch, so
 * under load one WorkerMessage carries thousands of results (one message
 * per task would cap throughput far lower), while an idle worker still
 * sends each result at once. Uploads go out a few chunks per batch, so
 * results and heartbeats keep flowing between the pieces of a large
 * upload. Depends on pthreads, task.h and store.h.
 */
#ifndef TGW_OUTBOX_H
#define TGW_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "task.h"

typedef struct tgw_outbox tgw_outbox;

/* The largest upload chunk (DataChunk.data, TG_PROTO_CHUNK_MAX). */
#define TGW_CHUNK_MAX (1u << 20)
/* Upload bytes per batch: a large upload takes several messages, and
 * what else waits rides along in each. */
#define TGW_BATCH_CHUNK_BYTES (4u << 20)

/* One piece of an upload, taken for sending. */
typedef struct tgw_chunk {
    uint64_t upload; /* Upload.id it answers */
    tgw_held *h;     /* a reference (released by tgw_outbox_batch_free) */
    uint64_t offset; /* where the piece starts in h->data */
    size_t len;      /* at most TGW_CHUNK_MAX; 0 only for an empty result */
    bool last;       /* the result's final piece */
    /* The piece's bytes: into h->data, or `copy` (read from the spill file
     * of a spilled result, freed with the batch); NULL when len is 0 or
     * the read failed (then `failed`). */
    const uint8_t *bytes;
    uint8_t *copy;
    bool failed;
} tgw_chunk;

/* A running task that gave its slot back (seceded) or takes it again
 * (rejoined): taskgrid.v1 Secession. */
typedef struct tgw_secession {
    char *key; /* malloc'd */
    bool rejoined;
} tgw_secession;

/* One batch taken from the outbox (owned by the taker). */
typedef struct tgw_batch {
    tg_task_ctx *results; /* list through ->next, oldest first */
    size_t nresults;
    char **released; /* malloc'd keys */
    size_t nreleased;
    char **missing; /* malloc'd keys */
    size_t nmissing;
    tgw_chunk *chunks; /* in upload order, then offset order */
    size_t nchunks;
    tgw_secession *secessions; /* in the order they happened */
    size_t nsecessions;
    void *wire; /* the secessions in wire form (secede.c), or NULL */
} tgw_batch;

/** New empty outbox. TG_OK or TG_ENOMEM. */
int tgw_outbox_new(tgw_outbox **out);

/** Free the outbox and everything still in it. NULL is a no-op. */
void tgw_outbox_free(tgw_outbox *ob);

/** Append a finished task (ownership moves in). Never blocks for long:
 * safe to call with the executor's lock held. */
void tgw_outbox_push(tgw_outbox *ob, tg_task_ctx *t);

/** Append a key to hand back unstarted (copied). TG_OK or TG_ENOMEM. */
int tgw_outbox_push_released(tgw_outbox *ob, const char *key);

/** Append a key this worker was asked for and does not hold (copied).
 * TG_OK or TG_ENOMEM. */
int tgw_outbox_push_missing(tgw_outbox *ob, const char *key, size_t len);

/**
 * Append a secession of running task `key` (copied): it seceded, or
 * rejoined. The executor's secession hook (tg__exec_opts.secession, with
 * the outbox as its `ud`): safe with the executor's lock held. Out of
 * memory it is dropped with a warning (the scheduler then keeps counting
 * the task as it did).
 */
void tgw_outbox_secession(void *ob, const char *key, bool rejoined);

/** Queue the upload `id` of bytes [offset, offset + length) of held
 * result `h` (length 0, or past the end: to the end; an offset at or past
 * the end of a non-empty result queues nothing), after the uploads queued
 * before; takes over the caller's reference to `h` (released on failure
 * too). TG_OK or TG_ENOMEM. */
int tgw_outbox_push_upload(tgw_outbox *ob, uint64_t id, tgw_held *h,
                           uint64_t offset, uint64_t length);

/**
 * Wait up to `wait_ms` for something to send (or tgw_outbox_wake), then
 * take at most `max_items` results and keys of each kind, and results of
 * about `max_bytes` at most (but at least one result, however large: see
 * tgw_task_limit_result), and upload chunks of TGW_BATCH_CHUNK_BYTES at
 * most (at least one). Marks a batch in flight until tgw_outbox_done.
 * The batch may be empty (timeout or wake).
 */
void tgw_outbox_take(tgw_outbox *ob, tgw_batch *b, size_t max_items,
                     size_t max_bytes, int64_t wait_ms);

/** The taken batch was sent (or dropped): see tgw_outbox_flush. */
void tgw_outbox_done(tgw_outbox *ob);

/** Free a batch's contents. */
void tgw_outbox_batch_free(tgw_batch *b);

/** Make a waiting tgw_outbox_take return now. */
void tgw_outbox_wake(tgw_outbox *ob);

/** Drop everything waiting (the scheduler that expected it is gone). */
void tgw_outbox_clear(tgw_outbox *ob);

/** Wait until nothing waits and no batch is in flight, at most
 * `timeout_ms`. True if flushed. */
bool tgw_outbox_flush(tgw_outbox *ob, int64_t timeout_ms);

/** Number of results, keys and uploads waiting (not in flight). */
size_t tgw_outbox_pending(tgw_outbox *ob);

#endif
