/* SPDX-License-Identifier: Apache-2.0
 *
 * text.h (private to taskgrid-scheduler): a growable text buffer and the
 * two escapes the scheduler's HTTP port needs for strings that come from
 * the network (task keys, function and worker names): a Prometheus label
 * value (text format 0.0.4) and a JSON string. Both write valid UTF-8
 * whatever the input: a byte that does not start a valid sequence becomes
 * U+FFFD, so a hostile name can neither break the format nor the reader's
 * decoder. libc only.
 */
#ifndef TGS_TEXT_H
#define TGS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tgs_text {
    char *p; /* NUL-terminated while not failed; owned (free) */
    size_t len, cap;
    bool failed; /* out of memory: the text is incomplete */
} tgs_text;

/** Append `n` bytes of `s`. */
void tgs_text_put(tgs_text *t, const char *s, size_t n);
/** Append a NUL-terminated string. */
void tgs_text_str(tgs_text *t, const char *s);
/** Append an unsigned number in decimal. */
void tgs_text_u64(tgs_text *t, unsigned long long v);
/** Append a number as Prometheus and JSON both read it ("%.9g"; NaN and
 * infinities as 0, which JSON could not carry). */
void tgs_text_num(tgs_text *t, double v);
/**
 * Append `s` (`n` bytes, need not be NUL-terminated) as the inside of a
 * Prometheus label value: `\` as `\\`, `"` as `\"`, a newline as `\n`;
 * other control characters become U+FFFD, and so does each byte of
 * invalid UTF-8.
 */
void tgs_text_prom_label(tgs_text *t, const char *s, size_t n);
/**
 * Append `s` as a JSON string, quotes included: `"` and `\` escaped,
 * control characters as \uXXXX, `<` `>` `&` as \u003c... (so the text is
 * safe inside HTML too), invalid UTF-8 as U+FFFD.
 */
void tgs_text_json(tgs_text *t, const char *s, size_t n);
/** Free the buffer and reset `t`. */
void tgs_text_free(tgs_text *t);

#endif
