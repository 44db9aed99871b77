/* SPDX-License-Identifier: Apache-2.0
 *
 * hashmap_test.c: the core's keyed hash (scheduler/core/hashmap.c).
 * SipHash against its reference vectors (SipHash-2-4: the paper's
 * appendix and the reference implementation; SipHash-1-3: CPython 3.11,
 * whose str/bytes hash it is, with PYTHONHASHSEED=0, i.e. a zero key); the
 * key decides the hash and a fixed key keeps it deterministic; and keys
 * that all collide under the former unkeyed hash (bench/flood_keys.h)
 * spread over the table instead of forming one probe run. libc only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/flood_keys.h"
#include "scheduler/core/hashmap.h"

static void test_hashmap_hashmap__siphash24_reference_vectors(void **state)
{
    /* Key 00 01 .. 0f, message 00 01 .. (n-1). */
    static const struct {
        size_t n;
        uint64_t h;
    } v[] = {
        {0, 0x726fdb47dd0e0e31ull},
        {1, 0x74f839c593dc67fdull},
        {8, 0x93f5f5799a932462ull},
        {15, 0xa129ca6149be45e5ull},
    };
    uint8_t key[16], msg[64];

    (void)state;
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(tgs_siphash(key, msg, v[i].n, 2, 4), v[i].h);
}

static void test_hashmap_hashmap__siphash13_reference_vectors(void **state)
{
    /* PYTHONHASHSEED=0 python3.11 -c 'print(hex(hash(M) & (2**64-1)))' */
    static const struct {
        const char *m;
        size_t n;
        uint64_t h;
    } v[] = {
        {"a", 1, 0x407448d2b89b1813ull},
        {"abc", 3, 0xc03bc3a0042630f2ull},
        {"inc-123456", 10, 0x850ce09f7c1961cbull},
        {NULL, 7, 0x2f098ab0c751325aull},  /* bytes(range(7)) */
        {NULL, 8, 0xead411e67ebe2eeaull},  /* bytes(range(8)) */
        {NULL, 15, 0xf30eb725bb91c9eaull}, /* ... */
        {NULL, 16, 0x8972188433a5c5b7ull},
        {NULL, 63, 0x385d3e39e5f37359ull},
    };
    uint8_t zero[16] = {0}, msg[64];

    (void)state;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(tgs_siphash(zero, v[i].m ? (const void *)v[i].m : msg,
                                     v[i].n, 1, 3),
                         v[i].h);
}

/* The process key decides the hash; a fixed key gives fixed hashes. */
static void test_hashmap_hashmap__key_decides(void **state)
{
    uint8_t k1[16], k2[16];
    uint64_t a, b, c;

    (void)state;
    for (int i = 0; i < 16; i++) {
        k1[i] = (uint8_t)(i * 7 + 1);
        k2[i] = (uint8_t)(i * 7 + 2);
    }
    tgs_hash_seed(k1);
    a = tgs_hash_bytes("task-1", 6);
    assert_int_equal(a, tgs_siphash(k1, "task-1", 6, 1, 3));
    tgs_hash_seed(k2);
    b = tgs_hash_bytes("task-1", 6);
    assert_int_not_equal(a, b);
    tgs_hash_seed(k1);
    c = tgs_hash_bytes("task-1", 6);
    assert_int_equal(a, c);
    assert_int_equal(tgs_hash_bytes(NULL, 0), tgs_siphash(k1, "", 0, 1, 3));
}

/* Keys made to collide under the former hash: with it, one probe run as
 * long as the table holds keys; with the keyed hash, short runs. */
static void test_hashmap_hashmap__flood_keys_spread(void **state)
{
    enum { N = 20000 };
    uint8_t(*keys)[16] = malloc(N * 16);
    uint8_t seed[16];
    tgs_map m = {0};
    size_t run = 0, best = 0, distinct = 0, cap;
    uint32_t *seen;

    (void)state;
    assert_non_null(keys);
    assert_int_equal(tgb_flood_keys(keys, N), N);
    /* They do collide under the former hash, every one. */
    for (size_t i = 1; i < N; i++)
        assert_int_equal(tgb_old_hash32(keys[i], 16),
                         tgb_old_hash32(keys[0], 16));
    for (int i = 0; i < 16; i++)
        seed[i] = (uint8_t)(0x5a + i);
    tgs_hash_seed(seed);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(tgs_map_insert(&m, tgs_hash32(keys[i], 16), keys[i]),
                         0);
    cap = tgs_map_capacity(&m);
    for (size_t i = 0; i < 2 * cap; i++) {
        run = tgs_map_at(&m, i % cap) ? run + 1 : 0;
        best = run > best ? run : best;
    }
    /* A random hash at load <= 3/4 over 32768 slots: runs of a few dozen;
     * the former hash: one run of all 20000. */
    assert_true(best < 200);
    seen = calloc(N, sizeof(*seen));
    assert_non_null(seen);
    for (size_t i = 0; i < N; i++)
        seen[i] = tgs_hash32(keys[i], 16);
    for (size_t i = 0; i < N; i++) {
        size_t j = 0;
        while (j < i && seen[j] != seen[i])
            j++;
        distinct += j == i;
        if (i > 2000)
            break; /* quadratic: a prefix is enough */
    }
    assert_true(distinct > 1990);
    free(seen);
    tgs_map_free(&m);
    free(keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashmap_hashmap__siphash24_reference_vectors),
        cmocka_unit_test(test_hashmap_hashmap__siphash13_reference_vectors),
        cmocka_unit_test(test_hashmap_hashmap__key_decides),
        cmocka_unit_test(test_hashmap_hashmap__flood_keys_spread),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
