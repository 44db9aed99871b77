/* SPDX-License-Identifier: Apache-2.0
 *
 * json.h: the small, strict JSON reader and writer behind the worker's
 * built-in functions (codec "json"). It reads RFC 8259 text into a tree of
 * tgw_json values and prints values back in compact form. Integers that
 * fit in int64 stay exact; other numbers are doubles, printed with the
 * fewest digits that read back to the same double. Depends on libc only.
 *
 * Why hand-rolled: the built-ins need numbers, strings, arrays and null
 * (objects and booleans come for free); a JSON library would be one more
 * system package for CI and every packager, for ~400 lines.
 */
#ifndef TGW_JSON_H
#define TGW_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tgw_json_type {
    TGW_JSON_NULL = 0,
    TGW_JSON_BOOL,
    TGW_JSON_INT,    /* an integer that fits in int64 */
    TGW_JSON_DOUBLE, /* any other number */
    TGW_JSON_STRING,
    TGW_JSON_ARRAY,
    TGW_JSON_OBJECT,
} tgw_json_type;

typedef struct tgw_json tgw_json;
typedef struct tgw_json_member tgw_json_member;

/* One JSON value. Strings, arrays and objects own their heap storage. */
struct tgw_json {
    tgw_json_type type;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            char *ptr; /* NUL-terminated (may also contain NULs: use len) */
            size_t len;
        } s;
        struct {
            tgw_json *items;
            size_t n;
        } a;
        struct {
            tgw_json_member *members; /* in input order */
            size_t n;
        } o;
    } u;
};

struct tgw_json_member {
    char *key; /* NUL-terminated */
    size_t key_len;
    tgw_json value;
};

/* Maximum nesting of arrays/objects accepted (guards the stack). */
#define TGW_JSON_MAX_DEPTH 128

/**
 * Parse exactly one JSON value (surrounded by optional whitespace) from
 * `len` bytes at `buf`.
 *
 * @param out receives the value; free it with tgw_json_free().
 * @param err receives a message naming the byte offset on failure (may
 *            be NULL), `errlen` bytes.
 * @return 0, or -1 on malformed input (nothing is left allocated).
 */
int tgw_json_parse(tgw_json *out, const uint8_t *buf, size_t len, char *err,
                   size_t errlen);

/** Free what `v` owns and reset it to null. NULL is a no-op. */
void tgw_json_free(tgw_json *v);

/** True for TGW_JSON_INT and TGW_JSON_DOUBLE. */
bool tgw_json_is_number(const tgw_json *v);

/** The value of a number as a double. */
double tgw_json_number(const tgw_json *v);

/** Name of a type for error messages ("number", "string", ...). */
const char *tgw_json_type_name(tgw_json_type t);

/* A growable byte buffer (the writer's output). */
typedef struct tgw_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    bool oom; /* set once an append failed; later appends are no-ops */
} tgw_buf;

/** Append `len` bytes. On OOM sets b->oom and returns -1. */
int tgw_buf_append(tgw_buf *b, const void *data, size_t len);

/** Free the buffer's storage and reset it. */
void tgw_buf_free(tgw_buf *b);

/**
 * Append the compact JSON text of `v` to `b`. Doubles that are not finite
 * (which JSON cannot represent) are written as null; a double with an
 * integral value keeps a ".0" so that it reads back as a float in every
 * language.
 *
 * @return 0, or -1 on OOM.
 */
int tgw_json_write(tgw_buf *b, const tgw_json *v);

#endif
