/* SPDX-License-Identifier: Apache-2.0
 *
 * ran_core_test.c: unit tests of what the core keeps about the run that
 * made a task final (tgs_task_ran: the worker's name and the run time it
 * measured, shown by TaskResult and Status): set for a task's own result
 * or error, empty for outcomes from no run of its own (cancelled, a failed
 * dependency), and the last attempt's after a retry or a recomputation.
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

/* Workers with a data service (results may be held on them). */
static void add_worker(tgs_core *c, uint64_t wid, const char *name)
{
    cf_worker_add(c, wid, name, true);
}

/* Submit `key` (function f, `retries`), depending on `dep` if given and
 * restricted to worker `only` if given. */
static void submit(tgs_core *c, const char *key, const char *dep,
                   const char *only, uint32_t retries)
{
    tgs_str d = cf_str(dep ? dep : ""), w = cf_str(only ? only : "");
    tgs_task_spec s = {.key = cf_str(key),
                       .func = cf_str("f"),
                       .retries = retries,
                       .deps = &d,
                       .ndeps = dep != NULL,
                       .workers = &w,
                       .nworkers = only != NULL};
    char err[256];
    if (tgs_core_submit(c, &s, 1, 0, NULL, err, sizeof err) != TGS_OK)
        fail_msg("submit %s: %s", key, err);
}

/* Worker `wid` reports `key`: a result (held on it if `held`) or, with
 * !ok, an error; the run took `run_us`. */
static int finish(tgs_core *c, uint64_t wid, const char *key, bool ok,
                  bool held, uint64_t run_us)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = ok;
    o.codec = cf_str("raw");
    o.run_us = run_us;
    if (ok && held) {
        o.held = true;
        o.size = 100000;
    } else if (ok) {
        o.data = (const uint8_t *)"1";
        o.data_len = 1;
    } else {
        o.err_type = cf_str("ValueError");
        o.err_message = cf_str("bad");
    }
    return tgs_core_task_finished(c, wid, cf_str(key), &o, 1);
}

/* Assert that `key` is in `state` and reports worker `name` ("" for
 * none) and run time `run_us`. */
static void assert_ran(tgs_core *c, const char *key, tgs_state state,
                       const char *name, uint64_t run_us)
{
    const tgs_task *t = tgs_core_find(c, cf_str(key));
    uint64_t us = 12345;
    assert_non_null(t);
    assert_int_equal(tgs_task_state(t), state);
    cf_assert_str_is(tgs_task_ran(t, &us), name);
    assert_int_equal(us, run_us);
}

static void drain(tgs_core *c)
{
    cf_act a[CF_MAX_ACTS];
    cf_pop_all(c, a, CF_MAX_ACTS);
}

/* A result and an error from a run name their worker; a dependent that
 * inherits the error, a cancelled task and running or waiting tasks name
 * none. */
static void test_ran_core__own_runs_only(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1");
    add_worker(c, 2, "w2");
    submit(c, "a", NULL, "w1", 0);
    submit(c, "e", NULL, "w2", 0);
    submit(c, "d", "e", NULL, 0);
    submit(c, "q", NULL, "nobody", 0);
    drain(c);
    assert_ran(c, "a", TGS_PROCESSING, "", 0);
    assert_ran(c, "d", TGS_WAITING, "", 0);
    assert_int_equal(finish(c, 1, "a", true, false, 51000), TGS_OK);
    assert_int_equal(finish(c, 2, "e", false, false, 7), TGS_OK);
    drain(c);
    assert_ran(c, "a", TGS_MEMORY, "w1", 51000);
    assert_ran(c, "e", TGS_ERRED, "w2", 7);
    assert_ran(c, "d", TGS_ERRED, "", 0);
    tgs_str q = cf_str("q");
    assert_int_equal(tgs_core_cancel(c, &q, 1, 2, NULL), TGS_OK);
    assert_ran(c, "q", TGS_CANCELLED, "", 0);
    /* The name outlives the worker. */
    assert_int_equal(tgs_core_worker_remove(c, 1, 3), TGS_OK);
    assert_ran(c, "a", TGS_MEMORY, "w1", 51000);
    cf_assert_str_is(tgs_task_ran(NULL, NULL), "");
    tgs_core_free(c);
}

/* An error that is retried: nothing while the retry waits or runs; then
 * the worker and run time of the last attempt. */
static void test_ran_core__retry_reports_last_attempt(void **state)
{
    tgs_core_opts o;
    memset(&o, 0, sizeof o);
    o.retry_backoff_ms = -1; /* retry at once */
    (void)state;
    tgs_core *c = cf_core_new(&o);
    add_worker(c, 1, "w1");
    submit(c, "r", NULL, NULL, 1);
    drain(c);
    assert_int_equal(finish(c, 1, "r", false, false, 900), TGS_OK);
    drain(c);
    /* Assigned again (w1 is the only worker). */
    assert_ran(c, "r", TGS_PROCESSING, "", 0);
    add_worker(c, 2, "w2");
    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK);
    drain(c);
    assert_ran(c, "r", TGS_PROCESSING, "", 0);
    assert_int_equal(finish(c, 2, "r", true, false, 60000), TGS_OK);
    assert_ran(c, "r", TGS_MEMORY, "w2", 60000);
    /* Attempts: the error, the run lost with w1, this one. */
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, cf_str("r"))), 3);
    tgs_core_free(c);
}

/* A held result lost with its only holder is recomputed: nothing while
 * it is computed again, then the new run's worker and time. */
static void test_ran_core__recompute_reports_new_run(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1");
    submit(c, "h", NULL, NULL, 0);
    submit(c, "use", "h", "w2", 0);
    drain(c);
    assert_int_equal(finish(c, 1, "h", true, true, 300), TGS_OK);
    drain(c);
    assert_ran(c, "h", TGS_MEMORY, "w1", 300);
    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK);
    drain(c);
    const tgs_task *t = tgs_core_find(c, cf_str("h"));
    assert_non_null(t);
    assert_int_not_equal(tgs_task_state(t), TGS_MEMORY);
    cf_assert_str_is(tgs_task_ran(t, NULL), "");
    add_worker(c, 2, "w2");
    drain(c);
    assert_int_equal(finish(c, 2, "h", true, true, 400), TGS_OK);
    assert_ran(c, "h", TGS_MEMORY, "w2", 400);
    assert_int_equal(tgs_task_attempt(tgs_core_find(c, cf_str("h"))), 2);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ran_core__own_runs_only),
        cmocka_unit_test(test_ran_core__retry_reports_last_attempt),
        cmocka_unit_test(test_ran_core__recompute_reports_new_run),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
