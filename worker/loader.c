/* SPDX-License-Identifier: Apache-2.0
 *
 * loader.c: dlopen-based plug-in loading (see loader.h). Libraries are
 * opened RTLD_NOW, so a missing symbol fails at start-up with the linker's
 * message instead of killing a task later, and RTLD_LOCAL, so two plug-ins
 * cannot clash over their own symbols. They resolve the tg_* API from the
 * worker executable, which is linked with --export-dynamic. Depends on
 * libdl, the registry and the SDK's error helpers.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"
#include "util/error.h"

struct tgw_plugins {
    void **handles; /* in load order */
    size_t n;
};

int tgw_plugins_new(tgw_plugins **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? TG_OK : tg__error_set(TG_ENOMEM, "out of memory");
}

/* "cannot load plug-in PATH: DETAIL" as the thread's error. */
static int fail(int rc, const char *path, const char *detail)
{
    return tg__error_set(rc, "cannot load plug-in %s: %s", path, detail);
}

int tgw_plugins_load(tgw_plugins *ps, tg_registry *r, const char *path)
{
    char local[4096];
    const char *open_path = path;
    void *h;
    int (*init)(tg_registry *);
    uint32_t (*abi)(void);
    void **handles;
    int rc;

    if (strchr(path, '/') == NULL && access(path, F_OK) == 0) {
        snprintf(local, sizeof(local), "./%s", path);
        open_path = local;
    }
    dlerror();
    h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        return fail(TG_ENOTFOUND, path, dlerror());
    /* POSIX: function pointers from dlsym go through a data pointer. */
    *(void **)&abi = dlsym(h, "tg_plugin_abi_version");
    if (abi != NULL && abi() != TG_PLUGIN_ABI_VERSION) {
        char detail[160];

        snprintf(detail, sizeof(detail),
                 "it was built for plug-in ABI %u, this worker provides ABI "
                 "%u; rebuild it against this worker's taskgrid/plugin.h",
                 (unsigned)abi(), (unsigned)TG_PLUGIN_ABI_VERSION);
        dlclose(h);
        return fail(TG_EINVAL, path, detail);
    }
    *(void **)&init = dlsym(h, "tg_plugin_init");
    if (init == NULL) {
        dlclose(h);
        return fail(TG_ENOTFOUND, path, "it does not export tg_plugin_init");
    }
    handles = realloc(ps->handles, (ps->n + 1) * sizeof(*handles));
    if (handles == NULL) {
        dlclose(h);
        return fail(TG_ENOMEM, path, "out of memory");
    }
    ps->handles = handles;
    /* Kept loaded even if init fails: functions it registered before
     * failing point into it (the worker exits anyway). */
    handles[ps->n++] = h;
    tg__error_clear();
    rc = init(r);
    if (rc != 0) {
        char detail[1200];

        snprintf(detail, sizeof(detail), "tg_plugin_init returned %d%s%s", rc,
                 tg_error_last()[0] ? ": " : "", tg_error_last());
        return fail(TG_EINTERNAL, path, detail);
    }
    return TG_OK;
}

void tgw_plugins_free(tgw_plugins *ps)
{
    if (ps == NULL)
        return;
    for (size_t i = ps->n; i-- > 0;) {
        void (*fini)(void);

        *(void **)&fini = dlsym(ps->handles[i], "tg_plugin_fini");
        if (fini != NULL)
            fini();
        dlclose(ps->handles[i]);
    }
    free(ps->handles);
    free(ps);
}
