/* SPDX-License-Identifier: Apache-2.0
 *
 * json.c: the worker's JSON rules over jansson (see json.h). jansson does
 * the strict RFC 8259 parsing (no trailing commas, comments, NaN, leading
 * zeros or single quotes, nothing after the value); this file adds the
 * nesting limit, integers beyond int64 read as doubles, offsets in error
 * messages, and a compact writer whose doubles carry no noise digits.
 * Depends on jansson, libc and util/error.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util/error.h"

/* Scalars at the top level, and "\u0000" in strings (the bytes round-trip
 * with their length). Duplicate keys are accepted, the last one wins. */
#define PARSE_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* The caller's text with ".0" after every integer beyond int64, and
 * where each was added (size_t offsets in the caller's text). */
typedef struct widened {
    tgw_buf text;
    tgw_buf at;
} widened;

/* Index just after the string that starts at buf[i] (a '"'). */
static size_t skip_string(const uint8_t *buf, size_t i, size_t len)
{
    for (i++; i < len && buf[i] != '"'; i++)
        if (buf[i] == '\\')
            i++;
    return i < len ? i + 1 : len;
}

/* Offset of the bracket that opens level TGW_JSON_MAX_DEPTH + 1 within the
 * first `end` bytes, or `end`. jansson's own limit is far deeper. */
static size_t too_deep_at(const uint8_t *buf, size_t end)
{
    int depth = 0;

    for (size_t i = 0; i < end; i++) {
        if (buf[i] == '"')
            i = skip_string(buf, i, end) - 1;
        else if ((buf[i] == '[' || buf[i] == '{') &&
                 ++depth > TGW_JSON_MAX_DEPTH)
            return i;
        else if (buf[i] == ']' || buf[i] == '}')
            depth--;
    }
    return end;
}

/* Whether the number token buf[i, j) is an integer beyond int64. */
static bool big_integer(const uint8_t *buf, size_t i, size_t j)
{
    char text[48];

    for (size_t k = i; k < j; k++)
        if (buf[k] < '0' || buf[k] > '9')
            if (k > i || buf[k] != '-')
                return false;
    if (j - i >= sizeof(text))
        return true;
    memcpy(text, buf + i, j - i);
    text[j - i] = '\0';
    errno = 0;
    (void)strtoll(text, NULL, 10);
    return errno == ERANGE;
}

/* jansson refuses integers beyond int64 ("too big integer"); the worker
 * has always read them as the nearest double. Copy the text with ".0"
 * after each, which jansson reads as a real of the same value. */
static int widen(widened *w, const uint8_t *buf, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t j = i + 1;

        if (buf[i] == '"') {
            j = skip_string(buf, i, len);
        } else if (buf[i] == '-' || (buf[i] >= '0' && buf[i] <= '9')) {
            while (j < len && buf[j] != '\0' &&
                   strchr("0123456789+-.eE", buf[j]) != NULL)
                j++;
        }
        tgw_buf_append(&w->text, buf + i, j - i);
        if (j - i > 1 && buf[i] != '"' && big_integer(buf, i, j)) {
            tgw_buf_append(&w->text, ".0", 2);
            tgw_buf_append(&w->at, &j, sizeof(j));
        }
        i = j;
    }
    return w->text.oom || w->at.oom ? TG_ENOMEM : TG_OK;
}

/* An offset in the text jansson parsed, as an offset in the caller's. */
static size_t caller_offset(const widened *w, size_t pos)
{
    const size_t *at = (const size_t *)w->at.ptr;
    size_t n = w->at.len / sizeof(size_t), orig = pos;

    for (size_t k = 0; k < n; k++) {
        size_t added = at[k] + 2 * k; /* where this ".0" starts */

        if (added >= pos)
            break;
        orig -= pos - added < 2 ? pos - added : 2;
    }
    return orig;
}

/* jansson gives where the failing token ends and quotes short tokens
 * ("invalid token near 'x'"); users are told where it starts. */
static size_t token_start(const json_error_t *e)
{
    const char *near = strstr(e->text, " near '");
    size_t pos = (size_t)e->position, n;

    if (near == NULL)
        return pos;
    n = strlen(near + 7);
    if (n == 0 || near[7 + n - 1] != '\'' || n - 1 > pos)
        return pos;
    return pos - (n - 1);
}

static int parse_error(const widened *w, const json_error_t *e)
{
    const char *eof = strstr(e->text, " near end of file");

    switch (json_error_code(e)) {
    case json_error_out_of_memory:
        return tg__error_set(TG_ENOMEM, "out of memory");
    case json_error_premature_end_of_input:
        if (eof != NULL)
            break;
        return tg__error_set(TG_EINVAL, "%s", e->text);
    default:
        break;
    }
    if (eof != NULL)
        return tg__error_set(TG_EINVAL, "%.*s at end of input",
                             (int)(eof - e->text), e->text);
    return tg__error_set(TG_EINVAL, "%s at offset %zu", e->text,
                         caller_offset(w, token_start(e)));
}

int tgw_json_parse(json_t **out, const uint8_t *buf, size_t len)
{
    widened w = {{0}, {0}};
    json_error_t e;
    json_t *v;
    size_t end, deep;
    int rc = TG_OK;

    *out = NULL;
    v = json_loadb((const char *)buf, len, PARSE_FLAGS, &e);
    if (v == NULL && json_error_code(&e) == json_error_numeric_overflow &&
        e.position > 0 && (size_t)e.position <= len &&
        buf[e.position - 1] >= '0' && buf[e.position - 1] <= '9') {
        if (widen(&w, buf, len) != TG_OK) {
            rc = tg__error_set(TG_ENOMEM, "out of memory");
            goto cleanup;
        }
        v = json_loadb((const char *)w.text.ptr, w.text.len, PARSE_FLAGS, &e);
    }
    /* The first error in the text wins, as in a reader that stops there. */
    end = v != NULL ? len : caller_offset(&w, (size_t)e.position);
    deep = too_deep_at(buf, end < len ? end : len);
    if (deep < end) {
        rc = tg__error_set(TG_EINVAL, "nesting too deep at offset %zu", deep);
        json_decref(v);
        goto cleanup;
    }
    if (v == NULL) {
        rc = parse_error(&w, &e);
        goto cleanup;
    }
    *out = v;
cleanup:
    tgw_buf_free(&w.text);
    tgw_buf_free(&w.at);
    return rc;
}

const char *tgw_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return "null";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_STRING:
        return "string";
    case JSON_ARRAY:
        return "array";
    case JSON_OBJECT:
        return "object";
    }
    return "value";
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

int tgw_buf_append(tgw_buf *b, const void *data, size_t len)
{
    if (b->oom)
        return TG_ENOMEM;
    if (len == 0)
        return TG_OK;
    if (b->len + len > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        uint8_t *p;

        while (nc < b->len + len)
            nc *= 2;
        p = realloc(b->ptr, nc);
        if (p == NULL) {
            b->oom = true;
            return tg__error_set(TG_ENOMEM, "out of memory");
        }
        b->ptr = p;
        b->cap = nc;
    }
    memcpy(b->ptr + b->len, data, len);
    b->len += len;
    return TG_OK;
}

void tgw_buf_free(tgw_buf *b)
{
    free(b->ptr);
    memset(b, 0, sizeof(*b));
}

/* The two-character escape of `c`, or 0 if it has none. */
static char escape_letter(uint8_t c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    }
    return 0;
}

static void write_string(tgw_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    tgw_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        tgw_buf_append(b, s + run, i - run);
        run = i + 1;
        if (escape_letter(c) != 0) {
            char esc[2] = {'\\', escape_letter(c)};

            tgw_buf_append(b, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

            tgw_buf_append(b, esc, 6);
        }
    }
    tgw_buf_append(b, s + run, len - run);
    tgw_buf_append(b, "\"", 1);
}

/* The shortest "%.*g" text that reads back as exactly `d`, so results do
 * not grow noise digits (0.1 + 0.2 prints 0.30000000000000004, 0.5 prints
 * 0.5). jansson's own writer always prints 17 digits. */
int tgw_json_write_double(tgw_buf *b, double d)
{
    char text[40];

    if (!isfinite(d))
        return tgw_buf_append(b, "null", 4);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, d);
        if (strtod(text, NULL) == d)
            break;
    }
    tgw_buf_append(b, text, strlen(text));
    /* Keep the float a float for readers that distinguish (Python, Go). */
    if (strpbrk(text, ".eE") == NULL)
        tgw_buf_append(b, ".0", 2);
    return b->oom ? TG_ENOMEM : TG_OK;
}

int tgw_json_write(tgw_buf *b, const json_t *v)
{
    char text[24];
    const char *key;
    size_t i, klen;
    json_t *m;

    switch (json_typeof(v)) {
    case JSON_NULL:
        tgw_buf_append(b, "null", 4);
        break;
    case JSON_TRUE:
        tgw_buf_append(b, "true", 4);
        break;
    case JSON_FALSE:
        tgw_buf_append(b, "false", 5);
        break;
    case JSON_INTEGER:
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        tgw_buf_append(b, text, strlen(text));
        break;
    case JSON_REAL:
        tgw_json_write_double(b, json_real_value(v));
        break;
    case JSON_STRING:
        write_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_ARRAY:
        tgw_buf_append(b, "[", 1);
        json_array_foreach(v, i, m)
        {
            if (i > 0)
                tgw_buf_append(b, ",", 1);
            tgw_json_write(b, m);
        }
        tgw_buf_append(b, "]", 1);
        break;
    case JSON_OBJECT:
        tgw_buf_append(b, "{", 1);
        i = 0;
        json_object_keylen_foreach((json_t *)v, key, klen, m)
        {
            if (i++ > 0)
                tgw_buf_append(b, ",", 1);
            write_string(b, key, klen);
            tgw_buf_append(b, ":", 1);
            tgw_json_write(b, m);
        }
        tgw_buf_append(b, "}", 1);
        break;
    }
    return b->oom ? TG_ENOMEM : TG_OK;
}
