/* SPDX-License-Identifier: Apache-2.0
 *
 * harness.c: the multi-process test harness (see harness.h). POSIX
 * processes, pipes and poll; bounded waits only.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

char th_bin_dir[4096];
char th_sched_bin[4200], th_worker_bin[4200], th_certs_bin[4200];

void th_find_bins(void)
{
    const char *src = getenv("TEST_SRCDIR");
    const char *ws = getenv("TEST_WORKSPACE");

    if (getenv("TASKGRID_BIN_DIR"))
        snprintf(th_bin_dir, sizeof(th_bin_dir), "%s",
                 getenv("TASKGRID_BIN_DIR"));
    else
        snprintf(th_bin_dir, sizeof(th_bin_dir), "%s/%s", src ? src : ".",
                 ws ? ws : "taskgrid");
    snprintf(th_sched_bin, sizeof(th_sched_bin),
             "%s/scheduler/taskgrid-scheduler", th_bin_dir);
    snprintf(th_worker_bin, sizeof(th_worker_bin), "%s/worker/taskgrid-worker",
             th_bin_dir);
    snprintf(th_certs_bin, sizeof(th_certs_bin), "%s/scheduler/taskgrid-certs",
             th_bin_dir);
    setenv("TASKGRID_BIN_DIR", th_bin_dir, 0);
    signal(SIGPIPE, SIG_IGN);
}

int64_t th_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

th_proc th_spawn(char *const argv[], bool out, bool err)
{
    int o[2] = {-1, -1}, e[2] = {-1, -1};
    th_proc p = TH_PROC_NONE;
    pid_t parent = getpid();

    if (out)
        assert_int_equal(pipe(o), 0);
    if (err)
        assert_int_equal(pipe(e), 0);
    p.pid = fork();
    assert_true(p.pid >= 0);
    if (p.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (out) {
            dup2(o[1], 1);
            close(o[0]);
            close(o[1]);
        }
        if (err) {
            dup2(e[1], 2);
            close(e[0]);
            close(e[1]);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (out) {
        close(o[1]);
        p.out_fd = o[0];
    }
    if (err) {
        close(e[1]);
        p.err_fd = e[0];
    }
    return p;
}

void th_read_address(th_proc *p, char *addr, size_t len)
{
    static const char prefix[] = "taskgrid-scheduler listening on ";
    char line[512];
    size_t n = 0;
    int64_t deadline = th_now_ms() + 10000;

    while (n + 1 < sizeof(line)) {
        struct pollfd pfd = {p->out_fd, POLLIN, 0};
        int left = (int)(deadline - th_now_ms());
        ssize_t r;

        assert_true(left > 0);
        if (poll(&pfd, 1, left) <= 0)
            continue;
        r = read(p->out_fd, line + n, 1);
        if (r != 1)
            fail_msg("the scheduler exited before printing its address");
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    assert_true(strncmp(line, prefix, sizeof(prefix) - 1) == 0);
    assert_true(strlen(line + sizeof(prefix) - 1) < len);
    memcpy(addr, line + sizeof(prefix) - 1,
           strlen(line + sizeof(prefix) - 1) + 1);
}

static size_t append_args(char **argv, size_t i, size_t cap,
                          const char *const *extra)
{
    for (size_t k = 0; extra && extra[k]; k++) {
        assert_true(i + 1 < cap);
        argv[i++] = (char *)extra[k];
    }
    argv[i] = NULL;
    return i;
}

th_proc th_start_scheduler(const char *listen, const char *const *extra,
                           char *addr, size_t len)
{
    char *argv[48];
    size_t i = 0;
    th_proc p;

    argv[i++] = th_sched_bin;
    argv[i++] = "--listen";
    argv[i++] = (char *)listen;
    argv[i++] = "--worker-bin";
    argv[i++] = th_worker_bin;
    argv[i++] = "--log-level";
    argv[i++] = "warn";
    append_args(argv, i, 48, extra);
    p = th_spawn(argv, true, false);
    th_read_address(&p, addr, len);
    return p;
}

th_proc th_start_worker(const char *addr, const char *name,
                        const char *nthreads, const char *const *extra)
{
    char *argv[48];
    size_t i = 0;

    argv[i++] = th_worker_bin;
    argv[i++] = (char *)addr;
    argv[i++] = "--name";
    argv[i++] = (char *)name;
    argv[i++] = "--nthreads";
    argv[i++] = (char *)nthreads;
    argv[i++] = "--log-level";
    argv[i++] = "warn";
    append_args(argv, i, 48, extra);
    return th_spawn(argv, false, false);
}

int th_wait_exit(th_proc *p, int64_t timeout_ms)
{
    int st = 0;
    int64_t deadline = th_now_ms() + timeout_ms;

    if (p->pid <= 0)
        return 0;
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (th_now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            st = -1;
            break;
        }
        th_sleep_ms(5);
    }
    p->pid = -1;
    return st;
}

char *th_read_err(th_proc *p)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = calloc(1, cap);
    ssize_t r;

    assert_non_null(buf);
    while (p->err_fd >= 0 && n + 1 < cap &&
           (r = read(p->err_fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    return buf;
}

void th_close(th_proc *p)
{
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->err_fd >= 0)
        close(p->err_fd);
    p->out_fd = p->err_fd = -1;
}

int th_stop(th_proc *p, int sig)
{
    int st;

    if (p->pid > 0)
        kill(p->pid, sig);
    st = th_wait_exit(p, 15000);
    th_close(p);
    return st;
}

tg_client *th_connect(const char *addr)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;

    if (tg_client_connect(&c, addr, &o) != TG_OK)
        fail_msg("connect %s: %s", addr, tg_error_last());
    return c;
}

void th_wait_workers(tg_client *c, size_t n, int64_t timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;

    for (;;) {
        tg_status_report *r = NULL;
        size_t have = 0;

        if (tg_client_status(c, &r) == TG_OK) {
            have = tg_status_report_nworkers(r);
            tg_status_report_free(r);
        }
        if (have == n)
            return;
        if (th_now_ms() > deadline)
            fail_msg("waited %lld ms for %zu workers, have %zu",
                     (long long)timeout_ms, n, have);
        th_sleep_ms(20);
    }
}

void th_cluster_up(th_cluster *cl, size_t nworkers, const char *nthreads,
                   const char *plugin, const char *const *sextra)
{
    const char *sargs[16] = {"--launcher", "none"};
    const char *wextra[] = {"--preload", plugin, NULL};
    size_t ns = 2;

    assert_true(nworkers <= 4);
    for (size_t i = 0; sextra != NULL && sextra[i] != NULL; i++) {
        assert_true(ns + 1 < sizeof(sargs) / sizeof(sargs[0]));
        sargs[ns++] = sextra[i];
    }
    sargs[ns] = NULL;
    cl->sched = th_start_scheduler("tcp://127.0.0.1:0", sargs, cl->addr,
                                   sizeof(cl->addr));
    cl->nworkers = nworkers;
    for (size_t i = 0; i < nworkers; i++) {
        char name[24];

        snprintf(name, sizeof(name), "w%zu", i);
        cl->workers[i] = th_start_worker(cl->addr, name, nthreads,
                                         plugin != NULL ? wextra : NULL);
    }
    cl->client = th_connect(cl->addr);
    th_wait_workers(cl->client, nworkers, 10000);
}

void th_cluster_down(th_cluster *cl)
{
    tg_client_free(cl->client);
    cl->client = NULL;
    for (size_t i = 0; i < cl->nworkers; i++)
        th_stop(&cl->workers[i], SIGTERM);
    th_stop(&cl->sched, SIGTERM);
}

tg_task_def th_inc_task(const char *prefix, int i, char key[48], char in[16])
{
    tg_task_def d = TG_TASK_DEF_INIT;

    snprintf(key, 48, "%s-inc-%d", prefix, i);
    snprintf(in, 16, "%d", i);
    d.key = key;
    d.func = "tg.inc";
    d.input = in;
    d.input_len = strlen(in);
    d.codec = "json";
    return d;
}

char *th_padded_json(size_t n)
{
    char *s = malloc(n);

    assert_non_null(s);
    memset(s, ' ', n);
    memcpy(s, "[1,2,3", 6);
    s[n - 1] = ']';
    return s;
}

double th_number(tg_future *f)
{
    const void *d;
    size_t n;
    const char *codec;
    char buf[64];

    if (tg_future_result(f, &d, &n, &codec) != TG_OK) {
        const char *type = "", *msg = "", *tb = "";
        tg_future_error(f, &type, &msg, &tb);
        fail_msg("task %s: %s: %s", tg_future_key(f), type, msg);
    }
    assert_true(n < sizeof(buf));
    memcpy(buf, d, n);
    buf[n] = '\0';
    return strtod(buf, NULL);
}

char *th_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int saved_stderr = -1;
static char capture_path[4096];

void th_capture_begin(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_true(saved_stderr < 0);
    snprintf(capture_path, sizeof(capture_path), "%s", path);
    fflush(stderr);
    saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);
    dup2(fd, 2);
    close(fd);
}

char *th_capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    return th_slurp(capture_path);
}

int th_count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}
