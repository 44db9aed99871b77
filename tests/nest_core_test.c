/* SPDX-License-Identifier: Apache-2.0
 *
 * nest_core_test.c: unit tests of nested work in the pure core, with a
 * fake clock: a seceded task frees its worker's slot (another task is
 * assigned there), a rejoined one counts again and blocks new
 * assignments until the worker is below its slots, races (a secession
 * after the result, for an unknown key or worker, twice, a rejoin without
 * secession, a worker lost while a task seceded), and parents: children
 * are cancelled with their parent, recursively, links only to parents
 * known before the batch, Status's view of the tree; the nesting depth
 * limit (a task deeper than it errs at once with tg.NestingTooDeep, its
 * depth fixed at submission). Depends on
 * //scheduler:core, tests/core_fixture and cmocka.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core_fixture.h"
#include "scheduler/core.h"

#define S cf_str

#define add_worker cf_worker_add_f

/* Submit `key` (function "f"), with parent `parent` (NULL: none). */
static int submit_child(tgs_core *c, const char *key, const char *parent)
{
    tgs_task_spec s;
    char err[256];
    memset(&s, 0, sizeof s);
    s.key = S(key);
    s.func = S("f");
    if (parent != NULL)
        s.parent = S(parent);
    return tgs_core_submit(c, &s, 1, 0, NULL, err, sizeof err);
}

static void submit(tgs_core *c, const char *key)
{
    assert_int_equal(submit_child(c, key, NULL), TGS_OK);
}

/* How many TGS_ACT_ASSIGN to `worker` (0: any) are queued now. */
static size_t assigns(tgs_core *c, uint64_t worker)
{
    cf_act a[CF_MAX_ACTS];
    size_t n = cf_pop_all(c, a, CF_MAX_ACTS), k = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].kind == TGS_ACT_ASSIGN &&
            (worker == 0 || a[i].worker == worker))
            k++;
    return k;
}

static tgs_state state_of(tgs_core *c, const char *key)
{
    const tgs_task *t = tgs_core_find(c, S(key));
    assert_non_null(t);
    return tgs_task_state(t);
}

/* Finish `key` at 100 s: a long run, so that the measured run time
 * keeps the prefetch at one task per thread. */
static void finish(tgs_core *c, uint64_t wid, const char *key)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.data = (const uint8_t *)"1";
    o.data_len = 1;
    assert_int_equal(tgs_core_task_finished(c, wid, S(key), &o, 100000),
                     TGS_OK);
}

static tgs_worker_info info(tgs_core *c, size_t i)
{
    tgs_worker_info wi;
    assert_true(tgs_core_worker_at(c, i, &wi));
    return wi;
}

/* One worker, one thread: it holds two tasks (a thread and a prefetch
 * slot, before any run time is known). */
static tgs_core *one_worker_with(const char *const *keys, size_t n)
{
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1");
    for (size_t i = 0; i < n; i++)
        submit(c, keys[i]);
    return c;
}

/* Worker 1 (one thread) runs `key`, which seceded. */
static tgs_core *seceded_on_w1(const char *key)
{
    tgs_core *c = cf_core_new(NULL);
    add_worker(c, 1, "w1");
    submit(c, key);
    assert_int_equal(assigns(c, 1), 1);
    assert_int_equal(tgs_core_task_seceded(c, 1, S(key), false, 1), TGS_OK);
    return c;
}

static void test_nest_core__seceded_task_frees_its_slot(void **state)
{
    (void)state;
    const char *keys[] = {"a", "b", "c"};
    tgs_core *c = one_worker_with(keys, 3);
    assert_int_equal(assigns(c, 1), 2);
    assert_int_equal(state_of(c, "c"), TGS_READY);

    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), false, 1), TGS_OK);
    assert_int_equal(assigns(c, 1), 1); /* c, in the slot a gave back */
    assert_int_equal(state_of(c, "c"), TGS_PROCESSING);
    assert_true(tgs_task_seceded(tgs_core_find(c, S("a"))));
    tgs_worker_info wi = info(c, 0);
    assert_int_equal(wi.nthreads, 1); /* as registered */
    assert_int_equal(wi.seceded, 1);
    assert_int_equal(wi.processing, 3);
    tgs_core_free(c);
}

static void test_nest_core__rejoin_blocks_until_below_slots(void **state)
{
    (void)state;
    const char *keys[] = {"a", "b"};
    tgs_core *c = one_worker_with(keys, 2);
    assert_int_equal(assigns(c, 1), 2);
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), false, 1), TGS_OK);
    submit(c, "c");
    submit(c, "d");
    submit(c, "e");
    /* Two threads' worth now: four tasks (a, b, c, d); e waits. */
    assert_int_equal(assigns(c, 1), 2);
    assert_int_equal(state_of(c, "e"), TGS_READY);

    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), true, 2), TGS_OK);
    assert_int_equal(info(c, 0).seceded, 0);
    assert_false(tgs_task_seceded(tgs_core_find(c, S("a"))));
    /* Over its two slots with four tasks: nothing new until below. */
    finish(c, 1, "b");
    assert_int_equal(assigns(c, 0), 0);
    finish(c, 1, "c");
    assert_int_equal(assigns(c, 0), 0);
    assert_int_equal(state_of(c, "e"), TGS_READY);
    finish(c, 1, "d");
    assert_int_equal(assigns(c, 1), 1);
    assert_int_equal(state_of(c, "e"), TGS_PROCESSING);
    tgs_core_free(c);
}

static void test_nest_core__races_are_ignored(void **state)
{
    (void)state;
    const char *keys[] = {"a", "b", "c", "d"};
    tgs_core *c = one_worker_with(keys, 4);
    assert_int_equal(assigns(c, 1), 2);
    /* Unknown key, unknown worker, a task not on this worker. */
    assert_int_equal(tgs_core_task_seceded(c, 1, S("zz"), false, 1),
                     TGS_ENOTFOUND);
    assert_int_equal(tgs_core_task_seceded(c, 9, S("a"), false, 1),
                     TGS_ENOTFOUND);
    assert_int_equal(tgs_core_task_seceded(c, 1, S("c"), false, 1), TGS_ESTATE);
    assert_int_equal(tgs_core_task_seceded(c, 1, S(""), false, 1),
                     TGS_ENOTFOUND);
    /* A rejoin without a secession changes nothing. */
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), true, 1), TGS_OK);
    assert_int_equal(info(c, 0).seceded, 0);
    assert_int_equal(assigns(c, 0), 0);
    /* Twice seceded counts once: one more thread, so c and d come, and
     * nothing beyond. */
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), false, 1), TGS_OK);
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), false, 1), TGS_OK);
    assert_int_equal(info(c, 0).seceded, 1);
    assert_int_equal(assigns(c, 1), 2);
    /* Finished while seceded: the extra thread goes with it. */
    finish(c, 1, "a");
    assert_int_equal(info(c, 0).seceded, 0);
    /* A late secession for the finished task is ignored. */
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), false, 1), TGS_ESTATE);
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), true, 1), TGS_ESTATE);
    assert_int_equal(info(c, 0).seceded, 0);
    /* b, c, d on two slots: no room for e. */
    submit(c, "e");
    assert_int_equal(assigns(c, 0), 0);
    tgs_core_free(c);
}

static void test_nest_core__cancelled_seceded_task_frees_the_count(void **state)
{
    (void)state;
    const char *keys[] = {"a", "b"};
    tgs_core *c = one_worker_with(keys, 2);
    assert_int_equal(assigns(c, 1), 2);
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), false, 1), TGS_OK);
    tgs_str k = S("a");
    uint32_t n = 0;
    assert_int_equal(tgs_core_cancel(c, &k, 1, 2, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(info(c, 0).seceded, 0);
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), true, 2), TGS_ESTATE);
    tgs_core_free(c);
}

static void test_nest_core__worker_lost_while_seceded(void **state)
{
    (void)state;
    tgs_core *c = seceded_on_w1("a");
    add_worker(c, 2, "w2");
    assert_int_equal(tgs_core_worker_remove(c, 1, 2), TGS_OK);
    assert_int_equal(assigns(c, 2), 1); /* a runs again on w2 */
    assert_false(tgs_task_seceded(tgs_core_find(c, S("a"))));
    assert_int_equal(tgs_core_nworkers(c), 1);
    assert_int_equal(info(c, 0).seceded, 0);
    /* The lost worker's late messages are ignored. */
    assert_int_equal(tgs_core_task_seceded(c, 1, S("a"), true, 3),
                     TGS_ENOTFOUND);
    /* w2 counts its own thread only: two tasks, not three (once a, run
     * alone after its worker's loss, is done). */
    finish(c, 2, "a");
    submit(c, "b");
    submit(c, "c");
    submit(c, "d");
    assert_int_equal(assigns(c, 2), 2);
    assert_int_equal(state_of(c, "d"), TGS_READY);
    tgs_core_free(c);
}

/* The tree: p -> c1 -> g1, p -> c2, and x outside it. */
static tgs_core *tree(void)
{
    tgs_core *c = cf_core_new(NULL);
    submit(c, "p");
    assert_int_equal(submit_child(c, "c1", "p"), TGS_OK);
    assert_int_equal(submit_child(c, "c2", "p"), TGS_OK);
    assert_int_equal(submit_child(c, "g1", "c1"), TGS_OK);
    submit(c, "x");
    return c;
}

static void test_nest_core__cancel_parent_cancels_children(void **state)
{
    (void)state;
    tgs_core *c = tree();
    tgs_str k = S("p");
    uint32_t n = 0;
    assert_int_equal(tgs_core_cancel(c, &k, 1, 1, &n), TGS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(state_of(c, "p"), TGS_CANCELLED);
    assert_int_equal(state_of(c, "c1"), TGS_CANCELLED);
    assert_int_equal(state_of(c, "c2"), TGS_CANCELLED);
    assert_int_equal(state_of(c, "g1"), TGS_CANCELLED);
    assert_int_equal(state_of(c, "x"), TGS_READY);
    cf_assert_str_is(tgs_task_err_type(tgs_core_find(c, S("g1"))),
                     "tg.Cancelled");
    tgs_core_free(c);
}

static void test_nest_core__cancel_reaches_running_children(void **state)
{
    (void)state;
    tgs_core *c = seceded_on_w1("p");
    assert_int_equal(submit_child(c, "c1", "p"), TGS_OK);
    assert_int_equal(assigns(c, 1), 1);
    /* p finished (it did not wait for c1): cancelling p still cancels
     * c1, running on w1, which is told. */
    finish(c, 1, "p");
    tgs_str k = S("p");
    uint32_t n = 0;
    assert_int_equal(tgs_core_cancel(c, &k, 1, 2, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(state_of(c, "p"), TGS_MEMORY);
    assert_int_equal(state_of(c, "c1"), TGS_CANCELLED);
    cf_act a[CF_MAX_ACTS];
    size_t na = cf_pop_all(c, a, CF_MAX_ACTS);
    assert_int_equal(cf_count_acts(a, na, TGS_ACT_CANCEL, 1, "c1"), 1);
    tgs_core_free(c);
}

static void test_nest_core__cancel_child_spares_parent(void **state)
{
    (void)state;
    tgs_core *c = tree();
    tgs_str k = S("c1");
    uint32_t n = 0;
    assert_int_equal(tgs_core_cancel(c, &k, 1, 1, &n), TGS_OK);
    assert_int_equal(n, 2); /* c1 and g1 */
    assert_int_equal(state_of(c, "p"), TGS_READY);
    assert_int_equal(state_of(c, "c2"), TGS_READY);
    tgs_core_free(c);
}

static void test_nest_core__links_only_to_known_parents(void **state)
{
    (void)state;
    tgs_core *c = tree();
    /* A known key resubmitted with another parent keeps its own. */
    assert_int_equal(submit_child(c, "c2", "x"), TGS_OK);
    const tgs_task *c2 = tgs_core_find(c, S("c2"));
    cf_assert_str_is(tgs_core_task_parent(c, c2), "p");
    assert_int_equal(tgs_core_task_nchildren(c, tgs_core_find(c, S("x"))), 0);
    /* An unknown parent is kept as text, linked to nothing. */
    assert_int_equal(submit_child(c, "o", "nobody"), TGS_OK);
    cf_assert_str_is(tgs_core_task_parent(c, tgs_core_find(c, S("o"))),
                     "nobody");
    /* A parent in the same batch (or the task itself) is not linked, so
     * no cycle can form. */
    tgs_task_spec s[2];
    memset(s, 0, sizeof s);
    s[0].key = S("m");
    s[0].func = S("f");
    s[0].parent = S("n");
    s[1].key = S("n");
    s[1].func = S("f");
    s[1].parent = S("m");
    assert_int_equal(tgs_core_submit(c, s, 2, 0, NULL, NULL, 0), TGS_OK);
    assert_int_equal(tgs_core_task_nchildren(c, tgs_core_find(c, S("m"))), 0);
    assert_int_equal(tgs_core_task_nchildren(c, tgs_core_find(c, S("n"))), 0);
    tgs_str k = S("m");
    uint32_t n = 0;
    assert_int_equal(tgs_core_cancel(c, &k, 1, 1, &n), TGS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(state_of(c, "n"), TGS_READY);
    /* A parent key longer than a key may be is refused, naming the task. */
    char big[1100];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tgs_task_spec b;
    char err[256];
    memset(&b, 0, sizeof b);
    b.key = S("big");
    b.func = S("f");
    b.parent = S(big);
    assert_int_equal(tgs_core_submit(c, &b, 1, 0, NULL, err, sizeof err),
                     TGS_EINVAL);
    assert_non_null(strstr(err, "'big'"));
    assert_null(tgs_core_find(c, S("big")));
    tgs_core_free(c);
}

static void test_nest_core__children_listed_and_forgotten(void **state)
{
    (void)state;
    tgs_core *c = tree();
    const tgs_task *p = tgs_core_find(c, S("p"));
    assert_int_equal(tgs_core_task_nchildren(c, p), 2);
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        tgs_str k = tgs_task_key(tgs_core_task_child(c, p, i));
        seen |= k.len == 2 && memcmp(k.ptr, "c1", 2) == 0 ? 1 : 0;
        seen |= k.len == 2 && memcmp(k.ptr, "c2", 2) == 0 ? 2 : 0;
    }
    assert_int_equal(seen, 3);
    assert_null(tgs_core_task_child(c, p, 2));
    cf_assert_str_is(tgs_core_task_parent(c, p), "");
    /* A child cancelled and released is forgotten: it leaves the list. */
    tgs_str k = S("c2");
    assert_int_equal(tgs_core_cancel(c, &k, 1, 1, NULL), TGS_OK);
    assert_int_equal(tgs_core_release(c, &k, 1, NULL), TGS_OK);
    assert_null(tgs_core_find(c, S("c2")));
    p = tgs_core_find(c, S("p"));
    assert_int_equal(tgs_core_task_nchildren(c, p), 1);
    /* The parent forgotten: its child keeps its key as text, and
     * cancelling the child still works. */
    k = S("p");
    assert_int_equal(tgs_core_cancel(c, &k, 1, 1, NULL), TGS_OK);
    assert_int_equal(tgs_core_release(c, &k, 1, NULL), TGS_OK);
    submit(c, "y"); /* an event: forgotten tasks are freed */
    assert_null(tgs_core_find(c, S("p")));
    cf_assert_str_is(tgs_core_task_parent(c, tgs_core_find(c, S("c1"))), "p");
    /* A new task with the old parent's key is not its parent. */
    submit(c, "p");
    assert_int_equal(tgs_core_task_nchildren(c, tgs_core_find(c, S("p"))), 0);
    tgs_core_free(c);
}

/* A core with nesting limited to `limit` levels and one worker. */
static tgs_core *limited(uint32_t limit)
{
    tgs_core_opts o;
    memset(&o, 0, sizeof o);
    o.max_nesting_depth = limit;
    tgs_core *c = cf_core_new(&o);
    add_worker(c, 1, "w1");
    return c;
}

/* Submit `key` with parent `parent`: accepted to run, or ERRED at once
 * (nested too deep). */
static void submit_nested(tgs_core *c, const char *key, const char *parent,
                          bool erred)
{
    assert_int_equal(submit_child(c, key, parent), TGS_OK);
    if (erred)
        assert_int_equal(state_of(c, key), TGS_ERRED);
    else
        assert_int_not_equal(state_of(c, key), TGS_ERRED);
}

static bool has(tgs_str s, const char *z)
{
    char buf[512];
    size_t n = s.len < sizeof buf - 1 ? s.len : sizeof buf - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = '\0';
    return strstr(buf, z) != NULL;
}

static void test_nest_core__deeper_than_the_limit_errs_at_once(void **state)
{
    (void)state;
    tgs_core *c = limited(3);
    submit(c, "d0");
    submit_nested(c, "d1", "d0", false);
    submit_nested(c, "d2", "d1", false);
    submit_nested(c, "d3", "d2", false); /* 3 deep: allowed */
    /* 4 deep: ERRED at once, with an error of its own naming the key, its
     * depth, its parent and the limit; it never runs. */
    assert_int_equal(submit_child(c, "d4", "d3"), TGS_OK);
    const tgs_task *t = tgs_core_find(c, S("d4"));
    assert_int_equal(tgs_task_state(t), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(t), "tg.NestingTooDeep");
    tgs_str m = tgs_task_err_message(t);
    assert_true(has(m, "'d4'"));
    assert_true(has(m, "4 levels deep"));
    assert_true(has(m, "'d3'"));
    assert_true(has(m, "limit of 3"));
    cf_assert_str_is(tgs_task_err_origin(t), "");
    /* Still its parent's child (Status shows it), and never assigned. */
    assert_int_equal(tgs_core_task_nchildren(c, tgs_core_find(c, S("d3"))), 1);
    cf_act a[CF_MAX_ACTS];
    size_t n = cf_pop_all(c, a, CF_MAX_ACTS);
    for (size_t i = 0; i < n; i++)
        assert_false(a[i].kind == TGS_ACT_ASSIGN &&
                     strcmp(a[i].key, "d4") == 0);
    /* A dependent in the same batch, not nested itself, inherits it. */
    tgs_task_spec s[2];
    memset(s, 0, sizeof s);
    s[0].key = S("e4");
    s[0].func = S("f");
    s[0].parent = S("d3");
    tgs_str dep = S("e4");
    s[1].key = S("top");
    s[1].func = S("f");
    s[1].deps = &dep;
    s[1].ndeps = 1;
    assert_int_equal(tgs_core_submit(c, s, 2, 0, NULL, NULL, 0), TGS_OK);
    const tgs_task *top = tgs_core_find(c, S("top"));
    assert_int_equal(tgs_task_state(top), TGS_ERRED);
    cf_assert_str_is(tgs_task_err_type(top), "tg.NestingTooDeep");
    cf_assert_str_is(tgs_task_err_origin(top), "e4");
    /* Siblings at an allowed depth are not affected. */
    submit_nested(c, "d3b", "d2", false);
    tgs_core_free(c);
}

static void test_nest_core__depth_survives_forgotten_ancestors(void **state)
{
    (void)state;
    tgs_core *c = limited(2);
    submit(c, "d0");
    assert_int_equal(assigns(c, 1), 1);
    assert_int_equal(submit_child(c, "d1", "d0"), TGS_OK);
    /* d0 returns without waiting on d1, and is forgotten. */
    finish(c, 1, "d0");
    tgs_str k = S("d0");
    assert_int_equal(tgs_core_release(c, &k, 1, NULL), TGS_OK);
    submit_nested(c, "d2", "d1", false); /* 2: allowed */
    assert_null(tgs_core_find(c, S("d0")));
    /* d1 still counts as 1 deep, so d3 is 3 deep: refused. */
    submit_nested(c, "d3", "d2", true);
    /* An unknown parent counts as a top-level task: 1 deep. */
    submit_nested(c, "o", "nobody", false);
    tgs_core_free(c);
}

static void test_nest_core__no_limit_when_zero(void **state)
{
    (void)state;
    tgs_core *c = limited(0);
    char key[16], parent[16];
    submit(c, "n0");
    for (int i = 1; i <= 300; i++) {
        snprintf(key, sizeof key, "n%d", i);
        snprintf(parent, sizeof parent, "n%d", i - 1);
        submit_nested(c, key, parent, false);
    }
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nest_core__seceded_task_frees_its_slot),
        cmocka_unit_test(test_nest_core__rejoin_blocks_until_below_slots),
        cmocka_unit_test(test_nest_core__races_are_ignored),
        cmocka_unit_test(
            test_nest_core__cancelled_seceded_task_frees_the_count),
        cmocka_unit_test(test_nest_core__worker_lost_while_seceded),
        cmocka_unit_test(test_nest_core__cancel_parent_cancels_children),
        cmocka_unit_test(test_nest_core__cancel_reaches_running_children),
        cmocka_unit_test(test_nest_core__cancel_child_spares_parent),
        cmocka_unit_test(test_nest_core__links_only_to_known_parents),
        cmocka_unit_test(test_nest_core__children_listed_and_forgotten),
        cmocka_unit_test(test_nest_core__deeper_than_the_limit_errs_at_once),
        cmocka_unit_test(test_nest_core__depth_survives_forgotten_ancestors),
        cmocka_unit_test(test_nest_core__no_limit_when_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
