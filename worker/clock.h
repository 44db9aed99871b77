/* SPDX-License-Identifier: Apache-2.0
 *
 * clock.h: absolute monotonic deadlines, shared by the worker's modules,
 * for clock_nanosleep and for condition variables created with
 * CLOCK_MONOTONIC (wall-clock jumps must not stretch or cut a wait).
 * "Now" in milliseconds is the rpc layer's tg__now_ms, re-exported here so
 * the project keeps one clock. Header-only; depends on libc and rpc.h.
 */
#ifndef TGW_CLOCK_H
#define TGW_CLOCK_H

#include <stdint.h>
#include <time.h>

#include "rpc.h" /* tg__now_ms */

/** The monotonic time `ns` nanoseconds from now (ns >= 0). */
static inline struct timespec tgw_deadline_ns(int64_t ns)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec += (long)(ns % 1000000000);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/** The monotonic time `ms` milliseconds from now (ms >= 0). */
static inline struct timespec tgw_deadline_ms(int64_t ms)
{
    return tgw_deadline_ns(ms * 1000000);
}

/** a < b for timespecs. */
static inline int tgw_ts_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

#endif
