/* SPDX-License-Identifier: Apache-2.0
 *
 * direct_fetch_test.c: tg_client_opts.direct_to_workers against real
 * taskgrid-scheduler and taskgrid-worker processes on loopback. The
 * holder's exit line ("data: held N (B bytes), served N (B bytes), ...,
 * uploaded N (B bytes)") tells where the bytes went: "served" counts
 * what it sent with DataService.Fetch, "uploaded" what it sent up to the
 * scheduler, the only way a held result's bytes reach the scheduler (a
 * relayed Gather). So served 1, uploaded 0 means the bytes went straight
 * to the client.
 *
 * - A 30 MB result gathered directly is served by its holder (served 1,
 *   its exact bytes, uploaded 0) and equals the bytes; a default client
 *   on the same cluster gets its result relayed (uploaded 1).
 * - A holder advertising a data address nobody listens on: the result
 *   still comes whole, through the scheduler, after one warning naming
 *   the holder and why.
 * - Over mutual TLS a default worker refuses the client's certificate
 *   (the result comes through the scheduler, the warning says
 *   PERMISSION_DENIED and names --data-clients); a worker started with
 *   --data-clients serves it directly.
 * Every wait is bounded.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "util/certs.h"

#define MB (1000u * 1000u)
#define BIG (30u * MB)
#define WAIT_MS 60000

/* A test's scratch directory (certificates, worker logs). */
static char dir[512];

static const char *path_in(const char *name)
{
    static char bufs[32][700];
    static int next;
    char *b = bufs[next++ % 32];

    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("expected '%s' in: %s", needle, hay ? hay : "NULL");
}

/* `n` bytes that differ with `seed`, so equal sizes give distinct
 * scatter keys and a misplaced chunk shows. */
static char *pattern(size_t n, uint32_t seed)
{
    char *b = malloc(n);
    uint32_t x = seed * 2654435761u + 1;

    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (char)(x >> 24);
    }
    return b;
}

/* A port on 127.0.0.1 that nobody listens on (bound, then let go). */
static int free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A taskgrid-worker logging at info level into the file `log` (a file,
 * not a pipe nobody reads until exit, so logging never blocks it). It
 * gets SIGKILL if the test process dies. */
static th_proc start_worker(const char *addr, const char *name, const char *log,
                            const char *const *extra)
{
    char *argv[32];
    size_t i = 0;
    th_proc p = TH_PROC_NONE;
    pid_t parent = getpid();

    argv[i++] = th_worker_bin;
    argv[i++] = (char *)addr;
    argv[i++] = "--name";
    argv[i++] = (char *)name;
    argv[i++] = "--nthreads";
    argv[i++] = "2";
    argv[i++] = "--log-level";
    argv[i++] = "info";
    for (size_t k = 0; extra != NULL && extra[k] != NULL; k++) {
        assert_true(i + 1 < sizeof(argv) / sizeof(argv[0]));
        argv[i++] = (char *)extra[k];
    }
    argv[i] = NULL;
    p.pid = fork();
    assert_true(p.pid >= 0);
    if (p.pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || fd < 0)
            _exit(1);
        dup2(fd, 2);
        close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

/* A holder's exit counters, from its "data:" line. */
typedef struct counters {
    unsigned long long held, held_b, served, served_b, fetched, fetched_b,
        local, local_b, uploaded, uploaded_b;
} counters;

/* Stop the worker (SIGTERM, it must exit cleanly) and read its counters. */
static counters stop_worker(th_proc *p, const char *log)
{
    counters c;
    char *text, *line;
    int st = th_stop(p, SIGTERM);

    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    text = th_slurp(log);
    line = strstr(text, "data: held ");
    if (line == NULL)
        fail_msg("no counters line in the worker's log: %s", text);
    if (sscanf(line,
               "data: held %llu (%llu bytes), served %llu (%llu bytes), "
               "fetched %llu (%llu bytes), local %llu (%llu bytes), "
               "uploaded %llu (%llu bytes)",
               &c.held, &c.held_b, &c.served, &c.served_b, &c.fetched,
               &c.fetched_b, &c.local, &c.local_b, &c.uploaded,
               &c.uploaded_b) != 10)
        fail_msg("cannot read the counters line: %.300s", line);
    free(text);
    return c;
}

/* Where a holder's bytes went: `served` results (`served_b` bytes) by
 * Fetch, `uploaded` (`uploaded_b` bytes) to the scheduler. */
static void assert_moved(const counters *k, unsigned long long served,
                         unsigned long long served_b,
                         unsigned long long uploaded,
                         unsigned long long uploaded_b)
{
    assert_int_equal(k->served, served);
    assert_int_equal(k->served_b, served_b);
    assert_int_equal(k->uploaded, uploaded);
    assert_int_equal(k->uploaded_b, uploaded_b);
}

static tg_client *connect_client(const char *addr, const tg_security *sec,
                                 bool direct)
{
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    tg_client *c = NULL;

    o.security = sec;
    o.direct_to_workers = direct;
    if (tg_client_connect(&c, addr, &o) != TG_OK)
        fail_msg("connect %s: %s", addr, tg_error_last());
    return c;
}

/* Scatter `data` onto worker `where`; the future. */
static tg_future *scatter_on(tg_client *c, const char *data, size_t n,
                             const char *where)
{
    const char *w[] = {where};
    tg_future *f = NULL;

    if (tg_client_scatter(c, data, n, "raw", w, 1, &f) != TG_OK)
        fail_msg("scatter: %s", tg_error_last());
    return f;
}

/* Gather the `nf` futures `fs` one call each, in order, with stderr
 * captured (no assertion meanwhile: a failure must not leave it so);
 * then check that fs[i] holds exactly want[i] (`n` bytes). What the
 * client wrote to stderr (its warnings; free()). */
static char *gather_checked(tg_client *c, tg_future *const *fs,
                            const char *const *want, size_t nf, size_t n)
{
    char err[4][512];
    int rc[4];
    char *warned;

    assert_true(nf <= 4);
    th_capture_begin(path_in("client.log"));
    for (size_t i = 0; i < nf; i++) {
        rc[i] = tg_client_gather(c, &fs[i], 1, WAIT_MS);
        snprintf(err[i], sizeof(err[i]), "%s",
                 rc[i] == TG_OK ? "" : tg_error_last());
    }
    warned = th_capture_end();
    for (size_t i = 0; i < nf; i++) {
        const void *got;
        const char *codec;
        size_t len;

        if (rc[i] != TG_OK)
            fail_msg("gather %zu: %s (client log: %s)", i, err[i], warned);
        if (tg_future_result(fs[i], &got, &len, &codec) != TG_OK)
            fail_msg("result %zu: %s", i, tg_error_last());
        assert_int_equal(len, n);
        assert_string_equal(codec, "raw");
        assert_memory_equal(got, want[i], n);
    }
    return warned;
}

static int setup(void **state)
{
    const char *base = getenv("TEST_TMPDIR");

    (void)state;
    snprintf(dir, sizeof(dir), "%s/tgdirect-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static void test_direct__the_holder_serves_the_client(void **s)
{
    const char *extra[] = {"--launcher", "none", NULL};
    const char *log = path_in("holder.log");
    char addr[256], *big = pattern(BIG, 1), *small = pattern(2 * MB, 2);
    char *warned;
    th_proc sched, w;
    tg_client *direct, *gateway;
    tg_future *f, *g;
    counters k;

    (void)s;
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    w = start_worker(addr, "holder", log, NULL);
    direct = connect_client(addr, NULL, true);
    gateway = connect_client(addr, NULL, false);
    th_wait_workers(direct, 1, 15000);

    f = scatter_on(direct, big, BIG, "holder");
    warned = gather_checked(direct, &f, (const char *const *)&big, 1, BIG);
    assert_int_equal(th_count(warned, "direct_to_workers"), 0);
    free(warned);
    /* The control: a default client's result comes through the
     * scheduler, which the holder's upload counter shows. */
    g = scatter_on(gateway, small, 2 * MB, "holder");
    free(gather_checked(gateway, &g, (const char *const *)&small, 1, 2 * MB));

    tg_future_free(f);
    tg_future_free(g);
    tg_client_free(direct);
    tg_client_free(gateway);
    k = stop_worker(&w, log);
    assert_int_equal(k.held, 2);
    assert_moved(&k, 1, BIG, 1, 2 * MB);
    th_stop(&sched, SIGTERM);
    free(big);
    free(small);
}

static void test_direct__an_unreachable_holder_falls_back(void **s)
{
    const char *extra[] = {"--launcher", "none", NULL};
    const char *log = path_in("unreachable.log");
    char addr[256], nobody[64], holder[96], *data = pattern(3 * MB, 3);
    char *warned;
    tg_future *fs[2];
    const char *want[2];
    const char *wargs[] = {"--data-address", nobody, NULL};
    th_proc sched, w;
    tg_client *c;
    tg_future *f;
    counters k;

    (void)s;
    snprintf(nobody, sizeof(nobody), "127.0.0.1:%d", free_port());
    snprintf(holder, sizeof(holder), "holder %s: UNAVAILABLE", nobody);
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    w = start_worker(addr, "holder", log, wargs);
    c = connect_client(addr, NULL, true);
    th_wait_workers(c, 1, 15000);

    f = scatter_on(c, data, 3 * MB, "holder");
    /* Twice: final after the first, so the second fetches nothing and
     * warns no more. */
    fs[0] = fs[1] = f;
    want[0] = want[1] = data;
    warned = gather_checked(c, fs, want, 2, 3 * MB);
    assert_int_equal(th_count(warned, "direct_to_workers"), 1);
    assert_contains(warned, holder);
    {
        char key[160];

        snprintf(key, sizeof(key), "result '%s' (3000000 bytes)",
                 tg_future_key(f));
        assert_contains(warned, key);
    }
    assert_contains(warned, "getting it through the scheduler instead");
    free(warned);

    tg_future_free(f);
    tg_client_free(c);
    k = stop_worker(&w, log);
    assert_moved(&k, 0, 0, 1, 3 * MB);
    th_stop(&sched, SIGTERM);
    free(data);
}

static void test_direct__tls_needs_data_clients(void **s)
{
    const char *extra[] = {"--launcher", "none",
                           "--tls-ca",   path_in("ca.pem"),
                           "--tls-cert", path_in("scheduler.pem"),
                           "--tls-key",  path_in("scheduler-key.pem"),
                           NULL};
    const char *wtls[] = {"--tls-ca",   path_in("ca.pem"),
                          "--tls-cert", path_in("worker.pem"),
                          "--tls-key",  path_in("worker-key.pem"),
                          NULL};
    const char *wopen[] = {"--tls-ca",       path_in("ca.pem"),
                           "--tls-cert",     path_in("worker.pem"),
                           "--tls-key",      path_in("worker-key.pem"),
                           "--data-clients", NULL};
    const char *closed_log = path_in("closed.log"),
               *open_log = path_in("open.log");
    tg__certs_dir_opts co = {0};
    tg_security sec = TG_SECURITY_INIT;
    char addr[256], *a = pattern(3 * MB, 4), *b = pattern(3 * MB, 5);
    char *warned;
    tg_future *fs[2];
    const char *want[2];
    th_proc sched, closed, open;
    tg_client *c;
    tg_future *refused, *admitted;
    counters kc, ko;

    (void)s;
    co.hosts = "localhost,127.0.0.1";
    if (tg__certs_write_dir(dir, &co) != TG_OK)
        fail_msg("certificates: %s", tg_error_last());
    sched = th_start_scheduler("tls://127.0.0.1:0", extra, addr, sizeof(addr));
    closed = start_worker(addr, "closed", closed_log, wtls);
    open = start_worker(addr, "open", open_log, wopen);
    sec.ca_file = path_in("ca.pem");
    sec.cert_file = path_in("client.pem");
    sec.key_file = path_in("client-key.pem");
    c = connect_client(addr, &sec, true);
    th_wait_workers(c, 2, 15000);

    fs[0] = refused = scatter_on(c, a, 3 * MB, "closed");
    fs[1] = admitted = scatter_on(c, b, 3 * MB, "open");
    want[0] = a;
    want[1] = b;
    warned = gather_checked(c, fs, want, 2, 3 * MB);
    assert_int_equal(th_count(warned, "direct_to_workers"), 1);
    assert_contains(warned, "PERMISSION_DENIED");
    assert_contains(warned, "--data-clients");
    assert_contains(warned, tg_future_key(refused));
    free(warned);

    tg_future_free(refused);
    tg_future_free(admitted);
    tg_client_free(c);
    kc = stop_worker(&closed, closed_log);
    ko = stop_worker(&open, open_log);
    assert_moved(&kc, 0, 0, 1, 3 * MB);
    assert_moved(&ko, 1, 3 * MB, 0, 0);
    th_stop(&sched, SIGTERM);
    free(a);
    free(b);
}

/* Options of version 1 (before direct_to_workers) still connect, and
 * the option is off by default. */
static void test_direct__off_by_default(void **s)
{
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    tg_client *c = NULL;

    (void)s;
    assert_false(o.direct_to_workers);
    assert_int_equal(o.version, 2);
    o.version = 1;
    o.lazy = true;
    assert_int_equal(tg_client_connect(&c, "tcp://127.0.0.1:1", &o), TG_OK);
    tg_client_free(c);
    o.version = 3;
    assert_int_equal(tg_client_connect(&c, "tcp://127.0.0.1:1", &o), TG_EINVAL);
    assert_contains(tg_error_last(), "TG_CLIENT_OPTS_INIT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct__off_by_default),
        cmocka_unit_test(test_direct__the_holder_serves_the_client),
        cmocka_unit_test(test_direct__an_unreachable_holder_falls_back),
        cmocka_unit_test(test_direct__tls_needs_data_clients),
    };

    th_find_bins();
    return cmocka_run_group_tests(tests, setup, NULL);
}
