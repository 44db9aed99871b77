/* SPDX-License-Identifier: Apache-2.0
 *
 * heap.c: the indexed binary heap of READY tasks (see heap.h). libc only;
 * status codes come from core.h.
 */
#include "scheduler/heap.h"

#include <stdlib.h>

#include "scheduler/core.h"

void tgs_heap_free(tgs_heap *h)
{
    free(h->items);
    h->items = NULL;
    h->n = h->cap = 0;
}

int tgs_heap_reserve(tgs_heap *h, size_t cap)
{
    if (cap <= h->cap)
        return TGS_OK;
    if (cap > UINT32_MAX)
        return TGS_ENOMEM;
    /* Grow geometrically so that many small reservations stay amortised
     * O(1) per item. */
    size_t ncap = h->cap ? (size_t)h->cap * 2 : 16;
    if (ncap < cap)
        ncap = cap;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    tgs_heap_node **items = realloc(h->items, ncap * sizeof *items);
    if (items == NULL)
        return TGS_ENOMEM;
    h->items = items;
    h->cap = (uint32_t)ncap;
    return TGS_OK;
}

static void set(tgs_heap *h, uint32_t i, tgs_heap_node *x)
{
    h->items[i] = x;
    x->pos = i;
}

static void sift_up(tgs_heap *h, uint32_t i)
{
    tgs_heap_node *x = h->items[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!tgs_heap_before(x, h->items[parent]))
            break;
        set(h, i, h->items[parent]);
        i = parent;
    }
    set(h, i, x);
}

static void sift_down(tgs_heap *h, uint32_t i)
{
    tgs_heap_node *x = h->items[i];
    for (;;) {
        size_t l = 2 * (size_t)i + 1;
        if (l >= h->n)
            break;
        size_t best = l;
        if (l + 1 < h->n && tgs_heap_before(h->items[l + 1], h->items[l]))
            best = l + 1;
        if (!tgs_heap_before(h->items[best], x))
            break;
        set(h, i, h->items[best]);
        i = (uint32_t)best;
    }
    set(h, i, x);
}

void tgs_heap_push(tgs_heap *h, tgs_heap_node *x)
{
    uint32_t i = h->n++;
    set(h, i, x);
    sift_up(h, i);
}

void tgs_heap_remove(tgs_heap *h, tgs_heap_node *x)
{
    uint32_t i = x->pos;
    tgs_heap_node *last = h->items[--h->n];
    if (last == x)
        return;
    set(h, i, last);
    tgs_heap_update(h, last);
}

void tgs_heap_update(tgs_heap *h, tgs_heap_node *x)
{
    uint32_t i = x->pos;
    if (i > 0 && tgs_heap_before(x, h->items[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}
