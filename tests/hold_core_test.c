/* SPDX-License-Identifier: Apache-2.0
 *
 * hold_core_test.c: unit tests of tgs_core_hold, the client hold the
 * scheduler adds to a result it keeps for someone who did not submit it
 * (a coordination primitive holding a future, a published dataset): the
 * result outlives every release of its submitter until the added hold is
 * given back, a result held on a worker is freed there only then, unknown
 * keys are skipped, and bad arguments are refused. Depends on
 * //scheduler:core and cmocka.
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

static void run_one(tgs_core *c, const char *key, bool held)
{
    cf_act a[CF_MAX_ACTS];
    cf_submit_f(c, key);
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    cf_finish(c, 1, key, held);
    cf_pop_all(c, a, CF_MAX_ACTS);
}

/* An added hold keeps an inline result after its submitter released it;
 * giving the hold back forgets it. */
static void test_hold_core__keeps_result_past_release(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_str ka = cf_str("a");
    uint32_t n = 99;

    cf_worker_add_f(c, 1, "w1");
    run_one(c, "a", false);
    assert_int_equal(tgs_core_hold(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0); /* the submitter's hold: still held */
    assert_non_null(tgs_core_find(c, ka));
    assert_int_equal(tgs_task_state(tgs_core_find(c, ka)), TGS_MEMORY);
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 1); /* the added hold: forgotten */
    assert_null(tgs_core_find(c, ka));
    tgs_core_free(c);
}

/* Two added holds need two releases; a result held on a worker gets its
 * TGS_ACT_FREE only with the last. */
static void test_hold_core__held_result_freed_with_last_hold(void **state)
{
    (void)state;
    tgs_core_opts o = {0};
    tgs_core *c = cf_core_new(&o);
    tgs_str kb = cf_str("b");
    cf_act a[CF_MAX_ACTS];
    uint32_t n;

    cf_worker_add(c, 1, "w1", true);
    run_one(c, "b", true);
    assert_int_equal(tgs_core_hold(c, &kb, 1, &n), TGS_OK);
    assert_int_equal(tgs_core_hold(c, &kb, 1, &n), TGS_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tgs_core_release(c, &kb, 1, &n), TGS_OK);
        assert_int_equal(n, 0);
        assert_int_equal(cf_count_acts(a, cf_pop_all(c, a, CF_MAX_ACTS),
                                       TGS_ACT_FREE, 0, "b"),
                         0);
    }
    assert_int_equal(tgs_core_release(c, &kb, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(
        cf_count_acts(a, cf_pop_all(c, a, CF_MAX_ACTS), TGS_ACT_FREE, 0, "b"),
        1);
    tgs_core_free(c);
}

/* A hold on a task still running keeps it once it finishes; unknown keys
 * are skipped and counted out; bad arguments are refused. */
static void test_hold_core__pending_unknown_and_bad_args(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_str keys[] = {cf_str("p"), cf_str("nope"), cf_str("p")};
    cf_act a[CF_MAX_ACTS];
    uint32_t n = 99;

    cf_worker_add_f(c, 1, "w1");
    cf_submit_f(c, "p");
    assert_int_equal(cf_pop_all(c, a, CF_MAX_ACTS), 1);
    assert_int_equal(tgs_core_hold(c, keys, 3, &n), TGS_OK);
    assert_int_equal(n, 2); /* "p" twice, "nope" skipped */
    assert_null(tgs_core_find(c, keys[1]));
    cf_finish(c, 1, "p", false);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tgs_core_release(c, keys, 1, &n), TGS_OK);
        assert_int_equal(n, 0);
    }
    assert_int_equal(tgs_core_release(c, keys, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(tgs_core_hold(NULL, keys, 1, &n), TGS_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(tgs_core_hold(c, NULL, 1, NULL), TGS_EINVAL);
    assert_int_equal(tgs_core_hold(c, NULL, 0, NULL), TGS_OK);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_core__keeps_result_past_release),
        cmocka_unit_test(test_hold_core__held_result_freed_with_last_hold),
        cmocka_unit_test(test_hold_core__pending_unknown_and_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
