/* SPDX-License-Identifier: Apache-2.0
 *
 * flood_keys.h (benchmark and tests only): what a hash-flooding client
 * would send the scheduler. Holds a copy of the core's former, unkeyed
 * hash (a wyhash-style multiply-fold, replaced by keyed SipHash-1-3 in
 * scheduler/core/hashmap.c) and makes any number of distinct 16-byte keys
 * that all get the same 64-bit value under it, so that they all share one
 * probe run in the table. libc only; header-only (static functions).
 *
 * Why they collide: for a 16-byte key the former hash is
 * f(mum(a ^ P1, b ^ s)) with a, b its two 64-bit words, s a constant, and
 * mum(x, y) a fold of the 128-bit product x * y. Any two factorisations
 * x * y = x' * y' of one number give the same product, hence the same
 * hash. N = 2 * 3 * 5 * ... * 89 (about 2^120) has 2^24 divisors, and
 * millions of them split N into two factors below 2^64.
 */
#ifndef TG_BENCH_FLOOD_KEYS_H
#define TG_BENCH_FLOOD_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TGB_P0 0xa0761d6478bd642full
#define TGB_P1 0xe7037ed1a0b428dbull
#define TGB_P2 0x8ebc6af09c88c6e3ull

static inline uint64_t tgb_rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t tgb_rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t tgb_mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* The core's hash before this change, verbatim but for the names. */
static inline uint64_t tgb_old_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t seed = TGB_P0 ^ tgb_mum(TGB_P0 ^ (uint64_t)len, TGB_P1);
    size_t n = len;
    uint64_t a, b;

    while (n > 16) {
        seed = tgb_mum(tgb_rd64(p) ^ TGB_P1, tgb_rd64(p + 8) ^ seed);
        p += 16;
        n -= 16;
    }
    if (n > 8) {
        a = tgb_rd64(p);
        b = tgb_rd64(p + n - 8);
    } else if (n >= 4) {
        a = tgb_rd32(p);
        b = tgb_rd32(p + n - 4);
    } else if (n > 0) {
        a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    return tgb_mum(TGB_P1 ^ (uint64_t)len,
                   tgb_mum(a ^ TGB_P1, b ^ seed) ^ TGB_P2);
}

static inline uint32_t tgb_old_hash32(const void *data, size_t len)
{
    uint64_t h = tgb_old_hash(data, len);
    return (uint32_t)(h ^ (h >> 32));
}

/*
 * Write up to `n` distinct 16-byte keys that collide under tgb_old_hash
 * into out[]; returns how many (n for n up to a few million).
 */
static inline size_t tgb_flood_keys(uint8_t (*out)[16], size_t n)
{
    static const uint32_t primes[] = {2,  3,  5,  7,  11, 13, 17, 19,
                                      23, 29, 31, 37, 41, 43, 47, 53,
                                      59, 61, 67, 71, 73, 79, 83, 89};
    const size_t np = sizeof(primes) / sizeof(primes[0]);
    __uint128_t all = 1;
    uint64_t s = TGB_P0 ^ tgb_mum(TGB_P0 ^ 16u, TGB_P1);
    size_t got = 0;

    for (size_t i = 0; i < np; i++)
        all *= primes[i];
    for (uint32_t mask = 0; got < n && mask < (1u << np); mask++) {
        __uint128_t x = 1, y;
        uint64_t a, b;

        for (size_t i = 0; i < np; i++)
            if (mask & (1u << i))
                x *= primes[i];
        y = all / x;
        if ((x >> 64) != 0 || (y >> 64) != 0)
            continue;
        a = (uint64_t)x ^ TGB_P1;
        b = (uint64_t)y ^ s;
        memcpy(out[got], &a, 8);
        memcpy(out[got] + 8, &b, 8);
        got++;
    }
    return got;
}

#endif
