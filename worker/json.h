/* SPDX-License-Identifier: Apache-2.0
 *
 * json.h: strict reading and compact writing of the JSON behind the
 * worker's built-in functions (codec "json"). Values are jansson's json_t;
 * this layer adds the worker's rules on top: exactly one value and nothing
 * after it, at most TGW_JSON_MAX_DEPTH levels, integers kept exact while
 * they fit in int64 (larger ones become doubles), errors naming the byte
 * offset, and doubles printed with the fewest digits that read back to the
 * same double. Depends on jansson and the status enum.
 */
#ifndef TGW_JSON_H
#define TGW_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

/* Maximum nesting of arrays/objects accepted. */
#define TGW_JSON_MAX_DEPTH 128

/**
 * Parse exactly one JSON value (surrounded by optional whitespace) from
 * `len` bytes at `buf`.
 *
 * @param out receives a new reference (NULL on failure); release it with
 *            json_decref().
 * @return TG_OK; TG_EINVAL for malformed input, with a message naming the
 *         byte offset in tg_error_last(); TG_ENOMEM.
 */
int tgw_json_parse(json_t **out, const uint8_t *buf, size_t len);

/** Name of the type of `v` for error messages ("number", "string", ...). */
const char *tgw_json_type_name(const json_t *v);

/* A growable byte buffer (the writer's output). */
typedef struct tgw_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    bool oom; /* set once an append failed; later appends are no-ops */
} tgw_buf;

/** Append `len` bytes. @return TG_OK, or TG_ENOMEM (then b->oom is set). */
int tgw_buf_append(tgw_buf *b, const void *data, size_t len);

/** Free the buffer's storage and reset it. */
void tgw_buf_free(tgw_buf *b);

/**
 * Append the compact JSON text of `v` to `b`.
 *
 * @return TG_OK, or TG_ENOMEM.
 */
int tgw_json_write(tgw_buf *b, const json_t *v);

/**
 * Append a double as JSON: the shortest text that reads back as `d`, with
 * ".0" kept on integral values so that it reads back as a float in every
 * language; null if `d` is not finite (JSON cannot represent it).
 *
 * @return TG_OK, or TG_ENOMEM.
 */
int tgw_json_write_double(tgw_buf *b, double d);

#endif
