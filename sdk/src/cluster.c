/* SPDX-License-Identifier: Apache-2.0
 *
 * cluster.c: the temporary local cluster (see taskgrid/cluster.h). It finds
 * the taskgrid-scheduler and taskgrid-worker binaries (in the order
 * cluster.h documents for tg_cluster_opts.bin_dir), runs the scheduler
 * as a child process (which starts and supervises the workers through its
 * local launcher), learns its address from the first line it prints, waits
 * until the workers have connected, and tears everything down. A secure
 * cluster first writes a fresh CA and role certificates (certs.c) to a
 * private temporary directory and starts everything with mutual TLS.
 * Depends on POSIX/Linux process calls, certs.h, and on the public client
 * API (for Status and Scale); no gRPC.
 *
 * Dying with this process: the scheduler gets --exit-with-parent-fd, the
 * read end of a pipe whose write end only this process holds (close-on-
 * exec, closed by tg_cluster_free()); when this process ends, however and
 * from whichever thread the cluster was started, the kernel closes it, the
 * scheduler reads EOF and stops with its workers. PR_SET_PDEATHSIG is set
 * too, but it fires when the *thread* that forked exits, so a thread owned
 * by the cluster forks (never the caller's, which may end: a thread pool, a
 * binding's helper thread), then forwards the scheduler's standard output
 * (a pipe it must keep draining, or the scheduler and its workers would
 * block on a full pipe), and lives until tg_cluster_free().
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "taskgrid/client.h"
#include "taskgrid/cluster.h"
#include "transport/client.h"
#include "util/certs.h"
#include "util/clock.h"
#include "util/error.h"

#define SCHEDULER_BIN "taskgrid-scheduler"
#define WORKER_BIN "taskgrid-worker"
#define LISTEN_PREFIX "taskgrid-scheduler listening on "
#define STOP_GRACE_MS 5000
#define POLL_MS 20

struct tg_cluster {
    /* Fixed at start. */
    char sched_path[PATH_MAX];
    char worker_path[PATH_MAX];
    char *argv[40];
    char nworkers_arg[16], nthreads_arg[16];
    char *resources, *preload;
    bool processes;
    uint32_t nprocs;    /* worker processes now (target) */
    uint32_t nthreads;  /* threads per worker process */
    int64_t timeout_ms; /* start / scale bound */
    char address[256];
    tg_client *client;

    /* A secure cluster: its certificate directory ("" if none), the files
     * in it, and the owner's (admin) security options. */
    char certdir[PATH_MAX];
    char ca[PATH_MAX + 32], sched_cert[PATH_MAX + 32], sched_key[PATH_MAX + 32],
        worker_cert[PATH_MAX + 32], worker_key[PATH_MAX + 32],
        admin_cert[PATH_MAX + 32], admin_key[PATH_MAX + 32];
    bool secure;
    tg_security security;

    /* Shared with the monitor thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sync_ok; /* mu and cv initialised */
    pthread_t thread;
    bool thread_started;
    bool forked; /* fork() returned in the monitor */
    int fork_errno;
    bool exec_checked; /* exec succeeded or failed */
    int exec_errno;
    pid_t pid; /* scheduler, 0 if none; group id too */
    bool reaped;
    bool line_ready; /* first stdout line complete */
    bool out_eof;    /* scheduler closed its stdout */
    char line[512];
    size_t linelen;

    int out_rd, out_wr;   /* scheduler stdout */
    int err_rd, err_wr;   /* exec error report (close-on-exec) */
    int stop_rd, stop_wr; /* wakes the monitor at free */
    int life_rd, life_wr; /* --exit-with-parent-fd: EOF when we are gone */
    char life_arg[16];
    int devnull;
};

/* ------------------------------------------------------------------ */
/* Finding the binaries                                                */
/* ------------------------------------------------------------------ */

static bool is_exec(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           access(path, X_OK) == 0;
}

/* `dir`/`name`, or `dir`/`pkg`/`name` (a bazel-bin-like tree), if
 * executable: its absolute path goes to `out`. */
static bool in_dir(const char *dir, const char *name, const char *pkg,
                   char *out, size_t outlen)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);

    if (n < 0 || n >= (int)sizeof(path) || !is_exec(path)) {
        n = snprintf(path, sizeof(path), "%s/%s/%s", dir, pkg, name);
        if (n < 0 || n >= (int)sizeof(path) || !is_exec(path))
            return false;
    }
    if (realpath(path, out) == NULL)
        snprintf(out, outlen, "%s", path);
    return true;
}

/* Try `dir` (ignored if NULL or empty), noting it in `tried`. */
static bool try_dir(const char *dir, const char *name, const char *pkg,
                    char *out, size_t outlen, char *tried, size_t triedlen)
{
    size_t n = strlen(tried);

    if (dir == NULL || dir[0] == '\0')
        return false;
    if (n + 3 < triedlen)
        snprintf(tried + n, triedlen - n, "%s%s", n ? ", " : "", dir);
    return in_dir(dir, name, pkg, out, outlen);
}

/* The folder of the shared libtaskgrid this code runs in (not of a
 * program it is linked into statically), or "". */
static void library_dir(char *out, size_t outlen, const char *exe)
{
    Dl_info info;
    char lib[PATH_MAX], *slash;

    out[0] = '\0';
    if (dladdr((void *)library_dir, &info) == 0 || info.dli_fname == NULL ||
        realpath(info.dli_fname, lib) == NULL || strcmp(lib, exe) == 0 ||
        (slash = strrchr(lib, '/')) == NULL)
        return;
    *slash = '\0';
    snprintf(out, outlen, "%s", lib);
}

/*
 * Find `name` (`pkg`: its Bazel package folder) in the order cluster.h
 * documents. An explicit place (bin_dir, then $TASKGRID_BIN_DIR) is the
 * only one searched: if it lacks the program, that is the error.
 */
static int find_binary(const char *bin_dir, const char *name, const char *pkg,
                       char *out, size_t outlen)
{
    char tried[2048] = "", exe[PATH_MAX] = "", dir[PATH_MAX + 64];
    const char *env = getenv("TASKGRID_BIN_DIR"), *what = NULL;
    ssize_t n;

    if (bin_dir != NULL)
        what = "tg_cluster_opts.bin_dir";
    else if (env != NULL && env[0] != '\0')
        what = "$TASKGRID_BIN_DIR", bin_dir = env;
    if (what != NULL) {
        if (in_dir(bin_dir, name, pkg, out, outlen))
            return TG_OK;
        return tg__error_set(TG_ENOTFOUND,
                             "%s is '%s', which holds no %s (looked for "
                             "%s/%s and %s/%s/%s); point it at the folder "
                             "of the installed programs or at a bazel-bin "
                             "(`bazel build //scheduler //worker`)",
                             what, bin_dir, name, bin_dir, name, bin_dir, pkg,
                             name);
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    /* The programs a Bazel-built program was built with: its runfiles. */
    if (exe[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s.runfiles/taskgrid", exe);
        if (try_dir(dir, name, pkg, out, outlen, tried, sizeof(tried)))
            return TG_OK;
    }
    if ((env = getenv("RUNFILES_DIR")) != NULL) {
        snprintf(dir, sizeof(dir), "%s/taskgrid", env);
        if (try_dir(dir, name, pkg, out, outlen, tried, sizeof(tried)))
            return TG_OK;
    }
    if ((env = getenv("TEST_SRCDIR")) != NULL) {
        snprintf(dir, sizeof(dir), "%s/taskgrid", env);
        if (try_dir(dir, name, pkg, out, outlen, tried, sizeof(tried)))
            return TG_OK;
    }
    /* Installed together: PREFIX/lib/libtaskgrid.so -> PREFIX/bin. */
    library_dir(dir, sizeof(dir) - 8, exe);
    if (dir[0] != '\0') {
        strcat(dir, "/../bin");
        if (try_dir(dir, name, pkg, out, outlen, tried, sizeof(tried)))
            return TG_OK;
    }
    if (strrchr(exe, '/') != NULL) {
        *strrchr(exe, '/') = '\0'; /* the program's own folder */
        if (try_dir(exe, name, pkg, out, outlen, tried, sizeof(tried)))
            return TG_OK;
    }
    if ((env = getenv("PATH")) != NULL) {
        char *copy = strdup(env), *save = NULL;

        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d != NULL;
             d = strtok_r(NULL, ":", &save)) {
            if (in_dir(d, name, "", out, outlen)) {
                free(copy);
                return TG_OK;
            }
        }
        free(copy);
    }
    return tg__error_set(TG_ENOTFOUND,
                         "%s not found (looked in %s%s$PATH). Install "
                         "taskgrid (`bazel run //:install -- --prefix DIR` "
                         "puts the programs in DIR/bin) and put DIR/bin on "
                         "PATH, or name their folder with TASKGRID_BIN_DIR "
                         "or tg_cluster_opts.bin_dir (in a checkout: `bazel "
                         "build //scheduler //worker` and "
                         "TASKGRID_BIN_DIR=$PWD/bazel-bin)",
                         name, tried, tried[0] ? ", " : "");
}

static int find_binaries(tg_cluster *cl, const char *bin_dir)
{
    int rc = find_binary(bin_dir, SCHEDULER_BIN, "scheduler", cl->sched_path,
                         sizeof(cl->sched_path));

    if (rc == TG_OK)
        rc = find_binary(bin_dir, WORKER_BIN, "worker", cl->worker_path,
                         sizeof(cl->worker_path));
    return rc;
}

/* ------------------------------------------------------------------ */
/* The scheduler process                                               */
/* ------------------------------------------------------------------ */

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child_exec(tg_cluster *cl, pid_t parent)
{
    sigset_t none;
    int e;

    /* Own process group: tg_cluster_free can then stop the scheduler and
     * every worker it started with one signal. */
    setpgid(0, 0);
    /* Die with the monitor thread (i.e. with tg_cluster_free or the
     * process); the check closes the race with a parent that died
     * before prctl. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (cl->devnull >= 0)
        dup2(cl->devnull, 0);
    dup2(cl->out_wr, 1);
#ifdef CLOSE_RANGE_CLOEXEC
    /* Do not leak the application's descriptors into the daemons. */
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
    /* The one descriptor the scheduler keeps: its end of the pipe whose
     * other end only this process holds (--exit-with-parent-fd). */
    if (fcntl(cl->life_rd, F_SETFD, 0) == 0)
        execv(cl->sched_path, cl->argv);
    e = errno;
    if (write(cl->err_wr, &e, sizeof(e)) < 0)
        _exit(126);
    _exit(127);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Take bytes of the scheduler's stdout: the first line is kept, the rest
 * forwarded to our stdout. */
static void take_output(tg_cluster *cl, const char *buf, size_t n)
{
    size_t i = 0;

    pthread_mutex_lock(&cl->mu);
    while (!cl->line_ready && i < n) {
        char ch = buf[i++];

        if (ch == '\n' || cl->linelen + 1 >= sizeof(cl->line)) {
            cl->line_ready = true;
            pthread_cond_broadcast(&cl->cv);
            break;
        }
        cl->line[cl->linelen++] = ch;
        cl->line[cl->linelen] = '\0';
    }
    pthread_mutex_unlock(&cl->mu);
    if (i < n)
        write_all(1, buf + i, n - i);
}

static void *monitor(void *arg)
{
    tg_cluster *cl = arg;
    pid_t parent = getpid(), pid;
    struct pollfd pf[2];
    char buf[4096];
    int e = 0;
    ssize_t r;

    pid = fork();
    if (pid == 0)
        child_exec(cl, parent); /* does not return */
    pthread_mutex_lock(&cl->mu);
    cl->forked = true;
    if (pid < 0) {
        cl->fork_errno = errno;
    } else {
        cl->pid = pid;
        /* Also here: whichever of parent and child runs first, the group
         * exists before anyone signals it. */
        setpgid(pid, pid);
    }
    pthread_cond_broadcast(&cl->cv);
    pthread_mutex_unlock(&cl->mu);
    close(cl->out_wr);
    close(cl->err_wr);
    close(cl->life_rd);
    cl->out_wr = cl->err_wr = cl->life_rd = -1;
    if (pid < 0)
        return NULL;

    /* EOF on the close-on-exec pipe: exec succeeded. */
    do
        r = read(cl->err_rd, &e, sizeof(e));
    while (r < 0 && errno == EINTR);
    pthread_mutex_lock(&cl->mu);
    cl->exec_checked = true;
    cl->exec_errno = r == (ssize_t)sizeof(e) ? e : 0;
    pthread_cond_broadcast(&cl->cv);
    pthread_mutex_unlock(&cl->mu);

    pf[0].fd = cl->stop_rd;
    pf[0].events = POLLIN;
    pf[1].fd = cl->out_rd;
    pf[1].events = POLLIN;
    for (;;) {
        int nfds = cl->out_eof ? 1 : 2;

        if (poll(pf, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[0].revents)
            break; /* tg_cluster_free */
        if (nfds == 2 && pf[1].revents) {
            r = read(cl->out_rd, buf, sizeof(buf));
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0) {
                /* Keep living until free: our exit would SIGTERM the
                 * scheduler (PDEATHSIG). */
                pthread_mutex_lock(&cl->mu);
                cl->out_eof = true;
                pthread_cond_broadcast(&cl->cv);
                pthread_mutex_unlock(&cl->mu);
                continue;
            }
            take_output(cl, buf, (size_t)r);
        }
    }
    return NULL;
}

/* True if the scheduler has exited (without reaping it, so its pid and
 * process group id cannot be reused while we may still signal them). */
static bool sched_exited(tg_cluster *cl, int *status)
{
    siginfo_t si;

    if (cl->pid <= 0 || cl->reaped)
        return true;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)cl->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD; /* reaped by someone else */
    if (si.si_pid != cl->pid)
        return false;
    if (status)
        *status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    return true;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void stop_scheduler(tg_cluster *cl)
{
    int64_t deadline;

    if (cl->pid <= 0 || cl->reaped)
        return;
    /* SIGTERM: the scheduler drains and stops its workers. */
    kill(cl->pid, SIGTERM);
    deadline = tg__now_ms() + STOP_GRACE_MS;
    while (!sched_exited(cl, NULL) && tg__now_ms() < deadline)
        sleep_ms(10);
    /* Whatever is left of the group (the scheduler if it hung, a worker it
     * did not stop) goes now. The unreaped leader keeps the id reserved. */
    kill(-cl->pid, SIGKILL);
    while (waitpid(cl->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    cl->reaped = true;
}

/* Wait (under mu) until `*flag` or the deadline; false on timeout. */
static bool wait_flag(tg_cluster *cl, const bool *flag, int64_t deadline)
{
    while (!*flag) {
        struct timespec ts;
        int64_t left = deadline - tg__now_ms();

        if (left <= 0)
            return false;
        if (left > POLL_MS)
            left = POLL_MS; /* re-check: monitor may signal before wait */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cl->cv, &cl->mu, &ts);
    }
    return true;
}

/* A message for a scheduler that exited during start-up. */
static int exited_error(tg_cluster *cl, const char *when)
{
    int st = -1;

    sched_exited(cl, &st);
    return tg__error_set(TG_EIO,
                         "%s (%s) exited with status %d %s; see its "
                         "messages above",
                         SCHEDULER_BIN, cl->sched_path, st, when);
}

/* Parse the first stdout line into cl->address. */
static int parse_listen_line(tg_cluster *cl)
{
    size_t plen = strlen(LISTEN_PREFIX), n;
    const char *addr;

    /* Trim a trailing CR or blanks. */
    n = strlen(cl->line);
    while (n > 0 && (cl->line[n - 1] == '\r' || cl->line[n - 1] == ' '))
        cl->line[--n] = '\0';
    if (strncmp(cl->line, LISTEN_PREFIX, plen) != 0)
        return tg__error_set(TG_EPROTO,
                             "unexpected first line from %s: '%s' "
                             "(expected '" LISTEN_PREFIX "tcp://...')",
                             cl->sched_path, cl->line);
    addr = cl->line + plen;
    if ((strncmp(addr, "tcp://", 6) != 0 && strncmp(addr, "tls://", 6) != 0) ||
        strlen(addr) >= sizeof(cl->address) || strchr(addr, ' ') != NULL)
        return tg__error_set(TG_EPROTO, "%s printed a malformed address: '%s'",
                             cl->sched_path, addr);
    snprintf(cl->address, sizeof(cl->address), "%s", addr);
    return TG_OK;
}

/* Wait until the scheduler prints its address. */
static int wait_address(tg_cluster *cl, int64_t deadline)
{
    int rc = TG_OK;

    pthread_mutex_lock(&cl->mu);
    if (!wait_flag(cl, &cl->forked, deadline) ||
        !wait_flag(cl, &cl->exec_checked, deadline)) {
        rc = tg__error_set(TG_ETIMEDOUT, "could not start %s in time",
                           cl->sched_path);
        goto unlock;
    }
    if (cl->pid <= 0) {
        rc = tg__error_set(TG_EIO, "cannot fork: %s", strerror(cl->fork_errno));
        goto unlock;
    }
    if (cl->exec_errno != 0) {
        rc = tg__error_set(TG_EIO, "cannot run %s: %s", cl->sched_path,
                           strerror(cl->exec_errno));
        goto unlock;
    }
    while (!cl->line_ready && !cl->out_eof) {
        if (!wait_flag(cl, &cl->line_ready, tg__now_ms() + POLL_MS) &&
            tg__now_ms() >= deadline) {
            rc = tg__error_set(TG_ETIMEDOUT,
                               "%s did not print its address within "
                               "%" PRId64 " ms",
                               cl->sched_path, cl->timeout_ms);
            goto unlock;
        }
    }
    if (!cl->line_ready) {
        pthread_mutex_unlock(&cl->mu);
        /* Stdout closed: give the exit a moment to be visible. */
        for (int i = 0; i < 50 && !sched_exited(cl, NULL); i++)
            sleep_ms(10);
        if (sched_exited(cl, NULL))
            return exited_error(cl, "before listening");
        return tg__error_set(TG_EPROTO,
                             "%s closed its output without printing its "
                             "address",
                             cl->sched_path);
    }
    rc = parse_listen_line(cl);

unlock:
    pthread_mutex_unlock(&cl->mu);
    return rc;
}

/*
 * Poll Status until exactly `want` workers are connected and not
 * draining (and, when scaling down, the drained ones have gone).
 */
static int wait_workers(tg_cluster *cl, uint32_t want, int64_t deadline)
{
    size_t seen = 0;
    char why[512] = "";

    for (;;) {
        tg_status_report *r = NULL;
        int rc = tg_client_status(cl->client, &r);

        if (rc == TG_OK) {
            size_t ready = 0, n = tg_status_report_nworkers(r);

            for (size_t i = 0; i < n; i++)
                ready += !tg_status_report_worker_draining(r, i);
            tg_status_report_free(r);
            seen = ready;
            if (ready == want && n == want)
                return TG_OK;
        } else {
            snprintf(why, sizeof(why), " (last status call: %s)",
                     tg_error_last());
        }
        if (sched_exited(cl, NULL))
            return exited_error(cl, "while starting its workers");
        if (tg__now_ms() >= deadline)
            return tg__error_set(TG_ETIMEDOUT,
                                 "%zu of %" PRIu32 " workers connected to "
                                 "the local cluster at %s within %" PRId64
                                 " ms%s; see the scheduler's and workers' "
                                 "messages above",
                                 seen, want, cl->address, cl->timeout_ms, why);
        sleep_ms(POLL_MS);
    }
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

static uint32_t online_cores(void)
{
    cpu_set_t set;
    long n;

    /* The affinity mask respects cpusets (containers, taskset). */
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (uint32_t)CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

static int pipe_cloexec(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return tg__error_set(TG_EIO, "cannot create a pipe: %s",
                             strerror(errno));
    return TG_OK;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int build_argv(tg_cluster *cl, uint32_t procs, uint32_t threads)
{
    size_t a = 0;

    snprintf(cl->nworkers_arg, sizeof(cl->nworkers_arg), "%" PRIu32, procs);
    snprintf(cl->nthreads_arg, sizeof(cl->nthreads_arg), "%" PRIu32, threads);
    cl->argv[a++] = cl->sched_path;
    cl->argv[a++] = "--listen";
    cl->argv[a++] = cl->secure ? "tls://127.0.0.1:0" : "tcp://127.0.0.1:0";
    if (cl->secure) {
        cl->argv[a++] = "--tls-ca";
        cl->argv[a++] = cl->ca;
        cl->argv[a++] = "--tls-cert";
        cl->argv[a++] = cl->sched_cert;
        cl->argv[a++] = "--tls-key";
        cl->argv[a++] = cl->sched_key;
        cl->argv[a++] = "--worker-tls-cert";
        cl->argv[a++] = cl->worker_cert;
        cl->argv[a++] = "--worker-tls-key";
        cl->argv[a++] = cl->worker_key;
    }
    cl->argv[a++] = "--workers";
    cl->argv[a++] = cl->nworkers_arg;
    cl->argv[a++] = "--nthreads";
    cl->argv[a++] = cl->nthreads_arg;
    cl->argv[a++] = "--worker-bin";
    cl->argv[a++] = cl->worker_path;
    if (cl->resources) {
        cl->argv[a++] = "--worker-resources";
        cl->argv[a++] = cl->resources;
    }
    if (cl->preload) {
        cl->argv[a++] = "--worker-preload";
        cl->argv[a++] = cl->preload;
    }
    /* A temporary cluster is quiet unless asked (TASKGRID_LOG_LEVEL). */
    {
        const char *lvl = getenv("TASKGRID_LOG_LEVEL");
        if (lvl == NULL || *lvl == '\0')
            lvl = "warn";
        cl->argv[a++] = "--log-level";
        cl->argv[a++] = (char *)lvl;
        cl->argv[a++] = "--worker-log-level";
        cl->argv[a++] = (char *)lvl;
    }
    snprintf(cl->life_arg, sizeof(cl->life_arg), "%d", cl->life_rd);
    cl->argv[a++] = "--exit-with-parent-fd";
    cl->argv[a++] = cl->life_arg;
    cl->argv[a] = NULL;
    return TG_OK;
}

/* The files of a secure cluster's directory, as listed in certs.h. */
static const char *const cert_files[] = {
    "ca.pem",         "scheduler.pem",  "scheduler-key.pem",
    "worker.pem",     "worker-key.pem", "client.pem",
    "client-key.pem", "admin.pem",      "admin-key.pem",
};

/* Remove a secure cluster's certificate directory (what we wrote). */
static void remove_certs(tg_cluster *cl)
{
    char path[PATH_MAX + 32];

    if (cl->certdir[0] == '\0')
        return;
    for (size_t i = 0; i < sizeof(cert_files) / sizeof(cert_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", cl->certdir, cert_files[i]);
        unlink(path);
    }
    rmdir(cl->certdir);
    cl->certdir[0] = '\0';
}

/*
 * A fresh CA and role certificates in a private temporary directory,
 * like Dask's Security.temporary(). The CA key is not written: nobody
 * can issue more certificates for this cluster. The scheduler's names are
 * loopback only, the only place a local cluster listens.
 */
static int make_certs(tg_cluster *cl)
{
    tg__certs_dir_opts co = {0};
    const char *tmp = getenv("TMPDIR");
    int rc;

    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    if (snprintf(cl->certdir, sizeof(cl->certdir), "%s/taskgrid-tls-XXXXXX",
                 tmp) >= (int)sizeof(cl->certdir) ||
        mkdtemp(cl->certdir) == NULL) {
        int e = errno;

        cl->certdir[0] = '\0';
        return tg__error_set(TG_EIO,
                             "cannot make a directory for the cluster's "
                             "certificates in %s: %s",
                             tmp, strerror(e));
    }
    co.days = 365;
    co.hosts = "localhost,127.0.0.1,::1";
    if ((rc = tg__certs_write_dir(cl->certdir, &co)) != TG_OK) {
        char msg[1024];

        snprintf(msg, sizeof(msg), "%s", tg_error_last());
        remove_certs(cl);
        return tg__error_set(rc, "secure local cluster: %s", msg);
    }
#define CERT_PATH(field, name) \
    snprintf(cl->field, sizeof(cl->field), "%s/%s", cl->certdir, name)
    CERT_PATH(ca, "ca.pem");
    CERT_PATH(sched_cert, "scheduler.pem");
    CERT_PATH(sched_key, "scheduler-key.pem");
    CERT_PATH(worker_cert, "worker.pem");
    CERT_PATH(worker_key, "worker-key.pem");
    CERT_PATH(admin_cert, "admin.pem");
    CERT_PATH(admin_key, "admin-key.pem");
#undef CERT_PATH
    cl->security = (tg_security)TG_SECURITY_INIT;
    cl->security.ca_file = cl->ca;
    cl->security.cert_file = cl->admin_cert;
    cl->security.key_file = cl->admin_key;
    return TG_OK;
}

static int check_opts(const tg_cluster_opts *o)
{
    /* Version 1 lacks `secure` (read only from version 2 structs). */
    if (o->version != 1 && o->version != TG_CLUSTER_OPTS_VERSION)
        return tg__error_set(TG_EINVAL,
                             "tg_cluster_opts version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_CLUSTER_OPTS_INIT)",
                             o->version, TG_CLUSTER_OPTS_VERSION);
    if (o->n_workers > 1024 || o->threads_per_worker > 4096)
        return tg__error_set(TG_EINVAL,
                             "tg_cluster_opts: at most 1024 workers of 4096 "
                             "threads");
    if (!o->processes &&
        (uint64_t)(o->n_workers ? o->n_workers : 1) *
                (o->threads_per_worker ? o->threads_per_worker : 1) >
            4096)
        return tg__error_set(TG_EINVAL,
                             "tg_cluster_opts: at most 4096 threads in one "
                             "worker process");
    if (o->start_timeout_ms < 0)
        return tg__error_set(TG_EINVAL,
                             "tg_cluster_opts: start_timeout_ms < 0");
    if (o->resources != NULL &&
        (o->resources[0] == '\0' || strpbrk(o->resources, " \t\n") != NULL ||
         strchr(o->resources, '=') == NULL))
        return tg__error_set(TG_EINVAL,
                             "tg_cluster_opts: resources '%s' is not of the "
                             "form NAME=AMOUNT[,NAME=AMOUNT...]",
                             o->resources);
    if (o->bin_dir != NULL && o->bin_dir[0] == '\0')
        return tg__error_set(TG_EINVAL, "tg_cluster_opts: empty bin_dir");
    if (o->preload != NULL && access(o->preload, R_OK) != 0)
        return tg__error_set(TG_ENOTFOUND,
                             "tg_cluster_opts: preload library '%s' cannot "
                             "be read: %s",
                             o->preload, strerror(errno));
    return TG_OK;
}

/* Free a half-started cluster and return `rc`, keeping the error message
 * (tg_cluster_free would overwrite it). */
static int cluster_fail(tg_cluster *cl, int rc)
{
    char msg[1024];

    snprintf(msg, sizeof(msg), "%s", tg_error_last());
    tg_cluster_free(cl);
    return tg__error_set(rc, "%s", msg);
}

int tg_cluster_start(tg_cluster **out, const tg_cluster_opts *opts)
{
    static const tg_cluster_opts defaults = TG_CLUSTER_OPTS_INIT;
    tg_client_opts copts = TG_CLIENT_OPTS_INIT;
    pthread_condattr_t ca;
    tg_cluster *cl;
    uint32_t procs, threads;
    int64_t deadline;
    int fds[2], rc;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_cluster_start: out is NULL");
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if ((rc = check_opts(opts)) != TG_OK)
        return rc;

    cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    cl->out_rd = cl->out_wr = cl->err_rd = cl->err_wr = -1;
    cl->stop_rd = cl->stop_wr = cl->devnull = -1;
    cl->life_rd = cl->life_wr = -1;
    cl->processes = opts->processes;
    cl->secure = opts->version >= 2 && opts->secure;
    procs = opts->n_workers ? opts->n_workers : online_cores();
    threads = opts->threads_per_worker ? opts->threads_per_worker : 1;
    if (!cl->processes) {
        /* One worker process with every thread (Dask's processes=False). */
        threads *= procs;
        procs = 1;
    }
    cl->nprocs = procs;
    cl->nthreads = threads;
    cl->timeout_ms = opts->start_timeout_ms ? opts->start_timeout_ms : 10000;
    deadline = tg__now_ms() + cl->timeout_ms;

    pthread_mutex_init(&cl->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->cv, &ca);
    pthread_condattr_destroy(&ca);
    cl->sync_ok = true;

    if ((rc = find_binaries(cl, opts->bin_dir)) != TG_OK)
        goto fail;
    if (cl->secure && (rc = make_certs(cl)) != TG_OK)
        goto fail;
    if (opts->resources && (cl->resources = strdup(opts->resources)) == NULL)
        goto oom;
    if (opts->preload) {
        char abs[PATH_MAX];

        /* Workers may run elsewhere than our current directory. */
        cl->preload =
            strdup(realpath(opts->preload, abs) ? abs : opts->preload);
        if (cl->preload == NULL)
            goto oom;
    }
    if ((rc = pipe_cloexec(fds)) != TG_OK)
        goto fail;
    cl->life_rd = fds[0];
    cl->life_wr = fds[1];
    build_argv(cl, procs, threads);

    if ((rc = pipe_cloexec(fds)) != TG_OK)
        goto fail;
    cl->out_rd = fds[0];
    cl->out_wr = fds[1];
    if ((rc = pipe_cloexec(fds)) != TG_OK)
        goto fail;
    cl->err_rd = fds[0];
    cl->err_wr = fds[1];
    if ((rc = pipe_cloexec(fds)) != TG_OK)
        goto fail;
    cl->stop_rd = fds[0];
    cl->stop_wr = fds[1];
    cl->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (pthread_create(&cl->thread, NULL, monitor, cl) != 0) {
        rc = tg__error_set(TG_EIO, "cannot start the cluster thread");
        goto fail;
    }
    cl->thread_started = true;

    if ((rc = wait_address(cl, deadline)) != TG_OK)
        goto fail;
    copts.security = cl->secure ? &cl->security : NULL;
    copts.connect_timeout_ms = deadline - tg__now_ms();
    if (copts.connect_timeout_ms < 1)
        copts.connect_timeout_ms = 1;
    if ((rc = tg_client_connect(&cl->client, cl->address, &copts)) != TG_OK)
        goto fail;
    if ((rc = wait_workers(cl, procs, deadline)) != TG_OK)
        goto fail;
    *out = cl;
    return TG_OK;

oom:
    rc = tg__error_set(TG_ENOMEM, "out of memory");
fail:
    return cluster_fail(cl, rc);
}

const char *tg_cluster_address(const tg_cluster *cl)
{
    return cl ? cl->address : NULL;
}

const tg_security *tg_cluster_security(const tg_cluster *cl)
{
    return cl && cl->secure ? &cl->security : NULL;
}

uint32_t tg_cluster_nworkers(const tg_cluster *cl)
{
    return cl ? cl->nprocs : 0;
}

uint32_t tg_cluster_nthreads(const tg_cluster *cl)
{
    return cl ? cl->nprocs * cl->nthreads : 0;
}

int tg_cluster_scale(tg_cluster *cl, uint32_t n)
{
    int rc;

    if (cl == NULL)
        return tg__error_set(TG_EINVAL, "tg_cluster_scale: cluster is NULL");
    if (!cl->processes)
        return tg__error_set(TG_ESTATE,
                             "tg_cluster_scale: a cluster started with "
                             "processes = false has one worker process");
    if (n > 1024)
        return tg__error_set(TG_EINVAL,
                             "tg_cluster_scale: at most 1024 workers");
    if ((rc = tg_client_scale(cl->client, n, NULL)) != TG_OK)
        return rc;
    cl->nprocs = n;
    return wait_workers(cl, n, tg__now_ms() + cl->timeout_ms);
}

void tg_cluster_free(tg_cluster *cl)
{
    if (cl == NULL)
        return;
    tg_client_free(cl->client);
    cl->client = NULL;
    if (cl->thread_started) {
        /* The monitor must have forked (or failed to) before we look at
         * the pid. */
        pthread_mutex_lock(&cl->mu);
        while (!cl->forked)
            pthread_cond_wait(&cl->cv, &cl->mu);
        pthread_mutex_unlock(&cl->mu);
        stop_scheduler(cl);
        if (write(cl->stop_wr, "x", 1) < 0) {
            /* The pipe cannot be full; nothing else to do. */
        }
        pthread_join(cl->thread, NULL);
    }
    close_fd(&cl->out_rd);
    close_fd(&cl->out_wr);
    close_fd(&cl->err_rd);
    close_fd(&cl->err_wr);
    close_fd(&cl->stop_rd);
    close_fd(&cl->stop_wr);
    close_fd(&cl->life_rd);
    close_fd(&cl->life_wr); /* after the stop: the scheduler is gone */
    close_fd(&cl->devnull);
    remove_certs(cl); /* after the scheduler and workers are gone */
    if (cl->sync_ok) {
        pthread_cond_destroy(&cl->cv);
        pthread_mutex_destroy(&cl->mu);
    }
    free(cl->resources);
    free(cl->preload);
    free(cl);
}
