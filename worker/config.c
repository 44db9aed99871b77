/* SPDX-License-Identifier: Apache-2.0
 *
 * config.c: command-line parsing for taskgrid-worker (see config.h). A
 * small table-driven parser instead of getopt_long: it is reentrant (the
 * tests parse many command lines), accepts "--opt value" and "--opt=value",
 * and words every error for the user (in tg_error_last()). Depends on
 * libc, util/error.h and the shared address parser (util/address.h), so
 * the worker accepts exactly the addresses the transport does.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "memory.h"
#include "util/address.h"
#include "util/error.h"

static const char usage[] =
    "usage: taskgrid-worker ADDRESS [options]\n"
    "\n"
    "Connect to the taskgrid scheduler at ADDRESS (tcp://host:port, or\n"
    "tls://host:port with --tls-*) and run the tasks it assigns.\n"
    "\n"
    "options:\n"
    "  --nthreads N        tasks run at once (default: number of CPUs)\n"
    "  --name NAME         worker name (default: HOSTNAME-PID)\n"
    "  --resources K=V,... resource capacities, e.g. GPU=2,MEMORY=16e9\n"
    "  --preload LIB.so    load a plug-in of task functions (repeatable)\n"
    "  --heartbeat-ms MS   heartbeat interval until the scheduler sets one\n"
    "                      (default: 1000)\n"
    "  --log-level LEVEL   error, warn, info (default) or debug\n"
    "  --tls-ca FILE       CA certificate (PEM) of the cluster\n"
    "  --tls-cert FILE     this worker's certificate (PEM)\n"
    "  --tls-key FILE      this worker's private key (PEM)\n"
    "  --data-listen HOST:PORT\n"
    "                      where the data service listens: it serves the\n"
    "                      results this worker holds to other workers\n"
    "                      (port 0 picks one; default 127.0.0.1:0 for a\n"
    "                      scheduler on a loopback address, else\n"
    "                      0.0.0.0:0); 'none': no data service, every\n"
    "                      result goes inline through the scheduler\n"
    "  --data-address HOST:PORT\n"
    "                      the address other workers use to reach the data\n"
    "                      service (default: the listen host with the\n"
    "                      bound port; for 0.0.0.0, this host's IP address\n"
    "                      on the route to the scheduler, else its name)\n"
    "  --data-clients      over TLS, let client certificates fetch held\n"
    "                      results from the data service too (clients\n"
    "                      fetching directly, direct_to_workers); default:\n"
    "                      worker certificates only\n"
    "  --memory-limit BYTES|auto|none\n"
    "                      memory for held results, e.g. 4GiB or 500MB\n"
    "                      (default auto: this machine's memory, or its\n"
    "                      cgroup's limit)\n"
    "  --memory-target F   spill the least recently used held results to\n"
    "                      disk beyond this fraction of the limit\n"
    "                      (default 0.6; 'none': never spill)\n"
    "  --memory-pause F    beyond this fraction take no new tasks until\n"
    "                      results are freed (default 0.8; 'none')\n"
    "  --memory-terminate F\n"
    "                      beyond this fraction exit with status 3\n"
    "                      (default 0.95; 'none')\n"
    "  --spill-dir DIR     where spilled results go (default: a private\n"
    "                      temporary directory, removed at exit)\n"
    "  --exit-with-parent-fd N\n"
    "                      stop (as on SIGTERM) when descriptor N reaches\n"
    "                      end of file: the process holding its other end\n"
    "                      exited or closed it (0: stdin, e.g. the ssh\n"
    "                      channel of a worker started over ssh)\n"
    "  --death-timeout S   exit (status 1) once the scheduler has been out\n"
    "                      of reach for S seconds, at start or after\n"
    "                      losing it (default 0: keep trying)\n"
    "  -h, --help          show this help and exit\n"
    "\n"
    "environment:\n"
    "  TASKGRID_LAUNCH_ID  launcher token echoed to the scheduler\n"
    "\n"
    "Results larger than the scheduler's inline limit stay in this worker's\n"
    "memory until the scheduler frees them or the connection ends; other\n"
    "workers fetch them from the data service, in the TLS mode of ADDRESS\n"
    "(over TLS only certificates of role 'worker' may fetch, and role\n"
    "'client' too with --data-clients).\n"
    "\n"
    "SIGTERM or SIGINT: hand queued tasks back, finish running ones (up to\n"
    "10 s), send their results and exit 0. A second signal exits at once.\n";

const char *tgw_config_usage(void)
{
    return usage;
}

/* Replace *slot with a copy of `v`. */
static int set_str(char **slot, const char *v)
{
    char *c = strdup(v);

    if (c == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    free(*slot);
    *slot = c;
    return TG_OK;
}

static int parse_uint(const char *v, long min, long max, long *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int add_resources(tgw_config *cfg, const char *spec)
{
    char *copy = strdup(spec), *save = NULL, *item;
    int rc = TG_OK;

    if (copy == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    for (item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end;
        double amount;
        tgw_resource *p;

        if (eq == NULL || eq == item || eq[1] == '\0') {
            rc = tg__error_set(
                TG_EINVAL, "--resources: '%s' is not NAME=AMOUNT (e.g. GPU=2)",
                item);
            break;
        }
        *eq = '\0';
        errno = 0;
        amount = strtod(eq + 1, &end);
        if (*end != '\0' || errno != 0 || !isfinite(amount) || amount < 0) {
            rc = tg__error_set(
                TG_EINVAL,
                "--resources: amount of '%s' must be a non-negative "
                "number, got '%s'",
                item, eq + 1);
            break;
        }
        for (size_t i = 0; i < cfg->nresources; i++)
            if (strcmp(cfg->resources[i].name, item) == 0) {
                rc = tg__error_set(TG_EINVAL,
                                   "--resources: '%s' is given twice", item);
                goto out;
            }
        p = realloc(cfg->resources, (cfg->nresources + 1) * sizeof(*p));
        if (p == NULL) {
            rc = tg__error_set(TG_ENOMEM, "out of memory");
            break;
        }
        cfg->resources = p;
        p[cfg->nresources].name = strdup(item);
        p[cfg->nresources].amount = amount;
        if (p[cfg->nresources].name == NULL) {
            rc = tg__error_set(TG_ENOMEM, "out of memory");
            break;
        }
        cfg->nresources++;
    }
    if (rc == TG_OK && cfg->nresources == 0 && *spec != '\0')
        rc = tg__error_set(TG_EINVAL, "--resources: nothing in '%s'", spec);
out:
    free(copy);
    return rc;
}

/* A data service address: HOST:PORT, no scheme (its TLS mode is the
 * scheduler address's), a port from 0 to 65535. */
static int check_host_port(const char *opt, const char *v)
{
    char target[512];
    bool tls;
    long port;

    if (strstr(v, "://") != NULL)
        return tg__error_set(TG_EINVAL,
                             "%s takes HOST:PORT without a scheme (the data "
                             "service uses the TLS mode of the scheduler "
                             "address), got '%s'",
                             opt, v);
    if (tg__address_parse(v, target, sizeof(target), &tls) != TG_OK ||
        parse_uint(strrchr(target, ':') + 1, 0, 65535, &port) != 0)
        return tg__error_set(TG_EINVAL,
                             "%s must be HOST:PORT (e.g. 127.0.0.1:0), got "
                             "'%s'",
                             opt, v);
    return TG_OK;
}

/* True for a loopback literal: 127.x.y.z, ::1 (bracketed or not),
 * localhost. `target` is "host:port". */
static bool loopback_host(const char *target)
{
    size_t n = (size_t)(strrchr(target, ':') - target);

    return strncmp(target, "127.", 4) == 0 ||
           (n == 9 && strncmp(target, "localhost", 9) == 0) ||
           (n == 5 && strncmp(target, "[::1]", 5) == 0) ||
           (n == 3 && strncmp(target, "::1", 3) == 0);
}

/* Defaults of --data-listen, and "none". */
static int data_defaults(tgw_config *cfg, const char *target)
{
    if (cfg->data_listen != NULL && strcmp(cfg->data_listen, "none") == 0) {
        free(cfg->data_listen);
        cfg->data_listen = NULL;
        if (cfg->data_address != NULL || cfg->data_clients)
            return tg__error_set(TG_EINVAL,
                                 "%s needs a data service (it was turned off "
                                 "with --data-listen none)",
                                 cfg->data_address != NULL ? "--data-address"
                                                           : "--data-clients");
        return TG_OK;
    }
    if (cfg->data_listen == NULL)
        return set_str(&cfg->data_listen,
                       loopback_host(target) ? "127.0.0.1:0" : "0.0.0.0:0");
    return TG_OK;
}

/* A fraction from 0 to 1; "none" or "false" turns the step off (0). */
static int parse_fraction(const char *opt, const char *v, double *out)
{
    char *end;
    double f;

    if (strcmp(v, "none") == 0 || strcmp(v, "false") == 0) {
        *out = 0;
        return TG_OK;
    }
    errno = 0;
    f = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !(f >= 0 && f <= 1))
        return tg__error_set(TG_EINVAL,
                             "%s must be a fraction from 0 to 1 (of "
                             "--memory-limit) or 'none', got '%s'",
                             opt, v);
    *out = f;
    return TG_OK;
}

static unsigned default_nthreads(void)
{
    cpu_set_t set;
    long n;

    /* The CPUs we may run on (taskset, cgroups cpusets), not the host's. */
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

enum opt_id {
    OPT_NTHREADS,
    OPT_NAME,
    OPT_RESOURCES,
    OPT_PRELOAD,
    OPT_HEARTBEAT,
    OPT_LOG_LEVEL,
    OPT_TLS_CA,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_DATA_LISTEN,
    OPT_DATA_ADDRESS,
    OPT_DATA_CLIENTS,
    OPT_MEMORY_LIMIT,
    OPT_MEMORY_TARGET,
    OPT_MEMORY_PAUSE,
    OPT_MEMORY_TERMINATE,
    OPT_SPILL_DIR,
    OPT_PARENT_FD,
    OPT_DEATH_TIMEOUT,
    OPT_HELP,
};

static const struct {
    const char *name;
    enum opt_id id;
    bool has_value;
} opts[] = {
    {"--nthreads", OPT_NTHREADS, true},
    {"--name", OPT_NAME, true},
    {"--resources", OPT_RESOURCES, true},
    {"--preload", OPT_PRELOAD, true},
    {"--heartbeat-ms", OPT_HEARTBEAT, true},
    {"--log-level", OPT_LOG_LEVEL, true},
    {"--tls-ca", OPT_TLS_CA, true},
    {"--tls-cert", OPT_TLS_CERT, true},
    {"--tls-key", OPT_TLS_KEY, true},
    {"--data-listen", OPT_DATA_LISTEN, true},
    {"--data-address", OPT_DATA_ADDRESS, true},
    {"--data-clients", OPT_DATA_CLIENTS, false},
    {"--memory-limit", OPT_MEMORY_LIMIT, true},
    {"--memory-target", OPT_MEMORY_TARGET, true},
    {"--memory-pause", OPT_MEMORY_PAUSE, true},
    {"--memory-terminate", OPT_MEMORY_TERMINATE, true},
    {"--spill-dir", OPT_SPILL_DIR, true},
    {"--exit-with-parent-fd", OPT_PARENT_FD, true},
    {"--death-timeout", OPT_DEATH_TIMEOUT, true},
    {"--help", OPT_HELP, false},
    {"-h", OPT_HELP, false},
};

static int apply(tgw_config *cfg, enum opt_id id, const char *opt,
                 const char *v)
{
    long n;

    switch (id) {
    case OPT_NTHREADS:
        if (parse_uint(v, 1, 4096, &n) != 0)
            return tg__error_set(
                TG_EINVAL, "%s must be a whole number from 1 to 4096, got '%s'",
                opt, v);
        cfg->nthreads = (unsigned)n;
        return TG_OK;
    case OPT_NAME:
        if (*v == '\0' || strlen(v) > 256)
            return tg__error_set(TG_EINVAL, "%s must be 1 to 256 characters",
                                 opt);
        return set_str(&cfg->name, v);
    case OPT_RESOURCES:
        return add_resources(cfg, v);
    case OPT_PRELOAD: {
        char **p = realloc(cfg->preload, (cfg->npreload + 1) * sizeof(*p));

        if (p == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        cfg->preload = p;
        p[cfg->npreload] = strdup(v);
        if (p[cfg->npreload] == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        cfg->npreload++;
        return TG_OK;
    }
    case OPT_HEARTBEAT:
        if (parse_uint(v, 10, 3600000, &n) != 0)
            return tg__error_set(
                TG_EINVAL,
                "%s must be milliseconds from 10 to 3600000, got '%s'", opt, v);
        cfg->heartbeat_ms = (int)n;
        return TG_OK;
    case OPT_LOG_LEVEL:
        if (strcmp(v, "error") && strcmp(v, "warn") && strcmp(v, "info") &&
            strcmp(v, "debug"))
            return tg__error_set(
                TG_EINVAL, "%s must be error, warn, info or debug, got '%s'",
                opt, v);
        return set_str(&cfg->log_level, v);
    case OPT_TLS_CA:
        return set_str(&cfg->tls_ca, v);
    case OPT_TLS_CERT:
        return set_str(&cfg->tls_cert, v);
    case OPT_TLS_KEY:
        return set_str(&cfg->tls_key, v);
    case OPT_DATA_LISTEN:
        if (strcmp(v, "none") != 0 && check_host_port(opt, v) != TG_OK)
            return TG_EINVAL;
        return set_str(&cfg->data_listen, v);
    case OPT_DATA_ADDRESS:
        if (check_host_port(opt, v) != TG_OK)
            return TG_EINVAL;
        return set_str(&cfg->data_address, v);
    case OPT_DATA_CLIENTS:
        cfg->data_clients = true;
        return TG_OK;
    case OPT_MEMORY_LIMIT:
        cfg->memory_limit_set = true;
        return tgw_memory_parse_limit(opt, v, &cfg->memory_limit);
    case OPT_MEMORY_TARGET:
        return parse_fraction(opt, v, &cfg->memory_target);
    case OPT_MEMORY_PAUSE:
        return parse_fraction(opt, v, &cfg->memory_pause);
    case OPT_MEMORY_TERMINATE:
        return parse_fraction(opt, v, &cfg->memory_terminate);
    case OPT_SPILL_DIR:
        if (*v == '\0')
            return tg__error_set(TG_EINVAL, "%s needs a directory", opt);
        return set_str(&cfg->spill_dir, v);
    case OPT_PARENT_FD:
        if (parse_uint(v, 0, 1048576, &n) != 0)
            return tg__error_set(
                TG_EINVAL, "%s expects a file descriptor, got '%s'", opt, v);
        if (fcntl((int)n, F_GETFD) < 0)
            return tg__error_set(TG_EINVAL, "%s: descriptor %ld is not open",
                                 opt, n);
        cfg->parent_fd = (int)n;
        return TG_OK;
    case OPT_DEATH_TIMEOUT: {
        char *end;
        double sec;
        errno = 0;
        sec = strtod(v, &end);
        if (errno || end == v || *end != '\0' || !(sec >= 0) ||
            sec > 86400.0 * 365)
            return tg__error_set(
                TG_EINVAL, "%s expects seconds (0 or more), got '%s'", opt, v);
        cfg->death_timeout_ms = (int64_t)(sec * 1000.0 + 0.5);
        return TG_OK;
    }
    case OPT_HELP:
        cfg->help = true;
        return TG_OK;
    }
    return tg__error_set(TG_EINVAL, "unknown option %s", opt);
}

int tgw_config_parse(tgw_config *cfg, int argc, char *const *argv)
{
    char host[256], target[512], name[300];
    const char *env;
    bool only_positional = false, tls = false;
    int ntls, rc;

    memset(cfg, 0, sizeof(*cfg));
    cfg->parent_fd = -1;
    cfg->memory_target = TGW_DEFAULT_MEMORY_TARGET;
    cfg->memory_pause = TGW_DEFAULT_MEMORY_PAUSE;
    cfg->memory_terminate = TGW_DEFAULT_MEMORY_TERMINATE;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *value = NULL;
        size_t namelen;
        size_t k;

        if (only_positional || arg[0] != '-' || arg[1] == '\0') {
            if (cfg->address != NULL)
                return tg__error_set(
                    TG_EINVAL, "unexpected argument '%s' (only one ADDRESS)",
                    arg);
            rc = set_str(&cfg->address, arg);
            if (rc != TG_OK)
                return rc;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        eq = strchr(arg, '=');
        namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
            if (strlen(opts[k].name) == namelen &&
                strncmp(opts[k].name, arg, namelen) == 0)
                break;
        if (k == sizeof(opts) / sizeof(opts[0]))
            return tg__error_set(TG_EINVAL, "unknown option '%.*s'",
                                 (int)namelen, arg);
        if (opts[k].has_value) {
            if (eq != NULL)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return tg__error_set(TG_EINVAL, "%s needs a value",
                                     opts[k].name);
        } else if (eq != NULL) {
            return tg__error_set(TG_EINVAL, "%s takes no value", opts[k].name);
        }
        rc = apply(cfg, opts[k].id, opts[k].name, value);
        if (rc != TG_OK)
            return rc;
    }
    if (cfg->help)
        return TG_OK;
    if (cfg->address == NULL)
        return tg__error_set(TG_EINVAL,
                             "missing ADDRESS (e.g. tcp://127.0.0.1:8786)");
    rc = tg__address_parse(cfg->address, target, sizeof(target), &tls);
    if (rc != TG_OK)
        return rc; /* its message, as it is */
    ntls = (cfg->tls_ca != NULL) + (cfg->tls_cert != NULL) +
           (cfg->tls_key != NULL);
    if (tls && ntls != 3)
        return tg__error_set(
            TG_EINVAL,
            "%s is a TLS address: --tls-ca, --tls-cert and --tls-key "
            "are all required",
            cfg->address);
    if (!tls && ntls != 0)
        return tg__error_set(TG_EINVAL,
                             "--tls-* options need a tls:// address, got '%s'",
                             cfg->address);

    /* Defaults and the environment. */
    rc = data_defaults(cfg, target);
    if (rc != TG_OK)
        return rc;
    if (cfg->nthreads == 0)
        cfg->nthreads = default_nthreads();
    if (cfg->heartbeat_ms == 0)
        cfg->heartbeat_ms = TGW_DEFAULT_HEARTBEAT_MS;
    if (!cfg->memory_limit_set)
        cfg->memory_limit = tgw_memory_total();
    if (cfg->log_level == NULL && set_str(&cfg->log_level, "info") != TG_OK)
        return TG_ENOMEM;
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if (set_str(&cfg->host, host) != TG_OK)
        return TG_ENOMEM;
    if (cfg->name == NULL) {
        snprintf(name, sizeof(name), "%s-%ld", host, (long)getpid());
        if (set_str(&cfg->name, name) != TG_OK)
            return TG_ENOMEM;
    }
    env = getenv("TASKGRID_LAUNCH_ID");
    if (env != NULL && *env != '\0' && set_str(&cfg->launch_id, env) != TG_OK)
        return TG_ENOMEM;
    return TG_OK;
}

void tgw_config_free(tgw_config *cfg)
{
    free(cfg->address);
    free(cfg->name);
    for (size_t i = 0; i < cfg->nresources; i++)
        free(cfg->resources[i].name);
    free(cfg->resources);
    for (size_t i = 0; i < cfg->npreload; i++)
        free(cfg->preload[i]);
    free(cfg->preload);
    free(cfg->log_level);
    free(cfg->tls_ca);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->host);
    free(cfg->launch_id);
    free(cfg->data_listen);
    free(cfg->data_address);
    free(cfg->spill_dir);
    memset(cfg, 0, sizeof(*cfg));
}
