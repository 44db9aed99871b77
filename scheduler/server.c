/* SPDX-License-Identifier: Apache-2.0
 *
 * server.c: taskgrid-scheduler's event loop (see sched.h for how the
 * daemon's files divide the work). One thread (tg__server_run) owns
 * everything. Each RPC is decoded and turned into core events (service.c,
 * workerlink.c); the actions the core emits are encoded at once into
 * per-destination byte buffers (dispatch.c: one-entry messages appended,
 * which protobuf merges into one batch), flushed here after each turn of
 * the loop, so many tasks ride in one gRPC message both ways. This file
 * holds the transport callbacks, the peer tables and output buffers, and
 * start-up and shutdown. No scheduling decision is taken here.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "dashboard.h"
#include "util/address.h"
#include "util/array.h"
#include "util/error.h"

#include "methods.h"
#include "reflection/serve.h"
#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

enum method {
    M_SUBMIT,
    M_GATHER,
    M_SCALE,
    M_ANNOTATE,
    M_CANCEL,
    M_RELEASE,
    M_STATUS,
    M_REPLICATE,
    M_RETIRE,
    M_CONNECT,
    M_HEALTH,
    M_REFLECTION,
    M_REFLECTION_V1ALPHA,
    M_WATCH,
    M_SET_LOG_LEVEL,
    M_COORDINATE,
    M_COUNT,
};

static const tg__method methods[M_COUNT] = {
    [M_SUBMIT] = {TG_METHOD_SUBMIT, TG__UNARY},
    [M_GATHER] = {TG_METHOD_GATHER, TG__SERVER_STREAM},
    [M_SCALE] = {TG_METHOD_SCALE, TG__UNARY},
    [M_ANNOTATE] = {TG_METHOD_ANNOTATE, TG__UNARY},
    [M_CANCEL] = {TG_METHOD_CANCEL, TG__UNARY},
    [M_RELEASE] = {TG_METHOD_RELEASE, TG__UNARY},
    [M_STATUS] = {TG_METHOD_STATUS, TG__UNARY},
    [M_REPLICATE] = {TG_METHOD_REPLICATE, TG__UNARY},
    [M_RETIRE] = {TG_METHOD_RETIRE, TG__UNARY},
    [M_CONNECT] = {TG_METHOD_CONNECT, TG__BIDI},
    [M_HEALTH] = {TG_METHOD_HEALTH_CHECK, TG__UNARY},
    [M_REFLECTION] = {TG_METHOD_REFLECTION, TG__BIDI},
    [M_REFLECTION_V1ALPHA] = {TG_METHOD_REFLECTION_V1ALPHA, TG__BIDI},
    [M_WATCH] = {TG_METHOD_WATCH, TG__SERVER_STREAM},
    [M_SET_LOG_LEVEL] = {TG_METHOD_SET_LOG_LEVEL, TG__UNARY},
    [M_COORDINATE] = {TG_METHOD_COORDINATE, TG__UNARY},
};

/* What server reflection lists and health answers SERVING for. */
static const char *const services[] = {
    "taskgrid.v1.Scheduler",
    "taskgrid.v1.WorkerLink",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
};

static volatile sig_atomic_t got_signal;
static tg__server *signal_server;

static void on_signal(int sig)
{
    got_signal = sig;
    if (signal_server)
        tg__server_stop(signal_server);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

int srv_table_add(peer_table *t, peer *p)
{
    if (tg__array_grow_to(&t->v, &t->cap, t->n + 1, sizeof(*t->v), 16,
                          SIZE_MAX) != TG_OK)
        return tg__error_set(TG_ENOMEM, "out of memory");
    t->v[t->n++] = p; /* ids grow, so the array stays sorted */
    return TG_OK;
}

static size_t table_index(const peer_table *t, uint64_t id)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < t->n && t->v[lo]->id == id) ? lo : SIZE_MAX;
}

peer *srv_table_find(const peer_table *t, uint64_t id)
{
    size_t i = table_index(t, id);
    return i == SIZE_MAX ? NULL : t->v[i];
}

static void table_remove(peer_table *t, uint64_t id)
{
    size_t i = table_index(t, id);

    if (i == SIZE_MAX)
        return;
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(peer *));
    t->n--;
}

void srv_mark_dirty(sched *s, peer *p)
{
    if (p->out.count != 1)
        return; /* already listed (count went 0 -> 1 once) */
    if (tg__array_grow_to(&s->dirty, &s->dirtycap, s->ndirty + 1,
                          sizeof(*s->dirty), 16, SIZE_MAX) != TG_OK)
        return;
    s->dirty[s->ndirty++] = p;
}

/* Hand the buffered bytes of `p` to gRPC as one message. */
void srv_flush_peer(peer *p)
{
    if (p->out.count == 0 || p->call == NULL)
        return;
    tg__scall_send(p->call, p->out.p, p->out.len);
    p->out.p = NULL;
    p->out.len = p->out.cap = 0;
    p->out.count = 0;
}

uint8_t *srv_encode(const pb_msgdesc_t *f, const void *msg, size_t *len)
{
    uint8_t *buf;

    if (tg__wire_encode(f, msg, &buf, len) != TG_OK) {
        TG_LOG_ERROR("%s", tg_error_last());
        return NULL;
    }
    return buf;
}

/* Reply to a unary call, or fail it if the response cannot be encoded. */
void srv_reply(tg__scall *c, const pb_msgdesc_t *f, const void *msg)
{
    size_t len;
    uint8_t *buf = srv_encode(f, msg, &len);

    if (buf == NULL)
        tg__scall_finish(c, TG_EINTERNAL, "cannot encode the response");
    else
        tg__scall_reply(c, buf, len);
}

bool srv_decode(tg__scall *c, const pb_msgdesc_t *f, void *msg,
                const uint8_t *req, size_t len)
{
    if (tg__wire_decode(f, msg, req, len) != TG_OK) {
        tg__scall_finish(c, TG_EINVAL, tg_error_last());
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* rpc callbacks                                                       */
/* ------------------------------------------------------------------ */

/*
 * The access policy (auth.c) for one call of a TLS scheduler: the role in
 * the peer's certificate must be one the method admits. A plaintext
 * scheduler has no identities to check.
 */
static bool authorized(sched *s, tg__scall *c, size_t method)
{
    char role[64], msg[400];
    unsigned roles;

    if (!s->tls)
        return true;
    roles = tgs_auth_method_roles(methods[method].path);
    tg__scall_role(c, role, sizeof(role));
    if (tgs_auth_allows(roles, role))
        return true;
    tgs_auth_refusal(methods[method].path, roles, role, msg, sizeof(msg));
    TG_LOG_WARN("refused a call from %s: %s", tg__scall_peer(c), msg);
    tg__scall_finish(c, TG_EPERM, msg);
    return false;
}

static void cb_call(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len)
{
    sched *s = ud;

    if (!authorized(s, c, method))
        return;
    switch (method) {
    case M_SUBMIT:
        srv_do_submit(s, c, req, len);
        break;
    case M_GATHER:
        srv_do_gather(s, c, req, len);
        break;
    case M_SCALE:
        srv_do_scale(s, c, req, len);
        break;
    case M_ANNOTATE:
        srv_do_annotate(s, c, req, len);
        break;
    case M_CANCEL:
        srv_do_cancel(s, c, req, len);
        break;
    case M_RELEASE:
        srv_do_release(s, c, req, len);
        break;
    case M_STATUS:
        srv_do_status(s, c, req, len);
        break;
    case M_HEALTH:
        srv_do_health(s, c, req, len);
        break;
    case M_REPLICATE:
        srv_do_replicate(s, c, req, len);
        break;
    case M_WATCH: {
        char role[64] = "";
        if (s->tls)
            tg__scall_role(c, role, sizeof(role));
        srv_do_watch(s, c, req, len, role);
        break;
    }
    case M_SET_LOG_LEVEL:
        srv_do_set_log_level(s, c, req, len);
        break;
    case M_COORDINATE:
        srv_do_coordinate(s, c, req, len);
        break;
    case M_RETIRE:
        srv_do_retire(s, c, req, len);
        break;
    case M_REFLECTION:
    case M_REFLECTION_V1ALPHA:
        break; /* its requests come to cb_message */
    case M_CONNECT: {
        peer *w = calloc(1, sizeof(*w));
        if (w == NULL || srv_table_add(&s->workers, w) != 0) {
            free(w);
            tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
            return;
        }
        w->kind = PEER_WORKER;
        w->id = ++s->next_id;
        w->call = c;
        tg__scall_set_data(c, w);
        break;
    }
    default:
        tg__scall_finish(c, TG_EUNIMPLEMENTED, "not implemented");
    }
}

static void cb_message(void *ud, tg__scall *c, const uint8_t *msg, size_t len)
{
    peer *w = tg__scall_data(c);
    size_t m = tg__scall_method(c);

    if (m == M_REFLECTION || m == M_REFLECTION_V1ALPHA)
        tg__refl_serve_message(((sched *)ud)->refl, c, msg, len);
    else if (w != NULL && w->kind == PEER_WORKER)
        srv_worker_message(ud, w, msg, len);
}

static void drop_dirty(sched *s, peer *p)
{
    for (size_t i = 0; i < s->ndirty; i++)
        if (s->dirty[i] == p)
            s->dirty[i] = NULL;
}

static void cb_done(void *ud, tg__scall *c)
{
    sched *s = ud;
    peer *p = tg__scall_data(c);

    if (s->dashboard != NULL) {
        size_t m = tg__scall_method(c);
        srv_dashboard_rpc(s, m, tg__scall_code(c),
                          methods[m].kind == TG__UNARY
                              ? tg__now_us() - tg__scall_started_us(c)
                              : -1);
    }
    if (p == NULL)
        return;
    drop_dirty(s, p);
    if (p->kind == PEER_WORKER) {
        table_remove(&s->workers, p->id);
        if (p->registered) {
            char q[256];
            TG_LOG_INFO(
                "worker left name=%s",
                tg__log_quote(q, sizeof(q), p->name, strlen(p->name), 200));
            srv_watch_worker(s, p, false,
                             p->closing ? "retired" : "disconnected");
            tgs_core_worker_remove(s->core, p->id, tg__now_ms());
            srv_run_actions(s);
            srv_relay_worker_lost(s, p->id, p->name);
            srv_replicate_worker_lost(s, p->id, p->name);
        }
        free(p->name);
        free(p->data_address);
        free(p->launch_id);
        for (size_t i = 0; i < p->nfuncs; i++)
            free(p->funcs[i]);
        free(p->funcs);
        for (size_t i = 0; i < p->nres; i++)
            free(p->res_names[i]);
        free(p->res_names);
        free(p->res_amounts);
    } else if (p->kind == PEER_GATHER) {
        srv_relay_gather_gone(s, p);
        table_remove(&s->gathers, p->id);
        for (size_t i = 0; i < p->npending; i++)
            free(p->pending[i]);
        free(p->pending);
    } else if (p->kind == PEER_REPLICATE) {
        srv_replicate_gone(s, p);
    } else if (p->kind == PEER_WATCH) {
        srv_watch_gone(s, p);
    } else if (p->kind == PEER_COORD) {
        srv_coord_gone(s, p);
    }
    free(p->out.p);
    free(p);
}

static void cb_tick(void *ud, int64_t now)
{
    sched *s = ud;
    static int64_t last_slow;

    if (now - last_slow >= 100) {
        last_slow = now;
        tgs_core_tick(s->core, now);
        srv_run_actions(s);
        srv_scale_tick(s, now);
        srv_coord_tick(s, now);
        /* Gather timeouts (few gathers; a linear pass is fine). */
        for (size_t i = 0; i < s->gathers.n; i++) {
            peer *g = s->gathers.v[i];
            if (!g->finished && g->deadline_ms && now >= g->deadline_ms)
                srv_gather_timeout(s, g);
        }
    }
    srv_relay_tick(s); /* relays that waited for their stream to drain */
    srv_replicate_tick(s, now);
    srv_watch_tick(s, now);
    for (size_t i = 0; i < s->ndirty; i++)
        if (s->dirty[i])
            srv_flush_peer(s->dirty[i]);
    s->ndirty = 0;
    srv_dashboard_tick(s, now);
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static char *find_worker_bin(void)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    const char *env = getenv("PATH");

    if (n > 0) {
        char *slash;
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/taskgrid-worker", self);
            if (access(path, X_OK) == 0)
                return strdup(path);
            /* bazel-bin/scheduler -> bazel-bin/worker */
            snprintf(path, sizeof(path), "%s/../worker/taskgrid-worker", self);
            if (access(path, X_OK) == 0)
                return realpath(path, NULL);
        }
    }
    if (env) {
        char *copy = strdup(env), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(path, sizeof(path), "%s/taskgrid-worker", d);
            if (access(path, X_OK) == 0) {
                free(copy);
                return strdup(path);
            }
        }
        free(copy);
    }
    return NULL;
}

/*
 * A secret hash key per process for the core's tables: clients choose task
 * keys, so with a known hash they could make every key collide
 * (tgs_core_set_hash_key). Before the core exists.
 */
static int seed_core_hash(void)
{
    uint8_t key[16];

    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        fprintf(stderr, "taskgrid-scheduler: no random hash key: %s\n",
                strerror(errno));
        return -1;
    }
    tgs_core_set_hash_key(key);
    return 0;
}

/* The address launched workers get: --contact-address, else ours. A
 * wildcard listen host (0.0.0.0, ::) is kept for the SSH backend, which
 * puts in the local end of the route to each host; jobs get this host's
 * name. */
static const char *contact_address(sched *s, const tgs_server_opts *o,
                                   char *buf, size_t len, bool *wildcard)
{
    char host[256];
    const char *listen = o->listen;
    const char *p = strstr(listen, "://");

    *wildcard = false;
    if (o->contact_address != NULL)
        return o->contact_address;
    p = p ? p + 3 : listen;
    if (strncmp(p, "0.0.0.0:", 8) != 0 && strncmp(p, "[::]:", 5) != 0 &&
        p[0] != ':')
        return s->address;
    if (o->launcher != NULL && strcmp(o->launcher, "ssh") == 0) {
        *wildcard = true;
        return s->address;
    }
    if (gethostname(host, sizeof(host)) != 0)
        return s->address;
    host[sizeof(host) - 1] = '\0';
    snprintf(buf, len, "%s://%s:%d", s->tls ? "tls" : "tcp", host,
             tg__server_port(s->srv));
    return buf;
}

/* The launcher options of `o`, with `address` for the workers. */
static void launcher_opts(const tgs_server_opts *o, const char *address,
                          const char *worker_bin, tgs_launcher_opts *lo)
{
    memset(lo, 0, sizeof(*lo));
    lo->kind = o->launcher ? o->launcher : "local";
    lo->worker_bin = worker_bin;
    lo->worker_cmd = o->worker_cmd;
    lo->address = address;
    lo->nthreads = o->worker_nthreads;
    lo->resources = o->worker_resources;
    lo->preload = o->worker_preload;
    lo->npreload = o->nworker_preload;
    lo->log_level = o->worker_log_level;
    lo->memory_limit = o->worker_memory_limit;
    lo->tls_ca = o->worker_tls_ca;
    lo->tls_cert = o->worker_tls_cert;
    lo->tls_key = o->worker_tls_key;
    lo->extra_args = o->worker_extra_args;
    /* Batch jobs outlive a scheduler that died: their workers give up
     * after a minute without it (dask-jobqueue's death_timeout); local
     * workers die with the scheduler, SSH ones with their channel. */
    lo->death_timeout = o->worker_death_timeout;
    if (lo->death_timeout == NULL && strcmp(lo->kind, "slurm") == 0)
        lo->death_timeout = "60";
    if (lo->death_timeout != NULL && strcmp(lo->death_timeout, "0") == 0)
        lo->death_timeout = NULL;
    lo->nextra_args = o->nworker_extra_args;
    lo->job = o->job;
    lo->ssh = o->ssh;
}

/* A job's workers share its cores (dask-jobqueue's rule), unless
 * --nthreads says otherwise; adaptive scaling counts these threads. */
static void job_threads(tgs_server_opts *o)
{
    if (o->launcher != NULL && strcmp(o->launcher, "slurm") == 0 &&
        o->worker_nthreads == 0) {
        uint32_t cores = o->job.cores ? o->job.cores : 1;
        uint32_t procs = o->job.processes ? o->job.processes : 1;
        o->worker_nthreads = cores / procs ? cores / procs : 1;
    }
}

int tgs_server_print_job_script(const tgs_server_opts *opts, FILE *out)
{
    tgs_server_opts copy = *opts, *o = &copy;
    tgs_launcher_opts lo;
    char *bin = o->worker_bin ? strdup(o->worker_bin) : find_worker_bin();
    int rc;

    job_threads(o);
    launcher_opts(o, o->contact_address ? o->contact_address : o->listen,
                  bin ? bin : "taskgrid-worker", &lo);
    rc = tgs_launcher_print_script(&lo, out);
    if (rc != 0)
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
    free(bin);
    return rc;
}

/* The launcher of --launcher (local, slurm, ssh; none: no launcher).
 * Returns 0, or the exit code. */
static int start_launcher(sched *s, const tgs_server_opts *o, char **worker_bin)
{
    static char contact[600];
    const char *kind = o->launcher ? o->launcher : "local";
    bool local = strcmp(kind, "local") == 0, wild;
    tgs_launcher_opts lo;

    if (strcmp(kind, "none") == 0)
        return 0;
    if (s->tls && o->worker_tls_cert == NULL) {
        /* Workers we start must present a worker certificate; without one
         * they could never join. */
        if (local && o->workers == 0)
            return 0;
        fprintf(stderr, "taskgrid-scheduler: a TLS scheduler starting workers "
                        "needs a worker certificate for them: give "
                        "--worker-tls-cert and --worker-tls-key\n");
        return 2;
    }
    *worker_bin = o->worker_bin ? strdup(o->worker_bin) : find_worker_bin();
    if (*worker_bin == NULL && (local || o->worker_cmd == NULL)) {
        if (local && o->workers == 0)
            return 0; /* Scale answers why it cannot start workers */
        fprintf(stderr,
                "taskgrid-scheduler: cannot find taskgrid-worker to "
                "start workers (looked next to this program and in "
                "PATH); pass --worker-bin PATH%s or build it with "
                "'bazel build //worker'\n",
                local ? "" : " or --worker-command CMD");
        return 1;
    }
    job_threads(&s->opts);
    launcher_opts(&s->opts,
                  contact_address(s, o, contact, sizeof(contact), &wild),
                  *worker_bin, &lo);
    lo.wildcard = wild;
    if (tgs_launcher_new(&s->launcher, &lo) != 0) {
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
        return 2;
    }
    tgs_core_set_scale_step(s->core, tgs_launcher_slots(s->launcher));
    return 0;
}

int tgs_server_main(const tgs_server_opts *o)
{
    sched s;
    tgs_core_opts co = {0};
    tg__server_opts so = {0};
    tg__rpc_sec sec = {o->ca_pem, o->cert_pem, o->key_pem, NULL, NULL};
    tg__server_ops ops = {cb_call, cb_message, cb_done, cb_tick};
    struct sigaction sa;
    char host[256];
    const char *listen = o->listen;
    char *worker_bin = NULL;
    bool tls = false;
    int rc = 0;

    memset(&s, 0, sizeof(s));
    s.opts = *o;
    if (s.opts.relay_memory == 0)
        s.opts.relay_memory = TGS_RELAY_MEMORY_DEFAULT;
    s.tls = o->ca_pem != NULL;
    co.no_worker_timeout_ms = o->no_worker_timeout_ms;
    co.allowed_failures = o->allowed_failures;
    co.retry_backoff_ms = o->retry_backoff_ms;
    co.retry_backoff_max_ms = o->retry_backoff_max_ms;
    co.transfer_bandwidth = o->transfer_bandwidth;
    co.max_nesting_depth = o->max_nesting_depth;
    if (seed_core_hash() != 0)
        return 1;
    if (tgs_core_new(&s.core, &co) != TGS_OK) {
        fprintf(stderr, "taskgrid-scheduler: out of memory\n");
        return 1;
    }
    if (tg__refl_new(&s.refl, services, sizeof(services) / sizeof(*services)) !=
        TG_OK) {
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
        tgs_core_free(s.core);
        return 1;
    }
    so.listen = listen;
    so.sec = o->ca_pem ? &sec : NULL;
    so.max_msg = o->max_message;
    so.tick_ms = 100;
    if (tg__server_new(&s.srv, &so, methods, M_COUNT, &ops, &s) != TG_OK) {
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
        tgs_core_free(s.core);
        tg__refl_free(s.refl);
        return 1;
    }
    /* The address clients and local workers should use. */
    tg__address_parse(listen, host, sizeof(host), &tls);
    *strrchr(host, ':') = '\0';
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0 ||
        host[0] == '\0')
        snprintf(host, sizeof(host), "127.0.0.1");
    snprintf(s.address, sizeof(s.address), "%s://%s:%d", tls ? "tls" : "tcp",
             host, tg__server_port(s.srv));
    if (o->dashboard_address != NULL &&
        srv_dashboard_start(&s, o->dashboard_address, methods, M_COUNT)) {
        rc = 1;
        goto cleanup;
    }

    rc = start_launcher(&s, o, &worker_bin);
    if (rc != 0)
        goto cleanup;
    if (o->workers > 0) /* Scale(n) from the start: the core keeps it */
        tgs_core_scale(s.core, o->workers, tg__now_ms());
    srv_observe_update(&s); /* --log-level debug logs every change */

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal_server = s.srv;

    printf("taskgrid-scheduler listening on %s\n", s.address);
    fflush(stdout);
    srv_dashboard_announce(&s);
    TG_LOG_INFO("listening on %s%s%s%s", s.address, s.launcher ? " (" : "",
                s.launcher ? tgs_launcher_kind(s.launcher) : "",
                s.launcher ? " launcher)" : "");
    tg__server_run(s.srv);
    TG_LOG_INFO("shutting down (signal %d)", (int)got_signal);

cleanup:
    signal_server = NULL;
    /* Tell our workers to stop, end every call (so nobody waits on this
     * loop, which no longer runs), then reap the workers with a bound:
     * they are children and must not outlive us. */
    tgs_launcher_terminate(s.launcher);
    tg__server_free(s.srv);
    s.srv = NULL;
    tgs_launcher_free(s.launcher, 3000);
    srv_dashboard_stop(&s); /* after the calls' ends, which it counts */
    srv_coord_free(&s);
    tgs_core_free(s.core);
    tg__refl_free(s.refl);
    free(s.workers.v);
    free(s.gathers.v);
    free(s.replicas.v);
    free(s.watches.v);
    free(s.uploads);
    free(s.dirty);
    free(worker_bin);
    return rc;
}
