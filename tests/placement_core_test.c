/* SPDX-License-Identifier: Apache-2.0
 *
 * placement_core_test.c: unit tests of the core's rule for placing and
 * stealing tasks whose inputs are held on workers (scheduler/core/
 * place.c, schedule.c, steal.c), driven with a fake clock and fake
 * workers: a task goes where it is estimated to start first, counting
 * the time to move the bytes it lacks (tgs_core_opts.transfer_bandwidth)
 * against the wait for a busy holder; a task waiting behind a task that
 * overruns its estimate is moved once waiting costs more than moving;
 * stealing never moves a task whose bytes cost more than it gains; worker
 * restrictions and resources still come first. Depends on
 * //scheduler:core, the core fixture (core_fixture.h) and cmocka.
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

/* Worker ids. */
#define A 1
#define B 2

#define MB 1000000ull

/* A core with one thread per worker at 10 MB/s between workers (50 MB:
 * 5 s), the clock, and the actions of the last event. */
typedef struct pl {
    tgs_core *c;
    int64_t now;
    cf_act acts[CF_MAX_ACTS];
    size_t nacts;
} pl;

static void pl_init(pl *p, double bandwidth)
{
    tgs_core_opts o;
    memset(&o, 0, sizeof o);
    o.transfer_bandwidth = bandwidth;
    memset(p, 0, sizeof *p);
    p->c = cf_core_new(&o);
}

static void pl_pop(pl *p)
{
    p->nacts = cf_pop_all(p->c, p->acts, CF_MAX_ACTS);
}

/* Worker `wid` named "A"/"B", with a data service, running f; `gpus`
 * GPU if > 0. */
static void pl_join(pl *p, uint64_t wid, uint32_t nthreads, double gpus)
{
    tgs_str funcs[] = {cf_str("f")};
    tgs_resource gpu = {cf_str("GPU"), gpus};
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str(wid == A ? "A" : "B");
    w.nthreads = nthreads;
    w.funcs = funcs;
    w.nfuncs = 1;
    w.can_fetch = true;
    if (gpus > 0) {
        w.resources = &gpu;
        w.nresources = 1;
    }
    assert_int_equal(tgs_core_worker_add(p->c, wid, &w, p->now), TGS_OK);
    pl_pop(p);
}

/* Task `key` running f, on the result of `dep` (NULL: none), restricted
 * to `only` (NULL: anywhere), asking for `gpus` GPU if > 0. */
static void pl_task(pl *p, const char *key, const char *dep, const char *only,
                    double gpus)
{
    tgs_str d = cf_str(dep != NULL ? dep : "");
    tgs_str w = cf_str(only != NULL ? only : "");
    tgs_resource gpu = {cf_str("GPU"), gpus};
    tgs_task_spec s;
    char err[256];
    memset(&s, 0, sizeof s);
    s.key = cf_str(key);
    s.func = cf_str("f");
    s.deps = &d;
    s.ndeps = dep != NULL;
    s.workers = &w;
    s.nworkers = only != NULL;
    s.resources = &gpu;
    s.nresources = gpus > 0;
    if (tgs_core_submit(p->c, &s, 1, p->now, NULL, err, sizeof err) != TGS_OK)
        fail_msg("submit %s: %s", key, err);
    pl_pop(p);
}

/* `wid` reports `key` done at the current time: held there with `size`
 * bytes, or inline (size 0). */
static void pl_done(pl *p, uint64_t wid, const char *key, uint64_t size)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.held = size > 0;
    o.size = size;
    o.data = (const uint8_t *)"1";
    o.data_len = size > 0 ? 0 : 1;
    o.codec = cf_str("raw");
    assert_int_equal(tgs_core_task_finished(p->c, wid, cf_str(key), &o, p->now),
                     TGS_OK);
    pl_pop(p);
}

static void pl_tick(pl *p, int64_t now)
{
    p->now = now;
    tgs_core_tick(p->c, now);
    pl_pop(p);
}

/* The worker `key` is processing on (0: none). */
static uint64_t pl_on(const pl *p, const char *key)
{
    const tgs_task *t = tgs_core_find(p->c, cf_str(key));
    uint64_t wid = 0;
    assert_non_null(t);
    if (!tgs_task_worker(t, &wid))
        return 0;
    return wid;
}

static size_t pl_steals(const pl *p, const char *key)
{
    return cf_count_acts(p->acts, p->nacts, TGS_ACT_STEAL, 0, key);
}

/* A and B (`nthreads` each; A with `gpus` GPU) joined at 0, at
 * `bandwidth` between them; B runs x. */
static void pl_start(pl *p, double bandwidth, uint32_t nthreads, double gpus)
{
    pl_init(p, bandwidth);
    pl_join(p, A, nthreads, gpus);
    pl_join(p, B, nthreads, 0);
    pl_task(p, "x", NULL, "B", 0);
    assert_int_equal(pl_on(p, "x"), B);
}

/*
 * The common start: A and B (one thread each) idle; at 0 B runs x; at
 * 1000 x is done, held on B with `size` bytes (f is now measured at
 * 1000 ms), and B starts b1 (restricted to B, queued there at 0); with
 * `b2`, a second task restricted to B is queued behind b1 (2000 ms of
 * work on B in all, and B's prefetch depth for f, 1 beyond its thread,
 * is full).
 */
static void pl_holder_busy(pl *p, double bandwidth, uint64_t size, bool b2)
{
    pl_start(p, bandwidth, 1, 0);
    pl_task(p, "b1", NULL, "B", 0);
    if (b2)
        pl_task(p, "b2", NULL, "B", 0);
    assert_int_equal(pl_on(p, "b1"), B);
    p->now = 1000;
    pl_done(p, B, "x", size);
    if (b2)
        assert_int_equal(pl_on(p, "b2"), B);
}

/* Submit y, on x's result: the worker it goes to (0: none yet). */
static uint64_t pl_y(pl *p)
{
    pl_task(p, "y", "x", NULL, 0);
    return pl_on(p, "y");
}

/* ---- tests ---- */

/* B holds y's 50 MB input and has 2 s of work (b1 and b2; its prefetch
 * depth is full); A is free, but moving 50 MB takes 5 s: y waits for B
 * (queued there, and A does not steal it). At 100 MB/s (the default) the
 * move takes 0.5 s: y goes to A. */
static void test_placement_core__waits_for_busy_holder(void **state)
{
    pl p;
    (void)state;
    pl_holder_busy(&p, 10e6, 50 * MB, true);
    assert_int_equal(pl_y(&p), B);
    assert_int_equal(pl_steals(&p, "y"), 0);
    pl_tick(&p, 1500);
    assert_int_equal(pl_steals(&p, "y"), 0);
    p.now = 2000;
    pl_done(&p, B, "b1", 0);
    p.now = 3000;
    pl_done(&p, B, "b2", 0);
    assert_int_equal(pl_on(&p, "y"), B);
    assert_int_equal(pl_steals(&p, "y"), 0);
    tgs_core_free(p.c);

    pl_holder_busy(&p, 0, 50 * MB, true);
    assert_int_equal(pl_y(&p), A);
    tgs_core_free(p.c);
}

/* y's input is 100 KB (10 ms at 10 MB/s) and B has 1 s of work: the
 * free A takes y rather than wait for B, though B holds the input and
 * has room for it. */
static void test_placement_core__small_input_goes_to_free_worker(void **state)
{
    pl p;
    (void)state;
    pl_holder_busy(&p, 10e6, 100000, false);
    assert_int_equal(pl_y(&p), A);
    tgs_core_free(p.c);
}

/* y waits for B (1 s left of b1, against 5 s to move 50 MB), but b1
 * never ends: once it has overrun its estimate by more than the move
 * (b1's remaining time past its estimate is taken as its overrun so
 * far), the idle A asks for y back, and y then runs on A. Not before. */
static void test_placement_core__moved_when_wait_overruns(void **state)
{
    pl p;
    (void)state;
    pl_holder_busy(&p, 10e6, 50 * MB, false);
    assert_int_equal(pl_y(&p), B);
    for (int64_t t = 1100; t <= 6900; t += 100) {
        pl_tick(&p, t);
        assert_int_equal(pl_steals(&p, "y"), 0);
    }
    /* b1 began at 1000, estimated 1000 ms: 5100 ms late at 7100. */
    pl_tick(&p, 7000);
    assert_int_equal(pl_steals(&p, "y"), 0);
    pl_tick(&p, 7100);
    assert_int_equal(cf_count_acts(p.acts, p.nacts, TGS_ACT_STEAL, B, "y"), 1);
    assert_int_equal(tgs_core_task_returned(p.c, B, cf_str("y"), p.now),
                     TGS_OK);
    pl_pop(&p);
    assert_int_equal(cf_count_acts(p.acts, p.nacts, TGS_ACT_ASSIGN, A, "y"), 1);
    assert_int_equal(pl_on(&p, "y"), A);
    /* Not asked back again: A is not busy, the choice stands. */
    pl_tick(&p, 7200);
    assert_int_equal(pl_steals(&p, "y"), 0);
    tgs_core_free(p.c);
}

/* Both busy when y2 (100 KB input) and y (50 MB) become READY, A more
 * so: y2 queues on B, its holder; y finds no room within either's
 * prefetch depth and stays READY until A has room, then queues on B too
 * (B's wait is shorter than moving 50 MB). A then goes idle and steals:
 * y2, whose 10 ms move gains B's wait, but not y, the more recently
 * queued (the usual first choice), whose 5 s move costs more than B's
 * wait. */
static void test_placement_core__steal_weighs_transfer(void **state)
{
    pl p;
    (void)state;
    pl_start(&p, 10e6, 1, 0);
    pl_task(&p, "x2", NULL, "B", 0);
    p.now = 500;
    pl_task(&p, "a1", NULL, "A", 0);
    pl_task(&p, "a2", NULL, "A", 0);
    assert_int_equal(pl_on(&p, "a2"), A);
    p.now = 1000;
    pl_done(&p, B, "x", 50 * MB);
    pl_task(&p, "b1", NULL, "B", 0);
    pl_done(&p, B, "x2", 100000);
    assert_int_equal(pl_on(&p, "b1"), B);
    /* A: 500 ms left of a1, then a2; B: b1. */
    pl_task(&p, "y2", "x2", NULL, 0);
    pl_task(&p, "y", "x", NULL, 0);
    assert_int_equal(pl_on(&p, "y2"), B);
    assert_int_equal(pl_on(&p, "y"), 0);
    p.now = 1100;
    pl_done(&p, A, "a1", 0);
    assert_int_equal(pl_on(&p, "y"), B);
    assert_int_equal(pl_steals(&p, "y2") + pl_steals(&p, "y"), 0);
    pl_done(&p, A, "a2", 0); /* A is idle */
    assert_int_equal(cf_count_acts(p.acts, p.nacts, TGS_ACT_STEAL, B, "y2"), 1);
    assert_int_equal(pl_steals(&p, "y"), 0);
    pl_tick(&p, 1200);
    assert_int_equal(pl_steals(&p, "y"), 0);
    assert_int_equal(pl_on(&p, "y"), B);
    tgs_core_free(p.c);
}

/* B holds the input and is idle, but y may run only on A (workers=) and
 * yg needs a GPU only A has: both go to A, and nothing is stolen to B. */
static void test_placement_core__restrictions_win(void **state)
{
    pl p;
    (void)state;
    pl_start(&p, 10e6, 2, 1);
    p.now = 1000;
    pl_done(&p, B, "x", 50 * MB);
    pl_task(&p, "y", "x", "A", 0);
    pl_task(&p, "yg", "x", NULL, 1);
    assert_int_equal(pl_on(&p, "y"), A);
    assert_int_equal(pl_on(&p, "yg"), A);
    /* Unrestricted, the same task goes to the idle holder. */
    pl_task(&p, "yb", "x", NULL, 0);
    assert_int_equal(pl_on(&p, "yb"), B);
    pl_tick(&p, 1100);
    assert_int_equal(pl_steals(&p, "y") + pl_steals(&p, "yg"), 0);
    tgs_core_free(p.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_core__waits_for_busy_holder),
        cmocka_unit_test(test_placement_core__small_input_goes_to_free_worker),
        cmocka_unit_test(test_placement_core__moved_when_wait_overruns),
        cmocka_unit_test(test_placement_core__steal_weighs_transfer),
        cmocka_unit_test(test_placement_core__restrictions_win),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
