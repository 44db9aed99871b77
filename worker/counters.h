/* SPDX-License-Identifier: Apache-2.0
 *
 * counters.h: the worker's data-plane counters (results held, fetches
 * served, inputs fetched from peers, inputs found in the local store,
 * uploads to the scheduler), each a count and a byte total. Any thread
 * adds (relaxed atomics: they are statistics, read for logs and tests);
 * the exit line of the worker prints them. Depends on libc only.
 */
#ifndef TGW_COUNTERS_H
#define TGW_COUNTERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tgw_counter {
    TGW_COUNT_HELD = 0, /* results kept in the store instead of inline */
    TGW_COUNT_SERVED,   /* DataService.Fetch calls answered in full */
    TGW_COUNT_FETCHED,  /* inputs fetched from a peer */
    TGW_COUNT_LOCAL,    /* inputs taken from this worker's own store */
    TGW_COUNT_UPLOADED, /* results sent up the scheduler stream */
    TGW_COUNT_KINDS,
} tgw_counter;

typedef struct tgw_counters {
    atomic_uint_fast64_t n[TGW_COUNT_KINDS];
    atomic_uint_fast64_t bytes[TGW_COUNT_KINDS];
} tgw_counters;

/** Zero every counter. */
void tgw_counters_init(tgw_counters *c);

/** Count one event of `kind` carrying `bytes` bytes. */
static inline void tgw_counters_add(tgw_counters *c, tgw_counter kind,
                                    uint64_t bytes)
{
    atomic_fetch_add_explicit(&c->n[kind], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes[kind], bytes, memory_order_relaxed);
}

/** Add `bytes` to the byte total of `kind` without counting an event
 * (an upload counts its bytes chunk by chunk, and itself once). */
static inline void tgw_counters_add_bytes(tgw_counters *c, tgw_counter kind,
                                          uint64_t bytes)
{
    atomic_fetch_add_explicit(&c->bytes[kind], bytes, memory_order_relaxed);
}

/** The count of `kind`. */
uint64_t tgw_counters_n(const tgw_counters *c, tgw_counter kind);

/** The byte total of `kind`. */
uint64_t tgw_counters_bytes(const tgw_counters *c, tgw_counter kind);

/**
 * The worker's exit line into `buf`: "data: held N (B bytes), served N
 * (B bytes), fetched N (B bytes), local N (B bytes), uploaded N (B
 * bytes)".
 */
void tgw_counters_format(const tgw_counters *c, char *buf, size_t len);

#endif
