/* SPDX-License-Identifier: Apache-2.0
 *
 * log.c: the daemons' stderr logger (see log.h). One fprintf per line, so
 * lines from several threads do not interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "taskgrid/status.h"
#include "util/error.h"
#include "util/log.h"

static int cur_level = TG__LOG_INFO;
static const char *component = "taskgrid";

int tg__log_set_level(const char *name)
{
    static const char *names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            cur_level = i;
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

int tg__log_enabled(tg__log_level level)
{
    return (int)level <= cur_level;
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
