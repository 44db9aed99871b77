/* SPDX-License-Identifier: Apache-2.0
 *
 * copy.c: copies of held results (see copy.h). One thread takes the
 * queued copies in order; each is a one-input task context handed to the
 * fetcher, so the transfer is checked exactly as a task's input is (key,
 * offsets, CRC-32, size; holders tried in the scheduler's order), and
 * its bytes then move into the store without another copy. A session
 * generation guards the store: a copy that ends after its session did
 * (tgw_copier_clear) keeps nothing. Depends on pthreads, the fetcher, the
 * store, the memory manager, the outbox, the counters and the codec.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy.h"
#include "util/error.h"
#include "util/log.h"

/* Longest error text of one answer. */
#define WHY_MAX 2048

typedef struct job {
    struct job *next;
    tg_task_ctx *t; /* one dependency: the result to copy */
    char *codec;
    uint64_t gen;
} job;

typedef struct answer {
    struct answer *next;
    char *key;
    bool ok;
    char *error;
} answer;

struct tgw_copier {
    tgw_copier_opts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint64_t gen;      /* the session; bumped by tgw_copier_clear */
    job *head, *tail;  /* queued */
    tg_task_ctx *busy; /* the copy under way (cancelled by a clear) */
    answer *done;      /* waiting to be sent, newest first */
    size_t ndone;
    /* What the last fill handed out (freed at the next one). */
    taskgrid_v1_CopyResult *sent;
    answer *sent_list;
};

static void answers_free(answer *a)
{
    while (a != NULL) {
        answer *n = a->next;

        free(a->key);
        free(a->error);
        free(a);
        a = n;
    }
}

static void job_free(job *j)
{
    tgw_task_free(j->t);
    free(j->codec);
    free(j);
}

/* Queue the answer for `key` (the copier's lock held). */
static void answer_locked(tgw_copier *c, const char *key, bool ok,
                          const char *why)
{
    answer *a = calloc(1, sizeof(*a));

    if (a == NULL || (a->key = strdup(key)) == NULL ||
        (!ok && (a->error = strdup(why)) == NULL)) {
        TG_LOG_WARN("copy of '%s': out of memory for its answer", key);
        answers_free(a);
        return;
    }
    a->ok = ok;
    a->next = c->done;
    c->done = a;
    c->ndone++;
}

/*
 * Fetch the result of `j` (not held here yet, the size admitted) and
 * keep it: true, or false with the reason in `why`.
 */
static bool fetch_and_keep(tgw_copier *c, job *j, char *why)
{
    tg_task_ctx *t = j->t;
    tgw_dep *d = &t->deps[0];
    bool kept = false;

    if (!tgw_fetcher_resolve(c->o.fetcher, t)) {
        snprintf(why, WHY_MAX, "%s",
                 t->err_message ? t->err_message : "the fetch failed");
        return false;
    }
    pthread_mutex_lock(&c->mu);
    if (j->gen != c->gen) {
        snprintf(why, WHY_MAX, "the session ended");
    } else if (d->unhold != free) {
        kept = true; /* found in this store meanwhile */
    } else if (tgw_store_put(c->o.store, d->key, d->key_len, d->hold, d->len,
                             j->codec) == TG_OK) {
        d->hold = NULL; /* the store owns the bytes now */
        d->unhold = NULL;
        tgw_counters_add(c->o.counters, TGW_COUNT_HELD, d->len);
        kept = true;
    } else {
        snprintf(why, WHY_MAX, "%s", tg_error_last());
    }
    pthread_mutex_unlock(&c->mu);
    return kept;
}

/* Run one copy and queue its answer. */
static void run_job(tgw_copier *c, job *j)
{
    tgw_dep *d = &j->t->deps[0];
    tgw_held *h = tgw_store_get(c->o.store, d->key, d->key_len);
    char *why = malloc(WHY_MAX);
    bool ok = h != NULL; /* held already: nothing to move */

    tgw_held_release(h);
    if (why == NULL) {
        ok = false;
    } else if (!ok && !tgw_memory_fits(c->o.mem, d->size, why, WHY_MAX)) {
        ok = false; /* why: the size, the limit and the free space */
    } else if (!ok) {
        ok = fetch_and_keep(c, j, why);
    }
    if (!ok)
        TG_LOG_WARN("copy of '%s' (%llu bytes): %s", d->key,
                    (unsigned long long)d->size, why ? why : "out of memory");
    else
        TG_LOG_DEBUG("copied '%s' (%llu bytes)", d->key,
                     (unsigned long long)d->size);
    pthread_mutex_lock(&c->mu);
    c->busy = NULL;
    if (j->gen == c->gen)
        answer_locked(c, d->key, ok, why ? why : "out of memory");
    pthread_mutex_unlock(&c->mu);
    free(why);
    tgw_outbox_wake(c->o.ob);
}

static void *copier_main(void *arg)
{
    tgw_copier *c = arg;

    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        job *j = c->head;

        if (j == NULL) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        c->head = j->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->busy = j->t;
        pthread_mutex_unlock(&c->mu);
        run_job(c, j);
        job_free(j);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int tgw_copier_new(tgw_copier **out, const tgw_copier_opts *opts)
{
    tgw_copier *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    c->o = *opts;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, copier_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return tg__error_set(TG_EINTERNAL, "cannot start the copy thread");
    }
    *out = c;
    return TG_OK;
}

/* Drop the queue and the unsent answers; cancel the copy under way. */
static void clear_locked(tgw_copier *c)
{
    while (c->head != NULL) {
        job *j = c->head;

        c->head = j->next;
        job_free(j);
    }
    c->tail = NULL;
    answers_free(c->done);
    c->done = NULL;
    c->ndone = 0;
    if (c->busy != NULL)
        atomic_store(&c->busy->cancelled, true);
    c->gen++;
}

void tgw_copier_free(tgw_copier *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    clear_locked(c);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    answers_free(c->sent_list);
    free(c->sent);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

void tgw_copier_clear(tgw_copier *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    clear_locked(c);
    pthread_mutex_unlock(&c->mu);
}

/* A job for one Copy: a task context whose one input is the result. */
static job *job_new(const taskgrid_v1_Copy *cp)
{
    job *j = calloc(1, sizeof(*j));
    tgw_dep_spec dep;
    tgw_task_spec spec;

    if (j == NULL)
        return NULL;
    memset(&dep, 0, sizeof(dep));
    dep.codec.ptr = cp->codec.ptr;
    dep.codec.len = cp->codec.len;
    dep.key.ptr = cp->key.ptr;
    dep.key.len = cp->key.len;
    dep.size = cp->size;
    dep.holders = (const char *const *)cp->holders;
    dep.nholders = cp->holders_count;
    memset(&spec, 0, sizeof(spec));
    spec.key = dep.key;
    spec.func.ptr = (const uint8_t *)"tg.copy";
    spec.func.len = 7;
    spec.deps = &dep;
    spec.ndeps = 1;
    spec.attempt = 1;
    j->codec = tg_pbbuf_strdup(cp->codec);
    if (j->codec == NULL || tgw_task_new(&j->t, &spec, NULL) != TG_OK) {
        free(j->codec);
        free(j);
        return NULL;
    }
    return j;
}

void tgw_copier_push(tgw_copier *c, const taskgrid_v1_SchedulerMessage *m)
{
    pthread_mutex_lock(&c->mu);
    for (pb_size_t i = 0; i < m->copy_count; i++) {
        const taskgrid_v1_Copy *cp = &m->copy[i];
        job *j = cp->holders_count > 0 ? job_new(cp) : NULL;
        char *key = tg_pbbuf_strdup(cp->key);

        if (j == NULL) {
            if (key != NULL)
                answer_locked(c, key, false,
                              cp->holders_count > 0
                                  ? "out of memory"
                                  : "the scheduler named no holder");
            free(key);
            continue;
        }
        free(key);
        j->gen = c->gen;
        if (c->tail != NULL)
            c->tail->next = j;
        else
            c->head = j;
        c->tail = j;
    }
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    tgw_outbox_wake(c->o.ob);
}

bool tgw_copier_due(tgw_copier *c)
{
    bool due;

    pthread_mutex_lock(&c->mu);
    due = c->ndone > 0;
    pthread_mutex_unlock(&c->mu);
    return due;
}

void tgw_copier_fill(tgw_copier *c, taskgrid_v1_WorkerMessage *msg)
{
    size_t n = 0;

    answers_free(c->sent_list);
    free(c->sent);
    c->sent = NULL;
    pthread_mutex_lock(&c->mu);
    c->sent_list = c->done;
    c->sent = calloc(c->ndone ? c->ndone : 1, sizeof(*c->sent));
    if (c->sent == NULL) {
        pthread_mutex_unlock(&c->mu);
        c->sent_list = NULL;
        return; /* the answers wait for the next message */
    }
    c->done = NULL;
    c->ndone = 0;
    pthread_mutex_unlock(&c->mu);
    for (answer *a = c->sent_list; a != NULL; a = a->next, n++) {
        c->sent[n].key = tg_pbbuf_str(a->key);
        c->sent[n].ok = a->ok;
        c->sent[n].error = tg_pbbuf_str(a->error);
    }
    msg->copied_count = (pb_size_t)n;
    msg->copied = n ? c->sent : NULL;
}
