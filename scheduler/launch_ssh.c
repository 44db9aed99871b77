/* SPDX-License-Identifier: Apache-2.0
 *
 * launch_ssh.c: the ssh launcher backend (launch.h). Each unit is one
 * local OpenSSH client process (proc.h) running one worker on a host of
 * --hosts:
 *
 *   ssh [--ssh-arg...] -o BatchMode=yes HOST -- 'exec env
 *       TASKGRID_LAUNCH_ID=ID/0 WORKER_CMD ARGS... --name HOST-SEQ
 *       --exit-with-parent-fd 0'
 *
 * The worker watches its stdin, the ssh channel, and stops at its end of
 * file: closing the ssh client's held stdin stops it cleanly, and so does
 * the scheduler's death (the pipe closes, or the client dies with it).
 * A new unit goes to the host with the fewest live units (ties in turn),
 * skipping hosts backing off after a unit there ended before its worker
 * connected (1 s doubling to 60 s, per host). With a wildcard scheduler
 * address each host's workers get the local end of the route to that
 * host (util/route.h), or this machine's name.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launch.h"
#include "proc.h"
#include "taskgrid/status.h"
#include "util/error.h"
#include "util/route.h"

#define HOST_BACKOFF_FIRST_MS 1000
#define HOST_BACKOFF_MAX_MS 60000
#define STOP_TERM_MS 5000 /* after closing stdin, SIGTERM the client */
#define COMMAND_MAX (16 * 1024)
#define SSH_ARGV_MAX (8 + 256)

typedef struct ssh_host {
    const char *name;  /* as in --hosts (may be user@host or an alias) */
    char address[320]; /* the scheduler's address for workers there */
    size_t live;       /* its units alive now */
    uint32_t in_a_row; /* units that never connected, in a row */
    int64_t retry_at;  /* no start there before (ms; 0: none) */
    char last_error[512];
} ssh_host;

typedef struct ssh_unit {
    tgs_proc *proc;
    size_t host;
    bool stop_asked; /* stdin closed; SIGTERM after term_at */
    int64_t term_at; /* 0: not set yet (set at the next poll) */
    bool termed;
} ssh_unit;

typedef struct ssh_backend {
    tgs_launcher *l;
    char ssh[4096]; /* the client's path */
    ssh_host *hosts;
    size_t nhosts;
    size_t next; /* round robin among equally loaded hosts */
} ssh_backend;

/* ---- the scheduler's address per host ---- */

/* "HOST" of a --hosts entry: without "user@", without brackets. */
static void bare_host(const char *entry, char *out, size_t len)
{
    const char *at = strrchr(entry, '@');
    const char *h = at ? at + 1 : entry;
    size_t n = strlen(h);

    if (n >= 2 && h[0] == '[' && h[n - 1] == ']')
        snprintf(out, len, "%.*s", (int)(n - 2), h + 1);
    else
        snprintf(out, len, "%s", h);
}

/* opts->address with its host replaced by the route to `h` (or this
 * machine's name) when it is a wildcard; else as it is. */
static void host_address(const tgs_launcher_opts *o, ssh_host *h)
{
    const char *a = o->address, *scheme = strstr(a, "://");
    const char *port = strrchr(a, ':');
    char bare[256], ip[256]; /* an address, or this machine's name */
    size_t pre = scheme ? (size_t)(scheme + 3 - a) : 0;

    snprintf(h->address, sizeof(h->address), "%s", a);
    if (!o->wildcard || port == NULL || port < a + pre)
        return;
    bare_host(h->name, bare, sizeof(bare));
    if (!tg__route_ip(bare, "22", false, ip, sizeof(ip)) &&
        gethostname(ip, sizeof(ip)) != 0)
        return;
    ip[sizeof(ip) - 1] = '\0';
    snprintf(h->address, sizeof(h->address), "%.*s%s%s", (int)pre, a, ip, port);
}

/* ---- init ---- */

static int ssh_init(tgs_launcher *l, const tgs_launcher_opts *o, void **impl)
{
    ssh_backend *b;
    int rc;

    if (o->ssh.nhosts == 0)
        return tg__error_set(TG_EINVAL, "--launcher ssh needs --hosts "
                                        "H1,H2,... (the hosts the workers "
                                        "run on)");
    if (o->ssh.nssh_args + 8 > SSH_ARGV_MAX)
        return tg__error_set(TG_EINVAL, "too many --ssh-arg (at most %d)",
                             SSH_ARGV_MAX - 8);
    if ((b = calloc(1, sizeof(*b))) == NULL ||
        (b->hosts = calloc(o->ssh.nhosts, sizeof(*b->hosts))) == NULL) {
        free(b);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    rc = tgs_proc_find(o->ssh.ssh ? o->ssh.ssh : "ssh", b->ssh, sizeof(b->ssh));
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s", tg_error_last());
        free(b->hosts);
        free(b);
        return tg__error_set(TG_ENOTFOUND,
                             "--launcher ssh needs the OpenSSH client: %s%s",
                             why, o->ssh.ssh ? "" : " (or give --ssh PATH)");
    }
    b->l = l;
    b->nhosts = o->ssh.nhosts;
    for (size_t i = 0; i < b->nhosts; i++) {
        b->hosts[i].name = o->ssh.hosts[i];
        host_address(o, &b->hosts[i]);
    }
    *impl = b;
    return 0;
}

static uint32_t ssh_slots(void *impl)
{
    (void)impl;
    return 1;
}

/* ---- start ---- */

/* Among hosts not backing off, the one with the fewest live units (ties
 * in turn), a healthy one first: a host whose last worker never
 * connected gets one again only where no healthy host can take it, or
 * when it runs two fewer than the healthiest choice (so it is probed
 * again now and then, not every time its back-off ends). nhosts if every
 * host backs off. */
static size_t pick_host(ssh_backend *b, int64_t now)
{
    size_t ok = b->nhosts, bad = b->nhosts, best;

    for (size_t k = 0; k < b->nhosts; k++) {
        size_t i = (b->next + k) % b->nhosts;
        size_t *pick = b->hosts[i].in_a_row == 0 ? &ok : &bad;
        if (b->hosts[i].retry_at > now)
            continue;
        if (*pick == b->nhosts || b->hosts[i].live < b->hosts[*pick].live)
            *pick = i;
    }
    best = ok;
    if (ok == b->nhosts ||
        (bad < b->nhosts && b->hosts[bad].live + 2 <= b->hosts[ok].live))
        best = bad;
    if (best < b->nhosts)
        b->next = (best + 1) % b->nhosts;
    return best;
}

static int all_backing_off(ssh_backend *b, int64_t now)
{
    char text[1500] = "";
    size_t n = 0;

    for (size_t i = 0; i < b->nhosts && n + 400 < sizeof(text); i++)
        n += (size_t)snprintf(
            text + n, sizeof(text) - n, "%s%s (retry in %lld ms; %.300s)",
            i ? ", " : "", b->hosts[i].name,
            (long long)(b->hosts[i].retry_at - now), b->hosts[i].last_error);
    return tg__error_set(TG_ESTATE,
                         "every ssh host is backing off after workers that "
                         "never connected: %s",
                         text);
}

/* The remote shell command of unit `u` on host `h`, quoted, into `cmd`. */
static bool remote_command(ssh_backend *b, const tgs_unit *u, const ssh_host *h,
                           char *cmd, size_t cap)
{
    const tgs_launcher_opts *o = tgs__launch_opts(b->l);
    const char *const *args;
    char id[TGS_UNIT_ID_MAX + 32], name[320];
    size_t n;
    bool ok;

    args = tgs__worker_args(b->l, &n);
    snprintf(id, sizeof(id), "TASKGRID_LAUNCH_ID=%s/0", u->id);
    snprintf(name, sizeof(name), "%s-%s", h->name, strrchr(u->id, '-') + 1);
    snprintf(cmd, cap, "exec env ");
    ok = tgs__shell_quote(cmd, cap, id);
    if (ok && strlen(cmd) + 1 < cap)
        strcat(cmd, " ");
    if (o->worker_cmd != NULL) {
        ok = ok && strlen(cmd) + strlen(o->worker_cmd) + 1 < cap;
        if (ok)
            strcat(cmd, o->worker_cmd);
    } else {
        ok = ok && tgs__shell_quote(cmd, cap, o->worker_bin);
    }
    for (size_t i = 0; ok && i < n; i++) {
        ok = strlen(cmd) + 2 < cap;
        if (ok)
            strcat(cmd, " ");
        ok = ok && tgs__shell_quote(cmd, cap, i == 0 ? h->address : args[i]);
    }
    ok = ok && strlen(cmd) + 8 < cap;
    if (ok)
        strcat(cmd, " --name ");
    ok = ok && tgs__shell_quote(cmd, cap, name);
    ok = ok && strlen(cmd) + 32 < cap;
    if (ok)
        strcat(cmd, " --exit-with-parent-fd 0");
    return ok;
}

static int ssh_start(void *impl, tgs_unit *u, int64_t now_ms)
{
    ssh_backend *b = impl;
    const tgs_launcher_opts *o = tgs__launch_opts(b->l);
    const char *argv[SSH_ARGV_MAX];
    size_t argc = 0, hi = pick_host(b, now_ms);
    ssh_unit *d;
    char *cmd;
    int rc;

    if (o->worker_cmd == NULL && o->worker_bin == NULL)
        return tg__error_set(TG_EINVAL, "the ssh launcher needs "
                                        "--worker-command or --worker-bin");
    if (hi == b->nhosts)
        return all_backing_off(b, now_ms);
    if ((cmd = malloc(COMMAND_MAX)) == NULL ||
        (d = calloc(1, sizeof(*d))) == NULL) {
        free(cmd);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    if (!remote_command(b, u, &b->hosts[hi], cmd, COMMAND_MAX)) {
        free(cmd);
        free(d);
        return tg__error_set(TG_EINVAL,
                             "the worker command for %s is longer "
                             "than %d bytes",
                             b->hosts[hi].name, COMMAND_MAX);
    }
    argv[argc++] = b->ssh;
    for (size_t i = 0; i < o->ssh.nssh_args; i++)
        argv[argc++] = o->ssh.ssh_args[i];
    argv[argc++] = "-o";
    argv[argc++] = "BatchMode=yes";
    argv[argc++] = b->hosts[hi].name;
    argv[argc++] = "--";
    argv[argc++] = cmd;
    argv[argc] = NULL;
    rc = tgs_proc_start(&d->proc, argv, NULL, NULL,
                        TGS_PROC_HOLD_STDIN | TGS_PROC_TEE_ERR);
    free(cmd);
    if (rc != 0) {
        free(d);
        return rc;
    }
    d->host = hi;
    b->hosts[hi].live++;
    u->data = d;
    snprintf(u->where, sizeof(u->where), "%s", b->hosts[hi].name);
    return 0;
}

/* ---- poll ---- */

/* The last (at most two) non-empty lines of `err`, joined by "; ". */
static void last_lines(const char *err, char *out, size_t len)
{
    const char *end = err + strlen(err), *start;
    int lines = 0;

    while (end > err && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    start = end;
    while (start > err && lines < 2) {
        if (start[-1] == '\n') {
            lines++;
            if (lines == 2)
                break;
        }
        start--;
    }
    out[0] = '\0';
    for (size_t n = 0; start < end && n + 3 < len; start++) {
        if (*start == '\r')
            continue;
        if (*start == '\n') {
            out[n++] = ';';
            out[n++] = ' ';
        } else {
            out[n++] = (*start >= 0 && *start < ' ') ? ' ' : *start;
        }
        out[n] = '\0';
    }
}

/* Unit `u`'s ssh exited with `st`: say why, back the host off if its
 * worker never connected, and end the unit. */
static void unit_exited(ssh_backend *b, tgs_unit *u, int st, int64_t now)
{
    ssh_unit *d = u->data;
    ssh_host *h = &b->hosts[d->host];
    char how[64], tail[320], why[512];

    tgs_proc_describe(st, how, sizeof(how));
    last_lines(tgs_proc_err(d->proc), tail, sizeof(tail));
    snprintf(why, sizeof(why), "ssh to %s %s%s%s", h->name, how,
             tail[0] ? ": " : "", tail);
    h->live--;
    if (!u->ever_seen && !u->stopping) {
        int64_t wait = HOST_BACKOFF_FIRST_MS;
        for (uint32_t i = 0; i < h->in_a_row && wait < HOST_BACKOFF_MAX_MS; i++)
            wait *= 2;
        h->in_a_row++;
        h->retry_at =
            now + (wait < HOST_BACKOFF_MAX_MS ? wait : HOST_BACKOFF_MAX_MS);
        snprintf(h->last_error, sizeof(h->last_error), "%s", why);
    }
    tgs__unit_ended(b->l, u, why);
}

static void ssh_poll(void *impl, int64_t now_ms)
{
    ssh_backend *b = impl;

    for (size_t i = tgs__unit_count(b->l); i-- > 0;) {
        tgs_unit *u = tgs__unit_get(b->l, i);
        ssh_unit *d = u->data;
        int st = 0;

        if (d == NULL)
            continue;
        if (u->ever_seen) {
            b->hosts[d->host].in_a_row = 0;
            b->hosts[d->host].retry_at = 0;
        }
        if (tgs_proc_poll(d->proc, &st)) {
            unit_exited(b, u, st, now_ms);
            continue;
        }
        if (d->stop_asked && d->term_at == 0)
            d->term_at = now_ms + STOP_TERM_MS;
        if (d->stop_asked && !d->termed && now_ms >= d->term_at) {
            tgs_proc_kill(d->proc, SIGTERM);
            d->termed = true;
        }
    }
}

/* ---- stop, forget, destroy ---- */

static void ssh_stop(void *impl, tgs_unit *u)
{
    ssh_unit *d = u->data;

    (void)impl;
    if (d == NULL)
        return;
    tgs_proc_close_stdin(d->proc);
    d->stop_asked = true;
}

static void ssh_forget(void *impl, tgs_unit *u)
{
    ssh_unit *d = u->data;

    (void)impl;
    if (d == NULL)
        return;
    tgs_proc_free(d->proc);
    free(d);
    u->data = NULL;
}

/* Wait up to `ms` for every client to exit; true if they all did. */
static bool wait_all(ssh_backend *b, size_t n, int ms)
{
    struct timespec ts = {0, 10 * 1000 * 1000};

    for (int waited = 0;; waited += 10) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++) {
            ssh_unit *d = tgs__unit_get(b->l, i)->data;
            left += d != NULL && !tgs_proc_poll(d->proc, NULL);
        }
        if (left == 0)
            return true;
        if (waited >= ms)
            return false;
        nanosleep(&ts, NULL);
    }
}

static void ssh_destroy(void *impl, int grace_ms)
{
    ssh_backend *b = impl;
    size_t n = tgs__unit_count(b->l);

    /* End of file on every worker's stdin (the front asked them to stop
     * already), a bounded wait, then SIGTERM (the connection closes, and
     * with it the worker's stdin), then SIGKILL in tgs_proc_free. */
    for (size_t i = 0; i < n; i++)
        ssh_stop(b, tgs__unit_get(b->l, i));
    if (!wait_all(b, n, grace_ms)) {
        for (size_t i = 0; i < n; i++) {
            ssh_unit *d = tgs__unit_get(b->l, i)->data;
            if (d != NULL)
                tgs_proc_kill(d->proc, SIGTERM);
        }
        wait_all(b, n, 1000);
    }
    for (size_t i = 0; i < n; i++)
        ssh_forget(b, tgs__unit_get(b->l, i));
    free(b->hosts);
    free(b);
}

const tgs_launch_ops tgs__launch_ssh = {
    .kind = "ssh",
    .init = ssh_init,
    .slots = ssh_slots,
    .start = ssh_start,
    .poll = ssh_poll,
    .stop = ssh_stop,
    .forget = ssh_forget,
    .destroy = ssh_destroy,
    .script = NULL,
};
