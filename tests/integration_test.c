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

#include "taskgrid/taskgrid.h"

static char bin_dir[4096];
static char sched_bin[4200], worker_bin[4200];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void find_bins(void)
{
    const char *src = getenv("TEST_SRCDIR");
    const char *ws = getenv("TEST_WORKSPACE");

    if (getenv("TASKGRID_BIN_DIR"))
        snprintf(bin_dir, sizeof(bin_dir), "%s", getenv("TASKGRID_BIN_DIR"));
    else
        snprintf(bin_dir, sizeof(bin_dir), "%s/%s", src ? src : ".",
                 ws ? ws : "taskgrid");
    snprintf(sched_bin, sizeof(sched_bin), "%s/scheduler/taskgrid-scheduler",
             bin_dir);
    snprintf(worker_bin, sizeof(worker_bin), "%s/worker/taskgrid-worker",
             bin_dir);
}

/* ---- processes ---- */

typedef struct proc {
    pid_t pid;
    int out_fd; /* stdout of the child, or -1 */
} proc;

static proc spawn(char *const argv[], bool capture)
{
    int fds[2] = {-1, -1};
    proc p = {-1, -1};
    pid_t parent = getpid();

    if (capture)
        assert_int_equal(pipe(fds), 0);
    p.pid = fork();
    assert_true(p.pid >= 0);
    if (p.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (capture) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (capture) {
        close(fds[1]);
        p.out_fd = fds[0];
    }
    return p;
}

/* Read the scheduler's "listening on ADDRESS" line (bounded). */
static void read_address(proc *p, char *addr, size_t len)
{
    static const char prefix[] = "taskgrid-scheduler listening on ";
    char line[512];
    size_t n = 0;
    int64_t deadline = now_ms() + 10000;

    while (n + 1 < sizeof(line)) {
        struct pollfd pfd = {p->out_fd, POLLIN, 0};
        int left = (int)(deadline - now_ms());
        assert_true(left > 0);
        if (poll(&pfd, 1, left) <= 0)
            continue;
        ssize_t r = read(p->out_fd, line + n, 1);
        assert_true(r == 1);
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    assert_true(strncmp(line, prefix, sizeof(prefix) - 1) == 0);
    {
        const char *a = line + sizeof(prefix) - 1;
        size_t k = strlen(a);
        assert_true(k < len);
        memcpy(addr, a, k + 1);
    }
}

static proc start_scheduler(const char *listen, const char *extra1,
                            const char *extra2, char *addr, size_t len)
{
    char *argv[12];
    int i = 0;
    proc p;

    argv[i++] = sched_bin;
    argv[i++] = "--listen";
    argv[i++] = (char *)listen;
    argv[i++] = "--worker-bin";
    argv[i++] = worker_bin;
    argv[i++] = "--log-level";
    argv[i++] = "warn";
    if (extra1) {
        argv[i++] = (char *)extra1;
        argv[i++] = (char *)extra2;
    }
    argv[i] = NULL;
    p = spawn(argv, true);
    read_address(&p, addr, len);
    return p;
}

static proc start_worker(const char *addr, const char *name,
                         const char *nthreads)
{
    char *argv[] = {worker_bin,       (char *)addr,     "--name",
                    (char *)name,     "--nthreads",     (char *)nthreads,
                    "--log-level",    "warn",           NULL};
    return spawn(argv, false);
}

/* Terminate and reap; returns the wait status. */
static int stop(proc *p, int sig)
{
    int st = 0;
    int64_t deadline = now_ms() + 15000;

    if (p->pid <= 0)
        return 0;
    kill(p->pid, sig);
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    p->pid = -1;
    p->out_fd = -1;
    return st;
}

/* Poll Status until `n` workers are connected (bounded). */
static void wait_workers(tg_client *c, size_t n, int64_t timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;

    for (;;) {
        tg_status_report *r = NULL;
        size_t have = 0;
        if (tg_client_status(c, &r) == TG_OK) {
            have = tg_status_report_nworkers(r);
            tg_status_report_free(r);
        }
        if (have == n)
            return;
        if (now_ms() > deadline)
            fail_msg("waited %lld ms for %zu workers, have %zu",
                     (long long)timeout_ms, n, have);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static tg_client *connect_to(const char *addr)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    int rc = tg_client_connect(&c, addr, &o);

    if (rc != TG_OK)
        fail_msg("connect %s: %s", addr, tg_error_last());
    return c;
}

static double json_double(tg_future *f);

static long json_long(tg_future *f)
{
    return (long)json_double(f);
}

static double json_double(tg_future *f)
{
    const void *d;
    size_t n;
    const char *codec;
    char buf[64];
    int rc = tg_future_result(f, &d, &n, &codec);

    if (rc != TG_OK) {
        const char *type = "", *msg = "", *tb = "";
        tg_future_error(f, &type, &msg, &tb);
        fail_msg("task %s: %s: %s", tg_future_key(f), type, msg);
    }
    assert_true(n < sizeof(buf));
    memcpy(buf, d, n);
    buf[n] = '\0';
    return strtod(buf, NULL);
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
    char (*keys)[64] = calloc(total, sizeof(*keys));
    char (*inputs)[64] = calloc(total, sizeof(*inputs));
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
    c = connect_to(tg_cluster_address(cl));
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

static void test_integration__worker_sigkill_mid_graph_loses_nothing(
    void **state)
{
    char addr[256];
    proc s, w1, w2;
    tg_client *c;
    tg_future **fs;
    enum { N = 200 };
    tg_status_report *r = NULL;
    int64_t deadline;

    (void)state;
    s = start_scheduler("tcp://127.0.0.1:0", "--launcher", "none", addr,
                        sizeof(addr));
    w1 = start_worker(addr, "victim", "2");
    w2 = start_worker(addr, "survivor", "2");
    c = connect_to(addr);
    wait_workers(c, 2, 10000);
    /* 200 x 10 ms sleeps on 4 slots: ~0.5 s of work. */
    fs = submit_incs(c, N, "kill", 0.01);
    /* Wait until some, not all, of the work is done, then SIGKILL. */
    deadline = now_ms() + 10000;
    for (;;) {
        uint64_t mem = 0;
        assert_int_equal(tg_client_status(c, &r), TG_OK);
        mem = tg_status_report_count(r, TG_TASK_MEMORY);
        tg_status_report_free(r);
        if (mem >= 20)
            break;
        assert_true(now_ms() < deadline);
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    stop(&w1, SIGKILL);
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 30000), TG_OK);
    assert_near(json_double(fs[2 * N]), N * (N - 1) / 2 + N * 0.01,
                       1e-6);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(tg_future_state(fs[2 * i + 1]), TG_TASK_MEMORY);
    free_futures(fs, 2 * N + 1);
    tg_client_free(c);
    assert_true(WIFEXITED(stop(&w2, SIGTERM)));
    stop(&s, SIGTERM);
}

static void test_integration__scale_up_and_down_keeps_results(void **state)
{
    char addr[256];
    proc s;
    tg_client *c;
    tg_future **fs;
    uint32_t now = 0;
    enum { N = 100 };

    (void)state;
    s = start_scheduler("tcp://127.0.0.1:0", "--nthreads", "1", addr,
                        sizeof(addr));
    c = connect_to(addr);
    assert_int_equal(tg_client_scale(c, 3, &now), TG_OK);
    wait_workers(c, 3, 15000);
    fs = submit_incs(c, N, "scale", 0.005);
    /* Scale down while work is running: drained, nothing lost. */
    assert_int_equal(tg_client_scale(c, 1, &now), TG_OK);
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 30000), TG_OK);
    assert_near(json_double(fs[2 * N]), N * (N - 1) / 2 + N * 0.005,
                       1e-6);
    wait_workers(c, 1, 15000);
    /* Results of drained workers are still there. */
    assert_int_equal(tg_client_gather(c, fs, 2 * N + 1, 5000), TG_OK);
    free_futures(fs, 2 * N + 1);
    tg_client_free(c);
    stop(&s, SIGTERM);
}

static void test_integration__worker_reconnects_after_scheduler_restart(
    void **state)
{
    char addr[256], listen[300];
    proc s, w;
    tg_client *c;
    tg_future **fs;

    (void)state;
    s = start_scheduler("tcp://127.0.0.1:0", "--launcher", "none", addr,
                        sizeof(addr));
    w = start_worker(addr, "phoenix", "1");
    c = connect_to(addr);
    wait_workers(c, 1, 10000);
    tg_client_free(c);
    stop(&s, SIGTERM);
    /* Same port again. */
    assert_true(strlen(addr) < sizeof(listen));
    memcpy(listen, addr, strlen(addr) + 1);
    s = start_scheduler(listen, "--launcher", "none", addr, sizeof(addr));
    c = connect_to(addr);
    wait_workers(c, 1, 15000);
    fs = submit_incs(c, 10, "phoenix", 0);
    assert_int_equal(tg_client_gather(c, fs, 11, 10000), TG_OK);
    assert_int_equal(json_long(fs[10]), 55);
    free_futures(fs, 11);
    tg_client_free(c);
    {
        int st = stop(&w, SIGTERM);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    {
        int st = stop(&s, SIGTERM);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

static void test_integration__no_worker_timeout_fails_clearly(void **state)
{
    char addr[256];
    proc s;
    tg_client *c;
    tg_future *f = NULL;
    tg_task_def d = TG_TASK_DEF_INIT;
    const char *type = "", *msg = "", *tb = "";

    (void)state;
    s = start_scheduler("tcp://127.0.0.1:0", "--no-worker-timeout", "300",
                        addr, sizeof(addr));
    c = connect_to(addr);
    d.func = "nobody.provides";
    assert_int_equal(tg_client_submit(c, &d, 1, &f), TG_OK);
    assert_int_equal(tg_future_wait(f, 10000), TG_OK);
    assert_int_equal(tg_future_state(f), TG_TASK_ERRED);
    assert_int_equal(tg_future_error(f, &type, &msg, &tb), TG_OK);
    assert_string_equal(type, "tg.NoWorker");
    assert_non_null(strstr(msg, "nobody.provides"));
    tg_future_free(f);
    tg_client_free(c);
    stop(&s, SIGTERM);
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
        cmocka_unit_test(
            test_integration__worker_reconnects_after_scheduler_restart),
        cmocka_unit_test(test_integration__no_worker_timeout_fails_clearly),
        cmocka_unit_test(test_integration__connect_refused_is_clear),
    };

    signal(SIGPIPE, SIG_IGN);
    find_bins();
    setenv("TASKGRID_BIN_DIR", bin_dir, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
