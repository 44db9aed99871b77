/* SPDX-License-Identifier: Apache-2.0
 *
 * semantics_test.c: the scheduling rules users rely on, observed on real
 * scheduler and worker processes: priority order as execution order on a
 * 1-thread worker, GPU tasks only on the GPU worker, process=1 serializes,
 * a worker SIGKILLed during a 10k-task graph without recomputing delivered
 * results, a flaky task that succeeds on its third attempt, and a task
 * that kills its worker every time failing alone. Behaviour is made
 * visible by the test plug-in (tests/test_plugin.c).
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
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char plugin[4300];
static char tmpdir[256];

static const char *tmp_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
    unlink(buf);
    return buf;
}

/* Read a file's lines into a NULL-terminated array (free each, then it). */
static char **read_lines(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    char **v = NULL, line[1200];
    size_t cap = 0;

    *n = 0;
    if (f == NULL)
        return calloc(1, sizeof(char *));
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (*n + 2 > cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof(char *));
            assert_non_null(v);
        }
        v[(*n)++] = strdup(line);
    }
    fclose(f);
    if (v == NULL)
        v = calloc(1, sizeof(char *));
    v[*n] = NULL;
    return v;
}

static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static th_proc start_plain_scheduler(char *addr, size_t len)
{
    static const char *const extra[] = {"--launcher", "none", "--retry-backoff",
                                        "10", NULL};
    return th_start_scheduler("tcp://127.0.0.1:0", extra, addr, len);
}

static th_proc start_test_worker(const char *addr, const char *name,
                                 const char *nthreads, const char *resources)
{
    const char *extra[5] = {"--preload", plugin, NULL, NULL, NULL};

    if (resources) {
        extra[2] = "--resources";
        extra[3] = resources;
    }
    return th_start_worker(addr, name, nthreads, extra);
}

static void gather_all(tg_client *c, tg_future **fs, size_t n)
{
    if (tg_client_gather(c, fs, n, 60000) != TG_OK)
        fail_msg("gather: %s", tg_error_last());
}

static void free_all(tg_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
}

/* ---- tests ---- */

static void test_semantics__priority_is_execution_order(void **state)
{
    enum { N = 30 };
    static const int prios[5] = {0, 5, -3, 10, 5};
    char addr[512], path[300], in[N][400], keys[N][32];
    tg_task_def defs[N];
    tg_future *fs[N];
    th_proc s, w;
    tg_client *c;
    char **lines;
    size_t n;

    (void)state;
    s = start_plain_scheduler(addr, sizeof(addr));
    c = th_connect(addr);
    tmp_path("order.txt", path, sizeof(path));
    /* Everything is queued before any worker exists, so the order in
     * which they run is the scheduler's choice alone. */
    for (int i = 0; i < N; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        int prio = prios[i % 5];
        snprintf(keys[i], sizeof(keys[i]), "prio-%d", i);
        snprintf(in[i], sizeof(in[i]), "%s %d:%d", path, prio, i);
        d.key = keys[i];
        d.func = "test.record";
        d.input = in[i];
        d.input_len = strlen(in[i]);
        d.priority = prio;
        defs[i] = d;
    }
    assert_int_equal(tg_client_submit(c, defs, N, fs), TG_OK);
    w = start_test_worker(addr, "solo", "1", NULL);
    gather_all(c, fs, N);
    lines = read_lines(path, &n);
    assert_int_equal(n, N);
    for (size_t i = 1; i < n; i++) {
        int p0, s0, p1, s1;
        assert_int_equal(sscanf(lines[i - 1], "%d:%d", &p0, &s0), 2);
        assert_int_equal(sscanf(lines[i], "%d:%d", &p1, &s1), 2);
        /* Higher first; FIFO among equals. */
        if (p1 > p0 || (p1 == p0 && s1 < s0))
            fail_msg("ran %s before %s", lines[i - 1], lines[i]);
    }
    free_lines(lines, n);
    free_all(fs, N);
    tg_client_free(c);
    th_stop(&w, SIGTERM);
    th_stop(&s, SIGTERM);
}

static void test_semantics__gpu_tasks_only_on_gpu_worker(void **state)
{
    enum { N = 12 };
    char addr[512], keys[2 * N][32];
    tg_task_def defs[2 * N];
    tg_future *fs[2 * N];
    tg_resource gpu = {"GPU", 1};
    th_proc s, wg, wc;
    tg_client *c;

    (void)state;
    s = start_plain_scheduler(addr, sizeof(addr));
    wg = start_test_worker(addr, "gpu", "2", "GPU=1");
    wc = start_test_worker(addr, "cpu", "2", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 2, 10000);
    for (int i = 0; i < 2 * N; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[i], sizeof(keys[i]), "pid-%d", i);
        d.key = keys[i];
        d.func = "test.pid";
        if (i < N) { /* the first half asks for the GPU */
            d.resources = &gpu;
            d.nresources = 1;
        }
        defs[i] = d;
    }
    assert_int_equal(tg_client_submit(c, defs, 2 * N, fs), TG_OK);
    gather_all(c, fs, 2 * N);
    for (int i = 0; i < N; i++)
        assert_int_equal((long)th_number(fs[i]), (long)wg.pid);
    free_all(fs, 2 * N);
    tg_client_free(c);
    th_stop(&wg, SIGTERM);
    th_stop(&wc, SIGTERM);
    th_stop(&s, SIGTERM);
}

static void test_semantics__process_one_serializes(void **state)
{
    enum { N = 8 };
    char addr[512], keys[N][32];
    tg_task_def defs[N];
    tg_future *fs[N];
    tg_resource one = {"process", 1};
    th_proc s, w;
    tg_client *c;

    (void)state;
    s = start_plain_scheduler(addr, sizeof(addr));
    /* Four threads, but one "process": these tasks must run one by one. */
    w = start_test_worker(addr, "serial", "4", "process=1");
    c = th_connect(addr);
    th_wait_workers(c, 1, 10000);
    for (int i = 0; i < N; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[i], sizeof(keys[i]), "excl-%d", i);
        d.key = keys[i];
        d.func = "test.exclusive";
        d.resources = &one;
        d.nresources = 1;
        defs[i] = d;
    }
    assert_int_equal(tg_client_submit(c, defs, N, fs), TG_OK);
    gather_all(c, fs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal((long)th_number(fs[i]), 0); /* no test.Overlap */
    free_all(fs, N);
    tg_client_free(c);
    th_stop(&w, SIGTERM);
    th_stop(&s, SIGTERM);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_semantics__worker_kill_does_not_recompute_delivered(void **state)
{
    enum { N = 10000 };
    char addr[512], path[300], input[400];
    tg_task_def *defs = calloc(N, sizeof(*defs));
    tg_future **fs = calloc(N, sizeof(*fs));
    char(*keys)[32] = calloc(N, sizeof(*keys));
    char **delivered = calloc(N, sizeof(char *));
    size_t ndelivered = 0, n;
    th_proc s, w1, w2;
    tg_client *c;
    char **lines;

    (void)state;
    s = start_plain_scheduler(addr, sizeof(addr));
    w1 = start_test_worker(addr, "victim", "2", NULL);
    w2 = start_test_worker(addr, "survivor", "2", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 2, 10000);
    tmp_path("runs.txt", path, sizeof(path));
    snprintf(input, sizeof(input), "%s 1", path); /* 1 ms each */
    for (int i = 0; i < N; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[i], sizeof(keys[i]), "count-%d", i);
        d.key = keys[i];
        d.func = "test.count";
        d.input = input;
        d.input_len = strlen(input);
        defs[i] = d;
    }
    assert_int_equal(tg_client_submit(c, defs, N, fs), TG_OK);
    /* Let a good part finish, note what has been delivered, then kill. */
    for (int64_t deadline = th_now_ms() + 30000;;) {
        tg_status_report *r = NULL;
        uint64_t mem;
        assert_int_equal(tg_client_status(c, &r), TG_OK);
        mem = tg_status_report_count(r, TG_TASK_MEMORY);
        tg_status_report_free(r);
        if (mem >= N / 4)
            break;
        assert_true(th_now_ms() < deadline);
        th_sleep_ms(5);
    }
    tg_client_gather(c, fs, N, 0); /* a poll: current states */
    for (int i = 0; i < N; i++)
        if (tg_future_state(fs[i]) == TG_TASK_MEMORY)
            delivered[ndelivered++] = keys[i];
    assert_true(ndelivered > 0 && ndelivered < N);
    th_stop(&w1, SIGKILL);

    gather_all(c, fs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(tg_future_state(fs[i]), TG_TASK_MEMORY);
    /* Every task ran; none delivered before the kill ran twice. */
    lines = read_lines(path, &n);
    assert_true(n >= N);
    qsort(lines, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < ndelivered; i++) {
        char **hit = bsearch(&delivered[i], lines, n, sizeof(char *), cmp_str);
        assert_non_null(hit);
        if ((hit > lines && strcmp(hit[-1], *hit) == 0) ||
            (hit + 1 < lines + n && strcmp(hit[1], *hit) == 0))
            fail_msg("%s was delivered before the kill but ran again",
                     delivered[i]);
    }
    free_lines(lines, n);
    free_all(fs, N);
    free(defs);
    free(fs);
    free(keys);
    free(delivered);
    tg_client_free(c);
    th_stop(&w2, SIGTERM);
    th_stop(&s, SIGTERM);
}

static void test_semantics__flaky_task_succeeds_on_third_attempt(void **state)
{
    char addr[512];
    tg_task_def d[2] = {TG_TASK_DEF_INIT, TG_TASK_DEF_INIT};
    tg_future *fs[2];
    const char *type = "", *msg = "", *tb = "";
    th_proc s, w;
    tg_client *c;

    (void)state;
    s = start_plain_scheduler(addr, sizeof(addr));
    w = start_test_worker(addr, "flaky", "1", NULL);
    c = th_connect(addr);
    d[0].key = "flaky-ok";
    d[0].func = "test.flaky";
    d[0].input = "3";
    d[0].input_len = 1;
    d[0].retries = 3;
    d[1] = d[0];
    d[1].key = "flaky-out-of-retries";
    d[1].retries = 1;
    assert_int_equal(tg_client_submit(c, d, 2, fs), TG_OK);
    gather_all(c, fs, 2);
    assert_int_equal((long)th_number(fs[0]), 3); /* ran as attempt 3 */
    assert_int_equal(tg_future_state(fs[1]), TG_TASK_ERRED);
    assert_int_equal(tg_future_error(fs[1], &type, &msg, &tb), TG_OK);
    assert_string_equal(type, "test.Flaky");
    assert_non_null(strstr(msg, "attempt 2"));
    free_all(fs, 2);
    tg_client_free(c);
    th_stop(&w, SIGTERM);
    th_stop(&s, SIGTERM);
}

static void test_semantics__worker_killing_task_fails_alone(void **state)
{
    enum { N = 20 };
    static const char *extra[] = {"--workers",
                                  "2",
                                  "--nthreads",
                                  "1",
                                  "--allowed-failures",
                                  "3",
                                  "--worker-preload",
                                  plugin,
                                  NULL};
    char addr[512], keys[N][48], in[N][16];
    tg_task_def defs[N + 1];
    tg_future *fs[N + 1];
    const char *type = "", *msg = "", *tb = "";
    th_proc s;
    tg_client *c;

    (void)state;
    s = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    c = th_connect(addr);
    th_wait_workers(c, 2, 15000);
    for (int i = 0; i < N; i++)
        defs[i] = th_inc_task("fine", i, keys[i], in[i]);
    defs[N] = (tg_task_def)TG_TASK_DEF_INIT;
    defs[N].key = "poison";
    defs[N].func = "test.crash";
    assert_int_equal(tg_client_submit(c, defs, N + 1, fs), TG_OK);
    gather_all(c, fs, N + 1);
    for (int i = 0; i < N; i++)
        assert_int_equal((long)th_number(fs[i]), i + 1);
    assert_int_equal(tg_future_state(fs[N]), TG_TASK_ERRED);
    assert_int_equal(tg_future_error(fs[N], &type, &msg, &tb), TG_OK);
    assert_string_equal(type, "tg.KilledWorker");
    assert_non_null(strstr(msg, "3 workers"));
    free_all(fs, N + 1);
    tg_client_free(c);
    th_stop(&s, SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_semantics__priority_is_execution_order),
        cmocka_unit_test(test_semantics__gpu_tasks_only_on_gpu_worker),
        cmocka_unit_test(test_semantics__process_one_serializes),
        cmocka_unit_test(
            test_semantics__worker_kill_does_not_recompute_delivered),
        cmocka_unit_test(test_semantics__flaky_task_succeeds_on_third_attempt),
        cmocka_unit_test(test_semantics__worker_killing_task_fails_alone),
    };
    const char *tmp = getenv("TEST_TMPDIR");
    int rc;

    th_find_bins();
    snprintf(plugin, sizeof(plugin), "%s/tests/libtgtest.so", th_bin_dir);
    snprintf(tmpdir, sizeof(tmpdir), "%s/tg-semantics-XXXXXX",
             tmp ? tmp : "/tmp");
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc;
}
