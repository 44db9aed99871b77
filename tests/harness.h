/* SPDX-License-Identifier: Apache-2.0
 *
 * harness.h: the multi-process test harness shared by the integration,
 * semantics and security tests: find the daemons in the Bazel runfiles,
 * spawn them (they die with the test), read the scheduler's address, stop
 * them with a bound, and wait on cluster conditions with a bound. Uses
 * cmocka assertions, so call it from inside a test.
 */
#ifndef TG_TESTS_HARNESS_H
#define TG_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "taskgrid/taskgrid.h"

typedef struct th_proc {
    pid_t pid;
    int out_fd; /* the child's stdout, or -1 */
    int err_fd; /* the child's stderr, or -1 */
} th_proc;

#define TH_PROC_NONE \
    {                \
        -1, -1, -1   \
    }

/* Paths of the binaries (filled by th_find_bins). */
extern char th_bin_dir[4096];
extern char th_sched_bin[4200], th_worker_bin[4200], th_certs_bin[4200];

/* Locate the binaries: $TASKGRID_BIN_DIR, else the test's runfiles. Also
 * exports TASKGRID_BIN_DIR for the SDK's local cluster. */
void th_find_bins(void);

int64_t th_now_ms(void);
void th_sleep_ms(int ms);

/* fork+exec argv (NULL-terminated); capture stdout/stderr in pipes. The
 * child gets SIGKILL if the test process dies. */
th_proc th_spawn(char *const argv[], bool out, bool err);

/* Read the "taskgrid-scheduler listening on ADDRESS" line (10 s bound). */
void th_read_address(th_proc *p, char *addr, size_t len);

/* Start taskgrid-scheduler --listen LISTEN --log-level warn plus `extra`
 * (NULL-terminated, may be NULL); writes its address. */
th_proc th_start_scheduler(const char *listen, const char *const *extra,
                           char *addr, size_t len);

/* Start taskgrid-worker ADDR --name NAME --nthreads N --log-level warn plus
 * `extra` (NULL-terminated, may be NULL). */
th_proc th_start_worker(const char *addr, const char *name,
                        const char *nthreads, const char *const *extra);

/* Wait for exit (bounded); the wait status, or -1 if it had to be
 * killed at the deadline. */
int th_wait_exit(th_proc *p, int64_t timeout_ms);

/* Everything the (exited) process wrote to stderr; free() it. */
char *th_read_err(th_proc *p);

/** The whole file at `path` (at most 1 MiB), NUL-terminated; free(). Fails
 * the test if it cannot be read. */
char *th_slurp(const char *path);

/* Send what this process writes to stderr (the SDK's warnings) to the
 * file at `path` until th_capture_end; assert nothing meanwhile, so a
 * failure cannot leave stderr redirected. */
void th_capture_begin(const char *path);

/* Stop capturing; what was written (free()). */
char *th_capture_end(void);

/* How many times `needle` occurs in `hay`. */
int th_count(const char *hay, const char *needle);

void th_close(th_proc *p);

/* Send `sig`, wait (15 s bound, then SIGKILL), close; the wait status. */
int th_stop(th_proc *p, int sig);

/* Connect with default options, failing the test on error. */
tg_client *th_connect(const char *addr);

/* Poll Status until exactly `n` workers are connected (bounded). */
void th_wait_workers(tg_client *c, size_t n, int64_t timeout_ms);

/* A scheduler on loopback (--launcher none plus `sextra`, NULL-terminated,
 * may be NULL) and `nworkers` (<= 4) workers "w0".. of `nthreads` threads
 * that load `plugin` (NULL: none), and a client that saw them all connect
 * (bounded); th_cluster_down stops them all. */
typedef struct th_cluster {
    th_proc sched, workers[4];
    size_t nworkers;
    char addr[256];
    tg_client *client;
} th_cluster;

void th_cluster_up(th_cluster *cl, size_t nworkers, const char *nthreads,
                   const char *plugin, const char *const *sextra);
void th_cluster_down(th_cluster *cl);

/* A tg.inc task over `i` (json), keyed "PREFIX-inc-I"; its key and input
 * are written to the caller's buffers, which must outlive the submit. */
tg_task_def th_inc_task(const char *prefix, int i, char key[48], char in[16]);

/* `n` (>= 8) bytes of JSON, "[1,2,3" then spaces then "]", whose sum is
 * 6, so every byte must arrive for it to parse; free() it. */
char *th_padded_json(size_t n);

/* A future's result parsed as a JSON number (fails the test if erred). */
double th_number(tg_future *f);

#endif
