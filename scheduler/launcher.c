/* SPDX-License-Identifier: Apache-2.0
 *
 * launcher.c: the launcher front (see launcher.h): a copy of the options,
 * the unit table (oldest first: units are few, the cluster's workers, so
 * a flat array and linear searches are enough), the counts scaling needs,
 * the back-off after failed starts, and the worker argument list the
 * backends (launch.h) share.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch.h"
#include "taskgrid/status.h"
#include "util/array.h"
#include "util/error.h"
#include "util/log.h"

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 60000
#define WORKER_ARGS_MAX 128

struct tgs_launcher {
    const tgs_launch_ops *ops;
    void *impl;
    tgs_launcher_opts o; /* strings below are copies, in `owned` */
    char **owned;
    size_t nowned, capowned;
    const char *args[WORKER_ARGS_MAX + 1];
    size_t nargs;
    char nthreads[16];
    tgs_unit **units;
    size_t nunits, capunits;
    uint64_t seq;
    uint32_t slots;
    /* Failed starts: all of them, and in a row (the back-off). */
    uint64_t failures;
    uint32_t in_a_row;
    int64_t retry_at_ms;
    char last_error[512];
};

static const tgs_launch_ops *const kinds[] = {
    &tgs__launch_local,
    &tgs__launch_slurm,
    &tgs__launch_ssh,
};

static const tgs_launch_ops *find_kind(const char *kind)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i]->kind, kind ? kind : "local") == 0)
            return kinds[i];
    return NULL;
}

/* ---- a deep copy of the options ---- */

static const char *keep(tgs_launcher *l, const char *s)
{
    char *d;

    if (s == NULL)
        return NULL;
    if (tg__array_grow(&l->owned, &l->capowned, l->nowned + 1,
                       sizeof(*l->owned)) != TG_OK ||
        (d = strdup(s)) == NULL)
        return NULL;
    l->owned[l->nowned++] = d;
    return d;
}

static const char *const *keep_list(tgs_launcher *l, const char *const *v,
                                    size_t n)
{
    const char **d;

    if (n == 0)
        return NULL;
    if (tg__array_grow(&l->owned, &l->capowned, l->nowned + 1,
                       sizeof(*l->owned)) != TG_OK ||
        (d = calloc(n, sizeof(*d))) == NULL)
        return NULL;
    l->owned[l->nowned++] = (char *)d;
    for (size_t i = 0; i < n; i++)
        d[i] = keep(l, v[i]);
    return d;
}

static void copy_opts(tgs_launcher *l, const tgs_launcher_opts *o)
{
    tgs_launcher_opts *d = &l->o;

    *d = *o;
    d->kind = keep(l, o->kind ? o->kind : "local");
    d->worker_bin = keep(l, o->worker_bin);
    d->worker_cmd = keep(l, o->worker_cmd);
    d->address = keep(l, o->address);
    d->resources = keep(l, o->resources);
    d->preload = keep_list(l, o->preload, o->npreload);
    d->log_level = keep(l, o->log_level);
    d->memory_limit = keep(l, o->memory_limit);
    d->tls_ca = keep(l, o->tls_ca);
    d->tls_cert = keep(l, o->tls_cert);
    d->tls_key = keep(l, o->tls_key);
    d->death_timeout = keep(l, o->death_timeout);
    d->extra_args = keep_list(l, o->extra_args, o->nextra_args);
    d->job.memory = keep(l, o->job.memory);
    d->job.queue = keep(l, o->job.queue);
    d->job.account = keep(l, o->job.account);
    d->job.walltime = keep(l, o->job.walltime);
    d->job.name = keep(l, o->job.name);
    d->job.log_dir = keep(l, o->job.log_dir);
    d->job.directives = keep_list(l, o->job.directives, o->job.ndirectives);
    d->job.prologue = keep_list(l, o->job.prologue, o->job.nprologue);
    d->job.bin_dir = keep(l, o->job.bin_dir);
    d->ssh.hosts = keep_list(l, o->ssh.hosts, o->ssh.nhosts);
    d->ssh.ssh = keep(l, o->ssh.ssh);
    d->ssh.ssh_args = keep_list(l, o->ssh.ssh_args, o->ssh.nssh_args);
}

static void add_arg(tgs_launcher *l, const char *a)
{
    if (l->nargs < WORKER_ARGS_MAX)
        l->args[l->nargs++] = a;
}

static void build_args(tgs_launcher *l)
{
    const tgs_launcher_opts *o = &l->o;

    add_arg(l, o->address);
    if (o->nthreads) {
        snprintf(l->nthreads, sizeof(l->nthreads), "%u", o->nthreads);
        add_arg(l, "--nthreads");
        add_arg(l, l->nthreads);
    }
    if (o->resources) {
        add_arg(l, "--resources");
        add_arg(l, o->resources);
    }
    if (o->memory_limit) {
        add_arg(l, "--memory-limit");
        add_arg(l, o->memory_limit);
    }
    if (o->log_level) {
        add_arg(l, "--log-level");
        add_arg(l, o->log_level);
    }
    if (o->tls_ca && o->tls_cert && o->tls_key) {
        add_arg(l, "--tls-ca");
        add_arg(l, o->tls_ca);
        add_arg(l, "--tls-cert");
        add_arg(l, o->tls_cert);
        add_arg(l, "--tls-key");
        add_arg(l, o->tls_key);
    }
    for (size_t i = 0; i < o->npreload; i++) {
        add_arg(l, "--preload");
        add_arg(l, o->preload[i]);
    }
    if (o->death_timeout) {
        add_arg(l, "--death-timeout");
        add_arg(l, o->death_timeout);
    }
    for (size_t i = 0; i < o->nextra_args; i++)
        add_arg(l, o->extra_args[i]);
    l->args[l->nargs] = NULL;
}

static void free_owned(tgs_launcher *l)
{
    for (size_t i = 0; i < l->nowned; i++)
        free(l->owned[i]);
    free(l->owned);
}

int tgs_launcher_new(tgs_launcher **out, const tgs_launcher_opts *opts)
{
    const tgs_launch_ops *ops = find_kind(opts->kind);
    tgs_launcher *l;
    size_t nargs = 1 + 2 * 6 + 6 + 2 * opts->npreload + opts->nextra_args;
    int rc;

    *out = NULL;
    if (ops == NULL)
        return tg__error_set(TG_EINVAL,
                             "unknown launcher '%s' (use local, slurm, ssh "
                             "or none)",
                             opts->kind);
    if (nargs > WORKER_ARGS_MAX)
        return tg__error_set(TG_EINVAL,
                             "too many worker arguments (%zu; at most %d)",
                             nargs, WORKER_ARGS_MAX);
    if ((l = calloc(1, sizeof(*l))) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    l->ops = ops;
    copy_opts(l, opts);
    build_args(l);
    rc = ops->init(l, &l->o, &l->impl);
    if (rc != 0) {
        free_owned(l);
        free(l);
        return rc;
    }
    l->slots = ops->slots(l->impl);
    if (l->slots == 0 || l->slots > TGS_UNIT_SLOTS_MAX)
        l->slots = 1;
    *out = l;
    return 0;
}

const char *tgs_launcher_kind(const tgs_launcher *l)
{
    return l->ops->kind;
}

uint32_t tgs_launcher_slots(const tgs_launcher *l)
{
    return l->slots;
}

/* ---- for backends ---- */

const tgs_launcher_opts *tgs__launch_opts(const tgs_launcher *l)
{
    return &l->o;
}

const char *const *tgs__worker_args(const tgs_launcher *l, size_t *n)
{
    if (n)
        *n = l->nargs;
    return l->args;
}

size_t tgs__unit_count(const tgs_launcher *l)
{
    return l->nunits;
}

tgs_unit *tgs__unit_get(tgs_launcher *l, size_t i)
{
    return i < l->nunits ? l->units[i] : NULL;
}

tgs_unit *tgs__unit_find(tgs_launcher *l, const char *id)
{
    for (size_t i = 0; i < l->nunits; i++)
        if (strcmp(l->units[i]->id, id) == 0)
            return l->units[i];
    return NULL;
}

void tgs__unit_state(tgs_launcher *l, tgs_unit *u, const char *state,
                     const char *where)
{
    (void)l;
    if (where != NULL)
        snprintf(u->where, sizeof(u->where), "%s", where);
    if (state != NULL && strcmp(u->state, state) != 0) {
        TG_LOG_INFO("%s (%s): %s", u->id, u->where, state);
        snprintf(u->state, sizeof(u->state), "%s", state);
    }
}

static void failed(tgs_launcher *l, const char *text)
{
    int64_t wait = BACKOFF_FIRST_MS;

    l->failures++;
    for (uint32_t i = 0; i < l->in_a_row && wait < BACKOFF_MAX_MS; i++)
        wait *= 2;
    if (wait > BACKOFF_MAX_MS)
        wait = BACKOFF_MAX_MS;
    l->in_a_row++;
    snprintf(l->last_error, sizeof(l->last_error), "%s", text);
    l->retry_at_ms = -wait; /* made absolute by the next start or poll */
    TG_LOG_ERROR("%s launcher: %s (next start in %lld ms)", l->ops->kind, text,
                 (long long)wait);
}

void tgs__launch_failed(tgs_launcher *l, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    failed(l, text);
}

void tgs__unit_ended(tgs_launcher *l, tgs_unit *u, const char *why)
{
    size_t i;

    for (i = 0; i < l->nunits && l->units[i] != u; i++)
        ;
    if (i == l->nunits)
        return;
    if (!u->ever_seen && !u->stopping && strcmp(u->state, "starting") == 0)
        tgs__launch_failed(l, "%s could not start: %s", u->id, why);
    else if (!u->ever_seen && !u->stopping)
        tgs__launch_failed(l,
                           "%s (%s) ended before any of its workers "
                           "connected: %s",
                           u->id, u->where, why);
    else
        TG_LOG_INFO("%s (%s) ended: %s", u->id, u->where, why);
    if (l->ops->forget)
        l->ops->forget(l->impl, u);
    memmove(&l->units[i], &l->units[i + 1],
            (l->nunits - i - 1) * sizeof(*l->units));
    l->nunits--;
    free(u);
}

bool tgs__shell_quote(char *buf, size_t cap, const char *word)
{
    size_t n = strlen(buf);

    if (n + 1 >= cap)
        return false;
    buf[n++] = '\'';
    for (const char *p = word; *p; p++) {
        if (*p == '\'') {
            if (n + 4 >= cap)
                return false;
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            if (n + 1 >= cap)
                return false;
            buf[n++] = *p;
        }
    }
    if (n + 2 > cap)
        return false;
    buf[n++] = '\'';
    buf[n] = '\0';
    return true;
}

/* ---- scaling's view ---- */

/* A relative back-off (set by a failure) becomes absolute at `now`. */
static void settle(tgs_launcher *l, int64_t now_ms)
{
    if (l->retry_at_ms < 0)
        l->retry_at_ms = now_ms - l->retry_at_ms;
}

bool tgs_launcher_ready(const tgs_launcher *l, int64_t now_ms)
{
    tgs_launcher *m = (tgs_launcher *)l;

    settle(m, now_ms);
    return now_ms >= l->retry_at_ms;
}

int tgs_launcher_start(tgs_launcher *l, int64_t now_ms)
{
    tgs_unit *u;
    int rc;

    if (tg__array_grow(&l->units, &l->capunits, l->nunits + 1,
                       sizeof(*l->units)) != TG_OK ||
        (u = calloc(1, sizeof(*u))) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    l->seq++;
    snprintf(u->id, sizeof(u->id), "%s-%ld-%llu", l->ops->kind, (long)getpid(),
             (unsigned long long)l->seq);
    u->slots = l->slots;
    u->started_ms = now_ms;
    snprintf(u->state, sizeof(u->state), "starting");
    rc = l->ops->start(l->impl, u, now_ms);
    if (rc != 0) {
        failed(l, tg_error_last());
        settle(l, now_ms);
        if (l->ops->forget)
            l->ops->forget(l->impl, u);
        free(u);
        return rc;
    }
    l->units[l->nunits++] = u;
    TG_LOG_INFO("started %s (%s)", u->id, u->where);
    return 0;
}

void tgs_launcher_poll(tgs_launcher *l, int64_t now_ms)
{
    l->ops->poll(l->impl, now_ms);
    settle(l, now_ms);
}

/* The unit of "ID/K" and K; NULL if none. Launch ids come from the
 * network: only compared, never trusted further. */
static tgs_unit *unit_of(const tgs_launcher *l, const char *launch_id,
                         uint32_t *k)
{
    const char *slash = strrchr(launch_id, '/');
    char *end;
    unsigned long v;
    size_t n;

    if (slash == NULL || slash[1] < '0' || slash[1] > '9')
        return NULL;
    errno = 0;
    v = strtoul(slash + 1, &end, 10);
    if (errno || *end != '\0' || v >= TGS_UNIT_SLOTS_MAX)
        return NULL;
    n = (size_t)(slash - launch_id);
    for (size_t i = 0; i < l->nunits; i++) {
        tgs_unit *u = l->units[i];
        if (strlen(u->id) == n && memcmp(u->id, launch_id, n) == 0 &&
            v < u->slots) {
            *k = (uint32_t)v;
            return u;
        }
    }
    return NULL;
}

void tgs_launcher_seen(tgs_launcher *l, const char *launch_id)
{
    uint32_t k;
    tgs_unit *u = unit_of(l, launch_id, &k);

    if (u == NULL)
        return;
    if (!u->ever_seen) {
        u->ever_seen = true;
        if (strcmp(u->state, "running") != 0)
            tgs__unit_state(l, u, "running", NULL);
    }
    l->in_a_row = 0;
    l->retry_at_ms = 0;
}

static uint32_t popcount64(uint64_t v)
{
    uint32_t n = 0;

    for (; v; v &= v - 1)
        n++;
    return n;
}

static size_t unit_active(const tgs_unit *u)
{
    return u->stopping ? 0 : u->slots - popcount64(u->retired);
}

size_t tgs_launcher_active(const tgs_launcher *l)
{
    size_t n = 0;

    for (size_t i = 0; i < l->nunits; i++)
        n += unit_active(l->units[i]);
    return n;
}

bool tgs_launcher_owns(const tgs_launcher *l, const char *launch_id)
{
    uint32_t k;

    return unit_of(l, launch_id, &k) != NULL;
}

void tgs_launcher_retire(tgs_launcher *l, const char *launch_id)
{
    uint32_t k;
    tgs_unit *u = unit_of(l, launch_id, &k);

    if (u != NULL)
        u->retired |= (uint64_t)1 << k;
}

/* How many of `u`'s workers are connected. */
static uint32_t connected_of(const tgs_unit *u,
                             tgs_launcher_connected_fn connected, void *ud)
{
    char id[TGS_UNIT_ID_MAX + 16];
    uint32_t n = 0;

    for (uint32_t k = 0; k < u->slots; k++) {
        snprintf(id, sizeof(id), "%s/%u", u->id, k);
        n += connected(ud, id);
    }
    return n;
}

bool tgs_launcher_stop_idle(tgs_launcher *l, size_t keep,
                            tgs_launcher_connected_fn connected, void *ud)
{
    size_t active = tgs_launcher_active(l);

    /* Newest first: the last started are the furthest from running. */
    for (size_t i = l->nunits; i-- > 0;) {
        tgs_unit *u = l->units[i];
        size_t mine = unit_active(u);
        if (u->stopping || mine == 0 || active - mine < keep ||
            connected_of(u, connected, ud) > 0)
            continue;
        TG_LOG_INFO("stopping %s (%s): not needed, and no worker of it "
                    "connected",
                    u->id, u->where);
        u->stopping = true;
        l->ops->stop(l->impl, u);
        return true;
    }
    return false;
}

uint64_t tgs_launcher_failures(const tgs_launcher *l, const char **last)
{
    if (last)
        *last = l->last_error;
    return l->failures;
}

bool tgs_launcher_unit_at(const tgs_launcher *l, size_t i, tgs_unit_info *out)
{
    const tgs_unit *u;

    if (i >= l->nunits)
        return false;
    u = l->units[i];
    out->id = u->id;
    out->state = u->stopping ? "stopping" : u->state;
    out->where = u->where;
    out->workers = u->slots;
    return true;
}

uint32_t tgs_launcher_unit_connected(const tgs_launcher *l, size_t i,
                                     tgs_launcher_connected_fn connected,
                                     void *ud)
{
    return i < l->nunits ? connected_of(l->units[i], connected, ud) : 0;
}

void tgs_launcher_terminate(tgs_launcher *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nunits; i++) {
        tgs_unit *u = l->units[i];
        if (!u->stopping) {
            u->stopping = true;
            l->ops->stop(l->impl, u);
        }
    }
}

void tgs_launcher_free(tgs_launcher *l, int grace_ms)
{
    if (l == NULL)
        return;
    tgs_launcher_terminate(l);
    l->ops->destroy(l->impl, grace_ms);
    for (size_t i = 0; i < l->nunits; i++)
        free(l->units[i]);
    free(l->units);
    free_owned(l);
    free(l);
}

int tgs_launcher_print_script(const tgs_launcher_opts *opts, FILE *out)
{
    const tgs_launch_ops *ops = find_kind(opts->kind);
    tgs_launcher *l;
    int rc;

    if (ops == NULL || ops->script == NULL)
        return tg__error_set(TG_EINVAL,
                             "--print-job-script needs a launcher with job "
                             "scripts (--launcher slurm)");
    if ((l = calloc(1, sizeof(*l))) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    l->ops = ops;
    copy_opts(l, opts);
    build_args(l);
    rc = ops->script(l, out);
    free_owned(l);
    free(l);
    return rc;
}
