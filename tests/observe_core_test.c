/* SPDX-License-Identifier: Apache-2.0
 *
 * observe_core_test.c: unit tests of what the core lets watchers see: the
 * changes of task states of each event, in order (tgs_core_observe,
 * tgs_core_transitions), for a diamond graph run to the end and forgotten;
 * nothing recorded while not observed; and the tasks of each function per
 * state (tgs_core_func_next) agreeing with the totals.
 * Depends on //scheduler:core and cmocka.
 */
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

/* The diamond a -> (b, c) -> d; a and d run function "f", b and c "g". */
static void submit_diamond(tgs_core *c)
{
    tgs_str da = cf_str("a"), dbc[2] = {cf_str("b"), cf_str("c")};
    tgs_task_spec s[4] = {
        {.key = cf_str("a"), .func = cf_str("f")},
        {.key = cf_str("b"), .func = cf_str("g"), .deps = &da, .ndeps = 1},
        {.key = cf_str("c"), .func = cf_str("g"), .deps = &da, .ndeps = 1},
        {.key = cf_str("d"), .func = cf_str("f"), .deps = dbc, .ndeps = 2},
    };
    char err[256];
    if (tgs_core_submit(c, s, 4, 0, NULL, err, sizeof err) != TGS_OK)
        fail_msg("submit: %s", err);
}

/* Worker `wid` with one thread, providing f and g. */
static void add_worker(tgs_core *c, uint64_t wid)
{
    tgs_str funcs[] = {cf_str("f"), cf_str("g")};
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str("w1");
    w.nthreads = 1;
    w.funcs = funcs;
    w.nfuncs = 2;
    assert_int_equal(tgs_core_worker_add(c, wid, &w, 0), TGS_OK);
}

static int finish(tgs_core *c, uint64_t wid, const char *key)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.codec = cf_str("raw");
    o.data = (const uint8_t *)"1";
    o.data_len = 1;
    return tgs_core_task_finished(c, wid, cf_str(key), &o, 1);
}

/* The last event's changes as "key:from>to " items, in order. */
static void changes(tgs_core *c, char *buf, size_t len)
{
    size_t n, used = 0;
    const tgs_transition *t = tgs_core_transitions(c, &n, NULL);
    cf_act acts[64];
    cf_pop_all(c, acts, 64);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        tgs_str k = tgs_task_key(t[i].task);
        used +=
            (size_t)snprintf(buf + used, len - used, "%.*s:%d>%d ", (int)k.len,
                             k.ptr, (int)t[i].from, (int)t[i].to);
        assert_true(used < len);
    }
}

/* Counts of function `name` (zeros if unknown). */
static void func_counts(tgs_core *c, const char *name,
                        uint64_t out[TGS_NSTATES])
{
    size_t pos = 0;
    tgs_str fn;
    uint64_t k[TGS_NSTATES];
    memset(out, 0, TGS_NSTATES * sizeof out[0]);
    while (tgs_core_func_next(c, &pos, &fn, k))
        if (fn.len == strlen(name) && memcmp(fn.ptr, name, fn.len) == 0)
            memcpy(out, k, sizeof k);
}

static void test_diamond_changes_in_order(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    char buf[512];
    tgs_core_observe(c, true);
    add_worker(c, 1);
    changes(c, buf, sizeof buf);
    assert_string_equal(buf, "");

    submit_diamond(c);
    changes(c, buf, sizeof buf);
    /* New tasks WAITING (1), a READY (2) then PROCESSING (3). */
    assert_string_equal(buf, "a:0>1 a:1>2 b:0>1 c:0>1 d:0>1 a:2>3 ");

    assert_int_equal(finish(c, 1, "a"), TGS_OK);
    changes(c, buf, sizeof buf);
    assert_string_equal(buf, "a:3>4 b:1>2 c:1>2 b:2>3 c:2>3 ");

    assert_int_equal(finish(c, 1, "b"), TGS_OK);
    changes(c, buf, sizeof buf);
    assert_string_equal(buf, "b:3>4 ");
    assert_int_equal(finish(c, 1, "c"), TGS_OK);
    changes(c, buf, sizeof buf);
    /* d runs; a, b and c stay: no client released them. */
    assert_string_equal(buf, "c:3>4 d:1>2 d:2>3 ");

    tgs_str rel[3] = {cf_str("a"), cf_str("b"), cf_str("c")};
    assert_int_equal(tgs_core_release(c, rel, 3, NULL), TGS_OK);
    changes(c, buf, sizeof buf);
    /* a is forgotten (b and c are done); b and c are still needed by d. */
    assert_string_equal(buf, "a:4>7 ");
    assert_int_equal(finish(c, 1, "d"), TGS_OK);
    changes(c, buf, sizeof buf);
    assert_string_equal(buf, "d:3>4 b:4>7 c:4>7 ");

    tgs_core_tick(c, 1);
    changes(c, buf, sizeof buf);
    assert_string_equal(buf, "");
    tgs_core_free(c);
}

static void test_nothing_recorded_unless_observed(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    size_t n = 99;
    add_worker(c, 1);
    submit_diamond(c);
    assert_null(tgs_core_transitions(c, &n, NULL));
    assert_int_equal(n, 0);
    tgs_core_observe(c, true);
    assert_int_equal(finish(c, 1, "a"), TGS_OK);
    assert_non_null(tgs_core_transitions(c, &n, NULL));
    assert_int_equal(n, 5);
    tgs_core_observe(c, false);
    assert_int_equal(finish(c, 1, "b"), TGS_OK);
    assert_null(tgs_core_transitions(c, &n, NULL));
    assert_int_equal(n, 0);
    tgs_core_free(c);
}

static void test_counts_per_function(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    uint64_t f[TGS_NSTATES], g[TGS_NSTATES], all[TGS_NSTATES];
    add_worker(c, 1);
    submit_diamond(c);
    func_counts(c, "f", f);
    func_counts(c, "g", g);
    assert_int_equal(f[TGS_PROCESSING], 1); /* a */
    assert_int_equal(f[TGS_WAITING], 1);    /* d */
    assert_int_equal(g[TGS_WAITING], 2);
    assert_int_equal(finish(c, 1, "a"), TGS_OK);
    func_counts(c, "f", f);
    func_counts(c, "g", g);
    assert_int_equal(f[TGS_MEMORY], 1);
    assert_int_equal(g[TGS_PROCESSING], 2);
    tgs_core_counts(c, all);
    for (int s = 1; s < TGS_NSTATES; s++)
        assert_int_equal(f[s] + g[s], all[s]);

    tgs_str ab[2] = {cf_str("b"), cf_str("c")};
    assert_int_equal(tgs_core_cancel(c, ab, 2, 0, NULL), TGS_OK);
    func_counts(c, "g", g);
    func_counts(c, "f", f);
    assert_int_equal(g[TGS_CANCELLED], 2);
    assert_int_equal(f[TGS_CANCELLED], 1); /* d, with them */
    func_counts(c, "nope", f);
    for (int s = 0; s < TGS_NSTATES; s++)
        assert_int_equal(f[s], 0);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond_changes_in_order),
        cmocka_unit_test(test_nothing_recorded_unless_observed),
        cmocka_unit_test(test_counts_per_function),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
