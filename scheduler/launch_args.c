/* SPDX-License-Identifier: Apache-2.0
 *
 * launch_args.c: the slurm and ssh launchers' command-line options (see
 * launch_args.h). Values are checked here, once, with messages naming the
 * option, so a bad one fails at start-up and not in every job.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch_args.h"

const char tgs_launch_usage[] =
    "Launchers beyond this host (--launcher slurm, --launcher ssh):\n"
    "  --worker-command CMD    shell command running a worker there, before\n"
    "                          its arguments (default: --worker-bin's path,\n"
    "                          which must then exist there); e.g.\n"
    "                          '/opt/venv/bin/python -m taskgrid.worker'\n"
    "  --worker-extra-arg ARG  add ARG to each launched worker's arguments\n"
    "                          (repeatable; any launcher)\n"
    "  --worker-death-timeout S  launched workers exit after S seconds\n"
    "                          without a scheduler (default 60 for slurm,\n"
    "                          0, never, otherwise: those die with it)\n"
    "  --contact-address A     the address launched workers connect to\n"
    "                          (default: --listen's; a wildcard host becomes\n"
    "                          the address on the route to each SSH host,\n"
    "                          or this host's name for batch jobs)\n"
    "  --job-cores N           CPUs per Slurm job (default 1)\n"
    "  --job-memory M          memory per job (e.g. 4GiB; default: the\n"
    "                          partition's)\n"
    "  --job-processes N       workers per job (default 1, at most 64); each\n"
    "                          has cores/processes threads unless --nthreads\n"
    "  --job-queue Q           partition (sbatch -p)\n"
    "  --job-account A         account to charge (sbatch -A)\n"
    "  --job-walltime T        time limit, e.g. 01:00:00 (sbatch -t)\n"
    "  --job-name NAME         job name (default taskgrid-worker)\n"
    "  --job-log-dir DIR       jobs' output files go to DIR\n"
    "  --job-directive LINE    an extra '#SBATCH LINE' (repeatable)\n"
    "  --job-prologue LINE     a shell line run before the workers\n"
    "                          (repeatable), e.g. 'module load python'\n"
    "  --job-poll-interval MS  how often squeue is asked (default 2000)\n"
    "  --slurm-bin-dir DIR     where sbatch, scancel and squeue are (default:\n"
    "                          PATH)\n"
    "  --print-job-script      print the job script and exit\n"
    "  --hosts H1,H2,...       SSH hosts the workers run on, spread evenly:\n"
    "                          one ssh client per worker, which stops when\n"
    "                          its ssh channel closes; a host whose workers\n"
    "                          never connect backs off (1 s doubling to 60 s)\n"
    "  --ssh PATH              the OpenSSH client (default: ssh in PATH)\n"
    "  --ssh-arg ARG           an argument for ssh before the host, e.g.\n"
    "                          -F or a -o option (repeatable)\n";

bool tgs_launch_cli_init(tgs_launch_cli *c, int argc)
{
    size_t n = (size_t)(argc > 0 ? argc : 1);

    memset(c, 0, sizeof(*c));
    c->extra = calloc(n, sizeof(char *));
    c->directives = calloc(n, sizeof(char *));
    c->prologue = calloc(n, sizeof(char *));
    c->ssh_args = calloc(n, sizeof(char *));
    return c->extra && c->directives && c->prologue && c->ssh_args;
}

void tgs_launch_cli_free(tgs_launch_cli *c)
{
    free(c->extra);
    free(c->directives);
    free(c->prologue);
    free(c->ssh_args);
    free(c->hosts);
    free(c->hosts_copy);
}

static int fail(char *err, size_t len, const char *msg, const char *arg)
{
    snprintf(err, len, "%s%s%s", msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static int number(const char *val, unsigned long long lo, unsigned long long hi,
                  unsigned long long *out)
{
    char *end;

    errno = 0;
    if (val[0] < '0' || val[0] > '9')
        return -1;
    *out = strtoull(val, &end, 10);
    return (errno || *end != '\0' || *out < lo || *out > hi) ? -1 : 0;
}

/* A value that goes into a job script line: no newline or NUL, so no
 * option can add a line of its own to the script. */
static bool one_line(const char *v)
{
    return strpbrk(v, "\n\r") == NULL;
}

/* HH:MM:SS, MM:SS, MM, D-HH, D-HH:MM or D-HH:MM:SS (sbatch -t). */
static bool walltime_ok(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || v[i] == ':' || v[i] == '-'))
            return false;
    return v[0] != ':' && v[0] != '-' && v[n - 1] != ':' && v[n - 1] != '-';
}

/* --hosts: comma-separated names or addresses, each a plain token. */
static int parse_hosts(tgs_launch_cli *c, tgs_server_opts *o, const char *val,
                       char *err, size_t len)
{
    size_t n = 1;
    char *save = NULL;

    for (const char *p = val; *p; p++)
        n += *p == ',';
    free(c->hosts);
    free(c->hosts_copy);
    c->hosts = calloc(n, sizeof(char *));
    c->hosts_copy = strdup(val);
    if (c->hosts == NULL || c->hosts_copy == NULL)
        return fail(err, len, "out of memory", NULL);
    o->ssh.nhosts = 0;
    for (char *h = strtok_r(c->hosts_copy, ",", &save); h;
         h = strtok_r(NULL, ",", &save)) {
        if (h[0] == '-' || strpbrk(h, " \t\n\r'\"\\;&|<>$`") != NULL ||
            strlen(h) > 253)
            return fail(err, len,
                        "--hosts expects names or addresses separated by "
                        "commas; not a host",
                        h);
        c->hosts[o->ssh.nhosts++] = h;
    }
    if (o->ssh.nhosts == 0)
        return fail(err, len, "--hosts expects at least one host", val);
    o->ssh.hosts = c->hosts;
    return 0;
}

static int job_number(tgs_server_opts *o, const char *a, const char *val,
                      char *err, size_t len)
{
    unsigned long long v;

    if (strcmp(a, "--job-cores") == 0) {
        if (number(val, 1, 4096, &v))
            return fail(err, len, "--job-cores expects 1 to 4096", val);
        o->job.cores = (uint32_t)v;
    } else if (strcmp(a, "--job-processes") == 0) {
        if (number(val, 1, 64, &v))
            return fail(err, len, "--job-processes expects 1 to 64", val);
        o->job.processes = (uint32_t)v;
    } else if (strcmp(a, "--job-poll-interval") == 0) {
        if (number(val, 100, 600000, &v))
            return fail(err, len,
                        "--job-poll-interval expects 100 to 600000 ms", val);
        o->job.poll_ms = (int64_t)v;
    } else {
        return -1;
    }
    return 0;
}

static int job_string(tgs_launch_cli *c, tgs_server_opts *o, const char *a,
                      const char *val, char *err, size_t len)
{
    static const struct {
        const char *flag;
        size_t offset;
    } strs[] = {
        {"--job-memory", offsetof(tgs_server_opts, job.memory)},
        {"--job-queue", offsetof(tgs_server_opts, job.queue)},
        {"--job-account", offsetof(tgs_server_opts, job.account)},
        {"--job-walltime", offsetof(tgs_server_opts, job.walltime)},
        {"--job-name", offsetof(tgs_server_opts, job.name)},
        {"--job-log-dir", offsetof(tgs_server_opts, job.log_dir)},
        {"--slurm-bin-dir", offsetof(tgs_server_opts, job.bin_dir)},
        {"--worker-command", offsetof(tgs_server_opts, worker_cmd)},
        {"--contact-address", offsetof(tgs_server_opts, contact_address)},
        {"--worker-death-timeout",
         offsetof(tgs_server_opts, worker_death_timeout)},
        {"--ssh", offsetof(tgs_server_opts, ssh.ssh)},
    };

    for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++) {
        if (strcmp(a, strs[k].flag) != 0)
            continue;
        if (!one_line(val) || val[0] == '\0')
            return fail(err, len, "expects one non-empty line", a);
        if (strcmp(a, "--worker-death-timeout") == 0 &&
            strspn(val, "0123456789") != strlen(val))
            return fail(err, len,
                        "--worker-death-timeout expects whole seconds (0: "
                        "none)",
                        val);
        if (strcmp(a, "--job-walltime") == 0 && !walltime_ok(val))
            return fail(err, len,
                        "--job-walltime expects a time such as 01:30:00 "
                        "or 2-00:00:00",
                        val);
        memcpy((char *)o + strs[k].offset, &val, sizeof(val));
        return 0;
    }
    if (strcmp(a, "--job-directive") == 0 || strcmp(a, "--job-prologue") == 0) {
        bool dir = a[6] == 'd';
        if (!one_line(val))
            return fail(err, len, "expects one line (no newline)", a);
        if (dir) {
            c->directives[o->job.ndirectives++] = val;
            o->job.directives = c->directives;
        } else {
            c->prologue[o->job.nprologue++] = val;
            o->job.prologue = c->prologue;
        }
        return 0;
    }
    if (strcmp(a, "--worker-extra-arg") == 0) {
        c->extra[o->nworker_extra_args++] = val;
        o->worker_extra_args = c->extra;
        return 0;
    }
    if (strcmp(a, "--ssh-arg") == 0) {
        c->ssh_args[o->ssh.nssh_args++] = val;
        o->ssh.ssh_args = c->ssh_args;
        return 0;
    }
    if (strcmp(a, "--hosts") == 0)
        return parse_hosts(c, o, val, err, len);
    return -1;
}

int tgs_launch_arg(tgs_launch_cli *c, tgs_server_opts *o, const char *a,
                   const char *val, char *err, size_t errlen)
{
    int rc;

    if (strcmp(a, "--print-job-script") == 0) {
        c->print_job_script = true;
        return 1;
    }
    if (strncmp(a, "--job-", 6) != 0 && strncmp(a, "--ssh", 5) != 0 &&
        strcmp(a, "--hosts") != 0 && strcmp(a, "--worker-command") != 0 &&
        strcmp(a, "--worker-extra-arg") != 0 &&
        strcmp(a, "--worker-death-timeout") != 0 &&
        strcmp(a, "--contact-address") != 0 &&
        strcmp(a, "--slurm-bin-dir") != 0)
        return -1;
    if (val == NULL)
        return fail(err, errlen, "missing value for", a);
    rc = job_number(o, a, val, err, errlen);
    if (rc < 0)
        rc = job_string(c, o, a, val, err, errlen);
    return rc;
}

int tgs_launch_check(const tgs_launch_cli *c, const tgs_server_opts *o,
                     char *err, size_t errlen)
{
    const char *kind = o->launcher ? o->launcher : "local";
    bool slurm = strcmp(kind, "slurm") == 0, ssh = strcmp(kind, "ssh") == 0;

    if (strcmp(kind, "local") != 0 && strcmp(kind, "none") != 0 && !slurm &&
        !ssh)
        return fail(err, errlen, "--launcher expects local, slurm, ssh or none",
                    kind);
    if (ssh && o->ssh.nhosts == 0)
        return fail(err, errlen,
                    "--launcher ssh needs --hosts H1,H2,... (the hosts "
                    "the workers run on)",
                    NULL);
    if (!ssh && (o->ssh.nhosts || o->ssh.ssh || o->ssh.nssh_args))
        return fail(err, errlen,
                    "--hosts, --ssh and --ssh-arg are options of "
                    "--launcher ssh",
                    NULL);
    if (!slurm &&
        (o->job.cores || o->job.memory || o->job.processes || o->job.queue ||
         o->job.account || o->job.walltime || o->job.name || o->job.log_dir ||
         o->job.ndirectives || o->job.nprologue || o->job.bin_dir ||
         o->job.poll_ms || c->print_job_script))
        return fail(err, errlen,
                    "--job-*, --slurm-bin-dir and --print-job-script are "
                    "options of --launcher slurm",
                    NULL);
    if (!slurm && !ssh && (o->worker_cmd || o->contact_address))
        return fail(err, errlen,
                    "--worker-command and --contact-address are options "
                    "of --launcher slurm and ssh",
                    NULL);
    return -1;
}
