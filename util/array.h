/* SPDX-License-Identifier: Apache-2.0
 *
 * array.h: the one growable-array helper of taskgrid. A growable array is
 * a plain pointer and a capacity kept by the caller (no wrapper struct, so
 * it fits tightly packed records such as a scheduler task); this grows
 * the allocation geometrically, so n appends cost O(n) in all. Depends on
 * libc and the public status codes (taskgrid/status.h) only, so the pure
 * scheduling core can use it.
 */
#ifndef TG_UTIL_ARRAY_H
#define TG_UTIL_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

/**
 * Make the array at `*pp` hold at least `need` items of `size` bytes.
 * Its capacity doubles, starting from `first` when it is 0, until it is
 * at least `need`, and never exceeds `limit` items (so a caller storing
 * the capacity in a uint32_t passes UINT32_MAX).
 *
 * @param pp     the address of the array pointer (`&v` for any `T *v`;
 *               read and written with memcpy, so any object pointer type
 *               is fine); `*pp` may be NULL when `*cap` is 0
 * @param cap    its capacity in items, updated
 * @param need   items it must hold
 * @param size   bytes per item (> 0)
 * @param first  capacity of a first allocation (0: 8)
 * @param limit  largest capacity allowed
 * @return TG_OK (nothing done if `need` <= `*cap`), or TG_ENOMEM when the
 *         allocation fails or would pass `limit` or SIZE_MAX bytes; then
 *         `*pp` and `*cap` are unchanged (the old array stays valid).
 */
tg_status tg__array_grow_to(void *pp, size_t *cap, size_t need, size_t size,
                            size_t first, size_t limit);

/** tg__array_grow_to with a first capacity of 8 and no limit but memory. */
static inline tg_status tg__array_grow(void *pp, size_t *cap, size_t need,
                                       size_t size)
{
    if (need <= *cap)
        return TG_OK; /* the common case, inline */
    return tg__array_grow_to(pp, cap, need, size, 8, SIZE_MAX);
}

#endif
