/* SPDX-License-Identifier: Apache-2.0
 *
 * store.h: the results this worker holds for others (DESIGN: a result
 * larger than the scheduler's inline limit stays here, and peers fetch
 * it). A thread-safe map from task key to an immutable, reference-counted
 * entry: the executor thread that finished a task puts it, the data
 * service reads it while it streams it to a peer, the sender reads it
 * for uploads, a local dependent reads it in place (no copy), and the
 * link removes it on the scheduler's free or when the session ends.
 * A reader holds a reference, so a free while a Fetch is streaming ends
 * nothing early: the bytes go away when the last reader lets go.
 * Phase 1 keeps everything in memory (no limit, no spill to disk).
 * Depends on libc and pthreads.
 */
#ifndef TGW_STORE_H
#define TGW_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tgw_store tgw_store;

/* One held result. Every field is immutable while a reference is held. */
typedef struct tgw_held {
    const char *key; /* NUL-terminated */
    size_t key_len;
    const uint8_t *data; /* `len` bytes (NULL when len is 0) */
    size_t len;
    const char *codec; /* NUL-terminated, never empty ("raw") */

    /* Private to store.c. */
    atomic_uint refs;
    uint8_t *owned;
    struct tgw_held *hnext;
} tgw_held;

/** New empty store. TG_OK or TG_ENOMEM. Free with tgw_store_free. */
int tgw_store_new(tgw_store **out);

/** Free the store; entries still referenced live on until released.
 * NULL is a no-op. */
void tgw_store_free(tgw_store *s);

/**
 * Hold `len` bytes at `data` (a malloc'd block: ownership moves in on
 * TG_OK; on failure the caller keeps it) as the result of `key` with
 * `codec` (NULL or "" means "raw"). A result already held under the
 * same key (a rerun) is replaced. TG_OK or TG_ENOMEM.
 */
int tgw_store_put(tgw_store *s, const char *key, size_t key_len, uint8_t *data,
                  size_t len, const char *codec);

/** The entry of `key` with a new reference (release it with
 * tgw_held_release), or NULL when not held. */
tgw_held *tgw_store_get(tgw_store *s, const char *key, size_t key_len);

/** Drop `key` (unknown keys are ignored). True if it was held. */
bool tgw_store_remove(tgw_store *s, const char *key, size_t key_len);

/** Drop everything (the session that held it ended). */
void tgw_store_clear(tgw_store *s);

/** Number of entries and their total bytes, for logs and tests. */
void tgw_store_stats(tgw_store *s, size_t *count, uint64_t *bytes);

/** One more reference to `h`; returns `h`. */
tgw_held *tgw_held_ref(tgw_held *h);

/** Let go of a reference. NULL is a no-op. */
void tgw_held_release(tgw_held *h);

#endif
