/* SPDX-License-Identifier: Apache-2.0
 *
 * hashmap.h: the hash function and the open-addressing hash table of the
 * scheduling core (tasks by key, functions and codecs by name, workers by
 * id). The table stores borrowed pointers next to a 32-bit hash; it never
 * looks at what the pointers point to, so callers compare keys themselves
 * while walking the candidates of one hash. Linear probing with
 * backward-shift deletion keeps lookups short without tombstones, which
 * matters because a long-running scheduler inserts and removes millions of
 * keys. libc only.
 */
#ifndef TGS_HASHMAP_H
#define TGS_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * 64-bit hash of `len` bytes: SipHash-1-3 under the process's hash key.
 * Keys are chosen by clients, so the hash is keyed: without the key, no
 * one can make keys collide on purpose (hash flooding).
 */
uint64_t tgs_hash_bytes(const void *data, size_t len);

/**
 * Set the process's hash key (16 bytes, copied). The default is a fixed
 * key, so that the core is deterministic (tests); taskgrid-scheduler sets
 * a random one from getrandom() at start. Call it before any tgs_core
 * exists: hashes already stored in tables would no longer match. Not
 * thread-safe (the core has one thread).
 */
void tgs_hash_seed(const uint8_t key[16]);

/**
 * SipHash-c-d (c rounds per word, d finalisation rounds) of `len` bytes
 * under `key`; tgs_hash_bytes is c = 1, d = 3. For the reference test
 * vectors and the benchmark.
 */
uint64_t tgs_siphash(const uint8_t key[16], const void *data, size_t len, int c,
                     int d);

/** The 32-bit hash the table stores for `len` bytes at `data`. */
static inline uint32_t tgs_hash32(const void *data, size_t len)
{
    uint64_t h = tgs_hash_bytes(data, len);
    return (uint32_t)(h ^ (h >> 32));
}

/*
 * A table of non-NULL pointers keyed by a caller-computed 32-bit hash.
 * Zero-initialised ({0}) is a valid empty table. Slots hold 12 bytes; the
 * load stays at most 3/4.
 */
typedef struct tgs_map {
    void **vals;      /* NULL marks an empty slot */
    uint32_t *hashes; /* hash of vals[i] */
    size_t mask;      /* capacity - 1 (capacity is a power of two) */
    size_t len;       /* entries */
} tgs_map;

/** Free the slot arrays (not the values). */
void tgs_map_free(tgs_map *m);

/**
 * Make room for `extra` more entries, so that the next `extra` calls of
 * tgs_map_insert cannot fail. @return 0 or TGS_ENOMEM.
 */
int tgs_map_reserve(tgs_map *m, size_t extra);

/**
 * Insert `val` (non-NULL) under hash `h`. Does not check for an equal key:
 * the caller looks up first. @return 0 or TGS_ENOMEM (table unchanged).
 */
int tgs_map_insert(tgs_map *m, uint32_t h, void *val);

/**
 * Remove the entry that is exactly `val` (pointer identity) under hash
 * `h`. @return true if it was there.
 */
bool tgs_map_remove(tgs_map *m, uint32_t h, const void *val);

/**
 * Walk the entries stored under hash `h`: start with *pos =
 * tgs_map_start(m, h), then call tgs_map_next until it returns NULL.
 * Entries of other hashes are skipped; the caller compares keys.
 */
static inline size_t tgs_map_start(const tgs_map *m, uint32_t h)
{
    return (size_t)h & m->mask;
}

static inline void *tgs_map_next(const tgs_map *m, uint32_t h, size_t *pos)
{
    if (m->vals == NULL)
        return NULL;
    for (;;) {
        size_t i = *pos;
        void *v = m->vals[i];
        if (v == NULL)
            return NULL;
        *pos = (i + 1) & m->mask;
        if (m->hashes[i] == h)
            return v;
    }
}

/** Number of slots (for walking every entry with tgs_map_at). */
static inline size_t tgs_map_capacity(const tgs_map *m)
{
    return m->vals ? m->mask + 1 : 0;
}

/** The value in slot `i`, or NULL when the slot is empty. */
static inline void *tgs_map_at(const tgs_map *m, size_t i)
{
    return m->vals[i];
}

#endif
