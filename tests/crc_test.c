/* SPDX-License-Identifier: Apache-2.0
 *
 * crc_test.c: tg__crc32 (util/crc.h) against zlib's crc32, the reference
 * that Python's zlib.crc32 and Go's hash/crc32 IEEE agree with: every
 * length from 0 to 300 at every alignment 0..63 (the SIMD kernels have
 * head, body and tail paths), a 1 MiB chunk (TG_PROTO_CHUNK_MAX), known
 * answers, and NULL for no bytes. A peer in another language checks our
 * chunks with these numbers, so any difference is a broken wire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "util/crc.h"

static uint32_t ref(const uint8_t *p, size_t n)
{
    return (uint32_t)crc32(0L, n ? p : Z_NULL, (uInt)n);
}

static void test_known_answers(void **state)
{
    (void)state;
    /* The check value of CRC-32/ISO-HDLC (the catalogue's "123456789"). */
    assert_int_equal(tg__crc32("123456789", 9), 0xCBF43926u);
    assert_int_equal(tg__crc32(NULL, 0), 0);
    assert_int_equal(tg__crc32("", 0), 0);
}

static void test_every_length_and_alignment(void **state)
{
    uint8_t buf[64 + 300];
    uint32_t x = 12345;

    (void)state;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t align = 0; align < 64; align++)
        for (size_t n = 0; n <= 300; n++)
            if (tg__crc32(buf + align, n) != ref(buf + align, n))
                fail_msg("length %zu at alignment %zu: %08x, zlib %08x", n,
                         align, tg__crc32(buf + align, n), ref(buf + align, n));
}

static void test_a_whole_chunk(void **state)
{
    size_t n = (size_t)1 << 20;
    uint8_t *b = malloc(n + 1);

    (void)state;
    assert_non_null(b);
    for (size_t i = 0; i < n + 1; i++)
        b[i] = (uint8_t)(i * 31 + (i >> 9));
    assert_int_equal(tg__crc32(b, n), ref(b, n));
    assert_int_equal(tg__crc32(b + 1, n), ref(b + 1, n));
    /* In pieces, at uneven boundaries, as the relay checks a result
     * against chunks it forwarded. */
    {
        uint32_t crc = 0;
        size_t cuts[] = {0, 1, 17, 4096, 65537, 300000, n};

        for (size_t i = 0; i + 1 < sizeof(cuts) / sizeof(cuts[0]); i++)
            crc = tg__crc32_update(crc, b + cuts[i], cuts[i + 1] - cuts[i]);
        assert_int_equal(crc, ref(b, n));
    }
    b[n / 2] ^= 1; /* one flipped bit changes it */
    assert_int_not_equal(tg__crc32(b, n), ref(b + 1, n));
    assert_int_equal(tg__crc32(b, n), ref(b, n));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_every_length_and_alignment),
        cmocka_unit_test(test_a_whole_chunk),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
