/* SPDX-License-Identifier: Apache-2.0
 *
 * pause_core_test.c: unit tests of tgs_core_worker_pause (a worker whose
 * memory is over its pause fraction), driven with a fake clock: a paused
 * worker is assigned nothing new (its tasks wait READY, or go to another
 * worker), keeps what it runs, and gets work again once resumed. Depends
 * on //scheduler:core and cmocka.
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

static tgs_str S(const char *z)
{
    return (tgs_str){z, strlen(z)};
}

/* The number of TGS_ACT_ASSIGN actions to `worker` (any: 0) taken now. */
static size_t assigns(tgs_core *c, uint64_t worker)
{
    tgs_action a;
    size_t n = 0;

    while (tgs_core_next_action(c, &a))
        if (a.kind == TGS_ACT_ASSIGN && (worker == 0 || a.worker == worker))
            n++;
    return n;
}

#define add_worker cf_worker_add_f

static void submit(tgs_core *c, const char *key)
{
    tgs_task_spec s;
    char err[256];

    memset(&s, 0, sizeof s);
    s.key = S(key);
    s.func = S("f");
    if (tgs_core_submit(c, &s, 1, 0, NULL, err, sizeof err) != TGS_OK)
        fail_msg("submit %s: %s", key, err);
}

static tgs_state state_of(tgs_core *c, const char *key)
{
    const tgs_task *t = tgs_core_find(c, S(key));

    assert_non_null(t);
    return tgs_task_state(t);
}

static void test_pause_core__paused_worker_gets_nothing_new(void **state)
{
    tgs_core *c = NULL;
    tgs_outcome o;

    (void)state;
    assert_int_equal(tgs_core_new(&c, NULL), TGS_OK);
    add_worker(c, 1, "w1");
    assert_int_equal(tgs_core_worker_pause(c, 1, true, 1), TGS_OK);
    submit(c, "a");
    assert_int_equal(assigns(c, 0), 0);
    assert_int_equal(state_of(c, "a"), TGS_READY);

    /* Resumed: it takes the waiting task. */
    assert_int_equal(tgs_core_worker_pause(c, 1, false, 2), TGS_OK);
    assert_int_equal(assigns(c, 1), 1);
    assert_int_equal(state_of(c, "a"), TGS_PROCESSING);

    /* Paused while running: the task stays and finishes there; the
     * freed thread takes nothing new. */
    assert_int_equal(tgs_core_worker_pause(c, 1, true, 3), TGS_OK);
    submit(c, "b");
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.data = (const uint8_t *)"1";
    o.data_len = 1;
    o.codec = S("raw");
    assert_int_equal(tgs_core_task_finished(c, 1, S("a"), &o, 4), TGS_OK);
    assert_int_equal(state_of(c, "a"), TGS_MEMORY);
    assert_int_equal(assigns(c, 0), 0);
    assert_int_equal(state_of(c, "b"), TGS_READY);

    /* Another worker takes it meanwhile. */
    add_worker(c, 2, "w2");
    assert_int_equal(assigns(c, 2), 1);
    assert_int_equal(state_of(c, "b"), TGS_PROCESSING);
    assert_int_equal(tgs_core_worker_pause(c, 9, true, 5), TGS_ENOTFOUND);
    tgs_core_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_core__paused_worker_gets_nothing_new),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
