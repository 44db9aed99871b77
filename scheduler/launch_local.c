/* SPDX-License-Identifier: Apache-2.0
 *
 * launch_local.c: the local launcher backend (launch.h): each unit is one
 * taskgrid-worker child of the scheduler (fork/exec), which dies with it
 * (PR_SET_PDEATHSIG), reaped without blocking, and stopped with SIGTERM
 * (a second SIGTERM means "now" to a worker).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"
#include "taskgrid/status.h"
#include "util/error.h"

typedef struct local {
    tgs_launcher *l;
    bool terminated; /* SIGTERM already sent to every child */
} local;

static int local_init(tgs_launcher *l, const tgs_launcher_opts *o, void **impl)
{
    local *b;

    if (o->worker_bin == NULL)
        return tg__error_set(TG_EINVAL, "the local launcher needs the "
                                        "taskgrid-worker program");
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    b->l = l;
    *impl = b;
    return 0;
}

static uint32_t local_slots(void *impl)
{
    (void)impl;
    return 1;
}

static pid_t pid_of(const tgs_unit *u)
{
    return (pid_t)(intptr_t)u->data;
}

static int local_start(void *impl, tgs_unit *u, int64_t now_ms)
{
    local *b = impl;
    const tgs_launcher_opts *o = tgs__launch_opts(b->l);
    const char *argv[4 + 130];
    const char *const *args;
    size_t n, argc = 0;
    char name[64], launch_id[TGS_UNIT_ID_MAX + 16];
    pid_t parent = getpid(), pid;

    (void)now_ms;
    args = tgs__worker_args(b->l, &n);
    /* local-SEQ, as before units: the unit id ends with the sequence. */
    snprintf(name, sizeof(name), "local-%s", strrchr(u->id, '-') + 1);
    snprintf(launch_id, sizeof(launch_id), "%s/0", u->id);
    argv[argc++] = o->worker_bin;
    argv[argc++] = args[0];
    argv[argc++] = "--name";
    argv[argc++] = name;
    for (size_t i = 1; i < n; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    pid = fork();
    if (pid < 0)
        return tg__error_set(TG_EIO, "cannot start a worker process: %s",
                             strerror(errno));
    if (pid == 0) {
        /* The worker must not outlive the scheduler. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        setenv("TASKGRID_LAUNCH_ID", launch_id, 1);
        execv(o->worker_bin, (char *const *)argv);
        fprintf(stderr, "taskgrid-scheduler: cannot run %s: %s\n",
                o->worker_bin, strerror(errno));
        _exit(127);
    }
    u->data = (void *)(intptr_t)pid;
    snprintf(u->where, sizeof(u->where), "pid %ld", (long)pid);
    return 0;
}

static void local_poll(void *impl, int64_t now_ms)
{
    local *b = impl;

    (void)now_ms;
    for (size_t i = tgs__unit_count(b->l); i-- > 0;) {
        tgs_unit *u = tgs__unit_get(b->l, i);
        char why[64];
        int st = 0;
        pid_t r = waitpid(pid_of(u), &st, WNOHANG);
        if (r != pid_of(u) && !(r < 0 && errno == ECHILD))
            continue;
        if (r > 0 && WIFSIGNALED(st))
            snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
        else
            snprintf(why, sizeof(why), "exited with status %d",
                     r > 0 ? WEXITSTATUS(st) : 0);
        tgs__unit_ended(b->l, u, why);
    }
}

static void local_stop(void *impl, tgs_unit *u)
{
    (void)impl;
    kill(pid_of(u), SIGTERM);
}

static void local_destroy(void *impl, int grace_ms)
{
    local *b = impl;
    struct timespec ts = {0, 10 * 1000 * 1000};
    size_t n = tgs__unit_count(b->l);
    int waited = 0;
    size_t left;

    /* Bounded wait for a clean exit (the front sent SIGTERM), then
     * force. Reaped children are marked with pid 0. */
    do {
        left = 0;
        for (size_t i = 0; i < n; i++) {
            tgs_unit *u = tgs__unit_get(b->l, i);
            if (pid_of(u) == 0)
                continue;
            if (waitpid(pid_of(u), NULL, WNOHANG) != 0)
                u->data = NULL;
            else
                left++;
        }
        if (left == 0 || waited >= grace_ms)
            break;
        nanosleep(&ts, NULL);
        waited += 10;
    } while (1);
    for (size_t i = 0; i < n; i++) {
        tgs_unit *u = tgs__unit_get(b->l, i);
        if (pid_of(u) != 0) {
            kill(pid_of(u), SIGKILL);
            waitpid(pid_of(u), NULL, 0);
        }
    }
    free(b);
}

const tgs_launch_ops tgs__launch_local = {
    .kind = "local",
    .init = local_init,
    .slots = local_slots,
    .start = local_start,
    .poll = local_poll,
    .stop = local_stop,
    .forget = NULL,
    .destroy = local_destroy,
    .script = NULL,
};
