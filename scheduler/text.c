/* SPDX-License-Identifier: Apache-2.0
 *
 * text.c: the growable text buffer and the Prometheus and JSON escapes of
 * text.h. libc only.
 */
#include "text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD in UTF-8 */

static bool reserve(tgs_text *t, size_t more)
{
    size_t need, cap;
    char *p;

    if (t->failed)
        return false;
    if (more > SIZE_MAX / 2 - t->len) {
        t->failed = true;
        return false;
    }
    need = t->len + more + 1;
    if (need <= t->cap)
        return true;
    cap = t->cap ? t->cap : 256;
    while (cap < need)
        cap *= 2;
    p = realloc(t->p, cap);
    if (p == NULL) {
        t->failed = true;
        return false;
    }
    t->p = p;
    t->cap = cap;
    return true;
}

void tgs_text_put(tgs_text *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

void tgs_text_str(tgs_text *t, const char *s)
{
    tgs_text_put(t, s, strlen(s));
}

void tgs_text_u64(tgs_text *t, unsigned long long v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%llu", v);

    tgs_text_put(t, b, (size_t)n);
}

void tgs_text_num(tgs_text *t, double v)
{
    char b[40];
    int n;

    if (!isfinite(v))
        v = 0;
    n = snprintf(b, sizeof(b), "%.9g", v);
    tgs_text_put(t, b, (size_t)n);
}

/* The length of the valid UTF-8 sequence at `s` (at most `n` bytes), or
 * 0 when it is not one (overlong forms, surrogates and values past
 * U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

void tgs_text_prom_label(tgs_text *t, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        size_t k = utf8_len(u + i, n - i);
        if (k == 0 ||
            (k == 1 && (u[i] < 0x20 || u[i] == 0x7f) && u[i] != '\n')) {
            tgs_text_str(t, REPLACEMENT);
            i++;
        } else if (u[i] == '\\') {
            tgs_text_put(t, "\\\\", 2), i++;
        } else if (u[i] == '"') {
            tgs_text_put(t, "\\\"", 2), i++;
        } else if (u[i] == '\n') {
            tgs_text_put(t, "\\n", 2), i++;
        } else {
            tgs_text_put(t, s + i, k);
            i += k;
        }
    }
}

void tgs_text_json(tgs_text *t, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    tgs_text_put(t, "\"", 1);
    while (i < n) {
        size_t k = utf8_len(u + i, n - i);
        char b[8];
        if (k == 0) {
            tgs_text_str(t, REPLACEMENT);
            i++;
        } else if (u[i] == '"' || u[i] == '\\') {
            b[0] = '\\', b[1] = (char)u[i];
            tgs_text_put(t, b, 2), i++;
        } else if (u[i] < 0x20 || u[i] == 0x7f || u[i] == '<' || u[i] == '>' ||
                   u[i] == '&') {
            snprintf(b, sizeof(b), "\\u%04x", u[i]);
            tgs_text_put(t, b, 6), i++;
        } else {
            tgs_text_put(t, s + i, k);
            i += k;
        }
    }
    tgs_text_put(t, "\"", 1);
}

void tgs_text_free(tgs_text *t)
{
    free(t->p);
    memset(t, 0, sizeof(*t));
}
