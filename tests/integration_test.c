/* SPDX-License-Identifier: Apache-2.0
 *
 * integration_test.c: multi-process tests. Real taskgrid-scheduler and
 * taskgrid-worker processes on loopback, driven through libtaskgrid: the
 * diamond flow on a temporary local cluster, a worker SIGKILLed mid-graph,
 * Scale up and down without loss, a worker reconnecting to a restarted
 * scheduler, clean exits on SIGTERM, and the no-worker timeout. Every wait
 * is on a condition with a bound; binaries come from the Bazel runfiles.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* A scheduler with one extra flag pair (or none). */
static th_proc sched2(const char *listen, const char *a, const char *b,
                      char *addr, size_t len)
{
    const char *extra[3] = {a, b, NULL};
    return th_start_scheduler(listen, a ? extra : NULL, addr, len);
}

static long json_long(tg_future *f)
{
    return (long)th_number(f);
}

/* Submit `n` tg.inc tasks over 0..n-1 plus a tg.sum over them (total
 * n(n+1)/2). With `sleep_s` > 0, each step is instead tg.sleep(sleep_s)
 * followed by tg.sum(i, <the sleep's result>) = i + sleep_s, making the
 * graph long enough to disturb mid-way (total n(n-1)/2 + n * sleep_s).
 * Returns the futures (n + 1, or 2n + 1 with sleeps). */
static tg_future **submit_incs(tg_client *c, size_t n, const char *prefix,
                               double sleep_s)
{
    size_t total = n * (sleep_s > 0 ? 2 : 1) + 1;
    tg_task_def *defs = calloc(total, sizeof(*defs));
    char(*keys)[64] = calloc(total, sizeof(*keys));
    char(*inputs)[64] = calloc(total, sizeof(*inputs));
    const char **incs = calloc(n, sizeof(char *));
    const char **deps1 = calloc(n, sizeof(char *));
    tg_future **fs = calloc(total, sizeof(*fs));
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        if (sleep_s > 0) {
            snprintf(keys[k], sizeof(keys[k]), "%s-sleep-%zu", prefix, i);
            snprintf(inputs[k], sizeof(inputs[k]), "[%g]", sleep_s);
            d.key = keys[k];
            d.func = "tg.sleep";
            d.input = inputs[k];
            d.input_len = strlen(inputs[k]);
            d.codec = "json";
            defs[k++] = d;
            d = (tg_task_def)TG_TASK_DEF_INIT;
        }
        snprintf(keys[k], sizeof(keys[k]), "%s-inc-%zu", prefix, i);
        snprintf(inputs[k], sizeof(inputs[k]), "%zu", i);
        d.key = keys[k];
        d.func = "tg.inc";
        d.input = inputs[k];
        d.input_len = strlen(inputs[k]);
        d.codec = "json";
        if (sleep_s > 0) {
            /* Depend on the sleep so the inc runs after it. */
            deps1[i] = keys[k - 1];
            d.deps = &deps1[i];
            d.ndeps = 1;
            d.func = "tg.sum";
        }
        incs[i] = keys[k];
        defs[k++] = d;
    }
    {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[k], sizeof(keys[k]), "%s-total", prefix);
        d.key = keys[k];
        d.func = "tg.sum";
        d.deps = incs;
        d.ndeps = n;
        d.codec = "json";
        defs[k++] = d;
    }
    assert_int_equal(k, total);
    if (tg_client_submit(c, defs, total, fs) != TG_OK)
        fail_msg("submit: %s", tg_error_last());
    free(defs);
    free(keys);
    free(inputs);
    free(incs);
    free(deps1);
    return fs;
}

static void free_futures(tg_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
    free(fs);
}

static void assert_near(double got, double want, double eps)
{
    if (!(got > want - eps && got < want + eps))
        fail_msg("got %.9g, want %.9g", got, want);
}

/* ---- tests ---- */

static void test_integration__diamond_on_local_cluster(void **state)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    tg_client *c;
    enum { M = 100 };
    tg_task_def defs[3 * M + 1];
    char keys[3 * M + 1][32], in[M][16];
    const char *adds[M], *pair[M][2];
    tg_future *fs[3 * M + 1];
    int rc;

    (void)state;
    o.n_workers = 2;
    o.threads_per_worker = 1;
    o.bin_dir = NULL;
    rc = tg_cluster_start(&cl, &o);
    if (rc != TG_OK)
        fail_msg("cluster: %s", tg_error_last());
    assert_int_equal(tg_cluster_nworkers(cl), 2);
    c = th_connect(tg_cluster_address(cl));
    for (int i = 0; i < M; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(in[i], sizeof(in[i]), "%d", i);
        snprintf(keys[i], 32, "inc-%d", i);
        snprintf(keys[M + i], 32, "dec-%d", i);
        snprintf(keys[2 * M + i], 32, "add-%d", i);
        d.codec = "json";
        d.input = in[i];
        d.input_len = strlen(in[i]);
        d.key = keys[i];
        d.func = "tg.inc";
        defs[i] = d;
        d.key = keys[M + i];
        d.func = "tg.dec";
        defs[M + i] = d;
        pair[i][0] = keys[i];
        pair[i][1] = keys[M + i];
        d = (tg_task_def)TG_TASK_DEF_INIT;
        d.key = keys[2 * M + i];
        d.func = "tg.add";
        d.deps = pair[i];
        d.ndeps = 2;
        d.codec = "json";
        defs[2 * M + i] = d;
        adds[i] = keys[2 * M + i];
    }
    {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[3 * M], 32, "sum");
        d.key = keys[3 * M];
        d.func = "tg.sum";
        d.deps = adds;
        d.ndeps = M;
        d.codec = "json";
        defs[3 * M] = d;
    }
    assert_int_equal(tg_client_submit(c, defs, 3 * M + 1, fs), TG_OK);
    assert_int_equal(tg_future_wait(fs[3 * M], 30000), TG_OK);
    assert_int_equal(json_long(fs[3 * M]), 9900);
    assert_int_equal(tg_client_gather(c, fs, 3 * M + 1, 30000), TG_OK);
    assert_int_equal(json_long(fs[2 * M + 7]), 14);
    for (int i = 0; i < 3 * M + 1; i++)
        tg_future_free(fs[i]);
    tg_client_free(c);
    tg_cluster_free(cl);
}

static void
test_integration__worker_sigkill_mid_graph_loses_nothing(void **state)
{
    char addr[256];
    th_proc s, w1, w2;
    tg_client *c;
    tg_future **fs;
    enum { N = 200 };
    tg_status_report *r = NULL;
    int64_t deadline;

    (void)state;
    s = sched2("tcp://127.0.0.1:0", "--launcher", "none", addr, sizeof(addr));
    w1 = th_start_worker(addr, "victim", "2", NULL);
    w2 = th_start_worker(addr, "survivor", "2", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 2, 10000);
    /* 200 x 10 ms sleeps on 4 slots: ~0.5 s of work. */
    fs = submit_incs(c, N, "kill", 0.01);
    /* Wait until some, not all, of the work is done, then SIGKILL. */
    deadline = th_now_ms() + 10000;
    for (;;) {
        uint64_t mem = 0;
        assert_int_equal(tg_client_status(c, &r), TG_OK);
        mem = tg_status_report_count(r, TG_TASK_MEMORY);
        tg_status_report_free(r);
        if (mem >= 20)
            break;
        assert_true(th_now_ms() < deadline);
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    th_stop(&w1, SIGKILL);
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 30000), TG_OK);
    assert_near(th_number(fs[2 * N]), N * (N - 1) / 2 + N * 0.01, 1e-6);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(tg_future_state(fs[2 * i + 1]), TG_TASK_MEMORY);
    free_futures(fs, 2 * N + 1);
    tg_client_free(c);
    assert_true(WIFEXITED(th_stop(&w2, SIGTERM)));
    th_stop(&s, SIGTERM);
}

static void test_integration__scale_up_and_down_keeps_results(void **state)
{
    char addr[256];
    th_proc s;
    tg_client *c;
    tg_future **fs;
    uint32_t now = 0;
    enum { N = 100 };

    (void)state;
    s = sched2("tcp://127.0.0.1:0", "--nthreads", "1", addr, sizeof(addr));
    c = th_connect(addr);
    assert_int_equal(tg_client_scale(c, 3, &now), TG_OK);
    th_wait_workers(c, 3, 15000);
    fs = submit_incs(c, N, "scale", 0.005);
    /* Scale down while work is running: drained, nothing lost. */
    assert_int_equal(tg_client_scale(c, 1, &now), TG_OK);
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 30000), TG_OK);
    assert_near(th_number(fs[2 * N]), N * (N - 1) / 2 + N * 0.005, 1e-6);
    th_wait_workers(c, 1, 15000);
    /* Results of drained workers are still there. */
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 5000), TG_OK);
    free_futures(fs, 2 * N + 1);
    tg_client_free(c);
    th_stop(&s, SIGTERM);
}

static void test_integration__adaptive_scaling_follows_the_work(void **state)
{
    char addr[512];
    th_proc s;
    tg_client *c;
    tg_future **fs;
    enum { N = 40 };

    (void)state;
    s = sched2("tcp://127.0.0.1:0", "--nthreads", "1", addr, sizeof(addr));
    c = th_connect(addr);
    assert_int_equal(tg_client_adapt(c, 0, 3), TG_OK);
    /* No work: no workers. 40 x 50 ms of work: up to the maximum. */
    th_wait_workers(c, 0, 5000);
    fs = submit_incs(c, N, "adapt", 0.05);
    th_wait_workers(c, 3, 15000);
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 30000), TG_OK);
    assert_near(th_number(fs[2 * N]), N * (N - 1) / 2 + N * 0.05, 1e-6);
    /* Idle again: back down to the minimum, results kept. */
    th_wait_workers(c, 0, 15000);
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 5000), TG_OK);
    free_futures(fs, 2 * N + 1);
    tg_client_free(c);
    th_stop(&s, SIGTERM);
}

static void
test_integration__worker_reconnects_after_scheduler_restart(void **state)
{
    char addr[256], listen[300];
    th_proc s, w;
    tg_client *c;
    tg_future **fs;

    (void)state;
    s = sched2("tcp://127.0.0.1:0", "--launcher", "none", addr, sizeof(addr));
    w = th_start_worker(addr, "phoenix", "1", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 1, 10000);
    tg_client_free(c);
    th_stop(&s, SIGTERM);
    /* Same port again. */
    assert_true(strlen(addr) < sizeof(listen));
    memcpy(listen, addr, strlen(addr) + 1);
    s = sched2(listen, "--launcher", "none", addr, sizeof(addr));
    c = th_connect(addr);
    th_wait_workers(c, 1, 15000);
    fs = submit_incs(c, 10, "phoenix", 0);
    assert_int_equal(tg_client_gather(c, fs, 11, 10000), TG_OK);
    assert_int_equal(json_long(fs[10]), 55);
    free_futures(fs, 11);
    tg_client_free(c);
    {
        int st = th_stop(&w, SIGTERM);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    {
        int st = th_stop(&s, SIGTERM);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

static void test_integration__no_worker_timeout_fails_clearly(void **state)
{
    char addr[256];
    th_proc s;
    tg_client *c;
    tg_future *f = NULL;
    tg_task_def d = TG_TASK_DEF_INIT;
    const char *type = "", *msg = "", *tb = "";

    (void)state;
    s = sched2("tcp://127.0.0.1:0", "--no-worker-timeout", "300", addr,
               sizeof(addr));
    c = th_connect(addr);
    d.func = "nobody.provides";
    assert_int_equal(tg_client_submit(c, &d, 1, &f), TG_OK);
    assert_int_equal(tg_future_wait(f, 10000), TG_OK);
    assert_int_equal(tg_future_state(f), TG_TASK_ERRED);
    assert_int_equal(tg_future_error(f, &type, &msg, &tb), TG_OK);
    assert_string_equal(type, "tg.NoWorker");
    assert_non_null(strstr(msg, "nobody.provides"));
    tg_future_free(f);
    tg_client_free(c);
    th_stop(&s, SIGTERM);
}

static void test_integration__connect_refused_is_clear(void **state)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    int rc;

    (void)state;
    o.connect_timeout_ms = 2000;
    /* Port 1 on loopback: nothing listens there. */
    rc = tg_client_connect(&c, "tcp://127.0.0.1:1", &o);
    assert_int_equal(rc, TG_EUNAVAILABLE);
    assert_non_null(strstr(tg_error_last(), "127.0.0.1:1"));
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integration__diamond_on_local_cluster),
        cmocka_unit_test(
            test_integration__worker_sigkill_mid_graph_loses_nothing),
        cmocka_unit_test(test_integration__scale_up_and_down_keeps_results),
        cmocka_unit_test(test_integration__adaptive_scaling_follows_the_work),
        cmocka_unit_test(
            test_integration__worker_reconnects_after_scheduler_restart),
        cmocka_unit_test(test_integration__no_worker_timeout_fails_clearly),
        cmocka_unit_test(test_integration__connect_refused_is_clear),
    };

    th_find_bins();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
