/* SPDX-License-Identifier: Apache-2.0
 *
 * noop_rate.c: how many tasks per second go through taskgrid end to end.
 * It submits N independent tg.noop tasks in one call and gathers them all,
 * a few times, and prints the rate of each round and the median (the
 * client side of the project's throughput target: 100,000 no-op tasks/s on
 * 2 cores). Runs on a temporary local cluster, or on a running scheduler
 * with --address. Exits 0 when every task finished. Depends on the public
 * taskgrid.h only.
 *
 *     bazel run -c opt //sdk/examples:noop_rate -- 100000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "taskgrid/taskgrid.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    tg_cluster *cluster = NULL;
    tg_client *client = NULL;
    tg_future **fs = NULL;
    tg_task_def *defs = NULL;
    const char *address = NULL;
    long n = 100000, rounds = 5, workers = 0, threads = 0;
    double rates[64];
    int status = 1, bad = 0;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--address") == 0 && v)
            address = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && v)
            rounds = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--workers") == 0 && v)
            workers = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0 && v)
            threads = strtol(argv[++i], NULL, 10);
        else if (argv[i][0] != '-')
            n = strtol(argv[i], NULL, 10);
        else
            bad = 1;
    }
    if (bad || n < 1 || rounds < 1 || rounds > 64 || workers < 0 ||
        threads < 0) {
        fprintf(stderr,
                "usage: %s [N] [--rounds R] [--address tcp://HOST:PORT] "
                "[--workers W] [--threads T]\n",
                argv[0]);
        return 2;
    }
    if (address == NULL) {
        tg_cluster_opts co = TG_CLUSTER_OPTS_INIT;

        co.n_workers = (uint32_t)workers;
        co.threads_per_worker = (uint32_t)threads;
        if (tg_cluster_start(&cluster, &co) != TG_OK) {
            fprintf(stderr, "noop_rate: %s\n", tg_error_last());
            return 1;
        }
        address = tg_cluster_address(cluster);
    }
    if (tg_client_connect(&client, address, NULL) != TG_OK) {
        fprintf(stderr, "noop_rate: %s\n", tg_error_last());
        goto cleanup;
    }
    defs = calloc((size_t)n, sizeof(*defs));
    fs = calloc((size_t)n, sizeof(*fs));
    if (defs == NULL || fs == NULL)
        goto cleanup;
    for (long i = 0; i < n; i++) {
        defs[i] = (tg_task_def)TG_TASK_DEF_INIT;
        defs[i].func = "tg.noop"; /* keys are generated: all distinct */
    }
    for (long r = 0; r < rounds; r++) {
        double t0 = now_s(), t1, t2;

        if (tg_client_submit(client, defs, (size_t)n, fs) != TG_OK) {
            fprintf(stderr, "noop_rate: submit: %s\n", tg_error_last());
            goto cleanup;
        }
        t1 = now_s();
        if (tg_client_gather(client, fs, (size_t)n, 300000) != TG_OK) {
            fprintf(stderr, "noop_rate: gather: %s\n", tg_error_last());
            for (long i = 0; i < n; i++)
                tg_future_free(fs[i]);
            goto cleanup;
        }
        t2 = now_s();
        for (long i = 0; i < n; i++) {
            if (tg_future_state(fs[i]) != TG_TASK_MEMORY) {
                fprintf(stderr, "noop_rate: task %s is %s\n",
                        tg_future_key(fs[i]),
                        tg_task_state_name(tg_future_state(fs[i])));
                for (long j = 0; j < n; j++)
                    tg_future_free(fs[j]);
                goto cleanup;
            }
        }
        /* Freeing queues the releases; they go out with the next call. */
        for (long i = 0; i < n; i++)
            tg_future_free(fs[i]);
        rates[r] = (double)n / (t2 - t0);
        printf("round %ld: %ld tasks, submit %.1f ms, gather %.1f ms, "
               "%.0f tasks/s\n",
               r + 1, n, (t1 - t0) * 1e3, (t2 - t1) * 1e3, rates[r]);
    }
    qsort(rates, (size_t)rounds, sizeof(rates[0]), cmp_double);
    printf("median: %.0f tasks/s over %ld rounds of %ld tasks\n",
           rates[rounds / 2], rounds, n);
    status = 0;

cleanup:
    tg_client_free(client);
    tg_cluster_free(cluster);
    free(defs);
    free(fs);
    return status;
}
