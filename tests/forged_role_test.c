/* SPDX-License-Identifier: Apache-2.0
 *
 * forged_role_test.c: end to end, a certificate signed by the cluster CA
 * whose role is only faked (role-looking text in the CN, a role in a DNS
 * or e-mail SAN, several OUs, several role URIs) can neither Scale (an
 * admin's call) nor join as a worker, against a real TLS
 * taskgrid-scheduler; a URI SAN wins over a disagreeing OU; the scheduler
 * logs why an ambiguous certificate got no role. The certificates are
 * made here (forge.h); the calls go through the transport with raw PEM,
 * as a hostile peer would make them. Every wait is bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509v3.h>

#include "forge.h"
#include "harness.h"
#include "taskgrid/taskgrid.h"
#include "transport/client.h"
#include "util/certs.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char dir[600];
static char *ca_pem, *ca_key;
static th_proc sched = TH_PROC_NONE;
static char addr[256];

/* A forged certificate: its name (files NAME.pem, NAME-key.pem) and
 * contents. */
typedef struct forged {
    const char *name;
    tgt_attr attrs[3];
    size_t nattrs;
    tgt_san sans[2];
    size_t nsans;
} forged;

#define O_TG                     \
    {                            \
        "O", "taskgrid", 0, 0, 0 \
    }
#define OU(v)            \
    {                    \
        "OU", v, 0, 0, 0 \
    }
#define CN(v)            \
    {                    \
        "CN", v, 0, 0, 0 \
    }

/* None of these carries a role the scheduler may honour. */
static const forged fakes[] = {
    {"cn-comma", {O_TG, CN("mallory,OU=admin")}, 2, {{0}}, 0},
    {"cn-comma-ou", {O_TG, OU("client"), CN("mallory,OU=admin")}, 3, {{0}}, 0},
    {"cn-space", {O_TG, OU("client"), CN("mallory OU=worker")}, 3, {{0}}, 0},
    {"cn-slash", {O_TG, CN("mallory/OU=admin")}, 2, {{0}}, 0},
    {"cn-plus", {O_TG, CN("mallory+OU=worker")}, 2, {{0}}, 0},
    {"dns-admin",
     {O_TG, OU("client"), CN("mallory")},
     3,
     {{GEN_DNS, "taskgrid:role=admin", 0},
      {GEN_DNS, "taskgrid:role=worker", 0}},
     2},
    {"email-admin",
     {O_TG, CN("mallory")},
     2,
     {{GEN_EMAIL, "taskgrid:role=admin", 0},
      {GEN_EMAIL, "taskgrid:role=worker", 0}},
     2},
    {"two-ous", {OU("worker"), CN("mallory"), OU("admin")}, 3, {{0}}, 0},
    {"two-uris",
     {O_TG, CN("mallory")},
     2,
     {{GEN_URI, "taskgrid:role=worker", 0},
      {GEN_URI, "taskgrid:role=admin", 0}},
     2},
};

/* The URI SAN (worker) wins over the OU (admin). */
static const forged uri_wins = {"uri-wins",
                                {O_TG, OU("admin"), CN("w")},
                                3,
                                {{GEN_URI, "taskgrid:role=worker", 0}},
                                1};

static const char *P(const char *name, const char *suffix)
{
    static char bufs[8][800];
    static int next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof(bufs[0]), "%s/%s%s", dir, name, suffix);
    return b;
}

static void forge_files(const forged *f)
{
    tgt_forge spec = {f->attrs, f->nattrs, f->sans, f->nsans, 0};
    char *cert, *key;

    tgt_forge_issue(ca_pem, ca_key, &spec, &cert, &key);
    assert_int_equal(tg__certs_write_file(P(f->name, ".pem"), cert, 0644, true),
                     TG_OK);
    assert_int_equal(
        tg__certs_write_file(P(f->name, "-key.pem"), key, 0600, true), TG_OK);
    free(cert);
    free(key);
}

/* Open a channel presenting certificate NAME.pem. */
static tg__chan *chan_as(const char *name, char *pem[3])
{
    tg__rpc_sec sec = {0};
    tg__chan *ch = NULL;

    pem[0] = th_slurp(P("ca", ".pem"));
    pem[1] = th_slurp(P(name, ".pem"));
    pem[2] = th_slurp(P(name, "-key.pem"));
    sec.ca_pem = pem[0];
    sec.cert_pem = pem[1];
    sec.key_pem = pem[2];
    assert_int_equal(tg__chan_open(&ch, addr, &sec, 0), TG_OK);
    return ch;
}

/* Scheduler/Scale (an empty ScaleRequest) as NAME: the status. */
static int scale_as(const char *name)
{
    char *pem[3];
    tg__chan *ch = chan_as(name, pem);
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = tg__chan_unary(ch, "/taskgrid.v1.Scheduler/Scale",
                            (const uint8_t *)"", 0, &resp, &rlen, 5000);

    free(resp);
    tg__chan_close(ch);
    for (int k = 0; k < 3; k++)
        free(pem[k]);
    return rc;
}

/* WorkerLink/Connect as NAME with a registration: TG_OK once the
 * scheduler answered with the worker's name, else the refusal. */
static int join_as(const char *name)
{
    /* WorkerMessage{registration: Register{name: "forged", nthreads: 1}} */
    static const uint8_t reg[] = {0x0a, 0x0a, 0x0a, 0x06, 'f',  'o',
                                  'r',  'g',  'e',  'd',  0x10, 0x01};
    char *pem[3];
    tg__chan *ch = chan_as(name, pem);
    tg__cstream *st = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    assert_int_equal(
        tg__cstream_open(&st, ch, "/taskgrid.v1.WorkerLink/Connect", 0), TG_OK);
    rc = tg__cstream_send(st, reg, sizeof(reg), 5000);
    if (rc == TG_OK)
        rc = tg__cstream_recv(st, &buf, &len, 5000);
    free(buf);
    tg__cstream_free(st);
    tg__chan_close(ch);
    for (int k = 0; k < 3; k++)
        free(pem[k]);
    return rc;
}

static int group_setup(void **state)
{
    const char *base = getenv("TEST_TMPDIR");
    tg__certs_dir_opts o = {0};

    (void)state;
    snprintf(dir, sizeof(dir), "%s/tgforge-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    o.write_ca_key = true;
    o.hosts = "localhost,127.0.0.1";
    if (tg__certs_write_dir(dir, &o) != TG_OK)
        fail_msg("certificates: %s", tg_error_last());
    ca_pem = th_slurp(P("ca", ".pem"));
    ca_key = th_slurp(P("ca-key", ".pem"));
    for (size_t i = 0; i < N(fakes); i++)
        forge_files(&fakes[i]);
    forge_files(&uri_wins);
    {
        char *argv[] = {th_sched_bin,
                        "--listen",
                        "tls://127.0.0.1:0",
                        "--launcher",
                        "none",
                        "--tls-ca",
                        (char *)P("ca", ".pem"),
                        "--tls-cert",
                        (char *)P("scheduler", ".pem"),
                        "--tls-key",
                        (char *)P("scheduler", "-key.pem"),
                        "--log-level",
                        "warn",
                        NULL};

        sched = th_spawn(argv, true, true);
        th_read_address(&sched, addr, sizeof(addr));
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (sched.pid > 0)
        th_stop(&sched, SIGTERM);
    free(ca_pem);
    free(ca_key);
    return 0;
}

static void test_forged__cannot_scale(void **state)
{
    int rc;

    (void)state;
    /* The genuine admin passes the policy (the scheduler, without a
     * launcher, then says no for another reason). */
    assert_int_not_equal(scale_as("admin"), TG_EPERM);
    assert_int_equal(scale_as("client"), TG_EPERM);
    for (size_t i = 0; i < N(fakes); i++) {
        rc = scale_as(fakes[i].name);
        if (rc != TG_EPERM)
            fail_msg("%s could Scale (%d: %s)", fakes[i].name, rc,
                     tg_error_last());
        assert_non_null(strstr(tg_error_last(), "needs role 'admin'"));
    }
    assert_int_equal(scale_as(uri_wins.name), TG_EPERM);
    assert_non_null(strstr(tg_error_last(), "has role 'worker'"));
}

static void test_forged__cannot_join_as_worker(void **state)
{
    int rc;

    (void)state;
    assert_int_equal(join_as("worker"), TG_OK);
    assert_int_equal(join_as(uri_wins.name), TG_OK);
    assert_int_equal(join_as("admin"), TG_EPERM);
    for (size_t i = 0; i < N(fakes); i++) {
        rc = join_as(fakes[i].name);
        if (rc != TG_EPERM)
            fail_msg("%s joined as a worker (%d: %s)", fakes[i].name, rc,
                     tg_error_last());
        assert_non_null(strstr(tg_error_last(), "needs role 'worker'"));
    }
}

/* The worker program agrees with the scheduler: it warns that its
 * certificate has no role and why, and the scheduler refuses it. */
static void test_forged__worker_program_refused(void **state)
{
    char *argv[] = {th_worker_bin, addr,
                    "--nthreads",  "1",
                    "--tls-ca",    (char *)P("ca", ".pem"),
                    "--tls-cert",  (char *)P("two-ous", ".pem"),
                    "--tls-key",   (char *)P("two-ous", "-key.pem"),
                    "--log-level", "warn",
                    NULL};
    th_proc w = th_spawn(argv, false, true);
    int st = th_wait_exit(&w, 15000);
    char *err = th_read_err(&w);

    (void)state;
    th_close(&w);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(err, "several OU attributes"));
    assert_non_null(strstr(err, "refused this worker"));
    free(err);
}

/* Last: stop the scheduler and read why it gave no role. */
static void test_forged__scheduler_logs_why(void **state)
{
    char *err;

    (void)state;
    assert_int_equal(kill(sched.pid, SIGTERM), 0);
    th_wait_exit(&sched, 15000);
    err = th_read_err(&sched);
    th_close(&sched);
    sched.pid = -1;
    assert_non_null(strstr(err, "several OU attributes and no URI SAN"));
    assert_non_null(strstr(err, "2 URI SANs"));
    assert_non_null(strstr(err, "refused as ambiguous"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged__cannot_scale),
        cmocka_unit_test(test_forged__cannot_join_as_worker),
        cmocka_unit_test(test_forged__worker_program_refused),
        cmocka_unit_test(test_forged__scheduler_logs_why),
    };

    signal(SIGPIPE, SIG_IGN);
    th_find_bins();
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
