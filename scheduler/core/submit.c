/* SPDX-License-Identifier: Apache-2.0
 *
 * submit.c: tgs_core_submit, a batch (a graph) at a time, in named steps:
 * validate the specifications, resolve the batch (keys, dependencies, a
 * topological order with cycle detection, each new task's initial state)
 * with temporary arrays only, then insert: allocate everything the commit
 * needs, and commit, which cannot fail. So a rejected or failed batch
 * changes nothing visible. Depends on internal.h, intern.c, classes.c,
 * resources.c, ready.c and schedule.c.
 */
#include "scheduler/core/internal.h"

#include <stdarg.h>
#include <stdio.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Batch-local map values are spec index + 1 (a map value is non-NULL). */
static uint32_t batch_find(const tgs_map *b, const tgs_task_spec *specs,
                           tgs_str key, uint32_t h)
{
    size_t pos = tgs_map_start(b, h);
    void *v;
    while ((v = tgs_map_next(b, h, &pos)) != NULL) {
        uint32_t j = (uint32_t)((uintptr_t)v - 1);
        if (bytes_eq(specs[j].key.ptr, specs[j].key.len, key))
            return j;
    }
    return NONE;
}

/* An edge of the batch: a known task pointer, or (odd) a new task index. */
static bool edge_is_new(uintptr_t e)
{
    return (e & 1) != 0;
}

static uint32_t edge_new(uintptr_t e)
{
    return (uint32_t)(e >> 1);
}

static tgs_task *task_new(const tgs_task_spec *s, uint32_t h,
                          const tgs_istr *codec, uint32_t capdependents)
{
    size_t size = sizeof(tgs_task) + s->ndeps * sizeof(tgs_task *) +
                  s->key.len + s->input_len;
    tgs_task *t = malloc(size);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof *t);
    if (capdependents != 0) {
        t->dependents = malloc(capdependents * sizeof *t->dependents);
        if (t->dependents == NULL) {
            free(t);
            return NULL;
        }
        t->capdependents = capdependents;
    }
    t->priority = s->priority;
    t->codec = codec;
    t->hash = h;
    t->key_len = (uint32_t)s->key.len;
    t->input_len = (uint32_t)s->input_len;
    t->ndeps = (uint32_t)s->ndeps;
    t->retries = s->retries;
    t->attempt = 1;
    t->state = TGS_WAITING;
    char *k = task_key(t);
    memcpy(k, s->key.ptr, s->key.len);
    if (s->input_len)
        memcpy(k + s->key.len, s->input, s->input_len);
    return t;
}

static int dependents_push(tgs_task *x, tgs_task *t)
{
    if (x->ndependents == x->capdependents) {
        /* The capacity is a uint32_t in the task, which stays small. */
        size_t cap = x->capdependents;
        if (tg__array_grow_to(&x->dependents, &cap, (size_t)x->ndependents + 1,
                              sizeof *x->dependents, 2, UINT32_MAX) != TG_OK)
            return TGS_ENOMEM;
        x->capdependents = (uint32_t)cap;
    }
    x->dependents[x->ndependents++] = t;
    return TGS_OK;
}

static bool spec_ok(const tgs_task_spec *s)
{
    return (s->ndeps == 0 || s->deps != NULL) &&
           (s->input_len == 0 || s->input != NULL) &&
           (s->codec.len == 0 || s->codec.ptr != NULL) &&
           (s->nresources == 0 || s->resources != NULL) &&
           (s->nworkers == 0 || s->workers != NULL) &&
           s->key.len <= UINT32_MAX && s->input_len <= UINT32_MAX &&
           s->ndeps <= UINT32_MAX;
}

/* Validate every specification on its own: key, function, pointers,
 * sizes, the resource request. */
static int validate(const tgs_task_spec *specs, size_t n, char *err,
                    size_t errlen)
{
    if (n >= UINT32_MAX / 2) {
        seterr(err, errlen, "batch of %zu tasks is too large", n);
        return TGS_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const tgs_task_spec *s = &specs[i];
        if (s->key.len == 0 || s->key.ptr == NULL) {
            seterr(err, errlen, "task #%zu has an empty key", i);
            return TGS_EINVAL;
        }
        if (s->func.len == 0 || s->func.ptr == NULL) {
            seterr(err, errlen, "task '%.*s' has no function", plen(s->key.len),
                   s->key.ptr);
            return TGS_EINVAL;
        }
        if (!tgs__parent_ok(s->parent)) {
            seterr(err, errlen,
                   "task '%.*s' names a parent key of %zu bytes (at most "
                   "1024)",
                   plen(s->key.len), s->key.ptr, s->parent.len);
            return TGS_EINVAL;
        }
        if (!spec_ok(s)) {
            seterr(err, errlen, "task '%.*s' has an invalid specification",
                   plen(s->key.len), s->key.ptr);
            return TGS_EINVAL;
        }
        size_t bad;
        if (!tgs__res_valid(s->resources, s->nresources, &bad)) {
            const tgs_resource *r = &s->resources[bad];
            if (r->name.len == 0 || r->name.ptr == NULL)
                seterr(err, errlen,
                       "task '%.*s' asks for a resource with no name",
                       plen(s->key.len), s->key.ptr);
            else
                seterr(err, errlen,
                       "task '%.*s' asks for an invalid amount %g of "
                       "resource '%.*s'",
                       plen(s->key.len), s->key.ptr, r->amount,
                       plen(r->name.len), r->name.ptr);
            return TGS_EINVAL;
        }
    }
    return TGS_OK;
}

/*
 * The plan of one batch: `n` specifications, of which `m` new tasks
 * (index k, spec spec_of[k]). Edges of new task k are edges[eoff[k],
 * eoff[k+1]), in dependency order; the in-batch dependents of new task q
 * are outadj[outoff[q], outoff[q+1]). Every array is temporary, freed by
 * plan_free.
 */
typedef struct batch {
    const tgs_task_spec *specs;
    size_t n, m, nedges, nnew, nappended;
    tgs_map keys;      /* first occurrence of each key: spec index + 1 */
    uint32_t *hashes;  /* per spec */
    uint32_t *first;   /* per spec: the spec that defines its task */
    uint32_t *newidx;  /* per spec: new task index, or NONE */
    tgs_task **known;  /* per spec: the known task, or NULL */
    uint32_t *spec_of; /* per new task */
    uint32_t *eoff, *indeg, *outoff, *cursor, *outadj, *order;
    uintptr_t *edges;
    uint8_t *st;     /* initial state per new task */
    tgs_error **inh; /* inherited error per new task (final at once) */
    /* Per new task: its own tg.NestingTooDeep error (owned), which it
     * gets at once; NULL while no task of the batch is nested too deep,
     * which is the common case. */
    tgs_error **deep;
    /* Per new task: a known dependency's result is held on workers (so
     * it goes to a fetch class); NULL while no task of the batch has
     * one, which is the common case. */
    uint8_t *fetch;
    tgs_class **cls;
    const tgs_istr **cd;
    tgs_task **tasks;
    tgs_task **appended; /* known tasks given a new dependent */
} batch;

static void plan_free(batch *b)
{
    if (b->tasks != NULL) {
        for (size_t k = 0; k < b->m; k++) {
            if (b->tasks[k] != NULL) {
                free(b->tasks[k]->dependents);
                free(b->tasks[k]);
            }
        }
    }
    tgs_map_free(&b->keys);
    free(b->hashes);
    free(b->first);
    free(b->newidx);
    free(b->spec_of);
    free(b->known);
    free(b->eoff);
    free(b->indeg);
    free(b->outoff);
    free(b->cursor);
    free(b->outadj);
    free(b->order);
    free(b->edges);
    free(b->st);
    free(b->inh);
    for (size_t k = 0; b->deep != NULL && k < b->m; k++)
        tgs__error_unref(b->deep[k]);
    free(b->deep);
    free(b->fetch);
    free(b->cls);
    free(b->cd);
    free(b->tasks);
    free(b->appended);
}

/* Keys: the first occurrence of a key defines the task; later ones (and
 * keys already known) only add a hold. */
static int resolve_keys(const tgs_core *c, batch *b)
{
    size_t n = b->n;
    b->hashes = malloc(n * sizeof *b->hashes);
    b->first = malloc(n * sizeof *b->first);
    b->newidx = malloc(n * sizeof *b->newidx);
    b->spec_of = malloc(n * sizeof *b->spec_of);
    b->known = malloc(n * sizeof *b->known);
    if (!b->hashes || !b->first || !b->newidx || !b->spec_of || !b->known ||
        tgs_map_reserve(&b->keys, n) != TGS_OK)
        return TGS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        tgs_str key = b->specs[i].key;
        uint32_t h = tgs_hash32(key.ptr, key.len);
        b->hashes[i] = h;
        uint32_t j = batch_find(&b->keys, b->specs, key, h);
        b->known[i] = NULL;
        b->newidx[i] = NONE;
        if (j != NONE) {
            b->first[i] = j;
            continue;
        }
        tgs_map_insert(&b->keys, h, (void *)(uintptr_t)(i + 1));
        b->first[i] = (uint32_t)i;
        b->known[i] = find_task(c, key, h);
        if (b->known[i] == NULL) {
            b->newidx[i] = (uint32_t)b->m;
            b->spec_of[b->m++] = (uint32_t)i;
        }
    }
    return TGS_OK;
}

/* New task `k` has a dependency held on workers. */
static __attribute__((noinline)) int mark_fetch(batch *b, size_t k)
{
    if (b->fetch == NULL && (b->fetch = calloc(b->m + 1, 1)) == NULL)
        return TGS_ENOMEM;
    b->fetch[k] = 1;
    return TGS_OK;
}

/* Dependencies of the new tasks: a new task of the batch, or a known
 * task; anything else is an error. */
static int resolve_deps(const tgs_core *c, batch *b, char *err, size_t errlen)
{
    size_t m = b->m;
    for (size_t k = 0; k < m; k++) {
        b->nedges += b->specs[b->spec_of[k]].ndeps;
        if (b->nedges >= UINT32_MAX / 2) {
            seterr(err, errlen, "batch has too many dependencies");
            return TGS_EINVAL;
        }
    }
    b->eoff = malloc((m + 1) * sizeof *b->eoff);
    b->indeg = calloc(m + 1, sizeof *b->indeg);
    b->outoff = calloc(m + 1, sizeof *b->outoff);
    b->edges = malloc((b->nedges + 1) * sizeof *b->edges);
    if (!b->eoff || !b->indeg || !b->outoff || !b->edges)
        return TGS_ENOMEM;
    size_t e = 0;
    for (size_t k = 0; k < m; k++) {
        const tgs_task_spec *s = &b->specs[b->spec_of[k]];
        b->eoff[k] = (uint32_t)e;
        for (size_t d = 0; d < s->ndeps; d++) {
            tgs_str dk = s->deps[d];
            uint32_t h = dk.len && dk.ptr ? tgs_hash32(dk.ptr, dk.len) : 0;
            uint32_t j =
                dk.len && dk.ptr ? batch_find(&b->keys, b->specs, dk, h) : NONE;
            if (j != NONE && b->newidx[j] != NONE) {
                uint32_t q = b->newidx[j];
                b->edges[e++] = ((uintptr_t)q << 1) | 1;
                b->indeg[k]++;
                b->outoff[q + 1]++;
                b->nnew++;
                continue;
            }
            tgs_task *t =
                j != NONE ? b->known[j] : (dk.ptr ? find_task(c, dk, h) : NULL);
            if (t == NULL) {
                seterr(err, errlen,
                       "dependency '%.*s' of task '%.*s' is unknown",
                       plen(dk.len), dk.ptr ? dk.ptr : "", plen(s->key.len),
                       s->key.ptr);
                return TGS_EINVAL;
            }
            if (t->held && mark_fetch(b, k) != TGS_OK)
                return TGS_ENOMEM;
            b->edges[e++] = (uintptr_t)t;
        }
    }
    b->eoff[m] = (uint32_t)e;
    return TGS_OK;
}

/* Every new task left out of the topological order has a dependency left:
 * walk dependencies from one until a task repeats; that task is on a
 * cycle. `cursor` serves as the visited mark. */
static int report_cycle(batch *b, char *err, size_t errlen)
{
    uint32_t v = 0;
    while (b->indeg[v] == 0)
        v++;
    memset(b->cursor, 0, b->m * sizeof *b->cursor);
    while (!b->cursor[v]) {
        b->cursor[v] = 1;
        for (uint32_t x = b->eoff[v]; x < b->eoff[v + 1]; x++) {
            uintptr_t e = b->edges[x];
            if (edge_is_new(e) && b->indeg[edge_new(e)] > 0) {
                v = edge_new(e);
                break;
            }
        }
    }
    const tgs_task_spec *s = &b->specs[b->spec_of[v]];
    seterr(err, errlen, "cycle in graph through task '%.*s'", plen(s->key.len),
           s->key.ptr);
    return TGS_EINVAL;
}

/* Kahn's algorithm over the new tasks: a topological order, and any task
 * left over is on or behind a cycle. Iterative, so a million-deep chain
 * needs no stack. */
static int topo_order(batch *b, char *err, size_t errlen)
{
    size_t m = b->m;
    for (size_t q = 0; q < m; q++)
        b->outoff[q + 1] += b->outoff[q];
    b->cursor = malloc((m + 1) * sizeof *b->cursor);
    b->outadj = malloc((b->nnew + 1) * sizeof *b->outadj);
    b->order = malloc((m + 1) * sizeof *b->order);
    if (!b->cursor || !b->outadj || !b->order)
        return TGS_ENOMEM;
    memcpy(b->cursor, b->outoff, m * sizeof *b->cursor);
    for (size_t k = 0; k < m; k++)
        for (uint32_t x = b->eoff[k]; x < b->eoff[k + 1]; x++)
            if (edge_is_new(b->edges[x]))
                b->outadj[b->cursor[edge_new(b->edges[x])]++] = (uint32_t)k;
    size_t head = 0, tail = 0;
    for (size_t k = 0; k < m; k++)
        if (b->indeg[k] == 0)
            b->order[tail++] = (uint32_t)k;
    while (head < tail) {
        uint32_t v = b->order[head++];
        for (uint32_t x = b->outoff[v]; x < b->outoff[v + 1]; x++)
            if (--b->indeg[b->outadj[x]] == 0)
                b->order[tail++] = b->outadj[x];
    }
    return tail < m ? report_cycle(b, err, errlen) : TGS_OK;
}

/* New tasks nested deeper than max_nesting_depth get their error (see
 * "nested work" in core.h); so a recursion that runs away fails at the
 * limit, quickly, rather than filling the cluster with waiting tasks. */
static int check_depths(const tgs_core *c, batch *b)
{
    if (c->opts.max_nesting_depth == 0)
        return TGS_OK;
    for (size_t k = 0; k < b->m; k++) {
        const tgs_task_spec *s = &b->specs[b->spec_of[k]];
        tgs_error *e;
        int rc = tgs__nest_check(c, s->key, s->parent, &e);
        if (rc != TGS_OK)
            return rc;
        if (e == NULL)
            continue;
        if (b->deep == NULL &&
            (b->deep = calloc(b->m + 1, sizeof *b->deep)) == NULL) {
            tgs__error_unref(e);
            return TGS_ENOMEM;
        }
        b->deep[k] = e;
    }
    return TGS_OK;
}

/* Initial states, in topological order: a task nested too deep errs,
 * else an erred dependency errs the task, else a cancelled one cancels
 * it, else it waits for non-final dependencies or is ready. */
static int initial_states(batch *b)
{
    b->st = malloc(b->m + 1);
    b->inh = calloc(b->m + 1, sizeof *b->inh);
    if (!b->st || !b->inh)
        return TGS_ENOMEM;
    for (size_t o = 0; o < b->m; o++) {
        uint32_t k = b->order[o];
        tgs_error *erred = NULL, *cancelled = NULL;
        bool waiting = false;
        if (b->deep != NULL && b->deep[k] != NULL) {
            b->st[k] = TGS_ERRED;
            b->inh[k] = b->deep[k];
            continue;
        }
        for (uint32_t x = b->eoff[k]; x < b->eoff[k + 1]; x++) {
            uint8_t ds;
            tgs_error *de;
            if (edge_is_new(b->edges[x])) {
                ds = b->st[edge_new(b->edges[x])];
                de = b->inh[edge_new(b->edges[x])];
            } else {
                tgs_task *t = (tgs_task *)b->edges[x];
                ds = t->state;
                de = (ds == TGS_ERRED || ds == TGS_CANCELLED) ? t->out.error
                                                              : NULL;
            }
            if (ds == TGS_ERRED && erred == NULL)
                erred = de;
            else if (ds == TGS_CANCELLED && cancelled == NULL)
                cancelled = de;
            else if (!is_final(ds))
                waiting = true;
        }
        if (erred != NULL) {
            b->st[k] = TGS_ERRED;
            b->inh[k] = erred;
        } else if (cancelled != NULL) {
            b->st[k] = TGS_CANCELLED;
            b->inh[k] = cancelled;
        } else {
            b->st[k] = waiting ? TGS_WAITING : TGS_READY;
        }
    }
    return TGS_OK;
}

/* Resolve the batch: keys, dependencies, order, initial states. Only
 * temporary arrays change. */
static int resolve(const tgs_core *c, batch *b, char *err, size_t errlen)
{
    int rc = resolve_keys(c, b);
    if (rc == TGS_OK)
        rc = resolve_deps(c, b, err, errlen);
    if (rc == TGS_OK)
        rc = topo_order(b, err, errlen);
    if (rc == TGS_OK)
        rc = check_depths(c, b);
    if (rc == TGS_OK)
        rc = initial_states(b);
    return rc;
}

/* Functions, codecs and classes of the new tasks, and room in the ready
 * heaps of their classes for the non-final ones. Interned names and
 * classes stay even if the batch fails (unused classes are collected
 * later). */
static int alloc_classes(tgs_core *c, batch *b)
{
    size_t m = b->m;
    int rc = TGS_OK;
    b->cls = malloc((m + 1) * sizeof *b->cls);
    b->cd = malloc((m + 1) * sizeof *b->cd);
    if (!b->cls || !b->cd)
        return TGS_ENOMEM;
    for (size_t k = 0; k < m; k++) {
        const tgs_task_spec *s = &b->specs[b->spec_of[k]];
        tgs_func *fn;
        if ((rc = tgs__intern_func(c, s->func, &fn)) != TGS_OK ||
            (rc = tgs__intern_codec(c, s->codec, &b->cd[k])) != TGS_OK)
            return rc;
        b->cls[k] = &fn->plain;
        if (s->nresources == 0 && s->nworkers == 0)
            continue; /* the common case: no canonical form to build */
        long nr = tgs__canon_res(c, s->resources, s->nresources);
        long nn = nr < 0 ? 0 : tgs__canon_names(c, s->workers, s->nworkers);
        if (nr < 0 || nn < 0)
            return (int)(nr < 0 ? nr : nn);
        rc = tgs__class_get(c, fn, c->cres, (size_t)nr, c->cnames, (size_t)nn,
                            b->fetch != NULL && b->fetch[k], &b->cls[k]);
        if (rc != TGS_OK)
            return rc;
    }
    /* Plain tasks with a held input: the fetch variant of the plain
     * class (a pass of its own, so other batches never pay for it). */
    for (size_t k = 0; b->fetch != NULL && k < m; k++) {
        const tgs_task_spec *s = &b->specs[b->spec_of[k]];
        if (b->fetch[k] && s->nresources == 0 && s->nworkers == 0 &&
            (rc = tgs__class_get(c, b->cls[k]->func, NULL, 0, NULL, 0, true,
                                 &b->cls[k])) != TGS_OK)
            return rc;
    }
    /* `scratch` counts the batch's non-final tasks per class. */
    for (size_t k = 0; k < m; k++)
        if (!is_final(b->st[k]))
            b->cls[k]->scratch++;
    for (size_t k = 0; k < m; k++) {
        tgs_class *q = b->cls[k];
        if (q->scratch != 0 && rc == TGS_OK &&
            tg__heap_reserve(&q->ready, q->nlive + q->scratch) != TG_OK)
            rc = TGS_ENOMEM;
        q->scratch = 0;
    }
    return rc;
}

/* Room in the consumer lists of the held results the new non-final
 * tasks depend on (`scratch` counts the occurrences per result). */
static __attribute__((noinline)) int reserve_consumers(batch *b)
{
    int rc = TGS_OK;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < b->m; k++) {
            if (!b->fetch[k] || is_final(b->st[k]))
                continue;
            for (uint32_t x = b->eoff[k]; x < b->eoff[k + 1]; x++) {
                tgs_task *d = (tgs_task *)b->edges[x];
                if (edge_is_new(b->edges[x]) || !d->held)
                    continue;
                tgs_held *hd = held_of(d);
                if (pass == 0) {
                    hd->scratch++;
                } else if (hd->scratch != 0) {
                    if (rc == TGS_OK &&
                        tgs_map_reserve(&hd->consumers, hd->scratch) != TGS_OK)
                        rc = TGS_ENOMEM;
                    hd->scratch = 0;
                }
            }
        }
    }
    return rc;
}

/* The tasks themselves, linked to their dependencies, room for them in
 * the task map, and their entries in the dependents arrays of known
 * tasks (rolled back if one cannot grow). */
static int alloc_tasks(tgs_core *c, batch *b)
{
    size_t m = b->m;
    b->tasks = calloc(m + 1, sizeof *b->tasks);
    if (b->tasks == NULL)
        return TGS_ENOMEM;
    for (size_t k = 0; k < m; k++) {
        uint32_t i = b->spec_of[k];
        /* Room for the in-batch dependents; a task final at once keeps
         * none (a final task has no dependents array). */
        b->tasks[k] =
            task_new(&b->specs[i], b->hashes[i], b->cd[k],
                     is_final(b->st[k]) ? 0 : b->outoff[k + 1] - b->outoff[k]);
        if (b->tasks[k] == NULL)
            return TGS_ENOMEM;
    }
    for (size_t k = 0; k < m; k++)
        for (uint32_t x = b->eoff[k], d = 0; x < b->eoff[k + 1]; x++, d++)
            b->tasks[k]->deps[d] = edge_is_new(b->edges[x])
                                       ? b->tasks[edge_new(b->edges[x])]
                                       : (tgs_task *)b->edges[x];
    if (tgs_map_reserve(&c->tasks, m) != TGS_OK ||
        (b->fetch != NULL && reserve_consumers(b) != TGS_OK))
        return TGS_ENOMEM;
    b->appended = malloc((b->nedges + 1) * sizeof *b->appended);
    if (b->appended == NULL)
        return TGS_ENOMEM;
    for (size_t k = 0; k < m; k++) {
        if (is_final(b->st[k]))
            continue;
        for (uint32_t x = b->eoff[k]; x < b->eoff[k + 1]; x++) {
            tgs_task *d = (tgs_task *)b->edges[x];
            if (edge_is_new(b->edges[x]) || is_final(d->state))
                continue;
            if (dependents_push(d, b->tasks[k]) != TGS_OK) {
                while (b->nappended > 0)
                    b->appended[--b->nappended]->ndependents--;
                return TGS_ENOMEM;
            }
            b->appended[b->nappended++] = d;
        }
    }
    return TGS_OK;
}

/* Commit one new task `k` (in topological order); cannot fail. */
static void commit_task(tgs_core *c, batch *b, uint32_t k)
{
    tgs_task *t = b->tasks[k];
    /* FIFO follows the batch order, not the topological order. */
    t->seq = c->next_seq + k;
    t->cls = b->cls[k];
    class_ref(c, t->cls);
    tgs_map_insert(&c->tasks, t->hash, t);
    count_state(c, t, 0, TGS_WAITING);
    if (is_final(b->st[k])) {
        set_state(c, t, (tgs_state)b->st[k]);
        t->out.error = b->inh[k];
        b->inh[k]->refs++;
        if (b->deep == NULL || b->deep[k] == NULL)
            t->flags |= TF_INHERITED; /* else its own error */
        for (uint32_t d = 0; d < t->ndeps; d++)
            t->deps[d] = NULL;
        return;
    }
    t->cls->nlive++;
    for (uint32_t x = b->eoff[k], d = 0; x < b->eoff[k + 1]; x++, d++) {
        tgs_task *dep = t->deps[d];
        dep->needed++;
        if (is_final(dep->state)) {
            if (dep->held)
                tgs__held_consumer_add(dep, t); /* room reserved above */
            continue;
        }
        t->unfinished++;
        if (edge_is_new(b->edges[x]))
            dep->dependents[dep->ndependents++] = t; /* sized above */
    }
    if (b->st[k] == TGS_READY)
        tgs__ready_push(c, t);
}

/* Insert the resolved batch: allocate, then commit (which cannot fail)
 * and give every submitted key its client hold. */
static int insert(tgs_core *c, batch *b, tgs_submit_result *res)
{
    int rc = alloc_classes(c, b);
    if (rc == TGS_OK)
        rc = alloc_tasks(c, b);
    if (rc != TGS_OK)
        return rc;
    uint64_t first_seq = c->next_seq;
    for (size_t o = 0; o < b->m; o++)
        commit_task(c, b, b->order[o]);
    c->next_seq += b->m;
    for (size_t k = 0; k < b->m; k++) {
        tgs_str pk = b->specs[b->spec_of[k]].parent;
        if (pk.len == 0)
            continue;
        /* Only a parent known before this batch: links point to older
         * tasks, so they form a tree. */
        const tgs_task *p = find_key(c, pk);
        tgs__kin_add(c, b->tasks[k], pk,
                     p != NULL && p->seq < first_seq ? p : NULL);
    }
    for (size_t i = 0; i < b->n; i++) {
        uint32_t j = b->first[i];
        tgs_task *t =
            b->newidx[j] != NONE ? b->tasks[b->newidx[j]] : b->known[j];
        t->holds++;
    }
    if (res != NULL) {
        res->accepted = (uint32_t)b->m;
        res->existing = (uint32_t)(b->n - b->m);
    }
    free(b->tasks); /* committed: the core owns them now */
    b->tasks = NULL;
    return TGS_OK;
}

/* Submit in three steps: validate, resolve, insert (see the top of this
 * file). */
static int submit_batch(tgs_core *c, const tgs_task_spec *specs, size_t n,
                        tgs_submit_result *res, char *err, size_t errlen)
{
    if (n == 0)
        return TGS_OK;
    int rc = validate(specs, n, err, errlen);
    if (rc != TGS_OK)
        return rc;
    batch b = {.specs = specs, .n = n};
    rc = resolve(c, &b, err, errlen);
    if (rc == TGS_OK)
        rc = insert(c, &b, res);
    plan_free(&b);
    return rc;
}

int tgs_core_submit(tgs_core *c, const tgs_task_spec *specs, size_t n,
                    int64_t now_ms, tgs_submit_result *res, char *err,
                    size_t errlen)
{
    if (res != NULL)
        res->accepted = res->existing = 0;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (c == NULL || (n > 0 && specs == NULL))
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    int rc = submit_batch(c, specs, n, res, err, errlen);
    tgs__schedule(c); /* new tasks, and retries that became due */
    return rc;
}
