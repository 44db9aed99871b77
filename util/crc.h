/* SPDX-License-Identifier: Apache-2.0
 *
 * crc.h: the CRC-32 of the data plane's chunks (DataChunk.crc32): the
 * IEEE polynomial, reflected, as zlib's crc32() and Go's hash/crc32
 * IEEE compute it, so every language's peer checks the same number.
 */
#ifndef TG_UTIL_CRC_H
#define TG_UTIL_CRC_H

#include <stddef.h>
#include <stdint.h>

/** The CRC-32 of `n` bytes at `p` (p may be NULL when n is 0). */
uint32_t tg__crc32(const void *p, size_t n);

/** The CRC-32 of the bytes that gave `crc` followed by `n` more at `p`
 * (as zlib's crc32(crc, p, n); `crc` 0 to start). */
uint32_t tg__crc32_update(uint32_t crc, const void *p, size_t n);

#endif
