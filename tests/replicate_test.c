/* SPDX-License-Identifier: Apache-2.0
 *
 * replicate_test.c: tg_client_replicate against real taskgrid-scheduler
 * and taskgrid-worker processes on loopback. A 2 MB result scattered
 * onto one worker is copied to a second (n=2), then to a named third;
 * asking again copies nothing; once its first holder is SIGKILLed a
 * dependent on another worker still gets every byte. An inline result is
 * left in the scheduler (no error); an unknown key gives TG_ENOTFOUND and
 * a task still running TG_ESTATE, each naming the key. Every wait is
 * bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

#define DATA_BYTES (2u * 1000u * 1000u)
#define WAIT_MS 30000

/* A tg.sum over `dep` (plus 10) pinned to worker `w`. */
static tg_future *sum_on(tg_client *c, const char *key, const char **dep,
                         const char **w)
{
    tg_task_def d = TG_TASK_DEF_INIT;
    tg_future *f;

    d.key = key;
    d.func = "tg.sum";
    d.input = "10";
    d.input_len = 2;
    d.codec = "json";
    d.deps = dep;
    d.ndeps = 1;
    d.workers = w;
    d.nworkers = 1;
    assert_int_equal(tg_client_submit(c, &d, 1, &f), TG_OK);
    return f;
}

static void test_replicate__copies_survive_the_first_holder(void **s)
{
    const char *extra[] = {"--launcher", "none", NULL};
    const char *w0[] = {"w0"}, *w1[] = {"w1"}, *w2[] = {"w2"};
    char addr[256];
    char *json = th_padded_json(DATA_BYTES);
    tg_replication *r;
    tg_future *data, *sum;
    const char *dep;
    th_proc sched, p0, p1, p2;
    tg_client *c;

    (void)s;
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    p0 = th_start_worker(addr, "w0", "1", NULL);
    p1 = th_start_worker(addr, "w1", "1", NULL);
    p2 = th_start_worker(addr, "w2", "1", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 3, 10000);
    assert_int_equal(
        tg_client_scatter(c, json, DATA_BYTES, "json", w0, 1, &data), TG_OK);
    assert_int_equal(tg_future_wait(data, WAIT_MS), TG_OK);

    /* n=2, only w1 may take it: one copy. */
    if (tg_client_replicate(c, &data, 1, 2, w1, 1, WAIT_MS, &r) != TG_OK)
        fail_msg("replicate: %s", tg_error_last());
    assert_int_equal(tg_replication_count(r), 1);
    assert_string_equal(tg_replication_key(r, 0), tg_future_key(data));
    assert_int_equal(tg_replication_holders(r, 0), 2);
    assert_int_equal(tg_replication_copied(r, 0), 1);
    assert_false(tg_replication_inline(r, 0));
    assert_null(tg_replication_error(r, 0, NULL));
    tg_replication_free(r);

    /* Enough holders already: nothing moves. */
    assert_int_equal(tg_client_replicate(c, &data, 1, 2, NULL, 0, WAIT_MS, &r),
                     TG_OK);
    assert_int_equal(tg_replication_holders(r, 0), 2);
    assert_int_equal(tg_replication_copied(r, 0), 0);
    tg_replication_free(r);

    /* n=0: every worker. */
    assert_int_equal(tg_client_replicate(c, &data, 1, 0, NULL, 0, WAIT_MS, &r),
                     TG_OK);
    assert_int_equal(tg_replication_holders(r, 0), 3);
    assert_int_equal(tg_replication_copied(r, 0), 1);
    tg_replication_free(r);

    /* The first holder dies; copies on w1 and w2 serve a dependent. */
    th_stop(&p0, SIGKILL);
    th_wait_workers(c, 2, 10000);
    dep = tg_future_key(data);
    sum = sum_on(c, "replicate-sum-w2", &dep, w2);
    assert_int_equal(tg_client_gather(c, &sum, 1, WAIT_MS), TG_OK);
    assert_int_equal((long)th_number(sum), 16);
    tg_future_free(sum);
    assert_int_equal(tg_future_state(data), TG_TASK_MEMORY);
    tg_future_free(data);
    tg_client_free(c);
    free(json);
    assert_true(WIFEXITED(th_stop(&p1, SIGTERM)));
    assert_true(WIFEXITED(th_stop(&p2, SIGTERM)));
    th_stop(&sched, SIGTERM);
}

static void test_replicate__inline_unknown_and_unfinished(void **s)
{
    const char *extra[] = {"--launcher", "none", NULL};
    char addr[256], key[48], in[16], key2[48], in2[16];
    const char *type, *msg;
    tg_task_def inc, inc2, slow = TG_TASK_DEF_INIT;
    tg_future *f, *gone, *running;
    tg_replication *r;
    th_proc sched, p0;
    tg_client *c;

    (void)s;
    sched = th_start_scheduler("tcp://127.0.0.1:0", extra, addr, sizeof(addr));
    p0 = th_start_worker(addr, "w0", "2", NULL);
    c = th_connect(addr);
    th_wait_workers(c, 1, 10000);

    /* A small result lives in the scheduler: nothing to copy. */
    inc = th_inc_task("replicate", 1, key, in);
    assert_int_equal(tg_client_submit(c, &inc, 1, &f), TG_OK);
    assert_int_equal(tg_future_wait(f, WAIT_MS), TG_OK);
    assert_int_equal(tg_client_replicate(c, &f, 1, 2, NULL, 0, WAIT_MS, &r),
                     TG_OK);
    assert_true(tg_replication_inline(r, 0));
    assert_int_equal(tg_replication_holders(r, 0), 0);
    tg_replication_free(r);

    /* Released: the scheduler no longer knows the key. */
    inc2 = th_inc_task("replicate", 2, key2, in2);
    assert_int_equal(tg_client_submit(c, &inc2, 1, &gone), TG_OK);
    assert_int_equal(tg_future_wait(gone, WAIT_MS), TG_OK);
    tg_future_free(f);
    {
        const char *k = tg_future_key(gone);
        assert_int_equal(tg_client_release(c, &k, 1), TG_OK);
    }
    assert_int_equal(tg_client_replicate(c, &gone, 1, 2, NULL, 0, WAIT_MS, &r),
                     TG_ENOTFOUND);
    assert_non_null(strstr(tg_error_last(), key2));
    msg = tg_replication_error(r, 0, &type);
    assert_string_equal(type, "tg.UnknownKey");
    assert_non_null(strstr(msg, "not known to the scheduler"));
    tg_replication_free(r);
    tg_future_free(gone);

    /* Still running: the caller waits for it first. */
    slow.key = "replicate-sleep";
    slow.func = "tg.sleep";
    slow.input = "2";
    slow.input_len = 1;
    slow.codec = "json";
    assert_int_equal(tg_client_submit(c, &slow, 1, &running), TG_OK);
    assert_int_equal(
        tg_client_replicate(c, &running, 1, 2, NULL, 0, WAIT_MS, NULL),
        TG_ESTATE);
    assert_non_null(strstr(tg_error_last(), "tg.NotFinished"));
    assert_non_null(strstr(tg_error_last(), "replicate-sleep"));
    tg_future_free(running);
    tg_client_free(c);
    assert_true(WIFEXITED(th_stop(&p0, SIGTERM)));
    th_stop(&sched, SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicate__copies_survive_the_first_holder),
        cmocka_unit_test(test_replicate__inline_unknown_and_unfinished),
    };

    signal(SIGPIPE, SIG_IGN);
    th_find_bins();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
