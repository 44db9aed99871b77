/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/collections.h: collection helpers of libtaskgrid, for users
 * without Dask: map a registered function over partitions
 * (tg_client_map) and combine results in a tree of bounded fan-in
 * (tg_client_tree_reduce). Both are ordinary submissions through
 * tg_client_submit(): the whole graph of one call goes out in one Submit
 * (split only above 10,000 tasks), results come back as tg_future handles,
 * and partitions stay on the workers, moving between them through the
 * data plane. Depends on taskgrid/client.h.
 *
 * Keys are deterministic per call: with a prefix P (tg_collection_opts.key
 * given, else a fresh tg_key_generate(func) per call, so two calls never
 * share keys) the i-th map task is "P-<i>" and the j-th combine of level L
 * (1 combines the inputs) is "P-r<L>-<j>", decimal, from 0. The same
 * prefix may serve a map and the reduction of its results.
 */
#ifndef TASKGRID_COLLECTIONS_H
#define TASKGRID_COLLECTIONS_H

#include "taskgrid/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/client.h"
#include "taskgrid/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Largest fan-in of tg_client_tree_reduce (dependencies of one task). */
#define TG_TREE_FAN_IN_MAX 65535

/** Longest tg_collection_opts.key, in bytes: room is left for the
 *  suffixes within TG_KEY_MAX. */
#define TG_COLLECTION_KEY_MAX (TG_KEY_MAX - 32)

/**
 * One partition of tg_client_map(): what one call of the function gets.
 * The task's input is `input` (may be empty); if `future` is not NULL its
 * result follows as the one dependency, so a function sees the literal
 * arguments first, then the partition, as for any task. Every pointer is
 * borrowed for the call only.
 */
typedef struct tg_partition {
    /** A partition computed before (its key is used), or NULL. */
    const tg_future *future;
    /** Input bytes of this call (NULL when input_len is 0). */
    const void *input;
    size_t input_len;
    /** Codec of `input` ("json", "raw", ...); NULL means "raw". */
    const char *codec;
} tg_partition;

#define TG_PARTITION_INIT   \
    {                       \
        NULL, NULL, 0, NULL \
    }

#define TG_COLLECTION_OPTS_VERSION 1

/**
 * Options of tg_client_map() and tg_client_tree_reduce(). Initialise with
 * TG_COLLECTION_OPTS_INIT; every pointer is borrowed for the call only.
 */
typedef struct tg_collection_opts {
    uint32_t version; /**< TG_COLLECTION_OPTS_VERSION */
    /** Key prefix P (see above; at most TG_COLLECTION_KEY_MAX bytes).
     *  Calls with the same P name the same tasks. NULL: a new prefix. */
    const char *key;
    /** Priority of map tasks; a combine of level L gets priority + L
     *  (saturating), so a ready combine runs before more map tasks or
     *  lower combines, and frees its inputs early. Default 0. */
    int32_t priority;
    /** Retries of every task. Default 0. */
    uint32_t retries;
    /** Resources every task holds while it runs. */
    const tg_resource *resources;
    size_t nresources;
    /** If nworkers > 0, run only on workers with one of these names. */
    const char *const *workers;
    size_t nworkers;
    /** true: do not check (with a Status call) that a connected worker
     *  provides the function. Default false. */
    bool no_function_check;
} tg_collection_opts;

#define TG_COLLECTION_OPTS_INIT                                         \
    {                                                                   \
        TG_COLLECTION_OPTS_VERSION, NULL, 0, 0, NULL, 0, NULL, 0, false \
    }

/**
 * Submit `func` over `n` partitions, one task each, in one Submit: task i
 * gets parts[i].input and, if given, parts[i].future's result (Dask's
 * map_partitions, or Client.map over futures).
 *
 * Unless opts->no_function_check, a Status call first checks that some
 * connected worker provides `func` (skipped while no worker is
 * connected: the scheduler then keeps the tasks until one joins).
 *
 * @param c      the client.
 * @param func   a function registered on workers, "namespace.name".
 * @param parts  `n` partitions (borrowed for the call).
 * @param n      number of partitions, at least 1.
 * @param opts   options, or NULL for the defaults.
 * @param out    array of `n` pointers receiving one future per partition,
 *               in order; each owned by the caller (tg_future_free()).
 *               Untouched on failure.
 * @return TG_OK; TG_EINVAL (no partitions, NULL arguments, a malformed
 *         function name or key, bad options; the message names the
 *         problem); TG_ENOTFOUND when no connected worker provides `func`
 *         (the message names it and what the workers provide); else as
 *         tg_client_submit().
 */
TG_EXPORT int tg_client_map(tg_client *c, const char *func,
                            const tg_partition *parts, size_t n,
                            const tg_collection_opts *opts, tg_future **out);

/**
 * Combine the results of `n` futures with `func`, at most `fan_in` at a
 * time, in a tree of depth ceil(log_fan_in(n)) (1 for one input), in one
 * Submit; returns the root's future. Level 1 splits the inputs, in order,
 * into ceil(n / fan_in) consecutive groups of sizes differing by at most one;
 * each group is one task running `func` with the group's results as its
 * dependencies, in order (and no input); level L + 1 does the same with
 * the results of level L, until one task remains. So `func` must accept
 * 1 to `fan_in` arguments (tg.sum does; tg.add, which wants two, does
 * not) and be associative over its results (order is kept, so it need
 * not be commutative); at level 1 it combines the inputs, above it its
 * own results. One input gives one task, func(input). Each combine runs
 * where its inputs are (they move peer to peer), at a higher priority
 * than the map tasks (see opts->priority).
 *
 * Only the root is returned: the futures of the inner combines are freed
 * (their releases ride on the client's next call), so each inner result
 * is forgotten once the combine above it used it. The inputs stay held
 * by whoever holds them: free their futures after this call so that each
 * input, too, goes once its combine used it.
 *
 * @param c       the client.
 * @param func    the combining function registered on workers.
 * @param fs      `n` futures (borrowed; only their keys are used).
 * @param n       number of inputs, at least 1.
 * @param fan_in  most inputs of one combine: 2 to TG_TREE_FAN_IN_MAX.
 * @param opts    options, or NULL for the defaults.
 * @param out     receives the root's future, owned by the caller
 *                (tg_future_free()). Untouched on failure.
 * @return TG_OK; TG_EINVAL (no inputs, a NULL future, fan_in out of
 *         range, bad options; the message names the problem);
 *         TG_ENOTFOUND when no connected worker provides `func`; else as
 *         tg_client_submit().
 */
TG_EXPORT int tg_client_tree_reduce(tg_client *c, const char *func,
                                    tg_future *const *fs, size_t n,
                                    uint32_t fan_in,
                                    const tg_collection_opts *opts,
                                    tg_future **out);

#ifdef __cplusplus
}
#endif
#endif
