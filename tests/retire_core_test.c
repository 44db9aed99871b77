/* SPDX-License-Identifier: Apache-2.0
 *
 * retire_core_test.c: unit tests of scheduler/core/retire.c, driven with
 * a fake clock and fake workers: a hold released when done keeps the
 * task until it is final and is forgotten then (fire-and-forget), at once
 * for a final task, never twice for one hold; a worker retired with its
 * results kept copies what it alone holds to another worker, lets go of
 * results held elsewhere, and closes only once it holds nothing, so the
 * result survives its departure; a retired worker with nowhere to move
 * a result stays until one joins; a worker retired for a restart closes
 * once idle whatever it holds. Depends on //scheduler:core, the core
 * fixture (core_fixture.h) and cmocka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core_fixture.h"
#include "scheduler/core.h"

/* A core with workers 1 ("w1") and, when `second`, 2 ("w2"), both
 * able to fetch, and "big" finished on w1 as a held result. */
static tgs_core *held_on_w1(bool second)
{
    tgs_core *c = cf_core_new(NULL);
    cf_act a[CF_MAX_ACTS];
    cf_worker_add(c, 1, "w1", true);
    if (second)
        cf_worker_add(c, 2, "w2", true);
    cf_submit_f(c, "big"); /* least loaded, then first to join: w1 */
    size_t n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_ASSIGN, 1, "big"), 1);
    cf_finish(c, 1, "big", true);
    cf_pop_all(c, a, CF_MAX_ACTS);
    return c;
}

static void test_retire_core__release_when_done_waits_for_final(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    cf_act a[CF_MAX_ACTS];
    tgs_str k = cf_str("a");
    uint32_t n = 99;
    cf_worker_add_f(c, 1, "w1");
    cf_submit_f(c, "a");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_release_when_done(c, &k, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    /* Its one hold is deferred: a second call has none left to drop. */
    assert_int_equal(tgs_core_release_when_done(c, &k, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    assert_non_null(tgs_core_find(c, k));
    cf_finish(c, 1, "a", false);
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_null(tgs_core_find(c, k)); /* final, then forgotten */
    tgs_core_free(c);
}

static void
test_retire_core__release_when_done_of_final_is_release(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    cf_act a[CF_MAX_ACTS];
    tgs_str k = cf_str("a");
    uint32_t n = 0;
    cf_worker_add_f(c, 1, "w1");
    cf_submit_f(c, "a");
    cf_submit_f(c, "a"); /* two holds */
    cf_pop_all(c, a, CF_MAX_ACTS);
    cf_finish(c, 1, "a", false);
    assert_int_equal(tgs_core_release_when_done(c, &k, 1, &n), TGS_OK);
    assert_int_equal(n, 0); /* one hold left */
    assert_int_equal(tgs_core_release_when_done(c, &k, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_null(tgs_core_find(c, k));
    tgs_core_free(c);
}

static void test_retire_core__deferred_hold_dropped_on_error(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    cf_act a[CF_MAX_ACTS];
    tgs_str k = cf_str("a");
    tgs_outcome o;
    cf_worker_add_f(c, 1, "w1");
    cf_submit_f(c, "a");
    cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(tgs_core_release_when_done(c, &k, 1, NULL), TGS_OK);
    memset(&o, 0, sizeof o);
    o.err_type = cf_str("ValueError");
    assert_int_equal(tgs_core_task_finished(c, 1, k, &o, 1), TGS_OK);
    assert_null(tgs_core_find(c, k));
    tgs_core_free(c);
}

static void test_retire_core__held_result_moves_before_close(void **state)
{
    (void)state;
    tgs_core *c = held_on_w1(true);
    cf_act a[CF_MAX_ACTS];
    size_t n;
    tgs_str k = cf_str("big");
    assert_int_equal(tgs_core_worker_retire(c, 1, true, 2), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 2, "big"), 1);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 0);
    /* The copy lands: w1 lets go of it and closes; w2 holds it. */
    assert_int_equal(tgs_core_copy_done(c, 2, k, true, 3), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_FREE, 1, "big"), 1);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 1);
    assert_int_equal(tgs_core_worker_remove(c, 1, 4), TGS_OK);
    const tgs_task *t = tgs_core_find(c, k);
    assert_non_null(t);
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_int_equal(tgs_task_nholders(t), 1);
    uint64_t wid = 0;
    assert_true(tgs_task_holder(t, 0, &wid));
    assert_int_equal(wid, 2);
    tgs_core_free(c);
}

static void test_retire_core__waits_for_somewhere_to_move(void **state)
{
    (void)state;
    tgs_core *c = held_on_w1(false);
    cf_act a[CF_MAX_ACTS];
    size_t n;
    assert_int_equal(tgs_core_worker_retire(c, 1, true, 2), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 0);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 0, "big"), 0);
    /* A worker that cannot fetch is no place for it; one that can is. */
    cf_worker_add(c, 2, "w2", false);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 0, "big"), 0);
    cf_worker_add(c, 3, "w3", true);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 3, "big"), 1);
    /* A failed copy is tried again. */
    assert_int_equal(tgs_core_copy_done(c, 3, cf_str("big"), false, 3), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 3, "big"), 1);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 0);
    tgs_core_free(c);
}

static void test_retire_core__running_task_finishes_then_moves(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    cf_act a[CF_MAX_ACTS];
    size_t n;
    cf_worker_add(c, 1, "w1", true);
    cf_worker_add(c, 2, "w2", true);
    cf_submit_f(c, "r"); /* least loaded first: w1 */
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_ASSIGN, 1, "r"), 1);
    assert_int_equal(tgs_core_worker_retire(c, 1, true, 1), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 0);
    cf_finish(c, 1, "r", true); /* made while draining: moved too */
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 2, "r"), 1);
    assert_int_equal(tgs_core_copy_done(c, 2, cf_str("r"), true, 3), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 1);
    tgs_core_free(c);
}

static void test_retire_core__restart_closes_whatever_it_holds(void **state)
{
    (void)state;
    tgs_core *c = held_on_w1(true);
    cf_act a[CF_MAX_ACTS];
    size_t n;
    assert_int_equal(tgs_core_worker_retire(c, 1, false, 2), TGS_OK);
    n = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_CLOSE_WORKER, 1, ""), 1);
    assert_int_equal(cf_count_acts(a, n, TGS_ACT_COPY, 0, "big"), 0);
    assert_int_equal(tgs_core_worker_retire(c, 77, false, 2), TGS_ENOTFOUND);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retire_core__release_when_done_waits_for_final),
        cmocka_unit_test(
            test_retire_core__release_when_done_of_final_is_release),
        cmocka_unit_test(test_retire_core__deferred_hold_dropped_on_error),
        cmocka_unit_test(test_retire_core__held_result_moves_before_close),
        cmocka_unit_test(test_retire_core__waits_for_somewhere_to_move),
        cmocka_unit_test(test_retire_core__running_task_finishes_then_moves),
        cmocka_unit_test(test_retire_core__restart_closes_whatever_it_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
