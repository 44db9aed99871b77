/* SPDX-License-Identifier: Apache-2.0
 *
 * launcher_test.c: the launcher front (scheduler/launcher.h) with real
 * child processes standing in for workers: shell scripts that sleep, or
 * fail at once, and fake sbatch/squeue/scancel commands in a temporary
 * folder. Checks the counts scaling relies on (active workers, pending
 * units, retirement), launch ids from the network matched strictly, the
 * back-off after failed starts with the failure's own words, and the
 * Slurm job script. Waits are bounded polls. Depends on
 * //scheduler:server and cmocka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "scheduler/launcher.h"
#include "taskgrid/status.h"

static char dir[256];

static void write_script(const char *name, const char *body)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tg-launcher-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_script("sleeper", "exec sleep 30");
    write_script("failer", "echo no >&2; exit 3");
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(void)
{
    struct timespec ts = {0, 10 * 1000 * 1000};

    nanosleep(&ts, NULL);
}

static tgs_launcher_opts local_opts(const char *bin)
{
    static char path[512];
    tgs_launcher_opts o;

    memset(&o, 0, sizeof(o));
    snprintf(path, sizeof(path), "%s/%s", dir, bin);
    o.kind = "local";
    o.worker_bin = path;
    o.address = "tcp://127.0.0.1:1";
    return o;
}

/* Which launch ids the fake scheduler has connected. */
static const char *connected_ids[8];

static bool is_connected(void *ud, const char *id)
{
    (void)ud;
    for (size_t i = 0; i < 8 && connected_ids[i]; i++)
        if (strcmp(connected_ids[i], id) == 0)
            return true;
    return false;
}

static void unit_id(tgs_launcher *l, size_t i, char *out, size_t len)
{
    tgs_unit_info info;

    assert_true(tgs_launcher_unit_at(l, i, &info));
    snprintf(out, len, "%s", info.id);
}

/* Three local units: counted, matched by exact launch id only, retired
 * one worker at a time, and the newest unconnected one stopped first. */
static void test_launcher__counts_and_ids(void **state)
{
    tgs_launcher_opts o = local_opts("sleeper");
    tgs_launcher *l;
    char a[64], b[64], c[64], id[128], hostile[300];
    tgs_unit_info info;

    (void)state;
    assert_int_equal(tgs_launcher_new(&l, &o), 0);
    assert_string_equal(tgs_launcher_kind(l), "local");
    assert_int_equal(tgs_launcher_slots(l), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tgs_launcher_start(l, now_ms()), 0);
    assert_int_equal(tgs_launcher_active(l), 3);
    unit_id(l, 0, a, sizeof(a));
    unit_id(l, 1, b, sizeof(b));
    unit_id(l, 2, c, sizeof(c));
    assert_true(tgs_launcher_unit_at(l, 0, &info));
    assert_string_equal(info.state, "starting");
    assert_true(strncmp(info.where, "pid ", 4) == 0);

    snprintf(id, sizeof(id), "%s/0", a);
    assert_true(tgs_launcher_owns(l, id));
    /* Launch ids come from the network: anything else is no unit's. */
    snprintf(id, sizeof(id), "%s/1", a); /* one worker per unit */
    assert_false(tgs_launcher_owns(l, id));
    snprintf(id, sizeof(id), "%s/", a);
    assert_false(tgs_launcher_owns(l, id));
    snprintf(id, sizeof(id), "%s/0x", a);
    assert_false(tgs_launcher_owns(l, id));
    snprintf(id, sizeof(id), "%s/-0", a);
    assert_false(tgs_launcher_owns(l, id));
    snprintf(id, sizeof(id), "%s/99999999999999999999", a);
    assert_false(tgs_launcher_owns(l, id));
    snprintf(id, sizeof(id), "%sx/0", a);
    assert_false(tgs_launcher_owns(l, id));
    assert_false(tgs_launcher_owns(l, "/0"));
    assert_false(tgs_launcher_owns(l, ""));
    memset(hostile, 'a', sizeof(hostile) - 1);
    hostile[sizeof(hostile) - 1] = '\0';
    assert_false(tgs_launcher_owns(l, hostile));

    /* A connected worker: its unit runs, it is not stopped as idle. */
    snprintf(id, sizeof(id), "%s/0", c);
    connected_ids[0] = id;
    tgs_launcher_seen(l, id);
    assert_true(tgs_launcher_unit_at(l, 2, &info));
    assert_string_equal(info.state, "running");
    assert_int_equal(tgs_launcher_unit_connected(l, 2, is_connected, NULL), 1);

    /* Keep 2: the newest not connected (b) stops; keep 2 again: none. */
    assert_true(tgs_launcher_stop_idle(l, 1, is_connected, NULL));
    assert_int_equal(tgs_launcher_active(l), 2);
    assert_true(tgs_launcher_unit_at(l, 1, &info));
    assert_string_equal(info.id, b);
    assert_string_equal(info.state, "stopping");
    assert_false(tgs_launcher_stop_idle(l, 2, is_connected, NULL));

    /* Retiring c's worker: it no longer counts. */
    tgs_launcher_retire(l, id);
    assert_int_equal(tgs_launcher_active(l), 1);
    /* b ends (SIGTERM): the poll removes it; it was asked to stop, so it
     * is no failure. */
    for (int64_t end = now_ms() + 5000; now_ms() < end;) {
        tgs_launcher_poll(l, now_ms());
        if (!tgs_launcher_unit_at(l, 2, &info))
            break;
        nap();
    }
    assert_false(tgs_launcher_unit_at(l, 2, &info));
    assert_int_equal(tgs_launcher_failures(l, NULL), 0);
    connected_ids[0] = NULL;
    tgs_launcher_free(l, 2000);
}

/* A worker that exits before connecting is a failed start: counted,
 * its status in the message, and starts wait 1 s, then 2 s. */
static void test_launcher__failed_starts_back_off(void **state)
{
    tgs_launcher_opts o = local_opts("failer");
    tgs_launcher *l;
    const char *last;
    tgs_unit_info info;
    int64_t t;

    (void)state;
    assert_int_equal(tgs_launcher_new(&l, &o), 0);
    assert_true(tgs_launcher_ready(l, now_ms()));
    for (int round = 1; round <= 2; round++) {
        assert_int_equal(tgs_launcher_start(l, now_ms()), 0);
        for (int64_t end = now_ms() + 5000; now_ms() < end;) {
            tgs_launcher_poll(l, now_ms());
            if (!tgs_launcher_unit_at(l, 0, &info))
                break;
            nap();
        }
        t = now_ms();
        tgs_launcher_poll(l, t);
        assert_int_equal(tgs_launcher_failures(l, &last), (uint64_t)round);
        assert_non_null(strstr(last, "exited with status 3"));
        assert_non_null(strstr(last, "could not start"));
        /* Measured from the failure, just before t. */
        assert_false(tgs_launcher_ready(l, t + 1000 * round - 100));
        assert_true(tgs_launcher_ready(l, t + 1000 * round + 100));
    }
    tgs_launcher_free(l, 1000);
}

/* The job script: dask-jobqueue's options as #SBATCH lines, the job's
 * memory split among its workers, every worker argument quoted. */
static void test_launcher__job_script(void **state)
{
    static const char *directives[] = {"--exclusive"};
    static const char *prologue[] = {"module load python"};
    static const char *extra[] = {"--data-clients"};
    tgs_launcher_opts o;
    char buf[8192];
    FILE *f;
    size_t n;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.kind = "slurm";
    o.worker_bin = "/opt/tg/taskgrid-worker";
    o.address = "tls://head:8786";
    o.nthreads = 2;
    o.resources = "GPU=1,lic='x'";
    o.extra_args = extra;
    o.nextra_args = 1;
    o.job.cores = 4;
    o.job.memory = "2GiB";
    o.job.processes = 2;
    o.job.queue = "gpu";
    o.job.account = "proj";
    o.job.walltime = "01:30:00";
    o.job.log_dir = "/scratch/logs";
    o.job.directives = directives;
    o.job.ndirectives = 1;
    o.job.prologue = prologue;
    o.job.nprologue = 1;
    f = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(f);
    assert_int_equal(tgs_launcher_print_script(&o, f), 0);
    n = (size_t)ftell(f);
    fclose(f);
    buf[n < sizeof(buf) ? n : sizeof(buf) - 1] = '\0';
    assert_non_null(strstr(buf, "#!/usr/bin/env bash\n"));
    assert_non_null(strstr(buf, "#SBATCH -J taskgrid-worker\n"));
    assert_non_null(strstr(buf, "#SBATCH -p gpu\n"));
    assert_non_null(strstr(buf, "#SBATCH -A proj\n"));
    assert_non_null(strstr(buf, "#SBATCH --cpus-per-task=4\n"));
    assert_non_null(strstr(buf, "#SBATCH --mem=2048M\n"));
    assert_non_null(strstr(buf, "#SBATCH -t 01:30:00\n"));
    assert_non_null(strstr(buf, "#SBATCH -o /scratch/logs/"));
    assert_non_null(strstr(buf, "#SBATCH --exclusive\n"));
    assert_non_null(strstr(buf, "\nmodule load python\n"));
    assert_non_null(strstr(buf, "TASKGRID_LAUNCH_ID=\"$TASKGRID_UNIT/0\""));
    assert_non_null(strstr(buf, "TASKGRID_LAUNCH_ID=\"$TASKGRID_UNIT/1\""));
    assert_non_null(strstr(buf, "'GPU=1,lic='\\''x'\\'''"));
    assert_non_null(strstr(buf, "--memory-limit 1073741824"));
    assert_non_null(strstr(buf, "'--data-clients'"));
    assert_non_null(strstr(buf, "\nwait\n"));

    o.job.memory = "lots";
    f = fmemopen(buf, sizeof(buf), "w");
    assert_int_equal(tgs_launcher_print_script(&o, f), TG_EINVAL);
    fclose(f);
    assert_non_null(strstr(tg_error_last(), "--job-memory"));
    o.kind = "local";
    f = fmemopen(buf, sizeof(buf), "w");
    assert_int_not_equal(tgs_launcher_print_script(&o, f), 0);
    fclose(f);
}

/* Slurm's commands missing: the launcher refuses at once, naming them;
 * a job sbatch refuses ends its unit with sbatch's own words. */
static void test_launcher__slurm_tools(void **state)
{
    tgs_launcher_opts o;
    tgs_launcher *l;
    tgs_unit_info info;
    const char *last;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.kind = "slurm";
    o.worker_bin = "/bin/true";
    o.address = "tcp://127.0.0.1:1";
    o.job.bin_dir = dir; /* no sbatch yet */
    assert_int_not_equal(tgs_launcher_new(&l, &o), 0);
    assert_non_null(strstr(tg_error_last(), "sbatch"));

    write_script("sbatch", "cat >/dev/null; echo 'sbatch: error: invalid "
                           "partition specified: nope' >&2; exit 1");
    write_script("squeue", "exit 0");
    write_script("scancel", "exit 0");
    assert_int_equal(tgs_launcher_new(&l, &o), 0);
    assert_int_equal(tgs_launcher_slots(l), 1);
    assert_int_equal(tgs_launcher_start(l, now_ms()), 0);
    assert_int_equal(tgs_launcher_active(l), 1); /* submitting counts */
    for (int64_t end = now_ms() + 5000; now_ms() < end;) {
        tgs_launcher_poll(l, now_ms());
        if (!tgs_launcher_unit_at(l, 0, &info))
            break;
        nap();
    }
    assert_int_equal(tgs_launcher_failures(l, &last), 1);
    assert_non_null(strstr(last, "invalid partition specified: nope"));
    assert_non_null(strstr(last, "could not start"));
    assert_int_equal(tgs_launcher_active(l), 0);
    tgs_launcher_free(l, 1000);
}

/* A job Slurm keeps pending is capacity: it counts as active, shows as
 * "pending" with its job id, is cancelled (scancel JOBID) when no longer
 * wanted, and a job that leaves the queue by itself ends its unit. The
 * fake commands keep their state in files under `dir`. */
static void test_launcher__slurm_pending_jobs(void **state)
{
    char body[2048], path[512], got[256];
    tgs_launcher_opts o;
    tgs_launcher *l;
    tgs_unit_info info;
    FILE *f;

    (void)state;
    snprintf(body, sizeof(body),
             "exec 9>>'%s/lock'; flock 9; cat > '%s/script'; "
             "n=$(cat '%s/seq' 2>/dev/null || echo 40); "
             "n=$((n+1)); echo $n > '%s/seq'; echo \"$n;cluster\"",
             dir, dir, dir, dir);
    write_script("sbatch", body);
    snprintf(body, sizeof(body),
             "for j in $(cat '%s/queued' 2>/dev/null); do "
             "echo \"$j|PENDING|Resources\"; done",
             dir);
    write_script("squeue", body);
    snprintf(body, sizeof(body), "echo \"$@\" >> '%s/cancelled'", dir);
    write_script("scancel", body);
    memset(&o, 0, sizeof(o));
    o.kind = "slurm";
    o.worker_bin = "/bin/true";
    o.address = "tcp://127.0.0.1:1";
    o.job.bin_dir = dir;
    o.job.poll_ms = 100;
    o.job.processes = 2;
    assert_int_equal(tgs_launcher_new(&l, &o), 0);
    assert_int_equal(tgs_launcher_slots(l), 2);
    snprintf(path, sizeof(path), "%s/queued", dir);
    f = fopen(path, "w");
    fprintf(f, "41\n42\n");
    fclose(f);
    assert_int_equal(tgs_launcher_start(l, now_ms()), 0);
    assert_int_equal(tgs_launcher_start(l, now_ms()), 0);
    assert_int_equal(tgs_launcher_active(l), 4);
    /* Both submitted (one at a time: the fake takes a lock for its
     * sequence number): pending, with their ids. */
    for (int64_t end = now_ms() + 5000; now_ms() < end;) {
        tgs_launcher_poll(l, now_ms());
        tgs_unit_info a, b;
        if (tgs_launcher_unit_at(l, 0, &a) && tgs_launcher_unit_at(l, 1, &b) &&
            strcmp(a.state, "pending") == 0 && strcmp(b.state, "pending") == 0)
            break;
        nap();
    }
    /* Submitted at once, so either may have got 41. */
    assert_true(tgs_launcher_unit_at(l, 1, &info));
    assert_string_equal(info.state, "pending");
    assert_true(strcmp(info.where, "slurm job 41") == 0 ||
                strcmp(info.where, "slurm job 42") == 0);
    assert_int_equal(info.workers, 2);
    const char *newest = strcmp(info.where, "slurm job 41") == 0 ? "41" : "42";
    const char *oldest = newest[1] == '1' ? "42" : "41";
    assert_int_equal(tgs_launcher_active(l), 4);
    /* Its script named the unit for both workers. */
    snprintf(path, sizeof(path), "%s/script", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(body, 1, sizeof(body) - 1, f);
    fclose(f);
    body[n] = '\0';
    assert_non_null(strstr(body, "TASKGRID_LAUNCH_ID=\"$TASKGRID_UNIT/1\""));
    assert_non_null(strstr(body, "TASKGRID_UNIT='slurm-"));

    /* Only two workers wanted: the newest pending job is cancelled. */
    assert_true(tgs_launcher_stop_idle(l, 2, is_connected, NULL));
    assert_false(tgs_launcher_stop_idle(l, 2, is_connected, NULL));
    assert_int_equal(tgs_launcher_active(l), 2);
    snprintf(path, sizeof(path), "%s/cancelled", dir);
    got[0] = '\0';
    for (int64_t end = now_ms() + 5000; now_ms() < end && !got[0];) {
        tgs_launcher_poll(l, now_ms());
        if ((f = fopen(path, "r")) != NULL) {
            if (fgets(got, sizeof(got), f) == NULL)
                got[0] = '\0';
            fclose(f);
        }
        nap();
    }
    assert_int_equal(strncmp(got, newest, 2), 0);
    assert_string_equal(got + 2, "\n");
    /* Both jobs leave the queue (the newest cancelled, the oldest ended
     * on its own): both units end; only the oldest's, not asked to stop
     * and never connected, is a failure. */
    snprintf(path, sizeof(path), "%s/queued", dir);
    f = fopen(path, "w");
    fclose(f);
    for (int64_t end = now_ms() + 5000; now_ms() < end;) {
        tgs_launcher_poll(l, now_ms());
        if (!tgs_launcher_unit_at(l, 0, &info))
            break;
        nap();
    }
    assert_false(tgs_launcher_unit_at(l, 0, &info));
    const char *last;
    assert_int_equal(tgs_launcher_failures(l, &last), 1);
    char want[64];
    snprintf(want, sizeof(want), "slurm job %s left the queue", oldest);
    assert_non_null(strstr(last, want));
    tgs_launcher_free(l, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launcher__counts_and_ids),
        cmocka_unit_test(test_launcher__failed_starts_back_off),
        cmocka_unit_test(test_launcher__job_script),
        cmocka_unit_test(test_launcher__slurm_tools),
        cmocka_unit_test(test_launcher__slurm_pending_jobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
