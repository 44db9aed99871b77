/* SPDX-License-Identifier: Apache-2.0
 *
 * security_test.c: mutual TLS, certificate roles and clear refusals, with
 * real taskgrid-scheduler and taskgrid-worker processes on loopback and
 * certificates made at start by the SDK's certificate code (certs.c) in
 * the test's temporary directory: a cluster CA with scheduler, worker,
 * client and admin certificates, a second CA, an expired, a not yet valid,
 * a role-less and an OU-only certificate. Covers the good path end to
 * end, each refusal (other CA, no certificate, expired, a client posing
 * as a worker, plaintext to a TLS port, TLS to a plaintext port), the
 * SDK's local checks, the access policy table, the worker identity the
 * worker-side client reuses, taskgrid-certs, and the secure temporary
 * cluster. Every wait is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "harness.h"
#include "scheduler/auth.h"
#include "taskgrid/taskgrid.h"
#include "transport/client.h"
#include "util/certs.h"
#include "util/role.h"
#include "util/tls.h"

static char dir[600];   /* the cluster's certificates */
static char other[700]; /* another CA's */

/* The TLS scheduler (--launcher none) and its one worker, shared by the
 * tests that need a running cluster. */
typedef th_proc proc;

static proc tls_sched = {-1, -1, -1}, tls_worker = {-1, -1, -1};
static char tls_addr[256];

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* A path in the cluster's (or another) directory; rotating buffers. */
static const char *P(const char *d, const char *name)
{
    static char bufs[16][1200];
    static int next;
    char *b = bufs[next++ % 16];

    snprintf(b, sizeof(bufs[0]), "%s/%s", d, name);
    return b;
}

static void write_text(const char *path, const char *text, unsigned mode)
{
    if (tg__certs_write_file(path, text, mode, true) != TG_OK)
        fail_msg("write %s: %s", path, tg_error_last());
}

static bool contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

#define assert_contains(hay, needle)                                      \
    do {                                                                  \
        const char *h_ = (hay);                                           \
        if (!contains(h_, (needle)))                                      \
            fail_msg("expected '%s' in: %s", (needle), h_ ? h_ : "NULL"); \
    } while (0)

static proc start_tls_scheduler(char *addr, size_t len)
{
    char *argv[] = {th_sched_bin,
                    "--listen",
                    "tls://127.0.0.1:0",
                    "--launcher",
                    "none",
                    "--tls-ca",
                    (char *)P(dir, "ca.pem"),
                    "--tls-cert",
                    (char *)P(dir, "scheduler.pem"),
                    "--tls-key",
                    (char *)P(dir, "scheduler-key.pem"),
                    "--log-level",
                    "warn",
                    NULL};
    proc p = th_spawn(argv, true, false);

    th_read_address(&p, addr, len);
    return p;
}

/* A taskgrid-worker with the given certificate (from `d`). */
static proc start_worker(const char *addr, const char *d, const char *cert,
                         const char *key, bool capture_err)
{
    char *argv[] = {th_worker_bin, (char *)addr,
                    "--nthreads",  "2",
                    "--tls-ca",    (char *)P(dir, "ca.pem"),
                    "--tls-cert",  (char *)P(d, cert),
                    "--tls-key",   (char *)P(d, key),
                    "--log-level", "warn",
                    NULL};

    return th_spawn(argv, false, capture_err);
}

static tg_security files(const char *d, const char *cert, const char *key)
{
    tg_security s = TG_SECURITY_INIT;

    s.ca_file = P(dir, "ca.pem");
    if (cert != NULL) {
        s.cert_file = P(d, cert);
        s.key_file = P(d, key);
    }
    return s;
}

/* Connect with `sec`; returns the status, *out the client on TG_OK. */
static int connect_with(const char *addr, const tg_security *sec,
                        tg_client **out)
{
    tg_client_opts o = TG_CLIENT_OPTS_INIT;

    o.security = sec;
    o.connect_timeout_ms = 10000;
    *out = NULL;
    return tg_client_connect(out, addr, &o);
}

static tg_client *connect_ok(const char *addr, const tg_security *sec)
{
    tg_client *c = NULL;

    if (connect_with(addr, sec, &c) != TG_OK)
        fail_msg("connect %s: %s", addr, tg_error_last());
    return c;
}

/* tg.inc over 0..n-1 and a tg.sum of them: n(n+1)/2. */
static void run_sum(tg_client *c, const char *prefix, int n)
{
    tg_task_def defs[65];
    char keys[65][48], in[64][16];
    const char *deps[64];
    tg_future *fs[65];
    const void *data;
    size_t len;
    const char *codec;
    char buf[32];

    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        defs[i] = th_inc_task(prefix, i, keys[i], in[i]);
        deps[i] = keys[i];
    }
    {
        tg_task_def d = TG_TASK_DEF_INIT;

        snprintf(keys[n], sizeof(keys[n]), "%s-sum", prefix);
        d.key = keys[n];
        d.func = "tg.sum";
        d.deps = deps;
        d.ndeps = (size_t)n;
        d.codec = "json";
        defs[n] = d;
    }
    if (tg_client_submit(c, defs, (size_t)n + 1, fs) != TG_OK)
        fail_msg("submit: %s", tg_error_last());
    if (tg_client_gather(c, fs, (size_t)n + 1, 30000) != TG_OK)
        fail_msg("gather: %s", tg_error_last());
    assert_int_equal(tg_future_result(fs[n], &data, &len, &codec), TG_OK);
    assert_true(len < sizeof(buf));
    memcpy(buf, data, len);
    buf[len] = '\0';
    assert_int_equal(strtol(buf, NULL, 10), (long)n * (n + 1) / 2);
    for (int i = 0; i <= n; i++)
        tg_future_free(fs[i]);
}

/* A unary call through the transport with raw PEM material, bypassing the
 * SDK's local checks: what a careless or hostile peer would send. */
static int raw_unary(const char *addr, const char *method, const char *ca,
                     const char *cert, const char *key)
{
    tg__rpc_sec sec = {0};
    char *pem[3] = {NULL, NULL, NULL};
    tg__chan *ch = NULL;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc;

    if (ca)
        sec.ca_pem = pem[0] = th_slurp(ca);
    if (cert)
        sec.cert_pem = pem[1] = th_slurp(cert);
    if (key)
        sec.key_pem = pem[2] = th_slurp(key);
    rc = tg__chan_open(&ch, addr, ca ? &sec : NULL, 0);
    if (rc == TG_OK) {
        /* An empty message is a valid StatusRequest and
         * HealthCheckRequest. */
        rc = tg__chan_unary(ch, method, (const uint8_t *)"", 0, &resp, &rlen,
                            5000);
        free(resp);
        tg__chan_close(ch);
    }
    for (int k = 0; k < 3; k++)
        free(pem[k]);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */
/* ------------------------------------------------------------------ */

/* Issue one more certificate from the cluster CA (dir/ca*.pem). */
static void issue(const char *name, const char *role, bool ou_only,
                  int64_t not_before_s, int64_t not_after_s)
{
    char *cc = th_slurp(P(dir, "ca.pem")), *ck = th_slurp(P(dir, "ca-key.pem"));
    char *cert = NULL, *key = NULL, file[128];
    tg__certs_ca *ca = NULL;
    tg__certs_leaf leaf = {0};

    assert_int_equal(tg__certs_ca_load(&ca, cc, ck), TG_OK);
    leaf.cn = name;
    leaf.role = role;
    leaf.ou_only = ou_only;
    leaf.validity.not_before_s = not_before_s;
    leaf.validity.not_after_s = not_after_s;
    if (tg__certs_issue(ca, &leaf, &cert, &key) != TG_OK)
        fail_msg("issue %s: %s", name, tg_error_last());
    snprintf(file, sizeof(file), "%s.pem", name);
    write_text(P(dir, file), cert, 0644);
    snprintf(file, sizeof(file), "%s-key.pem", name);
    write_text(P(dir, file), key, 0600);
    free(cert);
    free(key);
    free(cc);
    free(ck);
    tg__certs_ca_free(ca);
}

static int group_setup(void **state)
{
    const char *base = getenv("TEST_TMPDIR");
    tg__certs_dir_opts o = {0};
    tg_client *c;
    tg_security s;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/tgsec-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(other, sizeof(other), "%s/other", dir);
    assert_int_equal(mkdir(other, 0700), 0);
    o.write_ca_key = true;
    o.hosts = "localhost,127.0.0.1";
    if (tg__certs_write_dir(dir, &o) != TG_OK ||
        tg__certs_write_dir(other, &o) != TG_OK)
        fail_msg("certificates: %s", tg_error_last());
    issue("expired", "client", false, -2 * 86400, -86400);
    issue("future", "client", false, 86400, 2 * 86400);
    issue("norole", NULL, false, -60, 86400);
    issue("ouclient", "client", true, -60, 86400);

    tls_sched = start_tls_scheduler(tls_addr, sizeof(tls_addr));
    tls_worker =
        start_worker(tls_addr, dir, "worker.pem", "worker-key.pem", false);
    s = files(dir, "client.pem", "client-key.pem");
    c = connect_ok(tls_addr, &s);
    th_wait_workers(c, 1, 15000);
    tg_client_free(c);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    th_stop(&tls_worker, SIGTERM);
    th_stop(&tls_sched, SIGTERM);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Certificates and local checks (no network)                          */
/* ------------------------------------------------------------------ */

static void test_security__certs_carry_roles(void **state)
{
    static const char *const roles[] = {"scheduler", "worker", "client",
                                        "admin"};
    char role[64], file[64];
    struct stat st;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        char *pem;

        snprintf(file, sizeof(file), "%s.pem", roles[i]);
        pem = th_slurp(P(dir, file));
        tg__role_from_pem(pem, strlen(pem), role, sizeof(role), NULL, 0);
        assert_string_equal(role, roles[i]);
        free(pem);
        snprintf(file, sizeof(file), "%s-key.pem", roles[i]);
        assert_int_equal(stat(P(dir, file), &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    {
        char *pem = th_slurp(P(dir, "ouclient.pem"));

        tg__role_from_pem(pem, strlen(pem), role, sizeof(role), NULL, 0);
        assert_string_equal(role, "client");
        free(pem);
        pem = th_slurp(P(dir, "norole.pem"));
        tg__role_from_pem(pem, strlen(pem), role, sizeof(role), NULL, 0);
        assert_string_equal(role, "");
        free(pem);
    }
    /* The cluster's files pass the SDK's checks. */
    for (size_t i = 0; i < 4; i++) {
        char cert[64], key[64];
        tg_security s;
        tg__tls t;

        snprintf(cert, sizeof(cert), "%s.pem", roles[i]);
        snprintf(key, sizeof(key), "%s-key.pem", roles[i]);
        s = files(dir, cert, key);
        if (tg__tls_load(&t, &s, roles[i]) != TG_OK)
            fail_msg("%s: %s", roles[i], tg_error_last());
        assert_string_equal(t.hint, "");
        tg__tls_clear(&t);
    }
}

static void test_security__sdk_checks_before_connecting(void **state)
{
    tg_client *c = NULL;
    tg_security s;
    int64_t t0;
    int rc;

    (void)state;
    /* Key and certificate that are not a pair: a local error naming both
     * files, before any connection (nothing listens on port 1, and the
     * answer is immediate). */
    s = files(dir, "client.pem", "worker-key.pem");
    t0 = th_now_ms();
    rc = connect_with("tls://127.0.0.1:1", &s, &c);
    assert_int_equal(rc, TG_ETLS);
    assert_null(c);
    assert_true(th_now_ms() - t0 < 1000);
    assert_contains(tg_error_last(), "does not belong to");
    assert_contains(tg_error_last(), P(dir, "worker-key.pem"));
    assert_contains(tg_error_last(), P(dir, "client.pem"));

    s = files(dir, "expired.pem", "expired-key.pem");
    assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ETLS);
    assert_contains(tg_error_last(), "client certificate");
    assert_contains(tg_error_last(), P(dir, "expired.pem"));
    assert_contains(tg_error_last(), "expired on");
    assert_contains(tg_error_last(), " UTC");

    s = files(dir, "future.pem", "future-key.pem");
    assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ETLS);
    assert_contains(tg_error_last(), "not valid before");

    s = files(dir, "client.pem", "client-key.pem");
    s.cert_file = P(dir, "missing.pem");
    assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ENOTFOUND);
    assert_contains(tg_error_last(), P(dir, "missing.pem"));

    /* A key where the CA belongs. */
    s = files(dir, "client.pem", "client-key.pem");
    s.ca_file = P(dir, "ca-key.pem");
    assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ETLS);
    assert_contains(tg_error_last(), "client CA");
    assert_contains(tg_error_last(), "no PEM certificate");

    /* Something far too large to be a key. */
    {
        size_t big = (2u << 20) + 1;
        char *junk = malloc(big);

        assert_non_null(junk);
        memset(junk, 'A', big - 1);
        junk[big - 1] = '\0';
        write_text(P(dir, "huge-key.pem"), junk, 0600);
        free(junk);
        s = files(dir, "client.pem", "huge-key.pem");
        assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ETLS);
        assert_contains(tg_error_last(), "larger than");
        assert_contains(tg_error_last(), "client key");
    }

    /* A certificate where the key belongs. */
    s = files(dir, "client.pem", "client.pem");
    assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ETLS);
    assert_contains(tg_error_last(), "no PEM private key");

    /* An encrypted key is refused (never a passphrase prompt). */
    {
        char *pem = th_slurp(P(dir, "client-key.pem"));
        BIO *in = BIO_new_mem_buf(pem, -1), *out = BIO_new(BIO_s_mem());
        EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
        char *data = NULL, *text;
        long n;

        assert_non_null(k);
        assert_int_equal(
            PEM_write_bio_PKCS8PrivateKey(out, k, EVP_aes_256_cbc(), NULL, 0,
                                          NULL, (void *)"secret"),
            1);
        n = BIO_get_mem_data(out, &data);
        text = strndup(data, (size_t)n);
        write_text(P(dir, "encrypted-key.pem"), text, 0600);
        free(text);
        EVP_PKEY_free(k);
        BIO_free(in);
        BIO_free(out);
        free(pem);
        s = files(dir, "client.pem", "encrypted-key.pem");
        assert_int_equal(connect_with("tls://127.0.0.1:1", &s, &c), TG_ETLS);
        assert_contains(tg_error_last(), "is encrypted");
    }
}

static void test_security__hint_names_the_likely_refusal(void **state)
{
    tg_security s;
    tg__tls t;

    (void)state;
    s = files(other, "client.pem", "client-key.pem");
    assert_int_equal(tg__tls_load(&t, &s, "client"), TG_OK);
    assert_contains(t.hint, "is not signed by");
    assert_contains(t.hint, P(dir, "ca.pem"));
    tg__tls_clear(&t);
    s = files(dir, NULL, NULL);
    assert_int_equal(tg__tls_load(&t, &s, "client"), TG_OK);
    assert_contains(t.hint, "presented no certificate");
    tg__tls_clear(&t);
}

static void test_security__policy_table(void **state)
{
    char msg[400];
    unsigned r;

    (void)state;
    r = tgs_auth_method_roles("/taskgrid.v1.WorkerLink/Connect");
    assert_true(tgs_auth_allows(r, "worker"));
    assert_false(tgs_auth_allows(r, "client"));
    assert_false(tgs_auth_allows(r, "admin"));
    assert_false(tgs_auth_allows(r, "scheduler"));
    assert_false(tgs_auth_allows(r, ""));
    tgs_auth_refusal("/taskgrid.v1.WorkerLink/Connect", r, "client", msg,
                     sizeof(msg));
    assert_string_equal(msg, "method WorkerLink/Connect needs role 'worker' "
                             "(this certificate has role 'client')");

    r = tgs_auth_method_roles("/taskgrid.v1.Scheduler/Scale");
    assert_true(tgs_auth_allows(r, "admin"));
    assert_false(tgs_auth_allows(r, "client"));
    assert_false(tgs_auth_allows(r, "worker"));

    r = tgs_auth_method_roles("/taskgrid.v1.Scheduler/Submit");
    assert_true(tgs_auth_allows(r, "client"));
    assert_true(tgs_auth_allows(r, "worker")); /* nested work */
    assert_true(tgs_auth_allows(r, "admin"));
    assert_false(tgs_auth_allows(r, "scheduler"));
    assert_false(tgs_auth_allows(r, "Client")); /* exact names */
    tgs_auth_refusal("/taskgrid.v1.Scheduler/Submit", r, "", msg, sizeof(msg));
    assert_contains(msg, "method Scheduler/Submit needs role 'worker', "
                         "'client' or 'admin'");
    assert_contains(msg, "no taskgrid role");

    for (const char *const *m =
             (const char *const[]){"/taskgrid.v1.Scheduler/Gather",
                                   "/taskgrid.v1.Scheduler/Annotate",
                                   "/taskgrid.v1.Scheduler/Cancel",
                                   "/taskgrid.v1.Scheduler/Release",
                                   "/taskgrid.v1.Scheduler/Status", NULL};
         *m; m++) {
        r = tgs_auth_method_roles(*m);
        assert_true(tgs_auth_allows(r, "client"));
        assert_true(tgs_auth_allows(r, "worker"));
        assert_true(tgs_auth_allows(r, "admin"));
    }
    r = tgs_auth_method_roles("/grpc.health.v1.Health/Check");
    assert_true(tgs_auth_allows(r, ""));
    assert_true(tgs_auth_allows(r, "scheduler"));
    /* Unknown methods admit nobody. */
    assert_int_equal(tgs_auth_method_roles("/taskgrid.v1.Scheduler/Nope"), 0);
}

/* ------------------------------------------------------------------ */
/* Real processes                                                      */
/* ------------------------------------------------------------------ */

static void test_security__mtls_end_to_end(void **state)
{
    tg_client *c;
    tg_security s;
    char *pem[3];

    (void)state;
    assert_true(strncmp(tls_addr, "tls://127.0.0.1:", 16) == 0);
    /* Files. */
    s = files(dir, "client.pem", "client-key.pem");
    c = connect_ok(tls_addr, &s);
    run_sum(c, "e2e-files", 20);
    tg_client_free(c);
    /* The same material as PEM text in memory. */
    pem[0] = th_slurp(P(dir, "ca.pem"));
    pem[1] = th_slurp(P(dir, "client.pem"));
    pem[2] = th_slurp(P(dir, "client-key.pem"));
    s = (tg_security)TG_SECURITY_INIT;
    s.ca_pem = pem[0];
    s.cert_pem = pem[1];
    s.key_pem = pem[2];
    c = connect_ok(tls_addr, &s);
    for (int k = 0; k < 3; k++)
        free(pem[k]);
    run_sum(c, "e2e-pem", 10);
    tg_client_free(c);
    /* A role given only as the OU works as well. */
    s = files(dir, "ouclient.pem", "ouclient-key.pem");
    c = connect_ok(tls_addr, &s);
    run_sum(c, "e2e-ou", 5);
    tg_client_free(c);
}

static void test_security__other_ca_refused(void **state)
{
    tg_client *c = NULL;
    tg_security s;
    int64_t t0 = th_now_ms();

    (void)state;
    /* Trusts the cluster CA, presents a certificate of another CA. */
    s = files(other, "client.pem", "client-key.pem");
    assert_int_equal(connect_with(tls_addr, &s, &c), TG_ETLS);
    assert_null(c);
    /* Said at once, not after retrying "unavailable" for 10 s. */
    assert_true(th_now_ms() - t0 < 5000);
    assert_contains(tg_error_last(), "TLS handshake");
    assert_contains(tg_error_last(), tls_addr);
    assert_contains(tg_error_last(), "not signed by");

    /* The scheduler refuses it at the handshake, checks or not. */
    assert_int_equal(raw_unary(tls_addr, "/taskgrid.v1.Scheduler/Status",
                               P(dir, "ca.pem"), P(other, "client.pem"),
                               P(other, "client-key.pem")),
                     TG_ETLS);
    assert_contains(tg_error_last(), "refuses a certificate");
}

static void test_security__no_client_certificate_refused(void **state)
{
    tg_client *c = NULL;
    tg_security s = files(dir, NULL, NULL);

    (void)state;
    assert_int_equal(connect_with(tls_addr, &s, &c), TG_ETLS);
    assert_null(c);
    assert_contains(tg_error_last(), "presented no certificate");
}

static void test_security__expired_certificate_refused(void **state)
{
    proc w;
    char *err;
    int st;

    (void)state;
    /* Past the SDK's own check, the scheduler refuses it too. */
    assert_int_equal(raw_unary(tls_addr, "/taskgrid.v1.Scheduler/Status",
                               P(dir, "ca.pem"), P(dir, "expired.pem"),
                               P(dir, "expired-key.pem")),
                     TG_ETLS);
    assert_contains(tg_error_last(), "refuses a certificate");
    /* A worker with an expired certificate says so and exits (2: a
     * start-up error) without connecting. */
    w = start_worker(tls_addr, dir, "expired.pem", "expired-key.pem", true);
    st = th_wait_exit(&w, 10000);
    err = th_read_err(&w);
    th_close(&w);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    assert_contains(err, "worker certificate");
    assert_contains(err, "expired on");
    free(err);
}

static void test_security__client_cannot_register_as_worker(void **state)
{
    static const char *const posers[][2] = {
        {"client.pem", "client-key.pem"},
        {"admin.pem", "admin-key.pem"},
    };
    tg__rpc_sec sec = {0};
    tg__chan *ch = NULL;
    tg__cstream *st = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    char *pem[3];
    int rc;

    (void)state;
    /* The protocol: WorkerLink/Connect with a client certificate ends
     * with PERMISSION_DENIED naming the role needed. */
    pem[0] = th_slurp(P(dir, "ca.pem"));
    pem[1] = th_slurp(P(dir, "client.pem"));
    pem[2] = th_slurp(P(dir, "client-key.pem"));
    sec.ca_pem = pem[0];
    sec.cert_pem = pem[1];
    sec.key_pem = pem[2];
    assert_int_equal(tg__chan_open(&ch, tls_addr, &sec, 0), TG_OK);
    assert_int_equal(
        tg__cstream_open(&st, ch, "/taskgrid.v1.WorkerLink/Connect", 0), TG_OK);
    rc = tg__cstream_recv(st, &buf, &len, 5000);
    assert_int_equal(rc, TG_EPERM);
    assert_null(buf);
    assert_contains(tg_error_last(), "needs role 'worker'");
    assert_contains(tg_error_last(), "has role 'client'");
    tg__cstream_free(st);
    tg__chan_close(ch);
    for (int k = 0; k < 3; k++)
        free(pem[k]);

    /* The worker program with such a certificate: refused, and it stops
     * (retrying cannot help) with the scheduler's reason. */
    for (size_t i = 0; i < 2; i++) {
        proc w = start_worker(tls_addr, dir, posers[i][0], posers[i][1], true);
        int wst = th_wait_exit(&w, 15000);
        char *err = th_read_err(&w);

        th_close(&w);
        assert_true(WIFEXITED(wst));
        assert_int_equal(WEXITSTATUS(wst), 1);
        assert_contains(err, "refused this worker");
        assert_contains(err, "needs role 'worker'");
        free(err);
    }
    /* Still one worker: nobody slipped in. */
    {
        tg_security s = files(dir, "client.pem", "client-key.pem");
        tg_client *c = connect_ok(tls_addr, &s);
        tg_status_report *r = NULL;

        assert_int_equal(tg_client_status(c, &r), TG_OK);
        assert_int_equal(tg_status_report_nworkers(r), 1);
        tg_status_report_free(r);
        tg_client_free(c);
    }
}

static void test_security__roles_decide_what_each_may_do(void **state)
{
    tg_client *c;
    tg_security s;
    uint32_t now = 0;

    (void)state;
    /* client: no Scale. */
    s = files(dir, "client.pem", "client-key.pem");
    c = connect_ok(tls_addr, &s);
    assert_int_equal(tg_client_scale(c, 2, &now), TG_EPERM);
    assert_contains(tg_error_last(), "method Scheduler/Scale needs role "
                                     "'admin' (this certificate has role "
                                     "'client')");
    tg_client_free(c);
    /* admin: Scale passes the policy (this scheduler has no launcher, so
     * the scheduler itself then says no). */
    s = files(dir, "admin.pem", "admin-key.pem");
    c = connect_ok(tls_addr, &s);
    assert_int_equal(tg_client_scale(c, 2, &now), TG_ESTATE);
    assert_contains(tg_error_last(), "no launcher");
    run_sum(c, "admin", 3);
    tg_client_free(c);
    /* worker: a full client (nested work), but no Scale. */
    s = files(dir, "worker.pem", "worker-key.pem");
    c = connect_ok(tls_addr, &s);
    run_sum(c, "nested", 3);
    assert_int_equal(tg_client_scale(c, 2, &now), TG_EPERM);
    tg_client_free(c);
    /* No role, or the scheduler's own certificate: Health only. */
    assert_int_equal(raw_unary(tls_addr, "/grpc.health.v1.Health/Check",
                               P(dir, "ca.pem"), P(dir, "norole.pem"),
                               P(dir, "norole-key.pem")),
                     TG_OK);
    assert_int_equal(raw_unary(tls_addr, "/taskgrid.v1.Scheduler/Status",
                               P(dir, "ca.pem"), P(dir, "norole.pem"),
                               P(dir, "norole-key.pem")),
                     TG_EPERM);
    assert_contains(tg_error_last(), "no taskgrid role");
    assert_int_equal(raw_unary(tls_addr, "/taskgrid.v1.Scheduler/Status",
                               P(dir, "ca.pem"), P(dir, "scheduler.pem"),
                               P(dir, "scheduler-key.pem")),
                     TG_EPERM);
    assert_contains(tg_error_last(), "has role 'scheduler'");
    {
        tg_client *n = NULL;

        s = files(dir, "norole.pem", "norole-key.pem");
        assert_int_equal(connect_with(tls_addr, &s, &n), TG_EPERM);
        assert_null(n);
        assert_contains(tg_error_last(), "needs role");
    }
}

static void test_security__worker_side_client_uses_worker_identity(void **state)
{
    tg_security ws = files(dir, "worker.pem", "worker-key.pem"), got;
    tg__tls t;
    const char *addr;
    tg_client *c;

    (void)state;
    /* What taskgrid-worker does at start... */
    assert_null(tg__tls_worker_identity(&got));
    assert_int_equal(tg__tls_load(&t, &ws, "worker"), TG_OK);
    assert_int_equal(tg__tls_worker_identity_set(tls_addr, &t), TG_OK);
    tg__tls_clear(&t);
    assert_int_equal(tg__tls_worker_identity_set(tls_addr, NULL), TG_ESTATE);
    /* ...and what a nested client then connects with: the worker's own
     * certificate, which the scheduler admits for nested work. */
    addr = tg__tls_worker_identity(&got);
    assert_string_equal(addr, tls_addr);
    assert_non_null(got.cert_pem);
    assert_null(got.cert_file);
    c = connect_ok(addr, &got);
    run_sum(c, "nested-identity", 4);
    tg_client_free(c);
}

static void test_security__plaintext_client_to_tls_port_refused(void **state)
{
    char plain[300];
    tg_client *c = NULL;
    int64_t t0 = th_now_ms();

    (void)state;
    snprintf(plain, sizeof(plain), "tcp://%s", tls_addr + 6);
    assert_int_equal(connect_with(plain, NULL, &c), TG_ETLS);
    assert_null(c);
    assert_true(th_now_ms() - t0 < 5000);
    assert_contains(tg_error_last(), "requires TLS");
    assert_contains(tg_error_last(), tls_addr);
}

static void test_security__tls_client_to_plaintext_port(void **state)
{
    char *argv[] = {th_sched_bin, "--listen", "tcp://127.0.0.1:0",
                    "--launcher", "none",     "--log-level",
                    "warn",       NULL};
    char addr[256], tls[300];
    proc p = th_spawn(argv, true, false);
    tg_client *c = NULL;
    tg_security s = files(dir, "client.pem", "client-key.pem");

    (void)state;
    th_read_address(&p, addr, sizeof(addr));
    snprintf(tls, sizeof(tls), "tls://%s", addr + 6);
    assert_int_equal(connect_with(tls, &s, &c), TG_ETLS);
    assert_null(c);
    assert_contains(tg_error_last(), "does not speak TLS");
    th_stop(&p, SIGTERM);
}

static void test_security__scheduler_checks_its_files(void **state)
{
    char *argv[] = {th_sched_bin,
                    "--listen",
                    "tls://127.0.0.1:0",
                    "--tls-ca",
                    (char *)P(dir, "ca.pem"),
                    "--tls-cert",
                    (char *)P(dir, "scheduler.pem"),
                    "--tls-key",
                    (char *)P(dir, "client-key.pem"),
                    NULL};
    char *argv2[] = {th_sched_bin,
                     "--listen",
                     "tls://127.0.0.1:0",
                     "--tls-ca",
                     (char *)P(dir, "ca.pem"),
                     "--tls-cert",
                     (char *)P(dir, "scheduler.pem"),
                     "--tls-key",
                     (char *)P(dir, "scheduler-key.pem"),
                     "--workers",
                     "1",
                     NULL};
    proc p;
    char *err;
    int st;

    (void)state;
    p = th_spawn(argv, false, true);
    st = th_wait_exit(&p, 10000);
    err = th_read_err(&p);
    th_close(&p);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    assert_contains(err, "scheduler key");
    assert_contains(err, "does not belong to");
    free(err);
    /* Starting workers needs a worker certificate for them. */
    p = th_spawn(argv2, false, true);
    st = th_wait_exit(&p, 10000);
    err = th_read_err(&p);
    th_close(&p);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    assert_contains(err, "--worker-tls-cert");
    free(err);
}

static void test_security__certs_tool(void **state)
{
    char d[720];
    char *argv[] = {th_certs_bin, d,
                    "--days",     "30",
                    "--hosts",    "localhost,127.0.0.1,sched.example",
                    NULL};
    char *argv_issue[] = {th_certs_bin, d, "--issue", "worker", "host2", NULL};
    proc p;
    tg_security s = TG_SECURITY_INIT;
    tg__tls t;
    char role[64];

    (void)state;
    snprintf(d, sizeof(d), "%s/tool", dir);
    assert_int_equal(mkdir(d, 0700), 0);
    p = th_spawn(argv, true, false);
    assert_int_equal(th_wait_exit(&p, 10000), 0);
    th_close(&p);
    /* A second run refuses to overwrite (exit 1). */
    p = th_spawn(argv, true, true);
    {
        int st = th_wait_exit(&p, 10000);
        char *err = th_read_err(&p);

        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 1);
        assert_contains(err, "already exists");
        free(err);
    }
    th_close(&p);
    p = th_spawn(argv_issue, true, false);
    assert_int_equal(th_wait_exit(&p, 10000), 0);
    th_close(&p);
    s.ca_file = P(d, "ca.pem");
    s.cert_file = P(d, "host2.pem");
    s.key_file = P(d, "host2-key.pem");
    assert_int_equal(tg__tls_load(&t, &s, "worker"), TG_OK);
    tg__role_from_pem(t.cert_pem, strlen(t.cert_pem), role, sizeof(role), NULL,
                      0);
    assert_string_equal(role, "worker");
    assert_string_equal(t.hint, "");
    tg__tls_clear(&t);
}

static void test_security__secure_local_cluster(void **state)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    const tg_security *sec;
    tg_client *c, *plain = NULL;
    char certdir[800];
    struct stat st;
    int rc;

    (void)state;
    o.n_workers = 2;
    o.threads_per_worker = 1;
    o.secure = true;
    rc = tg_cluster_start(&cl, &o);
    if (rc != TG_OK)
        fail_msg("secure cluster: %s", tg_error_last());
    assert_true(strncmp(tg_cluster_address(cl), "tls://127.0.0.1:", 16) == 0);
    sec = tg_cluster_security(cl);
    assert_non_null(sec);
    assert_non_null(sec->ca_file);
    snprintf(certdir, sizeof(certdir), "%s", sec->ca_file);
    *strrchr(certdir, '/') = '\0';
    assert_int_equal(stat(certdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    c = connect_ok(tg_cluster_address(cl), sec);
    run_sum(c, "local", 30);
    tg_client_free(c);
    /* The owner's certificate may scale the cluster. */
    assert_int_equal(tg_cluster_scale(cl, 1), TG_OK);
    assert_int_equal(tg_cluster_nworkers(cl), 1);
    /* Plaintext is refused on its port. */
    {
        char addr[300];

        snprintf(addr, sizeof(addr), "tcp://%s", tg_cluster_address(cl) + 6);
        assert_int_equal(connect_with(addr, NULL, &plain), TG_ETLS);
    }
    tg_cluster_free(cl);
    /* Its certificates are gone with it. */
    assert_int_equal(stat(certdir, &st), -1);
    assert_int_equal(errno, ENOENT);
    /* A plaintext cluster has no security options. */
    assert_null(tg_cluster_security(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_security__certs_carry_roles),
        cmocka_unit_test(test_security__sdk_checks_before_connecting),
        cmocka_unit_test(test_security__hint_names_the_likely_refusal),
        cmocka_unit_test(test_security__policy_table),
        cmocka_unit_test(test_security__mtls_end_to_end),
        cmocka_unit_test(test_security__other_ca_refused),
        cmocka_unit_test(test_security__no_client_certificate_refused),
        cmocka_unit_test(test_security__expired_certificate_refused),
        cmocka_unit_test(test_security__client_cannot_register_as_worker),
        cmocka_unit_test(test_security__roles_decide_what_each_may_do),
        cmocka_unit_test(
            test_security__worker_side_client_uses_worker_identity),
        cmocka_unit_test(test_security__plaintext_client_to_tls_port_refused),
        cmocka_unit_test(test_security__tls_client_to_plaintext_port),
        cmocka_unit_test(test_security__scheduler_checks_its_files),
        cmocka_unit_test(test_security__certs_tool),
        cmocka_unit_test(test_security__secure_local_cluster),
    };

    signal(SIGPIPE, SIG_IGN);
    th_find_bins();
    setenv("TASKGRID_BIN_DIR", th_bin_dir, 0);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
