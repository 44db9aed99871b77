/* SPDX-License-Identifier: Apache-2.0
 *
 * launch_args.h: taskgrid-scheduler's command-line options of the slurm
 * and ssh launchers (--worker-command, --worker-extra-arg,
 * --contact-address, --job-*, --slurm-bin-dir, --print-job-script,
 * --hosts, --ssh, --ssh-arg), parsed into tgs_server_opts. main.c calls
 * these; the usage text is tgs_launch_usage.
 */
#ifndef TGS_LAUNCH_ARGS_H
#define TGS_LAUNCH_ARGS_H

#include <stdbool.h>

#include "server.h"

typedef struct tgs_launch_cli {
    /* Arrays of argc entries for the repeatable options. */
    const char **extra, **directives, **prologue, **ssh_args, **hosts;
    char *hosts_copy; /* --hosts split in place */
    bool print_job_script;
} tgs_launch_cli;

extern const char tgs_launch_usage[];

/** Room for `argc` repeated values; false when out of memory. */
bool tgs_launch_cli_init(tgs_launch_cli *c, int argc);
void tgs_launch_cli_free(tgs_launch_cli *c);

/**
 * Parse option `a` with value `val` (NULL if none follows) into `o`.
 * Returns -1 if `a` is not one of these options, 0 if it took `val`, 1
 * if it took no value (--print-job-script), 2 on a usage error, with
 * the message in `err`.
 */
int tgs_launch_arg(tgs_launch_cli *c, tgs_server_opts *o, const char *a,
                   const char *val, char *err, size_t errlen);

/**
 * Checks across options once all are parsed (e.g. --hosts only with
 * --launcher ssh). Returns -1 to go on, 2 with the message in `err`.
 */
int tgs_launch_check(const tgs_launch_cli *c, const tgs_server_opts *o,
                     char *err, size_t errlen);

#endif
