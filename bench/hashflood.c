/* SPDX-License-Identifier: Apache-2.0
 *
 * hashflood.c: hash flooding against the scheduler core's hash table.
 * Inserts N client-chosen 16-byte keys into a tgs_map the way the core
 * does (look up, then insert; keys compared by the caller) and looks each
 * up again, for keys that all collide under the core's former unkeyed
 * hash (flood_keys.h) and for random keys, hashed with the former hash
 * and with the current keyed SipHash-1-3 (tgs_hash32). Prints the time
 * per insert and per lookup, and the longest probe run.
 *
 *   bazel run -c opt //bench:hashflood -- [MAX_N]   (default 32000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/flood_keys.h"
#include "scheduler/core/hashmap.h"

typedef uint32_t (*hash_fn)(const void *, size_t);

static uint32_t new_hash32(const void *p, size_t n)
{
    return tgs_hash32(p, n);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *find(const tgs_map *m, uint32_t h, const uint8_t *key)
{
    size_t pos = tgs_map_start(m, h);
    uint8_t *v;

    while ((v = tgs_map_next(m, h, &pos)) != NULL)
        if (memcmp(v, key, 16) == 0)
            return v;
    return NULL;
}

/* The longest run of occupied slots. */
static size_t longest_run(const tgs_map *m)
{
    size_t best = 0, cur = 0, cap = tgs_map_capacity(m);

    for (size_t i = 0; i < 2 * cap; i++) {
        cur = tgs_map_at(m, i % cap) ? cur + 1 : 0;
        if (cur > best)
            best = cur;
        if (best >= cap)
            break;
    }
    return best;
}

static void run(const char *keys_name, const char *hash_name,
                uint8_t (*keys)[16], size_t n, hash_fn hf)
{
    tgs_map m = {0};
    double t0, t1, t2;
    size_t found = 0;

    t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        uint32_t h = hf(keys[i], 16);
        if (find(&m, h, keys[i]) == NULL && tgs_map_insert(&m, h, keys[i]))
            abort();
    }
    t1 = now_s();
    for (size_t i = 0; i < n; i++)
        found += find(&m, hf(keys[i], 16), keys[i]) != NULL;
    t2 = now_s();
    if (found != n)
        abort();
    printf("%-9s %-14s %7zu %12.1f %12.1f %10.3f %9zu\n", keys_name, hash_name,
           n, (t1 - t0) / (double)n * 1e9, (t2 - t1) / (double)n * 1e9, t2 - t0,
           longest_run(&m));
    tgs_map_free(&m);
}

int main(int argc, char **argv)
{
    size_t max = argc > 1 ? strtoul(argv[1], NULL, 10) : 32000;
    uint8_t(*flood)[16] = malloc(max * 16), (*rnd)[16] = malloc(max * 16);
    uint8_t seed[16];
    uint64_t x = 0x9e3779b97f4a7c15ull;

    if (flood == NULL || rnd == NULL || tgb_flood_keys(flood, max) != max)
        return 1;
    for (size_t i = 0; i < max * 16; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ((uint8_t *)rnd)[i] = (uint8_t)x;
    }
    /* A key as the daemon would draw it (here fixed, for repeatability). */
    for (int i = 0; i < 16; i++)
        seed[i] = (uint8_t)(0xa5 ^ (i * 37));
    tgs_hash_seed(seed);
    printf("%-9s %-14s %7s %12s %12s %10s %9s\n", "keys", "hash", "n",
           "insert ns", "lookup ns", "total s", "max run");
    for (size_t n = 1000; n <= max; n *= 4) {
        run("colliding", "old unkeyed", flood, n, tgb_old_hash32);
        run("colliding", "siphash-1-3", flood, n, new_hash32);
        run("random", "old unkeyed", rnd, n, tgb_old_hash32);
        run("random", "siphash-1-3", rnd, n, new_hash32);
        if (n * 4 > max && n != max) {
            n = max / 4; /* end on max itself */
        }
    }
    free(flood);
    free(rnd);
    return 0;
}
