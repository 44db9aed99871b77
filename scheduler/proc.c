/* SPDX-License-Identifier: Apache-2.0
 *
 * proc.c: child processes polled from the scheduler's loop (see proc.h).
 * Everything the child needs (its argv, its environment, the program's
 * path) is made before fork(), so the child only calls async-signal-safe
 * functions between fork and exec: the scheduler has gRPC's threads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "taskgrid/status.h"
#include "util/error.h"

#define INPUT_MAX (60 * 1024)

extern char **environ;

typedef struct cap {
    int fd; /* -1 once closed */
    char buf[TGS_PROC_CAPTURE_MAX + 1];
    size_t n;
    bool tail; /* keep the last bytes (else the first) */
    bool tee;  /* copy to our stderr */
} cap;

struct tgs_proc {
    pid_t pid;
    int in; /* held stdin, or -1 */
    bool exited;
    int status;
    cap out, err;
};

/* The program's path: argv0 itself with a '/', else the first
 * executable in PATH. */
int tgs_proc_find(const char *argv0, char *path, size_t len)
{
    const char *p = getenv("PATH");

    if (strchr(argv0, '/') != NULL) {
        if (access(argv0, X_OK) != 0)
            return tg__error_set(TG_ENOTFOUND, "cannot run %s: %s", argv0,
                                 strerror(errno));
        snprintf(path, len, "%s", argv0);
        return 0;
    }
    for (p = p ? p : "/usr/local/bin:/usr/bin:/bin"; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        struct stat st;
        if (n > 0 && n + strlen(argv0) + 2 <= len) {
            snprintf(path, len, "%.*s/%s", (int)n, p, argv0);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
                access(path, X_OK) == 0)
                return 0;
        }
        p += n + (end != NULL);
    }
    return tg__error_set(TG_ENOTFOUND, "%s: command not found in PATH (%s)",
                         argv0, getenv("PATH") ? getenv("PATH") : "unset");
}

/* environ with `extra` ("NAME=VALUE") replacing or adding entries. */
static char **make_env(const char *const *extra)
{
    size_t n = 0, m = 0, k = 0;
    char **e;

    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    if ((e = calloc(n + m + 1, sizeof(*e))) == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < m && !replaced; j++) {
            const char *eq = strchr(extra[j], '=');
            size_t len = eq ? (size_t)(eq - extra[j]) : strlen(extra[j]);
            replaced = strncmp(environ[i], extra[j], len) == 0 &&
                       environ[i][len] == '=';
        }
        if (!replaced)
            e[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        e[k++] = (char *)extra[j];
    e[k] = NULL;
    return e;
}

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
}

/* In the child: stdio from the pipes, nothing else inherited. */
static void child(const char *path, char *const *argv, char *const *envp,
                  int in[2], int out[2], int err[2], pid_t parent)
{
    int devnull = open("/dev/null", O_RDWR);

    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    dup2(in[0] >= 0 ? in[0] : devnull, 0);
    if (out[1] >= 0)
        dup2(out[1], 1);
    if (err[1] >= 0)
        dup2(err[1], 2);
    closefrom(3);
    signal(SIGPIPE, SIG_DFL);
    execve(path, argv, envp);
    _exit(127);
}

static int make_pipe(int p[2], bool want)
{
    p[0] = p[1] = -1;
    if (!want)
        return 0;
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    return 0;
}

int tgs_proc_start(tgs_proc **out, const char *const *argv,
                   const char *const *env, const char *input, int flags)
{
    char path[4096];
    int in[2], o[2], e[2];
    bool hold = (flags & TGS_PROC_HOLD_STDIN) != 0;
    bool capture = (flags & TGS_PROC_CAPTURE) != 0;
    bool tee = (flags & TGS_PROC_TEE_ERR) != 0;
    size_t ilen = input ? strlen(input) : 0;
    char **envp;
    tgs_proc *p;
    int rc;

    *out = NULL;
    if (ilen > INPUT_MAX)
        return tg__error_set(TG_EINVAL,
                             "input of %s too long (%zu bytes; at "
                             "most %d)",
                             argv[0], ilen, INPUT_MAX);
    if ((rc = tgs_proc_find(argv[0], path, sizeof(path))) != 0)
        return rc;
    if ((p = calloc(1, sizeof(*p))) == NULL || (envp = make_env(env)) == NULL) {
        free(p);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    p->in = p->out.fd = p->err.fd = -1;
    p->err.tail = p->err.tee = tee;
    if (make_pipe(in, hold || input != NULL) || make_pipe(o, capture) ||
        make_pipe(e, capture || tee)) {
        rc = tg__error_set(TG_EIO, "cannot run %s: pipe: %s", argv[0],
                           strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid < 0) {
        rc = tg__error_set(TG_EIO, "cannot run %s: fork: %s", argv[0],
                           strerror(errno));
        goto fail;
    }
    if (p->pid == 0)
        child(path, (char *const *)argv, envp, in, o, e, parent);
    free(envp);
    envp = NULL;
    if (in[0] >= 0)
        close(in[0]);
    if (input != NULL && ilen > 0) {
        /* Fits the empty pipe (at most 60 KiB); a short write means it
         * exited at once, and its status says why. */
        ssize_t w = write(in[1], input, ilen);
        (void)w;
    }
    if (hold)
        p->in = in[1];
    else if (in[1] >= 0)
        close(in[1]);
    if (o[1] >= 0)
        close(o[1]);
    if (e[1] >= 0)
        close(e[1]);
    p->out.fd = o[0];
    p->err.fd = e[0];
    if (p->out.fd >= 0)
        fcntl(p->out.fd, F_SETFL, O_NONBLOCK);
    if (p->err.fd >= 0)
        fcntl(p->err.fd, F_SETFL, O_NONBLOCK);
    *out = p;
    return 0;

fail:
    close_pair(in);
    close_pair(o);
    close_pair(e);
    free(envp);
    free(p);
    return rc;
}

/* `n` (at most 8 KiB, a read's) bytes of output. */
static void keep_bytes(cap *c, const char *d, size_t n)
{
    if (c->tee) {
        ssize_t w = write(2, d, n);
        (void)w;
    }
    if (c->tail && c->n + n > TGS_PROC_CAPTURE_MAX) {
        size_t drop = c->n + n - TGS_PROC_CAPTURE_MAX;
        memmove(c->buf, c->buf + drop, c->n - drop);
        c->n -= drop;
        memcpy(c->buf + c->n, d, n);
        c->n += n;
    } else {
        size_t room = TGS_PROC_CAPTURE_MAX - c->n;
        memcpy(c->buf + c->n, d, n < room ? n : room);
        c->n += n < room ? n : room;
    }
    c->buf[c->n] = '\0';
}

static void drain(cap *c)
{
    char d[8192];

    while (c->fd >= 0) {
        ssize_t r = read(c->fd, d, sizeof(d));
        if (r > 0) {
            keep_bytes(c, d, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        close(c->fd); /* end of file, or an error: nothing more */
        c->fd = -1;
    }
}

bool tgs_proc_poll(tgs_proc *p, int *wstatus)
{
    drain(&p->out);
    drain(&p->err);
    if (!p->exited) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->exited = true;
            p->status = st;
            /* What it wrote before exiting (a background child of its
             * may keep the pipe open: read only what is there). */
            drain(&p->out);
            drain(&p->err);
        } else if (r < 0 && errno == ECHILD) {
            p->exited = true;
            p->status = 0;
        }
    }
    if (p->exited && wstatus)
        *wstatus = p->status;
    return p->exited;
}

bool tgs_proc_wait(tgs_proc *p, int ms, int *wstatus)
{
    struct timespec ts = {0, 5 * 1000 * 1000};

    for (int waited = 0;; waited += 5) {
        if (tgs_proc_poll(p, wstatus))
            return true;
        if (waited >= ms)
            return false;
        nanosleep(&ts, NULL);
    }
}

const char *tgs_proc_out(const tgs_proc *p)
{
    return p->out.buf;
}

const char *tgs_proc_err(const tgs_proc *p)
{
    return p->err.buf;
}

pid_t tgs_proc_pid(const tgs_proc *p)
{
    return p->pid;
}

void tgs_proc_close_stdin(tgs_proc *p)
{
    if (p->in >= 0) {
        close(p->in);
        p->in = -1;
    }
}

void tgs_proc_kill(tgs_proc *p, int sig)
{
    if (!p->exited)
        kill(p->pid, sig);
}

void tgs_proc_free(tgs_proc *p)
{
    if (p == NULL)
        return;
    if (!tgs_proc_poll(p, NULL)) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    tgs_proc_close_stdin(p);
    if (p->out.fd >= 0)
        close(p->out.fd);
    if (p->err.fd >= 0)
        close(p->err.fd);
    free(p);
}

const char *tgs_proc_describe(int st, char *buf, size_t len)
{
    if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
    return buf;
}
