/* SPDX-License-Identifier: Apache-2.0
 *
 * watch_sdk_test.c: the C SDK's Watch (tg_client_watch, tg_watch_next,
 * the update accessors) and tg_client_progress against real
 * taskgrid-scheduler and taskgrid-worker processes on loopback: a chain
 * of tasks seen state by state with its worker, counts per key and per
 * function, the connected workers as joined; progress called back until
 * every key is final; bad options and the scheduler's refusals as
 * errors naming the problem. Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "taskgrid/watch.h"

/* Read updates until `done(u)` or 20 s; returns the last update (owned),
 * passing each to `each` (may be NULL). */
typedef bool (*update_pred)(const tg_watch_update *u, void *ud);

static tg_watch_update *next_until(tg_watch *w, update_pred done,
                                   update_pred each, void *ud)
{
    int64_t deadline = th_now_ms() + 20000;

    for (;;) {
        tg_watch_update *u = NULL;
        int64_t left = deadline - th_now_ms();
        int rc;
        if (left <= 0)
            fail_msg("watch: condition not met within 20 s");
        rc = tg_watch_next(w, left, &u);
        if (rc == TG_ETIMEDOUT)
            continue;
        if (rc != TG_OK)
            fail_msg("tg_watch_next: %s", tg_error_last());
        if (each != NULL)
            each(u, ud);
        if (done(u, ud))
            return u;
        tg_watch_update_free(u);
    }
}

typedef struct chain_seen {
    char keys[3][48];
    int states[3][8]; /* states in the order seen, per key */
    int nstates[3];
    char worker[3][64];
    uint64_t inc_memory; /* tg.inc in memory, from function counts */
} chain_seen;

static bool record(const tg_watch_update *u, void *ud)
{
    chain_seen *cs = ud;
    uint64_t k[TG_WATCH_NSTATES];

    for (size_t i = 0; i < tg_watch_update_ntask_events(u); i++) {
        const tg_watch_task_event *e = tg_watch_update_task_event(u, i);
        for (int j = 0; j < 3; j++) {
            if (strcmp(e->key, cs->keys[j]) != 0 || cs->nstates[j] >= 8)
                continue;
            cs->states[j][cs->nstates[j]++] = (int)e->state;
            if (e->state == TG_TASK_MEMORY)
                snprintf(cs->worker[j], sizeof(cs->worker[j]), "%s", e->worker);
            assert_string_equal(e->function, "tg.inc");
            assert_int_equal(e->attempt, 1);
        }
    }
    for (size_t i = 0; i < tg_watch_update_nfunctions(u); i++)
        if (strcmp(tg_watch_update_function(u, i, k), "tg.inc") == 0)
            cs->inc_memory = k[TG_TASK_MEMORY];
    assert_null(tg_watch_update_task_event(u, tg_watch_update_ntask_events(u)));
    return false;
}

static bool all_memory(const tg_watch_update *u, void *ud)
{
    (void)ud;
    return tg_watch_update_key_count(u, TG_TASK_MEMORY) == 3;
}

static void test_watch__a_chain_state_by_state(void **state)
{
    th_cluster cl;
    chain_seen cs;
    char in[16];
    tg_task_def defs[3];
    const char *deps[2][1];
    const char *keys[3];
    tg_future *fs[3];
    tg_watch *w;
    tg_watch_update *u;
    tg_watch_opts o = TG_WATCH_OPTS_INIT;
    const tg_watch_worker_event *we;

    (void)state;
    memset(&cs, 0, sizeof(cs));
    th_cluster_up(&cl, 1, "1", NULL, NULL);
    for (int i = 0; i < 3; i++) {
        snprintf(cs.keys[i], sizeof(cs.keys[i]), "watch-chain-%d", i);
        keys[i] = cs.keys[i];
    }
    o.keys = keys;
    o.nkeys = 3;
    o.task_events = true;
    o.functions = true;
    o.workers = true;
    o.interval_ms = 10;
    if (tg_client_watch(cl.client, &o, &w) != TG_OK)
        fail_msg("tg_client_watch: %s", tg_error_last());

    /* The first update: nothing known yet, worker w0 connected. */
    assert_int_equal(tg_watch_next(w, 10000, &u), TG_OK);
    assert_int_equal(tg_watch_update_key_count(u, TG_TASK_RELEASED), 3);
    assert_int_equal(tg_watch_update_nworkers(u), 1);
    assert_int_equal(tg_watch_update_nworker_events(u), 1);
    we = tg_watch_update_worker_event(u, 0);
    assert_int_equal(we->kind, TG_WORKER_JOINED);
    assert_string_equal(we->name, "w0");
    assert_int_equal(we->nthreads, 1);
    assert_true(tg_watch_update_time_us(u) > 0);
    tg_watch_update_free(u);

    snprintf(in, sizeof(in), "1");
    for (int i = 0; i < 3; i++) {
        defs[i] = (tg_task_def)TG_TASK_DEF_INIT;
        defs[i].key = keys[i];
        defs[i].func = "tg.inc";
        defs[i].codec = "json";
        if (i == 0) {
            defs[i].input = in;
            defs[i].input_len = 1;
        } else {
            deps[i - 1][0] = keys[i - 1];
            defs[i].deps = deps[i - 1];
            defs[i].ndeps = 1;
        }
    }
    assert_int_equal(tg_client_submit(cl.client, defs, 3, fs), TG_OK);
    u = next_until(w, all_memory, record, &cs);
    assert_int_equal(tg_watch_update_key_count(u, TG_TASK_WAITING), 0);
    assert_true(tg_watch_update_total(u, TG_TASK_MEMORY) >= 3);
    tg_watch_update_free(u);
    for (int i = 0; i < 3; i++) {
        int want[4] = {TG_TASK_WAITING, TG_TASK_READY, TG_TASK_PROCESSING,
                       TG_TASK_MEMORY};
        assert_int_equal(cs.nstates[i], 4);
        assert_memory_equal(cs.states[i], want, sizeof(want));
        assert_string_equal(cs.worker[i], "w0");
    }
    assert_int_equal(cs.inc_memory, 3);
    tg_watch_close(w);

    assert_int_equal(tg_client_gather(cl.client, fs, 3, 10000), TG_OK);
    assert_int_equal((int)th_number(fs[2]), 4);
    for (int i = 0; i < 3; i++)
        tg_future_free(fs[i]);
    th_cluster_down(&cl);
}

typedef struct progress_seen {
    int calls;
    uint64_t last[TG_WATCH_NSTATES];
    uint64_t total;
} progress_seen;

static void on_progress(void *ud, const uint64_t counts[TG_WATCH_NSTATES],
                        uint64_t total)
{
    progress_seen *p = ud;
    p->calls++;
    memcpy(p->last, counts, sizeof(p->last));
    p->total = total;
}

static void test_watch__progress_until_final(void **state)
{
    enum { N = 40 };
    th_cluster cl;
    char keys[N][48], ins[N][16];
    const char *kp[N];
    tg_task_def defs[N];
    tg_future *fs[N];
    progress_seen ps;

    (void)state;
    memset(&ps, 0, sizeof(ps));
    th_cluster_up(&cl, 2, "1", NULL, NULL);
    for (int i = 0; i < N; i++) {
        defs[i] = th_inc_task("progress", i, keys[i], ins[i]);
        kp[i] = keys[i];
    }
    /* The last one fails: erred is final too. */
    defs[N - 1].func = "tg.fail";
    assert_int_equal(tg_client_submit(cl.client, defs, N, fs), TG_OK);
    if (tg_client_progress(cl.client, kp, N, on_progress, &ps, 20000) != TG_OK)
        fail_msg("tg_client_progress: %s", tg_error_last());
    assert_true(ps.calls >= 1);
    assert_int_equal(ps.total, N);
    assert_int_equal(ps.last[TG_TASK_MEMORY], N - 1);
    assert_int_equal(ps.last[TG_TASK_ERRED], 1);

    /* Bad arguments, named. */
    kp[3] = NULL;
    assert_int_equal(tg_client_progress(cl.client, kp, N, NULL, NULL, 1000),
                     TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "keys[3]"));
    for (int i = 0; i < N; i++)
        tg_future_free(fs[i]);
    th_cluster_down(&cl);
}

static void test_watch__refusals_come_from_next(void **state)
{
    th_cluster cl;
    tg_watch *w;
    tg_watch_update *u = NULL;
    tg_watch_opts o = TG_WATCH_OPTS_INIT;
    const char *prefixes[65];

    (void)state;
    th_cluster_up(&cl, 1, "1", NULL, NULL);
    for (int i = 0; i < 65; i++)
        prefixes[i] = "p";
    o.key_prefixes = prefixes;
    o.nprefixes = 65;
    assert_int_equal(tg_client_watch(cl.client, &o, &w), TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "at most 64"));
    o.nprefixes = 1;
    o.max_events = 100001;
    assert_int_equal(tg_client_watch(cl.client, &o, &w), TG_OK);
    assert_int_equal(tg_watch_next(w, 10000, &u), TG_EINVAL);
    assert_null(u);
    assert_non_null(strstr(tg_error_last(), "WatchRequest.max_events"));
    tg_watch_close(w);
    o.version = 99;
    assert_int_equal(tg_client_watch(cl.client, &o, &w), TG_EINVAL);
    th_cluster_down(&cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch__a_chain_state_by_state),
        cmocka_unit_test(test_watch__progress_until_final),
        cmocka_unit_test(test_watch__refusals_come_from_next),
    };
    th_find_bins();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
