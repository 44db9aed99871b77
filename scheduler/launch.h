/* SPDX-License-Identifier: Apache-2.0
 *
 * launch.h (internal to the launchers): what a launcher backend provides
 * (local processes in launch_local.c, Slurm jobs in launch_slurm.c, SSH
 * hosts in launch_ssh.c) and what launcher.c gives back to it. launcher.c
 * owns the unit table; a backend keeps its own state per unit in
 * unit->data and reports through tgs__unit_state and tgs__unit_ended.
 * Everything runs on the scheduler's loop thread: backends never block
 * it for long (commands run as child processes, polled; see proc.h).
 */
#ifndef TGS_LAUNCH_H
#define TGS_LAUNCH_H

#include <stdarg.h>

#include "launcher.h"

#define TGS_UNIT_ID_MAX 48
#define TGS_UNIT_SLOTS_MAX 64

typedef struct tgs_unit {
    char id[TGS_UNIT_ID_MAX];
    uint32_t slots;   /* workers it runs: ID/0 .. ID/slots-1 */
    uint64_t retired; /* bit K: worker K retires (no longer counts) */
    bool ever_seen;   /* some worker of it connected once */
    bool stopping;    /* asked to stop */
    char state[16];   /* starting, pending, running (stopping: derived) */
    char where[96];   /* "pid 12", "slurm job 42", a host */
    int64_t started_ms;
    void *data; /* the backend's */
} tgs_unit;

typedef struct tgs_launch_ops {
    const char *kind;
    /* Check options and tools, make the backend's state. Errors name the
     * problem through tg__error_set. */
    int (*init)(tgs_launcher *l, const tgs_launcher_opts *o, void **impl);
    /* Workers per unit. */
    uint32_t (*slots)(void *impl);
    /* Begin starting `u` (id and slots set; where/state the backend's).
     * A failure known at once returns a negative code with the message
     * set (tg__error_set); a later one comes as tgs__unit_ended. */
    int (*start)(void *impl, tgs_unit *u, int64_t now_ms);
    /* Look after the units: call tgs__unit_state and tgs__unit_ended. */
    void (*poll)(void *impl, int64_t now_ms);
    /* Ask `u` to stop (its workers were drained, or never connected). */
    void (*stop)(void *impl, tgs_unit *u);
    /* Free what the backend keeps for `u` (after it ended). */
    void (*forget)(void *impl, tgs_unit *u);
    /* Stop every unit, waiting up to grace_ms for them to end, then force;
     * free the backend (units are forgotten after). */
    void (*destroy)(void *impl, int grace_ms);
    /* --print-job-script (NULL: this kind has none): `l` has its options
     * and worker arguments, but init was not called (no tool is needed
     * to print a script). */
    int (*script)(const tgs_launcher *l, FILE *out);
} tgs_launch_ops;

extern const tgs_launch_ops tgs__launch_local;
extern const tgs_launch_ops tgs__launch_slurm;
extern const tgs_launch_ops tgs__launch_ssh;

/* ---- for backends ---- */

/** The options the launcher was made with (strings live as long as it). */
const tgs_launcher_opts *tgs__launch_opts(const tgs_launcher *l);

/** Units, oldest first (iterate from the end when ending some). */
size_t tgs__unit_count(const tgs_launcher *l);
tgs_unit *tgs__unit_get(tgs_launcher *l, size_t i);
tgs_unit *tgs__unit_find(tgs_launcher *l, const char *id);

/** `u` is now in `state` ("pending", "running"), at `where` (NULL: kept). */
void tgs__unit_state(tgs_launcher *l, tgs_unit *u, const char *state,
                     const char *where);

/**
 * `u` ended (`why`: what happened, e.g. "exited with status 1", Slurm's
 * state and reason). A unit none of whose workers ever connected and that
 * was not asked to stop is a failed start: counted, logged as an error
 * with `why`, kept for Status and backed off. Removes `u` (forget is
 * called): do not use it after.
 */
void tgs__unit_ended(tgs_launcher *l, tgs_unit *u, const char *why);

/** Record a failure that is not one unit's end (printf-style). */
void tgs__launch_failed(tgs_launcher *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * The worker's arguments after the program (the scheduler's address,
 * --nthreads, --resources, --memory-limit, --log-level, TLS files,
 * --preload, the extra arguments), without --name. NULL-terminated;
 * static storage inside `l`, valid while it lives.
 */
const char *const *tgs__worker_args(const tgs_launcher *l, size_t *n);

/* Shell quoting into `buf` (appending, NUL-terminated): 'word' with
 * embedded quotes as '\''. Returns false if it does not fit. */
bool tgs__shell_quote(char *buf, size_t cap, const char *word);

#endif
