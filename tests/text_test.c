/* SPDX-License-Identifier: Apache-2.0
 *
 * text_test.c: the escapes of the scheduler's HTTP port (scheduler/text.h)
 * against hostile strings: quotes, backslashes, newlines and other control
 * characters, invalid UTF-8 (stray continuation bytes, overlong forms,
 * surrogates, truncated sequences), and valid multi-byte text kept as is.
 * No network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/text.h"

static char *prom(const char *s, size_t n)
{
    static tgs_text t;

    tgs_text_free(&t);
    tgs_text_prom_label(&t, s, n);
    return t.p ? t.p : "";
}

static char *json(const char *s, size_t n)
{
    static tgs_text t;

    tgs_text_free(&t);
    tgs_text_json(&t, s, n);
    return t.p;
}

static void test_text__prom_label_escapes(void **state)
{
    (void)state;
    assert_string_equal(prom("plain-1", 7), "plain-1");
    assert_string_equal(prom("a\"b", 3), "a\\\"b");
    assert_string_equal(prom("a\\b", 3), "a\\\\b");
    assert_string_equal(prom("a\nb", 3), "a\\nb");
    assert_string_equal(prom("\\n", 2), "\\\\n"); /* not a newline */
    assert_string_equal(prom("a\rb\tc", 5), "a\xef\xbf\xbd"
                                            "b\xef\xbf\xbd"
                                            "c");
    /* A NUL inside the given length is a control character too. */
    assert_string_equal(prom("a\0b", 3), "a\xef\xbf\xbd"
                                         "b");
    assert_string_equal(prom("", 0), "");
}

static void test_text__invalid_utf8_is_replaced(void **state)
{
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"\xc3\xa9t\xc3\xa9", 5, "\xc3\xa9t\xc3\xa9"}, /* été, kept */
        {"\xe2\x82\xac", 3, "\xe2\x82\xac"},           /* euro sign */
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},   /* emoji */
        {"\x80", 1, "\xef\xbf\xbd"},                   /* stray */
        {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},   /* overlong '/' */
        {"\xed\xa0\x80", 3,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},    /* surrogate */
        {"\xe2\x82", 2, "\xef\xbf\xbd\xef\xbf\xbd"}, /* truncated */
        {"\xf4\x90\x80\x80", 4,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(prom(cases[i].in, cases[i].n), cases[i].out);
    assert_string_equal(json("\xff", 1), "\"\xef\xbf\xbd\"");
}

static void test_text__json_string(void **state)
{
    (void)state;
    assert_string_equal(json("k", 1), "\"k\"");
    assert_string_equal(json("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    assert_string_equal(json("\n\x01\x7f", 3), "\"\\u000a\\u0001\\u007f\"");
    /* Safe inside HTML too. */
    assert_string_equal(json("</script>&", 10),
                        "\"\\u003c/script\\u003e\\u0026\"");
    assert_string_equal(json("\xc3\xa9", 2), "\"\xc3\xa9\"");
}

static void test_text__numbers_and_growth(void **state)
{
    tgs_text t = {0};

    (void)state;
    tgs_text_u64(&t, 18446744073709551615ull);
    tgs_text_str(&t, " ");
    tgs_text_num(&t, 0.00025);
    tgs_text_str(&t, " ");
    tgs_text_num(&t, 1.0 / 0.0); /* never "inf": JSON could not carry it */
    assert_string_equal(t.p, "18446744073709551615 0.00025 0");
    for (int i = 0; i < 100000; i++)
        tgs_text_put(&t, "xy", 2);
    assert_false(t.failed);
    assert_int_equal(t.len, strlen(t.p));
    tgs_text_free(&t);
    assert_null(t.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text__prom_label_escapes),
        cmocka_unit_test(test_text__invalid_utf8_is_replaced),
        cmocka_unit_test(test_text__json_string),
        cmocka_unit_test(test_text__numbers_and_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
