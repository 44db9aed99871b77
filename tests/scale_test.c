/* SPDX-License-Identifier: Apache-2.0
 *
 * scale_test.c: unit tests of the scaling policy of the pure scheduling
 * core (tgs_core_scale, tgs_core_adapt, TGS_ACT_SCALE, TGS_ACT_RETIRE),
 * driven with a fake clock and fake workers: no network, no processes.
 * Each test plays the launcher's part: it reads the target and the
 * workers to retire from the actions. Depends on //scheduler:core, the
 * core fixture (core_fixture.h) and cmocka.
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

/* What one batch of actions asked of the launcher. */
typedef struct scale_acts {
    int nscale;      /* TGS_ACT_SCALE actions */
    uint32_t target; /* the last target */
    size_t nretired; /* TGS_ACT_RETIRE actions */
    uint64_t retired[16];
    size_t nclosed; /* TGS_ACT_CLOSE_WORKER actions */
    uint64_t closed[16];
    size_t nassigned;
    char assigned[64][48]; /* keys of TGS_ACT_ASSIGN, in order */
    uint64_t assigned_to[64];
} scale_acts;

static scale_acts pop(tgs_core *c)
{
    scale_acts s;
    tgs_action a;
    memset(&s, 0, sizeof s);
    while (tgs_core_next_action(c, &a)) {
        switch (a.kind) {
        case TGS_ACT_SCALE:
            s.nscale++;
            s.target = a.target;
            break;
        case TGS_ACT_RETIRE:
            assert_true(s.nretired < 16);
            s.retired[s.nretired++] = a.worker;
            break;
        case TGS_ACT_CLOSE_WORKER:
            assert_true(s.nclosed < 16);
            s.closed[s.nclosed++] = a.worker;
            break;
        case TGS_ACT_ASSIGN: {
            tgs_str k = tgs_task_key(a.task);
            assert_true(s.nassigned < 64 && k.len < 48);
            memcpy(s.assigned[s.nassigned], k.ptr, k.len);
            s.assigned[s.nassigned][k.len] = '\0';
            s.assigned_to[s.nassigned++] = a.worker;
            break;
        }
        default:
            break;
        }
    }
    return s;
}

/* A worker providing "f" with `nthreads` threads; managed if asked. */
static void add_worker(tgs_core *c, uint64_t wid, uint32_t nthreads,
                       bool managed, int64_t now)
{
    char name[32];
    snprintf(name, sizeof name, "w%llu", (unsigned long long)wid);
    tgs_str f = cf_str("f");
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str(name);
    w.nthreads = nthreads;
    w.funcs = &f;
    w.nfuncs = 1;
    assert_int_equal(tgs_core_worker_add(c, wid, &w, now), TGS_OK);
    if (managed)
        assert_int_equal(tgs_core_worker_managed(c, wid), TGS_OK);
}

/* Submit `n` independent tasks of function `func`, keys prefix0..n-1. */
static void submit(tgs_core *c, const char *prefix, size_t n, const char *func,
                   int64_t now)
{
    char keys[64][48];
    tgs_task_spec specs[64];
    assert_true(n <= 64);
    memset(specs, 0, sizeof specs);
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%s%zu", prefix, i);
        specs[i].key = cf_str(keys[i]);
        specs[i].func = cf_str(func);
    }
    assert_int_equal(tgs_core_submit(c, specs, n, now, NULL, NULL, 0), TGS_OK);
}

/* Finish every task of `s` (assignments) successfully. */
static void finish_all(tgs_core *c, const scale_acts *s, int64_t now)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    for (size_t i = 0; i < s->nassigned; i++)
        assert_int_equal(tgs_core_task_finished(c, s->assigned_to[i],
                                                cf_str(s->assigned[i]), &o,
                                                now),
                         TGS_OK);
}

static tgs_adapt_opts adapt_opts(uint32_t minimum, uint32_t maximum,
                                 uint32_t nthreads)
{
    tgs_adapt_opts o;
    memset(&o, 0, sizeof o);
    o.minimum = minimum;
    o.maximum = maximum;
    o.nthreads = nthreads;
    return o; /* hold_ms 0: the default, 2000 ms */
}

/* Scale(n): the target at once, surplus managed workers retired at the
 * next tick, workers started by hand neither counted nor retired. */
static void test_scale__fixed_target(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    uint32_t target = 99;
    assert_false(tgs_core_scale_target(c, &target));
    assert_int_equal(target, 0);
    tgs_core_tick(c, 100);
    scale_acts s = pop(c);
    assert_int_equal(s.nscale, 0); /* no scaling until asked */

    for (uint64_t w = 1; w <= 4; w++)
        add_worker(c, w, 1, true, 100);
    add_worker(c, 9, 1, false, 100); /* started by hand */
    assert_int_equal(tgs_core_worker_managed(c, 42), TGS_ENOTFOUND);
    assert_int_equal(tgs_core_scale(c, 6, 200), TGS_OK);
    s = pop(c);
    assert_int_equal(s.nscale, 1);
    assert_int_equal(s.target, 6);
    assert_true(tgs_core_scale_target(c, &target));
    assert_int_equal(target, 6);
    tgs_core_tick(c, 300);
    s = pop(c);
    assert_int_equal(s.nretired, 0);
    assert_int_equal(s.nscale, 0); /* fixed: no demand follows */

    assert_int_equal(tgs_core_scale(c, 2, 400), TGS_OK);
    s = pop(c);
    assert_int_equal(s.target, 2);
    assert_int_equal(s.nretired, 0); /* retired at the tick */
    tgs_core_tick(c, 500);
    s = pop(c);
    assert_int_equal(s.nretired, 2);
    for (size_t i = 0; i < s.nretired; i++)
        assert_true(s.retired[i] >= 1 && s.retired[i] <= 4);
    assert_int_equal(s.nclosed, 2); /* idle: closed at once */
    tgs_core_tick(c, 600);
    s = pop(c);
    assert_int_equal(s.nretired, 0); /* two managed left: on target */

    assert_int_equal(tgs_core_scale(c, 0, 700), TGS_OK);
    tgs_core_tick(c, 800);
    s = pop(c);
    assert_int_equal(s.target, 0);
    assert_int_equal(s.nretired, 2);
    for (size_t i = 0; i < s.nretired; i++)
        assert_int_not_equal(s.retired[i], 9);
    tgs_core_free(c);
}

/* Adaptive: demand above the target raises it at the very next tick. */
static void test_scale__up_at_once(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_adapt_opts o = adapt_opts(1, 10, 2);
    assert_int_equal(tgs_core_adapt(c, &o, 1000), TGS_OK);
    scale_acts s = pop(c);
    assert_int_equal(s.nscale, 1);
    assert_int_equal(s.target, 1); /* starts at the minimum */

    /* No worker yet: READY tasks count, whatever their function. */
    submit(c, "a", 7, "f", 1000);
    tgs_core_tick(c, 1100);
    s = pop(c);
    assert_int_equal(s.nscale, 1);
    assert_int_equal(s.target, 4); /* ceil(7 / 2) */

    /* Workers join and run them: PROCESSING counts as much. */
    add_worker(c, 1, 2, true, 1150);
    add_worker(c, 2, 2, true, 1150);
    s = pop(c);
    assert_int_equal(s.nassigned, 7);
    submit(c, "b", 3, "f", 1200);
    tgs_core_tick(c, 1200);
    s = pop(c);
    assert_int_equal(s.nscale, 1);
    assert_int_equal(s.target, 5); /* ceil(10 / 2) */
    tgs_core_tick(c, 1300);
    s = pop(c);
    assert_int_equal(s.nscale, 0); /* unchanged: not repeated */
    tgs_core_free(c);
}

/* Adaptive: down only once the demand has stayed lower for the hold
 * time, then the surplus managed workers are retired. */
static void test_scale__down_after_hold(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_adapt_opts o = adapt_opts(1, 10, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_OK);
    for (uint64_t w = 1; w <= 3; w++)
        add_worker(c, w, 1, true, 0);
    pop(c);
    submit(c, "a", 3, "f", 10);
    scale_acts run = pop(c);
    assert_int_equal(run.nassigned, 3);
    tgs_core_tick(c, 100);
    scale_acts s = pop(c);
    assert_int_equal(s.target, 3);

    finish_all(c, &run, 200);
    pop(c);
    tgs_core_tick(c, 300); /* demand 1 (the minimum) < 3: the wait starts */
    s = pop(c);
    assert_int_equal(s.nscale, 0);
    tgs_core_tick(c, 2299); /* 1999 ms later */
    s = pop(c);
    assert_int_equal(s.nscale, 0);
    assert_int_equal(s.nretired, 0);
    tgs_core_tick(c, 2300); /* 2000 ms: down */
    s = pop(c);
    assert_int_equal(s.nscale, 1);
    assert_int_equal(s.target, 1);
    assert_int_equal(s.nretired, 2);
    assert_int_equal(s.nclosed, 2);
    tgs_core_free(c);
}

/* The target never leaves [minimum, maximum], and the bounds are
 * checked. */
static void test_scale__within_bounds(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_adapt_opts o = adapt_opts(2, 3, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_OK);
    scale_acts s = pop(c);
    assert_int_equal(s.target, 2);
    submit(c, "a", 50, "f", 0);
    tgs_core_tick(c, 100);
    s = pop(c);
    assert_int_equal(s.target, 3); /* 50 wanted, at most 3 */

    tgs_str keys[50];
    char names[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(names[i], sizeof names[i], "a%d", i);
        keys[i] = cf_str(names[i]);
    }
    assert_int_equal(tgs_core_cancel(c, keys, 50, 200, NULL), TGS_OK);
    for (int64_t t = 300; t <= 10000; t += 100)
        tgs_core_tick(c, t);
    uint32_t target;
    assert_true(tgs_core_scale_target(c, &target));
    assert_int_equal(target, 2); /* nothing wanted, at least 2 */

    /* Re-bounding clamps the current target at once. */
    o = adapt_opts(5, 8, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 10100), TGS_OK);
    s = pop(c);
    assert_int_equal(s.target, 5);
    o = adapt_opts(0, 1, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 10200), TGS_OK);
    s = pop(c);
    assert_int_equal(s.target, 1);

    o = adapt_opts(4, 3, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_EINVAL);
    o = adapt_opts(0, 0, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_EINVAL);
    o = adapt_opts(0, 4, 1);
    o.hold_ms = -1;
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_EINVAL);
    assert_int_equal(tgs_core_adapt(c, NULL, 0), TGS_EINVAL);
    assert_int_equal(tgs_core_scale(NULL, 1, 0), TGS_EINVAL);
    tgs_core_free(c);
}

/* Retiring picks the least loaded managed worker (per thread; the last
 * to join among equals), drains it, and closes it once its work is
 * done. */
static void test_scale__retires_least_loaded(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, 4, true, 0);
    add_worker(c, 2, 4, true, 0);
    add_worker(c, 3, 4, true, 0);
    submit(c, "a", 7, "f", 0);
    scale_acts run = pop(c);
    assert_int_equal(run.nassigned, 7);
    /* Spread evenly: 3, 2, 2. Finish both of worker 3's and one of
     * worker 1's: loads 2, 2, 0. */
    tgs_outcome ok;
    memset(&ok, 0, sizeof ok);
    ok.ok = true;
    size_t left1 = 1;
    for (size_t i = 0; i < run.nassigned; i++) {
        if (run.assigned_to[i] == 3 || (run.assigned_to[i] == 1 && left1)) {
            if (run.assigned_to[i] == 1)
                left1 = 0;
            assert_int_equal(tgs_core_task_finished(c, run.assigned_to[i],
                                                    cf_str(run.assigned[i]),
                                                    &ok, 10),
                             TGS_OK);
        }
    }
    pop(c);
    assert_int_equal(tgs_core_scale(c, 2, 20), TGS_OK);
    tgs_core_tick(c, 30);
    scale_acts s = pop(c);
    assert_int_equal(s.nretired, 1);
    assert_int_equal(s.retired[0], 3);
    assert_int_equal(s.nclosed, 1); /* it was idle */
    assert_int_equal(s.closed[0], 3);

    /* Loads 2 and 2: the one that joined last goes; it is busy, so it
     * drains first and closes when its last task is done. */
    assert_int_equal(tgs_core_scale(c, 1, 40), TGS_OK);
    tgs_core_tick(c, 50);
    s = pop(c);
    assert_int_equal(s.nretired, 1);
    assert_int_equal(s.retired[0], 2);
    assert_int_equal(s.nclosed, 0);
    submit(c, "b", 1, "f", 60);
    s = pop(c);
    assert_int_equal(s.nassigned, 1);
    assert_int_equal(s.assigned_to[0], 1); /* no new work for worker 2 */
    for (size_t i = 0; i < run.nassigned; i++)
        if (run.assigned_to[i] == 2)
            assert_int_equal(
                tgs_core_task_finished(c, 2, cf_str(run.assigned[i]), &ok, 70),
                TGS_OK);
    s = pop(c);
    assert_int_equal(s.nclosed, 1);
    assert_int_equal(s.closed[0], 2);
    tgs_core_free(c);
}

/* A load that drops and comes back faster than the hold time never
 * scales down; once it stays low for the hold time, it does. */
static void test_scale__no_flapping(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_adapt_opts o = adapt_opts(1, 10, 1);
    o.hold_ms = 2000;
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_OK);
    add_worker(c, 1, 1, true, 0);
    add_worker(c, 2, 1, true, 0);
    pop(c);
    /* Every second: two tasks for 500 ms, then nothing for 500 ms. */
    scale_acts run;
    memset(&run, 0, sizeof run);
    int nscale = 0;
    int64_t t;
    for (t = 0; t < 20000; t += 100) {
        if (t % 1000 == 0) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "r%lld-", (long long)t);
            submit(c, prefix, 2, "f", t);
            run = pop(c);
            assert_int_equal(run.nassigned, 2);
        } else if (t % 1000 == 500) {
            finish_all(c, &run, t);
            pop(c);
        }
        tgs_core_tick(c, t);
        scale_acts s = pop(c);
        assert_int_equal(s.nretired, 0);
        nscale += s.nscale;
        if (s.nscale)
            assert_int_equal(s.target, 2);
    }
    assert_int_equal(nscale, 1); /* up once, never down */

    /* The load stops (last finished at 19500): down 2000 ms later. */
    for (;; t += 100) {
        tgs_core_tick(c, t);
        scale_acts s = pop(c);
        if (s.nscale) {
            assert_int_equal(s.target, 1);
            assert_int_equal(s.nretired, 1);
            break;
        }
        assert_true(t < 21500);
    }
    assert_int_equal(t, 21500);
    tgs_core_free(c);
}

/* Tasks no connected worker can run do not call for more workers; with
 * no worker connected they do. */
static void test_scale__unplaceable_not_counted(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    tgs_adapt_opts o = adapt_opts(0, 10, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 0), TGS_OK);
    submit(c, "g", 4, "nobody.has.this", 0);
    tgs_core_tick(c, 100);
    scale_acts s = pop(c);
    assert_int_equal(s.target, 4);
    add_worker(c, 1, 1, true, 200);
    tgs_core_tick(c, 300); /* demand 0 now: the wait starts */
    tgs_core_tick(c, 2300);
    s = pop(c);
    assert_int_equal(s.nscale, 1);
    assert_int_equal(s.target, 0);
    assert_int_equal(s.nretired, 1);
    tgs_core_free(c);
}

/* Workers come a job at a time (tgs_core_set_scale_step): targets of
 * Scale(n) and of adaptive scaling are whole jobs, and an adaptive target
 * does not move between two counts inside the same job (no job started
 * to be drained at once). */
static void test_scale__whole_jobs(void **state)
{
    (void)state;
    tgs_core *c = cf_core_new(NULL);
    uint32_t target = 0;
    assert_int_equal(tgs_core_set_scale_step(c, 0), TGS_EINVAL);
    assert_int_equal(tgs_core_set_scale_step(c, 3), TGS_OK);
    assert_int_equal(tgs_core_scale(c, 4, 0), TGS_OK);
    scale_acts s = pop(c);
    assert_int_equal(s.target, 6);
    assert_int_equal(tgs_core_scale(c, 0, 10), TGS_OK);
    s = pop(c);
    assert_int_equal(s.target, 0);

    tgs_adapt_opts o = adapt_opts(1, 5, 1);
    assert_int_equal(tgs_core_adapt(c, &o, 20), TGS_OK);
    s = pop(c);
    assert_int_equal(s.target, 3); /* minimum 1, a whole job */
    add_worker(c, 1, 1, true, 30);
    submit(c, "t", 4, "f", 40);
    tgs_core_tick(c, 100);
    s = pop(c);
    assert_true(tgs_core_scale_target(c, &target));
    assert_int_equal(target, 6); /* 4 runnable: two jobs */
    /* The work drains: the target comes down after the hold to one job
     * (the minimum, rounded up), and every target on the way is whole. */
    for (int64_t now = 200; now < 8000; now += 100) {
        finish_all(c, &s, now);
        tgs_core_tick(c, now);
        s = pop(c);
        assert_true(tgs_core_scale_target(c, &target));
        assert_int_equal(target % 3, 0);
    }
    assert_int_equal(target, 3);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale__fixed_target),
        cmocka_unit_test(test_scale__up_at_once),
        cmocka_unit_test(test_scale__down_after_hold),
        cmocka_unit_test(test_scale__within_bounds),
        cmocka_unit_test(test_scale__retires_least_loaded),
        cmocka_unit_test(test_scale__no_flapping),
        cmocka_unit_test(test_scale__unplaceable_not_counted),
        cmocka_unit_test(test_scale__whole_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
