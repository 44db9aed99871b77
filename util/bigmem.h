/* SPDX-License-Identifier: Apache-2.0
 *
 * bigmem.h: a hint for large buffers that are filled once, front to back
 * (a result received in chunks): back them with transparent huge pages
 * where the kernel allows it, so filling 1 GiB takes 512 page faults
 * instead of 262,144 (the faults were a quarter of the CPU of a worker to
 * worker transfer). Only a hint: with THP off, or on other systems, it
 * does nothing and the buffer works the same. libc only.
 */
#ifndef TG_UTIL_BIGMEM_H
#define TG_UTIL_BIGMEM_H

#include <stddef.h>

/** Hint that the `n` bytes at `p` (from malloc) are filled soon and
 * wholly; does nothing for small buffers. */
void tg__bigmem_hint(void *p, size_t n);

#endif
