/* SPDX-License-Identifier: Apache-2.0
 *
 * hashmap.c: the core's hash function and its open-addressing table (see
 * hashmap.h). Depends on libc only (status codes from core.h).
 */
#include "scheduler/core/hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "scheduler/core.h"

/* Keep the load at most 3/4: linear probing degrades quickly past that,
 * and a probe here only compares 32-bit hashes, so short runs are cheap. */
#define MAP_MIN_CAP 16

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 64x64 -> 128-bit multiply, folded: the mixing step of wyhash. One
 * multiplication spreads every input bit over the whole result, so the low
 * bits the table uses as an index depend on all of the key. */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t ha = a >> 32, la = (uint32_t)a, hb = b >> 32, lb = (uint32_t)b;
    uint64_t rh = ha * hb, rm0 = ha * lb, rm1 = hb * la, rl = la * lb;
    uint64_t t = rl + (rm0 << 32), c = t < rl;
    uint64_t lo = t + (rm1 << 32);
    c += lo < t;
    uint64_t hi = rh + (rm0 >> 32) + (rm1 >> 32) + c;
    return lo ^ hi;
#endif
}

uint64_t tgs_hash_bytes(const void *data, size_t len)
{
    static const uint64_t P0 = 0xa0761d6478bd642full;
    static const uint64_t P1 = 0xe7037ed1a0b428dbull;
    static const uint64_t P2 = 0x8ebc6af09c88c6e3ull;
    const uint8_t *p = data;
    uint64_t seed = P0 ^ mum(P0 ^ (uint64_t)len, P1);
    size_t n = len;
    uint64_t a, b;

    while (n > 16) {
        seed = mum(rd64(p) ^ P1, rd64(p + 8) ^ seed);
        p += 16;
        n -= 16;
    }
    if (n > 8) {
        a = rd64(p);
        b = rd64(p + n - 8);
    } else if (n >= 4) {
        a = rd32(p);
        b = rd32(p + n - 4);
    } else if (n > 0) {
        a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    return mum(P1 ^ (uint64_t)len, mum(a ^ P1, b ^ seed) ^ P2);
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
