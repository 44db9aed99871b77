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
#include "registry.h"
#include "util/lifeline.h"
#include "util/log.h"
#include "util/nest.h"
#include "util/role.h"
#include "util/tls.h"

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

int main(int argc, char **argv)
{
    tgw_config cfg;
    tg_registry *reg = NULL;
    tgw_plugins *plugins = NULL;
    tg__rpc_sec sec = {0};
    tg__tls tls;
    tgw_link_end end;
    int code = 2;

    memset(&tls, 0, sizeof(tls));
    if (tgw_config_parse(&cfg, argc, argv) != TG_OK) {
        code = usage_error(tg_error_last());
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
        /* The SDK's checks (readable, PEM, key matches, not expired), so
         * a bad file is a clear error now, not a refused handshake. The
         * same material serves every connection this worker opens. */
        tg_security ts = TG_SECURITY_INIT;
        char role[64], why[512];

        ts.ca_file = cfg.tls_ca;
        ts.cert_file = cfg.tls_cert;
        ts.key_file = cfg.tls_key;
        if (tg__tls_load(&tls, &ts, "worker") != TG_OK) {
            fprintf(stderr, "taskgrid-worker: error: %s\n", tg_error_last());
            code = 2;
            goto out;
        }
        sec.ca_pem = tls.ca_pem;
        sec.cert_pem = tls.cert_pem;
        sec.key_pem = tls.key_pem;
        sec.hint = tls.hint[0] ? tls.hint : NULL;
        /* The scheduler's own reading (util/role.h), so this warning
         * and its refusal agree. */
        tg__role_from_pem(tls.cert_pem, strlen(tls.cert_pem), role,
                          sizeof(role), why, sizeof(why));
        if (strcmp(role, "worker") != 0)
            TG_LOG_WARN("%s has %s%s%s%s%s; a TLS scheduler admits only "
                        "certificates of role 'worker' as workers",
                        cfg.tls_cert, role[0] ? "role '" : "no role", role,
                        role[0] ? "'" : "", why[0] ? ": " : "", why);
    }

    if (tgw_registry_new(&reg) != TG_OK || tgw_plugins_new(&plugins) != TG_OK ||
        tgw_builtins_register(reg) != TG_OK) {
        TG_LOG_ERROR("cannot start: %s", tg_error_last());
        code = 1;
        goto out;
    }
    for (size_t i = 0; i < cfg.npreload; i++) {
        if (tgw_plugins_load(plugins, reg, cfg.preload[i]) != TG_OK) {
            fprintf(stderr, "taskgrid-worker: error: %s\n", tg_error_last());
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

    /* Nested work (the worker-side client) connects with this worker's
     * own address and credentials. */
    if (tg__tls_worker_identity_set(cfg.address, sec.ca_pem ? &tls : NULL) !=
        TG_OK) {
        TG_LOG_ERROR("cannot start: %s", tg_error_last());
        code = 1;
        goto out;
    }
    install_signals();
    /* --exit-with-parent-fd: end of file there stops us as SIGTERM does. */
    if (cfg.parent_fd >= 0 && tg__lifeline_watch(cfg.parent_fd) != 0) {
        TG_LOG_ERROR("cannot watch descriptor %d", cfg.parent_fd);
        code = 1;
        goto out;
    }
    end = tgw_link_run(&cfg, sec.ca_pem ? &sec : NULL, reg, &stop_requested,
                       NULL);
    if (end == TGW_LINK_ABANDONED) {
        /* Threads still run plug-in code: unloading it or freeing what
         * they use would crash them. Leave without cleaning up. */
        fflush(stdout);
        _exit(0);
    }
    code = end == TGW_LINK_CLEAN ? 0 : 1;
    /* Every task finished: close the worker-side client of nested work
     * (releasing what tasks still held), if one was opened. */
    tg__nest_exit();
out:
    tgw_plugins_free(plugins);
    tgw_registry_free(reg);
    tg__tls_clear(&tls);
    tgw_config_free(&cfg);
    return code;
}
