/* SPDX-License-Identifier: Apache-2.0
 *
 * dashboard.c: the loop thread's side of the HTTP port (dashboard.h):
 * the finished runs of the task stream (a ring of the last DASH_RUNS),
 * per-function run counts and run-time histograms (DASH_FUNCS labels at
 * most), RPC counters, and the snapshots published to the HTTP thread
 * (http.c) under a mutex. What a snapshot holds is written by metrics.c
 * and dash_json.c. Depends on the core's observation API (core.h),
 * pthreads and util/.
 */
#include "dashboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dash.h"
#include "util/address.h"
#include "util/clock.h"
#include "util/log.h"

const double tgs_dash_run_bounds[DASH_RUN_BUCKETS] = {
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600,
};
const double tgs_dash_rpc_bounds[DASH_RPC_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  1,      10,
};

/* ---- names by hash ---- */

static uint64_t hash_name(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* The index of `name` in `names` (its strings), or, when it is new and
 * `*n < max`, its new index (the name copied); `max` when the table is
 * full or out of memory. */
static uint32_t name_index(dash_names *t, char **names, uint32_t *n,
                           uint32_t max, tgs_str name)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)hash_name(name.ptr, name.len) & mask;

    for (;; i = (i + 1) & mask) {
        uint32_t v = t->slot[i];
        char *copy;
        if (v == 0) {
            if (*n >= max || (copy = strndup(name.ptr, name.len)) == NULL)
                return max;
            names[*n] = copy;
            t->slot[i] = ++*n;
            return *n - 1;
        }
        if (strlen(names[v - 1]) == name.len &&
            memcmp(names[v - 1], name.ptr, name.len) == 0)
            return v - 1;
    }
}

static uint32_t func_index(struct srv_dash *d, tgs_str name)
{
    char *names[DASH_FUNCS];
    uint32_t i;

    for (uint32_t k = 0; k < d->nfuncs; k++)
        names[k] = d->funcs[k].name;
    i = name_index(&d->func_index, names, &d->nfuncs, DASH_FUNCS, name);
    if (i < DASH_FUNCS)
        d->funcs[i].name = names[i];
    return i;
}

const char *tgs_dash_worker_name(const struct srv_dash *d, uint32_t i)
{
    return i < d->nworkers ? d->workers[i] : "other";
}

bool tgs_dash_worker_at(const sched *s, size_t i, tgs_worker_info *wi,
                        const peer **w)
{
    if (!tgs_core_worker_at(s->core, i, wi))
        return false;
    *w = srv_table_find(&s->workers, wi->id);
    return true;
}

static void hist_add(dash_hist *h, const double *bounds, size_t nb, double v)
{
    size_t b = 0;

    while (b < nb && v > bounds[b])
        b++;
    h->bucket[b]++;
    h->sum += v;
    h->count++;
}

/* ---- recording (loop thread) ---- */

void srv_dashboard_record(sched *s, const tgs_transition *tr, int64_t now_us)
{
    struct srv_dash *d = s->dashboard;
    uint64_t run_us = 0;
    tgs_str worker, key;
    dash_run *r;
    uint32_t f;

    if (d == NULL || (tr->to != TGS_MEMORY && tr->to != TGS_ERRED))
        return;
    worker = tgs_task_ran(tr->task, &run_us);
    if (worker.len == 0)
        return; /* no run of its own: cancelled, a failed dependency */
    f = func_index(d, tgs_task_func(tr->task));
    if (tr->to == TGS_MEMORY)
        d->funcs[f].memory++;
    else
        d->funcs[f].erred++;
    hist_add(&d->funcs[f].hist, tgs_dash_run_bounds, DASH_RUN_BUCKETS,
             (double)run_us / 1e6);
    r = &d->runs[d->nruns++ % DASH_RUNS];
    key = tgs_task_key(tr->task);
    r->keylen = (uint8_t)(key.len < DASH_KEY ? key.len : DASH_KEY);
    memcpy(r->key, key.ptr, r->keylen);
    r->func = f;
    r->worker = name_index(&d->worker_index, d->workers, &d->nworkers,
                           DASH_WORKER_NAMES, worker);
    r->erred = tr->to == TGS_ERRED;
    r->stop_us = now_us;
    r->start_us = now_us - (int64_t)(run_us > (1ull << 50) ? 0 : run_us);
}

void srv_dashboard_rpc(sched *s, size_t method, int code, int64_t dur_us)
{
    struct srv_dash *d = s->dashboard;
    dash_rpc *r;

    if (d == NULL || method >= d->nmethods || method >= DASH_MAX_METHODS)
        return;
    r = &d->rpc[method];
    r->count[code >= 0 && code < DASH_CODES ? code : 2]++; /* 2: UNKNOWN */
    if (dur_us >= 0)
        hist_add(&r->hist, tgs_dash_rpc_bounds, DASH_RPC_BUCKETS,
                 (double)dur_us / 1e6);
}

/* ---- snapshots ---- */

static void publish(struct srv_dash *d, int kind, tgs_text *t, int64_t now)
{
    dash_pub *p = &d->pub;
    tgs_text old;

    pthread_mutex_lock(&p->mu);
    old = p->body[kind];
    p->body[kind] = *t;
    p->gen[kind]++;
    p->built_ms[kind] = now;
    atomic_store(&p->urgent[kind], false);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    tgs_text_free(&old);
    d->built_ms[kind] = now;
}

void srv_dashboard_tick(sched *s, int64_t now)
{
    struct srv_dash *d = s->dashboard;

    if (d == NULL)
        return;
    for (int k = 0; k < DASH_KINDS; k++) {
        tgs_text t = {0};
        if (now - d->built_ms[k] < 50 ||
            now - atomic_load(&d->pub.asked_ms[k]) > DASH_WANTED_MS ||
            (now - d->built_ms[k] < DASH_BUILD_MS &&
             !atomic_load(&d->pub.urgent[k])))
            continue;
        if (k == DASH_METRICS)
            tgs_dash_metrics(s, &t);
        else
            tgs_dash_json(s, tg__now_us(), &t);
        publish(d, k, &t, now);
    }
}

/* On the HTTP thread: the latest snapshot, or a fresh one (waiting for
 * the loop at most 2 s) when the latest is stale or there is none yet. */
static bool snapshot(void *ud, int kind, char **body, size_t *len)
{
    dash_pub *p = ud;
    int64_t now = tg__now_ms();
    bool ok = false;

    atomic_store(&p->asked_ms[kind], now);
    pthread_mutex_lock(&p->mu);
    if (p->gen[kind] == 0 || now - p->built_ms[kind] > 2 * DASH_BUILD_MS) {
        uint64_t gen = p->gen[kind];
        struct timespec dl = tg__deadline_ms(2000);
        atomic_store(&p->urgent[kind], true);
        while (p->gen[kind] == gen &&
               pthread_cond_timedwait(&p->cv, &p->mu, &dl) != ETIMEDOUT)
            ;
    }
    if (p->gen[kind] > 0 && !p->body[kind].failed &&
        (*body = malloc(p->body[kind].len + 1)) != NULL) {
        memcpy(*body, p->body[kind].p, p->body[kind].len);
        *len = p->body[kind].len;
        ok = true;
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* ---- start and stop ---- */

/* "HOST:PORT", ":PORT", "PORT", "[::1]:PORT" into host and port; an empty
 * host becomes `def_host`. false on a bad address. */
static bool parse_address(const char *a, const char *def_host, char *host,
                          size_t hlen, uint16_t *port)
{
    const char *colon = strrchr(a, ':');
    const char *p = colon ? colon + 1 : a;
    size_t n = colon ? (size_t)(colon - a) : 0;
    char *end;
    unsigned long v;

    if (*p < '0' || *p > '9')
        return false;
    errno = 0;
    v = strtoul(p, &end, 10);
    if (errno || *end != '\0' || v > 65535)
        return false;
    *port = (uint16_t)v;
    if (n >= 2 && a[0] == '[' && a[n - 1] == ']')
        a++, n -= 2;
    if (n == 0)
        snprintf(host, hlen, "%s", def_host);
    else if (n < hlen && memchr(a, ']', n) == NULL)
        snprintf(host, hlen, "%.*s", (int)n, a);
    else
        return false;
    return true;
}

/* The host of --listen ("0.0.0.0" in "tcp://0.0.0.0:8786"). */
static void listen_host(const sched *s, char *host, size_t len)
{
    bool tls;
    char *colon;

    host[0] = '\0';
    if (s->opts.listen == NULL ||
        tg__address_parse(s->opts.listen, host, len, &tls) != 0)
        return;
    if ((colon = strrchr(host, ':')) != NULL)
        *colon = '\0';
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        if ((colon = strrchr(host, ']')) != NULL)
            *colon = '\0';
    }
}

static struct srv_dash *dash_new(void)
{
    struct srv_dash *d = calloc(1, sizeof(*d));
    pthread_condattr_t ca;

    if (d == NULL)
        return NULL;
    d->runs = calloc(DASH_RUNS, sizeof(*d->runs));
    d->func_index.cap = 256;
    d->func_index.slot = calloc(256, sizeof(uint32_t));
    d->worker_index.cap = 2 * DASH_WORKER_NAMES;
    d->worker_index.slot = calloc(2 * DASH_WORKER_NAMES, sizeof(uint32_t));
    d->funcs[DASH_FUNCS].name = strdup("other");
    if (d->runs == NULL || d->func_index.slot == NULL ||
        d->worker_index.slot == NULL || d->funcs[DASH_FUNCS].name == NULL) {
        free(d->runs);
        free(d->func_index.slot);
        free(d->worker_index.slot);
        free(d->funcs[DASH_FUNCS].name);
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->pub.mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->pub.cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int k = 0; k < DASH_KINDS; k++)
        d->built_ms[k] = INT64_MIN / 2;
    return d;
}

static void dash_free(struct srv_dash *d)
{
    if (d == NULL)
        return;
    for (uint32_t i = 0; i <= DASH_FUNCS; i++)
        free(d->funcs[i].name);
    for (uint32_t i = 0; i < d->nworkers; i++)
        free(d->workers[i]);
    for (int k = 0; k < DASH_KINDS; k++)
        tgs_text_free(&d->pub.body[k]);
    pthread_mutex_destroy(&d->pub.mu);
    pthread_cond_destroy(&d->pub.cv);
    free(d->runs);
    free(d->func_index.slot);
    free(d->worker_index.slot);
    free(d);
}

int srv_dashboard_start(sched *s, const char *address,
                        const tg__method *methods, size_t nmethods)
{
    struct srv_dash *d;
    tgs_http_opts ho = {0};
    char def[256], host[256], err[400];
    const char *shown;

    listen_host(s, def, sizeof(def));
    if (!parse_address(address, def, host, sizeof(host), &ho.port)) {
        fprintf(stderr,
                "taskgrid-scheduler: --dashboard-address expects HOST:PORT, "
                ":PORT or PORT (port 0 picks a free one), not '%s'\n",
                address);
        return -1;
    }
    if ((d = dash_new()) == NULL) {
        fprintf(stderr, "taskgrid-scheduler: out of memory\n");
        return -1;
    }
    ho.host = host;
    ho.ca_pem = s->opts.ca_pem;
    ho.cert_pem = s->opts.cert_pem;
    ho.key_pem = s->opts.key_pem;
    ho.snapshot = snapshot;
    ho.ud = &d->pub;
    if (tgs_http_start(&d->http, &ho, err, sizeof(err)) != 0 &&
        s->opts.dashboard_fallback && ho.port != 0) {
        /* As Dask does: a port taken (another cluster's dashboard) is
         * not worth failing a temporary cluster for. */
        TG_LOG_WARN("dashboard: %s; serving it on a free port instead", err);
        ho.port = 0;
    }
    if (d->http == NULL && tgs_http_start(&d->http, &ho, err, sizeof(err))) {
        fprintf(stderr, "taskgrid-scheduler: dashboard: %s\n", err);
        dash_free(d);
        return -1;
    }
    d->methods = methods;
    d->nmethods = nmethods;
    shown = host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
                    strcmp(host, "::") == 0
                ? "127.0.0.1"
                : host;
    snprintf(d->url, sizeof(d->url), "%s://%s%s%s:%d/",
             s->tls ? "https" : "http", strchr(shown, ':') ? "[" : "", shown,
             strchr(shown, ':') ? "]" : "", tgs_http_port(d->http));
    s->dashboard = d;
    s->dashboard_observes = true; /* its task stream (srv_observe) */
    srv_observe_update(s);
    return 0;
}

void srv_dashboard_announce(const sched *s)
{
    if (s->dashboard == NULL)
        return;
    printf("taskgrid-scheduler dashboard at %s\n", s->dashboard->url);
    fflush(stdout);
    TG_LOG_INFO("dashboard at %s", s->dashboard->url);
}

void srv_dashboard_stop(sched *s)
{
    if (s->dashboard == NULL)
        return;
    tgs_http_stop(s->dashboard->http);
    dash_free(s->dashboard);
    s->dashboard = NULL;
    s->dashboard_observes = false;
    srv_observe_update(s);
}
