/* SPDX-License-Identifier: Apache-2.0
 *
 * log.c: the daemons' stderr logger (see log.h). One fprintf per line, so
 * lines from several threads do not interleave.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "taskgrid/status.h"
#include "util/error.h"
#include "util/log.h"

/* Atomic: SetLogLevel changes it at run time while other threads log. */
static _Atomic int cur_level = TG__LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *component = "taskgrid";

int tg__log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            atomic_store_explicit(&cur_level, i, memory_order_relaxed);
            return TG_OK;
        }
    }
    return tg__error_set(TG_EINVAL,
                         "unknown log level '%s' (error, warn, info or "
                         "debug)",
                         name);
}

void tg__log_set_component(const char *name)
{
    component = name;
}

const char *tg__log_level_name(void)
{
    return level_names[atomic_load_explicit(&cur_level, memory_order_relaxed)];
}

int tg__log_enabled(tg__log_level level)
{
    return (int)level <= atomic_load_explicit(&cur_level, memory_order_relaxed);
}

/* Length of the valid UTF-8 sequence at `p` (at most `n` bytes), 0 if
 * none: no overlong forms, no surrogates, nothing past U+10FFFF, and no
 * C1 control (U+0080..U+009F), which some terminals obey. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    uint32_t cp;
    size_t len;

    if (p[0] < 0xC2 || p[0] > 0xF4)
        return 0;
    len = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
    if (n < len)
        return 0;
    cp = p[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF || cp < 0xA0)
        return 0;
    return len;
}

char *tg__log_quote(char *buf, size_t cap, const char *s, size_t len,
                    size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0, shown = len < max ? len : max;
    /* Room kept for the closing quote, the "..." and "(N bytes)". */
    const size_t tail = 32;

    if (cap < tail + 2) {
        if (cap > 0)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    while (i < shown && o + 4 < cap - tail) {
        unsigned char ch = p[i];
        size_t u = ch >= 0x80 ? utf8_len(p + i, shown - i) : 0;
        if (u > 0) {
            if (o + u >= cap - tail)
                break;
            memcpy(buf + o, p + i, u);
            o += u;
            i += u;
            continue;
        }
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            buf[o++] = '\\';
            buf[o++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else if (ch < 0x20 || ch >= 0x7F) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
        i++;
    }
    if (i < len)
        snprintf(buf + o, cap - o, "...\"(%zu bytes)", len);
    else
        snprintf(buf + o, cap - o, "\"");
    return buf;
}

void tg__log(tg__log_level level, const char *fmt, ...)
{
    static const char *tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
    char msg[2048], ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (!tg__log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", ts, now.tv_nsec / 1000000,
            tags[level], component, msg);
}
