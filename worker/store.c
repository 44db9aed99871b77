/* SPDX-License-Identifier: Apache-2.0
 *
 * store.c: the held results (see store.h): a chained hash table of
 * reference-counted entries under one mutex. The lock covers only the
 * table; the bytes are read outside it through a reference, so a slow
 * peer never blocks the executor. Spilled entries keep their file open
 * for pread and remove it when the last reference goes. Depends on libc,
 * POSIX I/O and pthreads.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "taskgrid/status.h"
#include "util/error.h"

struct tgw_store {
    pthread_mutex_t mu;
    tgw_held **buckets; /* nbuckets is a power of two */
    size_t nbuckets;
    size_t count;
    uint64_t bytes;
    uint64_t spilled; /* bytes of spilled entries (part of `bytes`) */
    uint64_t tick;    /* LRU clock */
    uint64_t nfiles;  /* spill files made, for their names */
    void (*watch)(void *ud);
    void *watch_ud;
};

static void changed(tgw_store *s)
{
    if (s->watch != NULL)
        s->watch(s->watch_ud);
}

void tgw_store_watch(tgw_store *s, void (*fn)(void *ud), void *ud)
{
    s->watch = fn;
    s->watch_ud = ud;
}

static uint64_t hash_key(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static tgw_held **bucket(tgw_store *s, const char *key, size_t len)
{
    return &s->buckets[hash_key(key, len) & (s->nbuckets - 1)];
}

int tgw_store_new(tgw_store **out)
{
    tgw_store *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    s->nbuckets = 64;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        free(s);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return TG_OK;
}

tgw_held *tgw_held_ref(tgw_held *h)
{
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void tgw_held_release(tgw_held *h)
{
    if (h == NULL ||
        atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(h->owned);
    if (h->fd >= 0)
        close(h->fd);
    if (h->path != NULL) {
        unlink(h->path);
        free(h->path);
    }
    free(h);
}

/* Unlink everything; lock held. */
static void clear_locked(tgw_store *s)
{
    for (size_t i = 0; i < s->nbuckets; i++) {
        tgw_held *h = s->buckets[i], *next;

        for (; h != NULL; h = next) {
            next = h->hnext;
            tgw_held_release(h);
        }
        s->buckets[i] = NULL;
    }
    s->count = 0;
    s->bytes = 0;
    s->spilled = 0;
}

void tgw_store_free(tgw_store *s)
{
    if (s == NULL)
        return;
    clear_locked(s);
    free(s->buckets);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Double the table when it is full (load factor 1). A failed grow only
 * makes chains longer. Lock held. */
static void grow_locked(tgw_store *s)
{
    size_t nb = s->nbuckets * 2;
    tgw_held **b;

    if (s->count < s->nbuckets || (b = calloc(nb, sizeof(*b))) == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        tgw_held *h = s->buckets[i], *next;

        for (; h != NULL; h = next) {
            tgw_held **head = &b[hash_key(h->key, h->key_len) & (nb - 1)];

            next = h->hnext;
            h->hnext = *head;
            *head = h;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

/* Unlink `key` and return the store's reference to it, or NULL. */
static tgw_held *unlink_locked(tgw_store *s, const char *key, size_t len)
{
    tgw_held **pp = bucket(s, key, len);

    for (; *pp != NULL; pp = &(*pp)->hnext) {
        tgw_held *h = *pp;

        if (h->key_len == len && memcmp(h->key, key, len) == 0) {
            *pp = h->hnext;
            h->hnext = NULL;
            s->count--;
            s->bytes -= h->len;
            if (h->spilled)
                s->spilled -= h->len;
            return h;
        }
    }
    return NULL;
}

/* A new entry with one reference (the store's), or NULL. */
static tgw_held *entry_new(const char *key, size_t key_len, uint8_t *data,
                           size_t len, const char *codec)
{
    size_t clen;
    tgw_held *h;
    char *p;

    if (codec == NULL || *codec == '\0')
        codec = "raw";
    clen = strlen(codec);
    /* The entry, its key and its codec in one allocation. */
    h = malloc(sizeof(*h) + key_len + 1 + clen + 1);
    if (h == NULL)
        return NULL;
    p = (char *)(h + 1);
    memcpy(p, key, key_len);
    p[key_len] = '\0';
    h->key = p;
    h->key_len = key_len;
    p += key_len + 1;
    memcpy(p, codec, clen + 1);
    h->codec = p;
    h->owned = data;
    h->data = len ? data : NULL;
    h->len = len;
    h->spilled = false;
    h->fd = -1;
    h->path = NULL;
    h->used = 0;
    h->hnext = NULL;
    atomic_init(&h->refs, 1); /* the store's */
    return h;
}

/* Link `h` under its key, replacing any entry there; the old one is
 * returned for the caller to release. Lock held. */
static tgw_held *link_locked(tgw_store *s, tgw_held *h)
{
    tgw_held *old = unlink_locked(s, h->key, h->key_len), **head;

    grow_locked(s);
    head = bucket(s, h->key, h->key_len);
    h->hnext = *head;
    *head = h;
    h->used = ++s->tick;
    s->count++;
    s->bytes += h->len;
    if (h->spilled)
        s->spilled += h->len;
    return old;
}

int tgw_store_put(tgw_store *s, const char *key, size_t key_len, uint8_t *data,
                  size_t len, const char *codec)
{
    tgw_held *h = entry_new(key, key_len, data, len, codec), *old;

    if (h == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory holding '%.*s'",
                             (int)key_len, key);
    pthread_mutex_lock(&s->mu);
    old = link_locked(s, h);
    pthread_mutex_unlock(&s->mu);
    tgw_held_release(old);
    changed(s);
    return TG_OK;
}

tgw_held *tgw_store_get(tgw_store *s, const char *key, size_t key_len)
{
    tgw_held *h;

    pthread_mutex_lock(&s->mu);
    for (h = *bucket(s, key, key_len); h != NULL; h = h->hnext)
        if (h->key_len == key_len && memcmp(h->key, key, key_len) == 0)
            break;
    if (h != NULL) {
        tgw_held_ref(h);
        h->used = ++s->tick;
    }
    pthread_mutex_unlock(&s->mu);
    return h;
}

bool tgw_store_remove(tgw_store *s, const char *key, size_t key_len)
{
    tgw_held *h;

    pthread_mutex_lock(&s->mu);
    h = unlink_locked(s, key, key_len);
    pthread_mutex_unlock(&s->mu);
    tgw_held_release(h);
    if (h != NULL)
        changed(s);
    return h != NULL;
}

void tgw_store_clear(tgw_store *s)
{
    pthread_mutex_lock(&s->mu);
    clear_locked(s);
    pthread_mutex_unlock(&s->mu);
    changed(s);
}

void tgw_store_stats(tgw_store *s, size_t *count, uint64_t *bytes)
{
    pthread_mutex_lock(&s->mu);
    if (count)
        *count = s->count;
    if (bytes)
        *bytes = s->bytes;
    pthread_mutex_unlock(&s->mu);
}

void tgw_store_usage(tgw_store *s, uint64_t *memory, uint64_t *spilled)
{
    pthread_mutex_lock(&s->mu);
    if (memory)
        *memory = s->bytes - s->spilled;
    if (spilled)
        *spilled = s->spilled;
    pthread_mutex_unlock(&s->mu);
}

tgw_held *tgw_store_lru(tgw_store *s)
{
    tgw_held *best = NULL;

    /* A scan: held results are large (over the inline limit), so they
     * are few, and a spill costs far more than this. */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nbuckets; i++)
        for (tgw_held *h = s->buckets[i]; h != NULL; h = h->hnext)
            if (!h->spilled && (best == NULL || h->used < best->used))
                best = h;
    if (best != NULL)
        tgw_held_ref(best);
    pthread_mutex_unlock(&s->mu);
    return best;
}

/* Write all of `h` to `fd`. */
static int write_all(int fd, const tgw_held *h, const char *path)
{
    size_t done = 0;

    while (done < h->len) {
        ssize_t n = write(fd, h->data + done, h->len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tg__error_set(TG_EIO, "writing spill file %s: %s", path,
                                 n < 0 ? strerror(errno) : "no progress");
        done += (size_t)n;
    }
    return TG_OK;
}

/* A new spilled entry for `h` in *out, its file written. */
static int spill_entry(tgw_store *s, const tgw_held *h, const char *dir,
                       tgw_held **out)
{
    tgw_held *sp = entry_new(h->key, h->key_len, NULL, h->len, h->codec);
    char path[4096];
    uint64_t n;
    int rc;

    *out = NULL;
    if (sp == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory spilling '%s'", h->key);
    pthread_mutex_lock(&s->mu);
    n = ++s->nfiles;
    pthread_mutex_unlock(&s->mu);
    snprintf(path, sizeof(path), "%s/spill-%ld-%llu", dir, (long)getpid(),
             (unsigned long long)n);
    sp->spilled = true;
    sp->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (sp->fd < 0) {
        rc = tg__error_set(TG_EIO, "creating spill file %s: %s", path,
                           strerror(errno));
        tgw_held_release(sp);
        return rc;
    }
    sp->path = strdup(path);
    if (sp->path == NULL) {
        unlink(path);
        tgw_held_release(sp);
        return tg__error_set(TG_ENOMEM, "out of memory spilling '%s'", h->key);
    }
    rc = write_all(sp->fd, h, path);
    if (rc != TG_OK) {
        tgw_held_release(sp); /* removes the file */
        return rc;
    }
    *out = sp;
    return TG_OK;
}

int tgw_store_spill(tgw_store *s, tgw_held *h, const char *dir)
{
    tgw_held *sp, *old = NULL;
    int rc;

    if (h->spilled)
        return TG_OK;
    rc = spill_entry(s, h, dir, &sp);
    if (rc != TG_OK)
        return rc;
    pthread_mutex_lock(&s->mu);
    for (tgw_held *e = *bucket(s, h->key, h->key_len); e != NULL; e = e->hnext)
        if (e == h) {
            uint64_t used = h->used;

            old = link_locked(s, sp);
            sp->used = used; /* spilling is no use */
            sp = NULL;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    tgw_held_release(old);
    tgw_held_release(sp); /* replaced or removed meanwhile */
    return TG_OK;
}

int tgw_held_read(const tgw_held *h, uint64_t offset, void *buf, size_t n)
{
    size_t done = 0;

    if (!h->spilled) {
        if (n)
            memcpy(buf, h->data + offset, n);
        return TG_OK;
    }
    while (done < n) {
        ssize_t r = pread(h->fd, (uint8_t *)buf + done, n - done,
                          (off_t)(offset + done));

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return tg__error_set(TG_EIO, "reading spill file %s: %s", h->path,
                                 r < 0 ? strerror(errno) : "file too short");
        done += (size_t)r;
    }
    return TG_OK;
}

const uint8_t *tgw_held_at(const tgw_held *h, uint64_t offset, size_t n,
                           uint8_t *scratch)
{
    if (!h->spilled)
        return h->data ? h->data + offset : NULL;
    if (tgw_held_read(h, offset, scratch, n) != TG_OK)
        return NULL;
    return scratch;
}
