/* SPDX-License-Identifier: Apache-2.0
 *
 * status.c: tg_strerror/tg_status_name from the TG_STATUS_MAP table, and
 * the per-thread last-error message (tg__error_set, tg_error_last).
 */
#include <stdarg.h>
#include <stdio.h>

#include "taskgrid/status.h"
#include "util/error.h"

const char *tg_strerror(int status)
{
    switch (status) {
#define TG__CASE(name, value, desc) \
    case value:                     \
        return desc;
        TG_STATUS_MAP(TG__CASE)
#undef TG__CASE
    }
    return "unknown status";
}

const char *tg_status_name(int status)
{
    switch (status) {
#define TG__CASE(name, value, desc) \
    case value:                     \
        return #name;
        TG_STATUS_MAP(TG__CASE)
#undef TG__CASE
    }
    return "TG_UNKNOWN";
}

static _Thread_local char last_error[1024];

const char *tg_error_last(void)
{
    return last_error;
}

int tg__error_set(int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return status;
}

void tg__error_clear(void)
{
    last_error[0] = '\0';
}
