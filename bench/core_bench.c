/* SPDX-License-Identifier: Apache-2.0
 *
 * core_bench.c: throughput and memory of the pure scheduling core alone,
 * without transport. Submits N tasks in one batch, then runs them all
 * through one fake 8-thread worker that answers every assignment at once.
 * Shapes: independent tasks, a chain, a fan-out of N dependents on one
 * root; and independent tasks with random priorities (`priority`), each
 * asking for slot=1 on a worker with slot=8 (`resources`), or restricted
 * to the worker by name (`restricted`). Prints submit and run times, the
 * cost per task, RSS growth per pending task and peak RSS (from
 * /proc/self/status, so Linux only). Depends on //scheduler:core.
 *
 *   bazel run //bench:core_bench -- [SHAPE] [N]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler/core.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in kB (VmRSS, VmHWM), or -1. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    const char *shape = argc > 1 ? argv[1] : "independent";
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
    int chain = strcmp(shape, "chain") == 0;
    int fanout = strcmp(shape, "fanout") == 0;
    int prio = strcmp(shape, "priority") == 0;
    int resources = strcmp(shape, "resources") == 0;
    int restricted = strcmp(shape, "restricted") == 0;
    if (n < 2 || (!chain && !fanout && !prio && !resources && !restricted &&
                  strcmp(shape, "independent") != 0)) {
        fprintf(stderr,
                "usage: %s [independent|chain|fanout|priority|resources|"
                "restricted] [N>=2]\n",
                argv[0]);
        return 2;
    }

    /* Inputs are built before the first measure: only the core counts. */
    char *keys = malloc(n * 16);
    tgs_task_spec *specs = calloc(n, sizeof *specs);
    tgs_str *deps = calloc(n, sizeof *deps);
    tgs_str *run = malloc(n * sizeof *run);
    if (!keys || !specs || !deps || !run)
        return 1;
    static const tgs_resource slot1[] = {{{"slot", 4}, 1}};
    static const tgs_resource slot8[] = {{{"slot", 4}, 8}};
    static const tgs_str wname[] = {{"w1", 2}};
    uint64_t rng = 0x9e3779b97f4a7c15ull; /* fixed seed: same run each time */
    for (size_t i = 0; i < n; i++) {
        char *k = keys + i * 16;
        int len = snprintf(k, 16, "t%zu", i);
        specs[i].key = (tgs_str){k, (size_t)len};
        specs[i].func = (tgs_str){"tg.noop", 7};
        specs[i].codec = (tgs_str){"raw", 3};
        if (prio) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            specs[i].priority = (int32_t)((rng >> 33) % 2001) - 1000;
        }
        if (resources) {
            specs[i].resources = slot1;
            specs[i].nresources = 1;
        }
        if (restricted) {
            specs[i].workers = wname;
            specs[i].nworkers = 1;
        }
        if (i > 0 && (chain || fanout)) {
            deps[i] = specs[chain ? i - 1 : 0].key;
            specs[i].deps = &deps[i];
            specs[i].ndeps = 1;
        }
    }
    double t0 = now_s();
    tgs_core *c;
    if (tgs_core_new(&c, NULL) != TGS_OK)
        return 1;
    long rss0 = status_kb("VmRSS");

    char err[256];
    tgs_submit_result res;
    double t1 = now_s();
    int rc = tgs_core_submit(c, specs, n, 0, &res, err, sizeof err);
    double t2 = now_s();
    long rss1 = status_kb("VmRSS");
    if (rc != TGS_OK) {
        fprintf(stderr, "submit: %d %s\n", rc, err);
        return 1;
    }

    const tgs_str funcs[] = {{"tg.noop", 7}};
    tgs_worker_spec w = {
        .name = {"w1", 2}, .nthreads = 8, .funcs = funcs, .nfuncs = 1};
    if (resources) {
        w.resources = slot8;
        w.nresources = 1;
    }
    int64_t ms = (int64_t)((now_s() - t0) * 1000);
    tgs_core_worker_add(c, 1, &w, ms);
    size_t nrun = 0, head = 0, done = 0;
    tgs_action a;
    const tgs_outcome ok = {.ok = true,
                            .data = (const uint8_t *)"x",
                            .data_len = 1,
                            .codec = {"raw", 3}};
    for (;;) {
        while (tgs_core_next_action(c, &a))
            if (a.kind == TGS_ACT_ASSIGN)
                run[nrun++] = tgs_task_key(a.task);
        if (head == nrun)
            break;
        ms = (int64_t)((now_s() - t0) * 1000);
        if (tgs_core_task_finished(c, 1, run[head++], &ok, ms) != TGS_OK)
            return 1;
        done++;
    }
    double t3 = now_s();
    uint64_t counts[TGS_NSTATES];
    tgs_core_counts(c, counts);
    long hwm = status_kb("VmHWM");

    for (size_t i = 0; i < n; i++)
        deps[i] = specs[i].key;
    uint32_t forgotten = 0;
    tgs_core_release(c, deps, n, &forgotten);
    double t4 = now_s();
    tgs_core_free(c);

    printf("shape            %s\n", shape);
    printf("tasks            %zu (accepted %u, ran %zu, in memory %llu)\n", n,
           res.accepted, done, (unsigned long long)counts[TGS_MEMORY]);
    printf("submit           %.3f s (%.0f tasks/s, %.0f ns/task)\n", t2 - t1,
           (double)n / (t2 - t1), (t2 - t1) * 1e9 / (double)n);
    printf("run              %.3f s (%.0f tasks/s, %.0f ns/task: assign + "
           "finish)\n",
           t3 - t2, (double)done / (t3 - t2),
           (t3 - t2) * 1e9 / (double)(done ? done : 1));
    printf("release          %.3f s (%u forgotten)\n", t4 - t3, forgotten);
    printf("rss per pending  %.0f bytes/task\n",
           (double)(rss1 - rss0) * 1024.0 / (double)n);
    printf("peak rss         %.1f MB (of which %.1f MB before submit: "
           "this driver's inputs)\n",
           (double)hwm / 1024.0, (double)rss0 / 1024.0);
    free(run);
    free(deps);
    free(specs);
    free(keys);
    return 0;
}
