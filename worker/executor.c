/* SPDX-License-Identifier: Apache-2.0
 *
 * executor.c: the slot-based thread pool (see executor.h). One mutex
 * guards everything: a binary heap of queued tasks (util/heap.h; priority,
 * then FIFO sequence), a hash index by key of queued and running tasks (for
 * cancel), the slot counters, and the thread records. Depends on pthreads,
 * task.c and the shared log and error helpers (util/).
 *
 * Wake-ups are exact: every idle thread waits on its own condition
 * variable on a LIFO stack, and a submit wakes only as many threads as
 * there are free slots and queued tasks (no thundering herd at 100k
 * tasks/s; the most recently idle thread has the warmest cache). A thread
 * that finishes a task takes the next one itself without any wake-up.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "executor.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/heap.h"
#include "util/log.h"

enum { ST_NONE = 0, ST_QUEUED, ST_RUNNING };

typedef struct pool_thread {
    pthread_t tid;
    tg__exec *e;
    pthread_cond_t cv;
    bool woken;
    struct pool_thread *next_idle;
    struct pool_thread *next; /* e->threads or e->zombies */
} pool_thread;

struct tg__exec {
    pthread_mutex_t mu;
    pthread_cond_t slot_cv; /* rejoining tasks wait here */
    pthread_cond_t idle_cv; /* tg__exec_wait_idle waits here */
    size_t nslots;
    size_t active;   /* tasks holding a slot */
    size_t nrunning; /* tasks started, not finished */
    size_t nseceded;
    size_t nrejoin;
    size_t nwaking; /* threads woken or spawned that have not looked yet */
    size_t nthreads;
    size_t nidle_waiters;
    bool stop;
    tg__exec_done_fn done;
    tg__exec_prepare_fn prepare;
    void *ud;
    tg__exec_secession_fn secession;
    void *secession_ud;

    tg__heap heap; /* queued tasks, by before(), each knowing its index */
    uint64_t seq;

    tg_task_ctx **buckets; /* chains through hnext; nbuckets is a pow2 */
    size_t nbuckets, nkeys;

    pool_thread *threads; /* live */
    pool_thread *idle;    /* LIFO of idle live threads */
    pool_thread *zombies; /* exited surplus threads, to join */
};

/* ------------------------------------------------------------------ */
/* Ready heap                                                          */
/* ------------------------------------------------------------------ */

/* Higher priority first; FIFO (lower sequence) among equals. */
static inline bool before(const void *x, const void *y)
{
    const tg_task_ctx *a = x, *b = y;

    if (a->priority != b->priority)
        return a->priority > b->priority;
    return a->seq < b->seq;
}

static inline void moved(void *t, size_t i)
{
    ((tg_task_ctx *)t)->heap_index = i;
}

/* Room reserved by tg__exec_submit. */
static void heap_push(tg__exec *e, tg_task_ctx *t)
{
    tg__heap_push(&e->heap, t, before, moved);
}

static void heap_remove(tg__exec *e, tg_task_ctx *t)
{
    tg__heap_remove_at(&e->heap, t->heap_index, before, moved);
}

static tg_task_ctx *heap_pop(tg__exec *e)
{
    return tg__heap_pop(&e->heap, before, moved);
}

/* ------------------------------------------------------------------ */
/* Key index (queued and running tasks; a key may appear twice when a   */
/* cancelled run is still finishing while its key was assigned again)   */
/* ------------------------------------------------------------------ */

static uint64_t hash_key(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static tg_task_ctx **bucket(tg__exec *e, const char *key, size_t len)
{
    return &e->buckets[hash_key(key, len) & (e->nbuckets - 1)];
}

/* Make room for `more` keys (load factor <= 1). Only allocation here, so
 * a failing submit changes nothing. */
static int index_reserve(tg__exec *e, size_t more)
{
    size_t nb = e->nbuckets ? e->nbuckets : 64;
    tg_task_ctx **b;

    while (nb < e->nkeys + more)
        nb *= 2;
    if (nb == e->nbuckets)
        return 0;
    b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < e->nbuckets; i++) {
        tg_task_ctx *t = e->buckets[i], *next;

        for (; t != NULL; t = next) {
            tg_task_ctx **head = &b[hash_key(t->key, t->key_len) & (nb - 1)];

            next = t->hnext;
            t->hnext = *head;
            *head = t;
        }
    }
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = nb;
    return 0;
}

static void index_add(tg__exec *e, tg_task_ctx *t)
{
    tg_task_ctx **head = bucket(e, t->key, t->key_len);

    t->hnext = *head;
    *head = t;
    e->nkeys++;
}

static void index_remove(tg__exec *e, tg_task_ctx *t)
{
    tg_task_ctx **pp = bucket(e, t->key, t->key_len);

    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    t->hnext = NULL;
    e->nkeys--;
}

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

static void *thread_main(void *arg);

static void notify_idle_locked(tg__exec *e)
{
    if (e->nidle_waiters > 0 && e->heap.n == 0 && e->nrunning == 0)
        pthread_cond_broadcast(&e->idle_cv);
}

static void reap_zombies_locked(tg__exec *e)
{
    while (e->zombies != NULL) {
        pool_thread *th = e->zombies;

        e->zombies = th->next;
        /* It has unlocked for good and is returning: safe under the lock. */
        pthread_join(th->tid, NULL);
        pthread_cond_destroy(&th->cv);
        free(th);
    }
}

/* Start one more thread; it counts as "waking" until it first looks at the
 * queue, so wake_locked does not over-wake meanwhile. */
static int spawn_locked(tg__exec *e)
{
    pool_thread *th;
    sigset_t all, old;
    int rc;

    reap_zombies_locked(e);
    th = calloc(1, sizeof(*th));
    if (th == NULL)
        return -1;
    th->e = e;
    pthread_cond_init(&th->cv, NULL);
    /* Pool threads run user code: keep SIGINT/SIGTERM for the main
     * thread, and let sleeps in tasks run undisturbed. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&th->tid, NULL, thread_main, th);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&th->cv);
        free(th);
        TG_LOG_WARN("cannot start an executor thread: %s", strerror(rc));
        return -1;
    }
    th->next = e->threads;
    e->threads = th;
    e->nthreads++;
    e->nwaking++;
    return 0;
}

static bool runnable(const tg__exec *e)
{
    return !e->stop && e->heap.n > 0 && e->active < e->nslots &&
           e->nrejoin == 0;
}

/* Wake (or start) as many threads as there are queued tasks that could
 * take a free slot now. */
static void wake_locked(tg__exec *e)
{
    while (!e->stop && e->heap.n > e->nwaking && e->nrejoin == 0 &&
           e->active + e->nwaking < e->nslots) {
        pool_thread *th = e->idle;

        if (th != NULL) {
            e->idle = th->next_idle;
            th->woken = true;
            e->nwaking++;
            pthread_cond_signal(&th->cv);
        } else if (e->nthreads >= e->nslots + e->nseceded ||
                   spawn_locked(e) != 0) {
            break; /* every thread is busy; one takes the task when done */
        }
    }
}

static void run_one_locked(tg__exec *e)
{
    tg_task_ctx *t = heap_pop(e);
    int64_t t0 = 0;

    t->exec_state = ST_RUNNING;
    e->active++;
    e->nrunning++;
    pthread_mutex_unlock(&e->mu);

    if (tg__log_enabled(TG__LOG_DEBUG)) {
        t0 = tg__now_ms();
        TG_LOG_DEBUG("task '%s' (%s, attempt %u) started", t->key, t->func,
                     (unsigned)t->attempt);
    }
    if (t->nheld == 0 || e->prepare == NULL || e->prepare(e->ud, t))
        tgw_task_run(t);
    if (tg__log_enabled(TG__LOG_DEBUG)) {
        int64_t ms = tg__now_ms() - t0;

        if (tg_task_cancelled(t))
            TG_LOG_DEBUG("task '%s' cancelled after %lld ms", t->key,
                         (long long)ms);
        else if (t->erred)
            TG_LOG_DEBUG("task '%s' erred after %lld ms: %s: %s", t->key,
                         (long long)ms, t->err_type ? t->err_type : "",
                         t->err_message ? t->err_message : "");
        else
            TG_LOG_DEBUG("task '%s' finished in %lld ms (%zu bytes, %s)",
                         t->key, (long long)ms, t->data_len,
                         tgw_task_result_codec(t));
    }

    pthread_mutex_lock(&e->mu);
    if (t->seceded) {
        /* Returned without rejoining: it holds no slot to give back. */
        t->seceded = false;
        e->nseceded--;
    } else {
        e->active--;
    }
    e->nrunning--;
    index_remove(e, t);
    t->exec_state = ST_NONE;
    /* Decided under the lock, so a cancel that returned before this point
     * always suppresses the result (see tg__exec_cancel_all). */
    if (atomic_load(&t->cancelled))
        tgw_task_free(t);
    else
        e->done(e->ud, t);
    if (e->nrejoin > 0 && e->active < e->nslots)
        pthread_cond_signal(&e->slot_cv);
    notify_idle_locked(e);
}

static void *thread_main(void *arg)
{
    pool_thread *th = arg;
    tg__exec *e = th->e;

    pthread_mutex_lock(&e->mu);
    e->nwaking--; /* spawned threads start counted as waking */
    for (;;) {
        if (e->stop)
            break;
        if (runnable(e)) {
            run_one_locked(e);
            continue;
        }
        /* Idle. Extra threads started for seceded tasks go away once
         * those tasks rejoined or finished. */
        if (e->nthreads > e->nslots + e->nseceded) {
            pool_thread **pp = &e->threads;

            while (*pp != th)
                pp = &(*pp)->next;
            *pp = th->next;
            th->next = e->zombies;
            e->zombies = th;
            e->nthreads--;
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        th->woken = false;
        th->next_idle = e->idle;
        e->idle = th;
        while (!th->woken && !e->stop)
            pthread_cond_wait(&th->cv, &e->mu);
        if (th->woken)
            e->nwaking--;
    }
    /* Stopping: tg__exec_free joins every thread left on e->threads. */
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* API                                                                 */
/* ------------------------------------------------------------------ */

int tg__exec_new(tg__exec **out, const tg__exec_opts *opts)
{
    tg__exec *e;
    pthread_condattr_t ca;

    *out = NULL;
    if (opts == NULL || opts->nslots == 0 || opts->done == NULL)
        return tg__error_set(TG_EINVAL,
                             "executor needs at least one slot and a done "
                             "callback");
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    e->nslots = opts->nslots;
    e->done = opts->done;
    e->prepare = opts->prepare;
    e->ud = opts->ud;
    e->secession = opts->secession;
    e->secession_ud = opts->secession_ud;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->slot_cv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (index_reserve(e, 0) != 0) {
        tg__exec_free(e);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->nslots; i++) {
        if (spawn_locked(e) != 0) {
            pthread_mutex_unlock(&e->mu);
            tg__exec_free(e);
            return tg__error_set(TG_ENOMEM, "cannot start %zu executor threads",
                                 (size_t)opts->nslots);
        }
    }
    pthread_mutex_unlock(&e->mu);
    *out = e;
    return TG_OK;
}

/* Drop queued tasks and flag running ones; lock held. */
static void cancel_all_locked(tg__exec *e)
{
    while (e->heap.n > 0) {
        tg_task_ctx *t = heap_pop(e);

        index_remove(e, t);
        tgw_task_free(t);
    }
    for (size_t i = 0; i < e->nbuckets; i++)
        for (tg_task_ctx *t = e->buckets[i]; t != NULL; t = t->hnext)
            atomic_store(&t->cancelled, true);
    notify_idle_locked(e);
}

void tg__exec_free(tg__exec *e)
{
    pool_thread *th;

    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    cancel_all_locked(e);
    for (th = e->threads; th != NULL; th = th->next)
        pthread_cond_signal(&th->cv);
    pthread_cond_broadcast(&e->slot_cv);
    pthread_mutex_unlock(&e->mu);
    /* Threads no longer touch e->threads once stop is set. */
    for (th = e->threads; th != NULL;) {
        pool_thread *next = th->next;

        pthread_join(th->tid, NULL);
        pthread_cond_destroy(&th->cv);
        free(th);
        th = next;
    }
    reap_zombies_locked(e); /* no other thread is left */
    tg__heap_free(&e->heap);
    free(e->buckets);
    pthread_cond_destroy(&e->slot_cv);
    pthread_cond_destroy(&e->idle_cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

int tg__exec_submit(tg__exec *e, tg_task_ctx **tasks, size_t n)
{
    pthread_mutex_lock(&e->mu);
    if (e->heap.n + n > e->heap.cap &&
        tg__array_grow_to(&e->heap.items, &e->heap.cap, e->heap.n + n,
                          sizeof(*e->heap.items), 256, SIZE_MAX) != TG_OK) {
        pthread_mutex_unlock(&e->mu);
        return tg__error_set(TG_ENOMEM, "out of memory queueing tasks");
    }
    if (index_reserve(e, n) != 0) {
        pthread_mutex_unlock(&e->mu);
        return tg__error_set(TG_ENOMEM, "out of memory queueing tasks");
    }
    for (size_t i = 0; i < n; i++) {
        tg_task_ctx *t = tasks[i];

        t->exec = e;
        t->seq = e->seq++;
        t->exec_state = ST_QUEUED;
        t->seceded = false;
        heap_push(e, t);
        index_add(e, t);
    }
    wake_locked(e);
    pthread_mutex_unlock(&e->mu);
    return TG_OK;
}

/* Cancel (flag running ones too) or steal (queued ones only) `key`. */
static size_t drop_key(tg__exec *e, const char *key, bool running_too)
{
    size_t len = strlen(key), count = 0;
    tg_task_ctx **pp;

    pthread_mutex_lock(&e->mu);
    pp = bucket(e, key, len);
    while (*pp != NULL) {
        tg_task_ctx *t = *pp;

        if (t->key_len != len || memcmp(t->key, key, len) != 0) {
            pp = &t->hnext;
            continue;
        }
        if (t->exec_state == ST_QUEUED) {
            count++;
            *pp = t->hnext; /* index_remove, without a second walk */
            e->nkeys--;
            heap_remove(e, t);
            tgw_task_free(t);
            continue;
        }
        if (running_too) {
            count++;
            atomic_store(&t->cancelled, true);
        }
        pp = &t->hnext;
    }
    notify_idle_locked(e);
    pthread_mutex_unlock(&e->mu);
    return count;
}

size_t tg__exec_cancel(tg__exec *e, const char *key)
{
    return drop_key(e, key, true);
}

size_t tg__exec_steal(tg__exec *e, const char *key)
{
    return drop_key(e, key, false);
}

void tg__exec_cancel_all(tg__exec *e)
{
    pthread_mutex_lock(&e->mu);
    cancel_all_locked(e);
    pthread_mutex_unlock(&e->mu);
}

int tg__exec_take_queued(tg__exec *e, tg_task_ctx ***out, size_t *n)
{
    tg_task_ctx **arr;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&e->mu);
    if (e->heap.n == 0) {
        pthread_mutex_unlock(&e->mu);
        return TG_OK;
    }
    arr = malloc(e->heap.n * sizeof(*arr));
    if (arr == NULL) {
        pthread_mutex_unlock(&e->mu);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    while (e->heap.n > 0) {
        tg_task_ctx *t = heap_pop(e);

        index_remove(e, t);
        t->exec_state = ST_NONE;
        t->exec = NULL;
        arr[(*n)++] = t;
    }
    notify_idle_locked(e);
    pthread_mutex_unlock(&e->mu);
    *out = arr;
    return TG_OK;
}

bool tg__exec_wait_idle(tg__exec *e, int64_t timeout_ms)
{
    struct timespec deadline = tg__deadline_ms(timeout_ms < 0 ? 0 : timeout_ms);
    bool idle;

    pthread_mutex_lock(&e->mu);
    e->nidle_waiters++;
    while (e->heap.n > 0 || e->nrunning > 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&e->idle_cv, &e->mu);
        else if (pthread_cond_timedwait(&e->idle_cv, &e->mu, &deadline) ==
                 ETIMEDOUT)
            break;
    }
    idle = e->heap.n == 0 && e->nrunning == 0;
    e->nidle_waiters--;
    pthread_mutex_unlock(&e->mu);
    return idle;
}

void tg__exec_stats_get(tg__exec *e, tg__exec_stats *st)
{
    pthread_mutex_lock(&e->mu);
    st->queued = e->heap.n;
    st->running = e->nrunning;
    st->active = e->active;
    st->seceded = e->nseceded;
    st->rejoining = e->nrejoin;
    st->threads = e->nthreads;
    pthread_mutex_unlock(&e->mu);
}

int tg__exec_secede(tg_task_ctx *ctx)
{
    tg__exec *e = ctx->exec;

    if (e == NULL)
        return tg__error_set(
            TG_ESTATE, "task '%s' is not running in an executor", ctx->key);
    pthread_mutex_lock(&e->mu);
    if (ctx->exec_state != ST_RUNNING || ctx->seceded) {
        pthread_mutex_unlock(&e->mu);
        return tg__error_set(TG_ESTATE, "task '%s' cannot secede: %s", ctx->key,
                             ctx->seceded ? "it already seceded"
                                          : "it is not running");
    }
    ctx->seceded = true;
    e->active--;
    e->nseceded++;
    /* This thread stays blocked in the task: make sure another one can use
     * the slot, now or when nested work arrives. Without a thread for it,
     * nested work could deadlock a full pool: keep the slot instead. */
    if (e->idle == NULL && e->nthreads < e->nslots + e->nseceded &&
        spawn_locked(e) != 0) {
        ctx->seceded = false;
        e->active++;
        e->nseceded--;
        pthread_mutex_unlock(&e->mu);
        return tg__error_set(TG_ENOMEM,
                             "task '%s' cannot secede: no thread for its slot",
                             ctx->key);
    }
    if (e->nrejoin > 0)
        pthread_cond_signal(&e->slot_cv);
    else
        wake_locked(e);
    if (e->secession != NULL)
        e->secession(e->secession_ud, ctx->key, false);
    pthread_mutex_unlock(&e->mu);
    return TG_OK;
}

int tg__exec_rejoin(tg_task_ctx *ctx)
{
    tg__exec *e = ctx->exec;

    if (e == NULL)
        return tg__error_set(
            TG_ESTATE, "task '%s' is not running in an executor", ctx->key);
    pthread_mutex_lock(&e->mu);
    if (!ctx->seceded) {
        pthread_mutex_unlock(&e->mu);
        return tg__error_set(
            TG_ESTATE, "task '%s' cannot rejoin: it did not secede", ctx->key);
    }
    e->nrejoin++;
    if (e->secession != NULL)
        e->secession(e->secession_ud, ctx->key, true);
    /* While stopping, let it through so it can finish and be joined. */
    while (e->active >= e->nslots && !e->stop)
        pthread_cond_wait(&e->slot_cv, &e->mu);
    e->nrejoin--;
    e->active++;
    e->nseceded--;
    ctx->seceded = false;
    if (e->nrejoin > 0) {
        if (e->active < e->nslots)
            pthread_cond_signal(&e->slot_cv);
    } else {
        /* Queued tasks waited behind the rejoiners. */
        wake_locked(e);
    }
    pthread_mutex_unlock(&e->mu);
    return TG_OK;
}
