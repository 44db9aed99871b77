/* SPDX-License-Identifier: Apache-2.0
 *
 * main.c: the taskgrid-worker executable: command line, TLS files,
 * built-ins and --preload plug-ins into the registry, signal handling,
 * then the scheduler link until a stop or a drain. Exit codes: 0 after a
 * clean stop or drain, 2 for a usage or start-up error (bad flag, plug-in
 * that does not load), 1 otherwise. Depends on every worker module.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtins.h"
#include "config.h"
#include "link.h"
#include "loader.h"
#include "log.h"
#include "registry.h"

static atomic_bool stop_requested;
static atomic_int signals_seen;

/* First signal: stop cleanly. Second: the user means it. */
static void on_signal(int sig)
{
    static const char msg[] = "taskgrid-worker: second signal, exiting now\n";

    (void)sig;
    if (atomic_fetch_add(&signals_seen, 1) > 0) {
        ssize_t n = write(2, msg, sizeof(msg) - 1);

        (void)n;
        _exit(1);
    }
    atomic_store(&stop_requested, true);
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* A task printing to a closed pipe must fail its write, not kill us. */
    signal(SIGPIPE, SIG_IGN);
}

static int usage_error(const char *msg)
{
    fprintf(stderr,
            "taskgrid-worker: error: %s\n"
            "Try 'taskgrid-worker --help'.\n",
            msg);
    return 2;
}

/* Read a whole PEM file into a NUL-terminated heap string. */
static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (len + 4096 + 1 > cap) {
            char *p;

            cap = cap ? cap * 2 : 8192;
            p = realloc(buf, cap);
            if (p == NULL) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "out of memory reading %s", path);
                return NULL;
            }
            buf = p;
        }
        n = fread(buf + len, 1, 4096, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    tgw_config cfg;
    char err[1536];
    tg_registry *reg = NULL;
    tgw_plugins *plugins = NULL;
    tg__rpc_sec sec = {NULL, NULL, NULL};
    tgw_link_end end;
    int code = 2;

    if (tgw_config_parse(&cfg, argc, argv, err, sizeof(err)) != 0) {
        code = usage_error(err);
        goto out;
    }
    if (cfg.help) {
        fputs(tgw_config_usage(), stdout);
        code = 0;
        goto out;
    }
    tg__log_set_component("worker");
    tg__log_set_level(cfg.log_level);

    if (cfg.tls_ca != NULL) {
        sec.ca_pem = read_file(cfg.tls_ca, err, sizeof(err));
        if (sec.ca_pem != NULL)
            sec.cert_pem = read_file(cfg.tls_cert, err, sizeof(err));
        if (sec.cert_pem != NULL)
            sec.key_pem = read_file(cfg.tls_key, err, sizeof(err));
        if (sec.key_pem == NULL) {
            code = usage_error(err);
            goto out;
        }
    }

    if (tgw_registry_new(&reg) != TG_OK || tgw_plugins_new(&plugins) != TG_OK ||
        tgw_builtins_register(reg) != TG_OK) {
        TG_LOG_ERROR("cannot start: %s", tg_error_last());
        code = 1;
        goto out;
    }
    for (size_t i = 0; i < cfg.npreload; i++) {
        if (tgw_plugins_load(plugins, reg, cfg.preload[i], err,
                             sizeof(err)) != TG_OK) {
            fprintf(stderr, "taskgrid-worker: error: %s\n", err);
            code = 2;
            goto out;
        }
        TG_LOG_INFO("loaded plug-in %s", cfg.preload[i]);
    }
    /* Register carries them in repeated fields of at most 65,535 entries. */
    if (tgw_registry_count(reg) > 65535 || cfg.nresources > 65535) {
        code = usage_error("at most 65535 functions and 65535 resources");
        goto out;
    }
    /* From here on executor threads read the registry without locks. */
    tgw_registry_freeze(reg);

    install_signals();
    end = tgw_link_run(&cfg, sec.ca_pem ? &sec : NULL, reg, &stop_requested);
    if (end == TGW_LINK_ABANDONED) {
        /* Threads still run plug-in code: unloading it or freeing what
         * they use would crash them. Leave without cleaning up. */
        fflush(stdout);
        _exit(0);
    }
    code = end == TGW_LINK_CLEAN ? 0 : 1;
out:
    tgw_plugins_free(plugins);
    tgw_registry_free(reg);
    free((char *)sec.ca_pem);
    free((char *)sec.cert_pem);
    free((char *)sec.key_pem);
    tgw_config_free(&cfg);
    return code;
}
