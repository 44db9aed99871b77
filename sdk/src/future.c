/* SPDX-License-Identifier: Apache-2.0
 *
 * future.c: tg_future and the bookkeeping behind it (see future.h). Futures
 * of one submit live in one block (one malloc for n futures and their
 * keys); results of one Gather message are copied into one block shared by
 * the futures they fill, and results that arrive in chunks (or from a
 * holder, direct.c) are assembled straight into the block their futures
 * get; the keys a client holds are counted in a map so a key is released
 * only when its last future goes.
 * Depends on proto/wire.h for the decoded result type, util/crc.h for CRC-32
 * and gather.c for waiting; no gRPC.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future.h"
#include "util/array.h"
#include "util/bigmem.h"
#include "util/crc.h"
#include "util/error.h"

/* Strings returned for absent error fields, so accessors never give NULL. */
static const char empty[] = "";

uint64_t tg__key_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool same_key(const tg_future *f, uint64_t hash, const void *key,
                     size_t len)
{
    return f->hash == hash && f->keylen == len &&
           (len == 0 || memcmp(f->key, key, len) == 0);
}

/* ------------------------------------------------------------------ */
/* Shared client state                                                 */
/* ------------------------------------------------------------------ */

/*
 * What a client shares with its futures. Futures may outlive their client
 * (their results stay readable), so this is reference counted: one
 * reference for the client, one per future block.
 */
struct tg__shared {
    pthread_mutex_t mu;
    atomic_size_t refs;
    tg_client *client; /* NULL once closed */
    bool closed;
    /* Live-key map: every registered, unfreed future, chained per bucket
     * (doubly linked, so freeing one is O(1) plus a look at its bucket for
     * another future with the same key). */
    tg_future **buckets;
    size_t nbuckets; /* power of two, or 0 */
    size_t nlive;
    /* Keys to release, NUL-terminated back to back: one buffer instead of
     * one allocation per freed future. */
    char *rel;
    size_t rel_len, rel_cap, rel_n;
    /* Names of the workers that ran this client's tasks (TaskResult.worker),
     * each stored once: futures point at them (tg_future_worker). At most
     * MAX_WORKER_NAMES, so a scheduler naming endless workers cannot grow
     * the client without bound; names beyond that are not recorded. */
    char **names;
    size_t nnames, capnames;
};

#define MAX_WORKER_NAMES 4096

struct tg__fslab {
    tg__shared *sh;
    atomic_size_t refs; /* futures not yet freed */
    size_t n;
    tg_future f[]; /* n futures, then the keys */
};

struct tg__rblock {
    atomic_size_t refs; /* futures pointing into bytes */
    char bytes[];
};

int tg__shared_new(tg__shared **out, tg_client *client)
{
    tg__shared *sh = calloc(1, sizeof(*sh));

    *out = NULL;
    if (sh == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    if (pthread_mutex_init(&sh->mu, NULL) != 0) {
        free(sh);
        return tg__error_set(TG_ENOMEM, "cannot create a mutex");
    }
    atomic_init(&sh->refs, 1);
    sh->client = client;
    *out = sh;
    return TG_OK;
}

tg_client *tg__shared_client(tg__shared *sh)
{
    tg_client *c;

    pthread_mutex_lock(&sh->mu);
    c = sh->client;
    pthread_mutex_unlock(&sh->mu);
    return c;
}

void tg__shared_unref(tg__shared *sh)
{
    if (sh == NULL || atomic_fetch_sub(&sh->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&sh->mu);
    free(sh->buckets);
    free(sh->rel);
    for (size_t i = 0; i < sh->nnames; i++)
        free(sh->names[i]);
    free(sh->names);
    free(sh);
}

/* Append one key to the release queue (under sh->mu). Dropped silently on
 * out-of-memory: a key not released costs the scheduler memory only until
 * the client goes, never correctness. */
static void queue_locked(tg__shared *sh, const char *key, size_t len)
{
    if (tg__array_grow_to(&sh->rel, &sh->rel_cap, sh->rel_len + len + 1, 1,
                          4096, SIZE_MAX) != TG_OK)
        return;
    memcpy(sh->rel + sh->rel_len, key, len);
    sh->rel[sh->rel_len + len] = '\0';
    sh->rel_len += len + 1;
    sh->rel_n++;
}

void tg__shared_queue_release(tg__shared *sh, const char *key, size_t len)
{
    pthread_mutex_lock(&sh->mu);
    if (!sh->closed)
        queue_locked(sh, key, len);
    pthread_mutex_unlock(&sh->mu);
}

bool tg__shared_take_releases(tg__shared *sh, char **arena, size_t *len,
                              size_t *n)
{
    bool any;

    pthread_mutex_lock(&sh->mu);
    *arena = sh->rel;
    *len = sh->rel_len;
    *n = sh->rel_n;
    any = sh->rel_n > 0;
    sh->rel = NULL;
    sh->rel_len = sh->rel_cap = sh->rel_n = 0;
    pthread_mutex_unlock(&sh->mu);
    if (!any) {
        free(*arena);
        *arena = NULL;
        *len = *n = 0;
    }
    return any;
}

void tg__shared_close(tg__shared *sh)
{
    pthread_mutex_lock(&sh->mu);
    for (size_t b = 0; b < sh->nbuckets; b++) {
        for (tg_future *f = sh->buckets[b]; f != NULL; f = f->lnext) {
            bool seen = false;

            /* Queue each distinct key once: earlier in this chain? */
            for (tg_future *g = sh->buckets[b]; g != f; g = g->lnext)
                if (same_key(g, f->hash, f->key, f->keylen)) {
                    seen = true;
                    break;
                }
            if (!seen)
                queue_locked(sh, f->key, f->keylen);
        }
    }
    for (size_t b = 0; b < sh->nbuckets; b++) {
        tg_future *f = sh->buckets[b];

        while (f != NULL) {
            tg_future *next = f->lnext;
            f->live = false;
            f->lprev = f->lnext = NULL;
            f = next;
        }
    }
    free(sh->buckets);
    sh->buckets = NULL;
    sh->nbuckets = sh->nlive = 0;
    sh->closed = true;
    sh->client = NULL;
    pthread_mutex_unlock(&sh->mu);
}

/* Grow the live map to hold `want` futures at load factor <= 1. */
static int reserve_locked(tg__shared *sh, size_t want)
{
    size_t nb = sh->nbuckets ? sh->nbuckets : 1024;
    tg_future **nbk;

    if (want <= sh->nbuckets)
        return TG_OK;
    while (nb < want)
        nb *= 2;
    nbk = calloc(nb, sizeof(*nbk));
    if (nbk == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    for (size_t b = 0; b < sh->nbuckets; b++) {
        tg_future *f = sh->buckets[b];

        while (f != NULL) {
            tg_future *next = f->lnext;
            size_t i = f->hash & (nb - 1);

            f->lprev = NULL;
            f->lnext = nbk[i];
            if (nbk[i])
                nbk[i]->lprev = f;
            nbk[i] = f;
            f = next;
        }
    }
    free(sh->buckets);
    sh->buckets = nbk;
    sh->nbuckets = nb;
    return TG_OK;
}

/* ------------------------------------------------------------------ */
/* Future blocks                                                       */
/* ------------------------------------------------------------------ */

int tg__fslab_new(tg__shared *sh, size_t n, size_t keybytes, tg__fslab **out,
                  tg_future **futures, char **keys)
{
    tg__fslab *slab;
    size_t size;

    *out = NULL;
    *futures = NULL;
    *keys = NULL;
    if (n > (SIZE_MAX - sizeof(*slab) - keybytes) / sizeof(tg_future))
        return tg__error_set(TG_ENOMEM, "too many tasks");
    size = sizeof(*slab) + n * sizeof(tg_future) + keybytes;
    slab = malloc(size);
    if (slab == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory for %zu futures", n);
    memset(slab, 0, sizeof(*slab) + n * sizeof(tg_future));
    slab->sh = sh;
    slab->n = n;
    atomic_init(&slab->refs, n);
    for (size_t i = 0; i < n; i++) {
        slab->f[i].slab = slab;
        slab->f[i].state = TG_TASK_PENDING;
    }
    atomic_fetch_add(&sh->refs, 1);
    *out = slab;
    *futures = slab->f;
    *keys = (char *)(slab->f + n);
    return TG_OK;
}

void tg__future_set_key(tg_future *f, const char *key, size_t len)
{
    f->key = key;
    f->keylen = len;
    f->hash = tg__key_hash(key, len);
}

int tg__fslab_register(tg__fslab *slab)
{
    tg__shared *sh = slab->sh;
    int rc;

    pthread_mutex_lock(&sh->mu);
    if (sh->closed) {
        pthread_mutex_unlock(&sh->mu);
        return tg__error_set(TG_ESTATE, "the client is closed");
    }
    rc = reserve_locked(sh, sh->nlive + slab->n);
    if (rc == TG_OK) {
        for (size_t i = 0; i < slab->n; i++) {
            tg_future *f = &slab->f[i];
            size_t b = f->hash & (sh->nbuckets - 1);

            f->lprev = NULL;
            f->lnext = sh->buckets[b];
            if (f->lnext)
                f->lnext->lprev = f;
            sh->buckets[b] = f;
            f->live = true;
        }
        sh->nlive += slab->n;
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static void slab_unref(tg__fslab *slab)
{
    tg__shared *sh = slab->sh;

    if (atomic_fetch_sub(&slab->refs, 1) != 1)
        return;
    free(slab);
    tg__shared_unref(sh);
}

void tg__fslab_drop(tg__fslab *slab)
{
    tg__shared *sh;

    if (slab == NULL)
        return;
    sh = slab->sh;
    free(slab);
    tg__shared_unref(sh);
}

tg__shared *tg__future_shared(const tg_future *f)
{
    return f->slab->sh;
}

static void rblock_unref(tg__rblock *rb)
{
    if (rb != NULL && atomic_fetch_sub(&rb->refs, 1) == 1)
        free(rb);
}

static void future_free(tg_future *f, bool release)
{
    tg__shared *sh = f->slab->sh;

    pthread_mutex_lock(&sh->mu);
    if (f->live) {
        size_t b = f->hash & (sh->nbuckets - 1);
        bool other = false;

        if (f->lprev)
            f->lprev->lnext = f->lnext;
        else
            sh->buckets[b] = f->lnext;
        if (f->lnext)
            f->lnext->lprev = f->lprev;
        f->live = false;
        sh->nlive--;
        /* Another future of this client holds the same key: keep it. */
        for (tg_future *g = sh->buckets[b]; g != NULL; g = g->lnext)
            if (same_key(g, f->hash, f->key, f->keylen)) {
                other = true;
                break;
            }
        if (release && !other)
            queue_locked(sh, f->key, f->keylen);
    }
    pthread_mutex_unlock(&sh->mu);
    rblock_unref(f->rb);
    f->rb = NULL;
    slab_unref(f->slab);
}

void tg_future_free(tg_future *f)
{
    if (f != NULL)
        future_free(f, true);
}

void tg__futures_discard(tg_future *fut, size_t n, size_t nrelease)
{
    for (size_t i = 0; i < n; i++)
        future_free(&fut[i], i < nrelease);
}

/* ------------------------------------------------------------------ */
/* Accessors                                                           */
/* ------------------------------------------------------------------ */

const char *tg_task_state_name(tg_task_state state)
{
    switch (state) {
    case TG_TASK_PENDING:
        return "pending";
    case TG_TASK_WAITING:
        return "waiting";
    case TG_TASK_READY:
        return "ready";
    case TG_TASK_PROCESSING:
        return "processing";
    case TG_TASK_MEMORY:
        return "memory";
    case TG_TASK_ERRED:
        return "erred";
    case TG_TASK_CANCELLED:
        return "cancelled";
    case TG_TASK_RELEASED:
        return "released";
    }
    return "unknown";
}

const char *tg_future_key(const tg_future *f)
{
    return f ? f->key : NULL;
}

tg_task_state tg_future_state(const tg_future *f)
{
    return f ? f->state : TG_TASK_RELEASED;
}

bool tg_future_done(const tg_future *f)
{
    return f != NULL && tg__state_final(f->state);
}

int tg_future_wait(tg_future *f, int64_t timeout_ms)
{
    tg_client *c;

    if (f == NULL)
        return tg__error_set(TG_EINVAL, "future is NULL");
    if (tg__state_final(f->state))
        return TG_OK;
    c = tg__shared_client(f->slab->sh);
    if (c == NULL)
        return tg__error_set(
            TG_ESTATE, "cannot wait for '%s': its client was freed", f->key);
    return tg_client_gather(c, &f, 1, timeout_ms);
}

int tg_future_result(const tg_future *f, const void **data, size_t *len,
                     const char **codec)
{
    if (f == NULL || data == NULL || len == NULL)
        return tg__error_set(TG_EINVAL,
                             "tg_future_result: NULL future or output");
    *data = NULL;
    *len = 0;
    if (codec)
        *codec = NULL;
    switch (f->state) {
    case TG_TASK_MEMORY:
        *data = f->data;
        *len = f->len;
        if (codec)
            *codec = f->codec;
        return TG_OK;
    case TG_TASK_ERRED:
        return tg__error_set(TG_ETASK, "task '%s' failed: %s: %s", f->key,
                             f->etype, f->emsg);
    case TG_TASK_CANCELLED:
        return tg__error_set(TG_ECANCELLED, "task '%s' was cancelled", f->key);
    case TG_TASK_RELEASED:
        return tg__error_set(TG_ENOTFOUND,
                             "task '%s' is unknown to the scheduler "
                             "(released, or never submitted)",
                             f->key);
    default:
        return tg__error_set(TG_ESTATE,
                             "task '%s' is not finished (state %s); wait "
                             "for it first",
                             f->key, tg_task_state_name(f->state));
    }
}

int tg_future_error(const tg_future *f, const char **type, const char **message,
                    const char **traceback)
{
    if (f == NULL)
        return tg__error_set(TG_EINVAL, "future is NULL");
    if (f->state != TG_TASK_ERRED && f->state != TG_TASK_CANCELLED)
        return tg__error_set(TG_ESTATE, "task '%s' has no error (state %s)",
                             f->key, tg_task_state_name(f->state));
    if (type)
        *type = f->etype ? f->etype : empty;
    if (message)
        *message = f->emsg ? f->emsg : empty;
    if (traceback)
        *traceback = f->etb ? f->etb : empty;
    return TG_OK;
}

const char *tg_future_worker(const tg_future *f, uint64_t *run_us)
{
    if (run_us != NULL)
        *run_us = f != NULL && f->worker != NULL ? f->run_us : 0;
    return f != NULL && tg__state_final(f->state) ? f->worker : NULL;
}

const char *tg_future_error_origin(const tg_future *f)
{
    if (f == NULL || f->eorigin == NULL || f->eorigin[0] == '\0')
        return NULL;
    return f->eorigin;
}

/* ------------------------------------------------------------------ */
/* Gather: matching streamed results to futures                        */
/* ------------------------------------------------------------------ */

int tg__gmap_init(tg__gmap *m, tg_future *const *fs, size_t n)
{
    size_t want = 0, nb = 16;

    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < n; i++)
        want += !tg__state_final(fs[i]->state);
    if (want == 0)
        return TG_OK;
    while (nb < 2 * want)
        nb *= 2;
    m->buckets = calloc(nb, sizeof(*m->buckets));
    m->keys = malloc(want * sizeof(*m->keys));
    if (m->buckets == NULL || m->keys == NULL) {
        tg__gmap_free(m);
        return tg__error_set(TG_ENOMEM, "out of memory for %zu keys", want);
    }
    m->mask = nb - 1;
    for (size_t i = 0; i < n; i++) {
        tg_future *f = fs[i];
        size_t b = f->hash & m->mask;
        tg_future *g;

        if (tg__state_final(f->state))
            continue;
        /* The same future twice: f->gnext would be overwritten. A future
         * is in this map iff some chain reaches it; checking the chain of
         * its key is enough because equal keys are kept adjacent. */
        for (g = m->buckets[b]; g != NULL; g = g->gnext)
            if (same_key(g, f->hash, f->key, f->keylen))
                break;
        if (g == NULL) {
            f->gnext = m->buckets[b];
            m->buckets[b] = f;
            m->keys[m->nkeys++] = (char *)f->key;
            continue;
        }
        {
            tg_future *h = g;
            bool dup = false;

            for (; h != NULL && same_key(h, f->hash, f->key, f->keylen);
                 h = h->gnext)
                if (h == f) {
                    dup = true;
                    break;
                }
            if (dup)
                continue;
        }
        f->gnext = g->gnext;
        g->gnext = f;
    }
    m->pending = m->nkeys;
    return TG_OK;
}

static void part_drop(tg__gmap *m, tg__gpart *p);

void tg__gmap_free(tg__gmap *m)
{
    while (m->parts != NULL)
        part_drop(m, m->parts);
    tg__gmap_held_free(m);
    free(m->buckets);
    free(m->keys);
    memset(m, 0, sizeof(*m));
}

/* First future of the map with this key, or NULL. */
static tg_future *gmap_find(const tg__gmap *m, tg_pbbuf key)
{
    uint64_t h;

    if (m->buckets == NULL)
        return NULL;
    h = tg__key_hash(key.ptr, key.len);
    for (tg_future *g = m->buckets[h & m->mask]; g != NULL; g = g->gnext)
        if (same_key(g, h, key.ptr, key.len))
            return g;
    return NULL;
}

static bool proto_final(int st)
{
    return st == TG_TASK_MEMORY || st == TG_TASK_ERRED ||
           st == TG_TASK_CANCELLED || st == TG_TASK_RELEASED;
}

/* Bytes a final result needs in the block: each string plus a NUL. */
static size_t result_bytes(const taskgrid_v1_TaskResult *r)
{
    size_t n = r->data.len + 1 + r->codec.len + 1;

    if (r->has_error)
        n += r->error.type.len + r->error.message.len + r->error.traceback.len +
             r->error.origin_key.len + 4;
    return n;
}

const char *tg__strings_put(char **p, tg_pbbuf b)
{
    char *s = *p;

    if (b.len)
        memcpy(s, b.ptr, b.len);
    s[b.len] = '\0';
    *p += b.len + 1;
    return s;
}

/* A MEMORY result whose bytes follow as chunks. */
static bool awaits_chunks(const taskgrid_v1_TaskResult *r)
{
    return r->state == taskgrid_v1_TaskState_TASK_STATE_MEMORY &&
           r->data.len == 0 && r->size > 0;
}

static int part_start(tg__gmap *m, tg_future *f, uint64_t size, tg_pbbuf codec);

/* The stored copy of worker name `b` (NULL for an empty one, or when it
 * cannot be stored). Few distinct names: a linear look, the last first. */
static const char *intern_worker(tg__shared *sh, tg_pbbuf b)
{
    const char *out = NULL;

    if (b.len == 0 || b.len > 4096)
        return NULL;
    pthread_mutex_lock(&sh->mu);
    for (size_t i = sh->nnames; i-- > 0;)
        if (tg_pbbuf_eq(b, sh->names[i])) {
            out = sh->names[i];
            goto done;
        }
    if (sh->nnames >= MAX_WORKER_NAMES ||
        tg__array_grow(&sh->names, &sh->capnames, sh->nnames + 1,
                       sizeof(*sh->names)) != TG_OK)
        goto done;
    char *z = malloc(b.len + 1);
    if (z == NULL)
        goto done;
    memcpy(z, b.ptr, b.len);
    z[b.len] = '\0';
    out = sh->names[sh->nnames++] = z;
done:
    pthread_mutex_unlock(&sh->mu);
    return out;
}

/* Record who ran f's key and for how long, on each of its futures. */
static void note_run(tg_future *f, const taskgrid_v1_TaskResult *r)
{
    const char *w = intern_worker(f->slab->sh, r->worker);

    for (tg_future *g = f; g != NULL && same_key(g, f->hash, f->key, f->keylen);
         g = g->gnext) {
        g->worker = w;
        g->run_us = w != NULL ? r->run_us : 0;
    }
}

static int apply_results(tg__gmap *m, const taskgrid_v1_GatherResponse *resp)
{
    size_t total = 0, refs = 0;
    tg__rblock *rb = NULL;
    tg_future **hit;
    char *p;
    int rc = TG_OK;

    if (resp->results_count == 0)
        return TG_OK;
    /* One lookup per result: the futures are scattered in memory, so the
     * second pass reuses what the first found. */
    hit = malloc(resp->results_count * sizeof(*hit));
    if (hit == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory for results");

    /* Pass 1: find each key; size the block for results that finish a
     * pending key. */
    for (pb_size_t i = 0; i < resp->results_count; i++) {
        const taskgrid_v1_TaskResult *r = &resp->results[i];
        tg_future *f = gmap_find(m, r->key);

        hit[i] = f;
        if (f != NULL && !tg__state_final(f->state) &&
            proto_final((int)r->state) && !awaits_chunks(r))
            total += result_bytes(r);
    }
    if (total > 0) {
        rb = malloc(sizeof(*rb) + total);
        if (rb == NULL) {
            free(hit);
            return tg__error_set(TG_ENOMEM, "out of memory for results");
        }
        atomic_init(&rb->refs, 0);
    }
    p = rb ? rb->bytes : NULL;

    /* Pass 2: fill. Equal keys are adjacent in the chain. */
    for (pb_size_t i = 0; i < resp->results_count; i++) {
        const taskgrid_v1_TaskResult *r = &resp->results[i];
        int st = (int)r->state;
        tg_future *f = hit[i];
        const char *data, *codec, *et = empty, *em = empty, *eb = empty,
                                  *eo = empty;
        uint64_t h;

        /* Already final: an earlier result of this message filled it. */
        if (f == NULL || tg__state_final(f->state))
            continue;
        if (st < TG_TASK_WAITING || st > TG_TASK_RELEASED)
            continue; /* unspecified or from a newer protocol: no news */
        h = f->hash;
        if (!proto_final(st)) {
            for (tg_future *g = f;
                 g != NULL && same_key(g, h, f->key, f->keylen); g = g->gnext)
                g->state = (tg_task_state)st;
            continue;
        }
        note_run(f, r);
        if (awaits_chunks(r) && m->defer) {
            /* Its holders instead of its bytes: fetched after the
             * stream (direct.c). */
            if (!f->deferred && (rc = tg__gmap_defer(m, f, r)) != TG_OK)
                break;
            continue;
        }
        if (awaits_chunks(r)) {
            if (f->part == NULL &&
                (rc = part_start(m, f, r->size, r->codec)) != TG_OK)
                break;
            continue;
        }
        if (f->part != NULL)
            part_drop(m, f->part); /* e.g. its holder was lost mid-way */
        data = tg__strings_put(&p, r->data);
        codec = tg__strings_put(&p, r->codec);
        if (r->has_error) {
            et = tg__strings_put(&p, r->error.type);
            em = tg__strings_put(&p, r->error.message);
            eb = tg__strings_put(&p, r->error.traceback);
            eo = tg__strings_put(&p, r->error.origin_key);
        }
        for (tg_future *g = f; g != NULL && same_key(g, h, f->key, f->keylen);
             g = g->gnext) {
            g->state = (tg_task_state)st;
            g->rb = rb;
            g->data = (const uint8_t *)data;
            g->len = r->data.len;
            g->codec = codec;
            g->etype = et;
            g->emsg = em;
            g->etb = eb;
            g->eorigin = eo;
            refs++;
        }
        m->pending--;
    }
    free(hit);
    if (rb != NULL) {
        if (refs == 0)
            free(rb);
        else
            atomic_store(&rb->refs, refs);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Gather: results that arrive in chunks                               */
/* ------------------------------------------------------------------ */

/* A result being assembled: its bytes go straight into the block its
 * futures get (size bytes, a NUL, the codec and a NUL). */
struct tg__gpart {
    tg_future *f; /* first future of the key in the map */
    tg__rblock *rb;
    uint64_t size, got;
    const char *codec; /* in rb */
    tg__gpart *prev, *next;
};

static void part_drop(tg__gmap *m, tg__gpart *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        m->parts = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->f->part = NULL;
    free(p->rb);
    free(p);
}

/* Final state for every future of f's key (the block `rb`, NULL for none,
 * is shared by them). */
static void settle(tg__gmap *m, tg_future *f, tg_task_state st, tg__rblock *rb,
                   const uint8_t *data, size_t len, const char *codec,
                   const char *et, const char *em)
{
    size_t refs = 0;
    uint64_t h = f->hash;

    for (tg_future *g = f; g != NULL && same_key(g, h, f->key, f->keylen);
         g = g->gnext) {
        g->state = st;
        g->rb = rb;
        g->data = data;
        g->len = len;
        g->codec = codec;
        g->etype = et;
        g->emsg = em;
        g->etb = g->eorigin = empty;
        refs++;
    }
    if (rb != NULL)
        atomic_store(&rb->refs, refs);
    m->pending--;
}

/* Fail f's key with an error of `type` and a message naming the key. */
static int settle_error(tg__gmap *m, tg_future *f, const char *type,
                        const char *fmt, ...)
{
    size_t tlen = strlen(type), mlen;
    tg__rblock *rb;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return tg__error_set(TG_EINTERNAL, "cannot format an error");
    mlen = (size_t)n;
    rb = malloc(sizeof(*rb) + tlen + 1 + mlen + 1);
    if (rb == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory for results");
    memcpy(rb->bytes, type, tlen + 1);
    va_start(ap, fmt);
    vsnprintf(rb->bytes + tlen + 1, mlen + 1, fmt, ap);
    va_end(ap);
    settle(m, f, TG_TASK_ERRED, rb, NULL, 0, empty, rb->bytes,
           rb->bytes + tlen + 1);
    return TG_OK;
}

static int part_start(tg__gmap *m, tg_future *f, uint64_t size, tg_pbbuf codec)
{
    tg__gpart *p = calloc(1, sizeof(*p));
    char *q;

    if (p == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory for results");
    if (size < SIZE_MAX - sizeof(*p->rb) - codec.len - 2)
        p->rb = malloc(sizeof(*p->rb) + (size_t)size + 1 + codec.len + 1);
    if (p->rb == NULL) {
        free(p);
        return settle_error(m, f, "tg.ResultTooLarge",
                            "the result of '%s' is %" PRIu64
                            " bytes, more than this process can allocate",
                            f->key, size);
    }
    tg__bigmem_hint(p->rb, sizeof(*p->rb) + (size_t)size);
    q = p->rb->bytes + size;
    *q++ = '\0';
    p->codec = tg__strings_put(&q, codec);
    p->f = f;
    p->size = size;
    p->next = m->parts;
    if (m->parts)
        m->parts->prev = p;
    m->parts = p;
    f->part = p;
    return TG_OK;
}

/* Every byte of `p` is in: its futures get the block. */
static void part_finish(tg__gmap *m, tg__gpart *p)
{
    tg__rblock *rb = p->rb;

    p->rb = NULL; /* now the futures' */
    settle(m, p->f, TG_TASK_MEMORY, rb, (const uint8_t *)rb->bytes,
           (size_t)p->size, p->codec, empty, empty);
    part_drop(m, p);
}

/* Add one chunk to its result: checked, copied into place; the futures
 * are filled when the last byte arrived. */
static int part_chunk(tg__gmap *m, const taskgrid_v1_DataChunk *c)
{
    tg_future *f = gmap_find(m, c->key);
    tg__gpart *p = f ? f->part : NULL;
    char why[160] = "";
    uint32_t crc;

    if (p == NULL || tg__state_final(f->state))
        return TG_OK; /* not asked for, not being assembled, or failed */
    if (c->offset != p->got)
        snprintf(why, sizeof(why),
                 "a chunk at offset %" PRIu64 " where offset %" PRIu64
                 " was due",
                 c->offset, p->got);
    else if (c->size != p->size)
        snprintf(why, sizeof(why),
                 "the chunk at offset %" PRIu64 " gives the size as %" PRIu64
                 " bytes",
                 c->offset, c->size);
    else if (c->data.len > p->size - p->got)
        snprintf(why, sizeof(why),
                 "the chunk at offset %" PRIu64
                 " (%zu bytes) runs past the size",
                 c->offset, c->data.len);
    if (why[0] != '\0') {
        uint64_t size = p->size;

        part_drop(m, p);
        return settle_error(m, f, "tg.DataCorrupt",
                            "the result of '%s' (%" PRIu64
                            " bytes) arrived damaged and was discarded: %s",
                            f->key, size, why);
    }
    crc = tg__crc32(c->data.ptr, c->data.len);
    if (crc != c->crc32) {
        uint64_t size = p->size;

        part_drop(m, p);
        return settle_error(
            m, f, "tg.DataCorrupt",
            "the result of '%s' (%" PRIu64
            " bytes) arrived damaged and was discarded: "
            "CRC-32 mismatch in the chunk at offset %" PRIu64
            " (%zu bytes): computed %08" PRIx32 ", the chunk says "
            "%08" PRIx32,
            f->key, size, c->offset, c->data.len, crc, c->crc32);
    }
    if (c->data.len)
        memcpy(p->rb->bytes + p->got, c->data.ptr, c->data.len);
    p->got += c->data.len;
    if (p->got == p->size)
        part_finish(m, p);
    return TG_OK;
}

int tg__gmap_part_open(tg__gmap *m, tg_future *f, uint64_t size, tg_pbbuf codec,
                       uint8_t **dst)
{
    int rc = TG_OK;

    if (f->part == NULL && !tg__state_final(f->state))
        rc = part_start(m, f, size, codec);
    *dst = f->part != NULL && f->part->got == 0 && f->part->size == size
               ? (uint8_t *)f->part->rb->bytes
               : NULL;
    return rc;
}

void tg__gmap_part_finish(tg__gmap *m, tg_future *f)
{
    if (f->part != NULL) {
        f->part->got = f->part->size;
        part_finish(m, f->part);
    }
}

void tg__gmap_part_cancel(tg__gmap *m, tg_future *f)
{
    if (f->part != NULL)
        part_drop(m, f->part);
}

int tg__gmap_apply(tg__gmap *m, const taskgrid_v1_GatherResponse *resp)
{
    int rc = apply_results(m, resp);

    for (pb_size_t i = 0; rc == TG_OK && i < resp->chunks_count; i++)
        rc = part_chunk(m, &resp->chunks[i]);
    return rc;
}
