/* SPDX-License-Identifier: Apache-2.0
 *
 * error.h (internal): setting the per-thread last-error message that
 * tg_error_last() returns.
 */
#ifndef TG_SRC_ERROR_H
#define TG_SRC_ERROR_H

/* Record a formatted message for tg_error_last(); returns `status`, so
 * callers can write `return tg__error_set(TG_EINVAL, "...")`. */
int tg__error_set(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Forget the last message. */
void tg__error_clear(void);

#endif
