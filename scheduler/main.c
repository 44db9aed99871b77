/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c: the taskgrid-scheduler command line. Parses flags into
 * tgs_server_opts and runs the daemon (server.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

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
    "  --max-message BYTES     largest gRPC message accepted (default 64 MiB)\n"
    "  --tls-ca FILE --tls-cert FILE --tls-key FILE\n"
    "                          mutual TLS (with a tls:// --listen address)\n"
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

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    tgs_server_opts o = {0};
    const char **preload = calloc((size_t)argc, sizeof(char *));
    const char *tls[3] = {NULL, NULL, NULL};
    char *pem[3] = {NULL, NULL, NULL};
    unsigned long long v;
    int rc;

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
    if (tls[0] || tls[1] || tls[2]) {
        static const char *what[3] = {"--tls-ca", "--tls-cert", "--tls-key"};
        for (int k = 0; k < 3; k++) {
            if (tls[k] == NULL)
                return bad("mutual TLS needs --tls-ca, --tls-cert and "
                           "--tls-key; missing",
                           what[k]);
            pem[k] = slurp(tls[k]);
            if (pem[k] == NULL) {
                fprintf(stderr, "taskgrid-scheduler: cannot read %s %s: %s\n",
                        what[k], tls[k], strerror(errno));
                return 2;
            }
        }
        if (strncmp(o.listen, "tls://", 6) != 0)
            return bad("TLS files were given but --listen is not tls://",
                       o.listen);
        o.ca_pem = pem[0];
        o.cert_pem = pem[1];
        o.key_pem = pem[2];
    } else if (strncmp(o.listen, "tls://", 6) == 0) {
        return bad("a tls:// address needs --tls-ca, --tls-cert and "
                   "--tls-key",
                   o.listen);
    }
    rc = tgs_server_main(&o);
    for (int k = 0; k < 3; k++)
        free(pem[k]);
    free(preload);
    return rc;
}
