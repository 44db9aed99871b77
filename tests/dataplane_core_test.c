/* SPDX-License-Identifier: Apache-2.0
 *
 * dataplane_core_test.c: unit tests of the core's bookkeeping of results
 * held on workers (scheduler/core.h, scheduler/core/data.c), driven with
 * a fake clock and fake workers: the holder and size recorded (never the
 * bytes), placement of tasks with held inputs only on workers that can
 * fetch, TGS_ACT_FREE for each holder when a held result is forgotten,
 * tg.DataLost when its only holder is lost (dependents inherit it) while
 * inline results stay, tg.ProtocolError for a held result from a worker
 * without a data service. Depends on //scheduler:core and cmocka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/core.h"

static tgs_str S(const char *z)
{
    return (tgs_str){z, strlen(z)};
}

/* An action with the task key copied out (task pointers are borrowed
 * only until the next event). */
typedef struct act {
    tgs_action_kind kind;
    uint64_t worker;
    char key[64];
} act;

#define MAX_ACTS 64

static size_t pop_all(tgs_core *c, act *out)
{
    tgs_action a;
    size_t n = 0;
    while (tgs_core_next_action(c, &a)) {
        assert_true(n < MAX_ACTS);
        out[n].kind = a.kind;
        out[n].worker = a.worker;
        out[n].key[0] = '\0';
        if (a.task != NULL) {
            tgs_str k = tgs_task_key(a.task);
            assert_true(k.len < sizeof out[n].key);
            memcpy(out[n].key, k.ptr, k.len);
            out[n].key[k.len] = '\0';
        }
        n++;
    }
    return n;
}

/* The number of actions of `kind` for `key` (and `worker`, unless 0). */
static size_t count_acts(const act *a, size_t n, tgs_action_kind kind,
                         uint64_t worker, const char *key)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].kind == kind && strcmp(a[i].key, key) == 0 &&
            (worker == 0 || a[i].worker == worker))
            k++;
    return k;
}

static void assert_str_is(tgs_str s, const char *z)
{
    char buf[512];
    assert_true(s.len < sizeof buf);
    if (s.len)
        memcpy(buf, s.ptr, s.len);
    buf[s.len] = '\0';
    assert_string_equal(buf, z);
}

static tgs_core *core_new(void)
{
    tgs_core *c = NULL;
    assert_int_equal(tgs_core_new(&c, NULL), TGS_OK);
    return c;
}

static void add_worker(tgs_core *c, uint64_t wid, const char *name,
                       uint32_t nthreads, bool can_fetch)
{
    tgs_str funcs[] = {S("f")};
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = S(name);
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
    s.key = S(key);
    s.func = S("f");
    for (size_t i = 0; deps != NULL && deps[i] != NULL; i++) {
        assert_true(i < 8);
        d[s.ndeps++] = S(deps[i]);
    }
    s.deps = d;
    if (only != NULL) {
        w[0] = S(only);
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
    o.codec = S("pickle");
    return tgs_core_task_finished(c, wid, S(key), &o, 1);
}

static int finish_inline(tgs_core *c, uint64_t wid, const char *key,
                         const char *data)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.data = (const uint8_t *)data;
    o.data_len = strlen(data);
    o.codec = S("raw");
    return tgs_core_task_finished(c, wid, S(key), &o, 1);
}

static const tgs_task *find(tgs_core *c, const char *key)
{
    const tgs_task *t = tgs_core_find(c, S(key));
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
    act a[MAX_ACTS];
    uint64_t wid = 0;
    size_t len = 99;
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 1, "w1", 1, true);
    submit(c, "big", NULL, NULL);
    pop_all(c, a);
    assert_int_equal(finish_held(c, 1, "big", 200000000), TGS_OK);

    const tgs_task *t = find(c, "big");
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_true(tgs_task_held(t));
    assert_int_equal(tgs_task_result_size(t), 200000000);
    assert_str_is(tgs_task_result_codec(t), "pickle");
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
    act a[MAX_ACTS];
    size_t len = 0;
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 1, "w1", 1, true);
    submit(c, "small", NULL, NULL);
    pop_all(c, a);
    assert_int_equal(finish_inline(c, 1, "small", "12345"), TGS_OK);
    const tgs_task *t = find(c, "small");
    assert_false(tgs_task_held(t));
    assert_int_equal(tgs_task_nholders(t), 0);
    assert_int_equal(tgs_task_result_size(t), 5);
    assert_memory_equal(tgs_task_result(t, &len), "12345", 5);
    /* Forgetting an inline result frees nothing on a worker. */
    tgs_str k = S("small");
    uint32_t n = 0;
    assert_int_equal(tgs_core_release(c, &k, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    size_t na = pop_all(c, a);
    assert_int_equal(count_acts(a, na, TGS_ACT_FREE, 0, "small"), 0);
    tgs_core_free(c);
}

/* Tasks with a held input go only to workers that can fetch: those
 * waiting when the result became held, and those submitted later; tasks
 * with inline inputs still go anywhere. */
static void test_dataplane_core__held_input_placed_on_can_fetch(void **state)
{
    act a[MAX_ACTS];
    char why[256];
    (void)state;
    tgs_core *c = core_new();
    /* w2 joined first and is idle: without the rule it would win. */
    add_worker(c, 2, "w2", 4, false);
    add_worker(c, 1, "w1", 4, true);
    const char *on_a[] = {"a", NULL};
    submit(c, "a", NULL, "w1");
    submit(c, "b", on_a, NULL);
    pop_all(c, a);
    assert_int_equal(worker_of(c, "a"), 1);
    assert_int_equal(finish_held(c, 1, "a", 1 << 20), TGS_OK);
    size_t na = pop_all(c, a);
    assert_int_equal(count_acts(a, na, TGS_ACT_ASSIGN, 1, "b"), 1);
    assert_int_equal(worker_of(c, "b"), 1);

    submit(c, "c", on_a, NULL); /* a is held already */
    pop_all(c, a);
    assert_int_equal(worker_of(c, "c"), 1);

    /* An inline input: the idle w2 takes it. */
    const char *on_s[] = {"s", NULL};
    submit(c, "s", NULL, "w2");
    pop_all(c, a);
    assert_int_equal(finish_inline(c, 2, "s", "1"), TGS_OK);
    pop_all(c, a);
    submit(c, "t", on_s, NULL);
    pop_all(c, a);
    assert_int_equal(worker_of(c, "t"), 2);

    /* No worker that can fetch: the task waits, and says why. */
    assert_int_equal(tgs_core_worker_drain(c, 1, 2), TGS_OK);
    pop_all(c, a);
    submit(c, "d", on_a, NULL);
    pop_all(c, a);
    assert_int_equal(tgs_task_state(find(c, "d")), TGS_READY);
    assert_int_equal(tgs_core_unplaceable(c), 1);
    tgs_core_why(c, find(c, "d"), why, sizeof why);
    assert_string_equal(why, "no worker with a data service provides "
                             "function 'f' (an input is held on a worker)");
    /* One joins: it runs there. */
    add_worker(c, 3, "w3", 1, true);
    pop_all(c, a);
    assert_int_equal(worker_of(c, "d"), 3);
    assert_int_equal(tgs_core_unplaceable(c), 0);
    tgs_core_free(c);
}

/* Forgetting a held result tells its holder to drop it, once the last
 * task needing it is done and no client holds it. */
static void test_dataplane_core__free_on_forget(void **state)
{
    act a[MAX_ACTS];
    uint32_t n = 0;
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 1, "w1", 2, true);
    const char *on_a[] = {"a", NULL};
    submit(c, "a", NULL, NULL);
    submit(c, "b", on_a, NULL);
    pop_all(c, a);
    assert_int_equal(finish_held(c, 1, "a", 100000), TGS_OK);
    pop_all(c, a);
    tgs_str ka = S("a"), kb = S("b");
    /* b still needs it: released by the client, a is not forgotten. */
    assert_int_equal(tgs_core_release(c, &ka, 1, &n), TGS_OK);
    assert_int_equal(n, 0);
    size_t na = pop_all(c, a);
    assert_int_equal(count_acts(a, na, TGS_ACT_FREE, 0, "a"), 0);
    /* b finishes: nobody needs a any more. */
    assert_int_equal(finish_inline(c, 1, "b", "2"), TGS_OK);
    na = pop_all(c, a);
    assert_int_equal(count_acts(a, na, TGS_ACT_FREE, 1, "a"), 1);
    assert_null(tgs_core_find(c, ka));
    assert_int_equal(tgs_core_release(c, &kb, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    na = pop_all(c, a);
    assert_int_equal(na, 0);
    tgs_core_free(c);
}

/* The only holder is lost: the held result errs with tg.DataLost and the
 * tasks needing it inherit it (waiting, ready, and processing elsewhere,
 * which is cancelled there); an inline result of the same worker stays. */
static void test_dataplane_core__holder_lost_is_data_lost(void **state)
{
    act a[MAX_ACTS];
    size_t len = 0;
    (void)state;
    tgs_core *c = core_new();
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
    pop_all(c, a);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    pop_all(c, a);
    assert_int_equal(finish_inline(c, 1, "keep", "kept"), TGS_OK);
    pop_all(c, a);
    assert_int_equal(tgs_task_state(find(c, "b")), TGS_WAITING);
    assert_int_equal(tgs_task_state(find(c, "ready")), TGS_READY);
    /* w3 is busy with x, then takes run. */
    assert_int_equal(finish_inline(c, 3, "x", "1"), TGS_OK);
    pop_all(c, a);
    assert_int_equal(worker_of(c, "run"), 3);

    assert_int_equal(tgs_core_worker_remove(c, 1, 5), TGS_OK);
    size_t na = pop_all(c, a);
    const tgs_task *t = find(c, "a");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    assert_false(tgs_task_held(t));
    assert_str_is(tgs_task_err_type(t), "tg.DataLost");
    assert_str_is(tgs_task_err_message(t),
                  "the result was held only on worker w1, which was lost");
    assert_str_is(tgs_task_err_origin(t), "");
    const char *inherit[] = {"b", "bb", "run", "ready"};
    for (size_t i = 0; i < 4; i++) {
        t = find(c, inherit[i]);
        assert_int_equal(tgs_task_state(t), TGS_ERRED);
        assert_str_is(tgs_task_err_type(t), "tg.DataLost");
        assert_str_is(tgs_task_err_origin(t), "a");
    }
    assert_int_equal(count_acts(a, na, TGS_ACT_CANCEL, 3, "run"), 1);
    assert_int_equal(count_acts(a, na, TGS_ACT_ASSIGN, 0, "run"), 0);
    /* Inline results are untouched. */
    t = find(c, "keep");
    assert_int_equal(tgs_task_state(t), TGS_MEMORY);
    assert_memory_equal(tgs_task_result(t, &len), "kept", 4);
    assert_int_equal(tgs_task_state(find(c, "x")), TGS_MEMORY);
    /* A task submitted now inherits the error at once. */
    submit(c, "late", on_a, NULL);
    assert_int_equal(tgs_task_state(find(c, "late")), TGS_ERRED);
    uint64_t n[TGS_NSTATES];
    tgs_core_counts(c, n);
    assert_int_equal(n[TGS_MEMORY], 2);
    assert_int_equal(n[TGS_ERRED], 6);
    assert_int_equal(n[TGS_PROCESSING] + n[TGS_READY] + n[TGS_WAITING], 0);
    tgs_core_free(c);
}

/* The holder says it no longer has the result (WorkerMessage.missing):
 * the same loss, named so. */
static void test_dataplane_core__missing_is_data_lost(void **state)
{
    act a[MAX_ACTS];
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 1, "w1", 1, true);
    submit(c, "a", NULL, NULL);
    pop_all(c, a);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    /* Not a holder of it, or not held: nothing changes. */
    assert_int_equal(tgs_core_result_missing(c, 2, S("a"), 2), TGS_ENOTFOUND);
    assert_int_equal(tgs_core_result_missing(c, 1, S("zz"), 2), TGS_ENOTFOUND);
    assert_int_equal(tgs_task_state(find(c, "a")), TGS_MEMORY);
    assert_int_equal(tgs_core_result_missing(c, 1, S("a"), 2), TGS_OK);
    const tgs_task *t = find(c, "a");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    assert_str_is(tgs_task_err_message(t),
                  "the result was held only on worker w1, which no longer "
                  "has it");
    /* Nothing to free any more: the worker said it has nothing. */
    tgs_str k = S("a");
    assert_int_equal(tgs_core_release(c, &k, 1, NULL), TGS_OK);
    size_t na = pop_all(c, a);
    assert_int_equal(count_acts(a, na, TGS_ACT_FREE, 0, "a"), 0);
    tgs_core_free(c);
}

/* A worker without a data service cannot hold a result: the task fails
 * with tg.ProtocolError, without using its retries. */
static void test_dataplane_core__held_without_data_service(void **state)
{
    act a[MAX_ACTS];
    tgs_task_spec s;
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 2, "w2", 1, false);
    memset(&s, 0, sizeof s);
    s.key = S("a");
    s.func = S("f");
    s.retries = 3;
    assert_int_equal(tgs_core_submit(c, &s, 1, 0, NULL, NULL, 0), TGS_OK);
    pop_all(c, a);
    assert_int_equal(finish_held(c, 2, "a", 300000), TGS_OK);
    const tgs_task *t = find(c, "a");
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    assert_str_is(tgs_task_err_type(t), "tg.ProtocolError");
    assert_non_null(strstr(tgs_task_err_message(t).ptr, "w2"));
    assert_non_null(strstr(tgs_task_err_message(t).ptr, "no data address"));
    tgs_core_free(c);
}

/* A draining worker holding a result closes only once it is freed, and
 * scaling retires a worker that holds nothing first. */
static void test_dataplane_core__drain_waits_for_frees(void **state)
{
    act a[MAX_ACTS];
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 1, "w1", 1, true);
    submit(c, "a", NULL, NULL);
    pop_all(c, a);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    pop_all(c, a);
    assert_int_equal(tgs_core_worker_drain(c, 1, 2), TGS_OK);
    size_t na = pop_all(c, a);
    assert_int_equal(na, 0); /* no TGS_ACT_CLOSE_WORKER yet */
    tgs_str k = S("a");
    assert_int_equal(tgs_core_release(c, &k, 1, NULL), TGS_OK);
    na = pop_all(c, a);
    assert_int_equal(na, 2);
    assert_int_equal(a[0].kind, TGS_ACT_FREE);
    assert_int_equal(a[1].kind, TGS_ACT_CLOSE_WORKER);
    assert_int_equal(a[1].worker, 1);
    tgs_core_free(c);

    /* Retire: w5 joined last and is as idle as w4, but holds a result. */
    c = core_new();
    add_worker(c, 4, "w4", 1, true);
    add_worker(c, 5, "w5", 1, true);
    assert_int_equal(tgs_core_worker_managed(c, 4), TGS_OK);
    assert_int_equal(tgs_core_worker_managed(c, 5), TGS_OK);
    submit(c, "a", NULL, "w5");
    pop_all(c, a);
    assert_int_equal(finish_held(c, 5, "a", 300000), TGS_OK);
    pop_all(c, a);
    assert_int_equal(tgs_core_scale(c, 1, 3), TGS_OK);
    tgs_core_tick(c, 4);
    na = pop_all(c, a);
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
    act a[MAX_ACTS];
    char key[32];
    const char *on_a[] = {"a", "a", NULL}; /* twice: two occurrences */
    (void)state;
    tgs_core *c = core_new();
    add_worker(c, 1, "w1", 64, true);
    submit(c, "a", NULL, NULL);
    pop_all(c, a);
    assert_int_equal(finish_held(c, 1, "a", 300000), TGS_OK);
    pop_all(c, a);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "c%d", i);
        submit(c, key, on_a, NULL);
        pop_all(c, a);
    }
    tgs_str ka = S("a");
    assert_int_equal(tgs_core_release(c, &ka, 1, NULL), TGS_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "c%d", i);
        if (i % 3 == 0) {
            tgs_str k = S(key);
            assert_int_equal(tgs_core_cancel(c, &k, 1, 3, NULL), TGS_OK);
        } else {
            assert_int_equal(finish_inline(c, 1, key, "1"), TGS_OK);
        }
        size_t na = pop_all(c, a);
        assert_int_equal(count_acts(a, na, TGS_ACT_FREE, 1, "a"),
                         i == 39 ? 1 : 0);
    }
    assert_null(tgs_core_find(c, ka));
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataplane_core__holder_and_size_recorded),
        cmocka_unit_test(test_dataplane_core__inline_result_is_not_held),
        cmocka_unit_test(test_dataplane_core__held_input_placed_on_can_fetch),
        cmocka_unit_test(test_dataplane_core__free_on_forget),
        cmocka_unit_test(test_dataplane_core__holder_lost_is_data_lost),
        cmocka_unit_test(test_dataplane_core__missing_is_data_lost),
        cmocka_unit_test(test_dataplane_core__held_without_data_service),
        cmocka_unit_test(test_dataplane_core__drain_waits_for_frees),
        cmocka_unit_test(test_dataplane_core__many_consumers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
