/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c: the taskgrid-scheduler command line. Parses flags into
 * tgs_server_opts, loads and checks the TLS files (sdk/src/tls.h, the same
 * checks and messages as clients and workers), and runs the daemon
 * (server.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "server.h"
#include "util/tls.h"

static const char usage[] =
    "usage: taskgrid-scheduler [options]\n"
    "\n"
    "  --listen ADDRESS        tcp://HOST:PORT or tls://HOST:PORT to serve on\n"
    "                          (default tcp://0.0.0.0:8786; port 0 picks one)\n"
    "  --launcher local|none   how Scale starts workers (default local:\n"
    "                          taskgrid-worker processes on this host)\n"
    "  --workers N             start N local workers at once (default 0)\n"
    "  --nthreads N            threads per launched worker (default: cores)\n"
    "  --worker-bin PATH       taskgrid-worker to launch (default: next to\n"
    "                          this program, then PATH)\n"
    "  --worker-resources R    --resources for launched workers (GPU=1,...)\n"
    "  --worker-preload LIB    --preload for launched workers (repeatable)\n"
    "  --no-worker-timeout MS  fail tasks no worker can run after MS\n"
    "                          (default 0: wait, and Status says why)\n"
    "  --allowed-failures N    fail a task after it was running on N workers\n"
    "                          that died (default 3)\n"
    "  --retry-backoff MS      delay before a task's first retry, doubling\n"
    "                          each attempt (default 100; 0: retry at once)\n"
    "  --retry-backoff-max MS  longest delay between retries (default 5000)\n"
    "  --max-message BYTES     largest gRPC message accepted (default 64 MiB)\n"
    "  --tls-ca FILE --tls-cert FILE --tls-key FILE\n"
    "                          mutual TLS (with a tls:// --listen address):\n"
    "                          the cluster CA, and this scheduler's\n"
    "                          certificate and key (make them with\n"
    "                          taskgrid-certs)\n"
    "  --worker-tls-cert FILE --worker-tls-key FILE\n"
    "                          certificate (role worker) and key for the\n"
    "                          workers the local launcher starts\n"
    "  --worker-tls-ca FILE    CA for those workers (default: --tls-ca)\n"
    "  --log-level LEVEL       error, warn, info (default) or debug\n"
    "  --help                  this text\n"
    "\n"
    "On start it prints 'taskgrid-scheduler listening on ADDRESS' on stdout.\n";

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

int main(int argc, char **argv)
{
    tgs_server_opts o = {0};
    /* Kept reachable from a static: usage errors return early. */
    static const char **preload;
    const char *tls[3] = {NULL, NULL, NULL};
    const char *wtls[3] = {NULL, NULL, NULL};
    char wpath[3][PATH_MAX];
    tg__tls own, wk;
    unsigned long long v;
    int rc;

    preload = calloc((size_t)argc, sizeof(char *));
    if (preload == NULL)
        return 1;
    o.listen = "tcp://0.0.0.0:8786";
    o.launcher = "local";
    tg__log_set_component("scheduler");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL                                      \
    do {                                              \
        if (val == NULL)                              \
            return bad("missing value for", a);       \
        i++;                                          \
    } while (0)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--listen") == 0) {
            NEED_VAL;
            o.listen = val;
        } else if (strcmp(a, "--launcher") == 0) {
            NEED_VAL;
            o.launcher = val;
        } else if (strcmp(a, "--workers") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v > 4096)
                return bad("--workers expects a number up to 4096", val);
            o.workers = (uint32_t)v;
        } else if (strcmp(a, "--nthreads") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v == 0 || v > 4096)
                return bad("--nthreads expects a number from 1 to 4096", val);
            o.worker_nthreads = (uint32_t)v;
        } else if (strcmp(a, "--worker-bin") == 0) {
            NEED_VAL;
            o.worker_bin = val;
        } else if (strcmp(a, "--worker-resources") == 0) {
            NEED_VAL;
            o.worker_resources = val;
        } else if (strcmp(a, "--worker-preload") == 0) {
            NEED_VAL;
            preload[o.nworker_preload++] = val;
        } else if (strcmp(a, "--worker-log-level") == 0) {
            NEED_VAL;
            o.worker_log_level = val;
        } else if (strcmp(a, "--no-worker-timeout") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v > (1ull << 40))
                return bad("--no-worker-timeout expects milliseconds", val);
            o.no_worker_timeout_ms = (int64_t)v;
        } else if (strcmp(a, "--allowed-failures") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v == 0 || v > 1000)
                return bad("--allowed-failures expects 1 to 1000", val);
            o.allowed_failures = (uint32_t)v;
        } else if (strcmp(a, "--retry-backoff") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v > 3600000)
                return bad("--retry-backoff expects 0 to 3600000 ms", val);
            o.retry_backoff_ms = v == 0 ? -1 : (int64_t)v;
        } else if (strcmp(a, "--retry-backoff-max") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v == 0 || v > 3600000)
                return bad("--retry-backoff-max expects 1 to 3600000 ms",
                           val);
            o.retry_backoff_max_ms = (int64_t)v;
        } else if (strcmp(a, "--max-message") == 0) {
            NEED_VAL;
            if (parse_u64(val, &v) || v < 1024 || v > 0x7fffffffull)
                return bad("--max-message expects 1024 to 2147483647 bytes",
                           val);
            o.max_message = (size_t)v;
        } else if (strcmp(a, "--tls-ca") == 0) {
            NEED_VAL;
            tls[0] = val;
        } else if (strcmp(a, "--tls-cert") == 0) {
            NEED_VAL;
            tls[1] = val;
        } else if (strcmp(a, "--tls-key") == 0) {
            NEED_VAL;
            tls[2] = val;
        } else if (strcmp(a, "--worker-tls-ca") == 0) {
            NEED_VAL;
            wtls[0] = val;
        } else if (strcmp(a, "--worker-tls-cert") == 0) {
            NEED_VAL;
            wtls[1] = val;
        } else if (strcmp(a, "--worker-tls-key") == 0) {
            NEED_VAL;
            wtls[2] = val;
        } else if (strcmp(a, "--log-level") == 0) {
            NEED_VAL;
            if (tg__log_set_level(val) < 0)
                return bad("--log-level expects error, warn, info or debug",
                           val);
        } else {
            return bad("unknown option", a);
        }
#undef NEED_VAL
    }
    o.worker_preload = preload;
    memset(&own, 0, sizeof(own));
    memset(&wk, 0, sizeof(wk));
    if (tls[0] || tls[1] || tls[2]) {
        static const char *what[3] = {"--tls-ca", "--tls-cert", "--tls-key"};
        tg_security sec = TG_SECURITY_INIT;

        for (int k = 0; k < 3; k++)
            if (tls[k] == NULL)
                return bad("mutual TLS needs --tls-ca, --tls-cert and "
                           "--tls-key; missing",
                           what[k]);
        if (strncmp(o.listen, "tls://", 6) != 0)
            return bad("TLS files were given but --listen is not tls://",
                       o.listen);
        sec.ca_file = tls[0];
        sec.cert_file = tls[1];
        sec.key_file = tls[2];
        if (tg__tls_load(&own, &sec, "scheduler") != TG_OK) {
            fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
            return 2;
        }
        o.ca_pem = own.ca_pem;
        o.cert_pem = own.cert_pem;
        o.key_pem = own.key_pem;
    } else if (strncmp(o.listen, "tls://", 6) == 0) {
        return bad("a tls:// address needs --tls-ca, --tls-cert and "
                   "--tls-key",
                   o.listen);
    }
    if (wtls[0] || wtls[1] || wtls[2]) {
        tg_security sec = TG_SECURITY_INIT;

        if (o.ca_pem == NULL)
            return bad("--worker-tls-* options need a TLS scheduler "
                       "(tls:// --listen with --tls-*)",
                       NULL);
        if (wtls[1] == NULL || wtls[2] == NULL) {
            tg__tls_clear(&own);
            return bad("--worker-tls-cert and --worker-tls-key go together",
                       NULL);
        }
        if (wtls[0] == NULL)
            wtls[0] = tls[0];
        /* Check now what the workers would check at their start, so a
         * bad file fails here, once, and not in every worker. */
        sec.ca_file = wtls[0];
        sec.cert_file = wtls[1];
        sec.key_file = wtls[2];
        if (tg__tls_load(&wk, &sec, "worker") != TG_OK) {
            fprintf(stderr, "taskgrid-scheduler: %s\n", tg_error_last());
            tg__tls_clear(&own);
            return 2;
        }
        tg__tls_clear(&wk);
        /* Workers are started from this process's directory, but say
         * where the files are without depending on it. */
        for (int k = 0; k < 3; k++)
            if (realpath(wtls[k], wpath[k]) == NULL)
                snprintf(wpath[k], sizeof(wpath[k]), "%s", wtls[k]);
        o.worker_tls_ca = wpath[0];
        o.worker_tls_cert = wpath[1];
        o.worker_tls_key = wpath[2];
    }
    rc = tgs_server_main(&o);
    tg__tls_clear(&own);
    free(preload);
    return rc;
}
