/* SPDX-License-Identifier: Apache-2.0
 *
 * heap.h: the one binary heap of taskgrid, for every priority queue of
 * the scheduler's core (ready tasks of a placement class, retry timers,
 * the candidate workers of an assignment pass, steal candidates) and of
 * the worker's executor. Items are pointers; the order and, optionally, a
 * "position moved" callback (which makes the heap indexed: an item that
 * records its position can be removed or re-ordered in O(log n) without a
 * search) are arguments of each call.
 *
 * Zero cost by design: the sift functions are `static inline` and always
 * inlined, and every caller passes its own comparator and callback as
 * constants, so the compiler specialises each use as if it were written
 * out by hand (no indirect call is left; a NULL callback disappears). The
 * heap never allocates while pushing: callers reserve capacity first
 * (tg__heap_reserve), which lets the core make every later state change
 * infallible. Depends on libc, util/array.h and taskgrid/status.h.
 */
#ifndef TG_UTIL_HEAP_H
#define TG_UTIL_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#include "taskgrid/status.h"
#include "util/array.h"

/* True when `a` must come out before `b` (a strict order). */
typedef bool (*tg__heap_before_fn)(const void *a, const void *b);
/* `item` now sits at index `pos` (NULL: nobody records positions). */
typedef void (*tg__heap_moved_fn)(void *item, size_t pos);

#define TG__HEAP_INLINE static inline __attribute__((always_inline))

/* A heap that owns its item array. Zero-initialised ({0}) is empty. The
 * sift functions below also work on any bare `void *` array. */
typedef struct tg__heap {
    void **items;
    size_t n;
    size_t cap;
} tg__heap;

/**
 * Make sure `h` can hold `cap` items without allocating (capacity
 * doubles, from 16). @return TG_OK or TG_ENOMEM (heap unchanged).
 */
static inline tg_status tg__heap_reserve(tg__heap *h, size_t cap)
{
    if (cap <= h->cap)
        return TG_OK;
    return tg__array_grow_to(&h->items, &h->cap, cap, sizeof *h->items, 16,
                             SIZE_MAX);
}

/** Free the item array (not the items); the heap is empty again. */
static inline void tg__heap_free(tg__heap *h)
{
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}

/** The first item, or NULL when empty. */
static inline void *tg__heap_top(const tg__heap *h)
{
    return h->n ? h->items[0] : NULL;
}

/** Move v[i] towards the root while it comes before its parent. */
TG__HEAP_INLINE void tg__heap_sift_up(void **v, size_t i,
                                      tg__heap_before_fn before,
                                      tg__heap_moved_fn moved)
{
    void *x = v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(x, v[parent]))
            break;
        v[i] = v[parent];
        if (moved)
            moved(v[i], i);
        i = parent;
    }
    v[i] = x;
    if (moved)
        moved(x, i);
}

/** Move v[i] (of `n` items) towards the leaves while a child comes
 * before it; of two children, the first (then the left one) wins. */
TG__HEAP_INLINE void tg__heap_sift_down(void **v, size_t n, size_t i,
                                        tg__heap_before_fn before,
                                        tg__heap_moved_fn moved)
{
    void *x = v[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t b = l;
        if (l + 1 < n && before(v[l + 1], v[l]))
            b = l + 1;
        if (!before(v[b], x))
            break;
        v[i] = v[b];
        if (moved)
            moved(v[i], i);
        i = b;
    }
    v[i] = x;
    if (moved)
        moved(x, i);
}

/** Order the `n` items of `v` into a heap, in O(n). */
TG__HEAP_INLINE void tg__heap_heapify(void **v, size_t n,
                                      tg__heap_before_fn before,
                                      tg__heap_moved_fn moved)
{
    for (size_t i = n / 2; i-- > 0;)
        tg__heap_sift_down(v, n, i, before, moved);
}

/** Restore the order after the key of v[i] changed either way. */
TG__HEAP_INLINE void tg__heap_fix(void **v, size_t n, size_t i,
                                  tg__heap_before_fn before,
                                  tg__heap_moved_fn moved)
{
    if (i > 0 && before(v[i], v[(i - 1) / 2]))
        tg__heap_sift_up(v, i, before, moved);
    else
        tg__heap_sift_down(v, n, i, before, moved);
}

/** Add `x`; capacity must have been reserved (h->n < h->cap). */
TG__HEAP_INLINE void tg__heap_push(tg__heap *h, void *x,
                                   tg__heap_before_fn before,
                                   tg__heap_moved_fn moved)
{
    size_t i = h->n++;
    h->items[i] = x;
    tg__heap_sift_up(h->items, i, before, moved);
}

/** Remove the item at index `i` (i < h->n). */
TG__HEAP_INLINE void tg__heap_remove_at(tg__heap *h, size_t i,
                                        tg__heap_before_fn before,
                                        tg__heap_moved_fn moved)
{
    void *last = h->items[--h->n];
    if (i == h->n)
        return;
    h->items[i] = last;
    tg__heap_fix(h->items, h->n, i, before, moved);
}

/** Remove and return the first item (the heap must not be empty). */
TG__HEAP_INLINE void *tg__heap_pop(tg__heap *h, tg__heap_before_fn before,
                                   tg__heap_moved_fn moved)
{
    void *x = h->items[0];
    tg__heap_remove_at(h, 0, before, moved);
    return x;
}

#endif
