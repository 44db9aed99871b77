/* SPDX-License-Identifier: Apache-2.0
 *
 * tg_bench.c: taskgrid's side of the benchmarks (bench/README.md). Runs one
 * case against a temporary local cluster (2 workers x 1 thread by default)
 * or an existing scheduler, and prints one line per run:
 *   case=noop n=100000 run=1 seconds=0.812 rate=123152.7
 * Cases: noop (N independent tg.noop tasks, submit all then gather all),
 * roundtrip (N single tg.noop tasks in sequence: p50/p99 in microseconds),
 * diamond (inc/dec/add maps and a sum over range(M)), startup (local
 * cluster start to ready, and tear-down), pending (N tasks waiting on one
 * unfinished root; prints the scheduler's RSS growth per task when
 * --scheduler-pid is given), mapreduce (tg_client_map of tg.sum over N
 * partitions of 100 numbers, then tg_client_tree_reduce of fan-in 8),
 * nested (N parents, each submitting --children tg.inc tasks through the
 * worker-side client and returning their sum: nest.fan of the plug-in
 * given with --plugin, libtgnest.so of tests/nest_plugin.c, as Dask's nested
 * case does with get_client/secede/rejoin). Mutual TLS:
 * --tls-ca/--tls-cert/--tls-key with a tls:// --address, or --secure 1 for a
 * secure local cluster. --watch 1: a thread follows every task all along
 * (a Watch with key_prefixes [""], task events and function counts),
 * draining it, to measure what a watcher costs; it prints what it got;
 * --watch 2: the same thread follows counts only (totals and tasks per
 * function, no task events), as a progress display of the cluster does.
 * With --scheduler-pid, noop also prints the scheduler's CPU seconds per
 * run (sched_cpu=). Uses only the public libtaskgrid API.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "taskgrid/taskgrid.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int die(const char *what)
{
    fprintf(stderr, "tg_bench: %s: %s\n", what, tg_error_last());
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Unique key prefix per run so repeated runs are new tasks. */
static unsigned run_seq;

/* The scheduler's user + system CPU seconds (/proc/PID/stat), -1 if
 * unknown. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (pid <= 0 || (f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / 100.0; /* USER_HZ */
}

static long bench_sched_pid;

/* --watch: a watcher of every task, drained on its own thread. */
typedef struct bench_watch {
    tg_watch *w;
    pthread_t thread;
    atomic_bool stop;
    uint64_t updates, events, dropped;
} bench_watch;

static void *watch_drain(void *arg)
{
    bench_watch *bw = arg;

    while (!atomic_load(&bw->stop)) {
        tg_watch_update *u;
        int rc = tg_watch_next(bw->w, 100, &u);
        if (rc == TG_ETIMEDOUT)
            continue;
        if (rc != TG_OK) {
            fprintf(stderr, "tg_bench: watch: %s\n", tg_error_last());
            break;
        }
        bw->updates++;
        bw->events += tg_watch_update_ntask_events(u);
        bw->dropped += tg_watch_update_dropped(u);
        tg_watch_update_free(u);
    }
    return NULL;
}

/* mode 1: every task with its events; 2: counts only (totals and tasks
 * per function, as a progress display of the whole cluster needs). */
static int watch_start(tg_client *c, bench_watch *bw, int mode)
{
    static const char *const all[] = {""};
    tg_watch_opts o = TG_WATCH_OPTS_INIT;

    if (mode == 1) {
        o.key_prefixes = all;
        o.nprefixes = 1;
        o.task_events = true;
    }
    o.functions = true;
    if (tg_client_watch(c, &o, &bw->w) != TG_OK)
        return die("watch");
    atomic_init(&bw->stop, false);
    if (pthread_create(&bw->thread, NULL, watch_drain, bw) != 0) {
        tg_watch_close(bw->w);
        fprintf(stderr, "tg_bench: cannot start the watch thread\n");
        return 1;
    }
    return 0;
}

static void watch_stop(bench_watch *bw)
{
    atomic_store(&bw->stop, true);
    pthread_join(bw->thread, NULL);
    printf("watch: updates=%llu events=%llu dropped=%llu\n",
           (unsigned long long)bw->updates, (unsigned long long)bw->events,
           (unsigned long long)bw->dropped);
    tg_watch_close(bw->w);
}

static int case_noop(tg_client *c, size_t n, int run)
{
    tg_task_def *defs = calloc(n, sizeof(*defs));
    tg_future **fs = calloc(n, sizeof(*fs));
    char(*keys)[32] = calloc(n, sizeof(*keys));
    double t0, t1, cpu0, cpu1;
    int rc;

    if (!defs || !fs || !keys)
        return die("out of memory");
    run_seq++;
    for (size_t i = 0; i < n; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[i], sizeof(keys[i]), "n%u-%zu", run_seq, i);
        d.key = keys[i];
        d.func = "tg.noop";
        defs[i] = d;
    }
    cpu0 = proc_cpu_s(bench_sched_pid);
    t0 = now_s();
    rc = tg_client_submit(c, defs, n, fs);
    if (rc != TG_OK)
        return die("submit");
    rc = tg_client_gather(c, fs, n, 600000);
    t1 = now_s();
    cpu1 = proc_cpu_s(bench_sched_pid);
    if (rc != TG_OK)
        return die("gather");
    for (size_t i = 0; i < n; i++) {
        if (tg_future_state(fs[i]) != TG_TASK_MEMORY) {
            fprintf(stderr, "tg_bench: task %zu not in memory\n", i);
            return 1;
        }
        tg_future_free(fs[i]);
    }
    printf("case=noop n=%zu run=%d seconds=%.6f rate=%.1f", n, run, t1 - t0,
           n / (t1 - t0));
    if (cpu0 >= 0 && cpu1 >= 0)
        printf(" sched_cpu=%.2f", cpu1 - cpu0);
    printf("\n");
    free(defs);
    free(fs);
    free(keys);
    return 0;
}

static int case_roundtrip(tg_client *c, size_t n, int run)
{
    double *lat = calloc(n, sizeof(double));
    double *sub = calloc(n, sizeof(double));
    char key[32];

    run_seq++;
    for (size_t i = 0; i < n; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        tg_future *f = NULL;
        double t0;
        snprintf(key, sizeof(key), "r%u-%zu", run_seq, i);
        d.key = key;
        d.func = "tg.noop";
        t0 = now_s();
        if (tg_client_submit(c, &d, 1, &f) != TG_OK)
            return die("submit");
        sub[i] = (now_s() - t0) * 1e6;
        if (tg_future_wait(f, 30000) != TG_OK)
            return die("wait");
        lat[i] = (now_s() - t0) * 1e6;
        tg_future_free(f);
    }
    qsort(lat, n, sizeof(double), cmp_double);
    qsort(sub, n, sizeof(double), cmp_double);
    /* submit_p50_us: the Submit call alone, the rest is waiting for the
     * result (assignment, run, result, notification). */
    printf("case=roundtrip n=%zu run=%d p50_us=%.1f p99_us=%.1f "
           "submit_p50_us=%.1f\n",
           n, run, lat[n / 2], lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1],
           sub[n / 2]);
    free(lat);
    free(sub);
    return 0;
}

static int case_diamond(tg_client *c, size_t m, int run)
{
    size_t n = 3 * m + 1;
    tg_task_def *defs = calloc(n, sizeof(*defs));
    tg_future **fs = calloc(n, sizeof(*fs));
    char(*keys)[40] = calloc(n, sizeof(*keys));
    char(*in)[24] = calloc(m, sizeof(*in));
    const char **pairs = calloc(2 * m, sizeof(char *));
    const char **adds = calloc(m, sizeof(char *));
    const void *data;
    size_t len;
    const char *codec;
    double t0, t1;

    run_seq++;
    for (size_t i = 0; i < m; i++) {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(in[i], sizeof(in[i]), "%zu", i);
        snprintf(keys[i], 40, "d%u-inc-%zu", run_seq, i);
        snprintf(keys[m + i], 40, "d%u-dec-%zu", run_seq, i);
        snprintf(keys[2 * m + i], 40, "d%u-add-%zu", run_seq, i);
        d.codec = "json";
        d.input = in[i];
        d.input_len = strlen(in[i]);
        d.key = keys[i];
        d.func = "tg.inc";
        defs[i] = d;
        d.key = keys[m + i];
        d.func = "tg.dec";
        defs[m + i] = d;
        pairs[2 * i] = keys[i];
        pairs[2 * i + 1] = keys[m + i];
        d = (tg_task_def)TG_TASK_DEF_INIT;
        d.key = keys[2 * m + i];
        d.func = "tg.add";
        d.codec = "json";
        d.deps = &pairs[2 * i];
        d.ndeps = 2;
        defs[2 * m + i] = d;
        adds[i] = keys[2 * m + i];
    }
    {
        tg_task_def d = TG_TASK_DEF_INIT;
        snprintf(keys[3 * m], 40, "d%u-sum", run_seq);
        d.key = keys[3 * m];
        d.func = "tg.sum";
        d.codec = "json";
        d.deps = adds;
        d.ndeps = m;
        defs[3 * m] = d;
    }
    t0 = now_s();
    if (tg_client_submit(c, defs, n, fs) != TG_OK)
        return die("submit");
    if (tg_future_wait(fs[3 * m], 600000) != TG_OK)
        return die("wait");
    t1 = now_s();
    if (tg_future_result(fs[3 * m], &data, &len, &codec) != TG_OK)
        return die("result");
    printf("case=diamond m=%zu run=%d seconds=%.6f result=%.*s\n", m, run,
           t1 - t0, (int)len, (const char *)data);
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
    free(defs);
    free(fs);
    free(keys);
    free(in);
    free(pairs);
    free(adds);
    return 0;
}

/* Numbers per mapreduce partition. */
#define MR_PART 100

static int case_mapreduce(tg_client *c, size_t n, int run)
{
    tg_partition *parts = calloc(n, sizeof(*parts));
    char *in = malloc(n * MR_PART * 24 + n * 2);
    tg_future **fs = calloc(n, sizeof(*fs)), *root;
    tg_collection_opts o = TG_COLLECTION_OPTS_INIT;
    char prefix[32];
    const void *data;
    size_t len, pos = 0;
    double t0, t1;

    if (parts == NULL || in == NULL || fs == NULL)
        return die("out of memory");
    snprintf(prefix, sizeof(prefix), "mr%u", ++run_seq);
    o.key = prefix;
    for (size_t i = 0; i < n; i++) {
        size_t start = pos;

        in[pos++] = '[';
        for (size_t j = 0; j < MR_PART; j++)
            pos += (size_t)sprintf(in + pos, "%s%zu", j ? "," : "",
                                   i * MR_PART + j);
        in[pos++] = ']';
        parts[i] = (tg_partition)TG_PARTITION_INIT;
        parts[i].input = in + start;
        parts[i].input_len = pos - start;
        parts[i].codec = "json";
    }
    t0 = now_s();
    if (tg_client_map(c, "tg.sum", parts, n, &o, fs) != TG_OK)
        return die("map");
    if (tg_client_tree_reduce(c, "tg.sum", fs, n, 8, &o, &root) != TG_OK)
        return die("tree reduce");
    for (size_t i = 0; i < n; i++)
        tg_future_free(fs[i]);
    if (tg_future_wait(root, 600000) != TG_OK)
        return die("wait");
    t1 = now_s();
    if (tg_future_result(root, &data, &len, NULL) != TG_OK)
        return die("result");
    printf("case=mapreduce n=%zu run=%d seconds=%.6f result=%.*s\n", n, run,
           t1 - t0, (int)len, (const char *)data);
    tg_future_free(root);
    free(parts);
    free(in);
    free(fs);
    return 0;
}

/* N parents of `children` tg.inc children each (nest.fan), all at once. */
static int case_nested(tg_client *c, size_t n, size_t children, int run)
{
    tg_task_def *defs = calloc(n, sizeof(*defs));
    tg_future **fs = calloc(n, sizeof(*fs));
    char in[24];
    long long sum = 0;
    double t0, t1;

    if (defs == NULL || fs == NULL)
        return die("out of memory");
    snprintf(in, sizeof(in), "%zu", children);
    for (size_t i = 0; i < n; i++) {
        defs[i] = (tg_task_def)TG_TASK_DEF_INIT;
        defs[i].func = "nest.fan";
        defs[i].input = in;
        defs[i].input_len = strlen(in);
    }
    t0 = now_s();
    if (tg_client_submit(c, defs, n, fs) != TG_OK)
        return die("submit");
    if (tg_client_gather(c, fs, n, 600000) != TG_OK)
        return die("gather");
    t1 = now_s();
    for (size_t i = 0; i < n; i++) {
        const void *data;
        size_t len;

        if (tg_future_result(fs[i], &data, &len, NULL) != TG_OK)
            return die("nested parent");
        sum += strtoll(data, NULL, 10);
        tg_future_free(fs[i]);
    }
    printf("case=nested parents=%zu children=%zu run=%d seconds=%.6f "
           "result=%lld\n",
           n, children, run, t1 - t0, sum);
    free(defs);
    free(fs);
    return 0;
}

static long rss_kb(long pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* N tasks waiting on one root that no worker can run ("bench.never"). */
static int case_pending(tg_client *c, size_t n, int run, long sched_pid)
{
    size_t chunk = 100000;
    char root[32];
    const char *deps[1] = {root};
    long before, after;
    double t0, t1;
    tg_task_def d = TG_TASK_DEF_INIT;
    tg_future *rootf = NULL;

    run_seq++;
    snprintf(root, sizeof(root), "p%u-root", run_seq);
    d.key = root;
    d.func = "bench.never";
    before = sched_pid > 0 ? rss_kb(sched_pid) : -1;
    t0 = now_s();
    if (tg_client_submit(c, &d, 1, &rootf) != TG_OK)
        return die("submit root");
    for (size_t done = 0; done < n; done += chunk) {
        size_t k = n - done < chunk ? n - done : chunk;
        tg_task_def *defs = calloc(k, sizeof(*defs));
        tg_future **fs = calloc(k, sizeof(*fs));
        char(*keys)[32] = calloc(k, sizeof(*keys));
        for (size_t i = 0; i < k; i++) {
            tg_task_def e = TG_TASK_DEF_INIT;
            snprintf(keys[i], 32, "p%u-%zu", run_seq, done + i);
            e.key = keys[i];
            e.func = "tg.noop";
            e.deps = deps;
            e.ndeps = 1;
            defs[i] = e;
        }
        if (tg_client_submit(c, defs, k, fs) != TG_OK)
            return die("submit");
        for (size_t i = 0; i < k; i++)
            tg_future_free(fs[i]);
        free(defs);
        free(fs);
        free(keys);
    }
    t1 = now_s();
    after = sched_pid > 0 ? rss_kb(sched_pid) : -1;
    if (before >= 0 && after >= 0)
        printf("case=pending n=%zu run=%d seconds=%.6f bytes_per_task=%.1f\n",
               n, run, t1 - t0, (after - before) * 1024.0 / n);
    else
        printf("case=pending n=%zu run=%d seconds=%.6f\n", n, run, t1 - t0);
    /* Cancel the root: every dependent is cancelled and, with no holder
     * left, released. */
    tg_client_cancel(c, deps, 1, NULL);
    tg_future_free(rootf);
    return 0;
}

static int case_startup(uint32_t workers, int run)
{
    tg_cluster *cl = NULL;
    tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
    double t0, t1, t2;

    o.n_workers = workers;
    o.threads_per_worker = 1;
    t0 = now_s();
    if (tg_cluster_start(&cl, &o) != TG_OK)
        return die("cluster start");
    t1 = now_s();
    tg_cluster_free(cl);
    t2 = now_s();
    printf("case=startup workers=%u run=%d start_ms=%.1f stop_ms=%.1f\n",
           workers, run, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    return 0;
}

int main(int argc, char **argv)
{
    const char *which = "noop", *address = NULL;
    size_t n = 10000, children = 100;
    const char *plugin = NULL;
    int repeat = 3, rc = 0;
    uint32_t workers = 2, threads = 1;
    long sched_pid = 0;
    tg_cluster *cl = NULL;
    tg_client *c = NULL;
    tg_client_opts co = TG_CLIENT_OPTS_INIT;
    /* --tls-ca/--tls-cert/--tls-key: mutual TLS to a tls:// --address;
     * --secure 1: a secure local cluster (tg_cluster_opts.secure). */
    tg_security sec = TG_SECURITY_INIT;
    bool secure = false;
    int watch = 0;
    bench_watch bw;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "tg_bench: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--case") == 0)
            which = v;
        else if (strcmp(a, "--n") == 0)
            n = strtoull(v, NULL, 10);
        else if (strcmp(a, "--repeat") == 0)
            repeat = atoi(v);
        else if (strcmp(a, "--address") == 0)
            address = v;
        else if (strcmp(a, "--workers") == 0)
            workers = (uint32_t)atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = (uint32_t)atoi(v);
        else if (strcmp(a, "--scheduler-pid") == 0)
            sched_pid = atol(v);
        else if (strcmp(a, "--tls-ca") == 0)
            sec.ca_file = v;
        else if (strcmp(a, "--tls-cert") == 0)
            sec.cert_file = v;
        else if (strcmp(a, "--tls-key") == 0)
            sec.key_file = v;
        else if (strcmp(a, "--secure") == 0)
            secure = atoi(v) != 0;
        else if (strcmp(a, "--children") == 0)
            children = strtoull(v, NULL, 10);
        else if (strcmp(a, "--plugin") == 0)
            plugin = v;
        else if (strcmp(a, "--watch") == 0)
            watch = atoi(v);
        else {
            fprintf(stderr, "tg_bench: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (n == 0 || repeat <= 0) {
        fprintf(stderr, "tg_bench: --n and --repeat must be positive\n");
        return 2;
    }
    if (watch < 0 || watch > 2) {
        fprintf(stderr, "tg_bench: --watch expects 0, 1 or 2\n");
        return 2;
    }
    if (strcmp(which, "startup") == 0) {
        for (int r = 1; r <= repeat && rc == 0; r++)
            rc = case_startup(workers, r);
        return rc;
    }
    if (address == NULL) {
        tg_cluster_opts o = TG_CLUSTER_OPTS_INIT;
        o.n_workers = workers;
        o.threads_per_worker = threads;
        o.secure = secure;
        o.preload = plugin;
        if (tg_cluster_start(&cl, &o) != TG_OK)
            return die("cluster start");
        address = tg_cluster_address(cl);
        co.security = tg_cluster_security(cl);
    } else if (sec.ca_file != NULL) {
        co.security = &sec;
    }
    co.timeout_ms = 600000;
    if (tg_client_connect(&c, address, &co) != TG_OK) {
        tg_cluster_free(cl);
        return die("connect");
    }
    bench_sched_pid = sched_pid;
    if (watch && (rc = watch_start(c, &bw, watch)) != 0) {
        tg_client_free(c);
        tg_cluster_free(cl);
        return rc;
    }
    for (int r = 1; r <= repeat && rc == 0; r++) {
        if (strcmp(which, "noop") == 0)
            rc = case_noop(c, n, r);
        else if (strcmp(which, "roundtrip") == 0)
            rc = case_roundtrip(c, n, r);
        else if (strcmp(which, "diamond") == 0)
            rc = case_diamond(c, n, r);
        else if (strcmp(which, "pending") == 0)
            rc = case_pending(c, n, r, sched_pid);
        else if (strcmp(which, "mapreduce") == 0)
            rc = case_mapreduce(c, n, r);
        else if (strcmp(which, "nested") == 0)
            rc = case_nested(c, n, children, r);
        else {
            fprintf(stderr, "tg_bench: unknown case %s\n", which);
            rc = 2;
        }
        fflush(stdout);
    }
    if (watch)
        watch_stop(&bw);
    tg_client_free(c);
    tg_cluster_free(cl);
    return rc;
}
