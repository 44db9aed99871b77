/* SPDX-License-Identifier: Apache-2.0
 *
 * json.c: a strict recursive-descent JSON reader and a compact writer (see
 * json.h). Strict means RFC 8259 exactly: no trailing commas, comments,
 * NaN, leading zeros or single quotes, and nothing after the value but
 * whitespace, so malformed input fails loudly instead of being guessed at.
 * Depends on libc only.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct parser {
    const uint8_t *p;
    const uint8_t *start;
    const uint8_t *end;
    char *err;
    size_t errlen;
    int depth;
} parser;

static int fail(parser *ps, const char *what)
{
    if (ps->err != NULL && ps->errlen > 0) {
        size_t off = (size_t)(ps->p - ps->start);

        if (ps->p < ps->end)
            snprintf(ps->err, ps->errlen, "%s at offset %zu", what, off);
        else
            snprintf(ps->err, ps->errlen, "%s at end of input", what);
    }
    return -1;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
                               *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int parse_value(parser *ps, tgw_json *out);

static int expect_word(parser *ps, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "invalid literal");
    ps->p += n;
    return 0;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/*
 * Numbers: validate the RFC grammar by hand (strtod alone would accept
 * "0x1f", "inf", " 1" and leading '+'), then convert. An integer without
 * fraction or exponent that fits in int64 stays exact; anything else is a
 * double.
 */
static int parse_number(parser *ps, tgw_json *out)
{
    const uint8_t *s = ps->p;
    bool integral = true;
    char small[64];
    char *text = small;
    size_t n;

    if (ps->p < ps->end && *ps->p == '-')
        ps->p++;
    if (ps->p >= ps->end || !is_digit(*ps->p))
        return fail(ps, "invalid number");
    if (*ps->p == '0') {
        ps->p++;
        if (ps->p < ps->end && is_digit(*ps->p))
            return fail(ps, "leading zero in number");
    } else {
        while (ps->p < ps->end && is_digit(*ps->p))
            ps->p++;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        integral = false;
        ps->p++;
        if (ps->p >= ps->end || !is_digit(*ps->p))
            return fail(ps, "digit expected after '.'");
        while (ps->p < ps->end && is_digit(*ps->p))
            ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        integral = false;
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            ps->p++;
        if (ps->p >= ps->end || !is_digit(*ps->p))
            return fail(ps, "digit expected in exponent");
        while (ps->p < ps->end && is_digit(*ps->p))
            ps->p++;
    }
    /* strtoll/strtod need a NUL-terminated copy. */
    n = (size_t)(ps->p - s);
    if (n >= sizeof(small)) {
        text = malloc(n + 1);
        if (text == NULL)
            return fail(ps, "out of memory");
    }
    memcpy(text, s, n);
    text[n] = '\0';
    errno = 0;
    if (integral) {
        long long v = strtoll(text, NULL, 10);

        if (errno == 0) {
            out->type = TGW_JSON_INT;
            out->u.i = (int64_t)v;
            goto done;
        }
        errno = 0; /* out of int64 range: keep it as a double */
    }
    out->type = TGW_JSON_DOUBLE;
    out->u.d = strtod(text, NULL);
    /* Overflow to ±HUGE_VAL is the nearest double JSON allows us; keep it
     * (it prints back as null). Underflow to 0 is fine. */
done:
    if (text != small)
        free(text);
    return 0;
}

static int hex4(parser *ps, unsigned *out)
{
    unsigned v = 0;

    if (ps->end - ps->p < 4)
        return fail(ps, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        uint8_t c = ps->p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return fail(ps, "invalid \\u escape");
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static int put_utf8(tgw_buf *b, unsigned cp)
{
    uint8_t u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return tgw_buf_append(b, u, n);
}

/* Reads a string after its opening quote into a NUL-terminated heap copy
 * with escapes decoded. Raw bytes >= 0x20 are copied as they are (UTF-8 is
 * not re-validated: the bytes round-trip unchanged). */
static int parse_string_raw(parser *ps, char **out, size_t *outlen)
{
    tgw_buf b = {0};

    for (;;) {
        const uint8_t *run = ps->p;
        uint8_t c;

        while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' &&
               *ps->p >= 0x20)
            ps->p++;
        tgw_buf_append(&b, run, (size_t)(ps->p - run));
        if (ps->p >= ps->end) {
            tgw_buf_free(&b);
            return fail(ps, "unterminated string");
        }
        c = *ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            tgw_buf_free(&b);
            return fail(ps, "control character in string");
        }
        /* a backslash escape */
        ps->p++;
        if (ps->p >= ps->end) {
            tgw_buf_free(&b);
            return fail(ps, "unterminated string");
        }
        c = *ps->p++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            tgw_buf_append(&b, &c, 1);
            break;
        case 'b':
            tgw_buf_append(&b, "\b", 1);
            break;
        case 'f':
            tgw_buf_append(&b, "\f", 1);
            break;
        case 'n':
            tgw_buf_append(&b, "\n", 1);
            break;
        case 'r':
            tgw_buf_append(&b, "\r", 1);
            break;
        case 't':
            tgw_buf_append(&b, "\t", 1);
            break;
        case 'u': {
            unsigned cp, lo;

            if (hex4(ps, &cp) != 0) {
                tgw_buf_free(&b);
                return -1;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                tgw_buf_free(&b);
                return fail(ps, "unpaired surrogate in \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' ||
                    ps->p[1] != 'u') {
                    tgw_buf_free(&b);
                    return fail(ps, "unpaired surrogate in \\u escape");
                }
                ps->p += 2;
                if (hex4(ps, &lo) != 0) {
                    tgw_buf_free(&b);
                    return -1;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    tgw_buf_free(&b);
                    return fail(ps, "unpaired surrogate in \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(&b, cp);
            break;
        }
        default:
            ps->p--;
            tgw_buf_free(&b);
            return fail(ps, "invalid escape in string");
        }
    }
    /* NUL-terminate (also gives a non-NULL pointer for ""). */
    tgw_buf_append(&b, "", 1);
    if (b.oom) {
        tgw_buf_free(&b);
        return fail(ps, "out of memory");
    }
    *out = (char *)b.ptr;
    *outlen = b.len - 1;
    return 0;
}

/* Grow a heap array of `size`-byte elements to hold n + 1. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    void *p;
    size_t nc;

    if (n < *cap)
        return 0;
    nc = *cap ? *cap * 2 : 4;
    p = realloc(*arr, nc * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static int parse_array(parser *ps, tgw_json *out)
{
    tgw_json *items = NULL;
    size_t n = 0, cap = 0;

    ps->p++; /* '[' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        goto ok;
    }
    for (;;) {
        if (grow((void **)&items, &cap, n, sizeof(*items)) != 0) {
            fail(ps, "out of memory");
            goto error;
        }
        skip_ws(ps);
        if (parse_value(ps, &items[n]) != 0)
            goto error;
        n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            break;
        }
        fail(ps, "',' or ']' expected in array");
        goto error;
    }
ok:
    out->type = TGW_JSON_ARRAY;
    out->u.a.items = items;
    out->u.a.n = n;
    return 0;
error:
    for (size_t i = 0; i < n; i++)
        tgw_json_free(&items[i]);
    free(items);
    return -1;
}

static int parse_object(parser *ps, tgw_json *out)
{
    tgw_json_member *m = NULL;
    size_t n = 0, cap = 0;

    ps->p++; /* '{' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        goto ok;
    }
    for (;;) {
        if (grow((void **)&m, &cap, n, sizeof(*m)) != 0) {
            fail(ps, "out of memory");
            goto error;
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            fail(ps, "string key expected in object");
            goto error;
        }
        ps->p++;
        if (parse_string_raw(ps, &m[n].key, &m[n].key_len) != 0)
            goto error;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            free(m[n].key);
            fail(ps, "':' expected in object");
            goto error;
        }
        ps->p++;
        skip_ws(ps);
        if (parse_value(ps, &m[n].value) != 0) {
            free(m[n].key);
            goto error;
        }
        n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        fail(ps, "',' or '}' expected in object");
        goto error;
    }
ok:
    out->type = TGW_JSON_OBJECT;
    out->u.o.members = m;
    out->u.o.n = n;
    return 0;
error:
    for (size_t i = 0; i < n; i++) {
        free(m[i].key);
        tgw_json_free(&m[i].value);
    }
    free(m);
    return -1;
}

static int parse_value(parser *ps, tgw_json *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (ps->p >= ps->end)
        return fail(ps, "value expected");
    switch (*ps->p) {
    case 'n':
        return expect_word(ps, "null");
    case 't':
        out->type = TGW_JSON_BOOL;
        out->u.b = true;
        return expect_word(ps, "true");
    case 'f':
        out->type = TGW_JSON_BOOL;
        out->u.b = false;
        return expect_word(ps, "false");
    case '"':
        ps->p++;
        rc = parse_string_raw(ps, &out->u.s.ptr, &out->u.s.len);
        if (rc == 0)
            out->type = TGW_JSON_STRING;
        return rc;
    case '[':
    case '{':
        if (++ps->depth > TGW_JSON_MAX_DEPTH)
            return fail(ps, "nesting too deep");
        rc = *ps->p == '[' ? parse_array(ps, out) : parse_object(ps, out);
        ps->depth--;
        return rc;
    default:
        if (*ps->p == '-' || is_digit(*ps->p))
            return parse_number(ps, out);
        return fail(ps, "unexpected character");
    }
}

int tgw_json_parse(tgw_json *out, const uint8_t *buf, size_t len, char *err,
                   size_t errlen)
{
    parser ps = {buf, buf, buf + len, err, errlen, 0};

    memset(out, 0, sizeof(*out));
    skip_ws(&ps);
    if (parse_value(&ps, out) != 0)
        return -1;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        tgw_json_free(out);
        return fail(&ps, "unexpected data after the value");
    }
    return 0;
}

void tgw_json_free(tgw_json *v)
{
    if (v == NULL)
        return;
    switch (v->type) {
    case TGW_JSON_STRING:
        free(v->u.s.ptr);
        break;
    case TGW_JSON_ARRAY:
        for (size_t i = 0; i < v->u.a.n; i++)
            tgw_json_free(&v->u.a.items[i]);
        free(v->u.a.items);
        break;
    case TGW_JSON_OBJECT:
        for (size_t i = 0; i < v->u.o.n; i++) {
            free(v->u.o.members[i].key);
            tgw_json_free(&v->u.o.members[i].value);
        }
        free(v->u.o.members);
        break;
    default:
        break;
    }
    memset(v, 0, sizeof(*v));
}

bool tgw_json_is_number(const tgw_json *v)
{
    return v->type == TGW_JSON_INT || v->type == TGW_JSON_DOUBLE;
}

double tgw_json_number(const tgw_json *v)
{
    return v->type == TGW_JSON_INT ? (double)v->u.i : v->u.d;
}

const char *tgw_json_type_name(tgw_json_type t)
{
    switch (t) {
    case TGW_JSON_NULL:
        return "null";
    case TGW_JSON_BOOL:
        return "boolean";
    case TGW_JSON_INT:
    case TGW_JSON_DOUBLE:
        return "number";
    case TGW_JSON_STRING:
        return "string";
    case TGW_JSON_ARRAY:
        return "array";
    case TGW_JSON_OBJECT:
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
        return -1;
    if (len == 0)
        return 0;
    if (b->len + len > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        uint8_t *p;

        while (nc < b->len + len)
            nc *= 2;
        p = realloc(b->ptr, nc);
        if (p == NULL) {
            b->oom = true;
            return -1;
        }
        b->ptr = p;
        b->cap = nc;
    }
    memcpy(b->ptr + b->len, data, len);
    b->len += len;
    return 0;
}

void tgw_buf_free(tgw_buf *b)
{
    free(b->ptr);
    memset(b, 0, sizeof(*b));
}

static void write_string(tgw_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    tgw_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        char esc[6];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        tgw_buf_append(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        tgw_buf_append(b, esc, n);
    }
    tgw_buf_append(b, s + run, len - run);
    tgw_buf_append(b, "\"", 1);
}

/* The shortest "%.*g" text that reads back as exactly `d`, so results do
 * not grow noise digits (0.1 + 0.2 prints 0.30000000000000004, 0.5 prints
 * 0.5). */
static void write_double(tgw_buf *b, double d)
{
    char text[40];

    if (!isfinite(d)) {
        tgw_buf_append(b, "null", 4);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, d);
        if (strtod(text, NULL) == d)
            break;
    }
    tgw_buf_append(b, text, strlen(text));
    /* Keep the float a float for readers that distinguish (Python, Go). */
    if (strpbrk(text, ".eE") == NULL)
        tgw_buf_append(b, ".0", 2);
}

int tgw_json_write(tgw_buf *b, const tgw_json *v)
{
    char text[24];

    switch (v->type) {
    case TGW_JSON_NULL:
        tgw_buf_append(b, "null", 4);
        break;
    case TGW_JSON_BOOL:
        if (v->u.b)
            tgw_buf_append(b, "true", 4);
        else
            tgw_buf_append(b, "false", 5);
        break;
    case TGW_JSON_INT:
        snprintf(text, sizeof(text), "%" PRId64, v->u.i);
        tgw_buf_append(b, text, strlen(text));
        break;
    case TGW_JSON_DOUBLE:
        write_double(b, v->u.d);
        break;
    case TGW_JSON_STRING:
        write_string(b, v->u.s.ptr, v->u.s.len);
        break;
    case TGW_JSON_ARRAY:
        tgw_buf_append(b, "[", 1);
        for (size_t i = 0; i < v->u.a.n; i++) {
            if (i > 0)
                tgw_buf_append(b, ",", 1);
            tgw_json_write(b, &v->u.a.items[i]);
        }
        tgw_buf_append(b, "]", 1);
        break;
    case TGW_JSON_OBJECT:
        tgw_buf_append(b, "{", 1);
        for (size_t i = 0; i < v->u.o.n; i++) {
            if (i > 0)
                tgw_buf_append(b, ",", 1);
            write_string(b, v->u.o.members[i].key, v->u.o.members[i].key_len);
            tgw_buf_append(b, ":", 1);
            tgw_json_write(b, &v->u.o.members[i].value);
        }
        tgw_buf_append(b, "}", 1);
        break;
    }
    return b->oom ? -1 : 0;
}
