/* SPDX-License-Identifier: Apache-2.0
 *
 * client.h (internal): the client side of taskgrid's gRPC transport:
 * channels, unary calls and client streams (server-streaming or
 * bidirectional). Used by the SDK (unary calls and the Gather stream) and
 * by the worker (its one bidirectional WorkerLink stream). See transport.h
 * for what both sides share.
 */
#ifndef TG_TRANSPORT_CLIENT_H
#define TG_TRANSPORT_CLIENT_H

#include "transport/transport.h"

typedef struct tg__chan tg__chan;

/**
 * Open a channel to `address` (see tg__address_parse). `sec` may be
 * NULL for plaintext; a tls:// address requires it. The channel connects
 * lazily. Thread-safe: many calls may run on one channel at once.
 */
int tg__chan_open(tg__chan **out, const char *address, const tg__rpc_sec *sec,
                  size_t max_msg);
void tg__chan_close(tg__chan *ch);

/**
 * What the server at the other end is, for error messages ("scheduler
 * at ... unavailable"): "scheduler" unless set (copied; e.g. "worker"
 * for a peer's data service).
 */
void tg__chan_set_peer_kind(tg__chan *ch, const char *what);

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
                             const char *method, const uint8_t *req, size_t len,
                             int64_t timeout_ms);

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

/*
 * A received message read where gRPC holds it (its slices), not first
 * copied into one block: a large payload is copied once, straight to
 * where it belongs (tg__cstream_recv_msg).
 */
typedef struct tg__msg tg__msg;

/** Bytes of the message not read yet. */
size_t tg__msg_left(const tg__msg *m);

/** Copy the next `n` bytes to `dst` (NULL: skip them). TG_EPROTO, and
 * nothing read, if fewer than `n` are left. */
int tg__msg_read(tg__msg *m, void *dst, size_t n);

/**
 * Like tg__cstream_recv, but hands the message to `fn(ud, m)` (valid only
 * during the call) instead of copying it out. Returns fn's result, or what
 * tg__cstream_recv would; *ended is true when the server ended the call
 * with OK (fn not called).
 */
int tg__cstream_recv_msg(tg__cstream *s, int (*fn)(void *ud, tg__msg *m),
                         void *ud, bool *ended, int64_t timeout_ms);

/** Cancel (if still running) and free. NULL is a no-op. */
void tg__cstream_free(tg__cstream *s);

#endif
