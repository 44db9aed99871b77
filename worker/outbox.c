/* SPDX-License-Identifier: Apache-2.0
 *
 * outbox.c: the result queue between executor threads and the sender (see
 * outbox.h). Results are an intrusive list through tg_task_ctx.next, so a
 * push is a pointer swap under a mutex and costs no allocation. Depends on
 * pthreads and task.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/error.h"

struct tgw_outbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* the taker waits for work here */
    pthread_cond_t flush_cv; /* tgw_outbox_flush waits here */
    tg_task_ctx *head, *tail;
    size_t nresults;
    char **released;
    size_t nreleased, capreleased;
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

static void clear_locked(tgw_outbox *ob)
{
    while (ob->head != NULL) {
        tg_task_ctx *t = ob->head;

        ob->head = t->next;
        tgw_task_free(t);
    }
    ob->tail = NULL;
    ob->nresults = 0;
    for (size_t i = 0; i < ob->nreleased; i++)
        free(ob->released[i]);
    ob->nreleased = 0;
}

void tgw_outbox_free(tgw_outbox *ob)
{
    if (ob == NULL)
        return;
    clear_locked(ob);
    free(ob->released);
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
    if (ob->taker_waiting && ob->nresults + ob->nreleased == 1)
        pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
}

int tgw_outbox_push_released(tgw_outbox *ob, const char *key)
{
    char *copy = strdup(key);

    if (copy == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    pthread_mutex_lock(&ob->mu);
    if (tg__array_grow_to(&ob->released, &ob->capreleased, ob->nreleased + 1,
                          sizeof(*ob->released), 64, SIZE_MAX) != TG_OK) {
        pthread_mutex_unlock(&ob->mu);
        free(copy);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    ob->released[ob->nreleased++] = copy;
    if (ob->taker_waiting)
        pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
    return TG_OK;
}

void tgw_outbox_take(tgw_outbox *ob, tgw_batch *b, size_t max_items,
                     size_t max_bytes, int64_t wait_ms)
{
    struct timespec deadline = tg__deadline_ms(wait_ms > 0 ? wait_ms : 0);
    size_t bytes = 0;

    memset(b, 0, sizeof(*b));
    pthread_mutex_lock(&ob->mu);
    ob->taker_waiting = true;
    while (ob->head == NULL && ob->nreleased == 0 && !ob->woken &&
           wait_ms > 0) {
        if (pthread_cond_timedwait(&ob->cv, &ob->mu, &deadline) == ETIMEDOUT)
            break;
    }
    ob->taker_waiting = false;
    ob->woken = false;

    /* Results: a prefix of the list of at most max_items and max_bytes
     * (but at least one result): a result that would take the batch past
     * max_bytes waits for the next batch, so a batch of results that each
     * fit one message never makes a message too large. */
    if (ob->head != NULL) {
        tg_task_ctx *last = NULL, *t = ob->head;

        while (t != NULL && b->nresults < max_items &&
               (b->nresults == 0 ||
                bytes + tgw_task_result_size(t) <= max_bytes)) {
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
    }
    /* Released keys: the oldest ones, up to max_items. */
    if (ob->nreleased > 0) {
        size_t n = ob->nreleased < max_items ? ob->nreleased : max_items;

        b->released = malloc(n * sizeof(*b->released));
        if (b->released != NULL) {
            memcpy(b->released, ob->released, n * sizeof(*b->released));
            memmove(ob->released, ob->released + n,
                    (ob->nreleased - n) * sizeof(*ob->released));
            ob->nreleased -= n;
            b->nreleased = n;
        }
    }
    ob->inflight = true;
    pthread_mutex_unlock(&ob->mu);
}

void tgw_outbox_done(tgw_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    ob->inflight = false;
    if (ob->head == NULL && ob->nreleased == 0)
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
    while (ob->head != NULL || ob->nreleased > 0 || ob->inflight) {
        if (pthread_cond_timedwait(&ob->flush_cv, &ob->mu, &deadline) ==
            ETIMEDOUT)
            break;
    }
    flushed = ob->head == NULL && ob->nreleased == 0 && !ob->inflight;
    pthread_mutex_unlock(&ob->mu);
    return flushed;
}

size_t tgw_outbox_pending(tgw_outbox *ob)
{
    size_t n;

    pthread_mutex_lock(&ob->mu);
    n = ob->nresults + ob->nreleased;
    pthread_mutex_unlock(&ob->mu);
    return n;
}
