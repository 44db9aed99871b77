/* SPDX-License-Identifier: Apache-2.0
 *
 * proc.h: commands the launchers run (sbatch, scancel, squeue, ssh) as
 * child processes the scheduler's loop polls instead of waiting on: the
 * command is found in PATH, gets `input` on its stdin (or a pipe held
 * open, for a worker that exits at its end of file), and its output is
 * captured up to a bound. Children die with the scheduler
 * (PR_SET_PDEATHSIG) and inherit no descriptor but 0-2. POSIX only.
 */
#ifndef TGS_PROC_H
#define TGS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Bytes of stdout, and of stderr, kept. */
#define TGS_PROC_CAPTURE_MAX (64 * 1024)

typedef struct tgs_proc tgs_proc;

typedef enum tgs_proc_flags {
    /* stdout and stderr captured, their first bytes kept (else both are
     * inherited from the scheduler). */
    TGS_PROC_CAPTURE = 1,
    /* stdout inherited; stderr copied to the scheduler's stderr as it
     * comes, its last bytes kept (tgs_proc_err) to explain a failure. */
    TGS_PROC_TEE_ERR = 2,
    /* stdin is a pipe held open until tgs_proc_close_stdin or the end of
     * the scheduler (else `input`, or /dev/null). */
    TGS_PROC_HOLD_STDIN = 4,
} tgs_proc_flags;

/**
 * The path of program `argv0` into `path`: argv0 itself when it has a
 * '/' (it must be executable), else the first executable of that name in
 * PATH. Returns 0, or a negative code with the message set ("NAME:
 * command not found in PATH (...)", or "cannot run PATH: why").
 */
int tgs_proc_find(const char *argv0, char *path, size_t len);

/**
 * Start argv[0] (searched in PATH when it has no '/') with `argv`
 * (NULL-terminated) and extra environment `env` ("NAME=VALUE",
 * NULL-terminated, or NULL). `input` (or NULL) is written to its stdin,
 * which is then closed; at most 60 KiB. Returns 0, or a negative code
 * with the message set (a command not found is reported here, not as an
 * exit status).
 */
int tgs_proc_start(tgs_proc **out, const char *const *argv,
                   const char *const *env, const char *input, int flags);

/**
 * Read what the command wrote so far and reap it if it exited, without
 * blocking. True once it exited: *wstatus (may be NULL) is its status.
 */
bool tgs_proc_poll(tgs_proc *p, int *wstatus);

/** Like tgs_proc_poll, but wait up to `ms` milliseconds for the exit. */
bool tgs_proc_wait(tgs_proc *p, int ms, int *wstatus);

/** Captured stdout and stderr so far (NUL-terminated, never NULL). */
const char *tgs_proc_out(const tgs_proc *p);
const char *tgs_proc_err(const tgs_proc *p);

/** Its process id. */
pid_t tgs_proc_pid(const tgs_proc *p);

/** Close its held stdin (TGS_PROC_HOLD_STDIN): it sees end of file. */
void tgs_proc_close_stdin(tgs_proc *p);

/** Send `sig` if it still runs. */
void tgs_proc_kill(tgs_proc *p, int sig);

/** Free; a command still running is killed (SIGKILL) and reaped. */
void tgs_proc_free(tgs_proc *p);

/**
 * Describe a wait status, "exited with status N" or "killed by signal
 * N", into `buf`. Returns buf.
 */
const char *tgs_proc_describe(int wstatus, char *buf, size_t len);

#endif
