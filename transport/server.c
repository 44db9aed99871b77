/* SPDX-License-Identifier: Apache-2.0
 *
 * server.c: the server side of the transport (server.h): one completion
 * queue driven by one thread (tg__server_run), which owns every call and
 * runs all callbacks, in the style of redis' ae loop. Also reads the
 * peer certificate's role for the access policy. Depends on the gRPC C
 * core and common.c.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "transport/grpc_util.h"
#include "transport/server.h"
#include "transport/server_tls.h"
#include "util/address.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/role.h"

/* ------------------------------------------------------------------ */
/* Server                                                              */
/* ------------------------------------------------------------------ */

enum tag_kind {
    TAG_NEW_CALL = 1,
    TAG_UNKNOWN_CALL,
    TAG_SEND,
    TAG_RECV,
    TAG_CLOSE,
    TAG_SHUTDOWN,
};

typedef struct srv_tag {
    enum tag_kind kind;
    void *owner;
} srv_tag;

typedef struct send_item {
    struct send_item *next;
    uint8_t *buf;
    size_t len;
    /* tg__scall_send_borrowed: bytes sent after `buf` in place, and
     * their release (NULL: none). */
    const uint8_t *tail;
    size_t tail_len;
    void (*release)(void *);
    void *release_ud;
} send_item;

/* A pending request for one new call of one method. */
typedef struct req_slot {
    srv_tag tag;
    tg__server *srv;
    size_t method; /* SIZE_MAX: unknown-method slot */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* unknown-method slot only */
} req_slot;

struct tg__scall {
    tg__server *srv;
    grpc_call *call;
    size_t method;
    int refs; /* outstanding batches + 1 until on_done */
    srv_tag tag_send, tag_recv, tag_close;
    bool initial_sent;
    bool send_inflight;
    send_item *q_head, *q_tail;
    size_t q_len;
    size_t q_bytes; /* of the queued messages and the one in flight */
    bool finish_requested;
    bool status_sent;
    int finish_status;
    char *finish_msg;
    grpc_slice status_details;
    bool recv_armed;
    grpc_byte_buffer *recv_bb;
    int close_cancelled;
    bool closed;
    bool done_called;
    int64_t started_us; /* arrival (tg__now_us), for latency metrics */
    void *data;
    char *peer;
    grpc_byte_buffer *inflight_bb;
    size_t inflight_len; /* bytes of inflight_bb, counted in q_bytes */
    struct tg__scall *prev, *next; /* all live calls, for shutdown */
};

struct tg__server {
    grpc_server *server;
    grpc_completion_queue *cq;
    const tg__method *methods;
    size_t nmethods;
    void **registered;
    const tg__server_ops *ops;
    void *ud;
    int port;
    int tick_ms;
    volatile sig_atomic_t stop;
    tg__scall *calls;
    size_t live_slots;
};

static void scall_pump(tg__scall *c);
static void scall_unref(tg__scall *c);

static int request_slot(tg__server *s, size_t method)
{
    req_slot *r = calloc(1, sizeof(*r));
    grpc_call_error e;

    if (r == NULL)
        return TG_ENOMEM;
    r->srv = s;
    r->method = method;
    r->tag.owner = r;
    grpc_metadata_array_init(&r->md);
    if (method == SIZE_MAX) {
        r->tag.kind = TAG_UNKNOWN_CALL;
        grpc_call_details_init(&r->details);
        e = grpc_server_request_call(s->server, &r->call, &r->details, &r->md,
                                     s->cq, s->cq, &r->tag);
    } else {
        r->tag.kind = TAG_NEW_CALL;
        e = grpc_server_request_registered_call(
            s->server, s->registered[method], &r->call, &r->deadline, &r->md,
            s->methods[method].kind == TG__BIDI ? NULL : &r->payload, s->cq,
            s->cq, &r->tag);
    }
    if (e != GRPC_CALL_OK) {
        grpc_metadata_array_destroy(&r->md);
        if (method == SIZE_MAX)
            grpc_call_details_destroy(&r->details);
        free(r);
        return TG_EINTERNAL;
    }
    s->live_slots++;
    return TG_OK;
}

static void slot_free(req_slot *r)
{
    grpc_metadata_array_destroy(&r->md);
    if (r->method == SIZE_MAX)
        grpc_call_details_destroy(&r->details);
    if (r->payload)
        grpc_byte_buffer_destroy(r->payload);
    r->srv->live_slots--;
    free(r);
}

static tg__scall *scall_new(tg__server *s, grpc_call *call, size_t method)
{
    tg__scall *c = calloc(1, sizeof(*c));
    grpc_op op;

    if (c == NULL) {
        grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                     "scheduler out of memory", NULL);
        grpc_call_unref(call);
        return NULL;
    }
    c->srv = s;
    c->call = call;
    c->method = method;
    c->started_us = tg__now_us();
    c->refs = 1;
    c->tag_send.kind = TAG_SEND;
    c->tag_send.owner = c;
    c->tag_recv.kind = TAG_RECV;
    c->tag_recv.owner = c;
    c->tag_close.kind = TAG_CLOSE;
    c->tag_close.owner = c;
    c->status_details = grpc_empty_slice();
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(call, &op, 1, &c->tag_close, NULL) ==
        GRPC_CALL_OK)
        c->refs++;
    else
        c->closed = true;
    return c;
}

static void scall_unref(tg__scall *c)
{
    send_item *it, *nx;

    if (--c->refs > 0)
        return;
    for (it = c->q_head; it; it = nx) {
        nx = it->next;
        free(it->buf);
        if (it->release)
            it->release(it->release_ud);
        free(it);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    grpc_slice_unref(c->status_details);
    free(c->finish_msg);
    if (c->peer)
        gpr_free(c->peer);
    grpc_call_unref(c->call);
    free(c);
}

/* Call on_done once the call is closed and nothing of ours is in flight
 * that the user could still observe. */
static void scall_maybe_done(tg__scall *c)
{
    if (c->closed && !c->done_called) {
        c->done_called = true;
        if (c->srv->ops->on_done)
            c->srv->ops->on_done(c->srv->ud, c);
        scall_unref(c); /* the reference held for the user */
    }
}

static void scall_arm_recv(tg__scall *c)
{
    grpc_op op;

    if (c->recv_armed || c->closed || c->finish_requested)
        return;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    c->recv_bb = NULL;
    if (grpc_call_start_batch(c->call, &op, 1, &c->tag_recv, NULL) ==
        GRPC_CALL_OK) {
        c->recv_armed = true;
        c->refs++;
    }
}

/* Start the next send batch: queued messages in order, then the status. */
static void scall_pump(tg__scall *c)
{
    grpc_op ops[3];
    size_t n = 0;
    send_item *it;

    if (c->send_inflight || c->status_sent || c->closed)
        return;
    memset(ops, 0, sizeof(ops));
    if (!c->initial_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_sent = true;
    }
    it = c->q_head;
    if (it != NULL) {
        grpc_slice sl[2];
        size_t nsl = 1;

        sl[0] = grpc_slice_new(it->buf, it->len, free);
        if (it->release != NULL) /* gRPC releases the tail once written */
            sl[nsl++] = grpc_slice_new_with_user_data(
                (void *)it->tail, it->tail_len, it->release, it->release_ud);
        c->inflight_bb = grpc_raw_byte_buffer_create(sl, nsl);
        for (size_t i = 0; i < nsl; i++)
            grpc_slice_unref(sl[i]);
        c->q_head = it->next;
        if (c->q_head == NULL)
            c->q_tail = NULL;
        c->q_len--;
        c->inflight_len = it->len;
        free(it);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->inflight_bb;
        n++;
    }
    /* The status may ride with the last message (a unary reply is one
     * batch). */
    if (c->finish_requested && c->q_head == NULL) {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status =
            tg__status_to_grpc(c->finish_status);
        grpc_slice_unref(c->status_details);
        c->status_details =
            grpc_slice_from_copied_string(c->finish_msg ? c->finish_msg : "");
        ops[n].data.send_status_from_server.status_details = &c->status_details;
        n++;
        c->status_sent = true;
    }
    if (n == 0)
        return;
    if (grpc_call_start_batch(c->call, ops, n, &c->tag_send, NULL) ==
        GRPC_CALL_OK) {
        c->send_inflight = true;
        c->refs++;
    } else if (c->inflight_bb) {
        grpc_byte_buffer_destroy(c->inflight_bb);
        c->inflight_bb = NULL;
        c->q_bytes -= c->inflight_len;
        c->inflight_len = 0;
    }
}

/* Queue one message without starting a send (see tg__scall_reply). */
static int scall_enqueue_parts(tg__scall *c, uint8_t *buf, size_t len,
                               const tg__scall_tail *tail)
{
    send_item *it;

    if (c->closed || c->finish_requested ||
        (it = calloc(1, sizeof(*it))) == NULL) {
        free(buf);
        if (tail != NULL && tail->release != NULL)
            tail->release(tail->ud);
        return c->closed || c->finish_requested ? TG_ECANCELLED : TG_ENOMEM;
    }
    it->buf = buf;
    it->len = len;
    if (tail != NULL && tail->release != NULL) {
        it->tail = tail->bytes;
        it->tail_len = tail->len;
        it->release = tail->release;
        it->release_ud = tail->ud;
    }
    if (c->q_tail)
        c->q_tail->next = it;
    else
        c->q_head = it;
    c->q_tail = it;
    c->q_len++;
    c->q_bytes += len;
    return TG_OK;
}

static int scall_enqueue(tg__scall *c, uint8_t *buf, size_t len)
{
    return scall_enqueue_parts(c, buf, len, NULL);
}

int tg__scall_send(tg__scall *c, uint8_t *buf, size_t len)
{
    int rc = scall_enqueue(c, buf, len);

    if (rc == TG_OK)
        scall_pump(c);
    return rc;
}

int tg__scall_send_borrowed(tg__scall *c, uint8_t *head, size_t head_len,
                            const tg__scall_tail *tail)
{
    int rc = scall_enqueue_parts(c, head, head_len, tail);

    if (rc == TG_OK)
        scall_pump(c);
    return rc;
}

int tg__scall_finish(tg__scall *c, int status, const char *message)
{
    if (c->finish_requested)
        return TG_ESTATE;
    c->finish_requested = true;
    c->finish_status = status;
    c->finish_msg = strdup(message ? message : "");
    scall_pump(c);
    return TG_OK;
}

int tg__scall_reply(tg__scall *c, uint8_t *buf, size_t len)
{
    int rc = scall_enqueue(c, buf, len);

    if (rc != TG_OK)
        return rc;
    /* Queued but not started: the finish below sends initial metadata,
     * the message and the status in one batch (one write, one wake-up of
     * the peer), unless an earlier send is still in flight. */
    return tg__scall_finish(c, TG_OK, "");
}

size_t tg__scall_pending(const tg__scall *c)
{
    return c->q_len + (c->send_inflight ? 1 : 0);
}

size_t tg__scall_pending_bytes(const tg__scall *c)
{
    return c->q_bytes;
}

size_t tg__scall_method(const tg__scall *c)
{
    return c->method;
}

int64_t tg__scall_started_us(const tg__scall *c)
{
    return c->started_us;
}

int tg__scall_code(const tg__scall *c)
{
    if (!c->status_sent)
        return GRPC_STATUS_CANCELLED;
    return (int)tg__status_to_grpc(c->finish_status);
}

void tg__scall_set_data(tg__scall *c, void *data)
{
    c->data = data;
}

void *tg__scall_data(const tg__scall *c)
{
    return c->data;
}

const char *tg__scall_peer(const tg__scall *c)
{
    tg__scall *m = (tg__scall *)c;

    if (m->peer == NULL)
        m->peer = grpc_call_get_peer(m->call);
    return m->peer ? m->peer : "";
}

void tg__scall_role(const tg__scall *c, char *buf, size_t len)
{
    grpc_auth_context *ac;
    grpc_auth_property_iterator it;
    const grpc_auth_property *p;
    char why[512];
    int rc;

    if (len == 0)
        return;
    buf[0] = '\0';
    ac = grpc_call_auth_context(c->call);
    if (ac == NULL)
        return;
    /* The verified leaf certificate as gRPC received it, parsed as X.509
     * by util/role.c. Never the "x509_subject" text or the SAN properties:
     * matching text there lets a CN such as "x,OU=admin" or a DNS name
     * "taskgrid:role=admin" choose a role. */
    it = grpc_auth_context_find_properties_by_name(
        ac, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    p = grpc_auth_property_iterator_next(&it);
    if (p != NULL && grpc_auth_property_iterator_next(&it) == NULL) {
        rc = tg__role_from_pem(p->value, p->value_length, buf, len, why,
                               sizeof(why));
        if (rc != TG_OK)
            TG_LOG_WARN("peer %s: its certificate gets no role: %s",
                        tg__scall_peer(c), why);
    }
    grpc_auth_context_release(ac);
}

/*
 * What a refused TLS handshake means, from the OpenSSL reason gRPC logs.
 * gRPC C core 1.51 refuses a client certificate inside the handshake and
 * tells the application nothing (the client only sees "Socket closed"),
 * so its own log line is the one place the reason appears.
 */
static const char *handshake_meaning(const char *msg)
{
    static const struct {
        const char *reason;
        const char *meaning;
    } known[] = {
        {"peer did not return a certificate",
         "the client presented no certificate"},
        {"certificate verify failed",
         "the client's certificate is not signed by the cluster CA, or has "
         "expired or is not valid yet"},
        {"unknown ca", "the client does not trust this scheduler's CA"},
        {"certificate expired", "a certificate has expired"},
        {"wrong version number", "the client does not speak TLS"},
        {"http request", "the client does not speak TLS"},
    };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strstr(msg, known[i].reason) != NULL)
            return known[i].meaning;
    return "see the reason";
}

/*
 * gRPC's own log lines, in the daemon's log format. A refused handshake
 * becomes one clear line with its meaning and OpenSSL's reason; the rest
 * keep gRPC's severity. Runs on gRPC's threads: only writes a line.
 */
static void grpc_log_line(gpr_log_func_args *a)
{
    static const char marker[] = "Handshake failed with fatal error ";
    const char *m = a->message ? a->message : "";
    const char *h = strstr(m, marker);

    if (h != NULL) {
        const char *reason = strrchr(h, ':');

        reason = reason ? reason + 1 : h + sizeof(marker) - 1;
        while (*reason == ' ')
            reason++;
        int n = (int)strlen(reason);

        while (n > 0 && (reason[n - 1] == '.' || reason[n - 1] == '\n'))
            n--;
        TG_LOG_WARN("refused a TLS handshake: %s (%.*s)", handshake_meaning(m),
                    n, reason);
        return;
    }
    if (a->severity == GPR_LOG_SEVERITY_ERROR)
        TG_LOG_ERROR("grpc: %s", m);
    else if (a->severity == GPR_LOG_SEVERITY_INFO)
        TG_LOG_INFO("grpc: %s", m);
    else
        TG_LOG_DEBUG("grpc: %s", m);
}

int tg__server_new(tg__server **out, const tg__server_opts *opts,
                   const tg__method *methods, size_t nmethods,
                   const tg__server_ops *ops, void *ud)
{
    tg__server *s;
    grpc_server_credentials *creds;
    grpc_arg argv[4];
    grpc_channel_args args;
    char target[512];
    bool tls;
    int rc;
    size_t i;

    *out = NULL;
    rc = tg__address_parse(opts->listen, target, sizeof(target), &tls);
    if (rc != TG_OK)
        return rc;
    if (tls && (opts->sec == NULL || opts->sec->ca_pem == NULL ||
                opts->sec->cert_pem == NULL || opts->sec->key_pem == NULL))
        return tg__error_set(TG_ETLS,
                             "listening on %s needs a CA, a certificate and "
                             "a key",
                             opts->listen);
    if (tls)
        gpr_set_log_function(grpc_log_line);
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    s->registered = calloc(nmethods ? nmethods : 1, sizeof(void *));
    if (s->registered == NULL) {
        free(s);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    s->methods = methods;
    s->nmethods = nmethods;
    s->ops = ops;
    s->ud = ud;
    s->tick_ms = opts->tick_ms > 0 ? opts->tick_ms : 100;
    tg__rpc_init();
    tg__grpc_channel_args(
        opts->max_msg ? opts->max_msg : TG__RPC_DEFAULT_MAX_MSG, argv);
    /* Clients keep idle connections alive with a ping every 30 s (a
     * Gather or Watch may be silent for long). gRPC's server default
     * allows one ping per 5 minutes without data and answers more with
     * GOAWAY "too_many_pings", which broke idle clients after a minute or
     * two: accept pings every 10 s, with or without calls. */
    argv[2].type = GRPC_ARG_INTEGER;
    argv[2].key = (char *)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
    argv[2].value.integer = 10000;
    argv[3].type = GRPC_ARG_INTEGER;
    argv[3].key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    argv[3].value.integer = 1;
    args.num_args = 4;
    args.args = argv;
    s->server = grpc_server_create(&args, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    for (i = 0; i < nmethods; i++)
        s->registered[i] = grpc_server_register_method(
            s->server, methods[i].path, NULL,
            methods[i].kind == TG__BIDI
                ? GRPC_SRM_PAYLOAD_NONE
                : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    if (tls) {
        creds = tg__server_tls_credentials(
            opts->sec->ca_pem, opts->sec->cert_pem, opts->sec->key_pem);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    s->port = creds ? grpc_server_add_http2_port(s->server, target, creds) : 0;
    if (creds != NULL)
        grpc_server_credentials_release(creds);
    if (s->port == 0) {
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(
                   s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
        free(s->registered);
        free(s);
        tg__rpc_shutdown();
        if (creds == NULL)
            return tg__error_set(TG_ETLS,
                                 "cannot serve TLS on %s: the CA holds no "
                                 "certificate (or out of memory)",
                                 opts->listen);
        return tg__error_set(TG_EIO, "cannot listen on %s (in use?)",
                             opts->listen);
    }
    grpc_server_start(s->server);
    /* A few outstanding requests per method, so bursts of new calls do
     * not wait for the loop to re-request. */
    for (i = 0; i < nmethods; i++)
        for (int k = 0; k < 4; k++)
            request_slot(s, i);
    request_slot(s, SIZE_MAX);
    *out = s;
    return TG_OK;
}

int tg__server_port(const tg__server *s)
{
    return s->port;
}

void tg__server_stop(tg__server *s)
{
    s->stop = 1;
}

static void on_new_call(tg__server *s, req_slot *r, bool ok)
{
    tg__scall *c;
    size_t method = r->method;
    uint8_t *req = NULL;
    size_t len = 0;

    if (!ok || s->stop) {
        /* Shutting down: the slot is returned unfilled. */
        if (ok && r->call) {
            grpc_call_cancel_with_status(r->call, GRPC_STATUS_UNAVAILABLE,
                                         "scheduler is shutting down", NULL);
            grpc_call_unref(r->call);
        }
        slot_free(r);
        return;
    }
    request_slot(s, method);
    c = scall_new(s, r->call, method);
    r->call = NULL;
    if (c == NULL) {
        slot_free(r);
        return;
    }
    if (s->methods[method].kind != TG__BIDI) {
        if (r->payload == NULL) {
            slot_free(r);
            tg__scall_finish(c, TG_EINVAL, "missing request message");
            scall_maybe_done(c);
            return;
        }
        if (tg__grpc_read(r->payload, &req, &len) != TG_OK) {
            slot_free(r);
            tg__scall_finish(c, TG_EPROTO, "unreadable request message");
            scall_maybe_done(c);
            return;
        }
    }
    slot_free(r);
    s->ops->on_call(s->ud, c, method, req, len);
    free(req);
    if (s->methods[method].kind == TG__BIDI)
        scall_arm_recv(c);
    scall_maybe_done(c);
}

static void on_unknown_call(tg__server *s, req_slot *r, bool ok)
{
    if (ok && !s->stop) {
        char *m = grpc_slice_to_c_string(r->details.method);
        char msg[300];

        request_slot(s, SIZE_MAX);
        snprintf(msg, sizeof(msg), "unknown method %s", m);
        gpr_free(m);
        grpc_call_cancel_with_status(r->call, GRPC_STATUS_UNIMPLEMENTED, msg,
                                     NULL);
        grpc_call_unref(r->call);
    } else if (ok && r->call) {
        grpc_call_cancel_with_status(r->call, GRPC_STATUS_UNAVAILABLE,
                                     "scheduler is shutting down", NULL);
        grpc_call_unref(r->call);
    }
    slot_free(r);
}

static void on_recv(tg__scall *c, bool ok)
{
    uint8_t *msg = NULL;
    size_t len = 0;

    c->recv_armed = false;
    if (ok && c->recv_bb != NULL && !c->closed) {
        int rc = tg__grpc_read(c->recv_bb, &msg, &len);
        grpc_byte_buffer_destroy(c->recv_bb);
        c->recv_bb = NULL;
        if (rc == TG_OK && !c->done_called && c->srv->ops->on_message)
            c->srv->ops->on_message(c->srv->ud, c, msg, len);
        free(msg);
        scall_arm_recv(c);
    } else {
        if (c->recv_bb) {
            grpc_byte_buffer_destroy(c->recv_bb);
            c->recv_bb = NULL;
        }
        /* The client half-closed: end the call politely. */
        if (ok && !c->finish_requested && !c->closed)
            tg__scall_finish(c, TG_OK, "");
    }
    scall_unref(c);
}

static void on_send(tg__scall *c, bool ok)
{
    c->send_inflight = false;
    c->q_bytes -= c->inflight_len;
    c->inflight_len = 0;
    if (c->inflight_bb) {
        grpc_byte_buffer_destroy(c->inflight_bb);
        c->inflight_bb = NULL;
    }
    if (ok)
        scall_pump(c);
    scall_unref(c);
}

static void on_close(tg__scall *c)
{
    c->closed = true;
    scall_maybe_done(c);
    scall_unref(c);
}

static void dispatch(tg__server *s, grpc_event ev)
{
    srv_tag *t = ev.tag;

    switch (t->kind) {
    case TAG_NEW_CALL:
        on_new_call(s, t->owner, ev.success != 0);
        break;
    case TAG_UNKNOWN_CALL:
        on_unknown_call(s, t->owner, ev.success != 0);
        break;
    case TAG_SEND:
        on_send(t->owner, ev.success != 0);
        break;
    case TAG_RECV:
        on_recv(t->owner, ev.success != 0);
        break;
    case TAG_CLOSE:
        on_close(t->owner);
        break;
    case TAG_SHUTDOWN:
        break;
    }
}

int tg__server_run(tg__server *s)
{
    int64_t last_tick = tg__now_ms();

    while (!s->stop) {
        grpc_event ev = grpc_completion_queue_next(
            s->cq, tg__grpc_deadline(s->tick_ms), NULL);
        int n = 0;

        /* Take what is already queued before ticking, so one tick (which
         * flushes batched sends) covers many events. */
        while (ev.type == GRPC_OP_COMPLETE) {
            dispatch(s, ev);
            if (++n == 256 || s->stop)
                break;
            ev = grpc_completion_queue_next(
                s->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (s->ops->on_tick) {
            int64_t now = tg__now_ms();
            if (n > 0 || now - last_tick >= s->tick_ms) {
                s->ops->on_tick(s->ud, now);
                last_tick = now;
            }
        }
    }
    return TG_OK;
}

void tg__server_free(tg__server *s)
{
    srv_tag shutdown_tag = {TAG_SHUTDOWN, NULL};
    bool shutdown_seen = false;

    if (s == NULL)
        return;
    s->stop = 1;
    grpc_server_shutdown_and_notify(s->server, s->cq, &shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    /* Drain: cancelled calls close (on_done runs), request slots return
     * unfilled, then the shutdown tag. */
    while (!shutdown_seen || s->calls != NULL || s->live_slots > 0) {
        grpc_event ev =
            grpc_completion_queue_next(s->cq, tg__grpc_deadline(1000), NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            continue;
        if (ev.type != GRPC_OP_COMPLETE)
            break;
        if (ev.tag == &shutdown_tag)
            shutdown_seen = true;
        else
            dispatch(s, ev);
    }
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    free(s->registered);
    free(s);
    tg__rpc_shutdown();
}
