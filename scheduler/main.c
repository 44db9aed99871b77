/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c: the taskgrid-scheduler command line. Parses flags into
 * tgs_server_opts, loads and checks the TLS files (util/tls.h, the same
 * checks and messages as clients and workers), and runs the daemon
 * (server.c). With --exit-with-parent-fd, a thread watches a pipe from
 * the parent and stops the daemon (as SIGTERM does) when the parent is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch_args.h"
#include "methods.h"
#include "server.h"
#include "transport/transport.h"
#include "util/lifeline.h"
#include "util/log.h"
#include "util/tls.h"

static const char usage[] =
    "usage: taskgrid-scheduler [options]\n"
    "\n"
    "  --listen ADDRESS        tcp://HOST:PORT or tls://HOST:PORT to serve on\n"
    "                          (default tcp://0.0.0.0:8786; port 0 picks one)\n"
    "  --launcher KIND         how Scale starts workers: local (default:\n"
    "                          taskgrid-worker processes on this host),\n"
    "                          slurm (batch jobs), ssh (processes on\n"
    "                          --hosts), none (workers join by themselves)\n"
    "  --workers N             start N local workers at once (default 0)\n"
    "  --nthreads N            threads per launched worker (default: cores)\n"
    "  --worker-bin PATH       taskgrid-worker to launch (default: next to\n"
    "                          this program, then PATH)\n"
    "  --worker-resources R    --resources for launched workers (GPU=1,...)\n"
    "  --worker-preload LIB    --preload for launched workers (repeatable)\n"
    "  --worker-memory-limit M --memory-limit for launched workers (BYTES,\n"
    "                          e.g. 2GiB, 'auto' or 'none')\n"
    "  --no-worker-timeout MS  fail tasks no worker can run after MS\n"
    "                          (default 0: wait, and Status says why)\n"
    "  --allowed-failures N    fail a task after it was running on N workers\n"
    "                          that died (default 3)\n"
    "  --retry-backoff MS      delay before a task's first retry, doubling\n"
    "                          each attempt (default 100; 0: retry at once)\n"
    "  --retry-backoff-max MS  longest delay between retries (default 5000)\n"
    "  --max-message BYTES     largest gRPC message accepted (default 64 MiB)\n"
    "  --inline-limit BYTES    results larger than this stay on the worker\n"
    "                          that made them, if it has a data service, and\n"
    "                          go peer to peer (default 65536; 0: every\n"
    "                          result travels inline through the scheduler;\n"
    "                          below --max-message, whose half it is by\n"
    "                          default when that is smaller)\n"
    "  --transfer-bandwidth B  bytes per second assumed between workers\n"
    "                          (default 100e6): a task with inputs held on\n"
    "                          workers goes where it is estimated to start\n"
    "                          first, waiting for a busy worker that holds\n"
    "                          them when moving them would take longer\n"
    "  --relay-memory BYTES    bytes all Gathers relaying held results\n"
    "                          through the scheduler may hold at once\n"
    "                          (default 64 MiB; at least 1 MiB)\n"
    "  --max-nesting-depth N   deepest nesting of tasks submitted from inside\n"
    "                          tasks (ancestors: parent, its parent, ...);\n"
    "                          a deeper one fails at once with\n"
    "                          tg.NestingTooDeep (default 100; 0: no limit)\n"
    "  --tls-ca FILE --tls-cert FILE --tls-key FILE\n"
    "                          mutual TLS (with a tls:// --listen address):\n"
    "                          the cluster CA, and this scheduler's\n"
    "                          certificate and key (make them with\n"
    "                          taskgrid-certs)\n"
    "  --worker-tls-cert FILE --worker-tls-key FILE\n"
    "                          certificate (role worker) and key for the\n"
    "                          workers the local launcher starts\n"
    "  --worker-tls-ca FILE    CA for those workers (default: --tls-ca)\n"
    "  --dashboard-address A   serve a dashboard page and Prometheus /metrics\n"
    "                          over HTTP on A (HOST:PORT, :PORT or PORT; port\n"
    "                          0 picks one; no host: --listen's host); HTTPS\n"
    "                          with the TLS files, the page for role admin\n"
    "                          only. Default: off\n"
    "  --dashboard-fallback    if that port is taken, serve on a free one\n"
    "  --log-level LEVEL       error, warn, info (default) or debug\n"
    "  --exit-with-parent-fd N stop (and stop the workers) when descriptor N,\n"
    "                          the read end of a pipe whose write end only\n"
    "                          the parent process holds, reaches end of\n"
    "                          file: the parent exited, however it ended\n"
    "  --help                  this text\n"
    "\n"
    "%s"
    "\n"
    "On start it prints 'taskgrid-scheduler listening on ADDRESS' on stdout,\n"
    "then, with --dashboard-address, 'taskgrid-scheduler dashboard at URL'.\n";

static int bad(const char *msg, const char *arg)
{
    fprintf(stderr, "taskgrid-scheduler: %s%s%s\n%s", msg, arg ? ": " : "",
            arg ? arg : "", "try 'taskgrid-scheduler --help'\n");
    return 2;
}

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 10);
    return (errno || end == s || *end != '\0' || s[0] == '-') ? -1 : 0;
}

/* Everything the command line gives, before it becomes tgs_server_opts. */
typedef struct cli {
    tgs_server_opts o;
    const char **preload;
    const char *tls[3];  /* --tls-ca, --tls-cert, --tls-key */
    const char *wtls[3]; /* the same for launched workers */
    char wpath[3][PATH_MAX];
    tg__tls own;
    tgs_launch_cli launch; /* the slurm and ssh launchers' options */
    int parent_fd;         /* --exit-with-parent-fd, -1 if none */
    bool inline_given;     /* --inline-limit was given */
} cli;

/* Is `a` one of the NULL-terminated `flags`. */
static bool is_one_of(const char *a, const char *const *flags)
{
    for (; *flags != NULL; flags++)
        if (strcmp(a, *flags) == 0)
            return true;
    return false;
}

/* Options that take a number: parse `val` into the option's field, or
 * print the option's error. Returns 0, or 2 (usage error); -1 if `a` is
 * not a number option. */
static int parse_number(cli *c, const char *a, const char *val)
{
    static const char *const flags[] = {
        "--workers",
        "--nthreads",
        "--no-worker-timeout",
        "--allowed-failures",
        "--retry-backoff",
        "--retry-backoff-max",
        "--max-message",
        "--inline-limit",
        "--relay-memory",
        "--max-nesting-depth",
        NULL,
    };
    tgs_server_opts *o = &c->o;
    unsigned long long v;

    if (!is_one_of(a, flags))
        return -1;
    if (val == NULL)
        return bad("missing value for", a);
    if (strcmp(a, "--workers") == 0) {
        if (parse_u64(val, &v) || v > 4096)
            return bad("--workers expects a number up to 4096", val);
        o->workers = (uint32_t)v;
    } else if (strcmp(a, "--nthreads") == 0) {
        if (parse_u64(val, &v) || v == 0 || v > 4096)
            return bad("--nthreads expects a number from 1 to 4096", val);
        o->worker_nthreads = (uint32_t)v;
    } else if (strcmp(a, "--no-worker-timeout") == 0) {
        if (parse_u64(val, &v) || v > (1ull << 40))
            return bad("--no-worker-timeout expects milliseconds", val);
        o->no_worker_timeout_ms = (int64_t)v;
    } else if (strcmp(a, "--allowed-failures") == 0) {
        if (parse_u64(val, &v) || v == 0 || v > 1000)
            return bad("--allowed-failures expects 1 to 1000", val);
        o->allowed_failures = (uint32_t)v;
    } else if (strcmp(a, "--retry-backoff") == 0) {
        if (parse_u64(val, &v) || v > 3600000)
            return bad("--retry-backoff expects 0 to 3600000 ms", val);
        o->retry_backoff_ms = v == 0 ? -1 : (int64_t)v;
    } else if (strcmp(a, "--retry-backoff-max") == 0) {
        if (parse_u64(val, &v) || v == 0 || v > 3600000)
            return bad("--retry-backoff-max expects 1 to 3600000 ms", val);
        o->retry_backoff_max_ms = (int64_t)v;
    } else if (strcmp(a, "--max-message") == 0) {
        if (parse_u64(val, &v) || v < 1024 || v > 0x7fffffffull)
            return bad("--max-message expects 1024 to 2147483647 bytes", val);
        o->max_message = (size_t)v;
    } else if (strcmp(a, "--inline-limit") == 0) {
        if (parse_u64(val, &v) || v > 0x7fffffffull)
            return bad("--inline-limit expects 0 to 2147483647 bytes", val);
        o->inline_limit = v;
        c->inline_given = true;
    } else if (strcmp(a, "--relay-memory") == 0) {
        if (parse_u64(val, &v) || v < (1u << 20) || v > (1ull << 40))
            return bad("--relay-memory expects 1048576 to 2^40 bytes", val);
        o->relay_memory = v;
    } else if (strcmp(a, "--max-nesting-depth") == 0) {
        if (parse_u64(val, &v) || v > 1000000)
            return bad("--max-nesting-depth expects 0 (no limit) to 1000000",
                       val);
        o->max_nesting_depth = (uint32_t)v;
    }
    return 0;
}

/* --transfer-bandwidth B: bytes per second, a positive number (1e8,
 * 250000000). -1 if `a` is another option. */
static int parse_bandwidth(cli *c, const char *a, const char *val)
{
    char *end;
    double v;

    if (strcmp(a, "--transfer-bandwidth") != 0)
        return -1;
    if (val == NULL)
        return bad("missing value for", a);
    errno = 0;
    v = strtod(val, &end);
    if (errno || end == val || *end != '\0' || !(v >= 1) || v > 1e15)
        return bad("--transfer-bandwidth expects bytes per second, from 1 "
                   "to 1e15",
                   val);
    c->o.transfer_bandwidth = v;
    return 0;
}

/* An inline result travels in one message with others: the limit must
 * stay below the message size. The default yields to a small
 * --max-message (half of it); a limit given is checked. Returns -1 to go
 * on, or 2. */
static int check_inline_limit(cli *c)
{
    size_t max = c->o.max_message ? c->o.max_message : TG__RPC_DEFAULT_MAX_MSG;
    char msg[200];

    if (c->o.inline_limit < max)
        return -1;
    if (!c->inline_given) {
        c->o.inline_limit = max / 2;
        return -1;
    }
    snprintf(msg, sizeof(msg),
             "--inline-limit (%llu bytes) must be below the message limit "
             "(--max-message, %zu bytes): inline results travel inside one "
             "message",
             (unsigned long long)c->o.inline_limit, max);
    return bad(msg, NULL);
}

/* Options that take a string; -1 if `a` is not one of them. */
static int parse_string(cli *c, const char *a, const char *val)
{
    static const struct {
        const char *flag;
        size_t offset; /* of the const char * field in cli */
    } strs[] = {
        {"--listen", offsetof(cli, o.listen)},
        {"--launcher", offsetof(cli, o.launcher)},
        {"--worker-bin", offsetof(cli, o.worker_bin)},
        {"--worker-resources", offsetof(cli, o.worker_resources)},
        {"--worker-log-level", offsetof(cli, o.worker_log_level)},
        {"--worker-memory-limit", offsetof(cli, o.worker_memory_limit)},
        {"--tls-ca", offsetof(cli, tls[0])},
        {"--tls-cert", offsetof(cli, tls[1])},
        {"--tls-key", offsetof(cli, tls[2])},
        {"--worker-tls-ca", offsetof(cli, wtls[0])},
        {"--worker-tls-cert", offsetof(cli, wtls[1])},
        {"--worker-tls-key", offsetof(cli, wtls[2])},
        {"--dashboard-address", offsetof(cli, o.dashboard_address)},
    };

    static const char *const others[] = {"--worker-preload", "--log-level",
                                         NULL};
    size_t k, n = sizeof(strs) / sizeof(strs[0]);

    for (k = 0; k < n && strcmp(a, strs[k].flag) != 0; k++)
        ;
    if (k == n && !is_one_of(a, others))
        return -1;
    if (val == NULL)
        return bad("missing value for", a);
    if (k < n) {
        memcpy((char *)c + strs[k].offset, &val, sizeof(val));
        return 0;
    }
    if (strcmp(a, "--worker-preload") == 0) {
        c->preload[c->o.nworker_preload++] = val;
        return 0;
    }
    /* --log-level */
    if (tg__log_set_level(val) < 0)
        return bad("--log-level expects error, warn, info or debug", val);
    return 0;
}

/* --exit-with-parent-fd N: an open descriptor, kept from the workers we
 * launch. -1 if `a` is another option. */
static int parse_parent_fd(cli *c, const char *a, const char *val)
{
    unsigned long long v;

    if (strcmp(a, "--exit-with-parent-fd") != 0)
        return -1;
    if (val == NULL)
        return bad("missing value for", a);
    if (parse_u64(val, &v) || v > INT_MAX)
        return bad("--exit-with-parent-fd expects a file descriptor", val);
    if (fcntl((int)v, F_SETFD, FD_CLOEXEC) < 0)
        return bad("--exit-with-parent-fd: not an open file descriptor", val);
    c->parent_fd = (int)v;
    return 0;
}

static int start_parent_watch(int fd)
{
    /* At end of file it stops the daemon exactly as SIGTERM does: it
     * stops its workers and exits. */
    int e = tg__lifeline_watch(fd);

    if (e != 0) {
        fprintf(stderr,
                "taskgrid-scheduler: cannot watch the parent process: %s\n",
                strerror(e));
        return 1;
    }
    return -1;
}

/* Parse every flag. Returns -1 to go on, or the exit code (0 after
 * --help, 2 for a usage error). */
static int parse_args(cli *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;

        char err[512];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf(usage, tgs_launch_usage);
            return 0;
        }
        if (strcmp(a, "--dashboard-fallback") == 0) { /* takes no value */
            c->o.dashboard_fallback = true;
            continue;
        }
        rc = tgs_launch_arg(&c->launch, &c->o, a, val, err, sizeof(err));
        if (rc == 1)
            continue; /* a flag */
        if (rc == 2)
            return bad(err, NULL);
        if (rc < 0)
            rc = parse_parent_fd(c, a, val);
        if (rc < 0)
            rc = parse_bandwidth(c, a, val);
        if (rc < 0)
            rc = parse_number(c, a, val);
        if (rc < 0)
            rc = parse_string(c, a, val);
        if (rc < 0)
            return bad("unknown option", a);
        if (rc != 0)
            return rc;
        i++;
    }
    c->o.worker_preload = c->preload;
    {
        char err[512];
        if (tgs_launch_check(&c->launch, &c->o, err, sizeof(err)) == 2)
            return bad(err, NULL);
    }
    return -1;
}

/* The scheduler's own TLS material (--tls-*), loaded and checked. Returns
 * -1 to go on, or the exit code. */
static int load_own_tls(cli *c)
{
    static const char *what[3] = {"--tls-ca", "--tls-cert", "--tls-key"};
    tg_security sec = TG_SECURITY_INIT;
    tgs_server_opts *o = &c->o;

    if (!(c->tls[0] || c->tls[1] || c->tls[2])) {
        if (strncmp(o->listen, "tls://", 6) == 0)
            return bad("a tls:// address needs --tls-ca, --tls-cert and "
                       "--tls-key",
                       o->listen);
        return -1;
    }
    for (int k = 0; k < 3; k++)
        if (c->tls[k] == NULL)
            return bad("mutual TLS needs --tls-ca, --tls-cert and "
                       "--tls-key; missing",
                       what[k]);
    if (strncmp(o->listen, "tls://", 6) != 0)
        return bad("TLS files were given but --listen is not tls://",
                   o->listen);
    sec.ca_file = c->tls[0];
    sec.cert_file = c->tls[1];
    sec.key_file = c->tls[2];
    if (tg__tls_load(&c->own, &sec, "scheduler") != TG_OK) {
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
        return 2;
    }
    o->ca_pem = c->own.ca_pem;
    o->cert_pem = c->own.cert_pem;
    o->key_pem = c->own.key_pem;
    return -1;
}

/* The launched workers' TLS material (--worker-tls-*): checked now, as
 * the workers would check it at their start, so a bad file fails here,
 * once, and not in every worker. Returns -1 to go on, or the exit code. */
static int check_worker_tls(cli *c)
{
    tg_security sec = TG_SECURITY_INIT;
    tg__tls wk;

    if (!(c->wtls[0] || c->wtls[1] || c->wtls[2]))
        return -1;
    if (c->o.ca_pem == NULL)
        return bad("--worker-tls-* options need a TLS scheduler "
                   "(tls:// --listen with --tls-*)",
                   NULL);
    if (c->wtls[1] == NULL || c->wtls[2] == NULL)
        return bad("--worker-tls-cert and --worker-tls-key go together", NULL);
    if (c->wtls[0] == NULL)
        c->wtls[0] = c->tls[0];
    memset(&wk, 0, sizeof(wk));
    sec.ca_file = c->wtls[0];
    sec.cert_file = c->wtls[1];
    sec.key_file = c->wtls[2];
    if (tg__tls_load(&wk, &sec, "worker") != TG_OK) {
        fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
        return 2;
    }
    tg__tls_clear(&wk);
    /* Workers are started from this process's directory, but say where
     * the files are without depending on it. */
    for (int k = 0; k < 3; k++)
        if (realpath(c->wtls[k], c->wpath[k]) == NULL)
            snprintf(c->wpath[k], sizeof(c->wpath[k]), "%s", c->wtls[k]);
    c->o.worker_tls_ca = c->wpath[0];
    c->o.worker_tls_cert = c->wpath[1];
    c->o.worker_tls_key = c->wpath[2];
    return -1;
}

int main(int argc, char **argv)
{
    /* Static: kept reachable when a usage error returns early. */
    static cli c;
    int rc;

#if defined(__GLIBC__)
    /* Message buffers of about 1 MiB come and go at the rate of the
     * relays (relay.c). glibc's threshold for serving an allocation with
     * its own mapping grows with every such buffer freed (up to 32 MiB),
     * after which they come from the heap and stay resident once freed;
     * and each of gRPC's threads gets an arena of its own that keeps
     * what it freed. A fixed threshold and one arena return them to the
     * system (the scheduler's own work is on one thread): 50-60 MB of
     * resident memory instead of 70-100 MB with three slow clients
     * gathering 1.5 GB (bindings/python/tests/test_gather_relay.py). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_ARENA_MAX, 1);
#endif
    c.preload = calloc((size_t)argc, sizeof(char *));
    if (c.preload == NULL || !tgs_launch_cli_init(&c.launch, argc))
        return 1;
    c.o.listen = "tcp://0.0.0.0:8786";
    c.o.launcher = "local";
    c.o.inline_limit = TG_PROTO_INLINE_LIMIT_DEFAULT;
    c.o.max_nesting_depth = TGS_MAX_NESTING_DEPTH_DEFAULT;
    c.parent_fd = -1;
    tg__log_set_component("scheduler");
    rc = parse_args(&c, argc, argv);
    if (rc < 0)
        rc = check_inline_limit(&c);
    if (rc < 0)
        rc = load_own_tls(&c);
    if (rc < 0)
        rc = check_worker_tls(&c);
    /* After the TLS checks: the printed script has the workers' TLS files,
     * as the submitted ones do. */
    if (rc < 0 && c.launch.print_job_script)
        rc = tgs_server_print_job_script(&c.o, stdout) == 0 ? 0 : 2;
    if (rc < 0 && c.parent_fd >= 0)
        rc = start_parent_watch(c.parent_fd);
    if (rc < 0)
        rc = tgs_server_main(&c.o);
    tg__tls_clear(&c.own);
    tgs_launch_cli_free(&c.launch);
    free(c.preload);
    return rc;
}
