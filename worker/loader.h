/* SPDX-License-Identifier: Apache-2.0
 *
 * loader.h: loading plug-ins (--preload lib.so): dlopen, ABI version
 * check, tg_plugin_init into the registry, and at exit tg_plugin_fini and
 * dlclose. Depends on libdl and the registry.
 */
#ifndef TGW_LOADER_H
#define TGW_LOADER_H

#include <stddef.h>

#include "taskgrid/plugin.h"

/* The loaded plug-ins (opaque). */
typedef struct tgw_plugins tgw_plugins;

/** New empty set. TG_OK or TG_ENOMEM. */
int tgw_plugins_new(tgw_plugins **out);

/**
 * Load the plug-in at `path` and let it register its functions in `r`.
 * A bare file name that exists in the current directory is loaded from
 * there (dlopen alone would only search the library path).
 *
 * @return TG_OK; TG_ENOTFOUND (cannot load, or no tg_plugin_init);
 *         TG_EINVAL (ABI mismatch); TG_EINTERNAL (init failed); TG_ENOMEM.
 *         On failure tg_error_last() names the library and why (dlerror()
 *         text, an ABI mismatch, or the code tg_plugin_init returned).
 */
int tgw_plugins_load(tgw_plugins *ps, tg_registry *r, const char *path);

/** Call each plug-in's tg_plugin_fini (newest first), unload them all and
 * free the set. Only once no task can run any more. NULL is a no-op. */
void tgw_plugins_free(tgw_plugins *ps);

#endif
