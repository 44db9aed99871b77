/* SPDX-License-Identifier: Apache-2.0
 *
 * count_to.c: the seeds' `count_to(10)` flow with libtaskgrid. Ten
 * "example.shout" tasks (a worker plug-in, worker/examples/shout_plugin.c:
 * sleep 0.5 s, print "#n", return n) are submitted at once and run in
 * parallel on a temporary local cluster whose workers load libshout.so, so
 * the "#n" lines come out of order and the whole run takes about
 * 0.5 s x ceil(10 / threads) instead of 5 s. With `--address` it uses a
 * running scheduler whose workers already provide example.shout. Exits 0
 * only if every task returned its number and the timing shows the tasks
 * ran in parallel. Depends on the public taskgrid.h only.
 *
 *     bazel run //sdk/examples:count_to
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "taskgrid/taskgrid.h"

#define SHOUT_SECONDS 0.5
#define PLUGIN "libshout.so"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [N] [--address tcp://HOST:PORT] [--workers W] "
            "[--threads T] [--preload PATH]\n"
            "  N          how many to count to (default 10)\n"
            "  --address  use a running scheduler whose workers provide "
            "example.shout\n"
            "  --workers  local cluster: worker processes (default: cores)\n"
            "  --threads  local cluster: threads per worker (default 1)\n"
            "  --preload  local cluster: path of " PLUGIN
            " (default: found in the Bazel runfiles or bazel-bin)\n",
            prog);
}

/* Where Bazel puts //worker/examples:libshout.so for this program. */
static int find_plugin(char *out, size_t len)
{
    const char *rel = "worker/examples/" PLUGIN;
    char exe[PATH_MAX], cwd[PATH_MAX], path[PATH_MAX + 64];
    const char *env;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n > 0) {
        exe[n] = '\0';
        snprintf(path, sizeof(path), "%s.runfiles/taskgrid/%s", exe, rel);
        if (access(path, R_OK) == 0)
            goto found;
    }
    if ((env = getenv("RUNFILES_DIR")) != NULL ||
        (env = getenv("TEST_SRCDIR")) != NULL) {
        snprintf(path, sizeof(path), "%s/taskgrid/%s", env, rel);
        if (access(path, R_OK) == 0)
            goto found;
    }
    if ((env = getenv("BUILD_WORKSPACE_DIRECTORY")) != NULL) {
        snprintf(path, sizeof(path), "%s/bazel-bin/%s", env, rel);
        if (access(path, R_OK) == 0)
            goto found;
    }
    if (getcwd(cwd, sizeof(cwd)) != NULL) {
        for (;;) {
            char *slash;

            snprintf(path, sizeof(path), "%s/bazel-bin/%s", cwd, rel);
            if (access(path, R_OK) == 0)
                goto found;
            slash = strrchr(cwd, '/');
            if (slash == NULL || slash == cwd)
                break;
            *slash = '\0';
        }
    }
    return -1;
found:
    /* Workers may run in another directory: pass an absolute path. */
    if (len < PATH_MAX || realpath(path, out) == NULL)
        return -1;
    return 0;
}

/* shout(i) must have returned i. */
static int check_results(tg_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const void *data;
        size_t len;

        if (tg_future_result(fs[i], &data, &len, NULL) != TG_OK) {
            const char *type = "", *msg = "";

            tg_future_error(fs[i], &type, &msg, NULL);
            fprintf(stderr, "count_to: shout(%zu): %s %s\n", i, type, msg);
            return -1;
        }
        if (strtol((const char *)data, NULL, 10) != (long)i) {
            fprintf(stderr, "count_to: shout(%zu) returned %s\n", i,
                    (const char *)data);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    tg_cluster *cluster = NULL;
    tg_client *client = NULL;
    tg_future **fs = NULL;
    tg_task_def *defs = NULL;
    char(*inputs)[24] = NULL, plugin[PATH_MAX];
    const char *address = NULL, *preload = NULL;
    long count = 10, workers = 0, threads = 0;
    uint32_t nthreads = 0;
    size_t n = 0;
    double t0, elapsed, ideal, limit;
    int status = 1, bad = 0;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--address") == 0 && v)
            address = argv[++i];
        else if (strcmp(argv[i], "--workers") == 0 && v)
            workers = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0 && v)
            threads = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--preload") == 0 && v)
            preload = argv[++i];
        else if (argv[i][0] != '-')
            count = strtol(argv[i], NULL, 10);
        else
            bad = 1;
    }
    if (bad || count < 1 || count > 10000 || workers < 0 || threads < 0) {
        usage(argv[0]);
        return 2;
    }

    if (address == NULL) {
        tg_cluster_opts co = TG_CLUSTER_OPTS_INIT;

        if (preload == NULL) {
            if (find_plugin(plugin, sizeof(plugin)) != 0) {
                fprintf(stderr, "count_to: " PLUGIN " not found; build it with "
                                "`bazel build //worker/examples:" PLUGIN
                                "` or pass --preload PATH\n");
                return 1;
            }
            preload = plugin;
        }
        co.n_workers = (uint32_t)workers;
        co.threads_per_worker = (uint32_t)threads;
        co.preload = preload; /* every worker provides example.shout */
        if (tg_cluster_start(&cluster, &co) != TG_OK) {
            fprintf(stderr, "count_to: cannot start a local cluster: %s\n",
                    tg_error_last());
            return 1;
        }
        address = tg_cluster_address(cluster);
        nthreads = tg_cluster_nthreads(cluster);
    }
    if (tg_client_connect(&client, address, NULL) != TG_OK) {
        fprintf(stderr, "count_to: %s\n", tg_error_last());
        goto cleanup;
    }
    if (nthreads == 0) {
        tg_status_report *r = NULL;

        if (tg_client_status(client, &r) != TG_OK) {
            fprintf(stderr, "count_to: %s\n", tg_error_last());
            goto cleanup;
        }
        nthreads = tg_status_report_nthreads(r);
        tg_status_report_free(r);
        if (nthreads == 0) {
            fprintf(stderr, "count_to: the scheduler at %s has no worker\n",
                    address);
            goto cleanup;
        }
    }

    /* for number in range(count): shout.submit(number) */
    defs = calloc((size_t)count, sizeof(*defs));
    fs = calloc((size_t)count, sizeof(*fs));
    inputs = calloc((size_t)count, sizeof(*inputs));
    if (!defs || !fs || !inputs) {
        fprintf(stderr, "count_to: out of memory\n");
        goto cleanup;
    }
    for (long i = 0; i < count; i++) {
        snprintf(inputs[i], sizeof(inputs[i]), "[%ld]", i);
        defs[i] = (tg_task_def)TG_TASK_DEF_INIT;
        defs[i].func = "example.shout";
        defs[i].input = inputs[i];
        defs[i].input_len = strlen(inputs[i]);
        defs[i].codec = "json";
    }
    fflush(stdout);
    t0 = now_s();
    if (tg_client_submit(client, defs, (size_t)count, fs) != TG_OK) {
        fprintf(stderr, "count_to: submit: %s\n", tg_error_last());
        goto cleanup;
    }
    n = (size_t)count;
    if (tg_client_gather(client, fs, n, 120000) != TG_OK) {
        fprintf(stderr, "count_to: gather: %s\n", tg_error_last());
        goto cleanup;
    }
    elapsed = now_s() - t0;
    if (check_results(fs, n) != 0)
        goto cleanup;

    /* What perfect parallelism on `nthreads` slots would take, and a
     * bound that still rules out running one task at a time. */
    ideal = SHOUT_SECONDS * ceil((double)count / nthreads);
    limit = ideal + fmax(1.0, 0.25 * ideal);
    printf("count_to(%ld): %ld tasks of %.1f s in %.2f s on %u thread%s "
           "(one at a time: %.1f s; ideal: %.1f s)\n",
           count, count, SHOUT_SECONDS, elapsed, nthreads,
           nthreads == 1 ? "" : "s", SHOUT_SECONDS * count, ideal);
    if (elapsed < ideal * 0.9)
        fprintf(stderr, "count_to: faster than possible; did the tasks "
                        "sleep?\n");
    else if (elapsed > limit)
        fprintf(stderr, "count_to: slower than %.2f s: not parallel enough\n",
                limit);
    else
        status = 0;

cleanup:
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
    tg_client_free(client);
    tg_cluster_free(cluster);
    free(defs);
    free(fs);
    free(inputs);
    return status;
}
