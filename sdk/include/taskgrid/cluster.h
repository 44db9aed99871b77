/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/cluster.h: the temporary local cluster, libtaskgrid's twin of
 * Dask's LocalCluster and the default of every taskgrid binding. It starts
 * a taskgrid-scheduler child process on loopback, which starts and
 * supervises its taskgrid-worker processes; it is torn down, with no
 * process left behind, by tg_cluster_free(). Connect to it with
 * tg_client_connect(&c, tg_cluster_address(cl), NULL), or, for a secure
 * cluster (opts.secure), with tg_client_opts.security =
 * tg_cluster_security(cl). Depends on taskgrid/status.h and
 * taskgrid/security.h; POSIX (Linux) only.
 */
#ifndef TASKGRID_CLUSTER_H
#define TASKGRID_CLUSTER_H

#include "taskgrid/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/security.h"
#include "taskgrid/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A running local cluster. Opaque; free with tg_cluster_free(). */
typedef struct tg_cluster tg_cluster;

/* 2 added `secure`. Version 1 structs are still accepted. */
#define TG_CLUSTER_OPTS_VERSION 2

/**
 * Options of tg_cluster_start(). Initialise with TG_CLUSTER_OPTS_INIT.
 * Strings are borrowed for the duration of tg_cluster_start().
 */
typedef struct tg_cluster_opts {
    uint32_t version; /**< TG_CLUSTER_OPTS_VERSION */
    /** Worker processes; 0: the number of online cores (at least 1). */
    uint32_t n_workers;
    /** Threads (task slots) per worker; 0: 1. */
    uint32_t threads_per_worker;
    /** true (default): n_workers worker processes. false: a single worker
     *  process with n_workers * threads_per_worker threads, as Dask's
     *  `processes=False` (less isolation, no inter-process transfers). */
    bool processes;
    /** Resources each worker declares, e.g. "GPU=1,process=1"; NULL for
     *  none. Tasks asking for resources run only where they fit. */
    const char *resources;
    /** A plug-in library every worker loads (taskgrid-worker --preload),
     *  e.g. the path of libshout.so; NULL for none. */
    const char *preload;
    /** Where taskgrid-scheduler and taskgrid-worker are. A "programs
     *  folder" holds them itself (an install's bin/) or in scheduler/ and
     *  worker/ subfolders (a bazel-bin). The first that applies is used:
     *  1. bin_dir, a programs folder;
     *  2. $TASKGRID_BIN_DIR, if set and not empty, a programs folder.
     *     Given one of these, only it is searched: if it lacks a program,
     *     tg_cluster_start() fails with TG_ENOTFOUND naming it;
     *  3. otherwise the first of: the running program's Bazel runfiles
     *     (<exe>.runfiles/taskgrid, $RUNFILES_DIR/taskgrid,
     *     $TEST_SRCDIR/taskgrid); PREFIX/bin when this code runs in
     *     PREFIX/lib/libtaskgrid.so (as `bazel run //:install` lays them
     *     out); the running program's own folder; then $PATH.
     *  The current directory is never searched. */
    const char *bin_dir;
    /** Bound on start-up (scheduler listening and all workers connected),
     *  and on tg_cluster_scale(). 0: 10,000 ms. */
    int64_t start_timeout_ms;
    /** true: mutual TLS, like Dask's Security.temporary(). A fresh cluster
     *  CA and certificates (scheduler, worker, client, admin; no CA key
     *  is kept) are written to a private temporary directory (mode 0700,
     *  removed by tg_cluster_free()); the scheduler listens on
     *  tls://127.0.0.1 and its workers present the worker certificate.
     *  Clients connect with tg_cluster_security(). Default false. */
    bool secure;
} tg_cluster_opts;

#define TG_CLUSTER_OPTS_INIT                                            \
    {                                                                   \
        TG_CLUSTER_OPTS_VERSION, 0, 0, true, NULL, NULL, NULL, 0, false \
    }

/**
 * Start a local cluster and wait (bounded) until all its workers are
 * connected.
 *
 * The scheduler runs as a child process in its own process group, listens
 * on 127.0.0.1 at a free port, and dies with the calling process: if this
 * process exits without tg_cluster_free(), normally, by _exit() or by a
 * signal, and whichever thread called tg_cluster_start() (that thread may
 * end first; the cluster lives on), the scheduler sees its pipe from this
 * process close (taskgrid-scheduler --exit-with-parent-fd) and stops,
 * stopping its workers. Its standard
 * error, and its standard output after the address line, go to this
 * process's.
 *
 * @param out   receives the cluster; free it with tg_cluster_free(). NULL
 *              on failure (nothing is left running).
 * @param opts  options, or NULL for the defaults.
 * @return TG_OK; TG_ENOTFOUND if a binary is missing (the message says
 *         where it looked and how to build it); TG_ETIMEDOUT if the
 *         cluster was not ready within start_timeout_ms; TG_EIO if the
 *         scheduler could not be run or exited early, or the certificates
 *         of a secure cluster could not be written; TG_EINVAL.
 */
TG_EXPORT int tg_cluster_start(tg_cluster **out, const tg_cluster_opts *opts);

/**
 * The scheduler's address, "tcp://127.0.0.1:PORT" (borrowed; valid until
 * tg_cluster_free()).
 */
TG_EXPORT const char *tg_cluster_address(const tg_cluster *cl);

/**
 * The security options a client needs to connect to a secure cluster
 * (opts.secure): the cluster CA and the cluster owner's certificate, which
 * has role "admin" (it may also Scale), as files in the cluster's
 * temporary directory. That directory also holds client.pem and
 * client-key.pem (role "client": submit and gather, not Scale) to hand
 * out. Borrowed; valid until tg_cluster_free(). NULL for a plaintext
 * cluster.
 *
 *     tg_client_opts o = TG_CLIENT_OPTS_INIT;
 *     o.security = tg_cluster_security(cl);
 *     tg_client_connect(&c, tg_cluster_address(cl), &o);
 */
TG_EXPORT const tg_security *tg_cluster_security(const tg_cluster *cl);

/** Worker processes the cluster was started with (or last scaled to). */
TG_EXPORT uint32_t tg_cluster_nworkers(const tg_cluster *cl);

/** Threads of all workers together, as configured. */
TG_EXPORT uint32_t tg_cluster_nthreads(const tg_cluster *cl);

/**
 * Scale to `n` worker processes and wait (bounded by start_timeout_ms)
 * until exactly `n` workers are connected. Not available with
 * processes = false (TG_ESTATE).
 */
TG_EXPORT int tg_cluster_scale(tg_cluster *cl, uint32_t n);

/**
 * Stop the cluster: SIGTERM to the scheduler (which drains and stops its
 * workers), up to 5 s of grace, then SIGKILL to its whole process group;
 * every child is reaped. A secure cluster's certificate directory is
 * removed. Call it after freeing the clients that use the
 * cluster (they release their keys on free). NULL is a no-op.
 */
TG_EXPORT void tg_cluster_free(tg_cluster *cl);

#ifdef __cplusplus
}
#endif
#endif
