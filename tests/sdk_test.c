/* SPDX-License-Identifier: Apache-2.0
 *
 * sdk_test.c: cmocka unit tests of libtaskgrid's client and local cluster
 * that need no taskgrid daemon. Option and argument validation, address
 * and security errors, key generation, and the client's protocol behaviour
 * (submit batching, streamed gather, batched releases, status) against an
 * in-process fake Scheduler served by the server side of the transport
 * (transport/server.h); the local cluster runs fake `taskgrid-scheduler`
 * shell scripts. Depends on //sdk:taskgrid, //transport:server,
 * //proto:wire, //util and cmocka.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "taskgrid/taskgrid.h"
#include "transport/server.h"
#include "wire.h"

/* Nothing listens on port 1 of loopback: connections are refused. */
#define DEAD_ADDR "tcp://127.0.0.1:1"

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

/* A temporary directory for the test (removed by the test's teardown is
 * not needed: Bazel cleans TEST_TMPDIR). */
static void make_tmpdir(char *buf, size_t len)
{
    const char *base = getenv("TEST_TMPDIR");

    snprintf(buf, len, "%s/sdkXXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* ------------------------------------------------------------------ */
/* A fake Scheduler in this process                                    */
/* ------------------------------------------------------------------ */

enum {
    M_SUBMIT,
    M_GATHER,
    M_SCALE,
    M_ANNOTATE,
    M_CANCEL,
    M_RELEASE,
    M_STATUS,
    M_COUNT
};

static const tg__method fake_methods[M_COUNT] = {
    {"/taskgrid.v1.Scheduler/Submit", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Gather", TG__SERVER_STREAM},
    {"/taskgrid.v1.Scheduler/Scale", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Annotate", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Cancel", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Release", TG__UNARY},
    {"/taskgrid.v1.Scheduler/Status", TG__UNARY},
};

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static void strvec_add(strvec *s, const char *p, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        assert_non_null(s->v);
    }
    s->v[s->n] = malloc(len + 1);
    memcpy(s->v[s->n], p, len);
    s->v[s->n][len] = '\0';
    s->n++;
}

static void strvec_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static bool strvec_has(const strvec *s, const char *k)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], k) == 0)
            return true;
    return false;
}

/* A Gather call left open because some of its keys are "slow-". */
typedef struct pending {
    tg__scall *call;
    int64_t deadline; /* 0: none */
    strvec slow;
} pending;

typedef struct fake {
    pthread_mutex_t mu;
    tg__server *srv;
    pthread_t thread;
    char addr[64];
    /* Recorded requests (under mu). */
    size_t nsubmits;
    size_t submit_sizes[64];
    char client_id[300];
    strvec submitted;
    size_t ngathers;
    size_t gather_max_keys;
    bool last_no_wait;
    uint32_t last_gather_timeout;
    strvec gathered; /* keys asked for, over all calls */
    strvec released;
    size_t released_at_status; /* released.n seen by the last Status */
    size_t nstatus;
    uint32_t nworkers;
    bool last_has_priority;
    int32_t last_priority;
    pending pend[16];
    size_t npend;
} fake;

static void reply(tg__scall *c, const pb_msgdesc_t *f, const void *msg)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(tg__wire_encode(f, msg, &buf, &len), 0);
    tg__scall_reply(c, buf, len);
}

static void send_msg(tg__scall *c, const pb_msgdesc_t *f, const void *msg)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(tg__wire_encode(f, msg, &buf, &len), 0);
    tg__scall_send(c, buf, len);
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Answer one key the way the fake's naming rules say. */
static void fill_result(taskgrid_v1_TaskResult *r, const char *key,
                        char *scratch, size_t scratchlen)
{
    memset(r, 0, sizeof(*r));
    r->key = tg_pbbuf_str(key);
    if (has_prefix(key, "err-")) {
        r->state = taskgrid_v1_TaskState_TASK_STATE_ERRED;
        r->has_error = true;
        snprintf(scratch, scratchlen, "bad %s", key);
        r->error.type = tg_pbbuf_str("ValueError");
        r->error.message = tg_pbbuf_str(scratch);
        r->error.traceback = tg_pbbuf_str("Traceback: line 1");
        r->error.origin_key = tg_pbbuf_str("origin-1");
    } else if (has_prefix(key, "can-")) {
        r->state = taskgrid_v1_TaskState_TASK_STATE_CANCELLED;
    } else if (has_prefix(key, "rel-")) {
        r->state = taskgrid_v1_TaskState_TASK_STATE_RELEASED;
    } else if (has_prefix(key, "slow-")) {
        r->state = taskgrid_v1_TaskState_TASK_STATE_PROCESSING;
    } else {
        r->state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        snprintf(scratch, scratchlen, "\"v:%s\"", key);
        r->data = tg_pbbuf_str(scratch);
        r->codec = tg_pbbuf_str("json");
        r->attempt = 1;
        r->worker = tg_pbbuf_str("w-7");
        r->run_us = 1234;
    }
}

/* Send the current state of `keys` in messages of up to 1,000 results. */
static void send_results(tg__scall *c, char *const *keys, size_t n)
{
    enum { BATCH = 1000 };
    taskgrid_v1_TaskResult *rs = calloc(BATCH, sizeof(*rs));
    char(*scratch)[160] = calloc(BATCH, sizeof(*scratch));

    assert_non_null(rs);
    assert_non_null(scratch);
    for (size_t i = 0; i < n; i += BATCH) {
        taskgrid_v1_GatherResponse resp;
        size_t k = n - i < BATCH ? n - i : BATCH;

        for (size_t j = 0; j < k; j++)
            fill_result(&rs[j], keys[i + j], scratch[j], sizeof(scratch[j]));
        memset(&resp, 0, sizeof(resp));
        resp.results_count = (pb_size_t)k;
        resp.results = rs;
        send_msg(c, taskgrid_v1_GatherResponse_fields, &resp);
    }
    free(rs);
    free(scratch);
}

static void on_gather(fake *f, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_GatherRequest g;
    pending *p = NULL;

    assert_int_equal(
        tg__wire_decode(taskgrid_v1_GatherRequest_fields, &g, req, len), 0);
    pthread_mutex_lock(&f->mu);
    f->ngathers++;
    if (g.keys_count > f->gather_max_keys)
        f->gather_max_keys = g.keys_count;
    f->last_no_wait = g.no_wait;
    f->last_gather_timeout = g.timeout_ms;
    for (pb_size_t i = 0; i < g.keys_count; i++) {
        strvec_add(&f->gathered, g.keys[i], strlen(g.keys[i]));
        if (has_prefix(g.keys[i], "slow-") && !g.no_wait) {
            if (p == NULL) {
                assert_true(f->npend < 16);
                p = &f->pend[f->npend++];
                memset(p, 0, sizeof(*p));
                p->call = c;
                p->deadline = g.timeout_ms ? now_ms() + g.timeout_ms : 0;
            }
            strvec_add(&p->slow, g.keys[i], strlen(g.keys[i]));
        }
    }
    pthread_mutex_unlock(&f->mu);
    /* Everything answers at once; slow keys report "processing" first and
     * their call stays open until its time limit. */
    send_results(c, g.keys, g.keys_count);
    if (p == NULL)
        tg__scall_finish(c, TG_OK, "");
    tg__wire_release(taskgrid_v1_GatherRequest_fields, &g);
}

static void on_submit(fake *f, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_SubmitRequest s;
    taskgrid_v1_SubmitResponse r;
    char msg[1200];

    assert_int_equal(
        tg__wire_decode(taskgrid_v1_SubmitRequest_fields, &s, req, len), 0);
    for (pb_size_t i = 0; i < s.tasks_count; i++) {
        if (tg_pbbuf_eq(s.tasks[i].func, "bad.func")) {
            snprintf(msg, sizeof(msg),
                     "task '%.*s': function bad.func is "
                     "refused",
                     (int)s.tasks[i].key.len, (const char *)s.tasks[i].key.ptr);
            tg__scall_finish(c, TG_EINVAL, msg);
            tg__wire_release(taskgrid_v1_SubmitRequest_fields, &s);
            return;
        }
    }
    pthread_mutex_lock(&f->mu);
    if (f->nsubmits < 64)
        f->submit_sizes[f->nsubmits] = s.tasks_count;
    f->nsubmits++;
    snprintf(f->client_id, sizeof(f->client_id), "%.*s", (int)s.client_id.len,
             (const char *)s.client_id.ptr);
    for (pb_size_t i = 0; i < s.tasks_count; i++)
        strvec_add(&f->submitted, (const char *)s.tasks[i].key.ptr,
                   s.tasks[i].key.len);
    pthread_mutex_unlock(&f->mu);
    memset(&r, 0, sizeof(r));
    r.accepted = s.tasks_count;
    reply(c, taskgrid_v1_SubmitResponse_fields, &r);
    tg__wire_release(taskgrid_v1_SubmitRequest_fields, &s);
}

static void on_status(fake *f, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_StatusRequest s;
    taskgrid_v1_StatusResponse r;
    taskgrid_v1_WorkerInfo w[8];
    taskgrid_v1_KeyStatus ks;
    char names[8][16];

    assert_int_equal(
        tg__wire_decode(taskgrid_v1_StatusRequest_fields, &s, req, len), 0);
    memset(&r, 0, sizeof(r));
    memset(w, 0, sizeof(w));
    pthread_mutex_lock(&f->mu);
    f->nstatus++;
    f->released_at_status = f->released.n;
    r.workers_count = (pb_size_t)(f->nworkers < 8 ? f->nworkers : 8);
    pthread_mutex_unlock(&f->mu);
    for (pb_size_t i = 0; i < r.workers_count; i++) {
        snprintf(names[i], sizeof(names[i]), "w-%u", (unsigned)i);
        w[i].name = tg_pbbuf_str(names[i]);
        w[i].nthreads = 2;
        w[i].processing = i;
        w[i].draining = false;
    }
    r.workers = w;
    r.waiting = 1;
    r.ready = 2;
    r.processing = 3;
    r.memory = 4;
    r.erred = 5;
    r.cancelled = 6;
    r.unplaceable = 7;
    r.version = tg_pbbuf_str("fake-1");
    if (s.keys_count > 0) {
        memset(&ks, 0, sizeof(ks));
        ks.key = tg_pbbuf_str(s.keys[0]);
        ks.state = taskgrid_v1_TaskState_TASK_STATE_READY;
        ks.reason = tg_pbbuf_str("no worker provides function 'x.y'");
        r.keys_count = 1;
        r.keys = &ks;
    }
    reply(c, taskgrid_v1_StatusResponse_fields, &r);
    tg__wire_release(taskgrid_v1_StatusRequest_fields, &s);
}

static void on_keys(fake *f, tg__scall *c, size_t method, const uint8_t *req,
                    size_t len)
{
    if (method == M_RELEASE) {
        taskgrid_v1_ReleaseRequest q;
        taskgrid_v1_ReleaseResponse r;

        assert_int_equal(
            tg__wire_decode(taskgrid_v1_ReleaseRequest_fields, &q, req, len),
            0);
        pthread_mutex_lock(&f->mu);
        for (pb_size_t i = 0; i < q.keys_count; i++)
            strvec_add(&f->released, q.keys[i], strlen(q.keys[i]));
        pthread_mutex_unlock(&f->mu);
        memset(&r, 0, sizeof(r));
        r.released = q.keys_count;
        reply(c, taskgrid_v1_ReleaseResponse_fields, &r);
        tg__wire_release(taskgrid_v1_ReleaseRequest_fields, &q);
    } else if (method == M_CANCEL) {
        taskgrid_v1_CancelRequest q;
        taskgrid_v1_CancelResponse r;

        assert_int_equal(
            tg__wire_decode(taskgrid_v1_CancelRequest_fields, &q, req, len), 0);
        memset(&r, 0, sizeof(r));
        r.cancelled = 2 * q.keys_count; /* each key has one dependent */
        reply(c, taskgrid_v1_CancelResponse_fields, &r);
        tg__wire_release(taskgrid_v1_CancelRequest_fields, &q);
    } else {
        taskgrid_v1_AnnotateRequest q;
        taskgrid_v1_AnnotateResponse r;

        assert_int_equal(
            tg__wire_decode(taskgrid_v1_AnnotateRequest_fields, &q, req, len),
            0);
        pthread_mutex_lock(&f->mu);
        f->last_has_priority = q.annotation.has_priority;
        f->last_priority = q.annotation.priority;
        pthread_mutex_unlock(&f->mu);
        memset(&r, 0, sizeof(r));
        r.changed = q.keys_count;
        reply(c, taskgrid_v1_AnnotateResponse_fields, &r);
        tg__wire_release(taskgrid_v1_AnnotateRequest_fields, &q);
    }
}

static void fake_on_call(void *ud, tg__scall *c, size_t method,
                         const uint8_t *req, size_t len)
{
    fake *f = ud;

    switch (method) {
    case M_SUBMIT:
        on_submit(f, c, req, len);
        break;
    case M_GATHER:
        on_gather(f, c, req, len);
        break;
    case M_STATUS:
        on_status(f, c, req, len);
        break;
    case M_SCALE: {
        taskgrid_v1_ScaleRequest q;
        taskgrid_v1_ScaleResponse r;

        assert_int_equal(
            tg__wire_decode(taskgrid_v1_ScaleRequest_fields, &q, req, len), 0);
        memset(&r, 0, sizeof(r));
        pthread_mutex_lock(&f->mu);
        r.workers = f->nworkers;
        if (q.maximum == 0)
            f->nworkers = q.workers;
        r.target = q.workers;
        pthread_mutex_unlock(&f->mu);
        reply(c, taskgrid_v1_ScaleResponse_fields, &r);
        break;
    }
    default:
        on_keys(f, c, method, req, len);
        break;
    }
}

static void pending_drop(fake *f, size_t i)
{
    strvec_free(&f->pend[i].slow);
    f->pend[i] = f->pend[--f->npend];
}

static void fake_on_done(void *ud, tg__scall *c)
{
    fake *f = ud;

    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->npend; i++)
        if (f->pend[i].call == c) {
            pending_drop(f, i);
            break;
        }
    pthread_mutex_unlock(&f->mu);
}

/* Honour GatherRequest.timeout_ms as the scheduler does: answer pending
 * keys with their state and end with DEADLINE_EXCEEDED. */
static void fake_on_tick(void *ud, int64_t now)
{
    fake *f = ud;

    (void)now;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->npend;) {
        pending *p = &f->pend[i];

        if (p->deadline && now_ms() >= p->deadline) {
            send_results(p->call, p->slow.v, p->slow.n);
            tg__scall_finish(p->call, TG_ETIMEDOUT, "gather timed out");
            pending_drop(f, i);
            continue;
        }
        i++;
    }
    pthread_mutex_unlock(&f->mu);
}

static const tg__server_ops fake_ops = {fake_on_call, NULL, fake_on_done,
                                        fake_on_tick};

static void *fake_run(void *arg)
{
    tg__server_run(((fake *)arg)->srv);
    return NULL;
}

static int fake_setup(void **state)
{
    fake *f = calloc(1, sizeof(*f));
    tg__server_opts o = {"tcp://127.0.0.1:0", NULL, 0, 10};

    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    f->nworkers = 2;
    assert_int_equal(
        tg__server_new(&f->srv, &o, fake_methods, M_COUNT, &fake_ops, f),
        TG_OK);
    snprintf(f->addr, sizeof(f->addr), "tcp://127.0.0.1:%d",
             tg__server_port(f->srv));
    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
    *state = f;
    return 0;
}

static int fake_teardown(void **state)
{
    fake *f = *state;

    tg__server_stop(f->srv);
    pthread_join(f->thread, NULL);
    tg__server_free(f->srv);
    while (f->npend)
        pending_drop(f, 0);
    strvec_free(&f->submitted);
    strvec_free(&f->gathered);
    strvec_free(&f->released);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static tg_client *fake_client(fake *f)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;

    o.connect_timeout_ms = 5000;
    if (tg_client_connect(&c, f->addr, &o) != TG_OK)
        fail_msg("connect %s: %s", f->addr, tg_error_last());
    return c;
}

/* A lazy client to an address where nothing listens. */
static tg_client *dead_client(void)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;

    o.lazy = true;
    o.timeout_ms = 2000;
    assert_int_equal(tg_client_connect(&c, DEAD_ADDR, &o), TG_OK);
    return c;
}

/* ------------------------------------------------------------------ */
/* Options, arguments, addresses                                       */
/* ------------------------------------------------------------------ */

static void test_sdk_client__opts_init_gives_defaults(void **state)
{
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    tg_task_def d = TG_TASK_DEF_INIT;
    tg_cluster_opts co = TG_CLUSTER_OPTS_INIT;
    tg_security s = TG_SECURITY_INIT;
    tg_annotation a = TG_ANNOTATION_INIT;

    (void)state;
    assert_int_equal(o.version, TG_CLIENT_OPTS_VERSION);
    assert_int_equal(o.timeout_ms, 30000);
    assert_int_equal(o.connect_timeout_ms, 10000);
    assert_null(o.client_id);
    assert_null(o.security);
    assert_false(o.lazy);
    assert_int_equal(d.version, TG_TASK_DEF_VERSION);
    assert_null(d.key);
    assert_int_equal(d.ndeps, 0);
    assert_int_equal(co.version, TG_CLUSTER_OPTS_VERSION);
    assert_true(co.processes);
    assert_int_equal(co.n_workers, 0);
    assert_int_equal(s.version, TG_SECURITY_VERSION);
    assert_int_equal(a.version, TG_ANNOTATION_VERSION);
    assert_false(a.set_priority);
}

static void test_sdk_client__free_null_is_noop(void **state)
{
    (void)state;
    tg_client_free(NULL);
    tg_future_free(NULL);
    tg_cluster_free(NULL);
    tg_status_report_free(NULL);
    assert_int_equal(tg_future_state(NULL), TG_TASK_RELEASED);
    assert_false(tg_future_done(NULL));
    assert_null(tg_future_key(NULL));
    assert_string_equal(tg_task_state_name(TG_TASK_MEMORY), "memory");
    assert_string_equal(tg_task_state_name(TG_TASK_PENDING), "pending");
    assert_string_equal(tg_task_state_name((tg_task_state)99), "unknown");
}

static void test_sdk_client__connect_rejects_bad_arguments(void **state)
{
    static const char *bad[] = {"",         "http://127.0.0.1:8786",
                                "unix:/x",  "127.0.0.1",
                                "tcp://:1", "tcp://host:port"};
    tg_client *c = (tg_client *)&c;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;

    (void)state;
    assert_int_equal(tg_client_connect(NULL, DEAD_ADDR, NULL), TG_EINVAL);
    assert_int_equal(tg_client_connect(&c, NULL, NULL), TG_EINVAL);
    assert_null(c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = (tg_client *)&c;
        assert_int_equal(tg_client_connect(&c, bad[i], NULL), TG_EINVAL);
        assert_null(c);
        assert_true(tg_error_last()[0] != '\0');
    }
    o.version = 99;
    assert_int_equal(tg_client_connect(&c, DEAD_ADDR, &o), TG_EINVAL);
    assert_true(contains(tg_error_last(), "TG_CLIENT_OPTS_INIT"));
    o = (tg_client_opts)TG_CLIENT_OPTS_INIT;
    o.timeout_ms = -5;
    assert_int_equal(tg_client_connect(&c, DEAD_ADDR, &o), TG_EINVAL);
    o = (tg_client_opts)TG_CLIENT_OPTS_INIT;
    o.client_id = "";
    assert_int_equal(tg_client_connect(&c, DEAD_ADDR, &o), TG_EINVAL);
}

static void test_sdk_client__connect_refused_names_address(void **state)
{
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    int64_t t0 = now_ms();

    (void)state;
    o.connect_timeout_ms = 3000;
    assert_int_equal(tg_client_connect(&c, DEAD_ADDR, &o), TG_EUNAVAILABLE);
    assert_null(c);
    assert_true(contains(tg_error_last(), "127.0.0.1:1"));
    assert_true(now_ms() - t0 < 3500);
}

static void test_sdk_client__lazy_connect_defers_errors(void **state)
{
    tg_client *c = dead_client();
    tg_status_report *r = (tg_status_report *)&r;

    (void)state;
    assert_string_equal(tg_client_address(c), DEAD_ADDR);
    assert_true(has_prefix(tg_client_id(c), "client-"));
    assert_int_equal(tg_client_status(c, &r), TG_EUNAVAILABLE);
    assert_null(r);
    tg_client_free(c);
}

static void test_sdk_client__security_errors_are_clear(void **state)
{
    char dir[256], notpem[300], pem[300];
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    tg_security s = TG_SECURITY_INIT;
    int rc;

    (void)state;
    make_tmpdir(dir, sizeof(dir));
    snprintf(notpem, sizeof(notpem), "%s/ca.txt", dir);
    snprintf(pem, sizeof(pem), "%s/ca.pem", dir);
    write_file(notpem, "hello\n", 0644);
    write_file(pem,
               "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
               0644);
    o.lazy = true;
    o.security = &s;

    /* tls:// without security material. */
    rc = tg_client_connect(&c, "tls://127.0.0.1:1", NULL);
    assert_true(rc == TG_ETLS || rc == TG_EINVAL);
    assert_true(contains(tg_error_last(), "TLS"));

    s.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(tg_client_connect(&c, "tls://127.0.0.1:1", &o),
                     TG_ENOTFOUND);
    assert_true(contains(tg_error_last(), "/nonexistent/ca.pem"));

    s.ca_file = notpem;
    assert_int_equal(tg_client_connect(&c, "tls://127.0.0.1:1", &o), TG_ETLS);
    assert_true(contains(tg_error_last(), "not PEM"));

    s.ca_file = pem;
    s.ca_pem = "-----BEGIN CERTIFICATE-----\n";
    assert_int_equal(tg_client_connect(&c, "tls://127.0.0.1:1", &o), TG_EINVAL);
    assert_true(contains(tg_error_last(), "not both"));

    s = (tg_security)TG_SECURITY_INIT;
    s.cert_file = pem;
    assert_int_equal(tg_client_connect(&c, "tls://127.0.0.1:1", &o), TG_EINVAL);
    assert_true(contains(tg_error_last(), "CA"));

    s.ca_file = pem;
    assert_int_equal(tg_client_connect(&c, "tls://127.0.0.1:1", &o), TG_EINVAL);
    assert_true(contains(tg_error_last(), "together"));

    /* Security material with a plaintext address is refused, not
     * silently ignored. */
    s = (tg_security)TG_SECURITY_INIT;
    s.ca_file = pem;
    rc = tg_client_connect(&c, "tcp://127.0.0.1:1", &o);
    assert_true(rc == TG_ETLS || rc == TG_EINVAL);
    assert_true(contains(tg_error_last(), "tls://"));

    s.version = 7;
    assert_int_equal(tg_client_connect(&c, "tls://127.0.0.1:1", &o), TG_EINVAL);
    assert_null(c);
}

/* ------------------------------------------------------------------ */
/* Keys                                                                */
/* ------------------------------------------------------------------ */

static bool is_key_of(const char *key, const char *func)
{
    size_t n = strlen(func);

    if (strncmp(key, func, n) != 0 || key[n] != '-' || strlen(key) != n + 17)
        return false;
    return strspn(key + n + 1, "0123456789abcdef") == 16;
}

static void test_sdk_key__generate_format_and_errors(void **state)
{
    char buf[TG_KEY_MAX + 1], small[10];
    char *longfunc = malloc(3000);

    (void)state;
    assert_int_equal(tg_key_generate(buf, sizeof(buf), "tg.inc"), TG_OK);
    assert_true(is_key_of(buf, "tg.inc"));
    assert_int_equal(tg_key_generate(small, sizeof(small), "tg.inc"),
                     TG_EINVAL);
    assert_int_equal(tg_key_generate(NULL, 10, "x"), TG_EINVAL);
    assert_int_equal(tg_key_generate(buf, sizeof(buf), NULL), TG_EINVAL);
    /* Exactly strlen(func) + 18 is enough. */
    assert_int_equal(tg_key_generate(small, 9 + 1, "a"), TG_EINVAL);
    assert_int_equal(tg_key_generate(buf, 19, "a"), TG_OK);
    assert_true(is_key_of(buf, "a"));
    /* A huge function name is cut so the key stays within TG_KEY_MAX. */
    memset(longfunc, 'f', 2999);
    longfunc[2999] = '\0';
    assert_int_equal(tg_key_generate(buf, sizeof(buf), longfunc), TG_OK);
    assert_int_equal(strlen(buf), TG_KEY_MAX);
    free(longfunc);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_sdk_key__generate_is_unique(void **state)
{
    enum { N = 200000 };
    char *arena = malloc((size_t)N * 24);
    char **keys = malloc((size_t)N * sizeof(*keys));

    (void)state;
    assert_non_null(arena);
    for (size_t i = 0; i < N; i++) {
        keys[i] = arena + i * 24;
        assert_int_equal(tg_key_generate(keys[i], 24, "f"), TG_OK);
    }
    qsort(keys, N, sizeof(*keys), cmp_str);
    for (size_t i = 1; i < N; i++)
        assert_true(strcmp(keys[i - 1], keys[i]) != 0);
    free(keys);
    free(arena);
}

static void test_sdk_key__forked_child_does_not_repeat_parent(void **state)
{
    char mine[64], theirs[64] = "";
    int fds[2];
    pid_t pid;
    ssize_t n;

    (void)state;
    assert_int_equal(tg_key_generate(mine, sizeof(mine), "f"), TG_OK);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char k[64];

        tg_key_generate(k, sizeof(k), "f");
        if (write(fds[1], k, strlen(k) + 1) < 0)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    n = read(fds[0], theirs, sizeof(theirs) - 1);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    assert_true(n > 0);
    assert_int_equal(tg_key_generate(mine, sizeof(mine), "f"), TG_OK);
    assert_true(is_key_of(theirs, "f"));
    assert_string_not_equal(mine, theirs);
}

/* ------------------------------------------------------------------ */
/* Submit: validation (no network needed)                              */
/* ------------------------------------------------------------------ */

static void expect_invalid(tg_client *c, const tg_task_def *d,
                           const char *words)
{
    tg_future *f = (tg_future *)&f;

    assert_int_equal(tg_client_submit(c, d, 1, &f), TG_EINVAL);
    if (!contains(tg_error_last(), words))
        fail_msg("message '%s' lacks '%s'", tg_error_last(), words);
    assert_ptr_equal(f, (tg_future *)&f); /* untouched */
}

static void test_sdk_client__submit_validates_definitions(void **state)
{
    tg_client *c = dead_client();
    const char *deps_bad[] = {"a", NULL};
    const char *workers_bad[] = {""};
    tg_resource res_bad[] = {{"GPU", -1}};
    tg_resource res_noname[] = {{NULL, 1}};
    tg_task_def d = TG_TASK_DEF_INIT;
    tg_future *f = NULL;
    char longkey[TG_KEY_MAX + 2];

    (void)state;
    expect_invalid(c, &d, "no function");
    d.func = "tg.noop";
    d.version = 0;
    expect_invalid(c, &d, "TG_TASK_DEF_INIT");
    d.version = TG_TASK_DEF_VERSION;
    d.key = "";
    expect_invalid(c, &d, "key");
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    d.key = longkey;
    expect_invalid(c, &d, "key");
    d.key = "k1";
    d.input_len = 3;
    expect_invalid(c, &d, "input");
    d.input_len = 0;
    d.ndeps = 2;
    expect_invalid(c, &d, "deps");
    d.deps = deps_bad;
    expect_invalid(c, &d, "dependency 1");
    d.ndeps = 0;
    d.nresources = 1;
    expect_invalid(c, &d, "resources");
    d.resources = res_bad;
    expect_invalid(c, &d, "GPU");
    d.resources = res_noname;
    expect_invalid(c, &d, "no name");
    d.nresources = 0;
    d.workers = workers_bad;
    d.nworkers = 1;
    expect_invalid(c, &d, "worker 0");
    d.nworkers = 0;

    assert_int_equal(tg_client_submit(NULL, &d, 1, &f), TG_EINVAL);
    assert_int_equal(tg_client_submit(c, NULL, 1, &f), TG_EINVAL);
    assert_int_equal(tg_client_submit(c, &d, 1, NULL), TG_EINVAL);
    assert_int_equal(tg_client_submit(c, NULL, 0, NULL), TG_OK);
    /* A valid task without a scheduler: a transport error, no future. */
    assert_int_equal(tg_client_submit(c, &d, 1, &f), TG_EUNAVAILABLE);
    assert_null(f);
    tg_client_free(c);
}

static void test_sdk_client__calls_check_arguments(void **state)
{
    tg_client *c = dead_client();
    const char *keys[] = {"a", ""};
    tg_annotation a = TG_ANNOTATION_INIT;
    tg_task_state st;
    uint32_t n = 7;

    (void)state;
    assert_int_equal(tg_client_gather(NULL, NULL, 1, 0), TG_EINVAL);
    assert_int_equal(tg_client_gather(c, NULL, 0, 0), TG_OK);
    assert_int_equal(tg_client_gather(c, NULL, 1, 0), TG_EINVAL);
    assert_int_equal(tg_client_cancel(c, keys, 2, &n), TG_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(tg_client_release(c, NULL, 1), TG_EINVAL);
    assert_int_equal(tg_client_annotate(c, keys, 1, NULL, NULL), TG_EINVAL);
    a.version = 0;
    assert_int_equal(tg_client_annotate(c, keys, 1, &a, NULL), TG_EINVAL);
    assert_int_equal(tg_client_adapt(c, 3, 2), TG_EINVAL);
    assert_int_equal(tg_client_adapt(c, 0, 0), TG_EINVAL);
    assert_int_equal(tg_client_key_status(c, NULL, &st, NULL, 0), TG_EINVAL);
    assert_int_equal(tg_client_status(c, NULL), TG_EINVAL);
    assert_int_equal(tg_future_wait(NULL, 0), TG_EINVAL);
    tg_client_free(c);
}

/* ------------------------------------------------------------------ */
/* Against the fake scheduler                                          */
/* ------------------------------------------------------------------ */

static tg_future **submit_keys(tg_client *c, char **keys, size_t n)
{
    tg_task_def *d = calloc(n, sizeof(*d));
    tg_future **fs = calloc(n, sizeof(*fs));

    for (size_t i = 0; i < n; i++) {
        d[i] = (tg_task_def)TG_TASK_DEF_INIT;
        d[i].key = keys ? keys[i] : NULL;
        d[i].func = "tg.noop";
    }
    if (tg_client_submit(c, d, n, fs) != TG_OK)
        fail_msg("submit: %s", tg_error_last());
    free(d);
    return fs;
}

static void free_all(tg_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
    free(fs);
}

static void test_sdk_client__submit_splits_large_graphs_in_order(void **state)
{
    enum { N = 25000 };
    fake *f = *state;
    tg_client *c = fake_client(f);
    tg_future **fs = submit_keys(c, NULL, N);

    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nsubmits, 3);
    assert_int_equal(f->submit_sizes[0], 10000);
    assert_int_equal(f->submit_sizes[1], 10000);
    assert_int_equal(f->submit_sizes[2], 5000);
    assert_string_equal(f->client_id, tg_client_id(c));
    assert_int_equal(f->submitted.n, N);
    for (size_t i = 0; i < N; i++) {
        assert_string_equal(f->submitted.v[i], tg_future_key(fs[i]));
        assert_true(is_key_of(f->submitted.v[i], "tg.noop"));
    }
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(tg_future_state(fs[i]), TG_TASK_PENDING);
    free_all(fs, N);
    tg_client_free(c);
}

static void test_sdk_client__submit_respects_message_size(void **state)
{
    fake *f = *state;
    tg_client *c = NULL;
    tg_client_opts o = TG_CLIENT_OPTS_INIT;
    size_t big = 3u << 20; /* 3 MiB each; limit/4 = 2 MiB */
    char *input = calloc(1, 9u << 20);
    tg_task_def d[3];
    tg_future *fs[3] = {NULL, NULL, NULL};

    o.max_message = 8u << 20;
    assert_int_equal(tg_client_connect(&c, f->addr, &o), TG_OK);
    for (int i = 0; i < 3; i++) {
        d[i] = (tg_task_def)TG_TASK_DEF_INIT;
        d[i].func = "tg.echo";
        d[i].input = input;
        d[i].input_len = big;
    }
    assert_int_equal(tg_client_submit(c, d, 3, fs), TG_OK);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nsubmits, 3); /* one task per message */
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < 3; i++)
        tg_future_free(fs[i]);

    /* Over the message limit: refused before sending. */
    d[0].input_len = 9u << 20;
    fs[0] = NULL;
    assert_int_equal(tg_client_submit(c, d, 1, fs), TG_ETOOBIG);
    assert_true(contains(tg_error_last(), "message limit"));
    assert_null(fs[0]);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nsubmits, 3);
    pthread_mutex_unlock(&f->mu);
    free(input);
    tg_client_free(c);
}

static void test_sdk_client__submit_refusal_keeps_server_message(void **state)
{
    enum { N = 10001 };
    fake *f = *state;
    tg_client *c = fake_client(f);
    tg_task_def *d = calloc(N, sizeof(*d));
    tg_future **fs = calloc(N, sizeof(*fs));
    char(*keys)[32] = calloc(N, sizeof(*keys));

    for (size_t i = 0; i < N; i++) {
        d[i] = (tg_task_def)TG_TASK_DEF_INIT;
        snprintf(keys[i], sizeof(keys[i]), "k-%zu", i);
        d[i].key = keys[i];
        d[i].func = i == N - 1 ? "bad.func" : "tg.noop";
    }
    assert_int_equal(tg_client_submit(c, d, N, fs), TG_EINVAL);
    assert_string_equal(tg_error_last(),
                        "task 'k-10000': function bad.func is refused");
    assert_null(fs[0]);
    tg_client_free(c);
    /* The first message was accepted: its keys are released; the refused
     * one's are not (they may belong to someone else). */
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->released.n, 10000);
    assert_true(strvec_has(&f->released, "k-0"));
    assert_true(strvec_has(&f->released, "k-9999"));
    assert_false(strvec_has(&f->released, "k-10000"));
    pthread_mutex_unlock(&f->mu);
    free(d);
    free(fs);
    free(keys);
}

static void test_sdk_client__gather_fills_results_and_errors(void **state)
{
    fake *f = *state;
    tg_client *c = fake_client(f);
    char *keys[] = {"a", "err-b", "can-c", "rel-d", "e"};
    tg_future **fs = submit_keys(c, keys, 5);
    const void *data;
    const char *codec, *type, *msg, *tb;
    size_t len;

    assert_int_equal(tg_future_result(fs[0], &data, &len, &codec), TG_ESTATE);
    assert_int_equal(tg_client_gather(c, fs, 5, 5000), TG_OK);
    assert_int_equal(tg_future_state(fs[0]), TG_TASK_MEMORY);
    assert_true(tg_future_done(fs[0]));
    assert_int_equal(tg_future_result(fs[0], &data, &len, &codec), TG_OK);
    assert_int_equal(len, 5);
    assert_string_equal((const char *)data, "\"v:a\""); /* NUL-terminated */
    assert_string_equal(codec, "json");
    assert_int_equal(tg_future_error(fs[0], &type, &msg, &tb), TG_ESTATE);
    uint64_t us = 99;
    assert_string_equal(tg_future_worker(fs[0], &us), "w-7");
    assert_int_equal(us, 1234);
    assert_ptr_equal(tg_future_worker(fs[0], NULL),
                     tg_future_worker(fs[4], NULL));

    assert_int_equal(tg_future_state(fs[1]), TG_TASK_ERRED);
    assert_int_equal(tg_future_result(fs[1], &data, &len, NULL), TG_ETASK);
    assert_true(contains(tg_error_last(), "bad err-b"));
    assert_int_equal(tg_future_error(fs[1], &type, &msg, &tb), TG_OK);
    assert_string_equal(type, "ValueError");
    assert_string_equal(msg, "bad err-b");
    assert_string_equal(tb, "Traceback: line 1");
    assert_string_equal(tg_future_error_origin(fs[1]), "origin-1");

    assert_int_equal(tg_future_state(fs[2]), TG_TASK_CANCELLED);
    assert_int_equal(tg_future_result(fs[2], &data, &len, NULL), TG_ECANCELLED);
    assert_int_equal(tg_future_error(fs[2], &type, &msg, NULL), TG_OK);
    assert_string_equal(type, "");
    assert_null(tg_future_error_origin(fs[2]));
    assert_null(tg_future_worker(fs[2], &us)); /* no run of its own */
    assert_int_equal(us, 0);

    assert_int_equal(tg_future_state(fs[3]), TG_TASK_RELEASED);
    assert_int_equal(tg_future_result(fs[3], &data, &len, NULL), TG_ENOTFOUND);

    /* Final futures are not asked for again. */
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->ngathers, 1);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_client_gather(c, fs, 5, 5000), TG_OK);
    assert_int_equal(tg_future_wait(fs[4], 5000), TG_OK);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->ngathers, 1);
    pthread_mutex_unlock(&f->mu);
    free_all(fs, 5);
    tg_client_free(c);
}

static void test_sdk_client__gather_many_keys_in_few_streams(void **state)
{
    enum { N = 25000 };
    fake *f = *state;
    tg_client *c = fake_client(f);
    tg_future **fs = submit_keys(c, NULL, N);
    int64_t t0 = now_ms();

    assert_int_equal(tg_client_gather(c, fs, N, 20000), TG_OK);
    print_message("gathered %d keys in %lld ms\n", N,
                  (long long)(now_ms() - t0));
    for (size_t i = 0; i < N; i++) {
        const void *data;
        size_t len;
        char want[64];

        assert_int_equal(tg_future_result(fs[i], &data, &len, NULL), TG_OK);
        snprintf(want, sizeof(want), "\"v:%s\"", tg_future_key(fs[i]));
        assert_string_equal((const char *)data, want);
    }
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->ngathers, 3);
    assert_int_equal(f->gather_max_keys, 10000);
    assert_int_equal(f->gathered.n, N);
    pthread_mutex_unlock(&f->mu);
    free_all(fs, N);
    tg_client_free(c);
}

static void test_sdk_client__gather_folds_duplicates(void **state)
{
    fake *f = *state;
    tg_client *c = fake_client(f);
    char *keys[] = {"same", "same", "other"};
    tg_future **fs = submit_keys(c, keys, 3);
    tg_future *list[5];
    tg_status_report *r = NULL;
    const void *d0, *d1;
    size_t l0, l1;

    list[0] = fs[0];
    list[1] = fs[1];
    list[2] = fs[0]; /* the same future twice */
    list[3] = fs[2];
    list[4] = fs[2];
    assert_int_equal(tg_client_gather(c, list, 5, 5000), TG_OK);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->gathered.n, 2); /* each key asked once */
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_future_result(fs[0], &d0, &l0, NULL), TG_OK);
    assert_int_equal(tg_future_result(fs[1], &d1, &l1, NULL), TG_OK);
    assert_string_equal((const char *)d0, "\"v:same\"");
    assert_string_equal((const char *)d1, "\"v:same\"");

    /* Freeing one of two futures of a key keeps the key held. */
    tg_future_free(fs[0]);
    assert_int_equal(tg_client_status(c, &r), TG_OK);
    tg_status_report_free(r);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->released.n, 0);
    pthread_mutex_unlock(&f->mu);
    tg_future_free(fs[1]);
    assert_int_equal(tg_client_status(c, &r), TG_OK);
    tg_status_report_free(r);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->released.n, 1);
    assert_string_equal(f->released.v[0], "same");
    pthread_mutex_unlock(&f->mu);
    tg_future_free(fs[2]);
    free(fs);
    tg_client_free(c);
}

static void test_sdk_client__gather_times_out_with_states(void **state)
{
    fake *f = *state;
    tg_client *c = fake_client(f);
    char *keys[] = {"slow-1", "fast"};
    tg_future **fs = submit_keys(c, keys, 2);
    int64_t t0 = now_ms(), took;

    assert_int_equal(tg_client_gather(c, fs, 2, 300), TG_ETIMEDOUT);
    took = now_ms() - t0;
    assert_true(took >= 250);
    assert_true(took < 2000);
    assert_true(contains(tg_error_last(), "1 of 2"));
    pthread_mutex_lock(&f->mu);
    assert_true(f->last_gather_timeout > 0 && f->last_gather_timeout <= 300);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_future_state(fs[0]), TG_TASK_PROCESSING);
    assert_int_equal(tg_future_state(fs[1]), TG_TASK_MEMORY);

    /* A poll (timeout 0) asks without waiting. */
    assert_int_equal(tg_future_wait(fs[0], 0), TG_ETIMEDOUT);
    pthread_mutex_lock(&f->mu);
    assert_true(f->last_no_wait);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_future_state(fs[0]), TG_TASK_PROCESSING);
    free_all(fs, 2);
    tg_client_free(c);
}

static void test_sdk_client__freed_futures_are_released_in_batches(void **state)
{
    fake *f = *state;
    tg_client *c = fake_client(f);
    char *keys[] = {"r1", "r2", "r3", "dup", "dup", "kept"};
    tg_future **fs = submit_keys(c, keys, 6);
    tg_status_report *r = NULL;

    tg_future_free(fs[0]);
    tg_future_free(fs[1]);
    tg_future_free(fs[2]);
    tg_future_free(fs[3]); /* "dup" is still held by fs[4] */
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->released.n, 0); /* freeing never blocks */
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_client_status(c, &r), TG_OK);
    tg_status_report_free(r);
    pthread_mutex_lock(&f->mu);
    /* Released in one batch, before the next call. */
    assert_int_equal(f->released_at_status, 3);
    assert_true(strvec_has(&f->released, "r1"));
    assert_true(strvec_has(&f->released, "r3"));
    assert_false(strvec_has(&f->released, "dup"));
    pthread_mutex_unlock(&f->mu);

    /* Freeing the client releases what is still held; futures stay
     * readable but can no longer wait. */
    assert_int_equal(tg_client_gather(c, &fs[5], 1, 5000), TG_OK);
    tg_client_free(c);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->released.n, 5);
    assert_true(strvec_has(&f->released, "dup"));
    assert_true(strvec_has(&f->released, "kept"));
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_future_wait(fs[4], 100), TG_ESTATE);
    assert_int_equal(tg_future_state(fs[5]), TG_TASK_MEMORY);
    assert_string_equal(tg_future_key(fs[5]), "kept");
    tg_future_free(fs[4]);
    tg_future_free(fs[5]);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->released.n, 5);
    pthread_mutex_unlock(&f->mu);
    free(fs);
}

static void test_sdk_client__status_cancel_annotate_scale(void **state)
{
    fake *f = *state;
    tg_client *c = fake_client(f);
    tg_status_report *r = NULL;
    const char *keys[] = {"x", "y"};
    tg_annotation a = TG_ANNOTATION_INIT;
    tg_task_state st;
    char reason[16];
    uint32_t n = 0;

    assert_int_equal(tg_client_status(c, &r), TG_OK);
    assert_int_equal(tg_status_report_nworkers(r), 2);
    assert_string_equal(tg_status_report_worker_name(r, 1), "w-1");
    assert_null(tg_status_report_worker_name(r, 2));
    assert_int_equal(tg_status_report_worker_nthreads(r, 0), 2);
    assert_int_equal(tg_status_report_worker_processing(r, 1), 1);
    assert_false(tg_status_report_worker_draining(r, 0));
    assert_int_equal(tg_status_report_nthreads(r), 4);
    assert_int_equal(tg_status_report_count(r, TG_TASK_WAITING), 1);
    assert_int_equal(tg_status_report_count(r, TG_TASK_CANCELLED), 6);
    assert_int_equal(tg_status_report_count(r, TG_TASK_RELEASED), 0);
    assert_int_equal(tg_status_report_unplaceable(r), 7);
    assert_string_equal(tg_status_report_version(r), "fake-1");
    tg_status_report_free(r);

    assert_int_equal(tg_client_key_status(c, "x", &st, reason, sizeof(reason)),
                     TG_OK);
    assert_int_equal(st, TG_TASK_READY);
    assert_string_equal(reason, "no worker provi"); /* truncated */

    assert_int_equal(tg_client_cancel(c, keys, 2, &n), TG_OK);
    assert_int_equal(n, 4);
    a.set_priority = true;
    a.priority = -10;
    assert_int_equal(tg_client_annotate(c, keys, 2, &a, &n), TG_OK);
    assert_int_equal(n, 2);
    pthread_mutex_lock(&f->mu);
    assert_true(f->last_has_priority);
    assert_int_equal(f->last_priority, -10);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(tg_client_release(c, keys, 2), TG_OK);
    assert_int_equal(tg_client_scale(c, 5, &n), TG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(tg_client_adapt(c, 1, 4), TG_OK);
    tg_client_free(c);
}

/* ------------------------------------------------------------------ */
/* Local cluster                                                       */
/* ------------------------------------------------------------------ */

/* Make a bin dir with a fake scheduler script and a dummy worker. */
static void fake_bins(char *dir, size_t len, const char *script)
{
    char path[512];

    make_tmpdir(dir, len);
    snprintf(path, sizeof(path), "%s/taskgrid-scheduler", dir);
    write_file(path, script, 0755);
    snprintf(path, sizeof(path), "%s/taskgrid-worker", dir);
    write_file(path, "#!/bin/sh\nexit 0\n", 0755);
}

/* True if `pid` is gone (or a zombie waiting for init). */
static bool proc_gone(pid_t pid)
{
    char path[64], buf[256];
    FILE *f;
    char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return true;
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    p = p ? strrchr(buf, ')') : NULL;
    return p != NULL && p[1] == ' ' && p[2] == 'Z';
}

static void test_sdk_cluster__opts_are_checked(void **state)
{
    tg_cluster *cl = (tg_cluster *)&cl;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;

    (void)state;
    assert_int_equal(tg_cluster_start(NULL, NULL), TG_EINVAL);
    o.version = 3;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_EINVAL);
    assert_null(cl);
    o = (tg_cluster_opts)TG_CLUSTER_OPTS_INIT;
    o.resources = "GPU 1";
    assert_int_equal(tg_cluster_start(&cl, &o), TG_EINVAL);
    o.resources = NULL;
    o.preload = "/nonexistent/libx.so";
    assert_int_equal(tg_cluster_start(&cl, &o), TG_ENOTFOUND);
    assert_true(contains(tg_error_last(), "/nonexistent/libx.so"));
    o.preload = NULL;
    o.n_workers = 100000;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_EINVAL);
    assert_null(tg_cluster_address(NULL));
    assert_int_equal(tg_cluster_scale(NULL, 1), TG_EINVAL);
}

static void test_sdk_cluster__missing_binary_says_how_to_build(void **state)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    char dir[256];

    (void)state;
    make_tmpdir(dir, sizeof(dir));
    o.bin_dir = dir;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_ENOTFOUND);
    assert_null(cl);
    assert_true(contains(tg_error_last(), "taskgrid-scheduler"));
    assert_true(contains(tg_error_last(), dir));
    assert_true(contains(tg_error_last(), "bazel build //scheduler //worker"));
}

static void test_sdk_cluster__scheduler_exit_is_reported(void **state)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    char dir[256];

    (void)state;
    fake_bins(dir, sizeof(dir), "#!/bin/sh\necho oops >&2\nexit 3\n");
    o.bin_dir = dir;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_EIO);
    assert_null(cl);
    assert_true(contains(tg_error_last(), "status 3"));
}

static void test_sdk_cluster__bad_first_line_is_a_protocol_error(void **state)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    char dir[256];

    (void)state;
    fake_bins(dir, sizeof(dir),
              "#!/bin/sh\necho 'hello world'\nexec sleep 30\n");
    o.bin_dir = dir;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_EPROTO);
    assert_true(contains(tg_error_last(), "hello world"));
}

static void
test_sdk_cluster__silent_scheduler_times_out_leaving_nothing(void **state)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    char dir[256], script[1024], pidfile[300], buf[32] = "";
    int64_t t0;
    FILE *f;
    pid_t stray;

    (void)state;
    make_tmpdir(dir, sizeof(dir));
    snprintf(pidfile, sizeof(pidfile), "%s/stray.pid", dir);
    /* A background child in the scheduler's group, as a worker would be,
     * and a scheduler that ignores SIGTERM. */
    snprintf(script, sizeof(script),
             "#!/bin/sh\nsleep 60 &\necho $! > %s\ntrap '' TERM\n"
             "while true; do sleep 1; done\n",
             pidfile);
    fake_bins(dir, sizeof(dir), script);
    o.bin_dir = dir;
    o.start_timeout_ms = 300;
    t0 = now_ms();
    assert_int_equal(tg_cluster_start(&cl, &o), TG_ETIMEDOUT);
    assert_true(contains(tg_error_last(), "did not print its address"));
    /* 300 ms start limit + 5 s SIGTERM grace, then SIGKILL. */
    assert_true(now_ms() - t0 < 8000);
    f = fopen(pidfile, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    stray = (pid_t)atoi(buf);
    assert_true(stray > 0);
    for (int i = 0; i < 100 && !proc_gone(stray); i++)
        usleep(10000);
    assert_true(proc_gone(stray));
}

static void test_sdk_cluster__starts_waits_for_workers_and_scales(void **state)
{
    fake *f = *state;
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    char dir[256], script[1024], argsfile[300], lib[300], args[2048] = "";
    char want[1024];
    FILE *fp;

    make_tmpdir(dir, sizeof(dir));
    snprintf(argsfile, sizeof(argsfile), "%s/args", dir);
    snprintf(lib, sizeof(lib), "%s/libx.so", dir);
    write_file(lib, "", 0644);
    snprintf(script, sizeof(script),
             "#!/bin/sh\necho \"$@\" > %s\n"
             "echo 'taskgrid-scheduler listening on %s'\n"
             "echo 'more output'\nexec sleep 30\n",
             argsfile, f->addr);
    fake_bins(dir, sizeof(dir), script);
    pthread_mutex_lock(&f->mu);
    f->nworkers = 3;
    pthread_mutex_unlock(&f->mu);
    o.bin_dir = dir;
    o.n_workers = 3;
    o.threads_per_worker = 2;
    o.resources = "GPU=1,process=1";
    o.preload = lib;
    o.start_timeout_ms = 5000;
    if (tg_cluster_start(&cl, &o) != TG_OK)
        fail_msg("start: %s", tg_error_last());
    assert_string_equal(tg_cluster_address(cl), f->addr);
    assert_int_equal(tg_cluster_nworkers(cl), 3);
    assert_int_equal(tg_cluster_nthreads(cl), 6);
    fp = fopen(argsfile, "r");
    assert_non_null(fp);
    assert_non_null(fgets(args, sizeof(args), fp));
    fclose(fp);
    snprintf(want, sizeof(want),
             "--listen tcp://127.0.0.1:0 --workers 3 --nthreads 2 "
             "--worker-bin %s/taskgrid-worker --worker-resources "
             "GPU=1,process=1 --worker-preload %s --log-level warn "
             "--worker-log-level warn --exit-with-parent-fd ",
             dir, lib);
    /* The same flags, then the descriptor of the parent-death pipe. */
    assert_int_equal(strncmp(args, want, strlen(want)), 0);
    assert_true(strspn(args + strlen(want), "0123456789") > 0);

    assert_int_equal(tg_cluster_scale(cl, 1), TG_OK);
    assert_int_equal(tg_cluster_nworkers(cl), 1);
    tg_cluster_free(cl);

    /* processes = false: one worker process with every thread. */
    pthread_mutex_lock(&f->mu);
    f->nworkers = 1;
    pthread_mutex_unlock(&f->mu);
    o.processes = false;
    o.resources = NULL;
    o.preload = NULL;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_OK);
    assert_int_equal(tg_cluster_nworkers(cl), 1);
    assert_int_equal(tg_cluster_nthreads(cl), 6);
    assert_int_equal(tg_cluster_scale(cl, 2), TG_ESTATE);
    tg_cluster_free(cl);
    fp = fopen(argsfile, "r");
    assert_non_null(fp);
    assert_non_null(fgets(args, sizeof(args), fp));
    fclose(fp);
    assert_true(contains(args, "--workers 1 --nthreads 6 "));
}

static void test_sdk_cluster__too_few_workers_times_out(void **state)
{
    fake *f = *state;
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    char dir[256], script[1024];

    snprintf(script, sizeof(script),
             "#!/bin/sh\necho 'taskgrid-scheduler listening on %s'\n"
             "exec sleep 30\n",
             f->addr);
    fake_bins(dir, sizeof(dir), script);
    o.bin_dir = dir;
    o.n_workers = 4; /* the fake reports 2 */
    /* Long enough for a status answer on a loaded machine under ASan. */
    o.start_timeout_ms = 2000;
    assert_int_equal(tg_cluster_start(&cl, &o), TG_ETIMEDOUT);
    assert_true(contains(tg_error_last(), "2 of 4 workers"));
    assert_null(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdk_client__opts_init_gives_defaults),
        cmocka_unit_test(test_sdk_client__free_null_is_noop),
        cmocka_unit_test(test_sdk_client__connect_rejects_bad_arguments),
        cmocka_unit_test(test_sdk_client__connect_refused_names_address),
        cmocka_unit_test(test_sdk_client__lazy_connect_defers_errors),
        cmocka_unit_test(test_sdk_client__security_errors_are_clear),
        cmocka_unit_test(test_sdk_key__generate_format_and_errors),
        cmocka_unit_test(test_sdk_key__generate_is_unique),
        cmocka_unit_test(test_sdk_key__forked_child_does_not_repeat_parent),
        cmocka_unit_test(test_sdk_client__submit_validates_definitions),
        cmocka_unit_test(test_sdk_client__calls_check_arguments),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__submit_splits_large_graphs_in_order, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__submit_respects_message_size, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__submit_refusal_keeps_server_message, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__gather_fills_results_and_errors, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__gather_many_keys_in_few_streams, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__gather_folds_duplicates, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__gather_times_out_with_states, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__freed_futures_are_released_in_batches, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_client__status_cancel_annotate_scale, fake_setup,
            fake_teardown),
        cmocka_unit_test(test_sdk_cluster__opts_are_checked),
        cmocka_unit_test(test_sdk_cluster__missing_binary_says_how_to_build),
        cmocka_unit_test(test_sdk_cluster__scheduler_exit_is_reported),
        cmocka_unit_test(test_sdk_cluster__bad_first_line_is_a_protocol_error),
        cmocka_unit_test(
            test_sdk_cluster__silent_scheduler_times_out_leaving_nothing),
        cmocka_unit_test_setup_teardown(
            test_sdk_cluster__starts_waits_for_workers_and_scales, fake_setup,
            fake_teardown),
        cmocka_unit_test_setup_teardown(
            test_sdk_cluster__too_few_workers_times_out, fake_setup,
            fake_teardown),
    };

    /* A peer closing a stream must not kill the test process. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
