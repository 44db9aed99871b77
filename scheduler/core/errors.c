/* SPDX-License-Identifier: Apache-2.0
 *
 * errors.c: the error records of failed and cancelled tasks. One record
 * (type, message, traceback, the key of the task that failed first and
 * the worker's serialized error, in one allocation) is shared, reference
 * counted, by a failed task and every dependent that inherits it, so that
 * failing a million dependents does not copy a traceback a million times.
 * Depends on internal.h.
 */
#include "scheduler/core/internal.h"

#include <stdarg.h>
#include <stdio.h>

tgs_str tgs__put_str(char **p, tgs_str s)
{
    tgs_str r = {*p, s.len};
    if (s.len)
        memcpy(*p, s.ptr, s.len);
    (*p)[s.len] = '\0';
    *p += s.len + 1;
    return r;
}

tgs_error *tgs__error_new(tgs_str type, tgs_str msg, tgs_str tb, tgs_str origin)
{
    return tgs__error_new_payload(type, msg, tb, origin, EMPTY, EMPTY);
}

tgs_error *tgs__error_new_payload(tgs_str type, tgs_str msg, tgs_str tb,
                                  tgs_str origin, tgs_str payload,
                                  tgs_str payload_codec)
{
    size_t total = sizeof(tgs_error) + 6;
    const tgs_str parts[6] = {type, msg, tb, origin, payload, payload_codec};
    for (int i = 0; i < 6; i++) {
        if (parts[i].len > SIZE_MAX - total)
            return NULL;
        total += parts[i].len;
    }
    tgs_error *e = malloc(total);
    if (e == NULL)
        return NULL;
    char *p = e->data;
    e->refs = 1;
    e->type = tgs__put_str(&p, type);
    e->message = tgs__put_str(&p, msg);
    e->traceback = tgs__put_str(&p, tb);
    e->origin = tgs__put_str(&p, origin);
    e->payload = tgs__put_str(&p, payload);
    e->payload_codec = tgs__put_str(&p, payload_codec);
    return e;
}

tgs_error *tgs__error_newf(const char *type, tgs_str origin, const char *fmt,
                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *msg = malloc((size_t)n + 1);
    if (msg == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tgs_error *e = tgs__error_new((tgs_str){type, strlen(type)},
                                  (tgs_str){msg, (size_t)n}, EMPTY, origin);
    free(msg);
    return e;
}

void tgs__error_unref(tgs_error *e)
{
    if (e != NULL && --e->refs == 0)
        free(e);
}
