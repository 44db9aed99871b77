/* SPDX-License-Identifier: Apache-2.0
 *
 * memory.h: the worker's memory manager, after Dask's
 * distributed.worker.memory.{target,pause,terminate}. It watches the bytes
 * of held results in memory (the store's, not the process RSS: the RSS
 * also counts the runtime and transient task buffers, and freed memory
 * goes back to the system late, so a small limit would pause or kill a
 * worker for memory it does not manage, and a pause might never clear).
 * Beyond the target fraction of the limit it spills the least recently
 * used results to files in the spill directory (store.h); beyond the
 * pause fraction the worker reports itself paused (the scheduler assigns
 * it nothing new); beyond the terminate fraction (spilling could not keep
 * up: the disk failed or spilling is off) the process exits with status
 * TGW_EXIT_MEMORY. It also decides which results are too large to hold at
 * all (more than the limit plus the spill directory's free space). One
 * thread of its own, woken by every change of the store. Depends on the
 * store, the config, the logger, pthreads and POSIX file calls.
 */
#ifndef TGW_MEMORY_H
#define TGW_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

/* Exit status after going over the terminate fraction. */
#define TGW_EXIT_MEMORY 3

typedef struct tgw_memory tgw_memory;

/* What the worker tells the scheduler (WorkerMessage.memory). */
typedef struct tgw_memory_report {
    uint64_t memory;  /* bytes of held results in memory */
    uint64_t spilled; /* bytes of held results on disk */
    uint64_t limit;   /* 0: none */
    uint64_t rss;     /* process resident set size; 0: unknown */
    bool paused;
} tgw_memory_report;

/**
 * Parse a byte count for `opt`: a whole number with an optional suffix
 * (k, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB; case-insensitive;
 * decimal or binary as written, "k"/"M"/"G" alone decimal), "auto" (this
 * machine's memory, or its cgroup's limit if lower) or "none" (0).
 * @return TG_OK or TG_EINVAL with the reason in tg_error_last().
 */
int tgw_memory_parse_limit(const char *opt, const char *v, uint64_t *out);

/** This machine's memory in bytes (the cgroup limit if lower); 0 when
 * unknown. */
uint64_t tgw_memory_total(void);

/**
 * Start managing `store` (borrowed; it must outlive the manager) with the
 * limit, fractions and spill directory of `cfg` (borrowed, same). The
 * spill directory: cfg->spill_dir (created here if missing), else a
 * private one made under $TMPDIR at the first spill (a worker that never
 * spills leaves none behind, even when killed) and removed by
 * tgw_memory_free. With no limit nothing spills and the worker never
 * pauses.
 * @return TG_OK, TG_EIO (the directory) or TG_ENOMEM. Free with
 *         tgw_memory_free in every case.
 */
int tgw_memory_new(tgw_memory **out, tgw_store *store, const tgw_config *cfg);

/** Stop the thread and remove a private spill directory with the files
 * left in it (before freeing the store: the thread reads it; spilled
 * entries still referenced keep reading their open files). NULL is a
 * no-op. */
void tgw_memory_free(tgw_memory *m);

/**
 * Call `fn(ud)` from the manager's thread whenever the pause state
 * changes or a check spilled results (to send a report at once, so the
 * scheduler and Status see it before the next heartbeat). Set it before
 * the store changes; NULL turns it off.
 */
void tgw_memory_on_pause(tgw_memory *m, void (*fn)(void *ud), void *ud);

/** The current report. */
void tgw_memory_report_get(tgw_memory *m, tgw_memory_report *r);

/** True once after each pause change or spill (then false until the
 * next). */
bool tgw_memory_report_due(tgw_memory *m);

/**
 * Whether a result of `len` bytes can be held: false when it is larger
 * than the limit plus the spill directory's free space, with a message
 * for tg.ResultTooLarge naming both in `msg`. Always true without a
 * limit.
 */
bool tgw_memory_fits(tgw_memory *m, uint64_t len, char *msg, size_t msglen);

/** Spill and re-check now, on the caller's thread (tests). */
void tgw_memory_check(tgw_memory *m);

#endif
