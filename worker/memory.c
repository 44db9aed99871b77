/* SPDX-License-Identifier: Apache-2.0
 *
 * memory.c: the worker's memory manager (see memory.h): limit parsing,
 * the spill directory, and one thread that spills least recently used
 * results past the target, reports pause changes and exits past the
 * terminate fraction. The thread wakes on every store change and every
 * TICK_MS (for the RSS in reports). Depends on the store, the config, the
 * logger, pthreads and POSIX file calls.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "memory.h"
#include "taskgrid/status.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define TICK_MS 500

struct tgw_memory {
    tgw_store *store;
    uint64_t limit;
    double target, pause, terminate;
    /* The spill directory: --spill-dir, made at start; else a private one
     * made under `base` at the first spill (a worker that never spills
     * leaves nothing behind, even when killed) and removed at the end. */
    char dir[4096];
    char base[4000];
    atomic_bool dir_ready; /* `dir` is the directory to spill into */
    bool own_dir;

    pthread_mutex_t check_mu; /* one check at a time */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool poked, stop, started;
    pthread_t thread;
    void (*on_pause)(void *ud);
    void *on_pause_ud;
    /* Bytes in memory and spilled at the last check that sent a report
     * (check_mu). */
    uint64_t reported, reported_spilled;
    atomic_bool paused;
    atomic_bool due;
    bool spill_warned;
};

static const struct {
    const char *suffix;
    uint64_t mult;
} suffixes[] = {
    {"", 1},
    {"b", 1},
    {"k", 1000ull},
    {"kb", 1000ull},
    {"kib", 1ull << 10},
    {"m", 1000000ull},
    {"mb", 1000000ull},
    {"mib", 1ull << 20},
    {"g", 1000000000ull},
    {"gb", 1000000000ull},
    {"gib", 1ull << 30},
    {"t", 1000000000000ull},
    {"tb", 1000000000000ull},
    {"tib", 1ull << 40},
};

/* The cgroup's memory limit (v2, then v1); 0 when none or unknown. */
static uint64_t cgroup_limit(void)
{
    static const char *const files[] = {
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        FILE *f = fopen(files[i], "r");
        unsigned long long v;
        int n;

        if (f == NULL)
            continue;
        n = fscanf(f, "%llu", &v);
        fclose(f);
        if (n == 1 && v > 0)
            return (uint64_t)v;
    }
    return 0;
}

uint64_t tgw_memory_total(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    uint64_t total =
        pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
    uint64_t cg = cgroup_limit();

    if (cg > 0 && (total == 0 || cg < total))
        total = cg;
    return total;
}

int tgw_memory_parse_limit(const char *opt, const char *v, uint64_t *out)
{
    char *end, suf[8];
    double n;
    size_t i, k = 0;

    if (strcmp(v, "none") == 0 || strcmp(v, "0") == 0) {
        *out = 0;
        return TG_OK;
    }
    if (strcmp(v, "auto") == 0) {
        *out = tgw_memory_total();
        return TG_OK;
    }
    errno = 0;
    n = strtod(v, &end);
    while (*end == ' ')
        end++;
    for (; end[k] != '\0' && k < sizeof(suf) - 1; k++)
        suf[k] = (char)tolower((unsigned char)end[k]);
    suf[k] = '\0';
    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        if (strcmp(suf, suffixes[i].suffix) == 0)
            break;
    if (end == v || errno != 0 || !(n >= 0) || end[k] != '\0' ||
        i == sizeof(suffixes) / sizeof(suffixes[0]) ||
        n * (double)suffixes[i].mult >= 1.8e19)
        return tg__error_set(TG_EINVAL,
                             "%s must be bytes (e.g. 4GiB, 500MB, 1000000), "
                             "'auto' or 'none', got '%s'",
                             opt, v);
    *out = (uint64_t)(n * (double)suffixes[i].mult);
    return TG_OK;
}

/* The process's resident set size; 0 when unknown. */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size, res;
    long page = sysconf(_SC_PAGESIZE);
    int n;

    if (f == NULL)
        return 0;
    n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    return n == 2 && page > 0 ? (uint64_t)res * (uint64_t)page : 0;
}

static uint64_t share(const tgw_memory *m, double frac)
{
    return (uint64_t)((double)m->limit * frac);
}

static int have_dir(tgw_memory *m);
static void remove_dir(tgw_memory *m);

/* Spill least recently used results until memory is within the target;
 * the bytes in memory when it stopped (a put after that is the next
 * check's: judging it here could terminate for a result not yet given
 * its chance to spill). */
static uint64_t spill(tgw_memory *m)
{
    uint64_t mem;

    tgw_store_usage(m->store, &mem, NULL);
    if (m->limit == 0 || m->target <= 0)
        return mem;
    while (mem > share(m, m->target)) {
        tgw_held *h = tgw_store_lru(m->store);
        int rc;

        if (h == NULL)
            break;
        rc = have_dir(m);
        if (rc == TG_OK)
            rc = tgw_store_spill(m->store, h, m->dir);
        if (rc == TG_OK) {
            TG_LOG_DEBUG("memory: spilled '%s' (%zu bytes)", h->key, h->len);
            m->spill_warned = false;
        } else if (!m->spill_warned) {
            TG_LOG_WARN("memory: cannot spill '%s' (%zu bytes): %s", h->key,
                        h->len, tg_error_last());
            m->spill_warned = true;
        }
        tgw_held_release(h);
        if (rc != TG_OK)
            break;
        tgw_store_usage(m->store, &mem, NULL);
    }
    return mem;
}

/* Spill, then compare with the pause and terminate fractions. check_mu
 * held. */
static void check_locked(tgw_memory *m)
{
    uint64_t mem = spill(m), spilled;
    bool paused;

    if (m->limit > 0 && m->terminate > 0 && mem > share(m, m->terminate)) {
        TG_LOG_ERROR("memory: held results use %llu bytes in memory, over "
                     "the terminate fraction %.2f of the memory limit %llu "
                     "bytes; exiting with status %d",
                     (unsigned long long)mem, m->terminate,
                     (unsigned long long)m->limit, TGW_EXIT_MEMORY);
        fflush(stderr);
        if (m->own_dir)
            remove_dir(m);
        _exit(TGW_EXIT_MEMORY);
    }
    paused = m->limit > 0 && m->pause > 0 && mem > share(m, m->pause);
    tgw_store_usage(m->store, NULL, &spilled);
    if (paused == atomic_load(&m->paused)) {
        /* Held or spilled bytes changed: Status should see it now (a
         * spill and a new result may leave the bytes in memory as they
         * were). */
        if (mem != m->reported || spilled != m->reported_spilled) {
            m->reported = mem;
            m->reported_spilled = spilled;
            atomic_store(&m->due, true);
            pthread_mutex_lock(&m->mu);
            if (m->on_pause != NULL)
                m->on_pause(m->on_pause_ud);
            pthread_mutex_unlock(&m->mu);
        }
        return;
    }
    m->reported = mem;
    m->reported_spilled = spilled;
    atomic_store(&m->paused, paused);
    atomic_store(&m->due, true);
    if (paused)
        TG_LOG_INFO("memory: paused (held results use %llu bytes in memory, "
                    "over the pause fraction %.2f of the memory limit %llu "
                    "bytes): the scheduler assigns no new task",
                    (unsigned long long)mem, m->pause,
                    (unsigned long long)m->limit);
    else
        TG_LOG_INFO("memory: unpaused (held results use %llu bytes in "
                    "memory)",
                    (unsigned long long)mem);
    pthread_mutex_lock(&m->mu);
    if (m->on_pause != NULL)
        m->on_pause(m->on_pause_ud);
    pthread_mutex_unlock(&m->mu);
}

void tgw_memory_check(tgw_memory *m)
{
    pthread_mutex_lock(&m->check_mu);
    check_locked(m);
    pthread_mutex_unlock(&m->check_mu);
}

static void poke(void *ud)
{
    tgw_memory *m = ud;

    pthread_mutex_lock(&m->mu);
    m->poked = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void *memory_main(void *arg)
{
    tgw_memory *m = arg;

    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec deadline = tg__deadline_ms(TICK_MS);

        while (!m->poked && !m->stop)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &deadline) == ETIMEDOUT)
                break;
        m->poked = false;
        if (m->stop)
            break;
        pthread_mutex_unlock(&m->mu);
        tgw_memory_check(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* --spill-dir (made if missing), or the private directory's base. */
static int make_dir(tgw_memory *m, const char *want)
{
    const char *tmp = getenv("TMPDIR");

    if (want != NULL) {
        snprintf(m->dir, sizeof(m->dir), "%s", want);
        if (mkdir(m->dir, 0700) != 0 && errno != EEXIST)
            return tg__error_set(TG_EIO, "--spill-dir %s: %s", m->dir,
                                 strerror(errno));
        atomic_store(&m->dir_ready, true);
        return TG_OK;
    }
    snprintf(m->base, sizeof(m->base), "%s",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    snprintf(m->dir, sizeof(m->dir), "%s", m->base);
    return TG_OK;
}

/* The private spill directory, made now if it is not yet. check_mu held. */
static int have_dir(tgw_memory *m)
{
    char dir[sizeof(m->dir)];

    if (atomic_load(&m->dir_ready))
        return TG_OK;
    snprintf(dir, sizeof(dir), "%s/taskgrid-spill-XXXXXX", m->base);
    if (mkdtemp(dir) == NULL)
        return tg__error_set(TG_EIO, "cannot make a spill directory %s: %s",
                             dir, strerror(errno));
    pthread_mutex_lock(&m->mu);
    memcpy(m->dir, dir, sizeof(dir));
    m->own_dir = true;
    pthread_mutex_unlock(&m->mu);
    atomic_store(&m->dir_ready, true);
    return TG_OK;
}

int tgw_memory_new(tgw_memory **out, tgw_store *store, const tgw_config *cfg)
{
    tgw_memory *m = calloc(1, sizeof(*m));
    pthread_condattr_t ca;
    int rc;

    *out = m;
    if (m == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    m->store = store;
    m->limit = cfg->memory_limit;
    m->target = cfg->memory_target;
    m->pause = cfg->memory_pause;
    m->terminate = cfg->memory_terminate;
    atomic_init(&m->paused, false);
    atomic_init(&m->dir_ready, false);
    atomic_init(&m->due, false);
    pthread_mutex_init(&m->check_mu, NULL);
    pthread_mutex_init(&m->mu, NULL);
    /* Waited on with tg__deadline_ms, a monotonic deadline. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    rc = make_dir(m, cfg->spill_dir);
    if (rc != TG_OK)
        return rc;
    if (pthread_create(&m->thread, NULL, memory_main, m) != 0)
        return tg__error_set(TG_ENOMEM, "cannot start the memory thread");
    m->started = true;
    tgw_store_watch(store, poke, m);
    if (m->limit > 0)
        TG_LOG_INFO(
            "memory: limit %llu bytes, target %.2f, pause %.2f, "
            "terminate %.2f, spill directory %s%s",
            (unsigned long long)m->limit, m->target, m->pause, m->terminate,
            atomic_load(&m->dir_ready) ? "" : "made at need under ", m->dir);
    return TG_OK;
}

/* Remove what is left in a private spill directory, then it. */
static void remove_dir(tgw_memory *m)
{
    DIR *d = opendir(m->dir);
    struct dirent *e;
    char path[4400];

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", m->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(m->dir);
}

void tgw_memory_free(tgw_memory *m)
{
    if (m == NULL)
        return;
    tgw_store_watch(m->store, NULL, NULL);
    if (m->started) {
        pthread_mutex_lock(&m->mu);
        m->stop = true;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
    }
    if (m->own_dir)
        remove_dir(m);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->check_mu);
    free(m);
}

void tgw_memory_on_pause(tgw_memory *m, void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&m->mu);
    m->on_pause = fn;
    m->on_pause_ud = ud;
    pthread_mutex_unlock(&m->mu);
}

void tgw_memory_report_get(tgw_memory *m, tgw_memory_report *r)
{
    memset(r, 0, sizeof(*r));
    tgw_store_usage(m->store, &r->memory, &r->spilled);
    r->limit = m->limit;
    r->rss = rss_bytes();
    r->paused = atomic_load(&m->paused);
}

bool tgw_memory_report_due(tgw_memory *m)
{
    return atomic_exchange(&m->due, false);
}

bool tgw_memory_fits(tgw_memory *m, uint64_t len, char *msg, size_t msglen)
{
    struct statvfs st;
    uint64_t disk = 0;
    char dir[sizeof(m->dir)];

    if (m->limit == 0 || len <= m->limit)
        return true;
    pthread_mutex_lock(&m->mu);
    memcpy(dir, m->dir, sizeof(dir));
    pthread_mutex_unlock(&m->mu);
    if (m->target > 0 && statvfs(dir, &st) == 0)
        disk = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
    if (len <= m->limit + disk)
        return true;
    if (m->target <= 0)
        snprintf(msg, msglen,
                 "the result is %llu bytes, more than this worker can hold: "
                 "its memory limit %llu bytes (spilling is off)",
                 (unsigned long long)len, (unsigned long long)m->limit);
    else
        snprintf(msg, msglen,
                 "the result is %llu bytes, more than this worker can hold: "
                 "its memory limit %llu bytes plus %llu bytes free for "
                 "spilling in %s",
                 (unsigned long long)len, (unsigned long long)m->limit,
                 (unsigned long long)disk, dir);
    return false;
}
