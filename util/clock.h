/* SPDX-License-Identifier: Apache-2.0
 *
 * clock.h: the project's one clock. Monotonic milliseconds (what the
 * scheduler core is fed with as `now_ms`, and what every timeout is
 * measured against) and absolute monotonic deadlines for clock_nanosleep
 * and for condition variables created with CLOCK_MONOTONIC (wall-clock
 * jumps must not stretch or cut a wait). Header-only; libc only.
 */
#ifndef TG_UTIL_CLOCK_H
#define TG_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Monotonic milliseconds since an arbitrary origin. */
static inline int64_t tg__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/** Monotonic microseconds since an arbitrary origin (as tg__now_ms). */
static inline int64_t tg__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/** The monotonic time `ns` nanoseconds from now (ns >= 0). */
static inline struct timespec tg__deadline_ns(int64_t ns)
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
static inline struct timespec tg__deadline_ms(int64_t ms)
{
    return tg__deadline_ns(ms * 1000000);
}

/** a < b for timespecs. */
static inline int tg__ts_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec ||
           (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

#endif
