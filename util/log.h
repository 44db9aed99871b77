/* SPDX-License-Identifier: Apache-2.0
 *
 * log.h (internal): one-line logs to stderr for the daemons, with a level
 * set once at start-up ("error", "warn", "info", "debug"). Each line:
 * "2026-11-21T21:45:26.123Z INFO  scheduler: message".
 */
#ifndef TG_SRC_LOG_H
#define TG_SRC_LOG_H

typedef enum tg__log_level {
    TG__LOG_ERROR = 0,
    TG__LOG_WARN = 1,
    TG__LOG_INFO = 2,
    TG__LOG_DEBUG = 3,
} tg__log_level;

/* Set the level from a name: TG_OK, or TG_EINVAL for an unknown name. */
int tg__log_set_level(const char *name);
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
