/* SPDX-License-Identifier: Apache-2.0
 *
 * launcher.h: starts and stops worker processes for the scheduler's Scale
 * (the "local" launcher: taskgrid-worker children on this host). Each
 * child gets a launch id in TASKGRID_LAUNCH_ID, which it echoes in its
 * Register message so the scheduler can match stream and process. Children
 * die with the scheduler (PR_SET_PDEATHSIG). POSIX only; no gRPC.
 */
#ifndef TGS_LAUNCHER_H
#define TGS_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tgs_launcher_opts {
    const char *worker_bin; /* path of taskgrid-worker */
    const char *address;    /* scheduler address for the workers */
    uint32_t nthreads;      /* --nthreads for each worker (0: its default) */
    const char *resources;  /* --resources value or NULL */
    const char *const *preload; /* --preload values */
    size_t npreload;
    const char *log_level;    /* --log-level for workers or NULL */
    const char *memory_limit; /* --memory-limit for workers or NULL */
    /* --tls-ca/--tls-cert/--tls-key for workers (tls:// address), or
     * NULL. */
    const char *tls_ca, *tls_cert, *tls_key;
} tgs_launcher_opts;

typedef struct tgs_launcher tgs_launcher;

/* Called for each child that exited: its launch id and wait status. */
typedef void (*tgs_launcher_exit_fn)(void *ud, const char *launch_id,
                                     int wstatus);

/** New launcher (copies `opts`). Returns 0 or a negative code. */
int tgs_launcher_new(tgs_launcher **out, const tgs_launcher_opts *opts);

/** Start one worker; its launch id is written to `id` (`idlen` bytes). */
int tgs_launcher_spawn(tgs_launcher *l, char *id, size_t idlen);

/** Reap exited children (non-blocking), calling `fn` for each. */
void tgs_launcher_reap(tgs_launcher *l, tgs_launcher_exit_fn fn, void *ud);

/** Children alive and not being retired. */
size_t tgs_launcher_active(const tgs_launcher *l);

/** True if `id` is a live child of this launcher. */
bool tgs_launcher_owns(const tgs_launcher *l, const char *id);

/** Mark `id` as retiring (it no longer counts as active). */
void tgs_launcher_retire(tgs_launcher *l, const char *id);

/**
 * Pick an active child to retire, preferring one not in `connected` (not
 * yet registered) so no work is disturbed; writes its id. False if none.
 */
bool tgs_launcher_pick(const tgs_launcher *l,
                       bool (*connected)(void *ud, const char *id), void *ud,
                       char *id, size_t idlen);

/** SIGTERM one child. */
void tgs_launcher_signal(tgs_launcher *l, const char *id, int sig);

/** Send SIGTERM to every child without waiting (start of a shutdown). */
void tgs_launcher_terminate(tgs_launcher *l);

/**
 * Stop every child: SIGTERM, wait up to `grace_ms`, then SIGKILL, and reap.
 * Then free. NULL is a no-op.
 */
void tgs_launcher_free(tgs_launcher *l, int grace_ms);

#endif
