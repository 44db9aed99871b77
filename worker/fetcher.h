/* SPDX-License-Identifier: Apache-2.0
 *
 * fetcher.h: a task's inputs that are held elsewhere (DESIGN rule 4).
 * Before such a task runs, on the executor thread that runs it, each
 * held dependency is resolved: from this worker's own store when it
 * holds the key (the bytes are used in place, no copy), else fetched
 * from its holders in the scheduler's order with DataService.Fetch,
 * every chunk checked (key, contiguous offsets, CRC-32, total size), so
 * a task never runs on a partial or corrupt input. When no holder
 * delivers, the task fails with "tg.FetchFailed" naming the key, its
 * size and why each holder failed. Fetched copies live as long as the
 * task. Depends on the shared checked Fetch (fetch/fetch.h), the store,
 * the outbox (keys this worker should hold and does not are reported
 * missing) and the counters.
 */
#ifndef TGW_FETCHER_H
#define TGW_FETCHER_H

#include <stdbool.h>

#include "counters.h"
#include "outbox.h"
#include "store.h"
#include "task.h"
#include "transport/transport.h"

typedef struct tgw_fetcher tgw_fetcher;

typedef struct tgw_fetcher_opts {
    const tg__rpc_sec *sec; /* NULL: plaintext peers; else the worker's own
                             * TLS material (borrowed; must outlive) */
    const char *self;       /* this worker's data address, or NULL */
    tgw_store *store;       /* borrowed */
    tgw_outbox *ob;         /* borrowed; receives missing keys */
    tgw_counters *counters; /* borrowed */
} tgw_fetcher_opts;

/** New fetcher; free with tgw_fetcher_free. TG_OK or TG_ENOMEM. */
int tgw_fetcher_new(tgw_fetcher **out, const tgw_fetcher_opts *opts);

/** Close the cached peer channels and free. NULL is a no-op. */
void tgw_fetcher_free(tgw_fetcher *f);

/**
 * Resolve every held dependency of `t` (see tg__exec_prepare_fn; `f` is
 * its `ud`). May block for as long as the transfers take; gives up on a
 * holder that sends nothing for 30 s, and at once when `t` is
 * cancelled. True when every input is in place; false when it set the
 * task's outcome to a "tg.FetchFailed" error.
 */
bool tgw_fetcher_resolve(tgw_fetcher *f, tg_task_ctx *t);

#endif
