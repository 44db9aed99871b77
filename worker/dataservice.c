/* SPDX-License-Identifier: Apache-2.0
 *
 * dataservice.c: DataService.Fetch (see dataservice.h). The transport's
 * one-thread server loop runs on a thread of its own and owns every call;
 * a Fetch keeps a reference to the held result and keeps at most
 * FETCH_WINDOW chunks queued on the call, topping up as gRPC writes them
 * (the loop ticks after every completion), so a large result is never
 * copied whole into send buffers and a slow peer costs one window of
 * memory. The same server answers grpc.health.v1 Check and server
 * reflection (reflection/serve.h). Depends on transport/server.h,
 * proto/wire.h, util/crc.h, reflection/, the store, the counters and
 * util/log.h.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataservice.h"
#include "methods.h"
#include "reflection/serve.h"
#include "transport/server.h"
#include "util/crc.h"
#include "util/error.h"
#include "util/log.h"
#include "util/tls.h"
#include "wire.h"

/* Chunks queued on one call at a time (each at most TG_PROTO_CHUNK_MAX). */
#define FETCH_WINDOW 4
/* How often the loop looks at a stop request when idle. */
#define TICK_MS 100

enum { M_FETCH, M_HEALTH, M_REFLECTION, M_REFLECTION_V1ALPHA, M_COUNT };

static const tg__method methods[M_COUNT] = {
    [M_FETCH] = {TG_METHOD_FETCH, TG__SERVER_STREAM},
    [M_HEALTH] = {TG_METHOD_HEALTH_CHECK, TG__UNARY},
    [M_REFLECTION] = {TG_METHOD_REFLECTION, TG__BIDI},
    [M_REFLECTION_V1ALPHA] = {TG_METHOD_REFLECTION_V1ALPHA, TG__BIDI},
};

/* What server reflection lists and health answers SERVING for. */
static const char *const services[] = {
    "taskgrid.v1.DataService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
};

/* One Fetch being answered. */
typedef struct fetch_call {
    tg__scall *c;
    tgw_held *h;
    uint64_t offset; /* next byte to send */
    bool sent_all;   /* every chunk is queued and the status requested */
    struct fetch_call *prev, *next; /* d->active while not sent_all */
} fetch_call;

struct tgw_dataservice {
    tg__server *srv;
    pthread_t thread;
    bool tls;
    bool clients; /* role "client" may fetch too (--data-clients) */
    tgw_store *store;
    tgw_counters *counters;
    tg__refl *refl;     /* reflection and health per service */
    fetch_call *active; /* loop thread only */
    uint8_t *scratch;   /* a chunk read from a spill file (loop thread) */
    pthread_mutex_t name_mu;
    char name[300];
};

static void active_remove(tgw_dataservice *d, fetch_call *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else if (d->active == f)
        d->active = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void release_held(void *h)
{
    tgw_held_release(h);
}

/* Queue one chunk: the `n` bytes at `p`, `f->offset` into the result.
 * From memory the bytes go to the socket in place (the message is its
 * encoded fields, then field 3 `data` whose bytes are the held result's,
 * borrowed with a reference); from a spill file they are in the scratch
 * buffer, reused for the next chunk, so they are copied. */
static int send_chunk(fetch_call *f, const uint8_t *p, size_t n)
{
    const tgw_held *h = f->h;
    bool in_place = n > 0 && !h->spilled;
    taskgrid_v1_DataChunk ch;
    tg__scall_tail tail;
    uint8_t *buf, *grown;
    size_t len;

    memset(&ch, 0, sizeof(ch));
    ch.key = tg_pbbuf_mem(h->key, h->key_len);
    ch.offset = f->offset;
    ch.data = tg_pbbuf_mem(in_place ? NULL : p, in_place ? 0 : n);
    ch.size = h->len;
    ch.codec = tg_pbbuf_str(h->codec);
    ch.crc32 = tg__crc32(p, n);
    if (tg__wire_encode(taskgrid_v1_DataChunk_fields, &ch, &buf, &len) != TG_OK)
        return TG_ENOMEM;
    if (!in_place)
        return tg__scall_send(f->c, buf, len);
    /* Field 3, length-delimited (a protobuf field may come in any order),
     * then its length as a varint; the bytes follow as the tail. */
    if ((grown = realloc(buf, len + 11)) == NULL) {
        free(buf);
        return TG_ENOMEM;
    }
    buf = grown;
    buf[len++] = (3 << 3) | 2;
    for (uint64_t v = n;; v >>= 7) {
        buf[len++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    tail.bytes = p;
    tail.len = n;
    tail.release = release_held;
    tail.ud = tgw_held_ref(f->h);
    return tg__scall_send_borrowed(f->c, buf, len, &tail);
}

/* Queue chunks until the window is full or the result is all queued. */
static void pump(tgw_dataservice *d, fetch_call *f)
{
    const tgw_held *h = f->h;

    while (!f->sent_all && tg__scall_pending(f->c) < FETCH_WINDOW) {
        uint64_t left = h->len - f->offset;
        size_t n = left < TG_PROTO_CHUNK_MAX ? (size_t)left
                                             : (size_t)TG_PROTO_CHUNK_MAX;
        const uint8_t *p = NULL;
        int rc;

        if (h->spilled && d->scratch == NULL)
            d->scratch = malloc(TG_PROTO_CHUNK_MAX);
        if (n > 0 && h->spilled && d->scratch == NULL) {
            tg__scall_finish(f->c, TG_ENOMEM, "worker out of memory");
            f->sent_all = true;
            break;
        }
        /* A spilled result streams from its file, a chunk at a time. */
        if (n > 0 && (p = tgw_held_at(h, f->offset, n, d->scratch)) == NULL) {
            TG_LOG_WARN("serving '%s': %s", h->key, tg_error_last());
            tg__scall_finish(f->c, TG_EINTERNAL, tg_error_last());
            f->sent_all = true;
            break;
        }
        rc = send_chunk(f, p, n);
        if (rc == TG_ENOMEM)
            tg__scall_finish(f->c, TG_ENOMEM, "worker out of memory");
        if (rc != TG_OK) {
            f->sent_all = true; /* the call is over; on_done follows */
            break;
        }
        f->offset += n;
        if (f->offset >= h->len) {
            tg__scall_finish(f->c, TG_OK, "");
            tgw_counters_add(d->counters, TGW_COUNT_SERVED, h->len);
            f->sent_all = true;
        }
    }
    if (f->sent_all)
        active_remove(d, f);
}

/* Over TLS only workers fetch: a client certificate has no business
 * reading other tasks' intermediate results unless the operator let
 * clients fetch directly (--data-clients), and an admin one never (it
 * operates the cluster; it is not a data consumer). */
static bool authorized(tgw_dataservice *d, tg__scall *c)
{
    const char *need =
        d->clients ? "the worker or client role" : "the worker role";
    char role[64], msg[300];

    if (!d->tls)
        return true;
    tg__scall_role(c, role, sizeof(role));
    if (strcmp(role, "worker") == 0 ||
        (d->clients && strcmp(role, "client") == 0))
        return true;
    if (role[0] == '\0')
        snprintf(msg, sizeof(msg),
                 "DataService.Fetch needs %s; this certificate has no "
                 "taskgrid role",
                 need);
    else
        snprintf(msg, sizeof(msg),
                 "DataService.Fetch needs %s; this certificate has role '%s'%s",
                 need, role,
                 strcmp(role, "client") == 0
                     ? " (the worker's operator can admit clients with "
                       "--data-clients)"
                     : "");
    TG_LOG_WARN("refused a fetch from %s: %s", tg__scall_peer(c), msg);
    tg__scall_finish(c, TG_EPERM, msg);
    return false;
}

static void not_found(tgw_dataservice *d, tg__scall *c, tg_pbbuf key)
{
    char msg[TG_PROTO_KEY_MAX + 400];

    pthread_mutex_lock(&d->name_mu);
    snprintf(msg, sizeof(msg), "no result '%.*s' on worker %s",
             (int)(key.len > TG_PROTO_KEY_MAX ? TG_PROTO_KEY_MAX : key.len),
             (const char *)key.ptr, d->name);
    pthread_mutex_unlock(&d->name_mu);
    tg__scall_finish(c, TG_ENOTFOUND, msg);
}

static void on_call(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len)
{
    tgw_dataservice *d = ud;
    taskgrid_v1_FetchRequest r;
    fetch_call *f;
    tgw_held *h;

    /* Health and reflection: any peer the TLS handshake admitted, as on
     * the scheduler (scheduler/auth.c says why); they tell nothing of
     * the held results. Reflection requests come to on_message. */
    if (method == M_HEALTH) {
        tg__refl_serve_health(d->refl, c, req, len);
        return;
    }
    if (method == M_REFLECTION || method == M_REFLECTION_V1ALPHA)
        return;
    if (method != M_FETCH) {
        tg__scall_finish(c, TG_EUNIMPLEMENTED, "not implemented");
        return;
    }
    if (!authorized(d, c))
        return;
    if (tg__wire_decode(taskgrid_v1_FetchRequest_fields, &r, req, len) !=
        TG_OK) {
        tg__scall_finish(c, TG_EINVAL, tg_error_last());
        return;
    }
    h = tgw_store_get(d->store, (const char *)r.key.ptr, r.key.len);
    if (h == NULL) {
        not_found(d, c, r.key);
        tg__wire_release(taskgrid_v1_FetchRequest_fields, &r);
        return;
    }
    tg__wire_release(taskgrid_v1_FetchRequest_fields, &r);
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        tgw_held_release(h);
        tg__scall_finish(c, TG_ENOMEM, "worker out of memory");
        return;
    }
    f->c = c;
    f->h = h;
    f->next = d->active;
    if (d->active)
        d->active->prev = f;
    d->active = f;
    tg__scall_set_data(c, f);
    TG_LOG_DEBUG("serving '%s' (%zu bytes) to %s", h->key, h->len,
                 tg__scall_peer(c));
    pump(d, f);
}

static void on_done(void *ud, tg__scall *c)
{
    tgw_dataservice *d = ud;
    fetch_call *f = tg__scall_data(c);

    if (f == NULL)
        return;
    if (!f->sent_all)
        active_remove(d, f);
    tgw_held_release(f->h);
    free(f);
}

/* After every completion (a chunk written) and every TICK_MS. */
static void on_tick(void *ud, int64_t now_ms)
{
    tgw_dataservice *d = ud;
    fetch_call *f = d->active, *next;

    (void)now_ms;
    for (; f != NULL; f = next) {
        next = f->next;
        pump(d, f);
    }
}

/* A message of a reflection stream (the only streams that send any). */
static void on_message(void *ud, tg__scall *c, const uint8_t *msg, size_t len)
{
    tgw_dataservice *d = ud;
    size_t m = tg__scall_method(c);

    if (m == M_REFLECTION || m == M_REFLECTION_V1ALPHA)
        tg__refl_serve_message(d->refl, c, msg, len);
}

static const tg__server_ops ops = {on_call, on_message, on_done, on_tick};

static void *loop_main(void *arg)
{
    tgw_dataservice *d = arg;

    tg__server_run(d->srv);
    return NULL;
}

int tgw_dataservice_start(tgw_dataservice **out,
                          const tgw_dataservice_opts *opts)
{
    tgw_dataservice *d;
    tg__server_opts so;
    char listen[600];
    sigset_t all, old;
    int rc;

    *out = NULL;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    d->tls = opts->sec != NULL;
    d->clients = opts->clients;
    d->store = opts->store;
    d->counters = opts->counters;
    rc = tg__refl_new(&d->refl, services, sizeof(services) / sizeof(*services));
    if (rc != TG_OK) {
        free(d);
        return tg__error_set(rc, "data service: %s", tg_error_last());
    }
    pthread_mutex_init(&d->name_mu, NULL);
    snprintf(d->name, sizeof(d->name), "%s", opts->name ? opts->name : "?");
    snprintf(listen, sizeof(listen), "%s://%s", d->tls ? "tls" : "tcp",
             opts->listen);
    memset(&so, 0, sizeof(so));
    so.listen = listen;
    so.sec = opts->sec;
    so.tick_ms = TICK_MS;
    rc = tg__server_new(&d->srv, &so, methods, M_COUNT, &ops, d);
    if (rc != TG_OK) {
        pthread_mutex_destroy(&d->name_mu);
        tg__refl_free(d->refl);
        free(d);
        return tg__error_set(rc, "data service: %s", tg_error_last());
    }
    /* The loop runs no user code: signals stay with the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&d->thread, NULL, loop_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        tg__server_free(d->srv);
        pthread_mutex_destroy(&d->name_mu);
        tg__refl_free(d->refl);
        free(d);
        return tg__error_set(TG_ENOMEM, "cannot start the data service thread");
    }
    *out = d;
    return TG_OK;
}

int tgw_dataservice_port(const tgw_dataservice *d)
{
    return tg__server_port(d->srv);
}

void tgw_dataservice_set_name(tgw_dataservice *d, const char *name)
{
    pthread_mutex_lock(&d->name_mu);
    snprintf(d->name, sizeof(d->name), "%s", name);
    pthread_mutex_unlock(&d->name_mu);
}

void tgw_dataservice_stop(tgw_dataservice *d)
{
    if (d == NULL)
        return;
    tg__server_stop(d->srv);
    pthread_join(d->thread, NULL);
    /* The loop has returned: freeing here runs the last on_done
     * callbacks on this thread, which is now the only one. */
    tg__server_free(d->srv);
    pthread_mutex_destroy(&d->name_mu);
    tg__refl_free(d->refl);
    free(d->scratch);
    free(d);
}

/* Peers verify the data service's certificate for the workers' fixed TLS
 * name (TG_PROTO_WORKER_TLS_NAME); a worker certificate without it makes
 * every fetch from here fail, and the peers' errors would not say why. */
void tgw_dataservice_check_cert(const tg__rpc_sec *sec, const char *cert_path)
{
    char why[300];

    if (sec == NULL)
        return;
    if (tg__tls_server_check(sec->cert_pem, TG_PROTO_WORKER_TLS_NAME, why,
                             sizeof(why)) != TG_OK)
        TG_LOG_WARN("other workers cannot fetch results from this one over "
                    "TLS: its certificate %s cannot serve them: %s; make "
                    "worker certificates with taskgrid-certs (they are "
                    "server certificates for the name " TG_PROTO_WORKER_TLS_NAME
                    ")",
                    cert_path ? cert_path : "", why);
}
