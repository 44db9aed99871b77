/* SPDX-License-Identifier: Apache-2.0
 *
 * task.h: one task on a worker, from assignment to outcome. The struct is
 * the opaque tg_task_ctx of taskgrid/plugin.h: the task function sees it
 * through the tg_task_* accessors, the executor queues and runs it, and
 * the link turns its outcome into a TaskResult. Depends on libc and the
 * plug-in ABI header; it knows nothing of protobuf or gRPC.
 *
 * Memory: the assignment (key, function, input, codec, dependency results)
 * is copied into the same allocation as the struct, so a task owns its
 * inputs and does not pin the received message, however long it waits in
 * the queue. The outcome is set by the task function on its thread.
 */
#ifndef TGW_TASK_H
#define TGW_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "taskgrid/plugin.h"

/* A borrowed byte range (also used for not NUL-terminated strings). */
typedef struct tgw_bytes {
    const uint8_t *ptr;
    size_t len;
} tgw_bytes;

/*
 * One dependency result as assigned (borrowed for tgw_task_new). With
 * empty `data` and at least one holder the bytes are held elsewhere (or
 * in this worker's store) and are resolved before the task runs (see
 * tgw_dep and tg__exec_opts.prepare).
 */
typedef struct tgw_dep_spec {
    tgw_bytes data;
    tgw_bytes codec;
    tgw_bytes key;              /* the dependency's key */
    uint64_t size;              /* TaskResult.size */
    const char *const *holders; /* data addresses, in the scheduler's order */
    size_t nholders;
} tgw_dep_spec;

/* An assignment to copy into a new task (all borrowed for the call). */
typedef struct tgw_task_spec {
    tgw_bytes key;
    tgw_bytes func;
    tgw_bytes input;
    tgw_bytes codec;
    const tgw_dep_spec *deps;
    size_t ndeps;
    uint32_t attempt;
    int32_t priority;
} tgw_task_spec;

/*
 * A dependency inside a task (points into the task's allocation). A held
 * one (nholders > 0) has no bytes until it is resolved: then `data` and
 * `len` point at bytes that `hold` keeps alive (a reference to a stored
 * result, or a fetched copy) until tgw_task_free calls `unhold(hold)`.
 */
typedef struct tgw_dep {
    const uint8_t *data;
    size_t len;
    const char *codec; /* NUL-terminated; "raw" if none was given */
    const char *key;   /* NUL-terminated; held dependencies only */
    size_t key_len;
    uint64_t size;              /* announced size of a held dependency */
    const char *const *holders; /* NUL-terminated addresses */
    size_t nholders;
    void *hold;
    void (*unhold)(void *hold);
} tgw_dep;

struct tg_task_ctx {
    /* The assignment: immutable after tgw_task_new. */
    const char *key; /* NUL-terminated */
    size_t key_len;
    const char *func;
    const uint8_t *input;
    size_t input_len;
    const char *codec;
    tgw_dep *deps;
    size_t ndeps;
    size_t nheld; /* deps whose bytes are held elsewhere (resolve first) */
    uint32_t attempt;
    int32_t priority;
    const tgw_fn *fn; /* resolved at creation; NULL if unknown */

    /* Set by a cancel from any thread, read by the task function. */
    atomic_bool cancelled;

    /* Executor bookkeeping, guarded by the executor's lock. */
    struct tg__exec *exec;
    uint64_t seq;              /* FIFO order among equal priorities */
    size_t heap_index;         /* position in the ready heap while queued */
    int exec_state;            /* see executor.c */
    bool seceded;              /* gave its slot back (tg__exec_secede) */
    struct tg_task_ctx *hnext; /* key hash chain */

    /* The outcome, written by the task's thread. */
    uint64_t run_us; /* how long the function ran (TaskResult.run_us) */
    bool erred;
    /* The result moved to the worker's store: `data` is NULL and
     * `data_len` is its size (reported as TaskResult.held). */
    bool held;
    uint8_t *data;
    size_t data_len;
    char *out_codec; /* NULL: "raw" */
    char *err_type;
    char *err_message;
    char *err_traceback;

    /* Outbox link (see outbox.h). */
    struct tg_task_ctx *next;
};

/**
 * Copy an assignment into a new task, resolving its function in `reg`
 * (NULL: left unresolved). Free with tgw_task_free.
 *
 * @return TG_OK, or TG_ENOMEM.
 */
int tgw_task_new(tg_task_ctx **out, const tgw_task_spec *spec,
                 const tg_registry *reg);

/** Free a task and its outcome. NULL is a no-op. */
void tgw_task_free(tg_task_ctx *t);

/**
 * Run the task's function on the calling thread and settle its outcome:
 * an unknown function becomes a "tg.UnknownFunction" error; a nonzero
 * return without an error set becomes a generic "tg.TaskError"; success
 * without a result is an empty "raw" result.
 */
void tgw_task_run(tg_task_ctx *t);

/** The result codec ("raw" when none was set). */
const char *tgw_task_result_codec(const tg_task_ctx *t);

/** Approximate bytes the outcome adds to a message (for batching). */
size_t tgw_task_result_size(const tg_task_ctx *t);

/*
 * The largest outcome one WorkerMessage can carry: the protocol's 64 MiB
 * message limit (the scheduler's default --max-message) less room for the
 * message's other fields.
 */
#define TGW_RESULT_MAX_BYTES (64u * 1024u * 1024u - 64u * 1024u)

/**
 * Fail a task whose inline outcome is larger than `max_bytes` (a result
 * sent inline travels inside one message; a held one does not, and is
 * left alone): its result is replaced by a "tg.ResultTooLarge" error
 * naming the result's size and the limit, so the task fails at once
 * instead of breaking the worker's stream. Error text over the limit is
 * cut. True if the outcome was changed.
 */
bool tgw_task_limit_result(tg_task_ctx *t, size_t max_bytes);

#endif
