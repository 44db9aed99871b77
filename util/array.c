/* SPDX-License-Identifier: Apache-2.0
 *
 * array.c: geometric growth of caller-owned arrays (see array.h). libc
 * only.
 */
#include "util/array.h"

#include <stdlib.h>
#include <string.h>

tg_status tg__array_grow_to(void *pp, size_t *cap, size_t need, size_t size,
                            size_t first, size_t limit)
{
    if (need <= *cap)
        return TG_OK;
    if (need > limit)
        return TG_ENOMEM;
    size_t ncap = *cap ? *cap : (first ? first : 8);
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
    if (ncap > limit)
        ncap = limit; /* still >= need */
    if (ncap > SIZE_MAX / size)
        return TG_ENOMEM;
    void *p;
    memcpy(&p, pp, sizeof p);
    void *q = realloc(p, ncap * size);
    if (q == NULL)
        return TG_ENOMEM;
    memcpy(pp, &q, sizeof q);
    *cap = ncap;
    return TG_OK;
}
