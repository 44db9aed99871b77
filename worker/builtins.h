/* SPDX-License-Identifier: Apache-2.0
 *
 * builtins.h: the functions every C worker provides, namespace "tg."
 * (noop, echo, sleep, inc, dec, add, sum, fail, print), enough for tests,
 * examples and benchmarks, and the argument convention they share. They
 * are registered through the same tg_registry as plug-ins. Depends on the
 * plug-in ABI and the worker's JSON layer (jansson values).
 *
 * Arguments (codec "json"): the task's input, if non-empty, gives the
 * leading positional arguments (the elements of a JSON array, or the one
 * value otherwise); then every dependency result is one more argument, in
 * order; an empty "raw" result (tg.noop's) counts as null. Results are
 * JSON, except tg.noop (empty, "raw") and tg.echo (the input unchanged,
 * with its codec).
 */
#ifndef TGW_BUILTINS_H
#define TGW_BUILTINS_H

#include <stddef.h>

#include "json.h"
#include "taskgrid/plugin.h"

/** Register all built-ins. TG_OK or the first tg_registry_add error. */
int tgw_builtins_register(tg_registry *r);

/* A task's positional arguments: one reference owned per element. */
typedef struct tgw_args {
    json_t **v;
    size_t n;
} tgw_args;

/**
 * Build the positional arguments of `ctx` by the convention above. On
 * failure sets the task's error ("TypeError" for a non-JSON codec,
 * "ValueError" for malformed JSON, naming `fname` and the argument;
 * "MemoryError") and returns TG_EINVAL or TG_ENOMEM. Free with
 * tgw_args_free (also after failure).
 */
int tgw_args_parse(tg_task_ctx *ctx, const char *fname, tgw_args *out);

/** Free the arguments. */
void tgw_args_free(tgw_args *a);

#endif
