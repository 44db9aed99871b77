/* SPDX-License-Identifier: Apache-2.0
 *
 * diamond.c: the seeds' "diamond" flow with libtaskgrid. It maps tg.inc and
 * tg.dec over range(M), adds the pairs with tg.add, and reduces the M sums
 * with one tg.sum: 3M+1 tasks submitted as one graph, gathered as they
 * finish. By default it runs on a temporary local cluster (the scheduler
 * and worker binaries are found in the Bazel runfiles); give
 * `--address tcp://host:port` to use a running scheduler instead. Exits 0
 * only when the answer is right (sum over i of (i+1)+(i-1) = M(M-1)), so it
 * doubles as an end-to-end test. Depends on the public taskgrid.h only.
 *
 *     bazel run //sdk/examples:diamond -- 100
 *     diamond(100) = 9900 in 12.3 ms on a local cluster of 2 workers
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "taskgrid/taskgrid.h"

/* A dependency list is one protocol field of at most 65,535 entries. */
#define MAX_M 65535

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [M] [--address tcp://HOST:PORT] [--workers N] "
            "[--threads T]\n"
            "  M          size of the map (default 100, at most %d)\n"
            "  --address  use a running scheduler instead of a temporary "
            "local cluster\n"
            "  --workers  local cluster: worker processes (default: cores)\n"
            "  --threads  local cluster: threads per worker (default 1)\n",
            prog, MAX_M);
}

typedef struct args {
    long m;
    const char *address;
    long workers, threads;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    a->m = 100;
    a->address = NULL;
    a->workers = a->threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--address") == 0 && v) {
            a->address = v;
            i++;
        } else if (strcmp(argv[i], "--workers") == 0 && v) {
            a->workers = strtol(v, NULL, 10);
            i++;
        } else if (strcmp(argv[i], "--threads") == 0 && v) {
            a->threads = strtol(v, NULL, 10);
            i++;
        } else if (argv[i][0] != '-') {
            a->m = strtol(argv[i], NULL, 10);
        } else {
            return -1;
        }
    }
    if (a->m < 1 || a->m > MAX_M || a->workers < 0 || a->threads < 0)
        return -1;
    return 0;
}

/* Print why a task failed, with the error it carries. */
static void report_failure(const tg_future *f)
{
    const char *type = "", *msg = "", *tb = "";

    if (tg_future_error(f, &type, &msg, &tb) == TG_OK)
        fprintf(stderr, "diamond: task %s %s: %s: %s\n%s", tg_future_key(f),
                tg_task_state_name(tg_future_state(f)), type, msg, tb);
    else
        fprintf(stderr, "diamond: task %s is %s\n", tg_future_key(f),
                tg_task_state_name(tg_future_state(f)));
}

int main(int argc, char **argv)
{
    tg_cluster *cluster = NULL;
    tg_client *client = NULL;
    tg_future **fs = NULL;
    tg_task_def *defs = NULL;
    char(*keys)[64] = NULL, (*inputs)[24] = NULL;
    const char **pair = NULL, **adds = NULL;
    const char *address;
    size_t n = 0;
    double t0, elapsed, got = 0;
    int status = 1, rc;
    args a;

    if (parse_args(argc, argv, &a) != 0) {
        usage(argv[0]);
        return 2;
    }

    /* The cluster: an existing scheduler, or a temporary local one. */
    if (a.address == NULL) {
        tg_cluster_opts co = TG_CLUSTER_OPTS_INIT;

        co.n_workers = (uint32_t)a.workers;
        co.threads_per_worker = (uint32_t)a.threads;
        if ((rc = tg_cluster_start(&cluster, &co)) != TG_OK) {
            fprintf(stderr, "diamond: cannot start a local cluster: %s\n",
                    tg_error_last());
            return 1;
        }
        address = tg_cluster_address(cluster);
    } else {
        address = a.address;
    }
    if ((rc = tg_client_connect(&client, address, NULL)) != TG_OK) {
        fprintf(stderr, "diamond: %s\n", tg_error_last());
        goto cleanup;
    }

    /* The graph: inc_i, dec_i, add_i = inc_i + dec_i, total = sum(add). */
    n = 3 * (size_t)a.m + 1;
    defs = calloc(n, sizeof(*defs));
    fs = calloc(n, sizeof(*fs));
    keys = calloc(n, sizeof(*keys));
    inputs = calloc((size_t)a.m, sizeof(*inputs));
    pair = calloc(2 * (size_t)a.m, sizeof(*pair));
    adds = calloc((size_t)a.m, sizeof(*adds));
    if (!defs || !fs || !keys || !inputs || !pair || !adds) {
        fprintf(stderr, "diamond: out of memory\n");
        goto cleanup;
    }
    for (long i = 0; i < a.m; i++) {
        tg_task_def *inc = &defs[i], *dec = &defs[a.m + i],
                    *add = &defs[2 * a.m + i];

        /* Keys are chosen here (unique per run) because add_i must name
         * inc_i and dec_i before anything is submitted. */
        tg_key_generate(keys[i], sizeof(keys[i]), "inc");
        tg_key_generate(keys[a.m + i], sizeof(keys[0]), "dec");
        tg_key_generate(keys[2 * a.m + i], sizeof(keys[0]), "add");
        snprintf(inputs[i], sizeof(inputs[i]), "[%ld]", i);

        *inc = (tg_task_def)TG_TASK_DEF_INIT;
        inc->key = keys[i];
        inc->func = "tg.inc";
        inc->input = inputs[i];
        inc->input_len = strlen(inputs[i]);
        inc->codec = "json";

        *dec = *inc;
        dec->key = keys[a.m + i];
        dec->func = "tg.dec";

        pair[2 * i] = keys[i];
        pair[2 * i + 1] = keys[a.m + i];
        *add = (tg_task_def)TG_TASK_DEF_INIT;
        add->key = keys[2 * a.m + i];
        add->func = "tg.add";
        add->codec = "json";
        add->deps = &pair[2 * i];
        add->ndeps = 2;
        adds[i] = keys[2 * a.m + i];
    }
    defs[n - 1] = (tg_task_def)TG_TASK_DEF_INIT;
    defs[n - 1].func = "tg.sum";
    defs[n - 1].codec = "json";
    defs[n - 1].deps = adds;
    defs[n - 1].ndeps = (size_t)a.m;

    /* Submit the whole graph at once, then gather every task. */
    t0 = now_s();
    if ((rc = tg_client_submit(client, defs, n, fs)) != TG_OK) {
        fprintf(stderr, "diamond: submit: %s\n", tg_error_last());
        n = 0; /* no futures to free */
        goto cleanup;
    }
    rc = tg_client_gather(client, fs, n, 60000);
    elapsed = now_s() - t0;
    if (rc != TG_OK) {
        fprintf(stderr, "diamond: gather: %s\n", tg_error_last());
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        if (tg_future_state(fs[i]) != TG_TASK_MEMORY) {
            report_failure(fs[i]);
            goto cleanup;
        }
    {
        const void *data;
        size_t len;

        /* Results are followed by a NUL byte, so JSON text parses as is. */
        if (tg_future_result(fs[n - 1], &data, &len, NULL) != TG_OK) {
            fprintf(stderr, "diamond: %s\n", tg_error_last());
            goto cleanup;
        }
        got = strtod((const char *)data, NULL);
    }
    if (cluster)
        printf("diamond(%ld) = %.15g in %.1f ms on a local cluster of %u "
               "worker%s\n",
               a.m, got, elapsed * 1e3, tg_cluster_nworkers(cluster),
               tg_cluster_nworkers(cluster) == 1 ? "" : "s");
    else
        printf("diamond(%ld) = %.15g in %.1f ms on the scheduler at %s\n", a.m,
               got, elapsed * 1e3, address);
    if (got == (double)a.m * (double)(a.m - 1)) {
        status = 0;
    } else {
        fprintf(stderr, "diamond: wrong answer, expected %ld\n",
                a.m * (a.m - 1));
    }

cleanup:
    for (size_t i = 0; fs != NULL && i < n; i++)
        tg_future_free(fs[i]);
    tg_client_free(client);
    tg_cluster_free(cluster);
    free(defs);
    free(fs);
    free(keys);
    free(inputs);
    free(pair);
    free(adds);
    return status;
}
