/* SPDX-License-Identifier: Apache-2.0
 *
 * registry.h: the worker's table of task functions (the opaque tg_registry
 * of taskgrid/plugin.h). Built-ins and plug-ins add to it at start-up; it
 * is then frozen, and executor threads look functions up without locks.
 * Depends on libc and the plug-in ABI header.
 */
#ifndef TGW_REGISTRY_H
#define TGW_REGISTRY_H

#include <stddef.h>

#include "taskgrid/plugin.h"

/* One registered function (borrowed from the registry). */
typedef struct tgw_fn {
    const char *name;
    tg_task_fn fn;
    void *userdata;
} tgw_fn;

/** New empty registry; free with tgw_registry_free. TG_OK or TG_ENOMEM. */
int tgw_registry_new(tg_registry **out);

/** Free the registry (not the plug-ins' userdata). NULL is a no-op. */
void tgw_registry_free(tg_registry *r);

/** Refuse further tg_registry_add calls: from now on lookups may run on
 * many threads at once without locking. */
void tgw_registry_freeze(tg_registry *r);

/** The function registered as `name` (NUL-terminated), or NULL. */
const tgw_fn *tgw_registry_find(const tg_registry *r, const char *name);

/** Number of functions. */
size_t tgw_registry_count(const tg_registry *r);

/** The i-th function in registration order (i < count). */
const tgw_fn *tgw_registry_at(const tg_registry *r, size_t i);

#endif
