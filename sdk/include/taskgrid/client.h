/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/client.h: the client side of libtaskgrid. A tg_client talks to
 * one scheduler (service taskgrid.v1.Scheduler): it submits whole task
 * graphs in batches, gathers results as they finish into tg_future
 * handles, scales the cluster, cancels and releases work, and reports
 * status. Depends on taskgrid/status.h (error codes) and
 * taskgrid/security.h (TLS options); the transport is hidden.
 *
 * Threads: one tg_client may be used from several threads at once. A
 * tg_future is not synchronised: do not wait on (gather) the same future
 * from two threads at once, nor read it while another thread waits on it.
 *
 * Errors: every fallible call returns TG_OK or a negative tg_status;
 * tg_error_last() then holds a message (for a scheduler's refusal, the
 * scheduler's own words).
 */
#ifndef TASKGRID_CLIENT_H
#define TASKGRID_CLIENT_H

#include "taskgrid/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/security.h"
#include "taskgrid/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A connection to one scheduler. Opaque; free with tg_client_free(). */
typedef struct tg_client tg_client;

/** The handle of one submitted task. Opaque; free with tg_future_free(). */
typedef struct tg_future tg_future;

/** A snapshot of the cluster. Opaque; free with tg_status_report_free(). */
typedef struct tg_status_report tg_status_report;

/** Pass as a timeout to wait without a time limit. */
#define TG_WAIT_FOREVER ((int64_t)-1)

/** Longest task key the scheduler accepts, in bytes. */
#define TG_KEY_MAX 1024

/**
 * Life cycle of a task as this client last saw it. The values 1..7 equal
 * taskgrid.v1.TaskState: WAITING -> READY -> PROCESSING -> MEMORY | ERRED |
 * CANCELLED, then RELEASED (forgotten by the scheduler).
 */
typedef enum tg_task_state {
    /** Submitted; this client has not heard of its state yet. */
    TG_TASK_PENDING = 0,
    /** Some dependency has not finished yet. */
    TG_TASK_WAITING = 1,
    /** Runnable; waits for a worker slot or for a worker that fits. */
    TG_TASK_READY = 2,
    /** Running on a worker. */
    TG_TASK_PROCESSING = 3,
    /** Finished; the result is available (final). */
    TG_TASK_MEMORY = 4,
    /** Failed, or a dependency failed (final). */
    TG_TASK_ERRED = 5,
    /** Cancelled before it finished (final). */
    TG_TASK_CANCELLED = 6,
    /** Unknown to the scheduler: released or never submitted (final). */
    TG_TASK_RELEASED = 7,
} tg_task_state;

/** Name of a state, e.g. "memory" (static string; never NULL). */
TG_EXPORT const char *tg_task_state_name(tg_task_state state);

/* ------------------------------------------------------------------ */
/* Connecting                                                          */
/* ------------------------------------------------------------------ */

/** Version 2 added direct_to_workers; options of version 1 are still
 *  accepted (without it). */
#define TG_CLIENT_OPTS_VERSION 2

/**
 * Options of tg_client_connect(). Initialise with TG_CLIENT_OPTS_INIT and
 * change what you need; zero numeric fields mean "the default".
 */
typedef struct tg_client_opts {
    uint32_t version; /**< TG_CLIENT_OPTS_VERSION */
    /** Time limit of each call to the scheduler that has no timeout
     *  argument (submit, scale, status, ...). Default 30,000 ms. */
    int64_t timeout_ms;
    /** How long tg_client_connect() waits for the scheduler to answer,
     *  retrying refused connections. Default 10,000 ms. */
    int64_t connect_timeout_ms;
    /** Largest message sent or received, in bytes. Default 64 MiB (the
     *  scheduler's default). Large submissions are split to stay under. */
    size_t max_message;
    /** Client identifier sent with submissions (borrowed, copied by
     *  tg_client_connect()). NULL: a random "client-<16 hex>". */
    const char *client_id;
    /** TLS material for a tls:// address (borrowed for the call; files are
     *  read at connect). NULL for tcp://. */
    const tg_security *security;
    /** true: do not check at connect that the scheduler answers; the
     *  first call that needs it fails instead. Default false. */
    bool lazy;
    /**
     * true: get results held on workers (larger than the scheduler's
     * --inline-limit) from the workers directly, as Dask's
     * direct_to_workers, instead of through the scheduler. Default false
     * (gateway style: only the scheduler must be reachable).
     *
     * When true, tg_client_gather() asks the scheduler where each held
     * result is (its holders' data addresses) instead of for its bytes,
     * and fetches them from the first holder that delivers them whole
     * (DataService.Fetch; every chunk checked: key, offsets, size,
     * CRC-32), so they never pass through the scheduler. The client must
     * reach the workers' data addresses (taskgrid-worker --data-listen,
     * --data-address); over tls:// it presents its own certificate, which
     * a worker admits only when started with --data-clients, and it
     * verifies the worker's certificate against the cluster CA for the
     * fixed name "taskgrid-worker". When no holder delivers (unreachable,
     * refused, not found, a damaged chunk), the client logs one warning
     * to stderr naming each holder and why, and gets that result through
     * the scheduler instead: nothing is lost.
     */
    bool direct_to_workers;
} tg_client_opts;

#define TG_CLIENT_OPTS_INIT                                               \
    {                                                                     \
        TG_CLIENT_OPTS_VERSION, 30000, 10000, 0, NULL, NULL, false, false \
    }

/**
 * Connect to the scheduler at `address` and check that it answers (a
 * Status call), retrying while the connection is refused (the scheduler
 * may still be starting) until opts->connect_timeout_ms.
 *
 * @param out      receives the client; free it with tg_client_free().
 *                 Set to NULL on failure.
 * @param address  "tcp://host:port", "tls://host:port" or "host:port"
 *                 (copied).
 * @param opts     options, or NULL for the defaults.
 * With opts->security, the TLS material is checked before connecting:
 * each file exists and parses, the key belongs to the certificate, and
 * the certificate is within its validity period; the message names the
 * file ("client certificate /p/client.pem expired on 2025-01-01 00:00:00
 * UTC").
 *
 * @return TG_OK; TG_EINVAL for a malformed address or options;
 *         TG_ENOTFOUND for a missing security file; TG_ETLS for a TLS
 *         problem: a local check failed, a tls:// address without
 *         security options (or security options with tcp://), the
 *         scheduler refused this client's certificate in the handshake
 *         (the message gives the likely cause, e.g. "not signed by" the
 *         CA, or no certificate given), this client does not trust the
 *         scheduler's certificate, or a plaintext client reached a TLS
 *         port; TG_EPERM when the certificate's role may not call the
 *         scheduler; TG_EUNAVAILABLE (the message names the address) when
 *         the scheduler does not answer within opts->connect_timeout_ms.
 */
TG_EXPORT int tg_client_connect(tg_client **out, const char *address,
                                const tg_client_opts *opts);

/**
 * Release every key the client still holds (futures not yet freed and
 * futures freed since the last call), then close the connection. Bounded
 * by the client's timeout. Futures of this client stay readable (results
 * already gathered remain valid) but can no longer wait; free them with
 * tg_future_free() as usual. NULL is a no-op.
 */
TG_EXPORT void tg_client_free(tg_client *c);

/** The address given to tg_client_connect() (borrowed from `c`). */
TG_EXPORT const char *tg_client_address(const tg_client *c);

/** The client identifier sent to the scheduler (borrowed from `c`). */
TG_EXPORT const char *tg_client_id(const tg_client *c);

/**
 * Write a new unique task key "<func>-<16 hex digits>" into `buf`: the key
 * tg_client_submit() gives a task without one. Use it to build graphs whose
 * dependencies must name keys before submission. Keys are unique within
 * the process (a counter through a 64-bit bijection, seeded at random per
 * process), so distinct processes collide only by chance (about n^2/2^65).
 * A `func` longer than TG_KEY_MAX - 17 bytes is truncated in the key.
 *
 * @param buf     output buffer (NUL-terminated on success).
 * @param buflen  its size; strlen(func) + 18 bytes are always enough.
 * @param func    function name used as the key's prefix.
 * @return TG_OK, or TG_EINVAL (NULL arguments, buffer too small).
 */
TG_EXPORT int tg_key_generate(char *buf, size_t buflen, const char *func);

/* ------------------------------------------------------------------ */
/* Submitting                                                          */
/* ------------------------------------------------------------------ */

/** One entry of a resource map, e.g. {"GPU", 1}. */
typedef struct tg_resource {
    const char *name; /**< resource name (borrowed) */
    double amount;    /**< amount held while the task runs (>= 0) */
} tg_resource;

#define TG_TASK_DEF_VERSION 1

/**
 * One task of a graph. Initialise with TG_TASK_DEF_INIT. Every pointer is
 * borrowed for the duration of tg_client_submit() only.
 */
typedef struct tg_task_def {
    uint32_t version; /**< TG_TASK_DEF_VERSION */
    /** Unique key, at most TG_KEY_MAX bytes. NULL: a new key from
     *  tg_key_generate(). A key the scheduler already knows names the
     *  same task (it does not run twice). */
    const char *key;
    /** Function, "namespace.name" (e.g. "tg.inc"). Required. */
    const char *func;
    /** Input bytes for the function (may be NULL when input_len is 0). */
    const void *input;
    size_t input_len;
    /** Codec of `input`: "json", "raw", "msgpack", ... NULL means "raw". */
    const char *codec;
    /** Keys whose results are passed to the function after its input, in
     *  this order. They may name tasks of the same call or known ones. */
    const char *const *deps;
    size_t ndeps;
    /** Higher runs first; FIFO among equal priorities. Default 0. */
    int32_t priority;
    /** Retries after an error or a lost worker. Default 0. */
    uint32_t retries;
    /** Resources held while running. */
    const tg_resource *resources;
    size_t nresources;
    /** If nworkers > 0, run only on workers with one of these names. */
    const char *const *workers;
    size_t nworkers;
} tg_task_def;

#define TG_TASK_DEF_INIT                                                     \
    {                                                                        \
        TG_TASK_DEF_VERSION, NULL, NULL, NULL, 0, NULL, NULL, 0, 0, 0, NULL, \
            0, NULL, 0                                                       \
    }

/**
 * Submit a graph of `n` tasks in one call. Dependencies may name keys of
 * the same call (in any order) or keys the scheduler already knows. Large
 * graphs are sent as several Submit messages of at most 10,000 tasks (and
 * well under the message limit), in order, so a dependency on a task of
 * an earlier message is always known; each message is validated as a
 * whole by the scheduler.
 *
 * @param c        the client.
 * @param tasks    `n` task definitions (borrowed for the call).
 * @param n        number of tasks (0 is a no-op).
 * @param futures  array of `n` pointers that receives one future per
 *                 task, in order. Each is owned by the caller: free it with
 *                 tg_future_free(). Untouched on failure.
 * @return TG_OK; TG_EINVAL for an invalid definition (the message names
 *         the task) or when the scheduler refuses the graph (its message,
 *         e.g. an unknown dependency, is in tg_error_last()); TG_ETOOBIG
 *         for a task larger than the message limit; transport errors.
 *         On failure no future is returned, and tasks of earlier messages
 *         that the scheduler accepted are released.
 */
TG_EXPORT int tg_client_submit(tg_client *c, const tg_task_def *tasks, size_t n,
                               tg_future **futures);

/* ------------------------------------------------------------------ */
/* Scattering data                                                     */
/* ------------------------------------------------------------------ */

/** The built-in a scattered object runs as: it returns its input
 *  unchanged, with the input's codec. C, Python and Go workers all
 *  provide it. */
#define TG_SCATTER_FUNC "tg.echo"

/** Room for a key of tg_scatter_key(), with its NUL: a prefix of at most
 *  64 bytes, '-', 32 hex digits. */
#define TG_SCATTER_KEY_MAX 98

/**
 * Write the content key tg_client_scatter() gives `data` with `codec`:
 * "bytes-" (codec "raw" or NULL) or "<codec>-" (the codec's first 64
 * bytes), then the first 32 hex digits of the SHA-256 of the codec, a zero
 * byte and the data. Equal data and codec give equal keys, here and in the
 * Python (bytes) and Go clients' scatter.
 *
 * @param buf     output buffer (NUL-terminated on success);
 *                TG_SCATTER_KEY_MAX bytes are always enough.
 * @param data    the bytes (may be NULL when len is 0; borrowed).
 * @param codec   codec tag, NULL for "raw".
 * @return TG_OK, or TG_EINVAL (NULL arguments, buffer too small).
 */
TG_EXPORT int tg_scatter_key(char *buf, size_t buflen, const void *data,
                             size_t len, const char *codec);

/**
 * Put `data` into the cluster once, for use as a dependency of many tasks
 * (Dask's Client.scatter): one task with key tg_scatter_key(data, codec)
 * running TG_SCATTER_FUNC with `data` as its input, submitted like
 * tg_client_submit(). Its result is the data: up to the scheduler's inline
 * limit it travels inline, a larger one is held by the worker that ran
 * the task and fetched from there by the tasks that use it. Scattering
 * equal data again names the same task (it runs once). The data crosses
 * the scheduler once, inside the Submit message.
 *
 * @param c         the client.
 * @param data      the bytes (borrowed for the call; may be NULL when len
 *                  is 0). At most tg_client_opts.max_message less 64 KiB
 *                  (64 MiB less 64 KiB by default; a scheduler started
 *                  with a smaller --max-message refuses less).
 * @param codec     codec tag of the data ("raw", "json", ...; copied).
 *                  NULL means "raw".
 * @param workers   if nworkers > 0, hold it only on one of these workers
 *                  (borrowed for the call).
 * @param out       receives the future, owned by the caller: free it with
 *                  tg_future_free() (which releases the data once no other
 *                  future of the client holds its key). Untouched on
 *                  failure.
 * @return TG_OK; TG_ETOOBIG (nothing sent; the message names the size and
 *         the limit) for data over the limit; TG_EINVAL for NULL
 *         arguments or empty worker names; else as tg_client_submit().
 */
TG_EXPORT int tg_client_scatter(tg_client *c, const void *data, size_t len,
                                const char *codec, const char *const *workers,
                                size_t nworkers, tg_future **out);

/* ------------------------------------------------------------------ */
/* Futures                                                             */
/* ------------------------------------------------------------------ */

/**
 * Wait until all `n` futures are final (memory, erred, cancelled or
 * released) and fill in their results or errors. Results stream back as
 * tasks finish, many per message, over a few Gather streams of at most
 * 10,000 keys each, so gathering a large graph costs no round trip per
 * key. Futures that are already final are skipped; the same future or key
 * may appear several times. A result held on a worker comes through the
 * scheduler in chunks, or from a holder directly with
 * tg_client_opts.direct_to_workers (falling back to the scheduler, with
 * one warning, when no holder delivers it); either way its bytes are
 * checked (offsets, size, CRC-32) before a future gets them. With the
 * worker-side client of a running task (tg_task_client(),
 * taskgrid/nested.h), a call that may block (timeout_ms != 0, futures
 * not all final) secedes the task for the wait and rejoins after.
 *
 * @param c           the client the futures were submitted with.
 * @param fs          `n` futures (borrowed).
 * @param n           number of futures (0: TG_OK at once).
 * @param timeout_ms  time limit; 0 polls once; TG_WAIT_FOREVER waits
 *                    without limit.
 * @return TG_OK when all are final, even if some erred: inspect each with
 *         tg_future_state(); TG_ETIMEDOUT if some are not final by then
 *         (their state is updated where the scheduler reported it);
 *         TG_EINVAL (a future of another client); transport errors.
 */
TG_EXPORT int tg_client_gather(tg_client *c, tg_future *const *fs, size_t n,
                               int64_t timeout_ms);

/** The key of `f` (borrowed; valid until tg_future_free(f)). */
TG_EXPORT const char *tg_future_key(const tg_future *f);

/**
 * The state of `f` as last reported to this client (no network call).
 * TG_TASK_PENDING until a gather or wait reported it; NULL gives
 * TG_TASK_RELEASED.
 */
TG_EXPORT tg_task_state tg_future_state(const tg_future *f);

/** True if `f` is final: memory, erred, cancelled or released. */
TG_EXPORT bool tg_future_done(const tg_future *f);

/**
 * Wait for one future: tg_client_gather() of `f` with its own client.
 *
 * @return TG_OK when final (check tg_future_state() or
 *         tg_future_result()), TG_ETIMEDOUT otherwise; TG_ESTATE if its
 *         client was freed.
 */
TG_EXPORT int tg_future_wait(tg_future *f, int64_t timeout_ms);

/**
 * The result of a finished task. Does not wait.
 *
 * @param f      the future.
 * @param data   receives the result bytes, borrowed until
 *               tg_future_free(f). A NUL byte follows them (not counted
 *               in *len), so a text result can be read as a C string.
 * @param len    receives the result length.
 * @param codec  receives the codec tag (borrowed likewise; "" when the
 *               worker set none); may be NULL.
 * @return TG_OK; TG_ETASK if the task erred (see tg_future_error());
 *         TG_ECANCELLED; TG_ENOTFOUND if the scheduler had forgotten the
 *         key; TG_ESTATE if it is not final yet (wait first).
 */
TG_EXPORT int tg_future_result(const tg_future *f, const void **data,
                               size_t *len, const char **codec);

/**
 * The error of an erred (or cancelled) task. Any output pointer may be
 * NULL; the strings are borrowed until tg_future_free(f) and never NULL
 * on success ("" when absent).
 *
 * @param type       e.g. "ValueError", "tg.UnknownFunction".
 * @param message    human-readable message.
 * @param traceback  traceback text from the language that raised.
 * @return TG_OK, or TG_ESTATE if `f` is neither erred nor cancelled.
 */
TG_EXPORT int tg_future_error(const tg_future *f, const char **type,
                              const char **message, const char **traceback);

/**
 * The name of the worker whose run made `f` final (MEMORY, or ERRED from
 * its own run), borrowed for the future's life, and in `*run_us` (may be
 * NULL) how long the function ran there, in microseconds, as the worker
 * measured it. NULL (and 0) while not final, and for outcomes from no run
 * of its own (cancelled, a failed dependency, released).
 */
TG_EXPORT const char *tg_future_worker(const tg_future *f, uint64_t *run_us);
/**
 * The key of the task that failed first when `f` inherited its error from
 * a dependency; NULL when `f` itself failed or did not fail. Borrowed
 * until tg_future_free(f).
 */
TG_EXPORT const char *tg_future_error_origin(const tg_future *f);

/**
 * Free a future and tell the scheduler that this client no longer needs
 * its result, once no other future of the client holds the same key. The
 * Release is batched: it goes out with the client's next call (or at
 * tg_client_free()), so freeing never blocks. NULL is a no-op.
 */
TG_EXPORT void tg_future_free(tg_future *f);

/* ------------------------------------------------------------------ */
/* Managing work and the cluster                                       */
/* ------------------------------------------------------------------ */

/**
 * Cancel tasks and, transitively, every task that depends on them.
 *
 * @param keys   `n` keys (borrowed).
 * @param count  if not NULL, receives the number of tasks cancelled
 *               (dependents included).
 */
TG_EXPORT int tg_client_cancel(tg_client *c, const char *const *keys, size_t n,
                               uint32_t *count);

/**
 * Tell the scheduler this client no longer needs these results (a result
 * no client holds and no pending task needs is forgotten). Futures with
 * these keys keep what they already gathered. Usually unnecessary:
 * tg_future_free() releases its key.
 */
TG_EXPORT int tg_client_release(tg_client *c, const char *const *keys,
                                size_t n);

#define TG_ANNOTATION_VERSION 1

/**
 * Changes for tg_client_annotate(); only the parts whose set_* flag is
 * true are changed. Initialise with TG_ANNOTATION_INIT.
 */
typedef struct tg_annotation {
    uint32_t version; /**< TG_ANNOTATION_VERSION */
    bool set_priority;
    int32_t priority;
    bool set_resources; /**< replace the resource map by this one */
    const tg_resource *resources;
    size_t nresources;
    bool set_retries;
    uint32_t retries;
} tg_annotation;

#define TG_ANNOTATION_INIT                                        \
    {                                                             \
        TG_ANNOTATION_VERSION, false, 0, false, NULL, 0, false, 0 \
    }

/**
 * Change priority, resources or retries of tasks that have not started.
 *
 * @param changed  if not NULL, receives the number of tasks changed.
 */
TG_EXPORT int tg_client_annotate(tg_client *c, const char *const *keys,
                                 size_t n, const tg_annotation *a,
                                 uint32_t *changed);

/**
 * Ask the scheduler's launcher for `n` workers (extra workers are drained
 * first, losing nothing). Returns once the scheduler took the request; the
 * workers connect later (see tg_cluster_scale() to wait for them).
 *
 * @param workers_now  if not NULL, receives the workers connected now.
 */
TG_EXPORT int tg_client_scale(tg_client *c, uint32_t n, uint32_t *workers_now);

/**
 * Let the scheduler adapt the number of workers between `minimum` and
 * `maximum` (> 0) from the queued work.
 */
TG_EXPORT int tg_client_adapt(tg_client *c, uint32_t minimum, uint32_t maximum);

/**
 * The outcome of tg_client_replicate, one entry per future in call order
 * (opaque; free with tg_replication_free()).
 */
typedef struct tg_replication tg_replication;

/**
 * Copy finished results to more workers, worker to worker, so that each
 * has at least `n` holders (as Dask's Client.replicate), and wait until
 * the copies are done. The scheduler picks the workers (not paused,
 * not holding it yet, the most free memory first). A copy counts toward
 * its worker's memory like a result it produced, is freed with the
 * result, and keeps the result when another holder is lost (nothing is
 * recomputed). A result small enough to travel inline lives in the
 * scheduler: it is left as it is (tg_replication_inline), with no error.
 * Fewer eligible workers than `n` is no error: see
 * tg_replication_holders().
 *
 * @param fs          `nf` futures (borrowed), finished ones.
 * @param n           wanted holders per result; 0: every worker.
 * @param workers     `nworkers` worker names (borrowed) copies may go
 *                    to; NULL and 0: any worker.
 * @param timeout_ms  how long to wait for the copies (0: the client's
 *                    timeout); copies still under way then go on.
 * @param out         if not NULL, receives the outcome per future, also
 *                    when the call fails with a per-key error; free it
 *                    with tg_replication_free().
 * @return TG_OK when every result has its copies (or is inline); else
 *         the first key's problem, named in tg_error_last():
 *         TG_ENOTFOUND (unknown or released key), TG_ESTATE (not
 *         finished, erred or cancelled), TG_EIO (a worker could not copy
 *         it: which one and why), TG_ETIMEDOUT; or a call error.
 */
TG_EXPORT int tg_client_replicate(tg_client *c, tg_future *const *fs, size_t nf,
                                  uint32_t n, const char *const *workers,
                                  size_t nworkers, int64_t timeout_ms,
                                  tg_replication **out);

/** Number of entries (the futures given). */
TG_EXPORT size_t tg_replication_count(const tg_replication *r);
/** Key of entry `i` (borrowed from `r`), NULL if out of range. */
TG_EXPORT const char *tg_replication_key(const tg_replication *r, size_t i);
/** Workers holding entry `i`'s result when the call answered. */
TG_EXPORT uint32_t tg_replication_holders(const tg_replication *r, size_t i);
/** Copies the call made of entry `i`'s result. */
TG_EXPORT uint32_t tg_replication_copied(const tg_replication *r, size_t i);
/** True if entry `i`'s result is inline (kept by the scheduler). */
TG_EXPORT bool tg_replication_inline(const tg_replication *r, size_t i);
/**
 * Why entry `i` could not be replicated: its error type (e.g.
 * "tg.UnknownKey", "tg.NotFinished", "tg.Erred", "tg.CopyFailed",
 * "tg.Timeout") in *type (may be NULL) and the message as the return
 * value; NULL (and *type NULL) when it could. Borrowed from `r`.
 */
TG_EXPORT const char *tg_replication_error(const tg_replication *r, size_t i,
                                           const char **type);
/** Free an outcome. NULL is a no-op. */
TG_EXPORT void tg_replication_free(tg_replication *r);

/**
 * A snapshot of the cluster: workers and the number of tasks per state.
 *
 * @param out  receives the report; free it with tg_status_report_free().
 */
TG_EXPORT int tg_client_status(tg_client *c, tg_status_report **out);

/**
 * The scheduler's view of one key.
 *
 * @param state      receives its state (TG_TASK_RELEASED if unknown).
 * @param reason     if not NULL, receives why a ready task does not run
 *                   (e.g. no worker provides its function), or "".
 * @param reasonlen  size of `reason` (the text is truncated to fit).
 */
TG_EXPORT int tg_client_key_status(tg_client *c, const char *key,
                                   tg_task_state *state, char *reason,
                                   size_t reasonlen);

/** Number of workers connected. */
TG_EXPORT size_t tg_status_report_nworkers(const tg_status_report *r);
/** Name of worker `i` (borrowed from `r`), NULL if out of range. */
TG_EXPORT const char *tg_status_report_worker_name(const tg_status_report *r,
                                                   size_t i);
/** Threads of worker `i` (0 if out of range). */
TG_EXPORT uint32_t tg_status_report_worker_nthreads(const tg_status_report *r,
                                                    size_t i);
/** Tasks assigned to worker `i` and not finished (0 if out of range). */
TG_EXPORT uint32_t tg_status_report_worker_processing(const tg_status_report *r,
                                                      size_t i);
/** True while worker `i` is being drained before it stops. */
TG_EXPORT bool tg_status_report_worker_draining(const tg_status_report *r,
                                                size_t i);
/** Threads of all workers together. */
TG_EXPORT uint32_t tg_status_report_nthreads(const tg_status_report *r);
/** Number of tasks in `state` (WAITING..CANCELLED; 0 for the others). */
TG_EXPORT uint64_t tg_status_report_count(const tg_status_report *r,
                                          tg_task_state state);
/** Ready tasks that no connected worker can run (function, resources). */
TG_EXPORT uint64_t tg_status_report_unplaceable(const tg_status_report *r);
/** The scheduler's version string (borrowed from `r`; may be ""). */
TG_EXPORT const char *tg_status_report_version(const tg_status_report *r);
/** Free a report. NULL is a no-op. */
TG_EXPORT void tg_status_report_free(tg_status_report *r);

#ifdef __cplusplus
}
#endif
#endif
