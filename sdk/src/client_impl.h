/* SPDX-License-Identifier: Apache-2.0
 *
 * client_impl.h (private to the SDK): what the files of tg_client share:
 * the client struct, the batching limits, the one unary-call helper, the
 * start of every public call (which sends the releases of freed futures)
 * and task key writing. client.c connects and frees; key.c makes keys;
 * submit.c, gather.c, control.c (cancel, release, annotate, scale) and
 * report.c (status) are one public call family each; direct.c fetches
 * held results from their holders for gather.c (direct_to_workers);
 * task_client.c is the worker-side client of nested work.
 */
#ifndef TG_SDK_CLIENT_IMPL_H
#define TG_SDK_CLIENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch/fetch.h"
#include "future.h"
#include "taskgrid/client.h"
#include "transport/client.h"
#include "util/tls.h"
#include "wire.h"

/*
 * Batching. The protocol caps a repeated field at 65,535 entries (16-bit
 * pb_size_t); 10,000 per message amortises the per-message cost (about
 * 8 CPU-us per hop) to under a microsecond per task while keeping each
 * message small enough to stream without stalling the scheduler's loop.
 */
#define TG__CHUNK 10000

struct tg_client {
    tg__chan *ch;
    tg__shared *sh;
    char *address;
    char *client_id;
    int64_t timeout_ms;
    size_t max_message;
    tg__tls tls;       /* loaded and checked security material */
    tg__fetch *direct; /* direct_to_workers: fetches from holders, or NULL */
    bool task_client;  /* the worker-wide client of tg_task_client */
};

/*
 * One unary call: encode `req`, call, decode into `resp`. On TG_OK the
 * caller owns *raw (free() after tg__wire_release(respf, resp)): decoded
 * strings point into it.
 */
int tg__client_unary(tg_client *c, const char *method, const pb_msgdesc_t *reqf,
                     const void *req, const pb_msgdesc_t *respf, void *resp,
                     uint8_t **raw, int64_t timeout_ms);

/* One Status call (about `key` if not NULL); on TG_OK the caller owns *raw
 * as with tg__client_unary (report.c; also the function check of
 * collections.c). */
int tg__client_status_call(tg_client *c, const char *key,
                           taskgrid_v1_StatusResponse *resp, uint8_t **raw);

/* Release `n` keys in Release calls of at most TG__CHUNK keys; stops at
 * and returns the first failure. */
int tg__client_release_keys(tg_client *c, char *const *keys, size_t n);

/* Release the NUL-separated keys of `arena` (freed futures). Errors are
 * dropped: see tg__client_flush_releases. */
void tg__client_send_releases(tg_client *c, const char *arena, size_t n);

/* Send the batched releases of freed futures. Errors are dropped: a key
 * not released costs scheduler memory until it is released by other
 * means, not correctness, and the caller's own call must not fail for it. */
void tg__client_flush_releases(tg_client *c);

/* Start of every public call that talks to the scheduler. */
int tg__client_enter(tg_client *c, const char *what);

/* Check a resource request (`n` entries at `res`) of the `idx`-th
 * `what` ("task"): names non-empty, amounts finite and >= 0. */
int tg__client_check_resources(const char *what, size_t idx,
                               const tg_resource *res, size_t n);

/*
 * direct_to_workers (direct.c): fetch the held results of m->held from
 * their holders, until `deadline` (tg__now_ms() time; INT64_MAX: none).
 * Each one fetched fills its futures; each one no holder delivered is
 * logged once (every holder and why) and its key put in *relay (a new
 * array of *nrelay keys borrowed from the futures; free() it), for a
 * Gather through the scheduler. *timed_out is set when the deadline
 * stopped a fetch (that key stays pending). TG_OK or TG_ENOMEM.
 */
int tg__direct_settle(tg_client *c, tg__gmap *m, int64_t deadline,
                      char ***relay, size_t *nrelay, bool *timed_out);

/* Length of the key prefix made from `func` (key.c). */
size_t tg__key_prefix_len(const char *func);

/* Write "<func>-<16 hex>" at `buf` (room checked by the caller); returns
 * its length (key.c). */
size_t tg__key_write(char *buf, const char *func);

/*
 * The worker-side client (task_client.c). For the worker-wide client,
 * called on the thread of a running task: the key nested submissions
 * carry as their parent (NULL: none), and the secede before a blocking
 * wait (true if the task seceded) and the rejoin after it (pass what
 * tg__task_client_secede returned). Other clients: NULL, false, no-op.
 */
const char *tg__task_client_parent(const tg_client *c);
bool tg__task_client_secede(const tg_client *c);
void tg__task_client_rejoin(const tg_client *c, bool seceded);

#endif
