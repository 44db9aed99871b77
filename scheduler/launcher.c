/* SPDX-License-Identifier: Apache-2.0
 *
 * launcher.c: the local launcher (see launcher.h): fork/exec of
 * taskgrid-worker children, reaping, and bounded tear-down. The number of
 * children is small (the cluster's workers), so a flat array is enough.
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

#include "launcher.h"
#include "taskgrid/status.h"
#include "util/array.h"
#include "util/error.h"

typedef struct child {
    pid_t pid;
    char id[32];
    bool retiring;
} child;

struct tgs_launcher {
    char *worker_bin;
    char *address;
    char nthreads[16];
    char *resources;
    char **preload;
    size_t npreload;
    char *log_level;
    char *memory_limit;
    char *tls_ca, *tls_cert, *tls_key;
    child *kids;
    size_t nkids, cap;
    uint64_t seq;
    bool terminated; /* SIGTERM already sent to every child */
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int tgs_launcher_new(tgs_launcher **out, const tgs_launcher_opts *o)
{
    tgs_launcher *l = calloc(1, sizeof(*l));

    *out = NULL;
    if (l == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    l->worker_bin = strdup(o->worker_bin);
    l->address = strdup(o->address);
    if (o->nthreads)
        snprintf(l->nthreads, sizeof(l->nthreads), "%u", o->nthreads);
    l->resources = dup_or_null(o->resources);
    l->log_level = dup_or_null(o->log_level);
    l->memory_limit = dup_or_null(o->memory_limit);
    l->tls_ca = dup_or_null(o->tls_ca);
    l->tls_cert = dup_or_null(o->tls_cert);
    l->tls_key = dup_or_null(o->tls_key);
    if (o->npreload) {
        l->preload = calloc(o->npreload, sizeof(char *));
        for (size_t i = 0; l->preload && i < o->npreload; i++)
            l->preload[i] = strdup(o->preload[i]);
        l->npreload = o->npreload;
    }
    *out = l;
    return 0;
}

int tgs_launcher_spawn(tgs_launcher *l, char *id, size_t idlen)
{
    char *argv[32 + 64];
    size_t argc = 0;
    char name[64];
    pid_t parent = getpid(), pid;

    if (tg__array_grow(&l->kids, &l->cap, l->nkids + 1, sizeof(*l->kids)) !=
        TG_OK)
        return tg__error_set(TG_ENOMEM, "out of memory");
    l->seq++;
    snprintf(id, idlen, "%ld-%llu", (long)parent, (unsigned long long)l->seq);
    snprintf(name, sizeof(name), "local-%llu", (unsigned long long)l->seq);
    argv[argc++] = l->worker_bin;
    argv[argc++] = l->address;
    argv[argc++] = "--name";
    argv[argc++] = name;
    if (l->nthreads[0]) {
        argv[argc++] = "--nthreads";
        argv[argc++] = l->nthreads;
    }
    if (l->resources) {
        argv[argc++] = "--resources";
        argv[argc++] = l->resources;
    }
    if (l->memory_limit) {
        argv[argc++] = "--memory-limit";
        argv[argc++] = l->memory_limit;
    }
    if (l->log_level) {
        argv[argc++] = "--log-level";
        argv[argc++] = l->log_level;
    }
    if (l->tls_ca && l->tls_cert && l->tls_key) {
        argv[argc++] = "--tls-ca";
        argv[argc++] = l->tls_ca;
        argv[argc++] = "--tls-cert";
        argv[argc++] = l->tls_cert;
        argv[argc++] = "--tls-key";
        argv[argc++] = l->tls_key;
    }
    for (size_t i = 0; i < l->npreload && argc + 3 < 32 + 64; i++) {
        argv[argc++] = "--preload";
        argv[argc++] = l->preload[i];
    }
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
        setenv("TASKGRID_LAUNCH_ID", id, 1);
        execv(l->worker_bin, argv);
        fprintf(stderr, "taskgrid-scheduler: cannot run %s: %s\n",
                l->worker_bin, strerror(errno));
        _exit(127);
    }
    l->kids[l->nkids].pid = pid;
    snprintf(l->kids[l->nkids].id, sizeof(l->kids[l->nkids].id), "%s", id);
    l->kids[l->nkids].retiring = false;
    l->nkids++;
    return 0;
}

static void remove_at(tgs_launcher *l, size_t i)
{
    l->kids[i] = l->kids[--l->nkids];
}

void tgs_launcher_reap(tgs_launcher *l, tgs_launcher_exit_fn fn, void *ud)
{
    for (size_t i = 0; i < l->nkids;) {
        int st;
        pid_t r = waitpid(l->kids[i].pid, &st, WNOHANG);
        if (r == l->kids[i].pid || (r < 0 && errno == ECHILD)) {
            char id[32];
            snprintf(id, sizeof(id), "%s", l->kids[i].id);
            remove_at(l, i);
            if (fn)
                fn(ud, id, r < 0 ? 0 : st);
            continue;
        }
        i++;
    }
}

size_t tgs_launcher_active(const tgs_launcher *l)
{
    size_t n = 0;

    for (size_t i = 0; i < l->nkids; i++)
        n += !l->kids[i].retiring;
    return n;
}

static child *find(const tgs_launcher *l, const char *id)
{
    for (size_t i = 0; i < l->nkids; i++)
        if (strcmp(l->kids[i].id, id) == 0)
            return &l->kids[i];
    return NULL;
}

bool tgs_launcher_owns(const tgs_launcher *l, const char *id)
{
    return find(l, id) != NULL;
}

void tgs_launcher_retire(tgs_launcher *l, const char *id)
{
    child *c = find(l, id);

    if (c)
        c->retiring = true;
}

bool tgs_launcher_pick(const tgs_launcher *l,
                       bool (*connected)(void *ud, const char *id), void *ud,
                       char *id, size_t idlen)
{
    const child *best = NULL;

    /* Newest first: the last started are the least likely to hold work. */
    for (size_t i = l->nkids; i-- > 0;) {
        const child *c = &l->kids[i];
        if (c->retiring)
            continue;
        if (!connected(ud, c->id)) {
            best = c;
            break;
        }
        if (best == NULL)
            best = c;
    }
    if (best == NULL)
        return false;
    snprintf(id, idlen, "%s", best->id);
    return true;
}

void tgs_launcher_signal(tgs_launcher *l, const char *id, int sig)
{
    child *c = find(l, id);

    if (c)
        kill(c->pid, sig);
}

void tgs_launcher_terminate(tgs_launcher *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nkids; i++)
        kill(l->kids[i].pid, SIGTERM);
    l->terminated = true;
}

void tgs_launcher_free(tgs_launcher *l, int grace_ms)
{
    struct timespec ts = {0, 10 * 1000 * 1000};
    int waited = 0;

    if (l == NULL)
        return;
    if (!l->terminated) /* a second SIGTERM means "now" to a worker */
        tgs_launcher_terminate(l);
    /* Bounded wait for a clean exit, then force. */
    while (l->nkids > 0 && waited < grace_ms) {
        tgs_launcher_reap(l, NULL, NULL);
        if (l->nkids == 0)
            break;
        nanosleep(&ts, NULL);
        waited += 10;
    }
    for (size_t i = 0; i < l->nkids; i++) {
        kill(l->kids[i].pid, SIGKILL);
        waitpid(l->kids[i].pid, NULL, 0);
    }
    free(l->kids);
    free(l->worker_bin);
    free(l->address);
    free(l->resources);
    free(l->log_level);
    free(l->memory_limit);
    free(l->tls_ca);
    free(l->tls_cert);
    free(l->tls_key);
    for (size_t i = 0; i < l->npreload; i++)
        free(l->preload[i]);
    free(l->preload);
    free(l);
}
