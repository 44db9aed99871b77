/* SPDX-License-Identifier: Apache-2.0
 *
 * launch_slurm.c: the Slurm launcher backend (launch.h). Each unit is one
 * batch job running --job-processes workers. Jobs are submitted with
 * `sbatch --parsable` (the script on its stdin), watched with `squeue`
 * every --job-poll-interval and cancelled with `scancel`, all run as
 * child processes polled from the loop (proc.h), so a slow slurmctld never
 * stalls the scheduler. A job Slurm refuses ends its unit with sbatch's
 * own message; a job that leaves the queue (finished, failed, timed out,
 * pre-empted, cancelled by hand) ends its unit, and scaling replaces it
 * while the target wants it. The script follows dask-jobqueue's options:
 * cores, memory, processes, queue, account, walltime, name, log
 * directory, extra directives and prologue.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch.h"
#include "proc.h"
#include "taskgrid/status.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define SCRIPT_MAX (56 * 1024)
#define SUBMIT_TIMEOUT_MS 60000
#define QUERY_TIMEOUT_MS 30000
#define DEFAULT_POLL_MS 2000

typedef struct sjob {
    tgs_proc *submit;     /* sbatch still running, or NULL */
    char jobid[24];       /* once sbatch answered */
    int64_t submitted_ms; /* when sbatch answered */
    bool cancel_wanted;   /* stop asked before the job id was known */
    char seen_state[24];  /* the last state squeue gave */
} sjob;

typedef struct slurm {
    tgs_launcher *l;
    char sbatch[PATH_MAX], scancel[PATH_MAX], squeue[PATH_MAX];
    int64_t poll_ms;
    tgs_proc *query;       /* squeue running, or NULL */
    int64_t query_ms;      /* when it started */
    int64_t next_query_ms; /* when the next may start */
    tgs_proc **chores;     /* scancels running */
    size_t nchores, capchores;
} slurm;

/* ---- text ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool full;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    if (b->full)
        return;
    va_start(ap, fmt);
    r = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= b->cap - b->n) {
        b->full = true;
        return;
    }
    b->n += (size_t)r;
}

/* A shell-quoted word. */
static void sb_word(sbuf *b, const char *w)
{
    char q[4096];

    q[0] = '\0';
    if (!tgs__shell_quote(q, sizeof(q), w)) {
        b->full = true;
        return;
    }
    sb_printf(b, " %s", q);
}

/* "4GiB", "4GB", "4G", "512M", "1e9" or plain bytes; 0 if not one. */
static unsigned long long parse_bytes(const char *s)
{
    static const struct {
        const char *unit;
        double mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1e3},
        {"kb", 1e3},
        {"kib", 1024.0},
        {"m", 1e6},
        {"mb", 1e6},
        {"mib", 1048576.0},
        {"g", 1e9},
        {"gb", 1e9},
        {"gib", 1073741824.0},
        {"t", 1e12},
        {"tb", 1e12},
        {"tib", 1099511627776.0},
    };
    char *end, unit[8];
    double v;
    size_t n = 0;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v <= 0)
        return 0;
    while (*end == ' ')
        end++;
    for (; end[n] && n < sizeof(unit) - 1; n++)
        unit[n] = (char)(end[n] >= 'A' && end[n] <= 'Z' ? end[n] + 32 : end[n]);
    unit[n] = '\0';
    if (end[n] != '\0')
        return 0;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(unit, units[i].unit) == 0 && v * units[i].mult < 1e18)
            return (unsigned long long)(v * units[i].mult);
    return 0;
}

static uint32_t job_procs(const tgs_launcher_opts *o)
{
    return o->job.processes ? o->job.processes : 1;
}

/* The #SBATCH lines. */
static void script_header(sbuf *b, const tgs_launcher_opts *o,
                          unsigned long long mem)
{
    const tgs_job_opts *j = &o->job;
    const char *name = j->name ? j->name : "taskgrid-worker";

    sb_printf(b, "#!/usr/bin/env bash\n");
    sb_printf(b, "#SBATCH -J %s\n", name);
    if (j->log_dir) {
        sb_printf(b, "#SBATCH -o %s/%s-%%j.out\n", j->log_dir, name);
        sb_printf(b, "#SBATCH -e %s/%s-%%j.err\n", j->log_dir, name);
    }
    if (j->queue)
        sb_printf(b, "#SBATCH -p %s\n", j->queue);
    if (j->account)
        sb_printf(b, "#SBATCH -A %s\n", j->account);
    sb_printf(b, "#SBATCH -n 1\n");
    sb_printf(b, "#SBATCH --cpus-per-task=%u\n", j->cores ? j->cores : 1);
    if (mem)
        sb_printf(b, "#SBATCH --mem=%lluM\n", (mem + 1048575) / 1048576);
    if (j->walltime)
        sb_printf(b, "#SBATCH -t %s\n", j->walltime);
    for (size_t i = 0; i < j->ndirectives; i++)
        sb_printf(b, "#SBATCH %s\n", j->directives[i]);
}

/*
 * The job script for unit `unit` (NULL: the printed form, which takes
 * the unit from $TASKGRID_UNIT if set). Workers get TASKGRID_LAUNCH_ID
 * UNIT/K and the name slurm-JOBID-K; one worker execs, several run in
 * the background and the script waits for them, so the job ends when
 * its last worker does (each drained and retired one by one).
 */
static int build_script(const tgs_launcher *l, const char *unit, sbuf *b)
{
    const tgs_launcher_opts *o = tgs__launch_opts(l);
    const tgs_job_opts *j = &o->job;
    unsigned long long mem = 0;
    uint32_t procs = job_procs(o);
    const char *const *args;
    size_t nargs;
    char membuf[32] = "";

    if (j->memory && (mem = parse_bytes(j->memory)) == 0)
        return tg__error_set(TG_EINVAL,
                             "--job-memory expects a size such as 4GiB or "
                             "500MB, not '%s'",
                             j->memory);
    /* Each worker's share of the job's memory, unless given. */
    if (mem && o->memory_limit == NULL)
        snprintf(membuf, sizeof(membuf), "%llu", mem / procs);
    script_header(b, o, mem);
    sb_printf(b, "\n");
    for (size_t i = 0; i < j->nprologue; i++)
        sb_printf(b, "%s\n", j->prologue[i]);
    if (unit) {
        char q[2 * TGS_UNIT_ID_MAX + 8] = "";
        if (!tgs__shell_quote(q, sizeof(q), unit))
            return tg__error_set(TG_EINVAL, "unit id too long");
        sb_printf(b, "TASKGRID_UNIT=%s\n", q);
    } else {
        sb_printf(b, "TASKGRID_UNIT=\"${TASKGRID_UNIT:-manual-$SLURM_JOB_ID}\""
                     "\n");
    }
    args = tgs__worker_args(l, &nargs);
    for (uint32_t k = 0; k < procs; k++) {
        sb_printf(b, "TASKGRID_LAUNCH_ID=\"$TASKGRID_UNIT/%u\"%s", k,
                  procs == 1 ? " exec" : "");
        if (o->worker_cmd)
            sb_printf(b, " %s", o->worker_cmd);
        else
            sb_word(b, o->worker_bin);
        for (size_t i = 0; i < nargs; i++)
            sb_word(b, args[i]);
        if (membuf[0])
            sb_printf(b, " --memory-limit %s", membuf);
        sb_printf(b, " --name \"slurm-$SLURM_JOB_ID-%u\"%s\n", k,
                  procs == 1 ? "" : " &");
    }
    if (procs > 1)
        sb_printf(b, "wait\n");
    if (b->full)
        return tg__error_set(TG_EINVAL,
                             "the job script is longer than %d "
                             "bytes",
                             SCRIPT_MAX);
    return 0;
}

static int slurm_script(const tgs_launcher *l, FILE *out)
{
    sbuf b = {0};
    int rc;

    if ((b.p = malloc(SCRIPT_MAX)) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    b.cap = SCRIPT_MAX;
    b.p[0] = '\0';
    rc = build_script(l, NULL, &b);
    if (rc == 0)
        fputs(b.p, out);
    free(b.p);
    return rc;
}

/* ---- start-up ---- */

static int find_tool(const tgs_job_opts *j, const char *name, char *path,
                     size_t len)
{
    if (j->bin_dir) {
        snprintf(path, len, "%s/%s", j->bin_dir, name);
        if (access(path, X_OK) != 0)
            return tg__error_set(TG_ENOTFOUND,
                                 "--launcher slurm needs %s, and %s is not "
                                 "there (--slurm-bin-dir %s): %s",
                                 name, path, j->bin_dir, strerror(errno));
        return 0;
    }
    if (tgs_proc_find(name, path, len) != 0)
        return tg__error_set(TG_ENOTFOUND,
                             "--launcher slurm needs %s: %s; install "
                             "Slurm's client commands or give "
                             "--slurm-bin-dir",
                             name, tg_error_last());
    return 0;
}

static int slurm_init(tgs_launcher *l, const tgs_launcher_opts *o, void **impl)
{
    slurm *b = calloc(1, sizeof(*b));
    sbuf sb = {0};
    int rc;

    if (b == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    b->l = l;
    b->poll_ms = o->job.poll_ms ? o->job.poll_ms : DEFAULT_POLL_MS;
    rc = find_tool(&o->job, "sbatch", b->sbatch, sizeof(b->sbatch));
    if (rc == 0)
        rc = find_tool(&o->job, "scancel", b->scancel, sizeof(b->scancel));
    if (rc == 0)
        rc = find_tool(&o->job, "squeue", b->squeue, sizeof(b->squeue));
    /* A script that cannot be made fails now, not at every start. */
    if (rc == 0 && (sb.p = malloc(SCRIPT_MAX)) != NULL) {
        sb.cap = SCRIPT_MAX;
        rc = build_script(l, "check", &sb);
        free(sb.p);
    }
    if (rc != 0) {
        free(b);
        return rc;
    }
    *impl = b;
    return 0;
}

static uint32_t slurm_slots(void *impl)
{
    slurm *b = impl;

    return job_procs(tgs__launch_opts(b->l));
}

/* ---- units ---- */

static int slurm_start(void *impl, tgs_unit *u, int64_t now_ms)
{
    slurm *b = impl;
    const char *argv[] = {b->sbatch, "--parsable", NULL};
    sbuf sb = {0};
    sjob *j = calloc(1, sizeof(*j));
    int rc;

    if (j == NULL || (sb.p = malloc(SCRIPT_MAX)) == NULL) {
        free(j);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    sb.cap = SCRIPT_MAX;
    rc = build_script(b->l, u->id, &sb);
    if (rc == 0)
        rc = tgs_proc_start(&j->submit, argv, NULL, sb.p, TGS_PROC_CAPTURE);
    free(sb.p);
    if (rc != 0) {
        free(j);
        return rc;
    }
    j->submitted_ms = now_ms; /* until sbatch answers: its start */
    u->data = j;
    snprintf(u->where, sizeof(u->where), "slurm job (submitting)");
    return 0;
}

/* The first line of `text`, without trailing space, at most 400 bytes. */
static void first_line(const char *text, char *out, size_t len)
{
    size_t n = strcspn(text, "\n");

    if (n >= len)
        n = len - 1;
    memcpy(out, text, n);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\r'))
        n--;
    out[n] = '\0';
}

static void cancel(slurm *b, const char *jobid)
{
    const char *argv[] = {b->scancel, jobid, NULL};
    tgs_proc *p;

    if (tg__array_grow(&b->chores, &b->capchores, b->nchores + 1,
                       sizeof(*b->chores)) != TG_OK ||
        tgs_proc_start(&p, argv, NULL, NULL, TGS_PROC_CAPTURE) != 0) {
        TG_LOG_ERROR("cannot run scancel %s: %s", jobid, tg_error_last());
        return;
    }
    b->chores[b->nchores++] = p;
}

/* sbatch answered (or took too long) for `u`. False if `u` ended. */
static bool submit_done(slurm *b, tgs_unit *u, int64_t now_ms)
{
    sjob *j = u->data;
    char line[400], why[600];
    int st;
    size_t n;

    if (!tgs_proc_poll(j->submit, &st)) {
        if (now_ms - j->submitted_ms < SUBMIT_TIMEOUT_MS)
            return true;
        tgs_proc_free(j->submit);
        j->submit = NULL;
        tgs__unit_ended(b->l, u,
                        "sbatch did not answer within 60 s (is slurmctld "
                        "up?)");
        return false;
    }
    first_line(tgs_proc_out(j->submit), line, sizeof(line));
    n = strspn(line, "0123456789");
    if (st != 0 || n == 0 || n >= sizeof(j->jobid) ||
        (line[n] != '\0' && line[n] != ';')) {
        char err[400], desc[64];
        first_line(tgs_proc_err(j->submit), err, sizeof(err));
        snprintf(why, sizeof(why), "sbatch refused the job (%s): %s",
                 tgs_proc_describe(st, desc, sizeof(desc)),
                 err[0] ? err : line);
        tgs_proc_free(j->submit);
        j->submit = NULL;
        tgs__unit_ended(b->l, u, why);
        return false;
    }
    memcpy(j->jobid, line, n);
    j->jobid[n] = '\0';
    tgs_proc_free(j->submit);
    j->submit = NULL;
    j->submitted_ms = now_ms;
    snprintf(why, sizeof(why), "slurm job %s", j->jobid);
    tgs__unit_state(b->l, u, "pending", why);
    if (j->cancel_wanted)
        cancel(b, j->jobid);
    return true;
}

static void start_query(slurm *b, int64_t now_ms)
{
    const tgs_launcher_opts *o = tgs__launch_opts(b->l);
    const char *argv[] = {b->squeue,
                          "-h",
                          "--me",
                          "-n",
                          o->job.name ? o->job.name : "taskgrid-worker",
                          "-o",
                          "%i|%T|%r",
                          NULL};

    if (tgs_proc_start(&b->query, argv, NULL, NULL, TGS_PROC_CAPTURE) != 0) {
        TG_LOG_WARN("cannot run squeue: %s", tg_error_last());
        b->query = NULL;
        return;
    }
    b->query_ms = now_ms;
}

/* squeue's line for job `id` in `out`, as "STATE|REASON"; NULL if none. */
static const char *find_job(const char *out, const char *id, char *line,
                            size_t len)
{
    size_t n = strlen(id);

    for (const char *p = out; *p;) {
        size_t m = strcspn(p, "\n");
        if (m > n && strncmp(p, id, n) == 0 && p[n] == '|') {
            size_t k = m - n - 1 < len - 1 ? m - n - 1 : len - 1;
            memcpy(line, p + n + 1, k);
            line[k] = '\0';
            return line;
        }
        p += m + (p[m] == '\n');
    }
    return NULL;
}

static bool finished_state(const char *state)
{
    static const char *const running[] = {
        "PENDING",  "RUNNING",  "CONFIGURING", "COMPLETING", "SUSPENDED",
        "REQUEUED", "RESIZING", "SIGNALING",   "STAGE_OUT",  NULL};

    for (size_t i = 0; running[i]; i++)
        if (strcmp(state, running[i]) == 0)
            return false;
    return true;
}

/* One job in squeue's answer (started at query_ms). */
static void job_seen(slurm *b, tgs_unit *u, const char *out)
{
    sjob *j = u->data;
    char line[256], why[400];
    const char *found;
    char *bar;

    if (j->jobid[0] == '\0' || j->submitted_ms > b->query_ms)
        return; /* submitted after the query began */
    found = find_job(out, j->jobid, line, sizeof(line));
    if (found == NULL) {
        snprintf(why, sizeof(why), "slurm job %s left the queue (last %s)",
                 j->jobid, j->seen_state[0] ? j->seen_state : "not seen");
        tgs__unit_ended(b->l, u, why);
        return;
    }
    bar = strchr(line, '|');
    if (bar)
        *bar = '\0';
    snprintf(j->seen_state, sizeof(j->seen_state), "%.23s", line);
    if (finished_state(line)) {
        snprintf(why, sizeof(why), "slurm job %s %s%s%s", j->jobid, line,
                 bar && strcmp(bar + 1, "None") != 0 ? ": " : "",
                 bar && strcmp(bar + 1, "None") != 0 ? bar + 1 : "");
        tgs__unit_ended(b->l, u, why);
    } else if (strcmp(line, "PENDING") == 0) {
        tgs__unit_state(b->l, u, "pending", NULL);
    } else if (strcmp(line, "RUNNING") == 0 && !u->ever_seen) {
        tgs__unit_state(b->l, u, "running", NULL);
    }
}

static void query_done(slurm *b, int64_t now_ms)
{
    int st;

    if (!tgs_proc_poll(b->query, &st)) {
        if (now_ms - b->query_ms < QUERY_TIMEOUT_MS)
            return;
        TG_LOG_WARN("squeue did not answer within %d s; asking again later",
                    QUERY_TIMEOUT_MS / 1000);
    } else if (st != 0) {
        char err[400];
        first_line(tgs_proc_err(b->query), err, sizeof(err));
        TG_LOG_WARN("squeue failed: %s", err);
    } else {
        const char *out = tgs_proc_out(b->query);
        for (size_t i = tgs__unit_count(b->l); i-- > 0;)
            job_seen(b, tgs__unit_get(b->l, i), out);
    }
    tgs_proc_free(b->query);
    b->query = NULL;
    b->next_query_ms = now_ms + b->poll_ms;
}

static void reap_chores(slurm *b)
{
    for (size_t i = 0; i < b->nchores;) {
        int st;
        if (!tgs_proc_poll(b->chores[i], &st)) {
            i++;
            continue;
        }
        if (st != 0) {
            char err[400];
            first_line(tgs_proc_err(b->chores[i]), err, sizeof(err));
            TG_LOG_WARN("scancel failed: %s", err);
        }
        tgs_proc_free(b->chores[i]);
        b->chores[i] = b->chores[--b->nchores];
    }
}

static void slurm_poll(void *impl, int64_t now_ms)
{
    slurm *b = impl;
    bool any = false;

    for (size_t i = tgs__unit_count(b->l); i-- > 0;) {
        tgs_unit *u = tgs__unit_get(b->l, i);
        sjob *j = u->data;
        if (j->submit != NULL && !submit_done(b, u, now_ms))
            continue;
        any = any || j->jobid[0] != '\0';
    }
    if (b->query != NULL)
        query_done(b, now_ms);
    else if (any && now_ms >= b->next_query_ms)
        start_query(b, now_ms);
    reap_chores(b);
}

static void slurm_stop(void *impl, tgs_unit *u)
{
    slurm *b = impl;
    sjob *j = u->data;

    if (j->jobid[0])
        cancel(b, j->jobid);
    else
        j->cancel_wanted = true;
}

static void slurm_forget(void *impl, tgs_unit *u)
{
    sjob *j = u->data;

    (void)impl;
    if (j != NULL)
        tgs_proc_free(j->submit);
    free(j);
    u->data = NULL;
}

static void slurm_destroy(void *impl, int grace_ms)
{
    slurm *b = impl;
    size_t n = tgs__unit_count(b->l);
    int waited = 0;

    /* The front asked every unit to stop, so scancels are running: wait
     * for them, at most grace_ms in all. A submission still under way is
     * cut short. */
    for (size_t i = 0; i < n; i++) {
        sjob *j = tgs__unit_get(b->l, i)->data;
        if (j->submit != NULL)
            tgs_proc_kill(j->submit, SIGTERM);
    }
    for (size_t i = 0; i < b->nchores; i++) {
        int left = grace_ms - waited;
        int64_t t0 = tg__now_ms();
        tgs_proc_wait(b->chores[i], left > 0 ? left : 0, NULL);
        waited += (int)(tg__now_ms() - t0);
    }
    for (size_t i = 0; i < n; i++)
        slurm_forget(b, tgs__unit_get(b->l, i));
    for (size_t i = 0; i < b->nchores; i++)
        tgs_proc_free(b->chores[i]);
    free(b->chores);
    tgs_proc_free(b->query);
    free(b);
}

const tgs_launch_ops tgs__launch_slurm = {
    .kind = "slurm",
    .init = slurm_init,
    .slots = slurm_slots,
    .start = slurm_start,
    .poll = slurm_poll,
    .stop = slurm_stop,
    .forget = slurm_forget,
    .destroy = slurm_destroy,
    .script = slurm_script,
};
