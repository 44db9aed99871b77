/* SPDX-License-Identifier: Apache-2.0
 *
 * server.h: the scheduler daemon around the pure core: serves
 * taskgrid.v1.Scheduler, taskgrid.v1.WorkerLink and grpc.health.v1.Health
 * through the server side of the transport (transport/server.h), turns
 * messages into core events and core actions into batched messages, and
 * drives the local launcher toward the core's scaling target (sched.h
 * says which file does what).
 */
#ifndef TGS_SERVER_H
#define TGS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "launcher.h"

/* The default budget of the Gather relays (relay.c). */
#define TGS_RELAY_MEMORY_DEFAULT (64u << 20)
/* --max-nesting-depth's default: far deeper than nested work is meant to
 * go (each level is a task waiting on its children, holding a thread on
 * its worker), yet a recursion that never ends fails after 100 levels
 * with an error that says so instead of piling up waiting tasks until
 * the workers run out of threads or memory. */
#define TGS_MAX_NESTING_DEPTH_DEFAULT 100u

typedef struct tgs_server_opts {
    const char *listen;       /* "tcp://0.0.0.0:8786" */
    const char *launcher;     /* "local", "slurm", "ssh" or "none" */
    const char *worker_bin;   /* NULL: next to this executable, or PATH */
    uint32_t workers;         /* workers to start at once */
    uint32_t worker_nthreads; /* --nthreads of launched workers */
    const char *worker_resources;
    const char *const *worker_preload;
    size_t nworker_preload;
    const char *worker_log_level;
    const char *worker_memory_limit; /* --memory-limit of launched workers */
    int64_t no_worker_timeout_ms;
    uint32_t allowed_failures;
    int64_t retry_backoff_ms;     /* 0: default 100; < 0: retry at once */
    int64_t retry_backoff_max_ms; /* 0: default 5000 */
    size_t max_message;
    /* SchedulerMessage.inline_limit for workers with a data service:
     * larger results stay on the worker that made them (0: all inline). */
    uint64_t inline_limit;
    /* Bytes per second assumed between workers when placement weighs
     * moving held inputs against waiting (0: default 100 MB/s). */
    double transfer_bandwidth;
    /* Bytes all Gather relays may hold at once (--relay-memory; 0: the
     * default, TGS_RELAY_MEMORY_DEFAULT). */
    uint64_t relay_memory;
    /* Deepest nesting of tasks submitted from inside tasks accepted
     * (--max-nesting-depth; 0: no limit): tgs_core_opts. */
    uint32_t max_nesting_depth;
    const char *ca_pem, *cert_pem, *key_pem; /* TLS (all or none) */
    /* Files (absolute paths) the local launcher passes to the workers it
     * starts as --tls-ca/--tls-cert/--tls-key; a TLS scheduler's launcher
     * starts workers only with them. NULL: none. */
    const char *worker_tls_ca, *worker_tls_cert, *worker_tls_key;
    /* --dashboard-address HOST:PORT: the HTTP port (dashboard.h); NULL:
     * none. */
    const char *dashboard_address;
    /* --dashboard-fallback: when that port is taken, a free one. */
    bool dashboard_fallback;
    /* --launcher slurm and ssh (launcher.h): the command running a worker
     * there (--worker-command), arguments added to each worker's
     * (--worker-extra-arg), the batch jobs' and the hosts' options. */
    const char *worker_cmd;
    /* --worker-death-timeout S (NULL: 60 for slurm, none otherwise). */
    const char *worker_death_timeout;
    const char *const *worker_extra_args;
    size_t nworker_extra_args;
    tgs_job_opts job;
    tgs_ssh_opts ssh;
    /* --contact-address: the scheduler's address as launched workers
     * reach it (NULL: the listen address; a wildcard listen host is
     * replaced, per SSH host by the local end of the route to it, for
     * jobs by this host's name). */
    const char *contact_address;
} tgs_server_opts;

/**
 * Run the scheduler until SIGINT/SIGTERM (installed here). Prints
 * "taskgrid-scheduler listening on tcp://HOST:PORT" on stdout once bound.
 * Returns a process exit code.
 */
int tgs_server_main(const tgs_server_opts *opts);

/**
 * --print-job-script: write the job script --launcher slurm would submit
 * to `out` (the workers' address: --contact-address, else --listen's).
 * Returns 0, or non-zero after printing why on stderr.
 */
int tgs_server_print_job_script(const tgs_server_opts *opts, FILE *out);

#endif
