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
 * With a memory limit (memory.h) the least recently used entries move to
 * files on local disk (tgw_store_spill): a spilled entry replaces the
 * in-memory one under its key, and readers read it back with
 * tgw_held_read, a piece at a time, so serving a multi-GB result never
 * loads it whole. Depends on libc, POSIX I/O and pthreads.
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
    /* `len` bytes in memory (NULL when len is 0 or when spilled: read
     * those with tgw_held_read). */
    const uint8_t *data;
    size_t len;
    const char *codec; /* NUL-terminated, never empty ("raw") */
    bool spilled;      /* the bytes are in a file on local disk */

    /* Private to store.c. */
    atomic_uint refs;
    uint8_t *owned;
    int fd;        /* the spill file, open for reading; -1 in memory */
    char *path;    /* the spill file, removed with the entry */
    uint64_t used; /* store tick of the last put or get (LRU) */
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

/** Call `fn(ud)` after every put, remove and clear, outside the lock
 * (the memory manager's wake-up). Set before the store is shared. */
void tgw_store_watch(tgw_store *s, void (*fn)(void *ud), void *ud);

/** Bytes of entries in memory and of entries spilled to disk (either
 * pointer may be NULL). */
void tgw_store_usage(tgw_store *s, uint64_t *memory, uint64_t *spilled);

/** The least recently used entry still in memory, with a new reference
 * (release it), or NULL when none is. */
tgw_held *tgw_store_lru(tgw_store *s);

/**
 * Write the bytes of `h` (an in-memory entry of this store, borrowed) to
 * a new file in the directory `dir` and put a spilled entry in its place,
 * so its memory goes once the last reader of `h` lets go. Nothing changes
 * if `h` was replaced or removed meanwhile (the file is removed). Runs
 * without the store's lock while writing.
 * @return TG_OK, TG_EIO (with the file's name and the system's reason in
 *         tg_error_last()) or TG_ENOMEM.
 */
int tgw_store_spill(tgw_store *s, tgw_held *h, const char *dir);

/**
 * Copy `n` bytes of `h` from `offset` (offset + n <= h->len) into `buf`:
 * from memory, or read from the spill file.
 * @return TG_OK or TG_EIO (reason in tg_error_last()).
 */
int tgw_held_read(const tgw_held *h, uint64_t offset, void *buf, size_t n);

/**
 * The `n` bytes of `h` at `offset`: a pointer into memory, or into
 * `scratch` (at least `n` bytes, the caller's) after reading them from the
 * spill file. NULL on a read error (reason in tg_error_last()); for n == 0
 * any pointer, possibly NULL, is the answer: check n first.
 */
const uint8_t *tgw_held_at(const tgw_held *h, uint64_t offset, size_t n,
                           uint8_t *scratch);

/** One more reference to `h`; returns `h`. */
tgw_held *tgw_held_ref(tgw_held *h);

/** Let go of a reference. NULL is a no-op. */
void tgw_held_release(tgw_held *h);

#endif
