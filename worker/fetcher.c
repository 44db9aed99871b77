/* SPDX-License-Identifier: Apache-2.0
 *
 * fetcher.c: resolving held inputs (see fetcher.h): this worker's own
 * copy when it holds the key (read back from disk when spilled), else
 * the holders in the scheduler's order through the shared checked Fetch
 * (fetch/fetch.h: the channels to peers, cached and shared by the
 * executor threads, and the chunk checks). Depends on fetch/fetch.h, the
 * store, the outbox, the counters and the task.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/fetch.h"
#include "fetcher.h"
#include "util/bigmem.h"
#include "util/error.h"
#include "util/log.h"

/* Longest FetchFailed message. */
#define WHY_MAX 4096

struct tgw_fetcher {
    tg__fetch *fetch; /* the checked Fetch and its channels to peers */
    char *self;
    tgw_store *store;
    tgw_outbox *ob;
    tgw_counters *counters;
};

int tgw_fetcher_new(tgw_fetcher **out, const tgw_fetcher_opts *opts)
{
    tgw_fetcher *f = calloc(1, sizeof(*f));
    int rc;

    *out = NULL;
    if (f == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    if (opts->self != NULL && (f->self = strdup(opts->self)) == NULL) {
        free(f);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    if ((rc = tg__fetch_new(&f->fetch, opts->sec)) != TG_OK) {
        free(f->self);
        free(f);
        return rc;
    }
    f->store = opts->store;
    f->ob = opts->ob;
    f->counters = opts->counters;
    *out = f;
    return TG_OK;
}

void tgw_fetcher_free(tgw_fetcher *f)
{
    if (f == NULL)
        return;
    tg__fetch_free(f->fetch);
    free(f->self);
    free(f);
}

static const char *task_cancelled(void *ud)
{
    return tg_task_cancelled(ud) ? "the task was cancelled" : NULL;
}

/* Fetch `dep` from `holder` into a new buffer (*out, dep->size bytes). */
static int fetch_from(tgw_fetcher *f, tg_task_ctx *t, const tgw_dep *dep,
                      const char *holder, uint8_t **out, char *why,
                      size_t whylen)
{
    tg__fetch_req req = {.key = dep->key,
                         .key_len = dep->key_len,
                         .size = dep->size,
                         .stop = task_cancelled,
                         .ud = t};
    int rc;

    *out = NULL;
    if ((req.buf = malloc(dep->size ? (size_t)dep->size : 1)) == NULL) {
        snprintf(why, whylen, "out of memory for %llu bytes",
                 (unsigned long long)dep->size);
        return TG_ENOMEM;
    }
    tg__bigmem_hint(req.buf, (size_t)dep->size);
    rc = tg__fetch_from(f->fetch, holder, &req, why, whylen);
    if (rc != TG_OK) {
        free(req.buf);
        return rc;
    }
    *out = req.buf;
    return TG_OK;
}

static void unhold_held(void *h)
{
    tgw_held_release(h);
}

/* Append ": holder H: WHY", then "; holder H: WHY", to `msg`. */
static void add_reason(char *msg, size_t *n, size_t *tried, const char *holder,
                       const char *why)
{
    if (*n < WHY_MAX)
        *n += (size_t)snprintf(msg + *n, WHY_MAX - *n, "%sholder %s: %s",
                               (*tried)++ ? "; " : ": ", holder, why);
}

/* A local input spilled to disk: read back into memory for the task (the
 * task needs it whole), dropped after it. */
static bool local_spilled(tgw_fetcher *f, tgw_dep *dep, tgw_held *h, char *msg)
{
    uint8_t *buf = malloc(h->len ? h->len : 1);
    int rc = buf != NULL ? tgw_held_read(h, 0, buf, h->len) : TG_ENOMEM;

    if (rc != TG_OK) {
        snprintf(msg, WHY_MAX,
                 "input '%s' (%zu bytes): this worker's spilled "
                 "copy: %s",
                 dep->key, h->len,
                 buf != NULL ? tg_error_last() : "out of memory");
        free(buf);
        tgw_held_release(h);
        return false;
    }
    dep->data = buf;
    dep->len = h->len;
    dep->hold = buf;
    dep->unhold = free;
    tgw_counters_add(f->counters, TGW_COUNT_LOCAL, h->len);
    tgw_held_release(h);
    return true;
}

/* Resolve one held dependency; false with the reason in `msg`. */
static bool resolve_dep(tgw_fetcher *f, tg_task_ctx *t, tgw_dep *dep, char *msg)
{
    size_t n = 0, tried = 0;
    tgw_held *h = tgw_store_get(f->store, dep->key, dep->key_len);
    char why[1536];

    if (h != NULL && h->spilled)
        return local_spilled(f, dep, h, msg);
    if (h != NULL) {
        dep->data = h->data;
        dep->len = h->len;
        dep->hold = h;
        dep->unhold = unhold_held;
        tgw_counters_add(f->counters, TGW_COUNT_LOCAL, h->len);
        return true;
    }
    n = (size_t)snprintf(msg, WHY_MAX, "input '%s' (%llu bytes)", dep->key,
                         (unsigned long long)dep->size);
    for (size_t i = 0; i < dep->nholders; i++) {
        const char *holder = dep->holders[i];
        uint8_t *buf;

        if (f->self != NULL && strcmp(holder, f->self) == 0) {
            /* The scheduler thinks we hold it: tell it we do not. */
            if (f->ob != NULL)
                tgw_outbox_push_missing(f->ob, dep->key, dep->key_len);
            add_reason(msg, &n, &tried, holder,
                       "this worker, which does not hold it");
            continue;
        }
        if (fetch_from(f, t, dep, holder, &buf, why, sizeof(why)) == TG_OK) {
            dep->data = buf;
            dep->len = (size_t)dep->size;
            dep->hold = buf;
            dep->unhold = free;
            tgw_counters_add(f->counters, TGW_COUNT_FETCHED, dep->size);
            TG_LOG_DEBUG("task '%s': fetched '%s' (%llu bytes) from %s", t->key,
                         dep->key, (unsigned long long)dep->size, holder);
            return true;
        }
        add_reason(msg, &n, &tried, holder, why);
        if (tg_task_cancelled(t))
            break;
    }
    return false;
}

bool tgw_fetcher_resolve(tgw_fetcher *f, tg_task_ctx *t)
{
    char *msg = malloc(WHY_MAX);

    for (size_t i = 0; i < t->ndeps; i++) {
        tgw_dep *dep = &t->deps[i];

        if (dep->nholders == 0 || dep->unhold != NULL)
            continue;
        if (msg == NULL) {
            tg_task_set_error(t, "tg.FetchFailed",
                              "out of memory resolving inputs", NULL);
            return false;
        }
        if (!resolve_dep(f, t, dep, msg)) {
            if (!tg_task_cancelled(t))
                TG_LOG_WARN("task '%s': %s", t->key, msg);
            tg_task_set_error(t, "tg.FetchFailed", msg, NULL);
            free(msg);
            return false;
        }
    }
    free(msg);
    return true;
}
