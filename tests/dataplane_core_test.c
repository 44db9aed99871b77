/* SPDX-License-Identifier: Apache-2.0
 *
 * dataplane_core_test.c: unit tests of the core's bookkeeping of results
 * held on workers (scheduler/core.h, scheduler/core/data.c), driven with
 * a fake clock and fake workers: the holder and size recorded (never the
 * bytes), placement of tasks with held inputs only on workers that can
 * fetch, and on the worker holding the most of their bytes (data
 * locality), TGS_ACT_FREE for each holder when a held result is
 * forgotten, recomputation from the lineage when its only holder is lost
 * (dependents wait for it again; tg.DataLost when an input was forgotten,
 * tg.KilledWorker when lost too often) while inline results stay,
 * tg.ProtocolError for a held result from a worker without a data
 * service; and replication: the choice of copy targets (able to fetch,
 * not paused, not holding it, the most free memory first, `workers`
 * names), copies ending (landed, failed, target lost, result forgotten),
 * a result with a copy surviving its first holder's loss without
 * recomputation, and its release freeing it on every holder. Depends on
 * //scheduler:core, the core fixture
 * (core_fixture.h) and cmocka.
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

static void add_worker(tgs_core *c, uint64_t wid, const char *name,
                       uint32_t nthreads, bool can_fetch)
{
    tgs_str funcs[] = {cf_str("f")};
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str(name);
    w.nthreads = nthreads;
    w.funcs = funcs;
    w.nfuncs = 1;
    w.can_fetch = can_fetch;
    assert_int_equal(tgs_core_worker_add(c, wid, &w, 0), TGS_OK);
}

/* Submit `key` (function f) depending on `deps` (NULL-terminated, may be
 * NULL); restricted to worker `only` if given. */
static void submit(tgs_core *c, const char *key, const char *const *deps,
                   const char *only)
{
    tgs_str d[8], w[1];
    tgs_task_spec s;
    char err[256];
    memset(&s, 0, sizeof s);
    s.key = cf_str(key);
    s.func = cf_str("f");
    for (size_t i = 0; deps != NULL && deps[i] != NULL; i++) {
        assert_true(i < 8);
        d[s.ndeps++] = cf_str(deps[i]);
    }
    s.deps = d;
    if (only != NULL) {
        w[0] = cf_str(only);
        s.workers = w;
        s.nworkers = 1;
    }
    if (tgs_core_submit(c, &s, 1, 0, NULL, err, sizeof err) != TGS_OK)
        fail_msg("submit %s: %s", key, err);
}

static int finish_held(tgs_core *c, uint64_t wid, const char *key,
                       uint64_t size)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.held = true;
    o.size = size;
    o.codec = cf_str("pickle");
    return tgs_core_task_finished(c, wid, cf_str(key), &o, 1);
}

static int finish_inline(tgs_core *c, uint64_t wid, const char *key,
                         const char *data)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.data = (const uint8_t *)data;
    o.data_len = strlen(data);
    o.codec = cf_str("raw");
    return tgs_core_task_finished(c, wid, cf_str(key), &o, 1);
}

static const tgs_task *find(tgs_core *c, const char *key)
{
    const tgs_task *t = tgs_core_find(c, cf_str(key));
    assert_non_null(t);
    return t;
}

/* The worker `key` was assigned to (it must be processing). */
static uint64_t worker_of(tgs_core *c, const char *key)
{
    uint64_t wid = 0;
    assert_true(tgs_task_worker(find(c, key), &wid));
    return wid;
}

/* ---- tests ---- */

static void test_dataplane_core__holder_and_size_recorded(void **state)
{
    cf_act a[CF_MAX_ACTS];
    uint64_t wid = 0;
    size_t len = 99;
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, true);
    submit(c, "big", NULL, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "big", 200000000), TGS_OK);

    const tgs_task *t = find(c, "big");
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_true(tgs_task_held(t));
    assert_int_equal(tgs_task_result_size(t), 200000000);
    cf_assert_str_is(tgs_task_result_codec(t), "pickle");
    /* No bytes in the core. */
    assert_null(tgs_task_result(t, &len));
    assert_int_equal(len, 0);
    assert_int_equal(tgs_task_nholders(t), 1);
    assert_true(tgs_task_holder(t, 0, &wid));
    assert_int_equal(wid, 1);
    assert_false(tgs_task_holder(t, 1, &wid));
    tgs_core_free(c);
}

static void test_dataplane_core__inline_result_is_not_held(void **state)
{
    cf_act a[CF_MAX_ACTS];
    size_t len = 0;
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, true);
    submit(c, "small", NULL, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_inline(c, 1, "small", "12345"), TGS_OK);
    const tgs_task *t = find(c, "small");
    assert_false(tgs_task_held(t));
    assert_int_equal(tgs_task_nholders(t), 0);
    assert_int_equal(tgs_task_result_size(t), 5);
    assert_memory_equal(tgs_task_result(t, &len), "12345", 5);
    /* Forgetting an inline result frees nothing on a worker. */
    tgs_str k = cf_str("small");
    uint32_t n = 0;
    assert_int_equal(tgs_core_release(c, &k, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 0, "small"), 0);
    tgs_core_free(c);
}

/* Tasks with a held input go only to workers that can fetch: those
 * waiting when the result became held, and those submitted later; tasks
 * with inline inputs still go anywhere. */
static void test_dataplane_core__held_input_placed_on_can_fetch(void **state)
{
    cf_act a[CF_MAX_ACTS];
    char why[256];
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    /* w2 joined first and is idle: without the rule it would win. */
    add_worker(c, 2, "w2", 4, false);
    add_worker(c, 1, "w1", 4, true);
    const char *on_a[] = {"a", NULL};
    submit(c, "a", NULL, "w1");
    submit(c, "b", on_a, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "a"), 1);
    assert_int_equal(finish_held(c, 1, "a", 1 << 20), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 1, "b"), 1);
    assert_int_equal(worker_of(c, "b"), 1);

    submit(c, "c", on_a, NULL); /* a is held already */
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "c"), 1);

    /* An inline input: the idle w2 takes it. */
    const char *on_s[] = {"s", NULL};
    submit(c, "s", NULL, "w2");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_inline(c, 2, "s", "1"), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    submit(c, "t", on_s, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "t"), 2);

    /* No worker that can fetch: the task waits, and says why. */
    assert_int_equal(tgs_core_worker_drain(c, 1, 2), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    submit(c, "d", on_a, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_task_state(find(c, "d")), TGS_READY);
    assert_int_equal(tgs_core_unplaceable(c), 1);
    tgs_core_why(c, find(c, "d"), why, sizeof why);
    assert_string_equal(why, "no worker with a data service provides "
                             "function 'f' (an input is held on a worker)");
    /* One joins: it runs there. */
    add_worker(c, 3, "w3", 1, true);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "d"), 3);
    assert_int_equal(tgs_core_unplaceable(c), 0);
    tgs_core_free(c);
}

/* Forgetting a held result tells its holder to drop it, once the last
 * task needing it is done and no client holds it. */
static void test_dataplane_core__free_on_forget(void **state)
{
    cf_act a[CF_MAX_ACTS];
    uint32_t n = 0;
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 2, true);
    const char *on_a[] = {"a", NULL};
    submit(c, "a", NULL, NULL);
    submit(c, "b", on_a, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 100000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    tgs_str ka = cf_str("a"), kb = cf_str("b");
    /* b still needs it: released by the client, a is not forgotten. */
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 0, "a"), 0);
    /* b finishes: nobody needs a any more. */
    assert_int_equal(finish_inline(c, 1, "b", "2"), TGS_OK);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 1, "a"), 1);
    assert_null(tgs_core_find(c, ka));
    assert_int_equal(tgs_core_release(c, &kb, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(na, 0);
    tgs_core_free(c);
}

/* The only holder is lost: the held result is recomputed, and the tasks
 * needing it wait for it again (waiting, ready, and processing elsewhere,
 * which is cancelled there and assigned again after the recomputation);
 * an inline result of the same worker stays. */
static void test_dataplane_core__holder_lost_recomputes(void **state)
{
    cf_act a[CF_MAX_ACTS];
    size_t len = 0;
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, true);
    add_worker(c, 3, "w3", 1, true);
    const char *on_a[] = {"a", NULL};
    const char *on_ax[] = {"a", "x", NULL};
    const char *on_b[] = {"b", NULL};
    submit(c, "a", NULL, "w1");
    submit(c, "x", NULL, "w3");
    submit(c, "keep", NULL, "w1");
    submit(c, "b", on_ax, NULL);        /* waits for x too */
    submit(c, "bb", on_b, NULL);        /* behind b */
    submit(c, "run", on_a, "w3");       /* will run on w3 */
    submit(c, "ready", on_a, "nobody"); /* will stay READY */
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_inline(c, 1, "keep", "kept"), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_task_state(find(c, "b")), TGS_WAITING);
    assert_int_equal(tgs_task_state(find(c, "ready")), TGS_READY);
    /* w3 is busy with x, then takes run. */
    assert_int_equal(finish_inline(c, 3, "x", "1"), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "run"), 3);

    assert_int_equal(tgs_core_worker_remove(c, 1, 5), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    const tgs_task *t = find(c, "a");
    /* Restricted to w1, which is gone: READY until a w1 joins. */
    assert_int_equal(tgs_task_state(t), TGS_READY);
    assert_false(tgs_task_held(t));
    assert_int_equal(tgs_task_attempt(t), 2);
    assert_int_equal(tgs_task_retries(t), 0);
    const char *wait[] = {"b", "bb", "run", "ready"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(tgs_task_state(find(c, wait[i])), TGS_WAITING);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_CANCEL, 3, "run"), 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 0, "run"), 0);
    /* Inline results are untouched. */
    t = find(c, "keep");
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_memory_equal(tgs_task_result(t, &len), "kept", 4);
    assert_int_equal(tgs_task_state(find(c, "x")), TGS_MEMORY);
    /* A task submitted now waits for it too. */
    submit(c, "late", on_a, NULL);
    assert_int_equal(tgs_task_state(find(c, "late")), TGS_WAITING);

    /* A new w1: a runs again, then its consumers. */
    add_worker(c, 11, "w1", 1, true);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 11, "a"), 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 0, "keep"), 0);
    assert_int_equal(finish_held(c, 11, "a", 300000), TGS_OK);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 3, "run"), 1);
    assert_int_equal(tgs_task_state(find(c, "ready")), TGS_READY);
    assert_int_equal(tgs_task_attempt(find(c, "run")), 1);
    uint64_t n[TGS_NSTATES];
    tgs_core_counts(c, n);
    assert_int_equal(n[TGS_ERRED], 0);
    tgs_core_free(c);
}

/* The holder says it no longer has the result (WorkerMessage.missing):
 * the same loss, so the result is computed again. */
static void test_dataplane_core__missing_recomputes(void **state)
{
    cf_act a[CF_MAX_ACTS];
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, true);
    submit(c, "a", NULL, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    /* Not a holder of it, or not held: nothing changes. */
    assert_int_equal(tgs_core_result_missing(c, 2, cf_str("a"), 2),
                     TGS_ENOTFOUND);
    assert_int_equal(tgs_core_result_missing(c, 1, cf_str("zz"), 2),
                     TGS_ENOTFOUND);
    assert_int_equal(tgs_task_state(find(c, "a")), TGS_MEMORY);
    assert_int_equal(tgs_core_result_missing(c, 1, cf_str("a"), 2), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    /* Nothing to free: the worker said it has nothing. */
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 0, "a"), 0);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 1, "a"), 1);
    assert_int_equal(tgs_task_attempt(find(c, "a")), 2);
    tgs_core_free(c);
}

/* ---- lineage ---- */

/* A core with workers A (1) and B (2), and a -> b held on them. */
static tgs_core *held_chain(void)
{
    cf_act a[CF_MAX_ACTS];
    const char *on_a[] = {"a", NULL};
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "A", 1, true);
    add_worker(c, 2, "B", 1, true);
    submit(c, "a", NULL, "A");
    submit(c, "b", on_a, "B");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 100000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 2, "b", 200000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    return c;
}

/* a -> b, both held, on two workers: the holder of b is lost, so b is
 * computed again from a (still held on the other); a is not. */
static void test_lineage_core__child_recomputed(void **state)
{
    cf_act a[CF_MAX_ACTS];
    (void)state;
    tgs_core *c = held_chain();
    assert_int_equal(tgs_core_worker_remove(c, 2, 3), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(na, 0);
    assert_int_equal(tgs_task_state(find(c, "b")), TGS_READY);
    assert_int_equal(tgs_task_state(find(c, "a")), TGS_MEMORY);
    /* A new B runs b again, and only b. */
    add_worker(c, 3, "B", 1, true);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 3, "b"), 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 0, "a"), 0);
    assert_int_equal(tgs_task_dep(find(c, "b"), 0), find(c, "a"));
    assert_int_equal(finish_held(c, 3, "b", 200000), TGS_OK);
    const tgs_task *t = find(c, "b");
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_int_equal(tgs_task_attempt(t), 2);
    uint64_t wid = 0;
    assert_true(tgs_task_holder(t, 0, &wid));
    assert_int_equal(wid, 3);
    tgs_core_free(c);
}

/* The holder of both a and b is lost: a runs again, then b. */
static void test_lineage_core__chain_recomputed_in_order(void **state)
{
    cf_act a[CF_MAX_ACTS];
    const char *on_a[] = {"a", NULL};
    const char *on_b[] = {"b", NULL};
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "A", 2, true);
    submit(c, "a", NULL, NULL);
    submit(c, "b", on_a, NULL);
    submit(c, "c", on_b, "nobody"); /* needs b, never runs */
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 100000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "b", 100000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_worker_remove(c, 1, 3), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_task_state(find(c, "a")), TGS_READY);
    assert_int_equal(tgs_task_state(find(c, "b")), TGS_WAITING);
    assert_int_equal(tgs_task_state(find(c, "c")), TGS_WAITING);
    add_worker(c, 2, "A2", 2, true);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 2, "a"), 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 0, "b"), 0);
    assert_int_equal(finish_held(c, 2, "a", 100000), TGS_OK);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 2, "b"), 1);
    assert_int_equal(finish_held(c, 2, "b", 100000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_task_state(find(c, "b")), TGS_MEMORY);
    assert_int_equal(tgs_task_state(find(c, "c")), TGS_READY);
    tgs_core_free(c);
}

/* The holder of x, a and b is lost after x is freed, which puts b before
 * a in its store: a still runs first, then b. */
static void test_lineage_core__chain_any_store_order(void **state)
{
    cf_act a[CF_MAX_ACTS];
    const char *on_a[] = {"a", NULL};
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "A", 1, true);
    submit(c, "x", NULL, NULL);
    submit(c, "a", NULL, NULL);
    submit(c, "b", on_a, NULL);
    const char *order[] = {"x", "a", "b"};
    for (size_t i = 0; i < 3; i++) {
        cf_pop_all(c, a, CF_MAX_ACTS);
        assert_int_equal(finish_held(c, 1, order[i], 100000), TGS_OK);
    }
    tgs_str kx = cf_str("x");
    assert_int_equal(tgs_core_release(c, &kx, 1, NULL), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_worker_remove(c, 1, 3), TGS_OK);
    add_worker(c, 2, "A2", 1, true);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 2, "a"), 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 0, "b"), 0);
    assert_int_equal(tgs_task_state(find(c, "b")), TGS_WAITING);
    assert_int_equal(finish_held(c, 2, "a", 100000), TGS_OK);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 2, "b"), 1);
    tgs_core_free(c);
}

/* An input forgotten since (released, and b no longer needs it): b
 * cannot be computed again, and fails with tg.DataLost saying why; what
 * needs b inherits it. */
static void test_lineage_core__forgotten_input_is_data_lost(void **state)
{
    cf_act a[CF_MAX_ACTS];
    const char *on_b[] = {"b", NULL};
    (void)state;
    tgs_core *c = held_chain();
    tgs_str ka = cf_str("a");
    assert_int_equal(tgs_core_release(c, &ka, 1, NULL), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 1, "a"), 1);
    assert_null(tgs_core_find(c, ka));
    submit(c, "c", on_b, "nobody");
    /* Events in between free what was forgotten (a stays parked). */
    tgs_core_tick(c, 2);
    assert_int_equal(tgs_core_result_missing(c, 2, cf_str("b"), 3), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    const tgs_task *t = find(c, "b");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.DataLost");
    cf_assert_str_is(tgs_task_err_message(t),
                     "the result was held only on worker B, which no longer "
                     "has it, and its input 'a' was forgotten");
    t = find(c, "c");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_origin(t), "b");
    tgs_core_free(c);
}

/* An input forgotten while a held result links to it stays out of the
 * map, and is freed with the last link: when the result is forgotten,
 * or with the core. (AddressSanitizer checks the freeing.) */
static void test_lineage_core__forgotten_input_freed(void **state)
{
    cf_act a[CF_MAX_ACTS];
    tgs_str ka = cf_str("a"), kb = cf_str("b");
    uint64_t n[TGS_NSTATES];
    (void)state;
    for (int release_b = 0; release_b < 2; release_b++) {
        tgs_core *c = held_chain();
        assert_int_equal(tgs_core_release(c, &ka, 1, NULL), TGS_OK);
        cf_pop_all(c, a, CF_MAX_ACTS);
        tgs_core_tick(c, 2); /* sweeps: a is kept for b's link */
        assert_null(tgs_core_find(c, ka));
        tgs_core_counts(c, n);
        assert_int_equal(n[TGS_MEMORY], 1);
        assert_int_equal(n[TGS_RELEASED], 1);
        if (release_b) {
            assert_int_equal(tgs_core_release(c, &kb, 1, NULL), TGS_OK);
            size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
            assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 2, "b"), 1);
            tgs_core_tick(c, 3);
        }
        tgs_core_free(c);
    }
}

/* A result lost again and again: recomputed allowed_failures - 1 times,
 * then tg.KilledWorker. */
static void test_lineage_core__repeated_loss_is_bounded(void **state)
{
    cf_act a[CF_MAX_ACTS];
    char name[16];
    (void)state;
    tgs_core *c = cf_core_new(NULL); /* allowed_failures: 3 */
    submit(c, "a", NULL, NULL);
    for (uint64_t w = 1; w <= 3; w++) {
        snprintf(name, sizeof name, "w%u", (unsigned)w);
        add_worker(c, w, name, 1, true);
        size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
        assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, w, "a"), 1);
        assert_int_equal(finish_held(c, w, "a", 100000), TGS_OK);
        cf_pop_all(c, a, CF_MAX_ACTS);
        assert_int_equal(tgs_core_worker_remove(c, w, 2), TGS_OK);
        cf_pop_all(c, a, CF_MAX_ACTS);
        if (w < 3)
            assert_int_equal(tgs_task_state(find(c, "a")), TGS_READY);
    }
    const tgs_task *t = find(c, "a");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.KilledWorker");
    cf_assert_str_is(tgs_task_err_message(t),
                     "the result of 'a' was lost 3 times (allowed_failures=3): "
                     "last held only on worker w3, which was lost");
    tgs_core_free(c);
}

/* A worker without a data service cannot hold a result: the task fails
 * with tg.ProtocolError, without using its retries. */
static void test_dataplane_core__held_without_data_service(void **state)
{
    cf_act a[CF_MAX_ACTS];
    tgs_task_spec s;
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 2, "w2", 1, false);
    memset(&s, 0, sizeof s);
    s.key = cf_str("a");
    s.func = cf_str("f");
    s.retries = 3;
    assert_int_equal(tgs_core_submit(c, &s, 1, 0, NULL, NULL, 0), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 2, "a", 300000), TGS_OK);
    const tgs_task *t = find(c, "a");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.ProtocolError");
    assert_non_null(strstr(tgs_task_err_message(t).ptr, "w2"));
    assert_non_null(strstr(tgs_task_err_message(t).ptr, "no data address"));
    tgs_core_free(c);
}

/* A draining worker holding a result closes only once it is freed, and
 * scaling retires a worker that holds nothing first. */
static void test_dataplane_core__drain_waits_for_frees(void **state)
{
    cf_act a[CF_MAX_ACTS];
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, true);
    submit(c, "a", NULL, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_worker_drain(c, 1, 2), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(na, 0); /* no TGS_ACT_CLOSE_WORKER yet */
    tgs_str k = cf_str("a");
    assert_int_equal(tgs_core_release(c, &k, 1, NULL), TGS_OK);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(na, 2);
    assert_int_equal(a[0].kind, TGS_ACT_FREE);
    assert_int_equal(a[1].kind, TGS_ACT_CLOSE_WORKER);
    assert_int_equal(a[1].worker, 1);
    tgs_core_free(c);

    /* Retire: w5 joined last and is as idle as w4, but holds a result. */
    c = cf_core_new(NULL);
    add_worker(c, 4, "w4", 1, true);
    add_worker(c, 5, "w5", 1, true);
    assert_int_equal(tgs_core_worker_managed(c, 4), TGS_OK);
    assert_int_equal(tgs_core_worker_managed(c, 5), TGS_OK);
    submit(c, "a", NULL, "w5");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 5, "a", 300000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_scale(c, 1, 3), TGS_OK);
    tgs_core_tick(c, 4);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    size_t retired = 0;
    for (size_t i = 0; i < na; i++) {
        if (a[i].kind == TGS_ACT_RETIRE) {
            assert_int_equal(a[i].worker, 4);
            retired++;
        }
    }
    assert_int_equal(retired, 1);
    tgs_core_free(c);
}

/* Many consumers come and go (submitted after the result is held, and
 * finishing); the result is freed exactly once, after the last. */
static void test_dataplane_core__many_consumers(void **state)
{
    cf_act a[CF_MAX_ACTS];
    char key[32];
    const char *on_a[] = {"a", "a", NULL}; /* twice: two occurrences */
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 64, true);
    submit(c, "a", NULL, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "c%d", i);
        submit(c, key, on_a, NULL);
        cf_pop_all(c, a, CF_MAX_ACTS);
    }
    tgs_str ka = cf_str("a");
    assert_int_equal(tgs_core_release(c, &ka, 1, NULL), TGS_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "c%d", i);
        if (i % 3 == 0) {
            tgs_str k = cf_str(key);
            assert_int_equal(tgs_core_cancel(c, &k, 1, 3, NULL), TGS_OK);
        } else {
            assert_int_equal(finish_inline(c, 1, key, "1"), TGS_OK);
        }
        size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
        assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 1, "a"),
                         i == 39 ? 1 : 0);
    }
    assert_null(tgs_core_find(c, ka));
    tgs_core_free(c);
}

/* A core whose workers queue at most one task beyond their threads. */
static tgs_core *core_prefetch1(void)
{
    tgs_core_opts o;
    memset(&o, 0, sizeof o);
    o.max_prefetch = 1;
    return cf_core_new(&o);
}

/* Data locality: with both workers free, the dependent of a result held
 * on B goes to B (A joined first and would win otherwise); with B full,
 * it goes to the free A rather than wait for B. */
static void test_dataplane_core__locality_prefers_holder(void **state)
{
    cf_act a[CF_MAX_ACTS];
    const char *on_x[] = {"x", NULL};
    (void)state;
    tgs_core *c = core_prefetch1();
    add_worker(c, 1, "A", 1, true);
    add_worker(c, 2, "B", 1, true);
    submit(c, "x", NULL, "B");
    submit(c, "y", on_x, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 2, "x", 1 << 20), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 2, "y"), 1);
    assert_int_equal(worker_of(c, "y"), 2);
    assert_int_equal(finish_inline(c, 2, "y", "1"), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);

    /* B full (one thread, one queued): the free A takes the dependent. */
    submit(c, "p1", NULL, "B");
    submit(c, "p2", NULL, "B");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "p1"), 2);
    assert_int_equal(worker_of(c, "p2"), 2);
    submit(c, "z", on_x, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "z"), 1);
    tgs_core_free(c);
}

/* Among several held inputs, the worker holding the most bytes of them
 * wins (an input named twice counts once); without held inputs, the
 * usual choice. */
static void test_dataplane_core__locality_most_bytes(void **state)
{
    cf_act a[CF_MAX_ACTS];
    const char *on_all[] = {"x1", "x2", "x1", "x3", NULL};
    const char *on_x1x3[] = {"x1", "x3", NULL};
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 4, "D", 1, true); /* joined first, holds nothing */
    add_worker(c, 1, "A", 1, true);
    add_worker(c, 2, "B", 1, true);
    add_worker(c, 3, "C", 1, true);
    submit(c, "x1", NULL, "A");
    submit(c, "x2", NULL, "B");
    submit(c, "x3", NULL, "C");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "x1", 60000), TGS_OK);
    assert_int_equal(finish_held(c, 2, "x2", 100000), TGS_OK);
    assert_int_equal(finish_held(c, 3, "x3", 50000), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    submit(c, "y", on_all, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "y"), 2);
    /* x1 and x3 are 110000 bytes, but on two workers: A holds more. */
    submit(c, "y2", on_x1x3, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "y2"), 1);
    /* No held input: the idle worker that joined first. */
    submit(c, "plain", NULL, NULL);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(worker_of(c, "plain"), 4);
    tgs_core_free(c);
}

/* ---- replication (scheduler/core/replicate.c) ---- */

/* Replicate `key` to `n` holders (names: NULL-terminated or NULL); the
 * workers chosen go to wids[], their number is returned. */
static uint32_t replicate(tgs_core *c, const char *key, uint32_t n,
                          const char *const *names, uint64_t wids[8])
{
    tgs_str v[4];
    size_t nn = 0;
    uint32_t started = 99;
    for (; names != NULL && names[nn] != NULL; nn++)
        v[nn] = cf_str(names[nn]);
    assert_int_equal(
        tgs_core_replicate(c, cf_str(key), n, v, nn, wids, 8, &started),
        TGS_OK);
    return started;
}

/* w1 holds "big" (`size` bytes); w2..w5 are other workers. */
static tgs_core *held_on_w1(uint64_t size)
{
    cf_act a[CF_MAX_ACTS];
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1", 1, true);
    submit(c, "big", NULL, "w1");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "big", size), TGS_OK);
    add_worker(c, 2, "w2", 1, true);
    add_worker(c, 3, "w3", 1, true);
    add_worker(c, 4, "w4", 1, false); /* no data service */
    add_worker(c, 5, "w5", 1, true);
    assert_int_equal(tgs_core_worker_pause(c, 5, true, 1), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    return c;
}

/* Targets: not holding it, able to fetch, not paused, the most free
 * memory first (no limit counts as the most), copies under way counted
 * toward n; a copy that lands is one more holder. */
static void test_replicate_core__targets_by_free_memory(void **state)
{
    cf_act a[CF_MAX_ACTS];
    uint64_t wids[8];
    (void)state;
    tgs_core *c = held_on_w1(1000);
    assert_int_equal(tgs_core_worker_memory(c, 2, 900, 4000), TGS_OK);
    assert_int_equal(tgs_core_worker_memory(c, 3, 100, 4000), TGS_OK);
    assert_int_equal(tgs_core_worker_memory(c, 99, 0, 0), TGS_ENOTFOUND);

    assert_int_equal(replicate(c, "big", 2, NULL, wids), 1);
    assert_int_equal(wids[0], 3);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(na, 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_COPY, 3, "big"), 1);
    const tgs_task *t = find(c, "big");
    assert_int_equal(tgs_task_ncopies(t), 1);
    /* The copy under way counts: n=2 asks for nothing more. */
    assert_int_equal(replicate(c, "big", 2, NULL, wids), 0);

    assert_int_equal(tgs_core_copy_done(c, 3, cf_str("big"), true, 2), TGS_OK);
    t = find(c, "big");
    assert_int_equal(tgs_task_ncopies(t), 0);
    assert_int_equal(tgs_task_nholders(t), 2);
    /* n=0: every eligible worker; w4 cannot fetch, w5 is paused. */
    assert_int_equal(replicate(c, "big", 0, NULL, wids), 1);
    assert_int_equal(wids[0], 2);
    assert_int_equal(tgs_core_copy_done(c, 2, cf_str("big"), true, 3), TGS_OK);
    assert_int_equal(tgs_task_nholders(find(c, "big")), 3);
    assert_int_equal(replicate(c, "big", 0, NULL, wids), 0);
    /* Resumed, w5 is eligible again. */
    assert_int_equal(tgs_core_worker_pause(c, 5, false, 4), TGS_OK);
    assert_int_equal(replicate(c, "big", 9, NULL, wids), 1);
    assert_int_equal(wids[0], 5);
    /* A second answer for the same copy is not one. */
    assert_int_equal(tgs_core_copy_done(c, 5, cf_str("big"), true, 5), TGS_OK);
    assert_int_equal(tgs_core_copy_done(c, 5, cf_str("big"), true, 5),
                     TGS_ENOTFOUND);
    assert_int_equal(tgs_task_nholders(find(c, "big")), 4);
    tgs_core_free(c);
}

/* `names` restricts the targets; the bytes of copies under way count
 * against a worker's free memory, so two results spread out. */
static void test_replicate_core__names_and_planned_bytes(void **state)
{
    cf_act a[CF_MAX_ACTS];
    uint64_t wids[8];
    const char *only_w3[] = {"w3", NULL}, *nobody[] = {"w9", NULL};
    (void)state;
    tgs_core *c = held_on_w1(600);
    submit(c, "big2", NULL, "w1");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_held(c, 1, "big2", 600), TGS_OK);
    tgs_core_worker_memory(c, 2, 0, 1000);
    tgs_core_worker_memory(c, 3, 0, 1000);

    assert_int_equal(replicate(c, "big", 0, nobody, wids), 0);
    assert_int_equal(replicate(c, "big", 2, NULL, wids), 1);
    assert_int_equal(wids[0], 2); /* a tie: the first to join */
    assert_int_equal(replicate(c, "big2", 2, NULL, wids), 1);
    assert_int_equal(wids[0], 3); /* w2 has 600 bytes coming */
    assert_int_equal(tgs_core_copy_done(c, 2, cf_str("big"), true, 2), TGS_OK);
    assert_int_equal(tgs_core_copy_done(c, 3, cf_str("big2"), true, 2), TGS_OK);
    assert_int_equal(replicate(c, "big", 0, only_w3, wids), 1);
    assert_int_equal(wids[0], 3);
    tgs_core_free(c);
}

/* Unknown, unfinished and inline keys are refused; a copy that fails, a
 * target lost while copying and a result forgotten while copied each end
 * the copy without a holder. */
static void test_replicate_core__refusals_and_failed_copies(void **state)
{
    cf_act a[CF_MAX_ACTS];
    uint64_t wids[8];
    uint32_t started = 7, n = 0;
    tgs_str kbig = cf_str("big");
    (void)state;
    tgs_core *c = held_on_w1(1000);
    submit(c, "small", NULL, "w1");
    submit(c, "later", NULL, "w1");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(finish_inline(c, 1, "small", "1"), TGS_OK);
    assert_int_equal(
        tgs_core_replicate(c, cf_str("nope"), 2, NULL, 0, wids, 8, &started),
        TGS_ENOTFOUND);
    assert_int_equal(started, 0);
    assert_int_equal(
        tgs_core_replicate(c, cf_str("small"), 2, NULL, 0, wids, 8, &started),
        TGS_ESTATE);
    assert_int_equal(
        tgs_core_replicate(c, cf_str("later"), 2, NULL, 0, wids, 8, &started),
        TGS_ESTATE);

    assert_int_equal(replicate(c, "big", 3, NULL, wids), 2);
    assert_int_equal(tgs_core_copy_done(c, wids[0], kbig, false, 2), TGS_OK);
    assert_int_equal(tgs_task_ncopies(find(c, "big")), 1);
    assert_int_equal(tgs_core_worker_remove(c, wids[1], 3), TGS_OK);
    const tgs_task *t = find(c, "big");
    assert_int_equal(tgs_task_ncopies(t), 0);
    assert_int_equal(tgs_task_nholders(t), 1);
    /* Copying again, then forgotten: the late answer finds no copy. */
    assert_int_equal(replicate(c, "big", 2, NULL, wids), 1);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_release(c, &kbig, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 1, "big"), 1);
    assert_int_equal(tgs_core_copy_done(c, wids[0], kbig, true, 4),
                     TGS_ENOTFOUND);
    tgs_core_free(c);
}

/* A result with a copy: losing its first holder loses nothing (no
 * recomputation, its dependent is assigned with the other holder), and
 * releasing it frees it on every holder. */
static void test_replicate_core__replica_survives_and_is_freed(void **state)
{
    cf_act a[CF_MAX_ACTS];
    uint64_t wids[8];
    uint32_t n = 0;
    const char *on_big[] = {"big", NULL};
    tgs_str kbig = cf_str("big"), kuse = cf_str("use");
    (void)state;
    tgs_core *c = held_on_w1(1000);
    assert_int_equal(replicate(c, "big", 3, NULL, wids), 2);
    assert_int_equal(tgs_core_copy_done(c, wids[0], kbig, true, 2), TGS_OK);
    assert_int_equal(tgs_core_copy_done(c, wids[1], kbig, true, 2), TGS_OK);
    assert_int_equal(tgs_task_nholders(find(c, "big")), 3);
    uint32_t attempt = tgs_task_attempt(find(c, "big"));
    cf_pop_all(c, a, CF_MAX_ACTS);

    assert_int_equal(tgs_core_worker_remove(c, 1, 3), TGS_OK);
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 0, "big"), 0);
    const tgs_task *t = find(c, "big");
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_true(tgs_task_held(t));
    assert_int_equal(tgs_task_nholders(t), 2);
    assert_int_equal(tgs_task_attempt(t), attempt);

    submit(c, "use", on_big, "w2");
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_ASSIGN, 2, "use"), 1);
    assert_int_equal(finish_inline(c, 2, "use", "1"), TGS_OK);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_release(c, &kbig, 1, &n), TGS_OK);
    na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, 0, "big"), 2);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, wids[0], "big"), 1);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_FREE, wids[1], "big"), 1);
    assert_null(tgs_core_find(c, kbig));
    assert_int_equal(tgs_core_release(c, &kuse, 1, &n), TGS_OK);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataplane_core__holder_and_size_recorded),
        cmocka_unit_test(test_dataplane_core__inline_result_is_not_held),
        cmocka_unit_test(test_dataplane_core__held_input_placed_on_can_fetch),
        cmocka_unit_test(test_dataplane_core__free_on_forget),
        cmocka_unit_test(test_dataplane_core__holder_lost_recomputes),
        cmocka_unit_test(test_dataplane_core__missing_recomputes),
        cmocka_unit_test(test_dataplane_core__held_without_data_service),
        cmocka_unit_test(test_dataplane_core__drain_waits_for_frees),
        cmocka_unit_test(test_dataplane_core__many_consumers),
        cmocka_unit_test(test_dataplane_core__locality_prefers_holder),
        cmocka_unit_test(test_dataplane_core__locality_most_bytes),
        cmocka_unit_test(test_replicate_core__targets_by_free_memory),
        cmocka_unit_test(test_replicate_core__names_and_planned_bytes),
        cmocka_unit_test(test_replicate_core__refusals_and_failed_copies),
        cmocka_unit_test(test_replicate_core__replica_survives_and_is_freed),
        cmocka_unit_test(test_lineage_core__child_recomputed),
        cmocka_unit_test(test_lineage_core__chain_recomputed_in_order),
        cmocka_unit_test(test_lineage_core__chain_any_store_order),
        cmocka_unit_test(test_lineage_core__forgotten_input_is_data_lost),
        cmocka_unit_test(test_lineage_core__forgotten_input_freed),
        cmocka_unit_test(test_lineage_core__repeated_loss_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
