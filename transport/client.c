/* SPDX-License-Identifier: Apache-2.0
 *
 * client.c: the client side of the transport (client.h). Client calls run
 * on per-call "pluck" completion queues, so any thread can block on its
 * own call with a deadline and a worker's sender and receiver threads can
 * share one stream. Depends on the gRPC C core and common.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "transport/client.h"
#include "transport/grpc_util.h"
#include "util/address.h"
#include "util/error.h"

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

struct tg__chan {
    grpc_channel *channel;
    char target[512];
    char address[520]; /* as given, for messages */
    bool tls;
    char *hint;    /* see tg__rpc_sec.hint; NULL if none */
    char what[32]; /* the server, in messages: "scheduler", "worker" */
};

int tg__chan_open(tg__chan **out, const char *address, const tg__rpc_sec *sec,
                  size_t max_msg)
{
    tg__chan *ch;
    bool tls;
    grpc_channel_credentials *creds;
    grpc_arg argv[3];
    grpc_channel_args args;
    int rc;

    *out = NULL;
    ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    rc = tg__address_parse(address, ch->target, sizeof(ch->target), &tls);
    if (rc != TG_OK) {
        free(ch);
        return rc;
    }
    snprintf(ch->address, sizeof(ch->address), "%s", address);
    snprintf(ch->what, sizeof(ch->what), "scheduler");
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
    tg__grpc_channel_args(max_msg ? max_msg : TG__RPC_DEFAULT_MAX_MSG, argv);
    args.num_args = 2;
    if (tls && sec->tls_name != NULL) {
        argv[2].type = GRPC_ARG_STRING;
        argv[2].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        argv[2].value.string = (char *)sec->tls_name;
        args.num_args = 3;
    }
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

void tg__chan_set_peer_kind(tg__chan *ch, const char *what)
{
    snprintf(ch->what, sizeof(ch->what), "%s", what ? what : "server");
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
        ev = grpc_completion_queue_pluck(
            cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
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
            "the TLS handshake with %s failed: the %s's certificate "
            "does not name the host of this address (%.*s); connect with a "
            "name the certificate lists, or remake it to include this one "
            "(taskgrid-certs --hosts)",
            ch->address, ch->what, (int)strcspn(peer + 10, " "), peer + 10);
    if (strstr(msg, "wrong version number") != NULL)
        return tg__error_set(TG_ETLS,
                             "the TLS handshake with %s failed: the server "
                             "does not speak TLS (a plaintext scheduler? "
                             "then use tcp://%s)",
                             ch->address, ch->target);
    if (strstr(msg, "certificate verify failed") != NULL)
        return tg__error_set(TG_ETLS,
                             "the TLS handshake with %s failed: the "
                             "%s's certificate is not trusted here "
                             "(not signed by the CA given as security.ca / "
                             "--tls-ca, or expired)",
                             ch->address, ch->what);
    if (strstr(msg, "Ssl handshake failed") != NULL ||
        strstr(msg, "Handshake failed") != NULL)
        return tg__error_set(TG_ETLS, "the TLS handshake with %s failed: %s",
                             ch->address, msg);
    if (closed)
        return tg__error_set(
            TG_ETLS,
            "the TLS handshake with %s failed: the %s closed the "
            "connection, which is how it refuses a certificate (none "
            "given, not signed by the cluster CA it trusts, or expired)%s%s",
            ch->address, ch->what, ch->hint ? "; " : "",
            ch->hint ? ch->hint : "");
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
    rc = tg__grpc_to_status(code);
    if (rc == TG_EUNAVAILABLE)
        tg__error_set(rc, "%s at %s unavailable: %s", ch->what, ch->target,
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
                                    NULL, tg__grpc_deadline(timeout_ms), NULL);
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
    rc = tg__grpc_read(recv_bb, resp, resplen);

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
        tg__grpc_deadline(timeout_ms > 0 ? timeout_ms : -1), NULL);
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
                             const char *method, const uint8_t *req, size_t len,
                             int64_t timeout_ms)
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
            s->cq, &s->tag_status, tg__grpc_deadline(timeout_ms), NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return tg__error_set(TG_ETIMEDOUT,
                                 "%s: no status from the scheduler", s->method);
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
    grpc_event ev = grpc_completion_queue_pluck(
        s->cq, tag, tg__grpc_deadline(timeout_ms), NULL);

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
            return tg__error_set(
                TG_ETIMEDOUT, "%s: could not reach the scheduler", s->method);
        s->init_pending = false;
        if (!ok)
            s->send_failed = true;
    }
    if (s->send_pending) {
        if (!pluck_send(s, &s->tag_send, timeout_ms, &ok))
            return tg__error_set(TG_ETIMEDOUT, "%s: send timed out", s->method);
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
        return tg__error_set(TG_EUNAVAILABLE, "%s: the call ended", s->method);
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

/* Wait for the next message into s->recv_bb: TG_OK with it set, TG_OK
 * with it NULL once the server ended the call with OK, or a failure. */
static int cstream_wait(tg__cstream *s, int64_t timeout_ms)
{
    grpc_event ev;

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
                                     tg__grpc_deadline(timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return TG_ETIMEDOUT;
    s->recv_pending = false;
    if (s->recv_bb == NULL) {
        s->recv_ended = true;
        return cstream_status(s, 5000);
    }
    return TG_OK;
}

int tg__cstream_recv(tg__cstream *s, uint8_t **buf, size_t *len,
                     int64_t timeout_ms)
{
    int rc;

    *buf = NULL;
    *len = 0;
    rc = cstream_wait(s, timeout_ms);
    if (rc != TG_OK || s->recv_bb == NULL)
        return rc;
    rc = tg__grpc_read(s->recv_bb, buf, len);
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
    return rc;
}

struct tg__msg {
    grpc_byte_buffer_reader r;
    grpc_slice cur; /* the slice being read (empty before the first) */
    size_t pos;     /* read so far of `cur` */
    size_t left;    /* of the whole message */
};

size_t tg__msg_left(const tg__msg *m)
{
    return m->left;
}

int tg__msg_read(tg__msg *m, void *dst, size_t n)
{
    uint8_t *out = dst;

    if (n > m->left)
        return tg__error_set(TG_EPROTO, "message ends %zu bytes early",
                             n - m->left);
    m->left -= n;
    while (n > 0) {
        size_t have = GRPC_SLICE_LENGTH(m->cur) - m->pos, k;

        if (have == 0) {
            grpc_slice_unref(m->cur);
            m->cur = grpc_empty_slice();
            m->pos = 0;
            if (!grpc_byte_buffer_reader_next(&m->r, &m->cur))
                return tg__error_set(TG_EPROTO, "message ends early");
            continue;
        }
        k = have < n ? have : n;
        if (out != NULL) {
            memcpy(out, GRPC_SLICE_START_PTR(m->cur) + m->pos, k);
            out += k;
        }
        m->pos += k;
        n -= k;
    }
    return TG_OK;
}

/* The message's length as read (after any decompression): the sum of the
 * slices a reader gives, peeked without copying. */
static bool message_length(grpc_byte_buffer *bb, size_t *len)
{
    grpc_byte_buffer_reader r;
    grpc_slice *sl;

    *len = 0;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return false;
    while (grpc_byte_buffer_reader_peek(&r, &sl))
        *len += GRPC_SLICE_LENGTH(*sl);
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}

int tg__cstream_recv_msg(tg__cstream *s, int (*fn)(void *ud, tg__msg *m),
                         void *ud, bool *ended, int64_t timeout_ms)
{
    tg__msg m;
    int rc = cstream_wait(s, timeout_ms);

    *ended = false;
    if (rc != TG_OK)
        return rc;
    if (s->recv_bb == NULL) {
        *ended = true;
        return TG_OK;
    }
    if (!message_length(s->recv_bb, &m.left) ||
        !grpc_byte_buffer_reader_init(&m.r, s->recv_bb)) {
        rc = tg__error_set(TG_EPROTO, "cannot read gRPC message");
    } else {
        m.cur = grpc_empty_slice();
        m.pos = 0;
        rc = fn(ud, &m);
        grpc_slice_unref(m.cur);
        grpc_byte_buffer_reader_destroy(&m.r);
    }
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
