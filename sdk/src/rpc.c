/* SPDX-License-Identifier: Apache-2.0
 *
 * rpc.c: taskgrid's one gRPC layer (see rpc.h). Client calls run on
 * per-call "pluck" completion queues, so any thread can block on its own
 * call with a deadline and a worker's sender and receiver threads can share
 * one stream. The server is one completion queue driven by one thread
 * (tg__server_run), which owns every call and runs all callbacks, in the
 * style of redis' ae loop. Depends on the gRPC C core only.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "error.h"
#include "rpc.h"

/* ------------------------------------------------------------------ */
/* Common                                                              */
/* ------------------------------------------------------------------ */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int init_refs;

void tg__rpc_init(void)
{
    pthread_mutex_lock(&init_mu);
    if (init_refs++ == 0)
        grpc_init();
    pthread_mutex_unlock(&init_mu);
}

void tg__rpc_shutdown(void)
{
    pthread_mutex_lock(&init_mu);
    if (init_refs > 0 && --init_refs == 0)
        grpc_shutdown();
    pthread_mutex_unlock(&init_mu);
}

int64_t tg__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static gpr_timespec deadline_in(int64_t ms)
{
    if (ms < 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int tg__rpc_parse_address(const char *address, char *target, size_t tlen,
                          bool *tls)
{
    const char *rest = address;
    const char *colon;

    if (address == NULL || *address == '\0')
        return tg__error_set(TG_EINVAL, "empty scheduler address");
    *tls = false;
    if (strncmp(address, "tcp://", 6) == 0) {
        rest = address + 6;
    } else if (strncmp(address, "tls://", 6) == 0) {
        rest = address + 6;
        *tls = true;
    } else if (strstr(address, "://") != NULL) {
        return tg__error_set(TG_EINVAL,
                             "unsupported address '%s' (use tcp://host:port "
                             "or tls://host:port)",
                             address);
    }
    colon = strrchr(rest, ':');
    if (colon == NULL || colon == rest || colon[1] == '\0' ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return tg__error_set(TG_EINVAL,
                             "address '%s' has no host:port (e.g. "
                             "tcp://127.0.0.1:8786)",
                             address);
    if (strlen(rest) + 1 > tlen)
        return tg__error_set(TG_EINVAL, "address '%s' is too long", address);
    memcpy(target, rest, strlen(rest) + 1);
    return TG_OK;
}

static int status_from_grpc(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK:
        return TG_OK;
    case GRPC_STATUS_CANCELLED:
        return TG_ECANCELLED;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
        return TG_EINVAL;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return TG_ETIMEDOUT;
    case GRPC_STATUS_NOT_FOUND:
        return TG_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS:
        return TG_EEXIST;
    case GRPC_STATUS_PERMISSION_DENIED:
        return TG_EPERM;
    case GRPC_STATUS_UNAUTHENTICATED:
        return TG_EUNAUTHENTICATED;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return TG_ETOOBIG;
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_ABORTED:
        return TG_ESTATE;
    case GRPC_STATUS_UNIMPLEMENTED:
        return TG_EUNIMPLEMENTED;
    case GRPC_STATUS_UNAVAILABLE:
        return TG_EUNAVAILABLE;
    case GRPC_STATUS_DATA_LOSS:
        return TG_EPROTO;
    default:
        return TG_EINTERNAL;
    }
}

static grpc_status_code status_to_grpc(int status)
{
    switch (status) {
    case TG_OK:
        return GRPC_STATUS_OK;
    case TG_ECANCELLED:
        return GRPC_STATUS_CANCELLED;
    case TG_EINVAL:
    case TG_EPROTO:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case TG_ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case TG_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case TG_EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case TG_EPERM:
        return GRPC_STATUS_PERMISSION_DENIED;
    case TG_EUNAUTHENTICATED:
    case TG_ETLS:
        return GRPC_STATUS_UNAUTHENTICATED;
    case TG_ETOOBIG:
    case TG_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case TG_ESTATE:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case TG_EUNIMPLEMENTED:
        return GRPC_STATUS_UNIMPLEMENTED;
    case TG_EUNAVAILABLE:
        return GRPC_STATUS_UNAVAILABLE;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

/* Copy a received byte buffer into one malloc'd block. */
static int bb_to_mem(grpc_byte_buffer *bb, uint8_t **out, size_t *len)
{
    grpc_byte_buffer_reader r;
    grpc_slice s;
    size_t n;
    uint8_t *p;

    if (!grpc_byte_buffer_reader_init(&r, bb))
        return tg__error_set(TG_EPROTO, "cannot read gRPC message");
    s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    n = GRPC_SLICE_LENGTH(s);
    p = malloc(n ? n : 1);
    if (p == NULL) {
        grpc_slice_unref(s);
        return tg__error_set(TG_ENOMEM, "out of memory reading a message");
    }
    if (n)
        memcpy(p, GRPC_SLICE_START_PTR(s), n);
    grpc_slice_unref(s);
    *out = p;
    *len = n;
    return TG_OK;
}

/* Fill two channel args (max message size both ways) in `store`. */
static void make_args(size_t max_msg, grpc_arg *store)
{
    store[0].type = GRPC_ARG_INTEGER;
    store[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    store[0].value.integer = (int)(max_msg > 0x7fffffff ? 0x7fffffff : max_msg);
    store[1].type = GRPC_ARG_INTEGER;
    store[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    store[1].value.integer = store[0].value.integer;
}

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

struct tg__chan {
    grpc_channel *channel;
    char target[512];
    char address[520]; /* as given, for messages */
    bool tls;
    char *hint; /* see tg__rpc_sec.hint; NULL if none */
};

int tg__chan_open(tg__chan **out, const char *address, const tg__rpc_sec *sec,
                  size_t max_msg)
{
    tg__chan *ch;
    bool tls;
    grpc_channel_credentials *creds;
    grpc_arg argv[2];
    grpc_channel_args args;
    int rc;

    *out = NULL;
    ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    rc = tg__rpc_parse_address(address, ch->target, sizeof(ch->target), &tls);
    if (rc != TG_OK) {
        free(ch);
        return rc;
    }
    snprintf(ch->address, sizeof(ch->address), "%s", address);
    ch->tls = tls;
    if (tls && (sec == NULL || sec->ca_pem == NULL)) {
        free(ch);
        return tg__error_set(TG_ETLS,
                             "address '%s' asks for TLS but no security "
                             "options (CA, certificate, key) were given",
                             address);
    }
    if (!tls && sec != NULL && sec->ca_pem != NULL) {
        free(ch);
        return tg__error_set(TG_ETLS,
                             "security options were given but address '%s' "
                             "is plaintext; use tls://",
                             address);
    }
    if (tls && sec->hint != NULL && (ch->hint = strdup(sec->hint)) == NULL) {
        free(ch);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    tg__rpc_init();
    if (tls) {
        grpc_ssl_pem_key_cert_pair pair = {sec->key_pem, sec->cert_pem};
        creds = grpc_ssl_credentials_create(
            sec->ca_pem, sec->cert_pem ? &pair : NULL, NULL, NULL);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    make_args(max_msg ? max_msg : TG__RPC_DEFAULT_MAX_MSG, argv);
    args.num_args = 2;
    args.args = argv;
    ch->channel = grpc_channel_create(ch->target, creds, &args);
    grpc_channel_credentials_release(creds);
    if (ch->channel == NULL) {
        free(ch->hint);
        free(ch);
        tg__rpc_shutdown();
        return tg__error_set(TG_EUNAVAILABLE, "cannot create a channel to %s",
                             address);
    }
    *out = ch;
    return TG_OK;
}

void tg__chan_close(tg__chan *ch)
{
    if (ch == NULL)
        return;
    grpc_channel_destroy(ch->channel);
    free(ch->hint);
    free(ch);
    tg__rpc_shutdown();
}

/* Drain and destroy a pluck queue whose calls are all finished. */
static void cq_destroy(grpc_completion_queue *cq)
{
    grpc_event ev;

    grpc_completion_queue_shutdown(cq);
    do {
        ev = grpc_completion_queue_pluck(cq, NULL,
                                         gpr_inf_future(GPR_CLOCK_REALTIME),
                                         NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(cq);
}

/*
 * gRPC reports a connection that could not be set up as UNAVAILABLE, with
 * the reason only in the text ("failed to connect to all addresses; last
 * error: ..."), and a server refusing our certificate only as the socket
 * closing. Turn the TLS cases into TG_ETLS with a message that says which
 * side refused what. Returns TG_OK when `msg` is none of them. The texts
 * are gRPC C core 1.51's; //tests:security_test pins them.
 */
static int tls_failure(const tg__chan *ch, const char *msg)
{
    const char *peer;
    bool closed;

    if (strstr(msg, "failed to connect to all addresses") == NULL)
        return TG_OK;
    closed = strstr(msg, "Socket closed") != NULL ||
             strstr(msg, "Connection reset") != NULL ||
             strstr(msg, "Broken pipe") != NULL;
    if (!ch->tls)
        return closed ? tg__error_set(
                            TG_ETLS,
                            "the server at %s closed the connection before "
                            "answering: it probably requires TLS; use "
                            "tls://%s with security options (CA, "
                            "certificate, key)",
                            ch->address, ch->target)
                      : TG_OK;
    if ((peer = strstr(msg, "Peer name ")) != NULL &&
        strstr(msg, "is not in peer certificate") != NULL)
        return tg__error_set(
            TG_ETLS,
            "the TLS handshake with %s failed: the scheduler's certificate "
            "does not name the host of this address (%.*s); connect with a "
            "name the certificate lists, or remake it to include this one "
            "(taskgrid-certs --hosts)",
            ch->address,
            (int)strcspn(peer + 10, " "), peer + 10);
    if (strstr(msg, "wrong version number") != NULL)
        return tg__error_set(TG_ETLS,
                             "the TLS handshake with %s failed: the server "
                             "does not speak TLS (a plaintext scheduler? "
                             "then use tcp://%s)",
                             ch->address, ch->target);
    if (strstr(msg, "certificate verify failed") != NULL)
        return tg__error_set(TG_ETLS,
                             "the TLS handshake with %s failed: the "
                             "scheduler's certificate is not trusted here "
                             "(not signed by the CA given as security.ca / "
                             "--tls-ca, or expired)",
                             ch->address);
    if (strstr(msg, "Ssl handshake failed") != NULL ||
        strstr(msg, "Handshake failed") != NULL)
        return tg__error_set(TG_ETLS, "the TLS handshake with %s failed: %s",
                             ch->address, msg);
    if (closed)
        return tg__error_set(
            TG_ETLS,
            "the TLS handshake with %s failed: the scheduler closed the "
            "connection, which is how it refuses a certificate (none "
            "given, not signed by the cluster CA it trusts, or expired)%s%s",
            ch->address, ch->hint ? "; " : "", ch->hint ? ch->hint : "");
    return TG_OK;
}

static int report_status(grpc_status_code code, grpc_slice details,
                         const char *method, const tg__chan *ch)
{
    char *msg = grpc_slice_to_c_string(details);
    int rc;

    if ((code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_UNKNOWN) &&
        (rc = tls_failure(ch, msg)) != TG_OK) {
        gpr_free(msg);
        return rc;
    }
    rc = status_from_grpc(code);
    if (rc == TG_EUNAVAILABLE)
        tg__error_set(rc, "scheduler at %s unavailable: %s", ch->target,
                      msg);
    else if (rc == TG_ETIMEDOUT && msg[0] == '\0')
        tg__error_set(rc, "%s timed out", method);
    else
        tg__error_set(rc, "%s", msg[0] ? msg : tg_strerror(rc));
    gpr_free(msg);
    return rc;
}

int tg__chan_unary(tg__chan *ch, const char *method, const uint8_t *req,
                   size_t reqlen, uint8_t **resp, size_t *resplen,
                   int64_t timeout_ms)
{
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_op ops[6];
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send_bb, *recv_bb = NULL;
    grpc_slice s, details = grpc_empty_slice();
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_event ev;
    int tag = 0, rc;

    *resp = NULL;
    *resplen = 0;
    cq = grpc_completion_queue_create_for_pluck(NULL);
    call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                    cq, grpc_slice_from_static_string(method),
                                    NULL, deadline_in(timeout_ms), NULL);
    s = grpc_slice_from_copied_buffer((const char *)req, reqlen);
    send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, &tag, NULL) != GRPC_CALL_OK) {
        rc = tg__error_set(TG_EINTERNAL, "cannot start call %s", method);
        goto cleanup;
    }
    /* The call's own deadline bounds this wait. */
    ev = grpc_completion_queue_pluck(cq, &tag,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    (void)ev;
    if (code != GRPC_STATUS_OK) {
        rc = report_status(code, details, method, ch);
        goto cleanup;
    }
    if (recv_bb == NULL) {
        rc = tg__error_set(TG_EPROTO, "%s: empty response", method);
        goto cleanup;
    }
    rc = bb_to_mem(recv_bb, resp, resplen);

cleanup:
    if (recv_bb)
        grpc_byte_buffer_destroy(recv_bb);
    grpc_byte_buffer_destroy(send_bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    cq_destroy(cq);
    return rc;
}

struct tg__cstream {
    tg__chan *ch;
    grpc_call *call;
    grpc_completion_queue *cq;
    char method[128];
    pthread_mutex_t send_mu;
    /* Tags: their addresses identify the batches on the pluck queue. */
    int tag_init, tag_send, tag_recv, tag_status;
    bool init_pending; /* SEND_INITIAL_METADATA not plucked yet */
    bool send_pending; /* a SEND batch timed out and is still running */
    bool send_closed;
    bool send_failed;
    bool recv_pending;
    bool recv_first;
    bool recv_ended;
    bool status_pending;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code code;
    grpc_slice details;
};

/* A stream with its call created and no batch started yet. */
static tg__cstream *cstream_new(tg__chan *ch, const char *method,
                                int64_t timeout_ms)
{
    tg__cstream *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->ch = ch;
    snprintf(s->method, sizeof(s->method), "%s", method);
    pthread_mutex_init(&s->send_mu, NULL);
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trail_md);
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;
    s->recv_first = true;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = grpc_channel_create_call(
        ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
        grpc_slice_from_static_string(s->method), NULL,
        deadline_in(timeout_ms > 0 ? timeout_ms : -1), NULL);
    return s;
}

static void cstream_start_status(tg__cstream *s)
{
    grpc_op op;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
    op.data.recv_status_on_client.status = &s->code;
    op.data.recv_status_on_client.status_details = &s->details;
    grpc_call_start_batch(s->call, &op, 1, &s->tag_status, NULL);
    s->status_pending = true;
}

int tg__cstream_open(tg__cstream **out, tg__chan *ch, const char *method,
                     int64_t timeout_ms)
{
    tg__cstream *s;
    grpc_op op;

    *out = NULL;
    s = cstream_new(ch, method, timeout_ms);
    if (s == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_call_start_batch(s->call, &op, 1, &s->tag_init, NULL);
    s->init_pending = true;
    cstream_start_status(s);
    *out = s;
    return TG_OK;
}

int tg__cstream_open_request(tg__cstream **out, tg__chan *ch,
                             const char *method, const uint8_t *req,
                             size_t len, int64_t timeout_ms)
{
    tg__cstream *s;
    grpc_op ops[5];
    grpc_byte_buffer *bb;
    grpc_slice sl;

    *out = NULL;
    s = cstream_new(ch, method, timeout_ms);
    if (s == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    /* Everything up to the first response in one batch, as a unary call
     * does: one write to the scheduler, one wake-up here. */
    sl = grpc_slice_from_copied_buffer((const char *)req, len);
    bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv_bb;
    if (grpc_call_start_batch(s->call, ops, 5, &s->tag_recv, NULL) !=
        GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(bb);
        tg__cstream_free(s);
        return tg__error_set(TG_EINTERNAL, "%s: cannot start call", method);
    }
    grpc_byte_buffer_destroy(bb);
    s->recv_pending = true;
    s->recv_first = false;
    s->send_closed = true;
    cstream_start_status(s);
    *out = s;
    return TG_OK;
}

/* Wait for the final status (bounded) and turn it into a tg_status. */
static int cstream_status(tg__cstream *s, int64_t timeout_ms)
{
    if (s->status_pending) {
        grpc_event ev = grpc_completion_queue_pluck(
            s->cq, &s->tag_status, deadline_in(timeout_ms), NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return tg__error_set(TG_ETIMEDOUT,
                                 "%s: no status from the scheduler",
                                 s->method);
        s->status_pending = false;
    }
    if (s->code == GRPC_STATUS_OK)
        return TG_OK;
    return report_status(s->code, s->details, s->method, s->ch);
}

/* Pluck a send-side tag; false on timeout (the batch stays pending). */
static bool pluck_send(tg__cstream *s, void *tag, int64_t timeout_ms,
                       bool *success)
{
    grpc_event ev =
        grpc_completion_queue_pluck(s->cq, tag, deadline_in(timeout_ms), NULL);

    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return false;
    *success = ev.success != 0;
    return true;
}

static int send_locked(tg__cstream *s, const uint8_t *buf, size_t len,
                       bool close, int64_t timeout_ms)
{
    grpc_op ops[2];
    grpc_byte_buffer *bb = NULL;
    size_t n = 0;
    bool ok = true;

    if (s->send_failed || s->send_closed)
        return tg__error_set(TG_EUNAVAILABLE, "%s: stream is closed",
                             s->method);
    if (s->init_pending) {
        if (!pluck_send(s, &s->tag_init, timeout_ms, &ok))
            return tg__error_set(TG_ETIMEDOUT,
                                 "%s: could not reach the scheduler",
                                 s->method);
        s->init_pending = false;
        if (!ok)
            s->send_failed = true;
    }
    if (s->send_pending) {
        if (!pluck_send(s, &s->tag_send, timeout_ms, &ok))
            return tg__error_set(TG_ETIMEDOUT, "%s: send timed out",
                                 s->method);
        s->send_pending = false;
        if (!ok)
            s->send_failed = true;
    }
    if (s->send_failed)
        return tg__error_set(TG_EUNAVAILABLE, "%s: stream is broken",
                             s->method);
    memset(ops, 0, sizeof(ops));
    if (buf != NULL) {
        grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
        bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    if (close) {
        ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        n++;
        s->send_closed = true;
    }
    if (grpc_call_start_batch(s->call, ops, n, &s->tag_send, NULL) !=
        GRPC_CALL_OK) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        s->send_failed = true;
        return tg__error_set(TG_EINTERNAL, "%s: cannot start send", s->method);
    }
    /* gRPC holds its own reference to the payload once started. */
    if (bb)
        grpc_byte_buffer_destroy(bb);
    if (!pluck_send(s, &s->tag_send, timeout_ms, &ok)) {
        s->send_pending = true;
        return tg__error_set(TG_ETIMEDOUT, "%s: send timed out", s->method);
    }
    if (!ok) {
        s->send_failed = true;
        return tg__error_set(TG_EUNAVAILABLE, "%s: the call ended",
                             s->method);
    }
    return TG_OK;
}

int tg__cstream_send(tg__cstream *s, const uint8_t *buf, size_t len,
                     int64_t timeout_ms)
{
    int rc;

    pthread_mutex_lock(&s->send_mu);
    rc = send_locked(s, buf, len, false, timeout_ms);
    pthread_mutex_unlock(&s->send_mu);
    return rc;
}

int tg__cstream_close_send(tg__cstream *s, int64_t timeout_ms)
{
    int rc;

    pthread_mutex_lock(&s->send_mu);
    rc = s->send_closed ? TG_OK : send_locked(s, NULL, 0, true, timeout_ms);
    pthread_mutex_unlock(&s->send_mu);
    return rc;
}

int tg__cstream_recv(tg__cstream *s, uint8_t **buf, size_t *len,
                     int64_t timeout_ms)
{
    grpc_event ev;
    int rc;

    *buf = NULL;
    *len = 0;
    if (s->recv_ended)
        return cstream_status(s, 5000);
    if (!s->recv_pending) {
        grpc_op ops[2];
        size_t n = 0;

        memset(ops, 0, sizeof(ops));
        if (s->recv_first) {
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n].data.recv_initial_metadata.recv_initial_metadata =
                &s->init_md;
            n++;
            s->recv_first = false;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n].data.recv_message.recv_message = &s->recv_bb;
        n++;
        s->recv_bb = NULL;
        if (grpc_call_start_batch(s->call, ops, n, &s->tag_recv, NULL) !=
            GRPC_CALL_OK)
            return tg__error_set(TG_EINTERNAL, "%s: cannot start receive",
                                 s->method);
        s->recv_pending = true;
    }
    ev = grpc_completion_queue_pluck(s->cq, &s->tag_recv,
                                     deadline_in(timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return TG_ETIMEDOUT;
    s->recv_pending = false;
    if (s->recv_bb == NULL) {
        s->recv_ended = true;
        return cstream_status(s, 5000);
    }
    rc = bb_to_mem(s->recv_bb, buf, len);
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
    return rc;
}

void tg__cstream_free(tg__cstream *s)
{
    grpc_event ev;

    if (s == NULL)
        return;
    if (s->status_pending)
        grpc_call_cancel(s->call, NULL);
    /* Every started batch completes once the call is cancelled or over. */
    if (s->init_pending)
        grpc_completion_queue_pluck(s->cq, &s->tag_init,
                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (s->send_pending)
        grpc_completion_queue_pluck(s->cq, &s->tag_send,
                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (s->recv_pending) {
        ev = grpc_completion_queue_pluck(
            s->cq, &s->tag_recv, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        (void)ev;
        if (s->recv_bb)
            grpc_byte_buffer_destroy(s->recv_bb);
    }
    if (s->status_pending)
        grpc_completion_queue_pluck(s->cq, &s->tag_status,
                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_call_unref(s->call);
    cq_destroy(s->cq);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trail_md);
    pthread_mutex_destroy(&s->send_mu);
    free(s);
}

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
    void *data;
    char *peer;
    grpc_byte_buffer *inflight_bb;
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
        grpc_slice sl = grpc_slice_new(it->buf, it->len, free);
        c->inflight_bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        c->q_head = it->next;
        if (c->q_head == NULL)
            c->q_tail = NULL;
        c->q_len--;
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
            status_to_grpc(c->finish_status);
        grpc_slice_unref(c->status_details);
        c->status_details =
            grpc_slice_from_copied_string(c->finish_msg ? c->finish_msg : "");
        ops[n].data.send_status_from_server.status_details =
            &c->status_details;
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
    }
}

/* Queue one message without starting a send (see tg__scall_reply). */
static int scall_enqueue(tg__scall *c, uint8_t *buf, size_t len)
{
    send_item *it;

    if (c->closed || c->finish_requested) {
        free(buf);
        return TG_ECANCELLED;
    }
    it = malloc(sizeof(*it));
    if (it == NULL) {
        free(buf);
        return TG_ENOMEM;
    }
    it->next = NULL;
    it->buf = buf;
    it->len = len;
    if (c->q_tail)
        c->q_tail->next = it;
    else
        c->q_head = it;
    c->q_tail = it;
    c->q_len++;
    return TG_OK;
}

int tg__scall_send(tg__scall *c, uint8_t *buf, size_t len)
{
    int rc = scall_enqueue(c, buf, len);

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

size_t tg__scall_method(const tg__scall *c)
{
    return c->method;
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
    static const char uri_prefix[] = "taskgrid:role=";

    if (len == 0)
        return;
    buf[0] = '\0';
    ac = grpc_call_auth_context(c->call);
    if (ac == NULL)
        return;
    /* A URI SAN "taskgrid:role=NAME" wins: under "peer_uri" in gRPC
     * 1.51, and also under the generic SAN property, which older gRPC
     * versions fill with every SAN. */
    for (int k = 0; k < 2; k++) {
        it = grpc_auth_context_find_properties_by_name(
            ac, k == 0 ? GRPC_PEER_URI_PROPERTY_NAME
                       : GRPC_X509_SAN_PROPERTY_NAME);
        while ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
            size_t pl = sizeof(uri_prefix) - 1;
            if (p->value_length > pl &&
                memcmp(p->value, uri_prefix, pl) == 0) {
                size_t n = p->value_length - pl;
                if (n >= len)
                    n = len - 1;
                memcpy(buf, p->value + pl, n);
                buf[n] = '\0';
                grpc_auth_context_release(ac);
                return;
            }
        }
    }
    /* Else the subject's OU. */
    it = grpc_auth_context_find_properties_by_name(
        ac, GRPC_X509_SUBJECT_PROPERTY_NAME);
    if ((p = grpc_auth_property_iterator_next(&it)) != NULL) {
        const char *v = p->value, *end = p->value + p->value_length;
        const char *ou = NULL;
        for (const char *q = v; q + 3 <= end; q++) {
            if ((q == v || q[-1] == ',' || q[-1] == '/' || q[-1] == ' ') &&
                memcmp(q, "OU=", 3) == 0) {
                ou = q + 3;
                break;
            }
        }
        if (ou != NULL) {
            size_t n = 0;
            while (ou + n < end && ou[n] != ',' && ou[n] != '/' && n + 1 < len)
                n++;
            memcpy(buf, ou, n);
            buf[n] = '\0';
        }
    }
    grpc_auth_context_release(ac);
}

int tg__server_new(tg__server **out, const tg__server_opts *opts,
                   const tg__method *methods, size_t nmethods,
                   const tg__server_ops *ops, void *ud)
{
    tg__server *s;
    grpc_server_credentials *creds;
    grpc_arg argv[2];
    grpc_channel_args args;
    char target[512];
    bool tls;
    int rc;
    size_t i;

    *out = NULL;
    rc = tg__rpc_parse_address(opts->listen, target, sizeof(target), &tls);
    if (rc != TG_OK)
        return rc;
    if (tls && (opts->sec == NULL || opts->sec->ca_pem == NULL ||
                opts->sec->cert_pem == NULL || opts->sec->key_pem == NULL))
        return tg__error_set(TG_ETLS,
                             "listening on %s needs a CA, a certificate and "
                             "a key",
                             opts->listen);
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
    make_args(opts->max_msg ? opts->max_msg : TG__RPC_DEFAULT_MAX_MSG, argv);
    args.num_args = 2;
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
        grpc_ssl_pem_key_cert_pair pair = {opts->sec->key_pem,
                                           opts->sec->cert_pem};
        creds = grpc_ssl_server_credentials_create_ex(
            opts->sec->ca_pem, &pair, 1,
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    s->port = grpc_server_add_http2_port(s->server, target, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq,
                                          gpr_inf_future(GPR_CLOCK_REALTIME),
                                          NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
        free(s->registered);
        free(s);
        tg__rpc_shutdown();
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
        if (bb_to_mem(r->payload, &req, &len) != TG_OK) {
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
        int rc = bb_to_mem(c->recv_bb, &msg, &len);
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
            s->cq, deadline_in(s->tick_ms), NULL);
        int n = 0;

        /* Take what is already queued before ticking, so one tick (which
         * flushes batched sends) covers many events. */
        while (ev.type == GRPC_OP_COMPLETE) {
            dispatch(s, ev);
            if (++n == 256 || s->stop)
                break;
            ev = grpc_completion_queue_next(s->cq,
                                            gpr_inf_past(GPR_CLOCK_MONOTONIC),
                                            NULL);
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
        grpc_event ev = grpc_completion_queue_next(
            s->cq, deadline_in(1000), NULL);
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
