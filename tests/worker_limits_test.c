/* SPDX-License-Identifier: Apache-2.0
 *
 * worker_limits_test.c: the C worker never makes a WorkerMessage larger
 * than the protocol allows. A result over the limit becomes a
 * "tg.ResultTooLarge" error naming its size and the limit
 * (tgw_task_limit_result); a batch of results ends before a result that
 * would take it past the byte cap, so results that each fit a message
 * never add up to one that does not (tgw_outbox_take: before, 3.9 MiB of
 * small results and then a 62 MiB one made a 66 MiB message, which broke
 * the stream). Depends on worker/task.c, worker/outbox.c, util.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/outbox.h"
#include "worker/task.h"

#define MIB (1024u * 1024u)

static int failures;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static tg_task_ctx *task_with_result(const char *key, size_t n)
{
    tgw_task_spec spec;
    tg_task_ctx *t;
    uint8_t *data = malloc(n ? n : 1);

    memset(&spec, 0, sizeof(spec));
    spec.key.ptr = (const uint8_t *)key;
    spec.key.len = strlen(key);
    spec.func.ptr = (const uint8_t *)"test.big";
    spec.func.len = 8;
    spec.attempt = 1;
    if (data == NULL || tgw_task_new(&t, &spec, NULL) != TG_OK) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memset(data, 'x', n);
    if (tg_task_set_result(t, data, n, "raw") != TG_OK)
        exit(2);
    free(data);
    return t;
}

static void test_limit_result(void)
{
    tg_task_ctx *ok = task_with_result("ok", 10 * MIB);
    tg_task_ctx *big = task_with_result("big", 80 * MIB);

    CHECK(!tgw_task_limit_result(ok, TGW_RESULT_MAX_BYTES));
    CHECK(!ok->erred && ok->data_len == 10 * MIB);
    CHECK(tgw_task_limit_result(big, TGW_RESULT_MAX_BYTES));
    CHECK(big->erred && big->data == NULL && big->data_len == 0);
    CHECK(strcmp(big->err_type, "tg.ResultTooLarge") == 0);
    CHECK(strstr(big->err_message, "83886080 bytes") != NULL);
    CHECK(strstr(big->err_message, "67043328-byte limit") != NULL);
    CHECK(tgw_task_result_size(big) < 4096);
    tgw_task_free(ok);
    tgw_task_free(big);
}

static void test_batches_stay_under_the_cap(void)
{
    tgw_outbox *ob;
    tgw_batch b;
    /* Small results just under the 4 MiB batch cap, then large ones. */
    size_t sizes[] = {1300 * 1024, 1300 * 1024, 1300 * 1024, 62 * MIB,
                      30 * MIB,    30 * MIB,    100};
    size_t n = sizeof(sizes) / sizeof(sizes[0]), seen = 0;
    const size_t cap = 4 * MIB;

    CHECK(tgw_outbox_new(&ob) == TG_OK);
    for (size_t i = 0; i < n; i++) {
        char key[16];

        snprintf(key, sizeof(key), "k%zu", i);
        tgw_outbox_push(ob, task_with_result(key, sizes[i]));
    }
    while (seen < n) {
        size_t bytes = 0;

        tgw_outbox_take(ob, &b, 4096, cap, 0);
        CHECK(b.nresults > 0);
        if (b.nresults == 0)
            break;
        for (const tg_task_ctx *t = b.results; t != NULL; t = t->next)
            bytes += tgw_task_result_size(t);
        /* At most the cap, unless it is one result alone. */
        CHECK(b.nresults == 1 || bytes <= cap);
        CHECK(bytes <= TGW_RESULT_MAX_BYTES);
        seen += b.nresults;
        tgw_outbox_batch_free(&b);
        tgw_outbox_done(ob);
    }
    CHECK(seen == n);
    tgw_outbox_free(ob);
}

int main(void)
{
    test_limit_result();
    test_batches_stay_under_the_cap();
    if (failures) {
        fprintf(stderr, "worker_limits_test: %d failures\n", failures);
        return 1;
    }
    printf("worker_limits_test: ok\n");
    return 0;
}
