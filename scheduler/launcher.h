/* SPDX-License-Identifier: Apache-2.0
 *
 * launcher.h: starts and stops workers for the scheduler's Scale, the
 * same way whatever starts them. A launcher starts *units*: a local
 * taskgrid-worker process (--launcher local), a Slurm batch job running
 * one or more workers (slurm), or a worker process on an SSH host (ssh).
 * Each worker of unit ID gets TASKGRID_LAUNCH_ID "ID/K" (K from 0), which
 * it echoes in its Register message, so the scheduler can match streams
 * to units. This layer keeps the units and their counts (what scaling
 * needs: workers started and not retired, pending ones included), backs
 * off after failed starts and remembers the last failure for Status; the
 * backends (launch.h) do the starting and stopping. POSIX only; no gRPC.
 */
#ifndef TGS_LAUNCHER_H
#define TGS_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Batch jobs (--launcher slurm): dask-jobqueue's options. */
typedef struct tgs_job_opts {
    uint32_t cores;       /* --job-cores: CPUs per job (0: 1) */
    const char *memory;   /* --job-memory: memory per job (e.g. 4GiB), or
                             NULL for the partition's default */
    uint32_t processes;   /* --job-processes: workers per job (0: 1; at most
                             64); each gets cores/processes threads unless
                             --nthreads says otherwise */
    const char *queue;    /* --job-queue: the partition */
    const char *account;  /* --job-account */
    const char *walltime; /* --job-walltime, e.g. 01:00:00 */
    const char *name;     /* --job-name (default taskgrid-worker) */
    const char *log_dir;  /* --job-log-dir: output files go there */
    const char *const *directives; /* --job-directive: extra #SBATCH lines */
    size_t ndirectives;
    const char *const *prologue; /* --job-prologue: shell lines run first */
    size_t nprologue;
    /* sbatch, scancel and squeue (NULL: found in PATH; --slurm-bin-dir
     * gives a folder holding them). */
    const char *bin_dir;
    int64_t poll_ms; /* how often squeue is asked (0: 2000) */
} tgs_job_opts;

/* Hosts over SSH (--launcher ssh). */
typedef struct tgs_ssh_opts {
    const char *const *hosts; /* --hosts h1,h2: where workers run */
    size_t nhosts;
    const char *ssh;             /* the ssh program (NULL: "ssh" in PATH) */
    const char *const *ssh_args; /* --ssh-arg: before the host, repeatable */
    size_t nssh_args;
} tgs_ssh_opts;

typedef struct tgs_launcher_opts {
    const char *kind;       /* "local", "slurm" or "ssh" */
    const char *worker_bin; /* path of taskgrid-worker (local) */
    /* slurm, ssh: the shell command that runs a worker where the unit
     * runs, before its arguments (--worker-command; NULL: worker_bin,
     * quoted, which then must exist at that path there). */
    const char *worker_cmd;
    const char *address; /* scheduler address for the workers */
    /* `address` has a wildcard host (the scheduler listens on every
     * address): the SSH backend puts in, per host, the local end of the
     * route to it. */
    bool wildcard;
    uint32_t nthreads;     /* --nthreads for each worker (0: its default) */
    const char *resources; /* --resources value or NULL */
    const char *const *preload; /* --preload values */
    size_t npreload;
    const char *log_level;    /* --log-level for workers or NULL */
    const char *memory_limit; /* --memory-limit for workers or NULL */
    /* --tls-ca/--tls-cert/--tls-key for workers (tls:// address), or
     * NULL. Remote workers read them at the same paths there. */
    const char *tls_ca, *tls_cert, *tls_key;
    /* --death-timeout for workers (seconds, as text), or NULL: they exit
     * once no scheduler answered that long (a batch job whose scheduler
     * died does not hold its allocation until its walltime). */
    const char *death_timeout;
    const char *const *extra_args; /* --worker-extra-arg, repeatable */
    size_t nextra_args;
    tgs_job_opts job;
    tgs_ssh_opts ssh;
} tgs_launcher_opts;

typedef struct tgs_launcher tgs_launcher;

/* A unit, for Status (LauncherUnit). */
typedef struct tgs_unit_info {
    const char *id;
    const char *state; /* starting, pending, running, stopping */
    const char *where;
    uint32_t workers;
} tgs_unit_info;

/* Is the worker with launch id `launch_id` connected now. */
typedef bool (*tgs_launcher_connected_fn)(void *ud, const char *launch_id);

/**
 * New launcher of kind opts->kind (copies what it keeps of `opts`).
 * Checks what it needs at start-up (the batch system's commands, the
 * hosts): a missing one is an error whose message (tg_error_last) names
 * it. Returns 0 or a negative code.
 */
int tgs_launcher_new(tgs_launcher **out, const tgs_launcher_opts *opts);

/** "local", "slurm" or "ssh". */
const char *tgs_launcher_kind(const tgs_launcher *l);

/** Workers each unit runs (job processes; 1 for local and ssh). */
uint32_t tgs_launcher_slots(const tgs_launcher *l);

/**
 * May a unit be started now: false while backing off after failed starts
 * (1 s doubling to 60 s, reset when a worker connects).
 */
bool tgs_launcher_ready(const tgs_launcher *l, int64_t now_ms);

/**
 * Start one unit (may complete in the background: a job submission, an
 * ssh connection). Returns 0, or a negative code after recording the
 * failure (counted, logged, in Status) and starting the back-off.
 */
int tgs_launcher_start(tgs_launcher *l, int64_t now_ms);

/** Look after the units without blocking: exits, job states. */
void tgs_launcher_poll(tgs_launcher *l, int64_t now_ms);

/**
 * Worker `launch_id` is connected (called for each registered worker at
 * every tick): its unit started well, so the back-off ends.
 */
void tgs_launcher_seen(tgs_launcher *l, const char *launch_id);

/** Workers started and not retired: connected or starting. */
size_t tgs_launcher_active(const tgs_launcher *l);

/** True if `launch_id` ("ID/K") is a worker of a live unit. */
bool tgs_launcher_owns(const tgs_launcher *l, const char *launch_id);

/** Worker `launch_id` is retiring: it no longer counts as active. */
void tgs_launcher_retire(tgs_launcher *l, const char *launch_id);

/**
 * Stop the newest unit none of whose workers is connected (nothing runs
 * there, so nothing is lost), if stopping it leaves at least `keep`
 * active workers. False if there is none to stop.
 */
bool tgs_launcher_stop_idle(tgs_launcher *l, size_t keep,
                            tgs_launcher_connected_fn connected, void *ud);

/** Starts that failed, and the last failure's text ("" if none). */
uint64_t tgs_launcher_failures(const tgs_launcher *l, const char **last);

/** Live units, oldest first; false past the end. */
bool tgs_launcher_unit_at(const tgs_launcher *l, size_t i, tgs_unit_info *out);

/** Of the `i`th unit's workers, how many are connected. */
uint32_t tgs_launcher_unit_connected(const tgs_launcher *l, size_t i,
                                     tgs_launcher_connected_fn connected,
                                     void *ud);

/** Ask every unit to stop without waiting (start of a shutdown). */
void tgs_launcher_terminate(tgs_launcher *l);

/**
 * Stop every unit (waiting up to `grace_ms` for them to end, then
 * forcing), then free. NULL is a no-op.
 */
void tgs_launcher_free(tgs_launcher *l, int grace_ms);

/**
 * --print-job-script: write the batch script a unit of `opts` would
 * submit (with "$TASKGRID_UNIT" for the unit id) to `out`. Returns 0, or
 * a negative code (the kind has no job script).
 */
int tgs_launcher_print_script(const tgs_launcher_opts *opts, FILE *out);

#endif
