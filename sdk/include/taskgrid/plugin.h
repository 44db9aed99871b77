/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/plugin.h: the plug-in ABI of taskgrid-worker. A plug-in is a
 * shared library loaded with `taskgrid-worker --preload lib.so`; it exports
 * tg_plugin_init(), which registers named task functions in a tg_registry.
 * The worker then advertises those names to the scheduler and calls the
 * functions on its executor threads with a tg_task_ctx that gives access
 * to the task's input and dependency results and takes its outcome.
 *
 * Depends on nothing but the C standard headers and taskgrid/status.h; the
 * symbols declared here are provided by the worker executable itself (it is
 * linked with --export-dynamic), so a plug-in links against no library.
 * The worker also links libtaskgrid's client and exports it the same way:
 * a task function may submit nested work through tg_task_client()
 * (taskgrid/nested.h).
 *
 * FFI-friendly by design: opaque handles, fixed-width integers, no
 * variadic functions, no structs or unions crossing the boundary. Every
 * function returns a tg_status code (TG_OK = 0) where it can fail.
 *
 * Versioning: TG_PLUGIN_ABI_VERSION changes whenever a declaration here
 * changes incompatibly. A plug-in that exports tg_plugin_abi_version()
 * (see TG_PLUGIN_DECLARE_ABI) is refused with a clear error by a worker of
 * another ABI version, instead of crashing later.
 *
 * Threading: task functions run concurrently on several executor threads
 * (one per slot, see `--nthreads`); the same function may run on many
 * threads at once, so its userdata must be safe to share. A tg_task_ctx
 * belongs to the one call it was passed to.
 */
#ifndef TASKGRID_PLUGIN_H
#define TASKGRID_PLUGIN_H

#include "taskgrid/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The plug-in ABI version this header describes. */
#define TG_PLUGIN_ABI_VERSION 1u

/** Marks a symbol the worker looks up with dlsym (default visibility). */
#if defined(__GNUC__)
#define TG_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define TG_PLUGIN_EXPORT
#endif

/** The set of task functions a worker provides (opaque). */
typedef struct tg_registry tg_registry;

/** One running task, as seen by its function (opaque). */
typedef struct tg_task_ctx tg_task_ctx;

/**
 * A task function.
 *
 * @param ctx      the running task; valid only during this call.
 * @param userdata the pointer given to tg_registry_add (borrowed).
 * @return 0 on success: the result is what tg_task_set_result() stored
 *         (an empty "raw" result if it was never called). Nonzero on
 *         failure: the error is what tg_task_set_error() stored, or a
 *         generic "tg.TaskError" naming the return code. If
 *         tg_task_set_error() was called, the task fails even when the
 *         function returns 0.
 */
typedef int (*tg_task_fn)(tg_task_ctx *ctx, void *userdata);

/**
 * Register `fn` under `name` ("namespace.name", e.g. "example.shout").
 * Only valid inside tg_plugin_init(): the registry is frozen before the
 * first task runs.
 *
 * @param r        the registry passed to tg_plugin_init (borrowed).
 * @param name     function name; copied. Must contain a '.' between a
 *                 non-empty namespace and name, and no whitespace.
 * @param fn       the function; must stay loaded while the worker runs.
 * @param userdata passed to every call of `fn`; owned by the plug-in.
 * @return TG_OK; TG_EINVAL for a bad name or NULL fn; TG_EEXIST if the
 *         name is already registered (a built-in or another plug-in);
 *         TG_ESTATE after the registry was frozen; TG_ENOMEM.
 */
TG_EXPORT int tg_registry_add(tg_registry *r, const char *name, tg_task_fn fn,
                              void *userdata);

/**
 * The task's input bytes.
 *
 * @param ctx the running task.
 * @param len receives the length (may be NULL).
 * @return borrowed pointer, valid during the call (never NULL; an empty
 *         input gives a pointer to zero bytes).
 */
TG_EXPORT const uint8_t *tg_task_input(tg_task_ctx *ctx, size_t *len);

/** Codec tag of the input ("raw", "json", ...; "raw" when the client gave
 * none). Borrowed, NUL-terminated, valid during the call. */
TG_EXPORT const char *tg_task_codec(tg_task_ctx *ctx);

/** The task's key. Borrowed, NUL-terminated, valid during the call. */
TG_EXPORT const char *tg_task_key(tg_task_ctx *ctx);

/** The function name this task was submitted with (useful when one
 * function is registered under several names). Borrowed. */
TG_EXPORT const char *tg_task_func(tg_task_ctx *ctx);

/** Number of dependency results passed to the task. */
TG_EXPORT size_t tg_task_ndeps(tg_task_ctx *ctx);

/**
 * Result bytes of dependency `i` (in the order of the task's deps).
 *
 * @param ctx the running task.
 * @param i   index, < tg_task_ndeps(ctx).
 * @param len receives the length (may be NULL).
 * @return borrowed pointer valid during the call; NULL if `i` is out of
 *         range.
 */
TG_EXPORT const uint8_t *tg_task_dep(tg_task_ctx *ctx, size_t i, size_t *len);

/** Codec tag of dependency `i`'s result ("raw" when none); NULL if `i` is
 * out of range. Borrowed. */
TG_EXPORT const char *tg_task_dep_codec(tg_task_ctx *ctx, size_t i);

/**
 * Set the task's result. The bytes are copied; calling it again replaces
 * the previous result.
 *
 * @param ctx   the running task.
 * @param data  result bytes (may be NULL when len is 0).
 * @param len   number of bytes.
 * @param codec codec tag of the bytes, e.g. "json"; NULL or "" means "raw".
 * @return TG_OK; TG_EINVAL (NULL data with len > 0); TG_ENOMEM.
 */
TG_EXPORT int tg_task_set_result(tg_task_ctx *ctx, const void *data, size_t len,
                                 const char *codec);

/**
 * Mark the task as failed. Strings are copied; calling it again replaces
 * the previous error. The function should then return nonzero.
 *
 * @param ctx       the running task.
 * @param type      error type, e.g. "ValueError" (NULL: "tg.TaskError").
 * @param message   human-readable message (NULL: empty).
 * @param traceback traceback text, if any (NULL: empty).
 * @return TG_OK or TG_ENOMEM.
 */
TG_EXPORT int tg_task_set_error(tg_task_ctx *ctx, const char *type,
                                const char *message, const char *traceback);

/**
 * True once the task was cancelled (by a client, or because the worker
 * lost its scheduler). A long-running function should poll it and return
 * early; the outcome of a cancelled task is discarded.
 */
TG_EXPORT bool tg_task_cancelled(tg_task_ctx *ctx);

/** Which attempt this run is (1 for the first). */
TG_EXPORT uint32_t tg_task_attempt(tg_task_ctx *ctx);

/* ------------------------------------------------------------------ */
/* What a plug-in exports                                              */
/* ------------------------------------------------------------------ */

/**
 * Required. Called once, right after the library is loaded, on the main
 * thread: register the plug-in's functions here.
 *
 * @param r the worker's registry (borrowed; valid only during the call).
 * @return 0 on success; nonzero (e.g. the tg_status of a failed
 *         tg_registry_add) makes the worker refuse to start, naming the
 *         library and the code.
 */
TG_PLUGIN_EXPORT int tg_plugin_init(tg_registry *r);

/**
 * Optional. Returns the TG_PLUGIN_ABI_VERSION the plug-in was built with;
 * define it with TG_PLUGIN_DECLARE_ABI(). Without it, version 1 is
 * assumed.
 */
TG_PLUGIN_EXPORT uint32_t tg_plugin_abi_version(void);

/**
 * Optional. Called once when the worker exits, after every task finished
 * and before the library is unloaded: free what tg_plugin_init allocated.
 */
TG_PLUGIN_EXPORT void tg_plugin_fini(void);

/** Defines tg_plugin_abi_version() for the ABI of this header. Use it once
 * at file scope in a plug-in. */
#define TG_PLUGIN_DECLARE_ABI()                           \
    TG_PLUGIN_EXPORT uint32_t tg_plugin_abi_version(void) \
    {                                                     \
        return TG_PLUGIN_ABI_VERSION;                     \
    }

#ifdef __cplusplus
}
#endif
#endif
