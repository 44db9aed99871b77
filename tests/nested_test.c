/* SPDX-License-Identifier: Apache-2.0
 *
 * nested_test.c: nested work from C through the worker-side client
 * (tg_task_client) against a real taskgrid-scheduler and two C workers of
 * one thread each on loopback. The functions of libtgnest.so submit
 * children and wait on them from inside a task:
 * - a binary tree of nest.tree tasks 6 levels deep (127 tasks, 63 of
 *   them waiting on children at once) finishes, bounded: on 2 slots it
 *   can only finish if waiting tasks give their slots back and the
 *   scheduler stops counting them (WorkerMessage.secessions);
 * - a parent running 100 children gets their sum;
 * - cancelling the root of a tree whose leaves are running cancels every
 *   task of the tree (children carry TaskSpec.parent), and the workers
 *   are idle after;
 * - tg_task_client outside a task, or from a thread the task started,
 *   fails with TG_ESTATE and the message that says so;
 * - over mutual TLS (a secure temporary cluster) the worker-side client
 *   connects with the worker's certificate and nesting works the same.
 * Every wait is bounded.
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

static char plugin[4300];
static th_cluster procs;
static tg_client *client;

static int setup(void **state)
{
    (void)state;
    th_cluster_up(&procs, 2, "1", plugin, NULL);
    client = procs.client;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    th_cluster_down(&procs);
    return 0;
}

/* Submit one task of `func` over raw `in`, keyed `key`. */
static tg_future *submit_one(tg_client *c, const char *key, const char *func,
                             const char *in)
{
    tg_task_def d = TG_TASK_DEF_INIT;
    tg_future *f = NULL;

    d.key = key;
    d.func = func;
    d.input = in;
    d.input_len = strlen(in);
    if (tg_client_submit(c, &d, 1, &f) != TG_OK)
        fail_msg("submit %s: %s", key, tg_error_last());
    return f;
}

/* The result of a finished future as text (fails the test otherwise). */
static const char *result_text(tg_future *f)
{
    const void *data = NULL;
    size_t len;
    const char *type = "", *msg = "";

    if (tg_future_result(f, &data, &len, NULL) != TG_OK) {
        tg_future_error(f, &type, &msg, NULL);
        fail_msg("%s: %s (%s: %s)", tg_future_key(f),
                 tg_task_state_name(tg_future_state(f)), type, msg);
    }
    return data;
}

/* Tasks assigned to the workers and not finished. */
static uint32_t processing(void)
{
    tg_status_report *r = NULL;
    uint32_t n = 0;

    assert_int_equal(tg_client_status(client, &r), TG_OK);
    for (size_t i = 0; i < tg_status_report_nworkers(r); i++)
        n += tg_status_report_worker_processing(r, i);
    tg_status_report_free(r);
    return n;
}

static void wait_idle(int64_t timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    uint32_t n;

    while ((n = processing()) != 0) {
        if (th_now_ms() > deadline)
            fail_msg("%" PRIu32 " tasks still processing after %lld ms", n,
                     (long long)timeout_ms);
        th_sleep_ms(20);
    }
}

static void test_nested__six_levels_on_two_single_thread_workers(void **state)
{
    int64_t t0 = th_now_ms();
    tg_future *f;
    int rc;

    (void)state;
    f = submit_one(client, "tree6", "nest.tree", "6");
    rc = tg_future_wait(f, 60000);
    if (rc != TG_OK)
        fail_msg("a 6-level tree on 2 x 1 slots did not finish in 60 s "
                 "(seceded tasks counted against the slots?): %s",
                 tg_error_last());
    assert_string_equal(result_text(f), "64");
    print_message("6 levels, 127 tasks: %lld ms\n",
                  (long long)(th_now_ms() - t0));
    tg_future_free(f);
    wait_idle(10000);
}

static void test_nested__parent_gathers_a_hundred_children(void **state)
{
    tg_future *f[2];

    (void)state;
    /* Two parents at once: both wait, seceded, on the two slots. */
    f[0] = submit_one(client, "fan-a", "nest.fan", "100");
    f[1] = submit_one(client, "fan-b", "nest.fan", "100");
    assert_int_equal(tg_client_gather(client, f, 2, 30000), TG_OK);
    assert_string_equal(result_text(f[0]), "5050");
    assert_string_equal(result_text(f[1]), "5050");
    tg_future_free(f[0]);
    tg_future_free(f[1]);
}

/* Poll the state of `key` until it is `want` (bounded). */
static void wait_key_state(const char *key, tg_task_state want,
                           int64_t timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    tg_task_state st = TG_TASK_PENDING;

    for (;;) {
        assert_int_equal(tg_client_key_status(client, key, &st, NULL, 0),
                         TG_OK);
        if (st == want)
            return;
        if (th_now_ms() > deadline)
            fail_msg("%s is %s after %lld ms, want %s", key,
                     tg_task_state_name(st), (long long)timeout_ms,
                     tg_task_state_name(want));
        th_sleep_ms(10);
    }
}

static void test_nested__cancelling_a_parent_cancels_its_children(void **s)
{
    /* hold, its 2 children and 4 leaves: 7 tasks. The leaves run until
     * cancelled; two of them hold the two slots. */
    static const char *const leaves[] = {"hold.0.0", "hold.0.1", "hold.1.0",
                                         "hold.1.1"};
    const char *root = "hold";
    tg_future *f;
    uint32_t count = 0;
    int64_t deadline = th_now_ms() + 15000;
    int running;

    (void)s;
    f = submit_one(client, root, "nest.hold", "2");
    wait_key_state("hold.0", TG_TASK_PROCESSING, 15000);
    wait_key_state("hold.1", TG_TASK_PROCESSING, 15000);
    do {
        running = 0;
        for (size_t i = 0; i < 4; i++) {
            tg_task_state st;

            assert_int_equal(
                tg_client_key_status(client, leaves[i], &st, NULL, 0), TG_OK);
            running += st == TG_TASK_PROCESSING;
        }
        if (th_now_ms() > deadline)
            fail_msg("only %d leaves of the tree started", running);
        th_sleep_ms(10);
    } while (running < 2);

    assert_int_equal(tg_client_cancel(client, &root, 1, &count), TG_OK);
    assert_int_equal(count, 7); /* the root, its children, theirs */
    assert_int_equal(tg_future_wait(f, 10000), TG_OK);
    assert_int_equal(tg_future_state(f), TG_TASK_CANCELLED);
    for (size_t i = 0; i < 4; i++) {
        tg_task_state st;

        assert_int_equal(tg_client_key_status(client, leaves[i], &st, NULL, 0),
                         TG_OK);
        if (st != TG_TASK_CANCELLED && st != TG_TASK_RELEASED)
            fail_msg("leaf %s is %s after its root was cancelled", leaves[i],
                     tg_task_state_name(st));
    }
    /* The running leaves saw tg_task_cancelled and stopped. */
    wait_idle(10000);
    tg_future_free(f);
}

static void test_nested__task_client_outside_a_task_is_refused(void **state)
{
    tg_client *c = (tg_client *)&c;
    tg_future *f;

    (void)state;
    assert_int_equal(tg_task_client(NULL, &c), TG_ESTATE);
    assert_null(c);
    assert_string_equal(tg_error_last(),
                        "tg_task_client: not inside a task running on a "
                        "worker");
    assert_int_equal(tg_task_client(NULL, NULL), TG_EINVAL);

    /* A thread the task started is not the task. */
    f = submit_one(client, "off-thread", "nest.thread", "");
    assert_int_equal(tg_future_wait(f, 10000), TG_OK);
    assert_string_equal(result_text(f),
                        "TG_ESTATE: tg_task_client: not inside a task "
                        "running on a worker");
    tg_future_free(f);
}

static void test_nested__over_mutual_tls(void **state)
{
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    tg_client_opts co = TG_CLIENT_OPTS_INIT;
    tg_cluster *cl = NULL;
    tg_client *c = NULL;
    tg_future *f;

    (void)state;
    o.n_workers = 2;
    o.threads_per_worker = 1;
    o.preload = plugin;
    o.secure = true;
    o.start_timeout_ms = 20000;
    if (tg_cluster_start(&cl, &o) != TG_OK)
        fail_msg("secure cluster: %s", tg_error_last());
    co.security = tg_cluster_security(cl);
    if (tg_client_connect(&c, tg_cluster_address(cl), &co) != TG_OK)
        fail_msg("connect: %s", tg_error_last());
    f = submit_one(c, "tls-tree", "nest.tree", "3");
    assert_int_equal(tg_future_wait(f, 30000), TG_OK);
    assert_string_equal(result_text(f), "8");
    tg_future_free(f);
    tg_client_free(c);
    tg_cluster_free(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested__six_levels_on_two_single_thread_workers),
        cmocka_unit_test(test_nested__parent_gathers_a_hundred_children),
        cmocka_unit_test(test_nested__cancelling_a_parent_cancels_its_children),
        cmocka_unit_test(test_nested__task_client_outside_a_task_is_refused),
        cmocka_unit_test(test_nested__over_mutual_tls),
    };

    th_find_bins();
    snprintf(plugin, sizeof(plugin), "%s/tests/libtgnest.so", th_bin_dir);
    return cmocka_run_group_tests(tests, setup, teardown);
}
