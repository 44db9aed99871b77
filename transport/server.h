/* SPDX-License-Identifier: Apache-2.0
 *
 * server.h (internal): the server side of taskgrid's gRPC transport: one
 * completion queue driven by one thread (tg__server_run), which owns every
 * call and runs all callbacks. Used by the scheduler and by the worker's
 * data service. See transport.h for what both sides share.
 */
#ifndef TG_TRANSPORT_SERVER_H
#define TG_TRANSPORT_SERVER_H

#include "transport/transport.h"

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

/* Bytes sent in place, not copied: valid until `release(ud)`, which gRPC
 * calls (on any thread) once they are written or the call is over. */
typedef struct tg__scall_tail {
    const uint8_t *bytes;
    size_t len;
    void (*release)(void *ud);
    void *ud;
} tg__scall_tail;

/**
 * Like tg__scall_send, for one message made of `head` (malloc'd, owned
 * as there) followed by `tail`'s bytes, which are not copied: a large
 * payload goes to the socket from where it lies. `tail` is released
 * exactly once, also on failure.
 */
int tg__scall_send_borrowed(tg__scall *c, uint8_t *head, size_t head_len,
                            const tg__scall_tail *tail);

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

/** Bytes of the messages counted by tg__scall_pending: what this process
 * still holds for the call. */
size_t tg__scall_pending_bytes(const tg__scall *c);

/** The method index this call was for. */
size_t tg__scall_method(const tg__scall *c);

/** When the call arrived (tg__now_us, util/clock.h). */
int64_t tg__scall_started_us(const tg__scall *c);

/**
 * The gRPC status code (0 OK ... 16) the call ended with, for metrics:
 * what tg__scall_finish asked, mapped as sent; 1 (CANCELLED) when it
 * ended without one (the peer went away first).
 */
int tg__scall_code(const tg__scall *c);

/** A user pointer stored on the call. */
void tg__scall_set_data(tg__scall *c, void *data);
void *tg__scall_data(const tg__scall *c);

/** "ipv4:127.0.0.1:5555" etc. (borrowed, valid while the call is). */
const char *tg__scall_peer(const tg__scall *c);

/**
 * The peer certificate's role for TLS calls, written to `buf`; "" when
 * plaintext, when the certificate carries none, or when its role is
 * refused as ambiguous (then the reason is logged as a warning).
 *
 * The role comes from the verified leaf certificate gRPC offers as PEM
 * ("x509_pem_cert"), read as X.509 by tg__role_from_pem (util/role.h, the
 * rules): a URI SAN "taskgrid:role=NAME", else the subject's one OU
 * attribute; the URI SAN wins when both are present. gRPC's subject text
 * and its other SAN properties are not consulted.
 */
void tg__scall_role(const tg__scall *c, char *buf, size_t len);

#endif
