/* SPDX-License-Identifier: Apache-2.0
 *
 * crc.c: CRC-32 through Intel's ISA-L (Debian's libisal-dev), which picks
 * a carry-less-multiply kernel for the CPU at run time: about 40 GB/s on
 * an AVX-512 core against zlib 1.2's 2 GB/s, which at two checks per
 * chunk (sender and receiver) was a quarter of the CPU of a worker to
 * worker transfer. crc32_gzip_refl is the reflected IEEE CRC that zlib
 * computes (tests/crc_test.c checks them against each other).
 */
#include <isa-l/crc.h>

#include "crc.h"

uint32_t tg__crc32_update(uint32_t crc, const void *p, size_t n)
{
    static const unsigned char empty;

    return crc32_gzip_refl(crc, p != NULL ? p : &empty, (uint64_t)n);
}

uint32_t tg__crc32(const void *p, size_t n)
{
    return tg__crc32_update(0, p, n);
}
