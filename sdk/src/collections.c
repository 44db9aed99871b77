/* SPDX-License-Identifier: Apache-2.0
 *
 * collections.c: tg_client_map and tg_client_tree_reduce (see
 * taskgrid/collections.h). Both build their graph here, keys included, and
 * hand it to tg_client_submit in one call; the only other call is the
 * Status that checks that a connected worker provides the function.
 * Depends on client_impl.h (the Status call, enter/flush) and util/error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_impl.h"
#include "taskgrid/collections.h"
#include "util/error.h"

/* Room for "-r<level>-<index>" after a prefix, with its NUL. */
#define SUFFIX_MAX 32

static const tg_collection_opts default_opts = TG_COLLECTION_OPTS_INIT;

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static int check_opts(const char *what, const tg_collection_opts *o)
{
    if (o->version != TG_COLLECTION_OPTS_VERSION)
        return tg__error_set(TG_EINVAL,
                             "%s: tg_collection_opts version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_COLLECTION_OPTS_INIT)",
                             what, o->version, TG_COLLECTION_OPTS_VERSION);
    if (o->key != NULL &&
        (o->key[0] == '\0' || strlen(o->key) > TG_COLLECTION_KEY_MAX))
        return tg__error_set(TG_EINVAL,
                             "%s: opts.key must be 1 to %d bytes (got %zu)",
                             what, TG_COLLECTION_KEY_MAX, strlen(o->key));
    if (o->nworkers > 0 && o->workers == NULL)
        return tg__error_set(TG_EINVAL,
                             "%s: opts.nworkers is %zu but workers is NULL",
                             what, o->nworkers);
    for (size_t i = 0; i < o->nworkers; i++)
        if (o->workers[i] == NULL || o->workers[i][0] == '\0')
            return tg__error_set(TG_EINVAL, "%s: opts.workers[%zu] is empty",
                                 what, i);
    return tg__client_check_resources("collection", 0, o->resources,
                                      o->nresources);
}

static bool has_func(const taskgrid_v1_WorkerInfo *w, const char *func)
{
    for (pb_size_t f = 0; f < w->functions_count; f++)
        if (w->functions[f] != NULL && strcmp(w->functions[f], func) == 0)
            return true;
    return false;
}

/* Append ", name" to `buf` unless already listed; false when full. */
static bool list_add(char *buf, size_t cap, size_t *pos, const char *name)
{
    const char *p = buf;
    size_t n = strlen(name);

    while ((p = strstr(p, name)) != NULL) {
        bool start = p == buf || p[-1] == ' ';
        bool end = p[n] == '\0' || p[n] == ',';

        if (start && end)
            return true;
        p += n;
    }
    if (*pos + n + 8 >= cap) {
        if (*pos + 5 < cap)
            *pos += (size_t)snprintf(buf + *pos, cap - *pos, ", ...");
        return false;
    }
    *pos += (size_t)snprintf(buf + *pos, cap - *pos, "%s%s", *pos ? ", " : "",
                             name);
    return true;
}

/* TG_ENOTFOUND, naming `func` and what the workers provide. */
static int no_provider(const char *what, const char *func,
                       const taskgrid_v1_StatusResponse *r)
{
    char list[512] = "";
    size_t pos = 0;
    bool room = true;

    for (pb_size_t i = 0; room && i < r->workers_count; i++)
        for (pb_size_t f = 0; room && f < r->workers[i].functions_count; f++)
            if (r->workers[i].functions[f] != NULL)
                room = list_add(list, sizeof(list), &pos,
                                r->workers[i].functions[f]);
    return tg__error_set(TG_ENOTFOUND,
                         "%s: no connected worker provides function '%s' (%u "
                         "worker%s connected, providing: %s)",
                         what, func, (unsigned)r->workers_count,
                         r->workers_count == 1 ? "" : "s",
                         pos ? list : "nothing");
}

/* The function name, and unless opts say not to, a worker providing it. */
static int check_func(tg_client *c, const char *what, const char *func,
                      const tg_collection_opts *o)
{
    taskgrid_v1_StatusResponse resp;
    uint8_t *raw = NULL;
    bool found;
    int rc;

    if (func == NULL || func[0] == '\0')
        return tg__error_set(TG_EINVAL, "%s: no function", what);
    if (strchr(func, '.') == NULL)
        return tg__error_set(TG_EINVAL,
                             "%s: function '%s' is not 'namespace.name' "
                             "(e.g. 'tg.sum')",
                             what, func);
    if (o->no_function_check)
        return TG_OK;
    if ((rc = tg__client_status_call(c, NULL, &resp, &raw)) != TG_OK)
        return rc;
    found = resp.workers_count == 0; /* nobody to ask: let it wait */
    for (pb_size_t i = 0; !found && i < resp.workers_count; i++)
        found = has_func(&resp.workers[i], func);
    rc = found ? TG_OK : no_provider(what, func, &resp);
    tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
    free(raw);
    return rc;
}

/* After the call's own checks: options and function; *op gets the
 * options to use. */
static int begin(tg_client *c, const char *what, const char *func,
                 const tg_collection_opts *opts, const tg_collection_opts **op)
{
    int rc;

    *op = opts != NULL ? opts : &default_opts;
    if ((rc = check_opts(what, *op)) != TG_OK)
        return rc;
    return check_func(c, what, func, *op);
}

/* ------------------------------------------------------------------ */
/* Building the graph                                                  */
/* ------------------------------------------------------------------ */

/* Write the key prefix into `buf` (TG_KEY_MAX + 1 bytes); its length. */
static size_t make_prefix(char *buf, const char *func,
                          const tg_collection_opts *o)
{
    if (o->key != NULL) {
        size_t n = strlen(o->key);

        memcpy(buf, o->key, n + 1);
        return n;
    }
    /* "<func>-<16 hex>", with func cut so that the suffixes still fit. */
    {
        char f[TG_COLLECTION_KEY_MAX - 16];
        size_t n = strlen(func);

        if (n >= sizeof(f))
            n = sizeof(f) - 1;
        memcpy(f, func, n);
        f[n] = '\0';
        return tg__key_write(buf, f);
    }
}

/* A task definition of `func` with the options of `o`. */
static tg_task_def task_of(const char *func, const tg_collection_opts *o)
{
    tg_task_def t = TG_TASK_DEF_INIT;

    t.func = func;
    t.priority = o->priority;
    t.retries = o->retries;
    t.resources = o->resources;
    t.nresources = o->nresources;
    t.workers = o->workers;
    t.nworkers = o->nworkers;
    return t;
}

/* o->priority + level, saturating at INT32_MAX. */
static int32_t level_priority(const tg_collection_opts *o, size_t level)
{
    int64_t p = (int64_t)o->priority + (int64_t)level;

    return p > INT32_MAX ? INT32_MAX : (int32_t)p;
}

int tg_client_map(tg_client *c, const char *func, const tg_partition *parts,
                  size_t n, const tg_collection_opts *opts, tg_future **out)
{
    static const char *const what = "tg_client_map";
    const tg_collection_opts *o;
    char prefix[TG_KEY_MAX + 1], *keys = NULL;
    const char **deps = NULL;
    tg_task_def *defs = NULL;
    size_t plen, stride;
    int rc;

    if ((rc = tg__client_enter(c, what)) != TG_OK)
        return rc;
    if (parts == NULL || out == NULL || n == 0)
        return tg__error_set(TG_EINVAL,
                             n == 0 ? "%s: no partitions to map over"
                                    : "%s: parts or out is NULL",
                             what);
    for (size_t i = 0; i < n; i++)
        if (parts[i].input_len > 0 && parts[i].input == NULL)
            return tg__error_set(TG_EINVAL,
                                 "%s: partition %zu: input_len is %zu but "
                                 "input is NULL",
                                 what, i, parts[i].input_len);
    if ((rc = begin(c, what, func, opts, &o)) != TG_OK)
        return rc;
    plen = make_prefix(prefix, func, o);
    stride = plen + SUFFIX_MAX;
    keys = malloc(n * stride);
    deps = calloc(n, sizeof(*deps));
    defs = malloc(n * sizeof(*defs));
    if (keys == NULL || deps == NULL || defs == NULL) {
        rc = tg__error_set(TG_ENOMEM, "%s: out of memory for %zu tasks", what,
                           n);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        char *k = keys + i * stride;

        snprintf(k, stride, "%s-%zu", prefix, i);
        defs[i] = task_of(func, o);
        defs[i].key = k;
        defs[i].input = parts[i].input;
        defs[i].input_len = parts[i].input_len;
        defs[i].codec = parts[i].codec;
        if (parts[i].future != NULL) {
            deps[i] = tg_future_key(parts[i].future);
            defs[i].deps = &deps[i];
            defs[i].ndeps = 1;
        }
    }
    rc = tg_client_submit(c, defs, n, out);

cleanup:
    free(defs);
    free(deps);
    free(keys);
    return rc;
}

/* Number of combines of the whole tree over `n` inputs. */
static size_t tree_tasks(size_t n, size_t fan_in)
{
    size_t total = 0;

    do {
        n = (n + fan_in - 1) / fan_in;
        total += n;
    } while (n > 1);
    return total;
}

/*
 * Fill the combines of every level. seq[0, n) holds the input keys; each
 * task's key is appended to seq as it is made, so a level's inputs are one
 * contiguous run of seq and each task's deps point into it.
 */
static void tree_fill(tg_task_def *defs, const char **seq, size_t n,
                      size_t fan_in, const char *func,
                      const tg_collection_opts *o, const char *prefix,
                      char *keys, size_t stride)
{
    size_t lo = 0, hi = n, t = 0;

    for (size_t level = 1;; level++) {
        size_t m = hi - lo, groups = (m + fan_in - 1) / fan_in;
        size_t base = m / groups, extra = m % groups, at = lo;

        for (size_t j = 0; j < groups; j++, t++) {
            char *k = keys + t * stride;
            size_t size = base + (j < extra ? 1 : 0);

            snprintf(k, stride, "%s-r%zu-%zu", prefix, level, j);
            defs[t] = task_of(func, o);
            defs[t].key = k;
            defs[t].priority = level_priority(o, level);
            defs[t].deps = &seq[at];
            defs[t].ndeps = size;
            seq[n + t] = k;
            at += size;
        }
        if (groups == 1)
            return;
        lo = hi;
        hi += groups;
    }
}

int tg_client_tree_reduce(tg_client *c, const char *func, tg_future *const *fs,
                          size_t n, uint32_t fan_in,
                          const tg_collection_opts *opts, tg_future **out)
{
    static const char *const what = "tg_client_tree_reduce";
    const tg_collection_opts *o;
    char prefix[TG_KEY_MAX + 1], *keys = NULL;
    const char **seq = NULL;
    tg_task_def *defs = NULL;
    tg_future **got = NULL;
    size_t plen, stride, total;
    int rc;

    if ((rc = tg__client_enter(c, what)) != TG_OK)
        return rc;
    if (fs == NULL || out == NULL || n == 0)
        return tg__error_set(TG_EINVAL,
                             n == 0 ? "%s: no futures to reduce"
                                    : "%s: fs or out is NULL",
                             what);
    if (fan_in < 2 || fan_in > TG_TREE_FAN_IN_MAX)
        return tg__error_set(TG_EINVAL,
                             "%s: fan_in must be 2 to %d (got %" PRIu32 ")",
                             what, TG_TREE_FAN_IN_MAX, fan_in);
    for (size_t i = 0; i < n; i++)
        if (fs[i] == NULL)
            return tg__error_set(TG_EINVAL, "%s: future %zu is NULL", what, i);
    if ((rc = begin(c, what, func, opts, &o)) != TG_OK)
        return rc;
    total = tree_tasks(n, fan_in);
    plen = make_prefix(prefix, func, o);
    stride = plen + SUFFIX_MAX;
    keys = malloc(total * stride);
    seq = calloc(n + total, sizeof(*seq));
    defs = malloc(total * sizeof(*defs));
    got = calloc(total, sizeof(*got));
    if (keys == NULL || seq == NULL || defs == NULL || got == NULL) {
        rc = tg__error_set(TG_ENOMEM, "%s: out of memory for %zu tasks", what,
                           total);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        seq[i] = tg_future_key(fs[i]);
    tree_fill(defs, seq, n, fan_in, func, o, prefix, keys, stride);
    /* Levels in order: a split submission never names a later message. */
    if ((rc = tg_client_submit(c, defs, total, got)) == TG_OK) {
        for (size_t t = 0; t + 1 < total; t++)
            tg_future_free(got[t]);
        *out = got[total - 1];
    }

cleanup:
    free(got);
    free(defs);
    free(seq);
    free(keys);
    return rc;
}
