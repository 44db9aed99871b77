/* SPDX-License-Identifier: Apache-2.0
 *
 * core_test.c: unit tests of the pure scheduling core (scheduler/core.h),
 * driven with a fake clock and fake workers: no network, no threads. Each
 * test plays the part of the transport: it feeds events (submit, worker
 * joined/left, results, ticks) and checks the actions that come out and
 * the states users see. Depends on //scheduler:core, the core fixture
 * (core_fixture.h) and cmocka.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core_fixture.h"
#include "scheduler/core.h"

#define LIT(z) ((tgs_str){(z), sizeof(z) - 1})

static void assert_no_actions(tgs_core *c)
{
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 0);
}

static void assert_act(const cf_act *a, tgs_action_kind kind, uint64_t worker,
                       const char *key)
{
    assert_int_equal(a->kind, kind);
    if (kind != TGS_ACT_NOTIFY)
        assert_int_equal(a->worker, worker);
    assert_string_equal(a->key, key);
}

static tgs_task_spec mk(const char *key, const char *func)
{
    tgs_task_spec s;
    memset(&s, 0, sizeof s);
    s.key = cf_str(key);
    s.func = cf_str(func);
    return s;
}

static void add_worker(tgs_core *c, uint64_t wid, const char *name,
                       uint32_t nthreads, const char *f1, const char *f2,
                       int64_t now)
{
    tgs_str funcs[2];
    size_t n = 0;
    if (f1)
        funcs[n++] = cf_str(f1);
    if (f2)
        funcs[n++] = cf_str(f2);
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str(name);
    w.nthreads = nthreads;
    w.funcs = funcs;
    w.nfuncs = n;
    assert_int_equal(tgs_core_worker_add(c, wid, &w, now), TGS_OK);
}

static int submit(tgs_core *c, tgs_task_spec *specs, size_t n, int64_t now,
                  tgs_submit_result *res)
{
    char err[256];
    int rc = tgs_core_submit(c, specs, n, now, res, err, sizeof err);
    if (rc != TGS_OK)
        print_message("submit: %s\n", err);
    return rc;
}

static int finish_ok(tgs_core *c, uint64_t wid, const char *key,
                     const char *data, int64_t now)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.data = (const uint8_t *)data;
    o.data_len = strlen(data);
    o.codec = LIT("raw");
    return tgs_core_task_finished(c, wid, cf_str(key), &o, now);
}

static int finish_err(tgs_core *c, uint64_t wid, const char *key,
                      const char *type, const char *msg, const char *tb,
                      int64_t now)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = false;
    o.err_type = cf_str(type);
    o.err_message = cf_str(msg);
    o.err_traceback = cf_str(tb);
    return tgs_core_task_finished(c, wid, cf_str(key), &o, now);
}

static tgs_state state_of(tgs_core *c, const char *key)
{
    const tgs_task *t = tgs_core_find(c, cf_str(key));
    assert_non_null(t);
    return tgs_task_state(t);
}

static void assert_counts(tgs_core *c, uint64_t waiting, uint64_t ready,
                          uint64_t processing, uint64_t memory, uint64_t erred,
                          uint64_t cancelled)
{
    uint64_t n[TGS_NSTATES];
    tgs_core_counts(c, n);
    assert_int_equal(n[TGS_WAITING], waiting);
    assert_int_equal(n[TGS_READY], ready);
    assert_int_equal(n[TGS_PROCESSING], processing);
    assert_int_equal(n[TGS_MEMORY], memory);
    assert_int_equal(n[TGS_ERRED], erred);
    assert_int_equal(n[TGS_CANCELLED], cancelled);
}

static void why_is(tgs_core *c, const char *key, const char *text)
{
    char buf[256];
    tgs_core_why(c, tgs_core_find(c, cf_str(key)), buf, sizeof buf);
    assert_string_equal(buf, text);
}

/* ---- tests ---- */

static void test_core__graph_in_order(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 4, "tg.f", NULL, 0);
    assert_no_actions(c);

    /* The dependent comes first in the batch: order inside a batch does
     * not matter, dependency order does. */
    tgs_str deps_c[] = {LIT("b"), LIT("a")};
    tgs_task_spec specs[3] = {mk("c", "tg.f"), mk("a", "tg.f"),
                              mk("b", "tg.f")};
    specs[0].deps = deps_c;
    specs[0].ndeps = 2;
    specs[1].input = (const uint8_t *)"in-a";
    specs[1].input_len = 4;
    specs[1].codec = LIT("json");
    tgs_submit_result res;
    assert_int_equal(submit(c, specs, 3, 0, &res), TGS_OK);
    assert_int_equal(res.accepted, 3);
    assert_int_equal(res.existing, 0);

    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "a");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "b");
    assert_counts(c, 1, 0, 2, 0, 0, 0);
    why_is(c, "c", "waiting for 2 dependencies");

    const tgs_task *ta = tgs_core_find(c, LIT("a"));
    size_t len;
    const uint8_t *in = tgs_task_input(ta, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(in, "in-a", 4);
    cf_assert_str_is(tgs_task_codec(ta), "json");
    cf_assert_str_is(tgs_task_func(ta), "tg.f");
    assert_int_equal(tgs_task_attempt(ta), 1);
    uint64_t wid = 0;
    assert_true(tgs_task_worker(ta, &wid));
    assert_int_equal(wid, 1);

    assert_int_equal(finish_ok(c, 1, "b", "B", 3), TGS_OK);
    assert_no_actions(c);
    why_is(c, "c", "waiting for 1 dependency");
    assert_int_equal(finish_ok(c, 1, "a", "A", 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "c");

    /* The assignment carries the dependencies in submission order, with
     * their results. */
    const tgs_task *tc = tgs_core_find(c, LIT("c"));
    assert_int_equal(tgs_task_ndeps(tc), 2);
    cf_assert_str_is(tgs_task_key(tgs_task_dep(tc, 0)), "b");
    cf_assert_str_is(tgs_task_key(tgs_task_dep(tc, 1)), "a");
    assert_null(tgs_task_dep(tc, 2));
    const uint8_t *r = tgs_task_result(tgs_task_dep(tc, 0), &len);
    assert_int_equal(len, 1);
    assert_memory_equal(r, "B", 1);
    r = tgs_task_result(tgs_task_dep(tc, 1), &len);
    assert_memory_equal(r, "A", 1);
    cf_assert_str_is(tgs_task_result_codec(tgs_task_dep(tc, 1)), "raw");

    const tgs_task *w = NULL;
    assert_int_equal(tgs_core_watch(c, LIT("c"), 7, &w), TGS_OK);
    assert_ptr_equal(w, tc);
    assert_int_equal(tgs_task_state(w), TGS_PROCESSING);
    assert_int_equal(finish_ok(c, 1, "c", "AB", 5), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(a[0].kind, TGS_ACT_NOTIFY);
    assert_int_equal(a[0].watcher, 7);
    assert_string_equal(a[0].key, "c");
    assert_counts(c, 0, 0, 0, 3, 0, 0);

    /* Final already: answered at once, nothing queued. */
    assert_int_equal(tgs_core_watch(c, LIT("c"), 8, &w), TGS_OK);
    assert_int_equal(tgs_task_state(w), TGS_MEMORY);
    r = tgs_task_result(w, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(r, "AB", 2);
    assert_no_actions(c);
    assert_int_equal(tgs_core_watch(c, LIT("nope"), 8, &w), TGS_ENOTFOUND);
    assert_null(w);

    /* A new task on a result in memory is ready at once. */
    tgs_str deps_d[] = {LIT("c")};
    tgs_task_spec d = mk("d", "tg.f");
    d.deps = deps_d;
    d.ndeps = 1;
    assert_int_equal(submit(c, &d, 1, 6, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "d");
    cf_assert_str_is(tgs_task_key(tgs_task_dep(tgs_core_find(c, LIT("d")), 0)),
                     "c");
    tgs_core_free(c);
}

/* The worker's serialized error (e.g. a pickled exception) is kept with
 * the error and shared by the dependents that inherit it. */
static void test_core__error_keeps_serialized_error(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[2] = {mk("a", "tg.f"), mk("b", "tg.f")};
    s[1].deps = da, s[1].ndeps = 1;
    assert_int_equal(submit(c, s, 2, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    static const uint8_t pickled[] = {0x80, 0x04, 0x00, 'Q', 0xff};
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = false;
    o.err_type = LIT("QuotaExceeded");
    o.err_message = LIT("over quota");
    o.data = pickled;
    o.data_len = sizeof(pickled);
    o.codec = LIT("pickle");
    assert_int_equal(tgs_core_task_finished(c, 1, LIT("a"), &o, 1), TGS_OK);
    const char *keys[] = {"a", "b"};
    for (size_t i = 0; i < 2; i++) {
        const tgs_task *t = tgs_core_find(c, cf_str(keys[i]));
        size_t n = 0;
        const uint8_t *d = tgs_task_err_data(t, &n);
        assert_int_equal(tgs_task_state(t), TGS_ERRED);
        assert_int_equal(n, sizeof(pickled));
        assert_memory_equal(d, pickled, sizeof(pickled));
        cf_assert_str_is(tgs_task_err_codec(t), "pickle");
    }
    /* An error without one has none. */
    tgs_task_spec x = mk("x", "tg.f");
    assert_int_equal(submit(c, &x, 1, 2, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_err(c, 1, "x", "E", "m", "", 3), TGS_OK);
    size_t n = 1;
    assert_null(tgs_task_err_data(tgs_core_find(c, LIT("x")), &n));
    assert_int_equal(n, 0);
    tgs_core_free(c);
}

static void test_core__error_propagates(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 4, "tg.f", NULL, 0);
    tgs_str da[] = {LIT("a")}, db[] = {LIT("b")}, dcx[] = {LIT("c"), LIT("x")};
    tgs_task_spec s[5] = {mk("a", "tg.f"), mk("b", "tg.f"), mk("c", "tg.f"),
                          mk("d", "tg.f"), mk("x", "tg.f")};
    s[1].deps = da, s[1].ndeps = 1;
    s[2].deps = db, s[2].ndeps = 1;
    s[3].deps = dcx, s[3].ndeps = 2;
    assert_int_equal(submit(c, s, 5, 0, NULL), TGS_OK);
    assert_int_equal(tgs_core_watch(c, LIT("c"), 8, NULL), TGS_OK);
    assert_int_equal(tgs_core_watch(c, LIT("d"), 9, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "a");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "x");

    assert_int_equal(finish_err(c, 1, "a", "ValueError", "bad input",
                                "Traceback: line 1", 10),
                     TGS_OK);
    size_t n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(n, 2);
    uint64_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i].kind, TGS_ACT_NOTIFY);
        seen |= 1u << a[i].watcher;
    }
    assert_int_equal(seen, (1u << 8) | (1u << 9));
    const char *keys[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) {
        const tgs_task *t = tgs_core_find(c, cf_str(keys[i]));
        assert_int_equal(tgs_task_state(t), TGS_ERRED);
        cf_assert_str_is(tgs_task_err_type(t), "ValueError");
        cf_assert_str_is(tgs_task_err_message(t), "bad input");
        cf_assert_str_is(tgs_task_err_traceback(t), "Traceback: line 1");
        cf_assert_str_is(tgs_task_err_origin(t), i == 0 ? "" : "a");
        /* Final tasks let go of their dependencies. */
        assert_null(tgs_task_dep(t, 0));
    }
    assert_int_equal(state_of(c, "x"), TGS_PROCESSING);
    assert_int_equal(finish_ok(c, 1, "x", "X", 11), TGS_OK);
    assert_no_actions(c);
    assert_counts(c, 0, 0, 0, 1, 4, 0);

    /* Depending on an erred task fails at once, in the same batch too. */
    tgs_str dc[] = {LIT("c")}, de[] = {LIT("e")};
    tgs_task_spec s2[2] = {mk("f", "tg.f"), mk("e", "tg.f")};
    s2[0].deps = de, s2[0].ndeps = 1;
    s2[1].deps = dc, s2[1].ndeps = 1;
    tgs_submit_result res;
    assert_int_equal(submit(c, s2, 2, 12, &res), TGS_OK);
    assert_int_equal(res.accepted, 2);
    assert_no_actions(c);
    for (size_t i = 0; i < 2; i++) {
        const tgs_task *t = tgs_core_find(c, cf_str(i ? "e" : "f"));
        assert_int_equal(tgs_task_state(t), TGS_ERRED);
        cf_assert_str_is(tgs_task_err_origin(t), "a");
        cf_assert_str_is(tgs_task_err_message(t), "bad input");
    }
    assert_counts(c, 0, 0, 0, 1, 6, 0);
    tgs_core_free(c);
}

static void test_core__worker_loss_reassigns(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_task_spec s = mk("t", "tg.f");
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "t");

    add_worker(c, 2, "w2", 1, "tg.f", NULL, 1);
    assert_no_actions(c);
    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "t");
    const tgs_task *t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_attempt(t), 2);
    assert_int_equal(tgs_core_nworkers(c), 1);
    tgs_worker_info wi;
    assert_true(tgs_core_worker_at(c, 0, &wi));
    assert_int_equal(wi.id, 2);
    cf_assert_str_is(wi.name, "w2");
    assert_int_equal(wi.processing, 1);
    assert_false(tgs_core_worker_at(c, 1, &wi));

    /* The lost worker's late answer is stale. */
    assert_int_equal(finish_ok(c, 1, "t", "old", 3), TGS_ESTATE);
    assert_int_equal(state_of(c, "t"), TGS_PROCESSING);
    assert_int_equal(finish_ok(c, 2, "t", "new", 4), TGS_OK);
    size_t len;
    const uint8_t *r = tgs_task_result(tgs_core_find(c, LIT("t")), &len);
    assert_memory_equal(r, "new", 3);
    assert_int_equal(tgs_core_worker_remove(c, 1, 5), TGS_ENOTFOUND);
    tgs_core_free(c);
}

static void test_core__killed_workers(void **state)
{
    (void)state;
    tgs_core_opts o = {.allowed_failures = 2};
    tgs_core *c = cf_core_new(&o);
    tgs_str dt[] = {LIT("t")};
    tgs_task_spec s[2] = {mk("t", "tg.f"), mk("u", "tg.f")};
    s[1].deps = dt, s[1].ndeps = 1;
    assert_int_equal(submit(c, s, 2, 0, NULL), TGS_OK);
    assert_int_equal(tgs_core_watch(c, LIT("u"), 5, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];

    add_worker(c, 1, "w1", 1, "tg.f", NULL, 1);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "t");
    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(state_of(c, "t"), TGS_READY);
    assert_int_equal(tgs_core_unplaceable(c), 1);

    add_worker(c, 2, "w2", 1, "tg.f", NULL, 3);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "t");
    assert_int_equal(tgs_core_worker_remove(c, 2, 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(a[0].kind, TGS_ACT_NOTIFY);
    assert_int_equal(a[0].watcher, 5);

    const tgs_task *t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.KilledWorker");
    cf_assert_str_is(tgs_task_err_message(t),
                     "task 't' killed 2 workers in a row: each died while "
                     "running it (allowed_failures=2)");
    const tgs_task *u = tgs_core_find(c, LIT("u"));
    assert_int_equal(tgs_task_state(u), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(u), "tg.KilledWorker");
    cf_assert_str_is(tgs_task_err_origin(u), "t");
    assert_int_equal(tgs_core_unplaceable(c), 0);
    assert_counts(c, 0, 0, 0, 0, 2, 0);
    tgs_core_free(c);
}

static void test_core__repeated_keys(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_task_spec s[3] = {mk("a", "tg.f"), mk("a", "tg.f"), mk("b", "tg.f")};
    tgs_submit_result res;
    assert_int_equal(submit(c, s, 3, 0, &res), TGS_OK);
    assert_int_equal(res.accepted, 2);
    assert_int_equal(res.existing, 1);
    /* Known key, even with another function: the same task. */
    tgs_task_spec again = mk("a", "tg.other");
    assert_int_equal(submit(c, &again, 1, 1, &res), TGS_OK);
    assert_int_equal(res.accepted, 0);
    assert_int_equal(res.existing, 1);
    assert_counts(c, 0, 2, 0, 0, 0, 0);
    cf_assert_str_is(tgs_task_func(tgs_core_find(c, LIT("a"))), "tg.f");

    add_worker(c, 1, "w1", 2, "tg.f", NULL, 2);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_int_equal(finish_ok(c, 1, "a", "A", 3), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "b", "B", 3), TGS_OK);

    /* Three submissions of `a`, three holds. */
    uint32_t n = 99;
    tgs_str ka = LIT("a");
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_non_null(tgs_core_find(c, ka));
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_null(tgs_core_find(c, ka));
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    uint64_t counts[TGS_NSTATES];
    tgs_core_counts(c, counts);
    assert_int_equal(counts[TGS_MEMORY], 1);
    assert_int_equal(counts[TGS_RELEASED], 1);

    /* Forgotten: a new submission is a new task. */
    assert_int_equal(submit(c, s, 1, 4, &res), TGS_OK);
    assert_int_equal(res.accepted, 1);
    tgs_core_free(c);
}

static void test_core__unknown_dep_rejected(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_str db[] = {LIT("a"), LIT("zz")};
    tgs_task_spec s[2] = {mk("a", "tg.f"), mk("b", "tg.f")};
    s[1].deps = db, s[1].ndeps = 2;
    char err[128];
    tgs_submit_result res = {7, 7};
    assert_int_equal(tgs_core_submit(c, s, 2, 0, &res, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "dependency 'zz' of task 'b' is unknown");
    assert_int_equal(res.accepted, 0);
    assert_null(tgs_core_find(c, LIT("a")));
    assert_null(tgs_core_find(c, LIT("b")));
    assert_counts(c, 0, 0, 0, 0, 0, 0);

    /* A forgotten key is unknown too. */
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    assert_int_equal(submit(c, s, 1, 1, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_ok(c, 1, "a", "A", 2), TGS_OK);
    tgs_str ka = LIT("a");
    uint32_t n;
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    tgs_task_spec b = mk("b", "tg.f");
    b.deps = db, b.ndeps = 1;
    assert_int_equal(tgs_core_submit(c, &b, 1, 3, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "dependency 'a' of task 'b' is unknown");
    /* NULL error buffer is fine. */
    assert_int_equal(tgs_core_submit(c, &b, 1, 3, NULL, NULL, 0), TGS_EINVAL);
    assert_null(tgs_core_find(c, LIT("b")));
    tgs_core_free(c);
}

static void test_core__cycle_rejected(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_str da[] = {LIT("b")}, db[] = {LIT("a")}, dc[] = {LIT("a")};
    /* `c` only depends on the cycle: it must not be the one named. */
    tgs_task_spec s[4] = {mk("c", "tg.f"), mk("a", "tg.f"), mk("b", "tg.f"),
                          mk("ok", "tg.f")};
    s[0].deps = dc, s[0].ndeps = 1;
    s[1].deps = da, s[1].ndeps = 1;
    s[2].deps = db, s[2].ndeps = 1;
    char err[128];
    assert_int_equal(tgs_core_submit(c, s, 4, 0, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_true(strcmp(err, "cycle in graph through task 'a'") == 0 ||
                strcmp(err, "cycle in graph through task 'b'") == 0);
    assert_null(tgs_core_find(c, LIT("ok")));

    tgs_str ds[] = {LIT("x"), LIT("s")};
    tgs_task_spec self[2] = {mk("s", "tg.f"), mk("x", "tg.f")};
    self[0].deps = ds, self[0].ndeps = 2;
    assert_int_equal(tgs_core_submit(c, self, 2, 0, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "cycle in graph through task 's'");
    assert_counts(c, 0, 0, 0, 0, 0, 0);
    tgs_core_free(c);
}

static void test_core__empty_key_or_func(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    char err[128];
    tgs_task_spec s[2] = {mk("a", "tg.f"), mk("", "tg.f")};
    assert_int_equal(tgs_core_submit(c, s, 2, 0, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "task #1 has an empty key");
    s[1] = mk("k", "");
    assert_int_equal(tgs_core_submit(c, s, 2, 0, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "task 'k' has no function");
    assert_null(tgs_core_find(c, LIT("a")));
    assert_counts(c, 0, 0, 0, 0, 0, 0);
    assert_int_equal(tgs_core_submit(NULL, s, 1, 0, NULL, NULL, 0), TGS_EINVAL);
    assert_int_equal(tgs_core_submit(c, NULL, 0, 0, NULL, NULL, 0), TGS_OK);
    tgs_core_free(c);
}

/* Drive a 1-thread worker to the end, finishing one task per step, and
 * return the assignment order. */
static size_t run_order(tgs_core *c, uint64_t wid, int64_t *now,
                        char order[][64], size_t cap)
{
    size_t n = 0;
    cf_act a[CF_MAX_ACTS];
    char running[CF_MAX_ACTS][64];
    size_t nrun = 0, head = 0;
    for (;;) {
        size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(a[i].kind, TGS_ACT_ASSIGN);
            assert_true(n < cap && nrun < CF_MAX_ACTS);
            strcpy(order[n++], a[i].key);
            strcpy(running[nrun++], a[i].key);
        }
        if (head == nrun)
            return n;
        *now += 5;
        assert_int_equal(finish_ok(c, wid, running[head++], "", *now), TGS_OK);
    }
}

static void test_core__priority_order(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_task_spec s[6] = {mk("p0a", "tg.f"), mk("p0b", "tg.f"),
                          mk("p5a", "tg.f"), mk("p1", "tg.f"),
                          mk("p0c", "tg.f"), mk("p5b", "tg.f")};
    s[2].priority = 5;
    s[3].priority = 1;
    s[5].priority = 5;
    assert_int_equal(submit(c, s, 6, 0, NULL), TGS_OK);
    /* One thread, but it may prefetch: check the order, not the count. */
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    cf_act a[CF_MAX_ACTS];
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "p5a");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "p5b");
    /* A later, more urgent task overtakes the queued ones: it takes the
     * place of p5b on the worker (which runs it next), and p5b, queued
     * there unstarted, is asked back. */
    tgs_task_spec p9 = mk("p9", "tg.f");
    p9.priority = 9;
    assert_int_equal(submit(c, &p9, 1, 1, NULL), TGS_OK);
    k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    assert_act(&a[0], TGS_ACT_STEAL, 1, "p5b");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "p9");
    assert_int_equal(tgs_core_task_returned(c, 1, LIT("p5b"), 2), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(state_of(c, "p5b"), TGS_READY);

    int64_t now = 1;
    char order[16][64];
    assert_int_equal(finish_ok(c, 1, "p5a", "", 5), TGS_OK);
    /* Now 5 ms a task: the queue deepens to two. */
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "p5b");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "p1");
    assert_int_equal(finish_ok(c, 1, "p9", "", 10), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "p5b", "", 10), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "p1", "", 10), TGS_OK);
    now = 10;
    size_t n = run_order(c, 1, &now, order, 16);
    const char *want[] = {"p0a", "p0b", "p0c"};
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(order[i], want[i]);
    assert_counts(c, 0, 0, 0, 7, 0, 0);
    tgs_core_free(c);
}

static void test_core__function_placement(void **state)
{
    (void)state;
    tgs_core_opts o = {.no_worker_timeout_ms = 1000};
    tgs_core *c = cf_core_new(&o);
    add_worker(c, 1, "wf", 1, "tg.f", NULL, 0);
    add_worker(c, 2, "wg", 1, "tg.g", NULL, 0);
    tgs_task_spec s[3] = {mk("tf", "tg.f"), mk("tg", "tg.g"), mk("th", "tg.h")};
    assert_int_equal(submit(c, s, 3, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    for (size_t i = 0; i < 2; i++)
        assert_act(&a[i], TGS_ACT_ASSIGN, strcmp(a[i].key, "tf") ? 2 : 1,
                   a[i].key);
    assert_int_equal(state_of(c, "th"), TGS_READY);
    why_is(c, "th", "no worker provides function 'tg.h'");
    why_is(c, "tf", "");
    assert_int_equal(tgs_core_unplaceable(c), 1);

    /* A worker busy with other tasks: placeable, just waiting. */
    tgs_task_spec f2[2] = {mk("tf2", "tg.f"), mk("tf3", "tg.f")};
    assert_int_equal(submit(c, f2, 2, 1, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "tf2");
    why_is(c, "tf3", "waiting for a free worker slot");
    assert_int_equal(tgs_core_unplaceable(c), 1);

    tgs_core_tick(c, 500);
    assert_int_equal(state_of(c, "th"), TGS_READY);
    tgs_core_tick(c, 1001);
    const tgs_task *th = tgs_core_find(c, LIT("th"));
    assert_int_equal(tgs_task_state(th), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(th), "tg.NoWorker");
    cf_assert_str_is(tgs_task_err_message(th),
                     "no worker provides function 'tg.h' (waited 1001 ms)");
    assert_int_equal(tgs_core_unplaceable(c), 0);
    assert_int_equal(state_of(c, "tf3"), TGS_READY);

    /* A provider joining before the timeout places the task. */
    tgs_task_spec h2 = mk("th2", "tg.h");
    assert_int_equal(submit(c, &h2, 1, 2000, NULL), TGS_OK);
    assert_int_equal(tgs_core_unplaceable(c), 1);
    tgs_core_tick(c, 2500);
    add_worker(c, 3, "wh", 1, "tg.h", "tg.g", 2600);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 3, "th2");
    assert_int_equal(tgs_core_unplaceable(c), 0);
    tgs_core_tick(c, 5000);
    assert_int_equal(state_of(c, "th2"), TGS_PROCESSING);
    assert_int_equal(tgs_core_nworkers(c), 3);
    tgs_worker_info wi;
    assert_true(tgs_core_worker_at(c, 2, &wi));
    cf_assert_str_is(wi.name, "wh");
    assert_int_equal(wi.nfuncs, 2);
    tgs_core_free(c);
}

static void test_core__retries(void **state)
{
    (void)state;
    /* Immediate retries here; test_core__retry_backoff has the delays. */
    tgs_core_opts o = {.retry_backoff_ms = -1};
    tgs_core *c = cf_core_new(&o);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_task_spec s = mk("t", "tg.f");
    s.retries = 1;
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    assert_int_equal(tgs_core_watch(c, LIT("t"), 3, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_err(c, 1, "t", "IOError", "flaky", "", 1), TGS_OK);
    /* Retried, not reported. */
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "t");
    const tgs_task *t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_attempt(t), 2);
    assert_int_equal(tgs_task_retries(t), 0);
    assert_int_equal(finish_ok(c, 1, "t", "ok", 2), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(a[0].kind, TGS_ACT_NOTIFY);
    t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_int_equal(tgs_task_attempt(t), 2);

    /* Retries set later (Annotate) count too; final tasks are left. */
    tgs_task_spec u = mk("u", "tg.f");
    assert_int_equal(submit(c, &u, 1, 3, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    tgs_str keys[] = {LIT("u"), LIT("t"), LIT("nope")};
    uint32_t n;
    assert_int_equal(tgs_core_set_retries(c, keys, 3, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(finish_err(c, 1, "u", "E", "m", "", 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "u");
    assert_int_equal(finish_err(c, 1, "u", "E", "m2", "tb", 5), TGS_OK);
    t = tgs_core_find(c, LIT("u"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    assert_int_equal(tgs_task_attempt(t), 2);
    cf_assert_str_is(tgs_task_err_message(t), "m2");
    cf_assert_str_is(tgs_task_err_origin(t), "");
    tgs_core_free(c);
}

static void test_core__cancel(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_str da[] = {LIT("a")}, db[] = {LIT("b")};
    tgs_task_spec s[5] = {mk("a", "tg.f"), mk("b", "tg.f"), mk("c", "tg.f"),
                          mk("x", "tg.f"), mk("y", "tg.f")};
    s[1].deps = da, s[1].ndeps = 1;
    s[2].deps = db, s[2].ndeps = 1;
    assert_int_equal(submit(c, s, 5, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "a");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "x");
    assert_int_equal(tgs_core_watch(c, LIT("c"), 4, NULL), TGS_OK);
    assert_counts(c, 2, 1, 2, 0, 0, 0);

    tgs_str ka[] = {LIT("a"), LIT("unknown")};
    uint32_t n = 0;
    assert_int_equal(tgs_core_cancel(c, ka, 2, 1, &n), TGS_OK);
    assert_int_equal(n, 3);
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 3);
    assert_act(&a[0], TGS_ACT_CANCEL, 1, "a");
    assert_int_equal(a[1].kind, TGS_ACT_NOTIFY);
    assert_int_equal(a[1].watcher, 4);
    assert_string_equal(a[1].key, "c");
    /* The freed slot goes to the next task. */
    assert_act(&a[2], TGS_ACT_ASSIGN, 1, "y");
    const char *keys[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        const tgs_task *t = tgs_core_find(c, cf_str(keys[i]));
        assert_int_equal(tgs_task_state(t), TGS_CANCELLED);
        cf_assert_str_is(tgs_task_err_type(t), "tg.Cancelled");
        cf_assert_str_is(tgs_task_err_message(t), "task 'a' was cancelled");
        cf_assert_str_is(tgs_task_err_origin(t), i ? "a" : "");
    }
    assert_int_equal(finish_ok(c, 1, "a", "late", 2), TGS_ESTATE);
    assert_counts(c, 0, 0, 2, 0, 0, 3);

    /* Cancelling a READY task takes it out of the queue. */
    tgs_task_spec z = mk("z", "tg.f");
    assert_int_equal(submit(c, &z, 1, 3, NULL), TGS_OK);
    assert_int_equal(state_of(c, "z"), TGS_READY);
    tgs_str kz = LIT("z");
    assert_int_equal(tgs_core_cancel(c, &kz, 1, 4, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_no_actions(c);
    assert_int_equal(finish_ok(c, 1, "x", "", 5), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "y", "", 6), TGS_OK);
    assert_no_actions(c);
    /* Final tasks are not cancelled again. */
    tgs_str kx = LIT("x");
    assert_int_equal(tgs_core_cancel(c, &kx, 1, 7, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(state_of(c, "x"), TGS_MEMORY);

    /* Depending on a cancelled task cancels at once. */
    tgs_task_spec d = mk("d", "tg.f");
    d.deps = db, d.ndeps = 1;
    assert_int_equal(submit(c, &d, 1, 8, NULL), TGS_OK);
    const tgs_task *td = tgs_core_find(c, LIT("d"));
    assert_int_equal(tgs_task_state(td), TGS_CANCELLED);
    cf_assert_str_is(tgs_task_err_origin(td), "a");
    assert_counts(c, 0, 0, 0, 2, 0, 5);
    tgs_core_free(c);
}

static void test_core__release_forgets(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[2] = {mk("a", "tg.f"), mk("b", "tg.f")};
    s[1].deps = da, s[1].ndeps = 1;
    assert_int_equal(submit(c, s, 2, 0, NULL), TGS_OK);
    tgs_str ka = LIT("a"), kb = LIT("b");
    uint32_t n = 9;
    /* Not final: kept, and run anyway (b needs it). */
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_non_null(tgs_core_find(c, ka));

    add_worker(c, 1, "w1", 1, "tg.f", NULL, 1);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_ok(c, 1, "a", "A", 2), TGS_OK);
    /* In memory, but b still needs it. */
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "b");
    const tgs_task *tb = tgs_core_find(c, kb);
    size_t len;
    assert_non_null(tgs_task_result(tgs_task_dep(tb, 0), &len));
    assert_int_equal(len, 1);
    assert_non_null(tgs_core_find(c, ka));
    assert_int_equal(finish_ok(c, 1, "b", "B", 3), TGS_OK);
    /* b is done: nobody needs a any more. */
    assert_null(tgs_core_find(c, ka));
    uint64_t counts[TGS_NSTATES];
    tgs_core_counts(c, counts);
    assert_int_equal(counts[TGS_MEMORY], 1);
    assert_int_equal(counts[TGS_RELEASED], 1);

    tgs_str both[] = {LIT("b"), LIT("a"), LIT("nope")};
    assert_int_equal(tgs_core_release(c, both, 3, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_null(tgs_core_find(c, kb));
    tgs_core_counts(c, counts);
    assert_int_equal(counts[TGS_MEMORY], 0);
    assert_int_equal(counts[TGS_RELEASED], 2);

    /* A cancelled task whose dependency still runs is kept until that
     * dependency is final (it is listed there), then forgotten. */
    tgs_str dp[] = {LIT("p")};
    tgs_task_spec s2[2] = {mk("p", "tg.f"), mk("q", "tg.f")};
    s2[1].deps = dp, s2[1].ndeps = 1;
    assert_int_equal(submit(c, s2, 2, 4, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    tgs_str kq = LIT("q"), kp = LIT("p");
    assert_int_equal(tgs_core_cancel(c, &kq, 1, 5, &n), TGS_OK);
    assert_int_equal(tgs_core_release(c, &kq, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tgs_core_release(c, &kp, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(finish_ok(c, 1, "p", "P", 6), TGS_OK);
    assert_null(tgs_core_find(c, kp));
    assert_null(tgs_core_find(c, kq));
    tgs_core_counts(c, counts);
    assert_int_equal(counts[TGS_RELEASED], 4);
    assert_counts(c, 0, 0, 0, 0, 0, 0);
    tgs_core_free(c);
}

static void test_core__stale_finished_ignored(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    add_worker(c, 2, "w2", 1, "tg.g", NULL, 0);
    tgs_task_spec s = mk("t", "tg.f");
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_ok(c, 2, "t", "", 1), TGS_ESTATE);
    assert_int_equal(finish_ok(c, 9, "t", "", 1), TGS_ESTATE);
    assert_int_equal(finish_ok(c, 1, "nope", "", 1), TGS_ESTATE);
    assert_int_equal(tgs_core_task_returned(c, 2, LIT("t"), 1), TGS_ESTATE);
    assert_int_equal(state_of(c, "t"), TGS_PROCESSING);
    assert_int_equal(finish_ok(c, 1, "t", "x", 2), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "t", "y", 3), TGS_ESTATE);
    assert_int_equal(finish_err(c, 1, "t", "E", "m", "", 3), TGS_ESTATE);
    size_t len;
    const uint8_t *r = tgs_task_result(tgs_core_find(c, LIT("t")), &len);
    assert_memory_equal(r, "x", 1);
    assert_no_actions(c);
    tgs_core_free(c);
}

static void test_core__task_returned(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_task_spec s = mk("t", "tg.f");
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    /* Handed back by a draining worker: goes elsewhere, no attempt lost. */
    assert_int_equal(tgs_core_worker_drain(c, 1, 1), TGS_OK);
    assert_no_actions(c);
    add_worker(c, 2, "w2", 1, "tg.f", NULL, 2);
    assert_no_actions(c);
    assert_int_equal(tgs_core_task_returned(c, 1, LIT("t"), 3), TGS_OK);
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    assert_act(&a[0], TGS_ACT_CLOSE_WORKER, 1, "");
    assert_act(&a[1], TGS_ACT_ASSIGN, 2, "t");
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("t"))), 1);
    tgs_core_free(c);
}

static void test_core__drain(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 2, "tg.f", NULL, 0);
    tgs_task_spec s[3] = {mk("a", "tg.f"), mk("b", "tg.f"), mk("c", "tg.f")};
    assert_int_equal(submit(c, s, 3, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 3);
    assert_int_equal(tgs_core_worker_drain(c, 1, 1), TGS_OK);
    assert_no_actions(c);
    tgs_worker_info wi;
    assert_true(tgs_core_worker_at(c, 0, &wi));
    assert_true(wi.draining);
    assert_int_equal(wi.processing, 3);

    /* No new work for a draining worker. */
    tgs_task_spec d = mk("d", "tg.f");
    assert_int_equal(submit(c, &d, 1, 2, NULL), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(tgs_core_unplaceable(c), 1);
    why_is(c, "d", "no worker provides function 'tg.f'");

    assert_int_equal(finish_ok(c, 1, "a", "", 3), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "b", "", 4), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(finish_ok(c, 1, "c", "", 5), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_CLOSE_WORKER, 1, "");
    assert_int_equal(tgs_core_worker_drain(c, 1, 6), TGS_OK);
    tgs_core_tick(c, 7);
    assert_no_actions(c);
    assert_int_equal(tgs_core_worker_remove(c, 1, 8), TGS_OK);
    assert_int_equal(tgs_core_unplaceable(c), 1);

    /* An idle worker closes at once. */
    add_worker(c, 2, "w2", 1, "tg.g", NULL, 9);
    assert_int_equal(tgs_core_worker_drain(c, 2, 10), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_CLOSE_WORKER, 2, "");
    assert_int_equal(tgs_core_worker_drain(c, 3, 10), TGS_ENOTFOUND);
    tgs_core_free(c);
}

static void test_core__annotate_priority(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[5] = {mk("a", "tg.f"), mk("b", "tg.f"), mk("c", "tg.f"),
                          mk("d", "tg.f"), mk("w", "tg.f")};
    s[4].deps = da, s[4].ndeps = 1;
    assert_int_equal(submit(c, s, 5, 0, NULL), TGS_OK);
    /* READY ones move in their queue; WAITING ones just change. */
    tgs_str kc[] = {LIT("c"), LIT("w"), LIT("nope")};
    uint32_t n;
    assert_int_equal(tgs_core_set_priority(c, kc, 3, 10, &n), TGS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(tgs_task_priority(tgs_core_find(c, LIT("c"))), 10);
    assert_int_equal(tgs_task_priority(tgs_core_find(c, LIT("w"))), 10);
    tgs_str kb = LIT("b"), kd = LIT("d");
    assert_int_equal(tgs_core_set_priority(c, &kb, 1, -1, &n), TGS_OK);
    assert_int_equal(tgs_core_set_priority(c, &kd, 1, 5, &n), TGS_OK);
    assert_int_equal(n, 1);

    add_worker(c, 1, "w1", 1, "tg.f", NULL, 1);
    /* Processing already: not changed. */
    assert_int_equal(tgs_core_set_priority(c, kc, 1, 3, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tgs_task_priority(tgs_core_find(c, LIT("c"))), 10);
    int64_t now = 1;
    char order[8][64];
    size_t k = run_order(c, 1, &now, order, 8);
    const char *want[] = {"c", "d", "a", "b", "w"};
    assert_int_equal(k, 5);
    for (size_t i = 0; i < k; i++)
        assert_string_equal(order[i], want[i]);
    tgs_core_free(c);
}

static void test_core__balance(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "small", 1, "tg.f", NULL, 0);
    add_worker(c, 2, "big", 2, "tg.f", NULL, 0);
    tgs_task_spec s[8];
    char keys[8][16];
    for (int i = 0; i < 8; i++) {
        snprintf(keys[i], sizeof keys[i], "t%d", i);
        s[i] = mk(keys[i], "tg.f");
    }
    assert_int_equal(submit(c, s, 8, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    /* Capacity 2 + 4 (prefetch = threads until run times are known),
     * filled in proportion to threads. */
    assert_int_equal(k, 6);
    size_t on[3] = {0, 0, 0};
    for (size_t i = 0; i < k; i++)
        on[a[i].worker]++;
    assert_int_equal(on[1], 2);
    assert_int_equal(on[2], 4);
    /* The first two go to different workers. */
    assert_true(a[0].worker != a[1].worker);
    assert_counts(c, 0, 2, 6, 0, 0, 0);
    why_is(c, "t7", "waiting for a free worker slot");
    tgs_core_free(c);
}

static void test_core__prefetch_adapts(void **state)
{
    (void)state;
    tgs_core_opts o = {.max_prefetch = 64};
    tgs_core *c = cf_core_new(&o);
    enum { N = 200 };
    static char keys[N][16];
    tgs_task_spec s[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "t%d", i);
        s[i] = mk(keys[i], "tg.fast");
    }
    assert_int_equal(submit(c, s, N, 0, NULL), TGS_OK);
    add_worker(c, 1, "w1", 2, "tg.fast", NULL, 0);
    cf_act a[CF_MAX_ACTS * 2];
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS * 2);
    assert_int_equal(k, 4);
    /* Sub-millisecond tasks: the queue deepens up to 2 + max_prefetch. */
    assert_int_equal(finish_ok(c, 1, a[0].key, "", 0), TGS_OK);
    k = cf_pop_all(c, a, CF_MAX_ACTS * 2);
    assert_int_equal(k, 64 + 2 - 3);
    tgs_worker_info wi;
    assert_true(tgs_core_worker_at(c, 0, &wi));
    assert_int_equal(wi.processing, 66);
    tgs_core_free(c);
}

static void test_core__counts_and_two_cores(void **state)
{
    (void)state;
    tgs_core *c1 = cf_core_new(NULL), *c2 = cf_core_new(NULL);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[3] = {mk("a", "tg.f"), mk("b", "tg.f"), mk("x", "tg.g")};
    s[1].deps = da, s[1].ndeps = 1;
    assert_int_equal(submit(c1, s, 3, 0, NULL), TGS_OK);
    assert_int_equal(submit(c2, s, 1, 0, NULL), TGS_OK);
    assert_counts(c1, 1, 2, 0, 0, 0, 0);
    assert_counts(c2, 0, 1, 0, 0, 0, 0);
    assert_int_equal(tgs_core_unplaceable(c1), 2);
    add_worker(c1, 1, "w", 1, "tg.f", NULL, 0);
    assert_counts(c1, 1, 1, 1, 0, 0, 0);
    assert_int_equal(tgs_core_unplaceable(c1), 1);
    assert_counts(c2, 0, 1, 0, 0, 0, 0);
    assert_int_equal(tgs_core_unplaceable(c2), 1);
    assert_int_equal(finish_ok(c1, 1, "a", "", 1), TGS_OK);
    assert_counts(c1, 0, 1, 1, 1, 0, 0);
    tgs_core_free(c1);
    tgs_core_free(c2);
    tgs_core_free(NULL);
}

static void test_core__annotations_kept(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource res[] = {{LIT("GPU"), 1.0}, {LIT("MEMORY"), 2e9}};
    tgs_str only[] = {LIT("w-gpu")};
    tgs_task_spec s = mk("t", "tg.f");
    s.resources = res;
    s.nresources = 2;
    s.workers = only;
    s.nworkers = 1;
    s.priority = -3;
    s.retries = 4;
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    const tgs_task *t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_nresources(t), 2);
    cf_assert_str_is(tgs_task_resource(t, 0).name, "GPU");
    assert_true(tgs_task_resource(t, 1).amount == 2e9);
    cf_assert_str_is(tgs_task_resource(t, 2).name, "");
    assert_int_equal(tgs_task_nrestrictions(t), 1);
    cf_assert_str_is(tgs_task_restriction(t, 0), "w-gpu");
    cf_assert_str_is(tgs_task_restriction(t, 1), "");
    assert_int_equal(tgs_task_priority(t), -3);
    assert_int_equal(tgs_task_retries(t), 4);
    assert_false(tgs_task_worker(t, NULL));
    cf_assert_str_is(tgs_task_codec(t), "");
    size_t len = 9;
    assert_null(tgs_task_result(t, &len));
    assert_int_equal(len, 0);
    cf_assert_str_is(tgs_task_err_type(t), "");

    /* Workers: resources copied, ids unique, threads required. */
    tgs_str funcs[] = {LIT("tg.f"), LIT("tg.f"), LIT("")};
    tgs_worker_spec w = {.name = LIT("w-gpu"),
                         .nthreads = 2,
                         .funcs = funcs,
                         .nfuncs = 3,
                         .resources = res,
                         .nresources = 2};
    assert_int_equal(tgs_core_worker_add(c, 5, &w, 1), TGS_OK);
    assert_int_equal(tgs_core_worker_add(c, 5, &w, 1), TGS_EEXIST);
    w.nthreads = 0;
    assert_int_equal(tgs_core_worker_add(c, 6, &w, 1), TGS_EINVAL);
    tgs_worker_info wi;
    assert_true(tgs_core_worker_at(c, 0, &wi));
    assert_int_equal(wi.nfuncs, 1); /* duplicates and empty names dropped */
    assert_int_equal(wi.nthreads, 2);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 5, "t");
    assert_int_equal(tgs_core_task_finished(c, 5, LIT("t"), NULL, 2),
                     TGS_EINVAL);
    assert_int_equal(tgs_core_worker_remove(NULL, 5, 2), TGS_EINVAL);
    tgs_core_free(c);
}

/* ---- resources, restrictions, retries, stealing, worker loss ---- */

static void add_worker_res(tgs_core *c, uint64_t wid, const char *name,
                           uint32_t nthreads, const char *func,
                           const tgs_resource *res, size_t nres, int64_t now)
{
    tgs_str funcs[1] = {cf_str(func)};
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str(name);
    w.nthreads = nthreads;
    w.funcs = funcs;
    w.nfuncs = 1;
    w.resources = res;
    w.nresources = nres;
    assert_int_equal(tgs_core_worker_add(c, wid, &w, now), TGS_OK);
}

static tgs_task_spec mk_res(const char *key, const char *func,
                            const tgs_resource *res, size_t nres)
{
    tgs_task_spec s = mk(key, func);
    s.resources = res;
    s.nresources = nres;
    return s;
}

/* Index of the action of `kind` on `key` in a[0, n), or -1. */
static int find_act(const cf_act *a, size_t n, tgs_action_kind kind,
                    const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].kind == kind && strcmp(a[i].key, key) == 0)
            return (int)i;
    return -1;
}

static uint64_t worker_of(tgs_core *c, const char *key)
{
    uint64_t wid = 0;
    assert_true(tgs_task_worker(tgs_core_find(c, cf_str(key)), &wid));
    return wid;
}

static uint32_t processing_count(tgs_core *c, uint64_t wid)
{
    tgs_worker_info wi;
    for (size_t i = 0; tgs_core_worker_at(c, i, &wi); i++)
        if (wi.id == wid)
            return wi.processing;
    fail();
    return 0;
}

/* Priorities hold for resource tasks too: they are not prefetched beyond
 * the resources, so they wait at the scheduler, in priority order. */
static void test_core__priority_with_resources(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource p1[] = {{LIT("process"), 1}};
    add_worker_res(c, 1, "w1", 1, "tg.f", p1, 1, 0);
    tgs_task_spec s[6] = {
        mk_res("p0a", "tg.f", p1, 1), mk_res("p0b", "tg.f", p1, 1),
        mk_res("p5a", "tg.f", p1, 1), mk_res("p1", "tg.f", p1, 1),
        mk_res("p0c", "tg.f", p1, 1), mk_res("p5b", "tg.f", p1, 1)};
    s[2].priority = 5;
    s[3].priority = 1;
    s[5].priority = 5;
    assert_int_equal(submit(c, s, 6, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    /* Room for 2 (a thread and a prefetch slot), resources for 1. */
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "p5a");
    why_is(c, "p5b", "waiting for free resources process=1");
    assert_int_equal(tgs_core_unplaceable(c), 0);

    /* A later, more urgent task and an Annotate both reorder the queue. */
    tgs_task_spec p9 = mk_res("p9", "tg.f", p1, 1);
    p9.priority = 9;
    assert_int_equal(submit(c, &p9, 1, 1, NULL), TGS_OK);
    assert_no_actions(c);
    tgs_str k0c = LIT("p0c");
    uint32_t n;
    assert_int_equal(tgs_core_set_priority(c, &k0c, 1, 7, &n), TGS_OK);
    assert_int_equal(n, 1);

    const char *want[] = {"p9", "p0c", "p5b", "p1", "p0a", "p0b"};
    const char *running = "p5a";
    int64_t now = 5;
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(finish_ok(c, 1, running, "", now), TGS_OK);
        now += 5;
        /* One out, one in: never two on the worker. */
        assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
        assert_act(&a[0], TGS_ACT_ASSIGN, 1, want[i]);
        assert_int_equal(processing_count(c, 1), 1);
        running = want[i];
    }
    assert_int_equal(finish_ok(c, 1, running, "", now), TGS_OK);
    assert_no_actions(c);
    assert_counts(c, 0, 0, 0, 7, 0, 0);
    tgs_core_free(c);
}

static void test_core__resources_gpu_only_on_gpu_worker(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource gpu[] = {{LIT("GPU"), 1}};
    add_worker(c, 1, "cpu", 2, "tg.f", NULL, 0);
    add_worker_res(c, 2, "gpu", 1, "tg.f", gpu, 1, 0);
    tgs_task_spec s[7] = {mk_res("g1", "tg.f", gpu, 1),
                          mk("c1", "tg.f"),
                          mk_res("g2", "tg.f", gpu, 1),
                          mk("c2", "tg.f"),
                          mk_res("g3", "tg.f", gpu, 1),
                          mk("c3", "tg.f"),
                          mk("c4", "tg.f")};
    assert_int_equal(submit(c, s, 7, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    /* The CPU tasks fill both workers; one GPU task runs, on the GPU
     * worker; the others wait without blocking anything behind them. */
    assert_int_equal(k, 5);
    assert_true(find_act(a, k, TGS_ACT_ASSIGN, "g1") >= 0);
    assert_int_equal(worker_of(c, "g1"), 2);
    for (size_t i = 0; i < 4; i++) {
        char key[4] = {'c', (char)('1' + i), 0};
        assert_true(find_act(a, k, TGS_ACT_ASSIGN, key) >= 0);
    }
    assert_int_equal(state_of(c, "g2"), TGS_READY);
    assert_int_equal(state_of(c, "g3"), TGS_READY);
    why_is(c, "g2", "waiting for free resources GPU=1");
    assert_int_equal(tgs_core_unplaceable(c), 0);

    /* The CPU worker frees up: still no GPU task for it, but it takes
     * back the CPU task queued on the GPU worker behind g1. */
    assert_int_equal(worker_of(c, "c4"), 2);
    for (size_t i = 0; i < k; i++)
        if (a[i].worker == 1)
            assert_int_equal(finish_ok(c, 1, a[i].key, "", 1), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_STEAL, 2, "c4");
    assert_int_equal(tgs_core_task_returned(c, 2, LIT("c4"), 1), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "c4");
    assert_int_equal(finish_ok(c, 1, "c4", "", 1), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(finish_ok(c, 2, "g1", "", 2), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "g2");

    /* The GPU worker is lost: g2 waits, and says why. */
    assert_int_equal(tgs_core_worker_remove(c, 2, 3), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(state_of(c, "g2"), TGS_READY);
    assert_int_equal(tgs_core_unplaceable(c), 2);
    why_is(c, "g2", "no worker has resources GPU=1 (largest: GPU=0)");
    tgs_resource two[] = {{LIT("GPU"), 2}};
    add_worker_res(c, 3, "gpu2", 4, "tg.f", two, 1, 4);
    /* g2 was running when its worker died: it runs alone (quarantine),
     * then g3 follows. */
    k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 3, "g2");
    assert_int_equal(tgs_core_unplaceable(c), 0);
    assert_int_equal(finish_ok(c, 3, "g2", "", 5), TGS_OK);
    k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_true(find_act(a, k, TGS_ACT_ASSIGN, "g3") >= 0);
    tgs_core_free(c);
}

static void test_core__resources_serialize(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource p1[] = {{LIT("process"), 1}};
    add_worker_res(c, 1, "w1", 4, "tg.f", p1, 1, 0);
    enum { NS = 5, NP = 3 };
    tgs_task_spec s[NS + NP];
    char keys[NS + NP][16];
    for (int i = 0; i < NS + NP; i++) {
        snprintf(keys[i], sizeof keys[i], "%c%d", i < NS ? 's' : 'p', i);
        s[i] = i < NS ? mk_res(keys[i], "tg.f", p1, 1) : mk(keys[i], "tg.f");
    }
    assert_int_equal(submit(c, s, NS + NP, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    char running[NS + NP][16];
    size_t nrun = 0, head = 0, ns_done = 0;
    int64_t now = 0;
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    /* The plain tasks do not wait behind the process=1 ones. */
    assert_int_equal(k, 1 + NP);
    for (;;) {
        size_t s_running = 0;
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(a[i].kind, TGS_ACT_ASSIGN);
            strcpy(running[nrun++], a[i].key);
        }
        for (size_t i = head; i < nrun; i++)
            s_running += running[i][0] == 's';
        assert_true(s_running <= 1);
        if (head == nrun)
            break;
        now++;
        ns_done += running[head][0] == 's';
        assert_int_equal(finish_ok(c, 1, running[head++], "", now), TGS_OK);
        k = cf_pop_all(c, a, CF_MAX_ACTS);
    }
    assert_int_equal(ns_done, NS);
    assert_counts(c, 0, 0, 0, NS + NP, 0, 0);
    tgs_core_free(c);

    /* Fractions add up exactly enough: ten tenths fit in 1, not eleven;
     * repeated holds and releases leave no rounding residue behind. */
    c = cf_core_new(NULL);
    tgs_resource mem[] = {{LIT("mem"), 1}};
    tgs_resource tenth[] = {{LIT("mem"), 0.1}};
    add_worker_res(c, 1, "w1", 16, "tg.f", mem, 1, 0);
    for (int round = 0; round < 3; round++) {
        tgs_task_spec t[11];
        char tk[11][32];
        for (int i = 0; i < 11; i++) {
            snprintf(tk[i], sizeof tk[i], "m%d.%d", round, i);
            t[i] = mk_res(tk[i], "tg.f", tenth, 1);
        }
        assert_int_equal(submit(c, t, 11, now, NULL), TGS_OK);
        k = cf_pop_all(c, a, CF_MAX_ACTS);
        assert_int_equal(k, 10);
        assert_int_equal(state_of(c, tk[10]), TGS_READY);
        for (size_t i = 0; i < k; i++)
            assert_int_equal(finish_ok(c, 1, a[i].key, "", ++now), TGS_OK);
        k = cf_pop_all(c, a, CF_MAX_ACTS);
        assert_int_equal(k, 1);
        assert_int_equal(finish_ok(c, 1, a[0].key, "", ++now), TGS_OK);
    }
    tgs_core_free(c);
}

static void test_core__resources_unfittable(void **state)
{
    (void)state;
    tgs_core_opts o = {.no_worker_timeout_ms = 1000};
    tgs_core *c = cf_core_new(&o);
    tgs_resource gpu1[] = {{LIT("GPU"), 1}};
    add_worker_res(c, 1, "small", 1, "tg.f", gpu1, 1, 0);
    tgs_resource gpu2[] = {{LIT("GPU"), 2}};
    tgs_resource tpu[] = {{LIT("TPU"), 1}, {LIT("GPU"), 1}};
    tgs_task_spec s[2] = {mk_res("big", "tg.f", gpu2, 1),
                          mk_res("tpu", "tg.f", tpu, 2)};
    assert_int_equal(submit(c, s, 2, 0, NULL), TGS_OK);
    assert_no_actions(c);
    assert_counts(c, 0, 2, 0, 0, 0, 0);
    assert_int_equal(tgs_core_unplaceable(c), 2);
    why_is(c, "big", "no worker has resources GPU=2 (largest: GPU=1)");
    why_is(c, "tpu",
           "no worker has resources GPU=1, TPU=1 (largest: GPU=1, TPU=0)");

    tgs_core_tick(c, 500);
    assert_no_actions(c);
    /* A worker that fits joins before the timeout: it gets the task. */
    tgs_resource gpu4[] = {{LIT("GPU"), 4}};
    add_worker_res(c, 2, "large", 1, "tg.f", gpu4, 1, 600);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "big");
    assert_int_equal(tgs_core_unplaceable(c), 1);

    /* The other one times out, with the cause in the error. */
    assert_int_equal(tgs_core_watch(c, LIT("tpu"), 7, NULL), TGS_OK);
    tgs_core_tick(c, 1000);
    assert_no_actions(c);
    tgs_core_tick(c, 1001);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(a[0].kind, TGS_ACT_NOTIFY);
    const tgs_task *t = tgs_core_find(c, LIT("tpu"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.NoWorker");
    cf_assert_str_is(tgs_task_err_message(t),
                     "no worker has resources GPU=1, TPU=1 (largest: GPU=4, "
                     "TPU=0) (waited 1001 ms)");
    assert_int_equal(tgs_core_unplaceable(c), 0);
    assert_int_equal(state_of(c, "big"), TGS_PROCESSING);

    /* Invalid requests and capacities are refused. */
    tgs_resource neg[] = {{LIT("GPU"), -1}};
    tgs_resource nan_[] = {{LIT("GPU"), NAN}};
    tgs_resource noname[] = {{LIT(""), 1}};
    tgs_task_spec bad = mk_res("bad", "tg.f", neg, 1);
    char err[128];
    assert_int_equal(tgs_core_submit(c, &bad, 1, 1002, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "task 'bad' asks for an invalid amount -1 of "
                             "resource 'GPU'");
    bad.resources = nan_;
    assert_int_equal(tgs_core_submit(c, &bad, 1, 1002, NULL, NULL, 0),
                     TGS_EINVAL);
    bad.resources = noname;
    assert_int_equal(tgs_core_submit(c, &bad, 1, 1002, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_string_equal(err, "task 'bad' asks for a resource with no name");
    assert_null(tgs_core_find(c, LIT("bad")));
    tgs_str funcs[] = {LIT("tg.f")};
    tgs_worker_spec w = {.name = LIT("w"),
                         .nthreads = 1,
                         .funcs = funcs,
                         .nfuncs = 1,
                         .resources = neg,
                         .nresources = 1};
    assert_int_equal(tgs_core_worker_add(c, 9, &w, 1002), TGS_EINVAL);

    /* Zero amounts ask for nothing; a repeated name: the last one wins. */
    tgs_resource odd[] = {{LIT("GPU"), 8}, {LIT("X"), 0}, {LIT("GPU"), 1}};
    tgs_task_spec ok = mk_res("ok", "tg.f", odd, 3);
    assert_int_equal(submit(c, &ok, 1, 1003, NULL), TGS_OK);
    t = tgs_core_find(c, LIT("ok"));
    assert_int_equal(tgs_task_nresources(t), 1);
    cf_assert_str_is(tgs_task_resource(t, 0).name, "GPU");
    assert_true(tgs_task_resource(t, 0).amount == 1);
    assert_int_equal(tgs_core_unplaceable(c), 0);
    tgs_core_free(c);
}

static void test_core__restrictions(void **state)
{
    (void)state;
    tgs_core_opts o = {.no_worker_timeout_ms = 100};
    tgs_core *c = cf_core_new(&o);
    add_worker(c, 1, "a", 1, "tg.f", NULL, 0);
    add_worker(c, 2, "b", 1, "tg.f", NULL, 0);
    add_worker(c, 3, "c", 1, "tg.g", NULL, 0);
    tgs_str only_b[] = {LIT("b")}, a_or_b[] = {LIT("b"), LIT("a"), LIT("b")};
    tgs_str zz[] = {LIT("zz")}, only_c[] = {LIT("c")};
    tgs_task_spec s[5] = {mk("tb", "tg.f"), mk("tb2", "tg.f"), mk("tz", "tg.f"),
                          mk("tc", "tg.f"), mk("tab", "tg.f")};
    s[0].workers = only_b, s[0].nworkers = 1;
    s[1].workers = only_b, s[1].nworkers = 1;
    s[2].workers = zz, s[2].nworkers = 1;
    s[3].workers = only_c, s[3].nworkers = 1;
    s[4].workers = a_or_b, s[4].nworkers = 3;
    assert_int_equal(submit(c, s, 5, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 3);
    assert_int_equal(worker_of(c, "tb"), 2);
    assert_int_equal(worker_of(c, "tb2"), 2);
    assert_int_equal(worker_of(c, "tab"), 1);
    const tgs_task *tab = tgs_core_find(c, LIT("tab"));
    assert_int_equal(tgs_task_nrestrictions(tab), 2);
    cf_assert_str_is(tgs_task_restriction(tab, 0), "a");
    cf_assert_str_is(tgs_task_restriction(tab, 1), "b");
    assert_int_equal(tgs_core_unplaceable(c), 2);
    why_is(c, "tz", "no worker named 'zz'");
    why_is(c, "tc", "no worker named 'c' provides function 'tg.f'");

    /* "b" is full: its tasks wait for it even while "a" idles, and "a"
     * does not steal them. */
    tgs_task_spec b3 = mk("tb3", "tg.f");
    b3.workers = only_b, b3.nworkers = 1;
    assert_int_equal(submit(c, &b3, 1, 1, NULL), TGS_OK);
    assert_int_equal(finish_ok(c, 1, "tab", "", 2), TGS_OK);
    assert_no_actions(c);
    why_is(c, "tb3", "waiting for a free worker slot");
    assert_int_equal(finish_ok(c, 2, "tb", "", 3), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "tb3");

    /* The named worker joins: it gets its task. */
    add_worker(c, 4, "zz", 1, "tg.f", NULL, 50);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 4, "tz");
    assert_int_equal(tgs_core_unplaceable(c), 1);
    tgs_core_tick(c, 101);
    const tgs_task *t = tgs_core_find(c, LIT("tc"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.NoWorker");
    cf_assert_str_is(tgs_task_err_message(t),
                     "no worker named 'c' provides function 'tg.f' (waited 101 "
                     "ms)");
    assert_int_equal(tgs_core_unplaceable(c), 0);
    tgs_core_free(c);
}

static void test_core__retry_backoff(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL); /* 100 ms, doubling, up to 5 s */
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_task_spec s = mk("t", "tg.f");
    s.retries = 2;
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    assert_int_equal(tgs_core_watch(c, LIT("t"), 3, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);

    assert_int_equal(finish_err(c, 1, "t", "IOError", "flaky", "", 10), TGS_OK);
    assert_no_actions(c);
    const tgs_task *t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_state(t), TGS_WAITING);
    assert_int_equal(tgs_task_attempt(t), 2);
    assert_int_equal(tgs_task_retries(t), 1);
    why_is(c, "t", "retrying in 100 ms (attempt 2)");
    tgs_core_tick(c, 50);
    why_is(c, "t", "retrying in 60 ms (attempt 2)");
    tgs_core_tick(c, 109);
    assert_no_actions(c);
    assert_int_equal(state_of(c, "t"), TGS_WAITING);
    tgs_core_tick(c, 110);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "t");

    /* Second failure: twice the delay. Any event moves the clock, not
     * only ticks. */
    assert_int_equal(finish_err(c, 1, "t", "IOError", "flaky", "", 120),
                     TGS_OK);
    why_is(c, "t", "retrying in 200 ms (attempt 3)");
    tgs_task_spec other = mk("o", "tg.f");
    assert_int_equal(submit(c, &other, 1, 319, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "o");
    assert_int_equal(state_of(c, "t"), TGS_WAITING);
    assert_int_equal(finish_ok(c, 1, "o", "", 320), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "t");

    /* Third attempt succeeds. */
    assert_int_equal(finish_ok(c, 1, "t", "ok", 330), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(a[0].kind, TGS_ACT_NOTIFY);
    t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_int_equal(tgs_task_attempt(t), 3);
    assert_int_equal(tgs_task_retries(t), 0);

    /* Cancelled while waiting for its retry: it never comes back. */
    tgs_task_spec u = mk("u", "tg.f");
    u.retries = 1;
    assert_int_equal(submit(c, &u, 1, 400, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_err(c, 1, "u", "E", "m", "", 410), TGS_OK);
    tgs_str ku = LIT("u");
    uint32_t n;
    assert_int_equal(tgs_core_cancel(c, &ku, 1, 420, &n), TGS_OK);
    assert_int_equal(n, 1);
    tgs_core_tick(c, 10000);
    assert_no_actions(c);
    assert_int_equal(state_of(c, "u"), TGS_CANCELLED);
    tgs_core_free(c);

    /* The delay doubles up to the cap. */
    tgs_core_opts o = {.retry_backoff_ms = 1000, .retry_backoff_max_ms = 1500};
    c = cf_core_new(&o);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    s.retries = 3;
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    const int64_t delays[] = {1000, 1500, 1500};
    int64_t now = 0;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(finish_err(c, 1, "t", "E", "m", "", now), TGS_OK);
        tgs_core_tick(c, now + delays[i] - 1);
        assert_no_actions(c);
        now += delays[i];
        tgs_core_tick(c, now);
        assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
        assert_act(&a[0], TGS_ACT_ASSIGN, 1, "t");
    }
    assert_int_equal(finish_err(c, 1, "t", "E", "last", "", now), TGS_OK);
    assert_int_equal(state_of(c, "t"), TGS_ERRED);
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("t"))), 4);
    tgs_core_free(c);
}

/* A task that kills every worker it runs on fails alone; tasks queued
 * behind it on those workers, and the rest of the graph, go on. */
static void test_core__killed_workers_alone(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL); /* allowed_failures: 3 */
    tgs_str dbad[] = {LIT("bad")};
    tgs_task_spec s[4] = {mk("bad", "tg.f"), mk("x1", "tg.f"), mk("x2", "tg.f"),
                          mk("dep", "tg.f")};
    s[3].deps = dbad, s[3].ndeps = 1;
    assert_int_equal(submit(c, s, 4, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    for (uint64_t r = 1; r <= 3; r++) {
        char name[16];
        snprintf(name, sizeof name, "w%u", (unsigned)r);
        add_worker(c, r, name, 1, "tg.f", NULL, (int64_t)r * 10);
        /* First `bad` runs with x1 queued behind it (prefetch); once it
         * was running on a worker that died, it runs alone (quarantine),
         * so only it is blamed after that. */
        if (r == 1) {
            assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
            assert_act(&a[0], TGS_ACT_ASSIGN, r, "bad");
            assert_act(&a[1], TGS_ACT_ASSIGN, r, "x1");
        } else {
            assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
            assert_act(&a[0], TGS_ACT_ASSIGN, r, "bad");
        }
        assert_int_equal(tgs_core_worker_remove(c, r, (int64_t)r * 10 + 5),
                         TGS_OK);
        if (r < 3) {
            assert_no_actions(c);
            assert_int_equal(state_of(c, "bad"), TGS_READY);
            assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("bad"))),
                             r + 1);
        }
    }
    /* Notified? nobody watches; the states tell. */
    assert_no_actions(c);
    const tgs_task *t = tgs_core_find(c, LIT("bad"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.KilledWorker");
    cf_assert_str_is(tgs_task_err_message(t),
                     "task 'bad' killed 3 workers in a row: each died while "
                     "running it (allowed_failures=3)");
    assert_int_equal(tgs_task_attempt(t), 3);
    t = tgs_core_find(c, LIT("dep"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_origin(t), "bad");
    /* x1 was only queued there: not blamed, no attempt used. */
    t = tgs_core_find(c, LIT("x1"));
    assert_int_equal(tgs_task_state(t), TGS_READY);
    assert_int_equal(tgs_task_attempt(t), 1);

    add_worker(c, 9, "good", 2, "tg.f", NULL, 100);
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    for (size_t i = 0; i < k; i++)
        assert_int_equal(finish_ok(c, 9, a[i].key, "", 101), TGS_OK);
    assert_counts(c, 0, 0, 0, 2, 2, 0);
    tgs_core_free(c);
}

/* "In a row": a run that ends with an outcome (even an error) resets the
 * count of lost workers; losses do not use retries. */
static void test_core__killed_in_a_row_resets(void **state)
{
    (void)state;
    tgs_core_opts o = {.allowed_failures = 2, .retry_backoff_ms = -1};
    tgs_core *c = cf_core_new(&o);
    tgs_task_spec s = mk("t", "tg.f");
    s.retries = 1;
    assert_int_equal(submit(c, &s, 1, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 1);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK); /* 1 lost */
    assert_int_equal(tgs_task_retries(tgs_core_find(c, LIT("t"))), 1);
    add_worker(c, 2, "w2", 1, "tg.f", NULL, 3);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(finish_err(c, 2, "t", "E", "m", "", 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1); /* retried at once */
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "t");
    assert_int_equal(tgs_core_worker_remove(c, 2, 5), TGS_OK); /* 1 again */
    assert_int_equal(state_of(c, "t"), TGS_READY);
    add_worker(c, 3, "w3", 1, "tg.f", NULL, 6);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(tgs_core_worker_remove(c, 3, 7), TGS_OK); /* 2 */
    const tgs_task *t = tgs_core_find(c, LIT("t"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.KilledWorker");
    assert_int_equal(tgs_task_attempt(t), 4); /* runs started */
    tgs_core_free(c);
}

static void test_core__steal_to_idle_worker(void **state)
{
    (void)state;
    tgs_core_opts o = {.max_prefetch = 8};
    tgs_core *c = cf_core_new(&o);
    add_worker(c, 1, "slow", 1, "tg.f", NULL, 0);
    enum { N = 10 };
    char keys[N][16];
    tgs_task_spec s[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "t%d", i);
        s[i] = mk(keys[i], "tg.f");
    }
    assert_int_equal(submit(c, s, N, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    /* Short tasks: the queue deepens to 1 + 8 and takes everything. */
    assert_int_equal(finish_ok(c, 1, "t0", "", 0), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 8);
    assert_counts(c, 0, 0, 9, 1, 0, 0);

    /* An idle worker joins: it asks for two (its threads) of the tasks
     * the busy one received last. They stay PROCESSING there. */
    add_worker(c, 2, "idle", 2, "tg.f", NULL, 1);
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    assert_true(find_act(a, k, TGS_ACT_STEAL, "t9") >= 0);
    assert_true(find_act(a, k, TGS_ACT_STEAL, "t8") >= 0);
    assert_int_equal(a[0].worker, 1);
    assert_int_equal(a[1].worker, 1);
    assert_int_equal(worker_of(c, "t9"), 1);
    /* A worker that cannot run them steals nothing; nor does anyone ask
     * twice. */
    add_worker(c, 3, "other", 1, "tg.g", NULL, 2);
    tgs_core_tick(c, 3);
    assert_no_actions(c);

    /* t9 comes back unstarted: to the idle worker, no attempt used. */
    assert_int_equal(tgs_core_task_returned(c, 1, LIT("t9"), 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "t9");
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("t9"))), 1);
    /* t8 had started: its result is as good. The idle worker still has
     * a free thread: it asks for the next one. */
    assert_int_equal(finish_ok(c, 1, "t8", "", 5), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_STEAL, 1, "t7");
    assert_int_equal(state_of(c, "t8"), TGS_MEMORY);

    /* The busy worker is lost with a steal outstanding: all its tasks go
     * to the other one, nothing is left dangling. */
    assert_int_equal(tgs_core_worker_remove(c, 1, 6), TGS_OK);
    /* Only t1 had likely started on the lost worker. It must run alone
     * (quarantine), and it heads its queue: the queue waits until the
     * other worker has drained. */
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("t1"))), 2);
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("t7"))), 1);
    assert_no_actions(c);
    assert_int_equal(processing_count(c, 2), 1);
    assert_int_equal(finish_ok(c, 2, "t9", "", 7), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 2, "t1");
    assert_int_equal(finish_ok(c, 2, "t1", "", 8), TGS_OK);
    k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_true(k >= 2); /* t2... now flow as usual */
    for (size_t i = 0; i < k; i++)
        assert_act(&a[i], TGS_ACT_ASSIGN, 2, a[i].key);
    tgs_core_free(c);
}

static void test_core__set_resources(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource gpu[] = {{LIT("GPU"), 1}};
    add_worker_res(c, 1, "gpu", 1, "tg.f", gpu, 1, 0);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[3] = {mk_res("a", "tg.f", gpu, 1),
                          mk_res("b", "tg.f", gpu, 1), mk("e", "tg.f")};
    s[2].deps = da, s[2].ndeps = 1;
    assert_int_equal(submit(c, s, 3, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "a");
    why_is(c, "b", "waiting for free resources GPU=1");

    /* Dropping b's request: it runs beside a at once. */
    tgs_str kb = LIT("b");
    uint32_t n = 9;
    assert_int_equal(tgs_core_set_resources(c, &kb, 1, NULL, 0, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "b");
    assert_int_equal(tgs_task_nresources(tgs_core_find(c, kb)), 0);

    /* A READY task asks for more than any worker has, then for what
     * fits; processing and unknown keys are left alone. */
    tgs_task_spec cd[2] = {mk("c", "tg.f"), mk("d", "tg.f")};
    assert_int_equal(submit(c, cd, 2, 1, NULL), TGS_OK);
    assert_no_actions(c); /* the worker is full */
    tgs_str kc = LIT("c");
    tgs_resource gpu4[] = {{LIT("GPU"), 4}};
    assert_int_equal(tgs_core_set_resources(c, &kc, 1, gpu4, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(tgs_core_unplaceable(c), 1);
    why_is(c, "c", "no worker has resources GPU=4 (largest: GPU=1)");
    tgs_str ks[] = {LIT("c"), LIT("d"), LIT("a"), LIT("e"), LIT("nope")};
    assert_int_equal(tgs_core_set_resources(c, ks, 5, gpu, 1, &n), TGS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(tgs_core_unplaceable(c), 0);
    why_is(c, "c", "waiting for free resources GPU=1");
    assert_int_equal(state_of(c, "e"), TGS_WAITING);
    assert_int_equal(tgs_task_nresources(tgs_core_find(c, LIT("e"))), 1);

    /* Invalid requests change nothing. */
    tgs_resource neg[] = {{LIT("GPU"), -2}};
    assert_int_equal(tgs_core_set_resources(c, &kc, 1, neg, 1, &n), TGS_EINVAL);
    assert_int_equal(n, 0);
    assert_true(tgs_task_resource(tgs_core_find(c, kc), 0).amount == 1);

    /* a finishes: the GPU goes to e (earliest submitted of the class),
     * then c, then d. */
    assert_int_equal(finish_ok(c, 1, "a", "", 2), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "e");
    assert_int_equal(finish_ok(c, 1, "e", "", 3), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "c");
    assert_int_equal(finish_ok(c, 1, "c", "", 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "d");
    tgs_core_free(c);
}

/* Worker loss: runs in progress are rescheduled, results already in
 * memory stay (the scheduler holds them), nothing is recomputed. */
static void test_core__worker_loss_keeps_results(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 2, "tg.f", NULL, 0);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[4] = {mk("a", "tg.f"), mk("b", "tg.f"), mk("c", "tg.f"),
                          mk("d", "tg.f")};
    s[2].deps = da, s[2].ndeps = 1;
    assert_int_equal(submit(c, s, 4, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 3);
    assert_int_equal(finish_ok(c, 1, "a", "A", 1), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "c");

    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK);
    assert_no_actions(c);
    assert_counts(c, 0, 3, 0, 1, 0, 0);
    /* b and d had the two threads; c was queued behind them. */
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("b"))), 2);
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("d"))), 2);
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, LIT("c"))), 1);
    assert_int_equal(state_of(c, "a"), TGS_MEMORY);

    add_worker(c, 2, "w2", 2, "tg.f", NULL, 3);
    const tgs_task *tc = tgs_core_find(c, LIT("c"));
    size_t len;
    const uint8_t *r = tgs_task_result(tgs_task_dep(tc, 0), &len);
    assert_int_equal(len, 1);
    assert_memory_equal(r, "A", 1);
    /* b, c and d run again (b and d each alone: they were running when
     * the worker died); a, already in memory, never does. */
    size_t total = 0;
    for (int round = 0; round < 8 && total < 3; round++) {
        size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
        assert_true(k >= 1);
        assert_int_equal(find_act(a, k, TGS_ACT_ASSIGN, "a"), -1);
        for (size_t i = 0; i < k; i++)
            assert_int_equal(finish_ok(c, 2, a[i].key, "", 4), TGS_OK);
        total += k;
    }
    assert_int_equal(total, 3);
    assert_no_actions(c);
    assert_counts(c, 0, 0, 0, 4, 0, 0);
    tgs_core_free(c);
}

/* Cancel: the task and its dependents; a running one frees its resources
 * at once and its late result is ignored. Release forgets. */
static void test_core__cancel_frees_resources(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource gpu[] = {{LIT("GPU"), 1}};
    add_worker_res(c, 1, "gpu", 1, "tg.f", gpu, 1, 0);
    tgs_str da[] = {LIT("a")};
    tgs_task_spec s[3] = {mk_res("a", "tg.f", gpu, 1),
                          mk_res("b", "tg.f", gpu, 1), mk("c", "tg.f")};
    s[2].deps = da, s[2].ndeps = 1;
    assert_int_equal(submit(c, s, 3, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    tgs_str ka = LIT("a");
    uint32_t n;
    assert_int_equal(tgs_core_cancel(c, &ka, 1, 1, &n), TGS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_act(&a[0], TGS_ACT_CANCEL, 1, "a");
    assert_act(&a[1], TGS_ACT_ASSIGN, 1, "b");
    assert_int_equal(finish_ok(c, 1, "a", "late", 2), TGS_ESTATE);
    assert_int_equal(state_of(c, "a"), TGS_CANCELLED);
    assert_int_equal(state_of(c, "c"), TGS_CANCELLED);
    assert_int_equal(finish_ok(c, 1, "b", "B", 3), TGS_OK);

    tgs_str all[] = {LIT("a"), LIT("b"), LIT("c")};
    assert_int_equal(tgs_core_release(c, all, 3, &n), TGS_OK);
    assert_int_equal(n, 3);
    assert_null(tgs_core_find(c, ka));
    uint64_t counts[TGS_NSTATES];
    tgs_core_counts(c, counts);
    assert_int_equal(counts[TGS_RELEASED], 3);
    assert_counts(c, 0, 0, 0, 0, 0, 0);
    tgs_core_free(c);
}

/* Many distinct requests come and go: unused classes are collected, and
 * the requests still work afterwards. */
static void test_core__classes_collected(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_resource mem[] = {{LIT("mem"), 1000}};
    add_worker_res(c, 1, "w1", 1, "tg.f", mem, 1, 0);
    cf_act a[CF_MAX_ACTS];
    int64_t now = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200; i++) {
            char key[32];
            snprintf(key, sizeof key, "k%d.%d", round, i);
            tgs_resource r[] = {{LIT("mem"), 1 + i % 150}};
            tgs_str only[] = {LIT("w1")};
            tgs_task_spec s = mk_res(key, "tg.f", r, 1);
            if (i % 2)
                s.workers = only, s.nworkers = 1;
            assert_int_equal(submit(c, &s, 1, ++now, NULL), TGS_OK);
            assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
            assert_act(&a[0], TGS_ACT_ASSIGN, 1, key);
            assert_int_equal(finish_ok(c, 1, key, "", ++now), TGS_OK);
            uint32_t n;
            tgs_str k = cf_str(key);
            assert_int_equal(tgs_core_release(c, &k, 1, &n), TGS_OK);
            assert_int_equal(n, 1);
        }
    }
    assert_counts(c, 0, 0, 0, 0, 0, 0);
    tgs_core_free(c);
}

/* ---- random events, checked against invariants ---- */

enum { RW_MAX = 64, RK_MAX = 4096, RR_N = 3 };

/* The resources of the random test, by index. */
static const char *const rr_names[RR_N] = {"GPU", "process", "mem"};

typedef struct rworker {
    uint64_t id;
    char name[16];
    unsigned funcs; /* bit i: provides tg.r<i> */
    double cap[RR_N];
    bool alive;
} rworker;

typedef struct rstate {
    tgs_core *c;
    uint64_t rng;
    int64_t now;
    rworker w[RW_MAX];
    size_t nw;
    uint64_t next_id;
    char keys[RK_MAX][16];
    size_t nk;
} rstate;

static bool bytes_is(tgs_str s, const char *z)
{
    return s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0;
}

static uint32_t rnd(rstate *r, uint32_t n)
{
    r->rng = r->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((r->rng >> 33) % n);
}

static rworker *rworker_find(rstate *r, uint64_t id)
{
    for (size_t i = 0; i < r->nw; i++)
        if (r->w[i].id == id && r->w[i].alive)
            return &r->w[i];
    return NULL;
}

static int rres_index(tgs_str name)
{
    for (int i = 0; i < RR_N; i++)
        if (name.len == strlen(rr_names[i]) &&
            memcmp(name.ptr, rr_names[i], name.len) == 0)
            return i;
    return -1;
}

/* A random request: nothing (most often), or one or two resources. */
static size_t rrequest(rstate *r, tgs_resource *out)
{
    static const double amounts[] = {1, 2, 0.5, 0.3, 8};
    size_t n = 0;
    uint32_t kind = rnd(r, 10);
    if (kind < 6)
        return 0;
    out[n++] =
        (tgs_resource){cf_str(rr_names[rnd(r, RR_N)]), amounts[rnd(r, 5)]};
    if (kind == 9)
        out[n++] = (tgs_resource){cf_str(rr_names[rnd(r, RR_N)]), 1};
    return n;
}

/* Every PROCESSING task is on a live worker that provides its function,
 * carries one of its names, and has room for what all its tasks hold;
 * state counts match the tasks. */
static void rcheck(rstate *r)
{
    uint64_t counts[TGS_NSTATES], seen[TGS_NSTATES] = {0};
    double used[RW_MAX][RR_N];
    memset(used, 0, sizeof used);
    for (size_t i = 0; i < r->nk; i++) {
        const tgs_task *t = tgs_core_find(r->c, cf_str(r->keys[i]));
        if (t == NULL)
            continue;
        seen[tgs_task_state(t)]++;
        uint64_t wid;
        if (!tgs_task_worker(t, &wid))
            continue;
        rworker *w = rworker_find(r, wid);
        assert_non_null(w);
        tgs_str f = tgs_task_func(t);
        assert_true(w->funcs & (1u << (f.ptr[f.len - 1] - '0')));
        size_t nr = tgs_task_nrestrictions(t);
        bool named = nr == 0;
        for (size_t j = 0; j < nr; j++)
            named = named || bytes_is(tgs_task_restriction(t, j), w->name);
        assert_true(named);
        for (size_t j = 0; j < tgs_task_nresources(t); j++) {
            tgs_resource res = tgs_task_resource(t, j);
            int ri = rres_index(res.name);
            assert_true(ri >= 0);
            used[w - r->w][ri] += res.amount;
        }
    }
    for (size_t i = 0; i < r->nw; i++)
        for (int j = 0; j < RR_N; j++)
            assert_true(used[i][j] <= r->w[i].cap[j] + 1e-6);
    tgs_core_counts(r->c, counts);
    for (int s = TGS_WAITING; s <= TGS_CANCELLED; s++)
        assert_int_equal(counts[s], seen[s]);
    assert_true(tgs_core_unplaceable(r->c) <= counts[TGS_READY]);
}

/* Answer one pending action the way a worker would, at random. */
static void ranswer(rstate *r, cf_act *pend, size_t *npend)
{
    size_t i = rnd(r, (uint32_t)*npend);
    cf_act a = pend[i];
    pend[i] = pend[--*npend];
    if (a.kind == TGS_ACT_STEAL || rnd(r, 10) == 0) {
        tgs_core_task_returned(r->c, a.worker, cf_str(a.key), r->now);
    } else if (rnd(r, 5) == 0) {
        finish_err(r->c, a.worker, a.key, "E", "boom", "", r->now);
    } else {
        finish_ok(r->c, a.worker, a.key, "x", r->now);
    }
}

static void rpop(rstate *r, cf_act *pend, size_t *npend, size_t cap)
{
    tgs_action a;
    while (tgs_core_next_action(r->c, &a)) {
        if (a.kind != TGS_ACT_ASSIGN && a.kind != TGS_ACT_STEAL)
            continue;
        if (*npend == cap)
            continue; /* dropped: the task stays processing, as if slow */
        cf_act *p = &pend[(*npend)++];
        tgs_str k = tgs_task_key(a.task);
        p->kind = a.kind;
        p->worker = a.worker;
        memcpy(p->key, k.ptr, k.len);
        p->key[k.len] = '\0';
    }
}

static void rsubmit(rstate *r)
{
    tgs_task_spec s[4];
    tgs_resource res[4][2];
    tgs_str deps[4][2], names[4][2];
    size_t n = 1 + rnd(r, 4);
    if (r->nk + n > RK_MAX)
        return;
    for (size_t i = 0; i < n; i++) {
        char *key = r->keys[r->nk + i];
        snprintf(key, 16, "k%zu", r->nk + i);
        static const char *const funcs[] = {"tg.r0", "tg.r1", "tg.r2"};
        s[i] = mk(key, funcs[rnd(r, 3)]);
        s[i].priority = (int32_t)rnd(r, 5) - 2;
        s[i].retries = rnd(r, 3);
        s[i].nresources = rrequest(r, res[i]);
        s[i].resources = res[i];
        size_t nd = 0;
        for (size_t d = 0; d < 2 && r->nk + i > 0; d++) {
            const char *dk = r->keys[rnd(r, (uint32_t)(r->nk + i))];
            if (rnd(r, 3) == 0 && (tgs_core_find(r->c, cf_str(dk)) != NULL ||
                                   (size_t)(dk - r->keys[0]) / 16 >= r->nk))
                deps[i][nd++] = cf_str(dk);
        }
        s[i].deps = deps[i];
        s[i].ndeps = nd;
        if (rnd(r, 8) == 0) {
            static const char *const wn[] = {"w0", "w1", "w2", "w3", "nobody"};
            names[i][0] = cf_str(wn[rnd(r, 5)]);
            names[i][1] = cf_str(wn[rnd(r, 5)]);
            s[i].workers = names[i];
            s[i].nworkers = 1 + rnd(r, 2);
        }
    }
    char err[128];
    if (tgs_core_submit(r->c, s, n, r->now, NULL, err, sizeof err) == TGS_OK)
        r->nk += n;
}

static void radd_worker(rstate *r)
{
    /* A free slot: a lost worker's, else a new one (the last slot is for
     * the final worker). */
    size_t slot = 0;
    while (slot < r->nw && r->w[slot].alive)
        slot++;
    if (slot + 1 >= RW_MAX)
        return;
    rworker *w = &r->w[slot];
    memset(w, 0, sizeof *w);
    w->id = 100 + r->next_id++;
    snprintf(w->name, sizeof w->name, "w%u", (unsigned)(w->id % 5));
    w->funcs = 1 + rnd(r, 7);
    tgs_str funcs[3];
    size_t nf = 0;
    static const char *const fnames[] = {"tg.r0", "tg.r1", "tg.r2"};
    for (int i = 0; i < 3; i++)
        if (w->funcs & (1u << i))
            funcs[nf++] = cf_str(fnames[i]);
    tgs_resource res[RR_N];
    size_t nr = 0;
    static const double caps[] = {0, 1, 2, 4};
    for (int i = 0; i < RR_N; i++) {
        w->cap[i] = caps[rnd(r, 4)];
        if (w->cap[i] > 0)
            res[nr++] = (tgs_resource){cf_str(rr_names[i]), w->cap[i]};
    }
    tgs_worker_spec ws = {.name = cf_str(w->name),
                          .nthreads = 1 + rnd(r, 3),
                          .funcs = funcs,
                          .nfuncs = nf,
                          .resources = res,
                          .nresources = nr};
    assert_int_equal(tgs_core_worker_add(r->c, w->id, &ws, r->now), TGS_OK);
    w->alive = true;
    if (slot == r->nw)
        r->nw++;
}

static void test_core__random_events_keep_invariants(void **state)
{
    (void)state;
    static rstate r;
    static cf_act pend[512];
    memset(&r, 0, sizeof r);
    size_t npend = 0;
    tgs_core_opts o = {.no_worker_timeout_ms = 5000,
                       .allowed_failures = 2,
                       .max_prefetch = 4,
                       .retry_backoff_ms = 10,
                       .retry_backoff_max_ms = 40};
    r.c = cf_core_new(&o);
    r.rng = 42;
    for (int step = 0; step < 20000; step++) {
        r.now += rnd(&r, 3);
        uint32_t op = rnd(&r, 100);
        if (op < 20) {
            rsubmit(&r);
        } else if (op < 24) {
            radd_worker(&r);
        } else if (op < 28 && r.nw > 0) {
            rworker *w = &r.w[rnd(&r, (uint32_t)r.nw)];
            if (w->alive) {
                if (rnd(&r, 4) == 0)
                    tgs_core_worker_drain(r.c, w->id, r.now);
                else {
                    w->alive = false;
                    tgs_core_worker_remove(r.c, w->id, r.now);
                }
            }
        } else if (op < 75 && npend > 0) {
            ranswer(&r, pend, &npend);
        } else if (op < 78 && r.nk > 0) {
            tgs_str k = cf_str(r.keys[rnd(&r, (uint32_t)r.nk)]);
            tgs_core_cancel(r.c, &k, 1, r.now, NULL);
        } else if (op < 82 && r.nk > 0) {
            tgs_str k = cf_str(r.keys[rnd(&r, (uint32_t)r.nk)]);
            tgs_core_release(r.c, &k, 1, NULL);
        } else if (op < 85 && r.nk > 0) {
            tgs_str k = cf_str(r.keys[rnd(&r, (uint32_t)r.nk)]);
            tgs_core_set_priority(r.c, &k, 1, (int32_t)rnd(&r, 9) - 4, NULL);
        } else if (op < 88 && r.nk > 0) {
            tgs_str k = cf_str(r.keys[rnd(&r, (uint32_t)r.nk)]);
            tgs_resource res[2];
            size_t nr = rrequest(&r, res);
            tgs_core_set_resources(r.c, &k, 1, res, nr, NULL);
        } else {
            tgs_core_tick(r.c, r.now);
        }
        rpop(&r, pend, &npend, 512);
        if (step % 64 == 0)
            rcheck(&r);
    }
    rcheck(&r);

    /* Liveness: with a worker for everything, answering everything, all
     * tasks end (the ones restricted to "nobody" by the timeout). */
    rworker *big = &r.w[r.nw++];
    memset(big, 0, sizeof *big);
    big->id = 99;
    strcpy(big->name, "w0");
    big->funcs = 7;
    tgs_str funcs[] = {LIT("tg.r0"), LIT("tg.r1"), LIT("tg.r2")};
    tgs_resource res[RR_N];
    for (int i = 0; i < RR_N; i++) {
        big->cap[i] = 8;
        res[i] = (tgs_resource){cf_str(rr_names[i]), 8};
    }
    tgs_worker_spec ws = {.name = LIT("w0"),
                          .nthreads = 4,
                          .funcs = funcs,
                          .nfuncs = 3,
                          .resources = res,
                          .nresources = RR_N};
    big->alive = true;
    for (size_t i = 0; i < r.nw; i++) {
        rworker *w = &r.w[i];
        if (w->alive && w != big) {
            w->alive = false;
            tgs_core_worker_remove(r.c, w->id, r.now);
        }
    }
    assert_int_equal(tgs_core_worker_add(r.c, big->id, &ws, r.now), TGS_OK);
    npend = 0;
    rpop(&r, pend, &npend, 512);
    uint64_t counts[TGS_NSTATES];
    for (int i = 0; i < 100000; i++) {
        tgs_core_counts(r.c, counts);
        if (counts[TGS_WAITING] + counts[TGS_READY] + counts[TGS_PROCESSING] ==
            0)
            break;
        r.now += 5;
        if (npend > 0) {
            cf_act a = pend[--npend];
            if (a.kind == TGS_ACT_STEAL)
                tgs_core_task_returned(r.c, a.worker, cf_str(a.key), r.now);
            else
                finish_ok(r.c, a.worker, a.key, "x", r.now);
        } else {
            tgs_core_tick(r.c, r.now);
        }
        rpop(&r, pend, &npend, 512);
    }
    rcheck(&r);
    tgs_core_counts(r.c, counts);
    assert_int_equal(counts[TGS_WAITING], 0);
    assert_int_equal(counts[TGS_READY], 0);
    assert_int_equal(counts[TGS_PROCESSING], 0);
    tgs_core_free(r.c);
}

/* Quadratic behaviour anywhere (submit, dependents, heaps, forgetting,
 * error propagation) would make this test time out. */
static void test_core__large_graph(void **state)
{
    (void)state;
    enum { N = 100000 };
    const size_t total = 3 * (size_t)N;
    tgs_core *c = cf_core_new(NULL);
    char *keys = malloc(total * 16);
    tgs_task_spec *s = calloc(total, sizeof *s);
    tgs_str *deps = calloc(total, sizeof *deps);
    assert_non_null(keys);
    assert_non_null(s);
    assert_non_null(deps);
    /* N independent tasks, a chain of N (in reverse order in the batch),
     * and a second chain of N whose head will fail. */
    for (size_t i = 0; i < total; i++) {
        char *k = keys + i * 16;
        size_t j = i % N;
        if (i < N)
            snprintf(k, 16, "i%zu", j);
        else if (i < 2 * (size_t)N)
            snprintf(k, 16, "c%zu", (size_t)N - 1 - j);
        else
            snprintf(k, 16, "e%zu", j);
        s[i] = mk(k, i < 2 * (size_t)N ? "tg.f" : "tg.g");
    }
    for (size_t i = N; i < 2 * (size_t)N - 1; i++) {
        deps[i] = cf_str(keys + (i + 1) * 16); /* c(k) depends on c(k-1) */
        s[i].deps = &deps[i];
        s[i].ndeps = 1;
    }
    for (size_t i = 2 * (size_t)N + 1; i < total; i++) {
        deps[i] = cf_str(keys + (i - 1) * 16);
        s[i].deps = &deps[i];
        s[i].ndeps = 1;
    }
    tgs_submit_result res;
    assert_int_equal(submit(c, s, total, 0, &res), TGS_OK);
    assert_int_equal(res.accepted, total);
    assert_counts(c, 2 * (uint64_t)N - 2, N + 2, 0, 0, 0, 0);

    add_worker(c, 1, "w1", 4, "tg.f", NULL, 0);
    add_worker(c, 2, "w2", 1, "tg.g", NULL, 0);
    tgs_action a;
    tgs_str *run = malloc(total * sizeof *run);
    uint64_t *on = malloc(total * sizeof *on);
    assert_non_null(run);
    assert_non_null(on);
    size_t nrun = 0, head = 0, done = 0;
    int64_t now = 0;
    bool failed_e0 = false;
    for (;;) {
        while (tgs_core_next_action(c, &a)) {
            assert_int_equal(a.kind, TGS_ACT_ASSIGN);
            /* The key lives in the task, which stays while processing. */
            run[nrun] = tgs_task_key(a.task);
            on[nrun++] = a.worker;
        }
        if (head == nrun)
            break;
        now++;
        tgs_str k = run[head];
        uint64_t w = on[head++];
        int rc;
        if (!failed_e0 && k.len == 2 && memcmp(k.ptr, "e0", 2) == 0) {
            tgs_outcome o = {
                .ok = false, .err_type = LIT("E"), .err_message = LIT("boom")};
            rc = tgs_core_task_finished(c, w, k, &o, now);
            failed_e0 = true;
        } else {
            tgs_outcome o = {
                .ok = true, .data = (const uint8_t *)"1", .data_len = 1};
            rc = tgs_core_task_finished(c, w, k, &o, now);
        }
        assert_int_equal(rc, TGS_OK);
        done++;
    }
    assert_true(failed_e0);
    assert_int_equal(done, 2 * (size_t)N + 1);
    assert_counts(c, 0, 0, 0, 2 * (uint64_t)N, N, 0);
    const tgs_task *last = tgs_core_find(c, cf_str(keys + (total - 1) * 16));
    cf_assert_str_is(tgs_task_err_origin(last), "e0");

    /* Release everything: all forgotten, counted. */
    uint32_t n = 0;
    assert_int_equal(tgs_core_release(c, deps, 0, &n), TGS_OK);
    for (size_t i = 0; i < total; i++)
        deps[i] = s[i].key;
    assert_int_equal(tgs_core_release(c, deps, total, &n), TGS_OK);
    assert_int_equal(n, total);
    uint64_t counts[TGS_NSTATES];
    tgs_core_counts(c, counts);
    assert_int_equal(counts[TGS_RELEASED], total);
    assert_counts(c, 0, 0, 0, 0, 0, 0);
    free(run);
    free(on);
    free(deps);
    free(s);
    free(keys);
    tgs_core_free(c);
}

/* ---- priority across the scheduler and the workers' queues ---- */

/* A fake worker that behaves as the real ones do: it holds what it is
 * assigned, runs it on `nthreads` threads by priority then arrival, and
 * answers a steal by handing back a task it has not started. */
typedef struct fw_task {
    char key[64];
    int32_t prio;
    uint64_t arrival;
    bool started;
} fw_task;

typedef struct fworker {
    uint64_t id;
    uint32_t nthreads;
    fw_task t[64];
    size_t n;
} fworker;

typedef struct fcluster {
    tgs_core *c;
    fworker w[2];
    size_t nw;
    uint64_t arrivals;
    int64_t now;
    char started[64][64]; /* every start, in order */
    uint64_t started_on[64];
    size_t nstarted;
} fcluster;

static fworker *fc_worker(fcluster *f, uint64_t id)
{
    for (size_t i = 0; i < f->nw; i++)
        if (f->w[i].id == id)
            return &f->w[i];
    fail_msg("no fake worker %llu", (unsigned long long)id);
    return NULL;
}

static void fc_remove(fworker *w, size_t i)
{
    w->t[i] = w->t[--w->n];
}

/* Free threads start the best task held (priority, then arrival). */
static void fc_start(fcluster *f)
{
    for (size_t wi = 0; wi < f->nw; wi++) {
        fworker *w = &f->w[wi];
        for (;;) {
            uint32_t running = 0;
            fw_task *best = NULL;
            for (size_t i = 0; i < w->n; i++) {
                fw_task *t = &w->t[i];
                if (t->started)
                    running++;
                else if (best == NULL || t->prio > best->prio ||
                         (t->prio == best->prio && t->arrival < best->arrival))
                    best = t;
            }
            if (best == NULL || running >= w->nthreads)
                break;
            best->started = true;
            assert_true(f->nstarted < 64);
            strcpy(f->started[f->nstarted], best->key);
            f->started_on[f->nstarted++] = w->id;
        }
    }
}

/* Deliver every action (and what the answers cause) until none is left;
 * each batch is a message: received, then started where threads are
 * free. */
static void fc_pump(fcluster *f)
{
    cf_act a[CF_MAX_ACTS];
    size_t k;
    while ((k = cf_pop_all(f->c, a, CF_MAX_ACTS)) > 0) {
        char back[CF_MAX_ACTS][64];
        uint64_t back_on[CF_MAX_ACTS];
        size_t nback = 0;
        for (size_t i = 0; i < k; i++) {
            fworker *w = fc_worker(f, a[i].worker);
            if (a[i].kind == TGS_ACT_ASSIGN) {
                assert_true(w->n < 64);
                fw_task *t = &w->t[w->n++];
                strcpy(t->key, a[i].key);
                t->prio =
                    tgs_task_priority(tgs_core_find(f->c, cf_str(a[i].key)));
                t->arrival = f->arrivals++;
                t->started = false;
            } else if (a[i].kind == TGS_ACT_STEAL) {
                for (size_t j = 0; j < w->n; j++) {
                    if (strcmp(w->t[j].key, a[i].key) == 0 &&
                        !w->t[j].started) {
                        strcpy(back[nback], a[i].key);
                        back_on[nback++] = w->id;
                        fc_remove(w, j);
                        break;
                    }
                }
            } else {
                fail_msg("unexpected action %d", (int)a[i].kind);
            }
        }
        fc_start(f);
        for (size_t i = 0; i < nback; i++)
            assert_int_equal(tgs_core_task_returned(f->c, back_on[i],
                                                    cf_str(back[i]), f->now),
                             TGS_OK);
    }
}

/* `key`, running on `wid`, finishes. */
static void fc_finish(fcluster *f, uint64_t wid, const char *key)
{
    fworker *w = fc_worker(f, wid);
    size_t i = 0;
    while (i < w->n && strcmp(w->t[i].key, key) != 0)
        i++;
    assert_true(i < w->n && w->t[i].started);
    fc_remove(w, i);
    assert_int_equal(finish_ok(f->c, wid, key, "", f->now), TGS_OK);
    fc_start(f);
    fc_pump(f);
}

static void fc_submit(fcluster *f, const char *key, int32_t prio)
{
    tgs_task_spec s = mk(key, "tg.f");
    s.priority = prio;
    assert_int_equal(submit(f->c, &s, 1, f->now, NULL), TGS_OK);
    fc_pump(f);
}

/* The rule itself: no READY task a worker could run, and no task queued
 * on that worker, has a higher priority than a task it holds unstarted
 * (here every task is of tg.f and every worker runs it). */
static void fc_check_rule(fcluster *f, char keys[][16], size_t nkeys)
{
    for (size_t wi = 0; wi < f->nw; wi++) {
        const fworker *w = &f->w[wi];
        for (size_t i = 0; i < w->n; i++) {
            if (w->t[i].started)
                continue;
            for (size_t j = 0; j < nkeys; j++) {
                const tgs_task *t = tgs_core_find(f->c, cf_str(keys[j]));
                if (t != NULL && tgs_task_state(t) == TGS_READY &&
                    tgs_task_priority(t) > w->t[i].prio)
                    fail_msg("%s (READY, priority %d) waits while %s "
                             "(priority %d) is queued on worker %llu",
                             keys[j], tgs_task_priority(t), w->t[i].key,
                             w->t[i].prio, (unsigned long long)w->id);
            }
        }
    }
}

static fcluster *fc_new(const tgs_core_opts *o, size_t nw, uint32_t nthreads)
{
    static fcluster f;
    memset(&f, 0, sizeof f);
    f.c = cf_core_new(o);
    f.nw = nw;
    for (size_t i = 0; i < nw; i++) {
        f.w[i].id = i + 1;
        f.w[i].nthreads = nthreads;
        char name[24];
        snprintf(name, sizeof name, "w%zu", i + 1);
        add_worker(f.c, i + 1, name, nthreads, "tg.f", NULL, 0);
    }
    fc_pump(&f);
    return &f;
}

/* Busy workers (one blocker per thread), then p1..p20 submitted one at a
 * time in rising priority, the rule checked after each. */
static void fc_rising(fcluster *f, char keys[20][16])
{
    for (size_t i = 0; i < f->nw; i++)
        for (uint32_t j = 0; j < f->w[i].nthreads; j++) {
            char b[48];
            snprintf(b, sizeof b, "block%zu.%u", i, j);
            fc_submit(f, b, 0);
        }
    for (int i = 0; i < 20; i++) {
        snprintf(keys[i], 16, "p%d", i + 1);
        f->now++;
        fc_submit(f, keys[i], i + 1);
        fc_check_rule(f, keys, (size_t)i + 1);
        for (size_t w = 0; w < f->nw; w++) /* the over-take is bounded */
            assert_true(processing_count(f->c, f->w[w].id) <=
                        f->w[w].nthreads + 1024 + 1);
    }
}

/* Finish what runs, round robin over the workers, until nothing is left;
 * returns how many tasks started after `from`. */
static size_t fc_drain(fcluster *f, size_t from)
{
    for (size_t guard = 0; guard < 1000; guard++) {
        bool any = false;
        for (size_t wi = 0; wi < f->nw; wi++) {
            fworker *w = &f->w[wi];
            for (size_t i = 0; i < w->n; i++) {
                if (w->t[i].started) {
                    char key[64];
                    strcpy(key, w->t[i].key);
                    f->now += 5;
                    fc_finish(f, w->id, key);
                    any = true;
                    break;
                }
            }
        }
        if (!any)
            return f->nstarted - from;
    }
    fail_msg("the fake cluster does not drain");
    return 0;
}

static void assert_started_desc(const fcluster *f, size_t from, size_t n,
                                int top)
{
    for (size_t i = 0; i < n; i++) {
        char want[16];
        snprintf(want, sizeof want, "p%d", top - (int)i);
        assert_string_equal(f->started[from + i], want);
    }
}

static void test_core__priority_beats_prefetch_busy_worker(void **state)
{
    (void)state;
    fcluster *f = fc_new(NULL, 1, 1);
    char keys[20][16];
    fc_rising(f, keys);
    /* The blocker ends: the worker starts the highest, then the rest in
     * order, though p1 was queued there first. */
    size_t from = f->nstarted;
    assert_int_equal(fc_drain(f, from), 20);
    assert_started_desc(f, from, 20, 20);
    assert_counts(f->c, 0, 0, 0, 21, 0, 0);
    tgs_core_free(f->c);
}

static void test_core__priority_beats_prefetch_two_workers(void **state)
{
    (void)state;
    fcluster *f = fc_new(NULL, 2, 1);
    char keys[20][16];
    fc_rising(f, keys);
    /* What the workers hold unstarted are the two highest. */
    size_t from = f->nstarted;
    assert_int_equal(fc_drain(f, from), 20);
    assert_true(strcmp(f->started[from], "p20") == 0 ||
                strcmp(f->started[from], "p19") == 0);
    assert_true(strcmp(f->started[from + 1], "p20") == 0 ||
                strcmp(f->started[from + 1], "p19") == 0);
    assert_started_desc(f, from + 2, 18, 18);
    assert_counts(f->c, 0, 0, 0, 22, 0, 0);
    tgs_core_free(f->c);
}

static void test_core__priority_beats_prefetch_warm(void **state)
{
    (void)state;
    /* Warm estimates: tasks of tg.f took 4 ms, so the worker queues
     * 10 ms / 4 ms = 2 of them beyond its thread; and 0 ms, so it queues
     * up to max_prefetch. Either way the highest starts next. */
    for (int warm_ms = 4; warm_ms >= 0; warm_ms -= 4) {
        fcluster *f = fc_new(NULL, 1, 1);
        for (int i = 0; i < 10; i++) {
            char k[16];
            snprintf(k, sizeof k, "warm%d", i);
            fc_submit(f, k, 0);
            f->now += warm_ms;
            fc_finish(f, 1, k);
        }
        char keys[20][16];
        fc_rising(f, keys);
        if (warm_ms == 4)
            assert_int_equal(processing_count(f->c, 1), 3);
        size_t from = f->nstarted;
        assert_int_equal(fc_drain(f, from), 20);
        assert_started_desc(f, from, 20, 20);
        tgs_core_free(f->c);
    }
}

static void test_core__priority_beats_prefetch_two_threads(void **state)
{
    (void)state;
    fcluster *f = fc_new(NULL, 1, 2);
    char keys[20][16];
    fc_rising(f, keys);
    size_t from = f->nstarted;
    assert_int_equal(fc_drain(f, from), 20);
    /* Two threads free at once (round robin finishes both blockers):
     * the two highest first, then in order. */
    assert_true(strcmp(f->started[from], "p20") == 0);
    assert_started_desc(f, from, 20, 20);
    tgs_core_free(f->c);
}

/* A READY task needing resources that a lower task queued on the worker
 * holds: the lower one is handed back, and the higher one is assigned
 * once its resources are free. */
static void test_core__priority_beats_prefetch_resources(void **state)
{
    (void)state;
    static const tgs_resource gpu1[] = {{{"GPU", 3}, 1}};
    tgs_core *c = cf_core_new(NULL);
    add_worker_res(c, 1, "w1", 1, "tg.f", gpu1, 1, 0);
    tgs_task_spec b = mk("block", "tg.f");
    assert_int_equal(submit(c, &b, 1, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    tgs_task_spec lo = mk_res("lo", "tg.f", gpu1, 1);
    lo.priority = 1;
    assert_int_equal(submit(c, &lo, 1, 1, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "lo"); /* queued, holds the GPU */
    tgs_task_spec hi = mk_res("hi", "tg.f", gpu1, 1);
    hi.priority = 5;
    assert_int_equal(submit(c, &hi, 1, 2, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_STEAL, 1, "lo");
    assert_int_equal(state_of(c, "hi"), TGS_READY); /* the GPU is not free */
    /* Asked once only, however often the core looks. */
    tgs_core_tick(c, 3);
    assert_no_actions(c);
    assert_int_equal(tgs_core_task_returned(c, 1, LIT("lo"), 4), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "hi");
    assert_int_equal(state_of(c, "lo"), TGS_READY);
    assert_int_equal(finish_ok(c, 1, "block", "", 10), TGS_OK);
    assert_no_actions(c); /* hi holds the GPU: lo waits */
    assert_int_equal(finish_ok(c, 1, "hi", "", 20), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "lo");
    tgs_core_free(c);
}

/* A lower task that had started when asked back answers with its result;
 * it is not asked again, and what took its place stays. */
static void test_core__priority_displaced_task_had_started(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_task_spec s[2] = {mk("b", "tg.f"), mk("lo", "tg.f")};
    assert_int_equal(submit(c, s, 2, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    tgs_task_spec hi = mk("hi", "tg.f");
    hi.priority = 3;
    assert_int_equal(submit(c, &hi, 1, 1, NULL), TGS_OK);
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    assert_true(find_act(a, k, TGS_ACT_STEAL, "lo") >= 0);
    assert_true(find_act(a, k, TGS_ACT_ASSIGN, "hi") >= 0);
    /* b finished and lo had started before the request arrived. */
    assert_int_equal(finish_ok(c, 1, "b", "", 2), TGS_OK);
    assert_no_actions(c);
    assert_int_equal(finish_ok(c, 1, "lo", "", 3), TGS_OK);
    assert_int_equal(state_of(c, "lo"), TGS_MEMORY);
    assert_int_equal(worker_of(c, "hi"), 1);
    tgs_task_spec hi2 = mk("hi2", "tg.f");
    hi2.priority = 2;
    assert_int_equal(submit(c, &hi2, 1, 4, NULL), TGS_OK);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_act(&a[0], TGS_ACT_ASSIGN, 1, "hi2"); /* room again */
    tgs_core_free(c);
}

/* Annotate raising a READY task above work queued on a worker. */
static void test_core__priority_annotate_beats_prefetch(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, "tg.f", NULL, 0);
    tgs_task_spec s[3] = {mk("b", "tg.f"), mk("q", "tg.f"), mk("r", "tg.f")};
    assert_int_equal(submit(c, s, 3, 0, NULL), TGS_OK);
    cf_act a[CF_MAX_ACTS];
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 2);
    assert_int_equal(state_of(c, "r"), TGS_READY);
    tgs_str r = LIT("r");
    uint32_t n = 0;
    assert_int_equal(tgs_core_set_priority(c, &r, 1, 7, &n), TGS_OK);
    assert_int_equal(n, 1);
    size_t k = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(k, 2);
    assert_true(find_act(a, k, TGS_ACT_STEAL, "q") >= 0);
    assert_true(find_act(a, k, TGS_ACT_ASSIGN, "r") >= 0);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core__graph_in_order),
        cmocka_unit_test(test_core__error_propagates),
        cmocka_unit_test(test_core__error_keeps_serialized_error),
        cmocka_unit_test(test_core__worker_loss_reassigns),
        cmocka_unit_test(test_core__killed_workers),
        cmocka_unit_test(test_core__repeated_keys),
        cmocka_unit_test(test_core__unknown_dep_rejected),
        cmocka_unit_test(test_core__cycle_rejected),
        cmocka_unit_test(test_core__empty_key_or_func),
        cmocka_unit_test(test_core__priority_order),
        cmocka_unit_test(test_core__function_placement),
        cmocka_unit_test(test_core__retries),
        cmocka_unit_test(test_core__cancel),
        cmocka_unit_test(test_core__release_forgets),
        cmocka_unit_test(test_core__stale_finished_ignored),
        cmocka_unit_test(test_core__task_returned),
        cmocka_unit_test(test_core__drain),
        cmocka_unit_test(test_core__annotate_priority),
        cmocka_unit_test(test_core__balance),
        cmocka_unit_test(test_core__prefetch_adapts),
        cmocka_unit_test(test_core__counts_and_two_cores),
        cmocka_unit_test(test_core__annotations_kept),
        cmocka_unit_test(test_core__priority_with_resources),
        cmocka_unit_test(test_core__resources_gpu_only_on_gpu_worker),
        cmocka_unit_test(test_core__resources_serialize),
        cmocka_unit_test(test_core__resources_unfittable),
        cmocka_unit_test(test_core__restrictions),
        cmocka_unit_test(test_core__retry_backoff),
        cmocka_unit_test(test_core__killed_workers_alone),
        cmocka_unit_test(test_core__killed_in_a_row_resets),
        cmocka_unit_test(test_core__steal_to_idle_worker),
        cmocka_unit_test(test_core__priority_beats_prefetch_busy_worker),
        cmocka_unit_test(test_core__priority_beats_prefetch_two_workers),
        cmocka_unit_test(test_core__priority_beats_prefetch_warm),
        cmocka_unit_test(test_core__priority_beats_prefetch_two_threads),
        cmocka_unit_test(test_core__priority_beats_prefetch_resources),
        cmocka_unit_test(test_core__priority_displaced_task_had_started),
        cmocka_unit_test(test_core__priority_annotate_beats_prefetch),
        cmocka_unit_test(test_core__set_resources),
        cmocka_unit_test(test_core__worker_loss_keeps_results),
        cmocka_unit_test(test_core__cancel_frees_resources),
        cmocka_unit_test(test_core__classes_collected),
        cmocka_unit_test(test_core__random_events_keep_invariants),
        cmocka_unit_test(test_core__large_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
