/* SPDX-License-Identifier: Apache-2.0
 *
 * hashmap.c: the core's hash function (keyed SipHash-1-3, written here
 * from the reference description because the core links libc only and
 * Debian's SipHash libraries, libsodium and libhighwayhash, are not libc)
 * and its open-addressing table (see hashmap.h). Depends on libc only
 * (status codes from core.h).
 */
#include "scheduler/core/hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "scheduler/core.h"

/* Keep the load at most 3/4: linear probing degrades quickly past that,
 * and a probe here only compares 32-bit hashes, so short runs are cheap. */
#define MAP_MIN_CAP 16

/*
 * The key of the hash. Keys come from clients (task keys, function and
 * codec names), so an unkeyed hash lets anyone who knows the function
 * send keys that all land in one probe run: every insert and lookup then
 * walks the whole run, and a few thousand tasks stall the scheduler's
 * only thread (bench/hashflood.c measures it). A secret key makes the
 * slots unpredictable. The default is fixed, so the core stays
 * deterministic for tests; the daemon sets a random one at start
 * (tgs_hash_seed).
 */
static uint64_t key0 = 0x736f6d6570736575ull, key1 = 0x646f72616e646f6dull;

void tgs_hash_seed(const uint8_t key[16])
{
    memcpy(&key0, key, 8);
    memcpy(&key1, key + 8, 8);
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v; /* little-endian hosts only (as SipHash's word order) */
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

/* One SipRound (Aumasson and Bernstein, "SipHash: a fast short-input
 * PRF", 2012, section 2). */
#define SIPROUND           \
    do {                   \
        v0 += v1;          \
        v1 = ROTL(v1, 13); \
        v1 ^= v0;          \
        v0 = ROTL(v0, 32); \
        v2 += v3;          \
        v3 = ROTL(v3, 16); \
        v3 ^= v2;          \
        v0 += v3;          \
        v3 = ROTL(v3, 21); \
        v3 ^= v0;          \
        v2 += v1;          \
        v1 = ROTL(v1, 17); \
        v1 ^= v2;          \
        v2 = ROTL(v2, 32); \
    } while (0)

/* SipHash-c-d of `len` bytes under (k0, k1): c rounds per 8-byte word, d
 * at the end. Inlined with constant c and d, the loops unroll. */
static inline uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *p,
                               size_t len, int c, int d)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull;
    uint64_t v3 = k1 ^ 0x7465646279746573ull;
    uint64_t m, b = (uint64_t)len << 56;
    size_t words = len / 8, left = len % 8;

    /* Indexes, not pointer steps: `p` may be NULL when len is 0. */
    for (size_t w = 0; w < words; w++) {
        m = rd64(p + 8 * w);
        v3 ^= m;
        for (int i = 0; i < c; i++)
            SIPROUND;
        v0 ^= m;
    }
    /* The last 0 to 7 bytes, little-endian, under the length byte. */
    for (size_t i = 0; i < left; i++)
        b |= (uint64_t)p[8 * words + i] << (8 * i);
    v3 ^= b;
    for (int i = 0; i < c; i++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t tgs_siphash(const uint8_t key[16], const void *data, size_t len, int c,
                     int d)
{
    uint64_t k0, k1;

    memcpy(&k0, key, 8);
    memcpy(&k1, key + 8, 8);
    return siphash(k0, k1, data, len, c, d);
}

/* SipHash-1-3, as Python, Rust and Ruby use for their tables: the rounds
 * SipHash-2-4 adds buy a margin for MAC use that a hash table, whose
 * output an attacker only sees through timing, does not need. */
uint64_t tgs_hash_bytes(const void *data, size_t len)
{
    return siphash(key0, key1, data, len, 1, 3);
}

void tgs_map_free(tgs_map *m)
{
    free(m->vals);
    free(m->hashes);
    memset(m, 0, sizeof *m);
}

/* Place without growing; the caller made room. */
static void place(tgs_map *m, uint32_t h, void *val)
{
    size_t i = (size_t)h & m->mask;
    while (m->vals[i] != NULL)
        i = (i + 1) & m->mask;
    m->vals[i] = val;
    m->hashes[i] = h;
    m->len++;
}

static int rehash(tgs_map *m, size_t cap)
{
    void **vals = calloc(cap, sizeof *vals);
    uint32_t *hashes = malloc(cap * sizeof *hashes);
    if (vals == NULL || hashes == NULL) {
        free(vals);
        free(hashes);
        return TGS_ENOMEM;
    }
    tgs_map old = *m;
    m->vals = vals;
    m->hashes = hashes;
    m->mask = cap - 1;
    m->len = 0;
    for (size_t i = 0; old.vals != NULL && i <= old.mask; i++)
        if (old.vals[i] != NULL)
            place(m, old.hashes[i], old.vals[i]);
    free(old.vals);
    free(old.hashes);
    return TGS_OK;
}

int tgs_map_reserve(tgs_map *m, size_t extra)
{
    size_t need = m->len + extra;
    size_t cap = m->vals ? m->mask + 1 : 0;
    if (need < m->len || need > SIZE_MAX / 4 / sizeof(void *))
        return TGS_ENOMEM;
    if (cap != 0 && need * 4 <= cap * 3)
        return TGS_OK;
    size_t ncap = cap ? cap : MAP_MIN_CAP;
    while (need * 4 > ncap * 3)
        ncap *= 2;
    return rehash(m, ncap);
}

int tgs_map_insert(tgs_map *m, uint32_t h, void *val)
{
    int rc = tgs_map_reserve(m, 1);
    if (rc != TGS_OK)
        return rc;
    place(m, h, val);
    return TGS_OK;
}

bool tgs_map_remove(tgs_map *m, uint32_t h, const void *val)
{
    if (m->vals == NULL)
        return false;
    size_t i = (size_t)h & m->mask;
    for (;;) {
        if (m->vals[i] == NULL)
            return false;
        if (m->vals[i] == val)
            break;
        i = (i + 1) & m->mask;
    }
    /* Backward-shift deletion: pull later members of the probe run into
     * the hole when their home slot allows it, so that no tombstones are
     * needed and runs stay as short as if the entry had never been there. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->vals[j] == NULL)
            break;
        size_t home = (size_t)m->hashes[j] & m->mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        m->vals[i] = m->vals[j];
        m->hashes[i] = m->hashes[j];
        i = j;
    }
    m->vals[i] = NULL;
    m->len--;
    return true;
}
