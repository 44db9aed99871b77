/* SPDX-License-Identifier: Apache-2.0
 *
 * scatter_test.c: tg_client_scatter against real taskgrid-scheduler and
 * taskgrid-worker processes on loopback. A 20 MB JSON value (three
 * numbers padded with spaces, so every byte must arrive for it to parse)
 * is scattered once onto one worker and summed by 10 tasks on two
 * workers; equal data gives one key; data over the message limit is
 * refused with TG_ETOOBIG before anything is sent. Every wait is bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

#define SCATTER_BYTES (20u * 1000u * 1000u)

static void test_scatter__key_is_the_content(void **state)
{
    char a[TG_SCATTER_KEY_MAX], b[TG_SCATTER_KEY_MAX];

    (void)state;
    /* The same key as Python's client.scatter(b"hello") and Go's. */
    assert_int_equal(tg_scatter_key(a, sizeof(a), "hello", 5, NULL), TG_OK);
    assert_string_equal(a, "bytes-b283d65915fb8ea11ff200265bdee351");
    assert_int_equal(tg_scatter_key(b, sizeof(b), "hello", 5, "raw"), TG_OK);
    assert_string_equal(a, b);
    assert_int_equal(tg_scatter_key(b, sizeof(b), "hello", 5, "json"), TG_OK);
    assert_true(strncmp(b, "json-", 5) == 0);
    assert_string_not_equal(a + 6, b + 5);
    assert_int_equal(tg_scatter_key(b, 10, "hello", 5, NULL), TG_EINVAL);
}

static void test_scatter__one_object_feeds_ten_tasks_on_two_workers(void **s)
{
    const char *extra[] = {"--launcher", "none", NULL};
    const char *w0name[] = {"w0"}, *pins[2][1] = {{"w0"}, {"w1"}};
    char addr[256], keys[10][48], in[10][16];
    tg_task_def defs[10];
    tg_future *data, *again, *sums[10];
    const void *got;
    const char *codec;
    size_t len;
    char *json = th_padded_json(SCATTER_BYTES);
    th_proc sched, w0, w1;
    tg_client *c;

    (void)s;
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    w0 = th_start_worker(addr, "w0", "2", NULL);
    w1 = th_start_worker(addr, "w1", "2", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 2, 10000);

    if (tg_client_scatter(c, json, SCATTER_BYTES, "json", w0name, 1, &data) !=
        TG_OK)
        fail_msg("scatter: %s", tg_error_last());
    assert_int_equal(
        tg_client_scatter(c, json, SCATTER_BYTES, "json", NULL, 0, &again),
        TG_OK);
    assert_string_equal(tg_future_key(again), tg_future_key(data));
    for (int i = 0; i < 10; i++) {
        const char *dep = tg_future_key(data);

        snprintf(keys[i], sizeof(keys[i]), "scatter-sum-%d", i);
        snprintf(in[i], sizeof(in[i]), "%d", i);
        defs[i] = (tg_task_def)TG_TASK_DEF_INIT;
        defs[i].key = keys[i];
        defs[i].func = "tg.sum";
        defs[i].input = in[i];
        defs[i].input_len = strlen(in[i]);
        defs[i].codec = "json";
        defs[i].deps = &dep;
        defs[i].ndeps = 1;
        defs[i].workers = pins[i % 2];
        defs[i].nworkers = 1;
        assert_int_equal(tg_client_submit(c, &defs[i], 1, &sums[i]), TG_OK);
    }
    assert_int_equal(tg_client_gather(c, sums, 10, 60000), TG_OK);
    for (int i = 0; i < 10; i++) {
        assert_int_equal((long)th_number(sums[i]), 6 + i);
        tg_future_free(sums[i]);
    }
    assert_int_equal(tg_future_wait(data, 60000), TG_OK);
    assert_int_equal(tg_future_result(data, &got, &len, &codec), TG_OK);
    assert_int_equal(len, SCATTER_BYTES);
    assert_string_equal(codec, "json");
    assert_memory_equal(got, json, SCATTER_BYTES);
    tg_future_free(again);
    tg_future_free(data);
    tg_client_free(c);
    free(json);
    assert_true(WIFEXITED(th_stop(&w0, SIGTERM)));
    assert_true(WIFEXITED(th_stop(&w1, SIGTERM)));
    th_stop(&sched, SIGTERM);
}

static void test_scatter__over_the_limit_is_refused(void **s)
{
    const char *extra[] = {"--launcher", "none", NULL};
    size_t n = 65u << 20;
    char *big = calloc(1, n), addr[256];
    tg_future *f = NULL;
    th_proc sched;
    tg_client *c;

    (void)s;
    assert_non_null(big);
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    c = th_connect(addr);
    assert_int_equal(tg_client_scatter(c, big, n, NULL, NULL, 0, &f),
                     TG_ETOOBIG);
    assert_null(f);
    assert_non_null(strstr(tg_error_last(), "68157440 bytes"));
    assert_non_null(strstr(tg_error_last(), "67043328-byte limit"));
    assert_int_equal(tg_client_scatter(NULL, big, 1, NULL, NULL, 0, &f),
                     TG_EINVAL);
    tg_client_free(c);
    free(big);
    th_stop(&sched, SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scatter__key_is_the_content),
        cmocka_unit_test(
            test_scatter__one_object_feeds_ten_tasks_on_two_workers),
        cmocka_unit_test(test_scatter__over_the_limit_is_refused),
    };

    th_find_bins();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
