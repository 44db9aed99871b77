/* SPDX-License-Identifier: Apache-2.0
 *
 * outbox.c: the queue between executor threads, the link and the sender
 * (see outbox.h). Results are an intrusive list through tg_task_ctx.next,
 * so a push is a pointer swap under a mutex and costs no allocation;
 * keys and secessions are growable arrays; uploads are a FIFO of (id, held
 * result, range asked) cut into chunks as batches are taken, so an upload costs
 * no copy until the message is encoded. Depends on pthreads, task.c and
 * store.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* A list of malloc'd keys. */
typedef struct keylist {
    char **v;
    size_t n, cap;
} keylist;

/* One upload waiting for (more of) its chunks to be taken. */
typedef struct upload_job {
    struct upload_job *next;
    uint64_t id;
    tgw_held *h;
    uint64_t offset; /* the next byte to take */
    uint64_t end;    /* the end of the range asked */
} upload_job;

struct tgw_outbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* the taker waits for work here */
    pthread_cond_t flush_cv; /* tgw_outbox_flush waits here */
    tg_task_ctx *head, *tail;
    size_t nresults;
    keylist released, missing;
    tgw_secession *secs;
    size_t nsecs, capsecs;
    upload_job *up_head, *up_tail;
    size_t nuploads;
    bool taker_waiting;
    bool woken;
    bool inflight;
};

int tgw_outbox_new(tgw_outbox **out)
{
    tgw_outbox *ob = calloc(1, sizeof(*ob));
    pthread_condattr_t ca;

    *out = NULL;
    if (ob == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    pthread_mutex_init(&ob->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ob->cv, &ca);
    pthread_cond_init(&ob->flush_cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = ob;
    return TG_OK;
}

static bool idle_locked(const tgw_outbox *ob)
{
    return ob->head == NULL && ob->released.n == 0 && ob->missing.n == 0 &&
           ob->nsecs == 0 && ob->up_head == NULL;
}

static void keys_clear(keylist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static void clear_locked(tgw_outbox *ob)
{
    while (ob->head != NULL) {
        tg_task_ctx *t = ob->head;

        ob->head = t->next;
        tgw_task_free(t);
    }
    ob->tail = NULL;
    ob->nresults = 0;
    keys_clear(&ob->released);
    keys_clear(&ob->missing);
    for (size_t i = 0; i < ob->nsecs; i++)
        free(ob->secs[i].key);
    ob->nsecs = 0;
    while (ob->up_head != NULL) {
        upload_job *j = ob->up_head;

        ob->up_head = j->next;
        tgw_held_release(j->h);
        free(j);
    }
    ob->up_tail = NULL;
    ob->nuploads = 0;
}

void tgw_outbox_free(tgw_outbox *ob)
{
    if (ob == NULL)
        return;
    clear_locked(ob);
    free(ob->released.v);
    free(ob->missing.v);
    free(ob->secs);
    pthread_cond_destroy(&ob->cv);
    pthread_cond_destroy(&ob->flush_cv);
    pthread_mutex_destroy(&ob->mu);
    free(ob);
}

void tgw_outbox_push(tgw_outbox *ob, tg_task_ctx *t)
{
    pthread_mutex_lock(&ob->mu);
    t->next = NULL;
    if (ob->tail)
        ob->tail->next = t;
    else
        ob->head = t;
    ob->tail = t;
    ob->nresults++;
    /* Only the first result after the sender went to sleep needs a
     * wake-up; the rest ride along in the same batch. */
    if (ob->taker_waiting && ob->nresults + ob->released.n == 1)
        pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
}

/* Append a copy of `len` bytes at `key` to `l`. */
static int push_key(tgw_outbox *ob, keylist *l, const char *key, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    memcpy(copy, key, len);
    copy[len] = '\0';
    pthread_mutex_lock(&ob->mu);
    if (tg__array_grow_to(&l->v, &l->cap, l->n + 1, sizeof(*l->v), 64,
                          SIZE_MAX) != TG_OK) {
        pthread_mutex_unlock(&ob->mu);
        free(copy);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    l->v[l->n++] = copy;
    if (ob->taker_waiting)
        pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
    return TG_OK;
}

int tgw_outbox_push_released(tgw_outbox *ob, const char *key)
{
    return push_key(ob, &ob->released, key, strlen(key));
}

int tgw_outbox_push_missing(tgw_outbox *ob, const char *key, size_t len)
{
    return push_key(ob, &ob->missing, key, len);
}

void tgw_outbox_secession(void *ud, const char *key, bool rejoined)
{
    tgw_outbox *ob = ud;
    char *copy = strdup(key);

    pthread_mutex_lock(&ob->mu);
    if (copy == NULL ||
        tg__array_grow_to(&ob->secs, &ob->capsecs, ob->nsecs + 1,
                          sizeof(*ob->secs), 8, SIZE_MAX) != TG_OK) {
        pthread_mutex_unlock(&ob->mu);
        free(copy);
        TG_LOG_WARN("cannot report that task '%s' %s: out of memory", key,
                    rejoined ? "rejoined" : "seceded");
        return;
    }
    ob->secs[ob->nsecs++] = (tgw_secession){copy, rejoined};
    /* Sent at once: the scheduler may give the slot to another task. */
    if (ob->taker_waiting)
        pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
}

int tgw_outbox_push_upload(tgw_outbox *ob, uint64_t id, tgw_held *h,
                           uint64_t offset, uint64_t length)
{
    upload_job *j;

    if (offset > h->len || (offset == h->len && h->len > 0)) {
        tgw_held_release(h); /* nothing in the range: no chunk */
        return TG_OK;
    }
    if ((j = malloc(sizeof(*j))) == NULL) {
        tgw_held_release(h);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    j->next = NULL;
    j->id = id;
    j->h = h;
    j->offset = offset;
    j->end = length == 0 || length > h->len - offset ? h->len : offset + length;
    pthread_mutex_lock(&ob->mu);
    if (ob->up_tail)
        ob->up_tail->next = j;
    else
        ob->up_head = j;
    ob->up_tail = j;
    ob->nuploads++;
    if (ob->taker_waiting)
        pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
    return TG_OK;
}

/* Results: a prefix of the list of at most max_items and max_bytes (but
 * at least one result): a result that would take the batch past
 * max_bytes waits for the next batch, so a batch of results that each
 * fit one message never makes a message too large. Lock held. */
static size_t take_results(tgw_outbox *ob, tgw_batch *b, size_t max_items,
                           size_t max_bytes)
{
    tg_task_ctx *last = NULL, *t = ob->head;
    size_t bytes = 0;

    if (t == NULL)
        return 0;
    while (t != NULL && b->nresults < max_items &&
           (b->nresults == 0 || bytes + tgw_task_result_size(t) <= max_bytes)) {
        bytes += tgw_task_result_size(t);
        b->nresults++;
        last = t;
        t = t->next;
    }
    b->results = ob->head;
    ob->head = t;
    last->next = NULL;
    if (ob->head == NULL)
        ob->tail = NULL;
    ob->nresults -= b->nresults;
    return bytes;
}

/* The oldest keys of `l`, up to max_items. Lock held. */
static void take_keys(keylist *l, char ***out, size_t *nout, size_t max_items)
{
    size_t n = l->n < max_items ? l->n : max_items;

    if (n == 0 || (*out = malloc(n * sizeof(**out))) == NULL)
        return;
    memcpy(*out, l->v, n * sizeof(**out));
    memmove(l->v, l->v + n, (l->n - n) * sizeof(*l->v));
    l->n -= n;
    *nout = n;
}

/* Upload chunks, in FIFO order of the uploads, up to
 * TGW_BATCH_CHUNK_BYTES (and max_items pieces). Lock held. */
static void take_chunks(tgw_outbox *ob, tgw_batch *b, size_t max_items)
{
    size_t cap = 0, bytes = 0;

    while (ob->up_head != NULL && b->nchunks < max_items &&
           bytes < TGW_BATCH_CHUNK_BYTES) {
        upload_job *j = ob->up_head;
        uint64_t left = j->end - j->offset;
        size_t n = left < TGW_CHUNK_MAX ? (size_t)left : TGW_CHUNK_MAX;
        tgw_chunk *c;

        if (b->nchunks > 0 && bytes + n > TGW_BATCH_CHUNK_BYTES)
            break;
        if (tg__array_grow_to(&b->chunks, &cap, b->nchunks + 1,
                              sizeof(*b->chunks), 8, SIZE_MAX) != TG_OK)
            break; /* the rest goes in a later batch */
        c = &b->chunks[b->nchunks++];
        c->upload = j->id;
        c->h = tgw_held_ref(j->h);
        c->offset = j->offset;
        c->len = n;
        j->offset += n;
        c->last = j->offset >= j->h->len;
        c->bytes = NULL;
        c->copy = NULL;
        c->failed = false;
        bytes += n;
        if (j->offset >= j->end) {
            ob->up_head = j->next;
            if (ob->up_head == NULL)
                ob->up_tail = NULL;
            ob->nuploads--;
            tgw_held_release(j->h);
            free(j);
        }
    }
}

/* Point each chunk at its bytes; those of spilled results are read from
 * their files here, outside the lock. */
static void load_chunks(tgw_batch *b)
{
    for (size_t i = 0; i < b->nchunks; i++) {
        tgw_chunk *c = &b->chunks[i];

        if (c->len == 0)
            continue;
        if (!c->h->spilled) {
            c->bytes = c->h->data + c->offset;
            continue;
        }
        c->copy = malloc(c->len);
        if (c->copy == NULL ||
            tgw_held_read(c->h, c->offset, c->copy, c->len) != TG_OK) {
            c->failed = true;
            free(c->copy);
            c->copy = NULL;
            continue;
        }
        c->bytes = c->copy;
    }
}

void tgw_outbox_take(tgw_outbox *ob, tgw_batch *b, size_t max_items,
                     size_t max_bytes, int64_t wait_ms)
{
    struct timespec deadline = tg__deadline_ms(wait_ms > 0 ? wait_ms : 0);
    size_t bytes;

    memset(b, 0, sizeof(*b));
    pthread_mutex_lock(&ob->mu);
    ob->taker_waiting = true;
    while (idle_locked(ob) && !ob->woken && wait_ms > 0) {
        if (pthread_cond_timedwait(&ob->cv, &ob->mu, &deadline) == ETIMEDOUT)
            break;
    }
    ob->taker_waiting = false;
    ob->woken = false;
    bytes = take_results(ob, b, max_items, max_bytes);
    take_keys(&ob->released, &b->released, &b->nreleased, max_items);
    take_keys(&ob->missing, &b->missing, &b->nmissing, max_items);
    if (ob->nsecs > 0) { /* all of them, in order (few: one per wait) */
        b->secessions = ob->secs;
        b->nsecessions = ob->nsecs;
        ob->secs = NULL;
        ob->nsecs = ob->capsecs = 0;
    }
    /* A result over max_bytes travels alone (it may be close to the
     * message limit): chunks wait for the next batch. */
    if (bytes <= max_bytes)
        take_chunks(ob, b, max_items);
    ob->inflight = true;
    pthread_mutex_unlock(&ob->mu);
    load_chunks(b);
}

void tgw_outbox_done(tgw_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    ob->inflight = false;
    if (idle_locked(ob))
        pthread_cond_broadcast(&ob->flush_cv);
    pthread_mutex_unlock(&ob->mu);
}

void tgw_outbox_batch_free(tgw_batch *b)
{
    while (b->results != NULL) {
        tg_task_ctx *t = b->results;

        b->results = t->next;
        tgw_task_free(t);
    }
    for (size_t i = 0; i < b->nreleased; i++)
        free(b->released[i]);
    free(b->released);
    for (size_t i = 0; i < b->nmissing; i++)
        free(b->missing[i]);
    free(b->missing);
    for (size_t i = 0; i < b->nchunks; i++) {
        tgw_held_release(b->chunks[i].h);
        free(b->chunks[i].copy);
    }
    free(b->chunks);
    for (size_t i = 0; i < b->nsecessions; i++)
        free(b->secessions[i].key);
    free(b->secessions);
    free(b->wire);
    memset(b, 0, sizeof(*b));
}

void tgw_outbox_wake(tgw_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    ob->woken = true;
    pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
}

void tgw_outbox_clear(tgw_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    clear_locked(ob);
    if (!ob->inflight)
        pthread_cond_broadcast(&ob->flush_cv);
    pthread_mutex_unlock(&ob->mu);
}

bool tgw_outbox_flush(tgw_outbox *ob, int64_t timeout_ms)
{
    struct timespec deadline = tg__deadline_ms(timeout_ms);
    bool flushed;

    pthread_mutex_lock(&ob->mu);
    while (!idle_locked(ob) || ob->inflight) {
        if (pthread_cond_timedwait(&ob->flush_cv, &ob->mu, &deadline) ==
            ETIMEDOUT)
            break;
    }
    flushed = idle_locked(ob) && !ob->inflight;
    pthread_mutex_unlock(&ob->mu);
    return flushed;
}

size_t tgw_outbox_pending(tgw_outbox *ob)
{
    size_t n;

    pthread_mutex_lock(&ob->mu);
    n = ob->nresults + ob->released.n + ob->missing.n + ob->nsecs +
        ob->nuploads;
    pthread_mutex_unlock(&ob->mu);
    return n;
}
