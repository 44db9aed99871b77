/* SPDX-License-Identifier: Apache-2.0
 *
 * heap.h: the indexed binary heap that holds the READY tasks of one
 * function in the scheduling core. Nodes are embedded in the items (a
 * task embeds one tgs_heap_node) and record their own position, so an item
 * can be removed or re-prioritised in O(log n) without a search. Order:
 * higher priority first, then lower sequence number (FIFO among equals).
 * The heap never allocates while pushing: callers reserve capacity first,
 * which lets the core make every later state change infallible. libc only.
 */
#ifndef TGS_HEAP_H
#define TGS_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Embedded in every heap item. */
typedef struct tgs_heap_node {
    int32_t priority;
    uint32_t pos; /* index in the heap while the item is in one */
    uint64_t seq; /* submission order, the FIFO tie-break */
} tgs_heap_node;

typedef struct tgs_heap {
    tgs_heap_node **items;
    uint32_t n;
    uint32_t cap;
} tgs_heap;

/** True when `a` must come out before `b`. */
static inline bool tgs_heap_before(const tgs_heap_node *a,
                                   const tgs_heap_node *b)
{
    return a->priority > b->priority ||
           (a->priority == b->priority && a->seq < b->seq);
}

/** Free the item array (not the items). */
void tgs_heap_free(tgs_heap *h);

/**
 * Make sure the heap can hold `cap` items without allocating.
 * @return 0 or TGS_ENOMEM (heap unchanged).
 */
int tgs_heap_reserve(tgs_heap *h, size_t cap);

/** Add `x`; capacity must have been reserved (h->n < h->cap). */
void tgs_heap_push(tgs_heap *h, tgs_heap_node *x);

/** The first item, or NULL when empty. */
static inline tgs_heap_node *tgs_heap_top(const tgs_heap *h)
{
    return h->n ? h->items[0] : NULL;
}

/** Remove `x`, which must be in `h`. */
void tgs_heap_remove(tgs_heap *h, tgs_heap_node *x);

/** Restore the order after x->priority changed (x must be in `h`). */
void tgs_heap_update(tgs_heap *h, tgs_heap_node *x);

#endif
