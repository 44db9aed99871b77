/* SPDX-License-Identifier: Apache-2.0
 *
 * rpc.h (internal): taskgrid's one gRPC layer. Every grpc_* call of the
 * project lives in rpc.c, behind these calls, because the gRPC C core API
 * changes between minor versions. Everything here moves opaque encoded
 * protobuf bytes; the codec is proto/wire.h and the logic is elsewhere.
 *
 * Used by the scheduler (tg__server), the worker (a bidi tg__cstream) and
 * the SDK (tg__chan_unary and a server-streaming tg__cstream).
 *
 * Errors: functions return tg_status codes; details go to tg_error_last()
 * of the calling thread. gRPC status codes map to tg_status here only.
 */
#ifndef TG_SRC_RPC_H
#define TG_SRC_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

/* Default maximum message size both ways (64 MiB). */
#define TG__RPC_DEFAULT_MAX_MSG (64u * 1024u * 1024u)

/*
 * Transport security. All three NULL → plaintext (tcp://). Otherwise PEM
 * text (not file names): the CA that signs every cluster certificate, and
 * this side's certificate chain and private key (mutual TLS).
 *
 * `hint` (client side, may be NULL): a sentence on why the scheduler would
 * refuse this side's certificate, worked out from the material before
 * connecting (tg__tls_diagnose). gRPC never says why a server refused a
 * certificate (the client only sees the socket close), so it is appended
 * to that error.
 */
typedef struct tg__rpc_sec {
    const char *ca_pem;
    const char *cert_pem;
    const char *key_pem;
    const char *hint;
} tg__rpc_sec;

/* Reference-counted grpc_init/grpc_shutdown. */
void tg__rpc_init(void);
void tg__rpc_shutdown(void);

/* Monotonic milliseconds (the clock the scheduler core is fed with). */
int64_t tg__now_ms(void);

/*
 * Split "tcp://host:port", "tls://host:port" or "host:port" into a gRPC
 * target "host:port" (in `target`, `tlen` bytes) and whether TLS is asked
 * for. TG_EINVAL with a message for anything else.
 */
int tg__rpc_parse_address(const char *address, char *target, size_t tlen,
                          bool *tls);

/* ------------------------------------------------------------------ */
/* Client side                                                         */
/* ------------------------------------------------------------------ */

typedef struct tg__chan tg__chan;

/**
 * Open a channel to `address` (see tg__rpc_parse_address). `sec` may be
 * NULL for plaintext; a tls:// address requires it. The channel connects
 * lazily. Thread-safe: many calls may run on one channel at once.
 */
int tg__chan_open(tg__chan **out, const char *address, const tg__rpc_sec *sec,
                  size_t max_msg);
void tg__chan_close(tg__chan *ch);

/**
 * One unary call of `method` (e.g. "/taskgrid.v1.Scheduler/Submit") with
 * request bytes `req`. On TG_OK, *resp is a malloc'd response (free()).
 * Gives up after `timeout_ms` (> 0) with TG_ETIMEDOUT.
 */
int tg__chan_unary(tg__chan *ch, const char *method, const uint8_t *req,
                   size_t reqlen, uint8_t **resp, size_t *resplen,
                   int64_t timeout_ms);

/* A client stream: server-streaming (send one message, then receive) or
 * bidirectional. */
typedef struct tg__cstream tg__cstream;

/**
 * Start a streaming call of `method`. `timeout_ms` <= 0 means no deadline
 * (a worker's long-lived stream). Returns at once; failures to connect
 * show up in the first send/recv.
 */
int tg__cstream_open(tg__cstream **out, tg__chan *ch, const char *method,
                     int64_t timeout_ms);

/**
 * Start a server-streaming call of `method` with its single request
 * `req` (copied) and half-close at once, all in one batch: the fastest way
 * to a first response. Then receive with tg__cstream_recv; failures to
 * connect show up there.
 */
int tg__cstream_open_request(tg__cstream **out, tg__chan *ch,
                             const char *method, const uint8_t *req,
                             size_t len, int64_t timeout_ms);

/**
 * Send one message (copied). Thread-safe; blocks until gRPC accepted it
 * (at most `timeout_ms`). TG_EUNAVAILABLE etc. once the call is over.
 */
int tg__cstream_send(tg__cstream *s, const uint8_t *buf, size_t len,
                     int64_t timeout_ms);

/** Half-close: no more messages from this side. */
int tg__cstream_close_send(tg__cstream *s, int64_t timeout_ms);

/**
 * Receive the next message, waiting at most `timeout_ms`. Only one thread
 * may receive at a time. Returns:
 *   TG_OK with *buf a malloc'd message (free()) of *len bytes;
 *   TG_OK with *buf NULL: the server ended the call with OK;
 *   TG_ETIMEDOUT: nothing yet (the call goes on; call again);
 *   another code: the call ended with that status (tg_error_last() says
 *   what the server said).
 */
int tg__cstream_recv(tg__cstream *s, uint8_t **buf, size_t *len,
                     int64_t timeout_ms);

/** Cancel (if still running) and free. NULL is a no-op. */
void tg__cstream_free(tg__cstream *s);

/* ------------------------------------------------------------------ */
/* Server side                                                         */
/* ------------------------------------------------------------------ */

typedef struct tg__server tg__server;
/* One call being served. Valid from on_call until on_done returns. */
typedef struct tg__scall tg__scall;

typedef enum tg__method_kind {
    TG__UNARY = 1,         /* one request, one response */
    TG__SERVER_STREAM = 2, /* one request, many responses */
    TG__BIDI = 3,          /* many both ways */
} tg__method_kind;

typedef struct tg__method {
    const char *path; /* "/package.Service/Method" */
    tg__method_kind kind;
} tg__method;

/*
 * Callbacks, all run on the thread inside tg__server_run (the event loop;
 * it owns all state, so no locking is needed in them). Byte arguments are
 * borrowed for the duration of the callback.
 */
typedef struct tg__server_ops {
    /* A call arrived. For unary and server-streaming calls `req` is the
     * request; for bidi calls it is NULL and messages come to on_message.
     * Answer now or later with tg__scall_send/_reply/_finish. */
    void (*on_call)(void *ud, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len);
    /* Bidi: one message from the client. */
    void (*on_message)(void *ud, tg__scall *c, const uint8_t *msg, size_t len);
    /* The call is over: finished, cancelled, or the peer went away. After
     * this returns, `c` is freed. Called exactly once per on_call. */
    void (*on_done)(void *ud, tg__scall *c);
    /* Every loop turn, and at least every `tick_ms`. */
    void (*on_tick)(void *ud, int64_t now_ms);
} tg__server_ops;

typedef struct tg__server_opts {
    const char *listen;     /* "tcp://0.0.0.0:8786"; port 0 picks one */
    const tg__rpc_sec *sec; /* NULL: plaintext */
    size_t max_msg;         /* 0: TG__RPC_DEFAULT_MAX_MSG */
    int tick_ms;            /* 0: 100 */
} tg__server_opts;

/**
 * Bind and start serving `methods` (unknown methods get UNIMPLEMENTED).
 * The methods array must outlive the server.
 */
int tg__server_new(tg__server **out, const tg__server_opts *opts,
                   const tg__method *methods, size_t nmethods,
                   const tg__server_ops *ops, void *ud);

/** The bound TCP port. */
int tg__server_port(const tg__server *s);

/** Run the event loop on this thread until tg__server_stop. */
int tg__server_run(tg__server *s);

/** Ask the loop to return. Async-signal-safe. */
void tg__server_stop(tg__server *s);

/** Cancel every call (each gets on_done) and free. NULL is a no-op. */
void tg__server_free(tg__server *s);

/**
 * Queue one message on a streaming call (or the response of a unary
 * call). Takes ownership of `buf` (malloc'd), also on failure. Messages
 * go out in order, one gRPC send in flight at a time.
 */
int tg__scall_send(tg__scall *c, uint8_t *buf, size_t len);

/**
 * End the call with `status` (TG_OK or a tg_status, mapped to the gRPC
 * code) and a message, after every queued message. Later sends fail.
 */
int tg__scall_finish(tg__scall *c, int status, const char *message);

/**
 * Send `buf` (owned, as tg__scall_send) as the last message and finish OK,
 * in one batch when nothing else is in flight: a unary success, or the
 * end of a server stream.
 */
int tg__scall_reply(tg__scall *c, uint8_t *buf, size_t len);

/** Messages queued and not yet written (backpressure). */
size_t tg__scall_pending(const tg__scall *c);

/** The method index this call was for. */
size_t tg__scall_method(const tg__scall *c);

/** A user pointer stored on the call. */
void tg__scall_set_data(tg__scall *c, void *data);
void *tg__scall_data(const tg__scall *c);

/** "ipv4:127.0.0.1:5555" etc. (borrowed, valid while the call is). */
const char *tg__scall_peer(const tg__scall *c);

/**
 * The peer certificate's role for TLS calls: the value after
 * "taskgrid:role=" in a URI SAN, else the certificate's OU; "" when
 * plaintext or absent. Written to `buf`.
 *
 * gRPC 1.51 lists a certificate's URI SANs under "peer_uri" (and, with the
 * DNS names, under "x509_subject_alternative_name"; tested in
 * //tests:security_test); the subject comes as RFC 2253 text,
 * "CN=x,OU=role,O=taskgrid".
 */
void tg__scall_role(const tg__scall *c, char *buf, size_t len);

#endif
