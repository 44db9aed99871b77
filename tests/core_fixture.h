/* SPDX-License-Identifier: Apache-2.0
 *
 * core_fixture.h: helpers shared by the unit tests of the pure scheduling
 * core (core_test.c, dataplane_core_test.c, scale_test.c): borrowed strings
 * from C strings, a new core, the core's actions popped with their task keys
 * copied out (task pointers are borrowed only until the next event), and
 * string assertions. Uses cmocka assertions, so call it from inside a
 * test. Depends on //scheduler:core and cmocka.
 */
#ifndef TG_TESTS_CORE_FIXTURE_H
#define TG_TESTS_CORE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "scheduler/core.h"

/* Room for the actions of one event in the tests. */
#define CF_MAX_ACTS 64

/* An action with the task key copied out. */
typedef struct cf_act {
    tgs_action_kind kind;
    uint64_t worker;
    uint64_t watcher;
    char key[64]; /* empty when the action names no task */
} cf_act;

/* `z` as a borrowed core string (z stays the caller's). */
tgs_str cf_str(const char *z);

/* A new core with `opts` (NULL: defaults); free it with tgs_core_free. */
tgs_core *cf_core_new(const tgs_core_opts *opts);

/* Pop every queued action into `out` (at most `cap`, else the test
 * fails). @return the number popped. */
size_t cf_pop_all(tgs_core *c, cf_act *out, size_t cap);

/* The number of actions among a[0, n) of `kind` for `key` (and `worker`,
 * unless 0). */
size_t cf_count_acts(const cf_act *a, size_t n, tgs_action_kind kind,
                     uint64_t worker, const char *key);

/* Add worker `wid` named `name` with one thread, providing function "f"
 * (the test fails if the core refuses it). */
void cf_worker_add_f(tgs_core *c, uint64_t wid, const char *name);
/* The same, with a data service if `can_fetch`. */
void cf_worker_add(tgs_core *c, uint64_t wid, const char *name, bool can_fetch);

/* Assert that `s` is the string `z`. */
void cf_assert_str_is(tgs_str s, const char *z);

/* Submit task `key` of function "f" with no dependencies (fails the test
 * if refused). */
void cf_submit_f(tgs_core *c, const char *key);

/* Worker `wid` reports `key` done: a 1-byte result inline, or with `held`
 * a result of 100,000 bytes held on it (asserts TGS_OK). */
void cf_finish(tgs_core *c, uint64_t wid, const char *key, bool held);

#endif
