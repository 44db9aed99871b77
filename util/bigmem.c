/* SPDX-License-Identifier: Apache-2.0
 *
 * bigmem.c: see bigmem.h. glibc serves large mallocs from their own
 * mmap, so the 2 MiB-aligned interior of such a buffer can be advised
 * with MADV_HUGEPAGE (honoured when /sys/kernel/mm/transparent_hugepage
 * says "madvise" or "always") without changing how it is freed.
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <sys/mman.h>

#include "bigmem.h"

#define HUGE_PAGE ((uintptr_t)2 << 20)
/* Below this, huge pages save too few faults to be worth a syscall. */
#define HINT_MIN ((size_t)8 << 20)

void tg__bigmem_hint(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t end = ((uintptr_t)p + n) & ~(HUGE_PAGE - 1);

    if (p == NULL || n < HINT_MIN || end <= start)
        return;
    (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}
