/* SPDX-License-Identifier: Apache-2.0
 *
 * collections_test.c: tg_client_map and tg_client_tree_reduce against a
 * real taskgrid-scheduler and two C workers on loopback. 1,000 partitions
 * of 1,000 numbers each are generated on the workers (coll.range from
 * libtgcoll.so; under --inline-limit 4096 each is held by its worker) and
 * summed by tg.sum in trees of fan-in 8 and 2, checked exactly; the
 * trees' depth shows in their root keys; inner results are forgotten once
 * used; a tree over one input is one task; bad input fails with a message
 * naming the problem, before anything is submitted. Every wait is bounded.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define NPARTS 1000
#define PART_LEN 1000

static char plugin[4300];
static char addr[256];
static th_proc sched, w0, w1;
static tg_client *client;

static int setup(void **state)
{
    const char *sextra[] = {"--launcher", "none", "--inline-limit", "4096",
                            NULL};
    const char *wextra[] = {"--preload", plugin, NULL};

    (void)state;
    sched = th_start_scheduler("tcp://127.0.0.1:0", sextra, addr, sizeof(addr));
    w0 = th_start_worker(addr, "w0", "2", wextra);
    w1 = th_start_worker(addr, "w1", "2", wextra);
    client = th_connect(addr);
    th_wait_workers(client, 2, 10000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_client_free(client);
    th_stop(&w0, SIGTERM);
    th_stop(&w1, SIGTERM);
    th_stop(&sched, SIGTERM);
    return 0;
}

/* A partition whose input is the JSON text `in` (borrowed). */
static tg_partition json_part(const char *in)
{
    tg_partition p = TG_PARTITION_INIT;

    p.input = in;
    p.input_len = strlen(in);
    p.codec = "json";
    return p;
}

/* Map coll.range over NPARTS partitions: partition i is the numbers
 * i*PART_LEN .. i*PART_LEN+PART_LEN-1. */
static void map_ranges(tg_future **parts, const char *key)
{
    static char in[NPARTS][48];
    tg_partition p[NPARTS];
    tg_collection_opts o = TG_COLLECTION_OPTS_INIT;

    o.key = key;
    for (int i = 0; i < NPARTS; i++) {
        snprintf(in[i], sizeof(in[i]), "[%d, %d]", i * PART_LEN, PART_LEN);
        p[i] = json_part(in[i]);
    }
    if (tg_client_map(client, "coll.range", p, NPARTS, &o, parts) != TG_OK)
        fail_msg("map: %s", tg_error_last());
}

static void free_all(tg_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
}

/* Poll Status until at most `n` tasks are in memory (bounded). */
static void wait_memory_at_most(uint64_t n, int64_t timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    uint64_t got = 0;

    for (;;) {
        tg_status_report *r;

        assert_int_equal(tg_client_status(client, &r), TG_OK);
        got = tg_status_report_count(r, TG_TASK_MEMORY);
        tg_status_report_free(r);
        if (got <= n)
            return;
        if (th_now_ms() > deadline)
            fail_msg("%" PRIu64 " results still in memory after %lld ms, "
                     "want at most %" PRIu64,
                     got, (long long)timeout_ms, n);
        th_sleep_ms(50);
    }
}

static void test_collections__map_then_tree_reduce_sums_exactly(void **state)
{
    /* Sum of 0 .. N-1 with N = NPARTS * PART_LEN. */
    const double want = (double)NPARTS * PART_LEN * (NPARTS * PART_LEN - 1) / 2;
    tg_collection_opts o8 = TG_COLLECTION_OPTS_INIT, o2 = o8;
    tg_future *parts[NPARTS], *sum8, *sum2, *both[2];
    const void *data;
    size_t len;

    (void)state;
    map_ranges(parts, "ranges");
    assert_string_equal(tg_future_key(parts[0]), "ranges-0");
    assert_string_equal(tg_future_key(parts[NPARTS - 1]), "ranges-999");
    o8.key = "sum8";
    o2.key = "sum2";
    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", parts, NPARTS, 8, &o8, &sum8),
        TG_OK);
    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", parts, NPARTS, 2, &o2, &sum2),
        TG_OK);
    /* 1000 -> 125 -> 16 -> 2 -> 1 at fan-in 8: depth ceil(log8 1000) = 4;
     * at fan-in 2 ceil(log2 1000) = 10. */
    assert_string_equal(tg_future_key(sum8), "sum8-r4-0");
    assert_string_equal(tg_future_key(sum2), "sum2-r10-0");
    free_all(parts, NPARTS); /* each partition goes once both used it */
    both[0] = sum8;
    both[1] = sum2;
    assert_int_equal(tg_client_gather(client, both, 2, 30000), TG_OK);
    for (int i = 0; i < 2; i++) {
        if (tg_future_result(both[i], &data, &len, NULL) != TG_OK)
            fail_msg("%s: %s", tg_future_key(both[i]), tg_error_last());
        assert_true(th_number(both[i]) == want);
        assert_string_equal((const char *)data, "499999500000");
    }
    /* Nothing but the two roots is left in memory: inner combines and
     * the partitions were forgotten once used. */
    wait_memory_at_most(2, 10000);
    free_all(both, 2);
}

static void test_collections__tree_over_one_input_is_one_task(void **state)
{
    tg_partition p = json_part("[5, 3]");
    tg_collection_opts o = TG_COLLECTION_OPTS_INIT;
    tg_future *part, *root;

    (void)state;
    assert_int_equal(tg_client_map(client, "coll.range", &p, 1, NULL, &part),
                     TG_OK);
    /* A fresh prefix per call: "<func>-<16 hex>-<i>". */
    assert_true(strncmp(tg_future_key(part), "coll.range-", 11) == 0);
    assert_int_equal(strlen(tg_future_key(part)), strlen("coll.range-") + 18);
    o.key = "one";
    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", &part, 1, 8, &o, &root), TG_OK);
    assert_string_equal(tg_future_key(root), "one-r1-0");
    assert_int_equal(tg_future_wait(root, 10000), TG_OK);
    assert_true(th_number(root) == 5 + 6 + 7);
    tg_future_free(part);
    tg_future_free(root);
}

static void test_collections__map_over_futures_passes_each_result(void **s)
{
    static char in[3][48];
    tg_partition p[3];
    tg_future *src[3], *sums[3], *total;

    (void)s;
    for (int i = 0; i < 3; i++) {
        snprintf(in[i], sizeof(in[i]), "[%d, 2]", i * 10);
        p[i] = json_part(in[i]);
    }
    assert_int_equal(tg_client_map(client, "coll.range", p, 3, NULL, src),
                     TG_OK);
    for (int i = 0; i < 3; i++) {
        p[i] = json_part("100");
        p[i].future = src[i];
    }
    /* tg.sum(100, partition): the literal input first, then the result. */
    assert_int_equal(tg_client_map(client, "tg.sum", p, 3, NULL, sums), TG_OK);
    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", sums, 3, 2, NULL, &total),
        TG_OK);
    /* 3 at fan-in 2: groups of 2 and 1, so the combine must take one
     * argument too (tg.add would not: it wants two or more). */
    assert_int_equal(tg_future_wait(total, 10000), TG_OK);
    /* Partitions [0,1], [10,11], [20,21]: 1+100, 21+100, 41+100. */
    assert_true(th_number(total) == 363);
    free_all(src, 3);
    free_all(sums, 3);
    tg_future_free(total);
}

static void test_collections__bad_input_names_the_problem(void **state)
{
    tg_partition p = json_part("[0, 2]");
    tg_collection_opts o = TG_COLLECTION_OPTS_INIT;
    tg_future *part = NULL, *root = NULL;
    tg_status_report *r;

    (void)state;
    assert_int_equal(tg_client_map(client, "coll.range", &p, 1, NULL, &part),
                     TG_OK);

    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", &part, 1, 1, NULL, &root),
        TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "fan_in must be 2"));
    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", &part, 0, 2, NULL, &root),
        TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "no futures to reduce"));
    assert_int_equal(tg_client_map(client, "coll.range", &p, 0, NULL, &part),
                     TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "no partitions"));
    assert_int_equal(
        tg_client_tree_reduce(client, "nope.combine", &part, 1, 2, NULL, &root),
        TG_ENOTFOUND);
    assert_non_null(strstr(tg_error_last(),
                           "no connected worker provides function "
                           "'nope.combine'"));
    assert_non_null(strstr(tg_error_last(), "tg.sum"));
    assert_int_equal(tg_client_map(client, "nope.gen", &p, 1, NULL, &root),
                     TG_ENOTFOUND);
    assert_non_null(strstr(tg_error_last(), "'nope.gen'"));
    assert_int_equal(tg_client_map(client, "nodot", &p, 1, NULL, &root),
                     TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "namespace.name"));
    o.version = 99;
    assert_int_equal(
        tg_client_tree_reduce(client, "tg.sum", &part, 1, 2, &o, &root),
        TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "TG_COLLECTION_OPTS_INIT"));
    assert_null(root);
    /* Nothing was submitted by the refused calls. */
    assert_int_equal(tg_client_status(client, &r), TG_OK);
    assert_int_equal(tg_status_report_count(r, TG_TASK_WAITING) +
                         tg_status_report_count(r, TG_TASK_READY),
                     0);
    tg_status_report_free(r);
    tg_future_free(part);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collections__map_then_tree_reduce_sums_exactly),
        cmocka_unit_test(test_collections__tree_over_one_input_is_one_task),
        cmocka_unit_test(test_collections__map_over_futures_passes_each_result),
        cmocka_unit_test(test_collections__bad_input_names_the_problem),
    };

    th_find_bins();
    snprintf(plugin, sizeof(plugin), "%s/tests/libtgcoll.so", th_bin_dir);
    return cmocka_run_group_tests(tests, setup, teardown);
}
