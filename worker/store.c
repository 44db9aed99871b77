/* SPDX-License-Identifier: Apache-2.0
 *
 * store.c: the held results (see store.h): a chained hash table of
 * reference-counted entries under one mutex. The lock covers only the
 * table; the bytes are read outside it through a reference, so a slow
 * peer never blocks the executor. Depends on libc and pthreads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "taskgrid/status.h"
#include "util/error.h"

struct tgw_store {
    pthread_mutex_t mu;
    tgw_held **buckets; /* nbuckets is a power of two */
    size_t nbuckets;
    size_t count;
    uint64_t bytes;
};

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
            return h;
        }
    }
    return NULL;
}

int tgw_store_put(tgw_store *s, const char *key, size_t key_len, uint8_t *data,
                  size_t len, const char *codec)
{
    size_t clen;
    tgw_held *h, *old, **head;
    char *p;

    if (codec == NULL || *codec == '\0')
        codec = "raw";
    clen = strlen(codec);
    /* The entry, its key and its codec in one allocation. */
    h = malloc(sizeof(*h) + key_len + 1 + clen + 1);
    if (h == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory holding '%.*s'",
                             (int)key_len, key);
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
    h->hnext = NULL;
    atomic_init(&h->refs, 1); /* the store's */

    pthread_mutex_lock(&s->mu);
    old = unlink_locked(s, key, key_len);
    grow_locked(s);
    head = bucket(s, key, key_len);
    h->hnext = *head;
    *head = h;
    s->count++;
    s->bytes += len;
    pthread_mutex_unlock(&s->mu);
    tgw_held_release(old);
    return TG_OK;
}

tgw_held *tgw_store_get(tgw_store *s, const char *key, size_t key_len)
{
    tgw_held *h;

    pthread_mutex_lock(&s->mu);
    for (h = *bucket(s, key, key_len); h != NULL; h = h->hnext)
        if (h->key_len == key_len && memcmp(h->key, key, key_len) == 0)
            break;
    if (h != NULL)
        tgw_held_ref(h);
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
    return h != NULL;
}

void tgw_store_clear(tgw_store *s)
{
    pthread_mutex_lock(&s->mu);
    clear_locked(s);
    pthread_mutex_unlock(&s->mu);
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
