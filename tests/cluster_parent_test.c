/* SPDX-License-Identifier: Apache-2.0
 *
 * cluster_parent_test.c: a temporary local cluster lives exactly as long
 * as the process that started it, whichever thread started it. A child
 * process starts a cluster from a thread that then ends, checks that the
 * cluster still runs a task, reports its scheduler's pid, and then dies
 * without tg_cluster_free() (_exit, or SIGKILL from the test). The test
 * (a subreaper, so the orphans come back to it) then waits, bounded, until
 * no process of the scheduler's group (the scheduler and its workers) is
 * left.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"
#include "taskgrid/taskgrid.h"

#define MAX_PIDS 64

/* Fields of /proc/PID/stat: state, parent and process group; false if the
 * process is gone. */
static bool proc_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp)
{
    char path[64], buf[512], *p;
    FILE *f;
    int pp = 0, pg = 0;
    bool ok;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    ok = fgets(buf, sizeof(buf), f) != NULL;
    fclose(f);
    /* pid (comm) state ppid pgrp ...; comm may hold spaces. */
    if (!ok || (p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 1, " %c %d %d", state, &pp, &pg) != 3)
        return false;
    *ppid = pp;
    *pgrp = pg;
    return true;
}

/* Live (not zombie) processes whose parent is `ppid` (if > 0) or whose
 * process group is `pgrp` (if > 0). */
static size_t list_procs(pid_t ppid, pid_t pgrp, pid_t *out, size_t max)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL && n < max) {
        pid_t pid = (pid_t)atoi(e->d_name), pp, pg;
        char st;

        if (pid <= 0 || !proc_stat(pid, &st, &pp, &pg) || st == 'Z')
            continue;
        if ((ppid > 0 && pp == ppid) || (pgrp > 0 && pg == pgrp))
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

static bool alive(pid_t pid)
{
    char st;
    pid_t pp, pg;

    return proc_stat(pid, &st, &pp, &pg) && st != 'Z';
}

/* ---- the child ----------------------------------------------------- */

static void *start_in_thread(void *arg)
{
    tg_cluster **cl = arg;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;

    o.n_workers = 2;
    o.start_timeout_ms = 20000;
    if (tg_cluster_start(cl, &o) != TG_OK) {
        fprintf(stderr, "child: tg_cluster_start: %s\n", tg_error_last());
        *cl = NULL;
    }
    return NULL; /* the starting thread ends here */
}

/* One tg.inc task on the cluster; true if it answered 2. */
static bool cluster_works(const tg_cluster *cl)
{
    tg_client *c = NULL;
    tg_task_def t = TG_TASK_DEF_INIT;
    tg_future *f = NULL;
    const void *data;
    size_t len;
    const char *codec;
    bool ok;

    if (tg_client_connect(&c, tg_cluster_address(cl), NULL) != TG_OK)
        return false;
    t.key = "parent-test-inc";
    t.func = "tg.inc";
    t.input = "1";
    t.input_len = 1;
    t.codec = "json";
    ok = tg_client_submit(c, &t, 1, &f) == TG_OK &&
         tg_client_gather(c, &f, 1, 20000) == TG_OK &&
         tg_future_result(f, &data, &len, &codec) == TG_OK && len == 1 &&
         memcmp(data, "2", 1) == 0;
    tg_future_free(f);
    tg_client_free(c);
    return ok;
}

/* Start a cluster from a thread, let the thread end, check the cluster,
 * report "SCHEDULER_PID\n" on `fd`, then die as `how` says. */
static void child_main(int fd, bool hard_exit)
{
    tg_cluster *cl = NULL;
    pthread_t t;
    pid_t kids[MAX_PIDS], sched = 0;
    char line[32];
    size_t n;

    if (pthread_create(&t, NULL, start_in_thread, &cl) != 0)
        _exit(3);
    pthread_join(t, NULL);
    if (cl == NULL)
        _exit(4);
    th_sleep_ms(300); /* a death tied to the ended thread would show now */
    if (!cluster_works(cl)) {
        fprintf(stderr, "child: cluster does not work after its starting "
                        "thread ended\n");
        _exit(5);
    }
    n = list_procs(getpid(), 0, kids, MAX_PIDS);
    for (size_t i = 0; i < n; i++) {
        char st;
        pid_t pp, pg;

        /* The scheduler leads its own process group. */
        if (proc_stat(kids[i], &st, &pp, &pg) && pg == kids[i])
            sched = kids[i];
    }
    snprintf(line, sizeof(line), "%d\n", (int)sched);
    if (write(fd, line, strlen(line)) < 0)
        _exit(6);
    if (hard_exit)
        _exit(0); /* no tg_cluster_free, no atexit */
    for (;;)
        pause(); /* the test SIGKILLs us */
}

/* ---- the test ------------------------------------------------------ */

static void reap_orphans(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void check_dies_with_parent(bool hard_exit)
{
    int fds[2], st;
    pid_t child, sched, group[MAX_PIDS];
    size_t n;
    char line[32] = "";
    struct pollfd pf;
    ssize_t r;
    int64_t deadline;

    assert_int_equal(pipe(fds), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        child_main(fds[1], hard_exit);
    }
    close(fds[1]);
    pf.fd = fds[0];
    pf.events = POLLIN;
    assert_int_equal(poll(&pf, 1, 40000), 1);
    r = read(fds[0], line, sizeof(line) - 1);
    close(fds[0]);
    if (r <= 0) {
        waitpid(child, &st, 0);
        fail_msg("child failed before reporting (status %d)", st);
    }
    sched = (pid_t)atoi(line);
    assert_true(sched > 0);
    n = list_procs(0, sched, group, MAX_PIDS);
    assert_true(n >= 3); /* the scheduler and its 2 workers */
    if (!hard_exit)
        kill(child, SIGKILL);
    assert_int_equal(waitpid(child, &st, 0), child);

    deadline = th_now_ms() + 15000;
    for (;;) {
        size_t left = 0;

        reap_orphans();
        for (size_t i = 0; i < n; i++)
            left += alive(group[i]);
        left += list_procs(0, sched, group + n, MAX_PIDS - n);
        if (left == 0)
            break;
        if (th_now_ms() > deadline) {
            kill(-sched, SIGKILL);
            fail_msg("%zu process(es) of the cluster (scheduler %d) still "
                     "running 15 s after their parent died",
                     left, (int)sched);
        }
        th_sleep_ms(20);
    }
}

static void test_cluster_parent__hard_exit_leaves_nothing(void **state)
{
    (void)state;
    check_dies_with_parent(true);
}

static void test_cluster_parent__sigkill_leaves_nothing(void **state)
{
    (void)state;
    check_dies_with_parent(false);
}

/* The option itself: closing the write end stops the scheduler, and it
 * stops its workers. */
static void test_cluster_parent__scheduler_exits_at_pipe_eof(void **state)
{
    int fds[2], devnull, st;
    char fdarg[16];
    pid_t pid, group[MAX_PIDS];
    size_t n = 0;
    int64_t deadline;

    (void)state;
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    snprintf(fdarg, sizeof(fdarg), "%d", fds[0]);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[] = {th_sched_bin,
                        "--listen",
                        "tcp://127.0.0.1:0",
                        "--workers",
                        "1",
                        "--worker-bin",
                        th_worker_bin,
                        "--log-level",
                        "warn",
                        "--exit-with-parent-fd",
                        fdarg,
                        NULL};

        setpgid(0, 0);
        devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        fcntl(fds[0], F_SETFD, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);
    close(fds[0]);
    deadline = th_now_ms() + 15000;
    while ((n = list_procs(0, pid, group, MAX_PIDS)) < 2) {
        if (th_now_ms() > deadline || waitpid(pid, &st, WNOHANG) == pid)
            fail_msg("the scheduler did not start its worker");
        th_sleep_ms(20);
    }
    close(fds[1]); /* as the parent's exit would */
    deadline = th_now_ms() + 15000;
    while (list_procs(0, pid, group + n, MAX_PIDS - n) > 0 ||
           waitpid(pid, &st, WNOHANG) == 0) {
        reap_orphans();
        if (th_now_ms() > deadline) {
            kill(-pid, SIGKILL);
            fail_msg("scheduler or worker still running 15 s after the "
                     "pipe closed");
        }
        th_sleep_ms(20);
    }
    assert_true(WIFEXITED(st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_parent__scheduler_exits_at_pipe_eof),
        cmocka_unit_test(test_cluster_parent__hard_exit_leaves_nothing),
        cmocka_unit_test(test_cluster_parent__sigkill_leaves_nothing),
    };

    /* Orphaned schedulers and workers come back to us, to be reaped. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    th_find_bins();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
