/* SPDX-License-Identifier: Apache-2.0
 *
 * config.h: the worker's command line and environment, parsed into one
 * struct with every default filled in. Kept apart from main() so that the
 * rules (and their error messages) are unit-tested. Depends on libc and
 * the status enum.
 */
#ifndef TGW_CONFIG_H
#define TGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

/* One --resources entry. */
typedef struct tgw_resource {
    char *name;
    double amount;
} tgw_resource;

typedef struct tgw_config {
    char *address;     /* tcp://host:port or tls://host:port */
    unsigned nthreads; /* default: CPUs this process may run on */
    char *name;        /* default: hostname-pid */
    tgw_resource *resources;
    size_t nresources;
    char **preload; /* plug-in paths, in order */
    size_t npreload;
    int heartbeat_ms;                  /* until the scheduler says otherwise */
    char *log_level;                   /* error|warn|info|debug */
    char *tls_ca, *tls_cert, *tls_key; /* PEM file paths (tls:// only) */
    char *host;                        /* this host's name */
    char *launch_id;                   /* TASKGRID_LAUNCH_ID, or NULL */
    /* The data service: where it listens ("HOST:PORT"; NULL with
     * --data-listen none: no data service, every result inline) and what
     * it advertises (NULL: the listen host with the bound port; for a
     * wildcard host the address chosen by advertise.h). */
    char *data_listen;
    char *data_address;
    /* --data-clients: over TLS the data service also answers certificates
     * of role "client" (clients fetching held results directly), not only
     * "worker"; never "admin". */
    bool data_clients;
    /* Memory management (memory.h): the limit in bytes (0: none; default
     * this machine's memory), the target, pause and terminate fractions of
     * it (0: that step is off) and the spill directory (NULL: a private
     * temporary one). */
    uint64_t memory_limit;
    double memory_target, memory_pause, memory_terminate;
    char *spill_dir;
    bool memory_limit_set; /* --memory-limit was given */
    /* --exit-with-parent-fd N: stop (as SIGTERM does) when descriptor N
     * reaches end of file, e.g. 0 for the ssh channel a launcher holds
     * open; -1 if not given. */
    int parent_fd;
    /* --death-timeout SECONDS: exit (status 1) once the scheduler has
     * been out of reach this long, at start or after losing it, so a
     * worker whose scheduler is gone (a batch job's) does not wait
     * forever; 0: never (the default). */
    int64_t death_timeout_ms;
    bool help; /* --help was given: print usage, exit 0 */
} tgw_config;

#define TGW_DEFAULT_HEARTBEAT_MS 1000
#define TGW_DEFAULT_MEMORY_TARGET 0.6
#define TGW_DEFAULT_MEMORY_PAUSE 0.8
#define TGW_DEFAULT_MEMORY_TERMINATE 0.95

/**
 * Parse `argv` (argv[0] is the program) and the environment into `cfg`.
 *
 * @return TG_OK; TG_EINVAL on a usage error, TG_ENOMEM; either way with a
 *         one-line message in tg_error_last() (the caller prints it and
 *         exits 2). Free `cfg` with tgw_config_free in every case.
 */
int tgw_config_parse(tgw_config *cfg, int argc, char *const *argv);

/** Free what the config owns. */
void tgw_config_free(tgw_config *cfg);

/** The --help text. */
const char *tgw_config_usage(void);

#endif
