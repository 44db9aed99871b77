/* SPDX-License-Identifier: Apache-2.0
 *
 * log.h (internal): one-line logs to stderr for the daemons, with a level
 * set at start-up ("error", "warn", "info", "debug") and changeable at
 * run time (tg__log_set_level; the level is read once per line). Each line:
 * "2026-11-21T21:45:26.123Z INFO  scheduler: message".
 */
#ifndef TG_SRC_LOG_H
#define TG_SRC_LOG_H

#include <stddef.h>

typedef enum tg__log_level {
    TG__LOG_ERROR = 0,
    TG__LOG_WARN = 1,
    TG__LOG_INFO = 2,
    TG__LOG_DEBUG = 3,
} tg__log_level;

/* Set the level from a name: TG_OK, or TG_EINVAL for an unknown name. */
int tg__log_set_level(const char *name);
/* The current level's name ("info"; static string). */
const char *tg__log_level_name(void);
/*
 * Write `s` (`len` bytes from the network: a key, a worker name) to `buf`
 * as a double-quoted log value that cannot forge a line or a field: `"`
 * and `\` are escaped, control bytes and bytes that are not valid UTF-8
 * become \xNN (\n, \r, \t as such); valid UTF-8 text stays readable. At
 * most `max` bytes of `s` are shown; a longer one ends in `..."` followed
 * by `(N bytes)`. Always NUL-terminated; `cap` of at least 16 bytes (the
 * value is cut, never split inside an escape, when `buf` is too small).
 * Returns `buf`.
 */
char *tg__log_quote(char *buf, size_t cap, const char *s, size_t len,
                    size_t max);
/* The component name printed on each line (borrowed; static string). */
void tg__log_set_component(const char *name);
/* True if `level` would be printed (to skip building costly messages). */
int tg__log_enabled(tg__log_level level);
void tg__log(tg__log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define TG_LOG_ERROR(...) tg__log(TG__LOG_ERROR, __VA_ARGS__)
#define TG_LOG_WARN(...) tg__log(TG__LOG_WARN, __VA_ARGS__)
#define TG_LOG_INFO(...) tg__log(TG__LOG_INFO, __VA_ARGS__)
#define TG_LOG_DEBUG(...)                        \
    do {                                         \
        if (tg__log_enabled(TG__LOG_DEBUG))      \
            tg__log(TG__LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif
