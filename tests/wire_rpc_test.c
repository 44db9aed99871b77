/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_rpc_test.c: a real taskgrid-scheduler (plaintext, loopback) given
 * messages whose string/bytes fields arrive with the wrong wire type:
 * a unary call is answered INVALID_ARGUMENT and the same connection keeps
 * working; a WorkerLink stream is ended with INVALID_ARGUMENT. Before the
 * codec refused them, the scheduler took the task and its key pointed at
 * its own stack. Every wait is bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "taskgrid/taskgrid.h"
#include "transport/client.h"

static void test_wire_rpc__malformed_is_invalid_argument(void **state)
{
    /* SubmitRequest{tasks: [TaskSpec{key: <VARINT 1>}]} */
    static const uint8_t bad_submit[] = {0x0a, 0x02, 0x08, 0x01};
    /* WorkerMessage{registration: Register{name: <FIXED64>}} */
    static const uint8_t bad_reg[] = {0x0a, 0x09, 0x09, 'A', 'A', 'A',
                                      'A',  'A',  'A',  'A', 'A'};
    char addr[256];
    th_proc s =
        th_start_scheduler("tcp://127.0.0.1:0", NULL, addr, sizeof(addr));
    tg__chan *ch = NULL;
    tg__cstream *st = NULL;
    uint8_t *resp = NULL;
    size_t rlen = 0;

    (void)state;
    assert_int_equal(tg__chan_open(&ch, addr, NULL, 0), TG_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tg__chan_unary(ch, "/taskgrid.v1.Scheduler/Submit",
                                        bad_submit, sizeof(bad_submit), &resp,
                                        &rlen, 5000),
                         TG_EINVAL);
        assert_non_null(strstr(tg_error_last(), "wire type"));
        /* The connection is still good. */
        assert_int_equal(tg__chan_unary(ch, "/taskgrid.v1.Scheduler/Status",
                                        (const uint8_t *)"", 0, &resp, &rlen,
                                        5000),
                         TG_OK);
        free(resp);
        resp = NULL;
    }
    assert_int_equal(
        tg__cstream_open(&st, ch, "/taskgrid.v1.WorkerLink/Connect", 0), TG_OK);
    assert_int_equal(tg__cstream_send(st, bad_reg, sizeof(bad_reg), 5000),
                     TG_OK);
    assert_int_equal(tg__cstream_recv(st, &resp, &rlen, 5000), TG_EINVAL);
    assert_null(resp);
    tg__cstream_free(st);
    tg__chan_close(ch);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_rpc__malformed_is_invalid_argument),
    };

    signal(SIGPIPE, SIG_IGN);
    th_find_bins();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
