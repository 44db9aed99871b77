/* SPDX-License-Identifier: Apache-2.0
 *
 * future.h (internal): the client-side bookkeeping behind tg_future, shared
 * by client.c and future.c. It holds the state a client shares with its
 * futures (tg__shared: live keys, the batched release queue), the blocks
 * futures are allocated in (one per submit), and the per-call key map that
 * matches streamed Gather results to futures. Depends on proto/wire.h for
 * the decoded result type; no gRPC.
 */
#ifndef TG_SRC_FUTURE_H
#define TG_SRC_FUTURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/client.h"
#include "wire.h"

typedef struct tg__shared tg__shared;
typedef struct tg__fslab tg__fslab;
typedef struct tg__rblock tg__rblock;
typedef struct tg__gpart tg__gpart;
typedef struct tg__gheld tg__gheld;

struct tg_future {
    tg__fslab *slab; /* block this future lives in */
    const char *key; /* NUL-terminated, in the slab */
    size_t keylen;
    uint64_t hash;    /* tg__key_hash(key) */
    tg_future *lprev; /* live-key map bucket chain (under sh->mu) */
    tg_future *lnext;
    tg_future *gnext; /* per-gather-call chain (caller's thread only) */
    tg__gpart *part;  /* per-gather-call: the result being assembled from
                         chunks, on the first future of its key */
    bool live;        /* in the live-key map */
    bool deferred;    /* per-gather-call: its holders are in the map's
                         held list, on the first future of its key */
    tg_task_state state;
    tg__rblock *rb; /* owns the strings below when final */
    const uint8_t *data;
    size_t len;
    const char *codec;
    const char *etype, *emsg, *etb, *eorigin;
    /* Final from a run of its own: the worker that ran it (interned in
     * the shared state, which the future's slab keeps alive) and how long
     * the function ran; NULL and 0 otherwise. */
    const char *worker;
    uint64_t run_us;
};

/* 64-bit FNV-1a: short keys, good enough spread, no seed needed since
 * keys come from the user or from a random generator. */
uint64_t tg__key_hash(const void *key, size_t len);

/* ---- shared client state ---- */

/* A new shared state with one reference (the client's). */
int tg__shared_new(tg__shared **out, tg_client *client);

/* The client of `sh`, or NULL once tg__shared_close ran. */
tg_client *tg__shared_client(tg__shared *sh);

/*
 * The client is going away: queue a release for every key still held by a
 * live future, detach the futures, and drop the client's reference after
 * the caller took the queue (tg__shared_take_releases) and unref'd.
 */
void tg__shared_close(tg__shared *sh);

/* Drop one reference; frees `sh` at zero. */
void tg__shared_unref(tg__shared *sh);

/*
 * Take the queued release keys: *arena holds *n NUL-terminated keys back to
 * back (free() it). Returns false (and NULLs) when the queue is empty.
 */
bool tg__shared_take_releases(tg__shared *sh, char **arena, size_t *len,
                              size_t *n);

/* Queue one key for release (used for accepted chunks of a failed submit
 * whose futures are dropped without release). */
void tg__shared_queue_release(tg__shared *sh, const char *key, size_t len);

/* ---- future blocks ---- */

/*
 * Allocate `n` futures of client `sh` in one block with room for
 * `keybytes` bytes of keys; *keys points at that room. The caller sets each
 * future's key with tg__future_set_key (consecutively in *keys), then
 * registers them (tg__fslab_register) or drops them (tg__fslab_drop).
 */
int tg__fslab_new(tg__shared *sh, size_t n, size_t keybytes, tg__fslab **out,
                  tg_future **futures, char **keys);
void tg__future_set_key(tg_future *f, const char *key, size_t len);

/* Enter all futures of the block in the live-key map. */
int tg__fslab_register(tg__fslab *slab);

/* Free every future of an unregistered block without releasing keys. */
void tg__fslab_drop(tg__fslab *slab);

/*
 * Free the `n` registered futures of one block (a failed submit): the
 * first `nrelease` release their keys as tg_future_free does, the others
 * are forgotten without a release.
 */
void tg__futures_discard(tg_future *fut, size_t n, size_t nrelease);

/* The shared state a future belongs to. */
tg__shared *tg__future_shared(const tg_future *f);

/* ---- gather ---- */

/* The futures of one gather call, keyed by key (chains of equal keys). */
typedef struct tg__gmap {
    tg_future **buckets;
    size_t mask;
    char **keys; /* distinct pending keys, borrowed from futures */
    size_t nkeys;
    size_t pending;   /* distinct keys not final yet */
    tg__gpart *parts; /* results being assembled from chunks */
    /* GatherRequest.defer_held was asked (direct fetch): held results
     * come as their holders, kept in `held` in order of arrival. */
    bool defer;
    tg__gheld *held, **held_tail;
} tg__gmap;

/* Map the non-final futures among `fs`; duplicates are folded. */
int tg__gmap_init(tg__gmap *m, tg_future *const *fs, size_t n);

/*
 * Apply one decoded GatherResponse: final results are copied into one
 * block shared by the futures they fill; other states only update
 * tg_future_state. A MEMORY result without its bytes (empty data, size >
 * 0) is assembled from the chunks that follow, straight into the block
 * its futures get, each chunk checked (offset, size, CRC-32); a chunk
 * that does not fit fails that key with error type "tg.DataCorrupt"
 * naming it. With m->defer such a result is deferred instead
 * (tg__gmap_defer): its futures stay as they are. Returns TG_OK or
 * TG_ENOMEM.
 */
int tg__gmap_apply(tg__gmap *m, const taskgrid_v1_GatherResponse *resp);

void tg__gmap_free(tg__gmap *m);

/*
 * Results assembled from elsewhere (a holder's Fetch): open the block of
 * f's key for `size` bytes with codec `codec` (copied); *dst receives
 * where its bytes go, or NULL when the key was failed instead
 * ("tg.ResultTooLarge": more than this process can allocate). Then
 * tg__gmap_part_finish once all `size` bytes are in (the futures get
 * them), or tg__gmap_part_cancel (nothing changes). TG_OK or TG_ENOMEM.
 */
int tg__gmap_part_open(tg__gmap *m, tg_future *f, uint64_t size, tg_pbbuf codec,
                       uint8_t **dst);
void tg__gmap_part_finish(tg__gmap *m, tg_future *f);
void tg__gmap_part_cancel(tg__gmap *m, tg_future *f);

/* ---- direct fetch (direct.c) ---- */

/* One held result the scheduler answered with its holders, not its bytes
 * (one allocation: the entry, then the holders' pointers and strings). */
struct tg__gheld {
    tg__gheld *next;
    tg_future *f; /* first future of its key in the map */
    uint64_t size;
    tg_pbbuf codec;       /* in this allocation */
    const char **holders; /* data addresses "host:port", in order */
    size_t nholders;
};

/* Keep `r` (a MEMORY result without its bytes) for f's key in m->held.
 * TG_OK or TG_ENOMEM. */
int tg__gmap_defer(tg__gmap *m, tg_future *f, const taskgrid_v1_TaskResult *r);

/* Free m->held. */
void tg__gmap_held_free(tg__gmap *m);

/* True for states after which nothing changes. */
/* Copy `b` NUL-terminated to *p (a block sized by the caller, with one
 * byte more per string) and advance *p; returns the copy. */
const char *tg__strings_put(char **p, tg_pbbuf b);

static inline bool tg__state_final(tg_task_state s)
{
    return s == TG_TASK_MEMORY || s == TG_TASK_ERRED ||
           s == TG_TASK_CANCELLED || s == TG_TASK_RELEASED;
}

#endif
