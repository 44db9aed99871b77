/* SPDX-License-Identifier: Apache-2.0
 *
 * classes.c: placement classes: their identity (a function, a canonical
 * resource request, canonical worker restrictions, and whether an input
 * is held on workers), making them, and collecting those no task uses
 * any more. Depends on internal.h,
 * resources.c (class_fits) and ready.c (the starving list's room).
 *
 * A READY task waits in the heap of its class. Tasks of one class are
 * interchangeable for placement, so if the top of a class heap cannot go
 * to a worker, nothing in that heap can, and the worker looks at its
 * other classes instead: a GPU task waiting for the only GPU never blocks
 * CPU tasks behind it. Each function has a plain class (no resources, no
 * restrictions: the common case, kept inside the function); other classes
 * are interned in a map, and there are few in practice (one per distinct
 * request). Each worker lists the classes it could ever run (it provides
 * the function, is named in the restrictions, and its capacities cover
 * the request), built when it joins and extended when a class appears; an
 * assignment looks at the tops of those heaps only: O(classes of the
 * worker + log tasks). A class no connected worker lists is unplaceable
 * ("starving"); the no-worker timeout and tgs_core_why work per class,
 * never per task. Classes no task refers to any more are collected in
 * batches (see tgs__collect_classes()).
 *
 * Held inputs are one more part of the identity: a task with a dependency
 * whose result is held on workers moves to the "fetch" variant of its
 * class (data.c; submit.c for a dependency already held), which only
 * workers that can fetch list (class_fits). So the placement rule costs
 * nothing at assignment time, and tasks without held inputs stay in
 * their usual class (the plain one, most often).
 */
#include "scheduler/core/internal.h"

static uint32_t class_hash(const tgs_func *f, const tgs_cres *res, size_t nres,
                           const tgs_str *names, size_t nnames, bool fetch)
{
    uint64_t h = f->hash ^ (fetch ? 0x9e3779b97f4a7c15ull : 0);
    for (size_t i = 0; i < nres; i++) {
        uint64_t part[2];
        part[0] = ((uint64_t)res[i].name->hash << 32) ^ h;
        memcpy(&part[1], &res[i].amount, sizeof part[1]);
        h = tgs_hash_bytes(part, sizeof part);
    }
    for (size_t i = 0; i < nnames; i++)
        h ^= tgs_hash_bytes(names[i].ptr, names[i].len) + (h << 6) + (h >> 2);
    return (uint32_t)(h ^ (h >> 32));
}

static bool class_is(const tgs_class *k, const tgs_func *f, const tgs_cres *res,
                     size_t nres, const tgs_str *names, size_t nnames,
                     bool fetch)
{
    if (k->func != f || k->nres != nres || k->nnames != nnames ||
        k->fetch != fetch)
        return false;
    for (size_t i = 0; i < nres; i++)
        if (k->res[i].name != res[i].name || k->res[i].amount != res[i].amount)
            return false;
    for (size_t i = 0; i < nnames; i++)
        if (str_cmp(k->names[i], names[i]) != 0)
            return false;
    return true;
}

void tgs__class_free(tgs_class *k)
{
    tg__heap_free(&k->ready);
    if (!is_plain(k))
        free(k);
}

static void drop_class(tgs_class **v, uint32_t *n, uint32_t i)
{
    v[i] = v[--*n];
}

/*
 * Free the classes no task refers to any more, in one batch: every
 * worker's list and every function's list are filtered once. Plain
 * classes stay with their function. A batch runs only when unused classes
 * are at least CLASS_GC_MIN and half of all classes, so its cost is
 * amortised over the creations that made them.
 */
void tgs__collect_classes(tgs_core *c)
{
    if (c->nunused < CLASS_GC_MIN || c->nunused * 2 < c->nclasses)
        return;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        for (uint32_t j = w->nclasses; j-- > 0;) {
            tgs_class *k = w->classes[j];
            if (k->refs == 0 && !is_plain(k))
                drop_class(w->classes, &w->nclasses, j);
        }
    }
    for (size_t i = 0; i < tgs_map_capacity(&c->funcs); i++) {
        tgs_func *f = tgs_map_at(&c->funcs, i);
        if (f == NULL)
            continue;
        for (uint32_t j = f->nclasses; j-- > 0;) {
            tgs_class *k = f->classes[j];
            if (k->refs != 0 || is_plain(k))
                continue;
            drop_class(f->classes, &f->nclasses, j);
            tgs_map_remove(&c->classes, k->hash, k);
            c->nclasses--;
            tgs__class_free(k);
        }
    }
    c->nunused = 0;
}

/* Room for `n` classes in a class list (a function's, a worker's); lists
 * are counted in uint32_t. */
int tgs__class_list_reserve(tgs_class ***v, size_t *cap, size_t n)
{
    if (n <= *cap)
        return TGS_OK;
    return tg__array_grow_to(v, cap, n, sizeof **v, 4, UINT32_MAX) == TG_OK
               ? TGS_OK
               : TGS_ENOMEM;
}

/*
 * The class of function `f` with canonical request `res`, restrictions
 * `names` (see canon_res, canon_names) and, if `fetch`, a held input:
 * found, or made and listed by every connected worker that could run it.
 * Making one reserves every list it joins first, so a failure leaves
 * nothing half-linked. Unused classes stay until tgs__collect_classes().
 */
int tgs__class_get(tgs_core *c, tgs_func *f, const tgs_cres *res, size_t nres,
                   const tgs_str *names, size_t nnames, bool fetch,
                   tgs_class **out)
{
    if (nres == 0 && nnames == 0 && !fetch) {
        *out = &f->plain;
        return TGS_OK;
    }
    uint32_t h = class_hash(f, res, nres, names, nnames, fetch);
    size_t pos = tgs_map_start(&c->classes, h);
    tgs_class *k;
    while ((k = tgs_map_next(&c->classes, h, &pos)) != NULL) {
        if (class_is(k, f, res, nres, names, nnames, fetch)) {
            *out = k;
            return TGS_OK;
        }
    }
    if (nres > UINT32_MAX || nnames > UINT32_MAX)
        return TGS_EINVAL;
    size_t size = sizeof *k + nres * sizeof *res + nnames * sizeof *names;
    for (size_t i = 0; i < nnames; i++)
        size += names[i].len + 1;
    k = calloc(1, size);
    if (k == NULL)
        return TGS_ENOMEM;
    k->func = f;
    k->hash = h;
    k->starving_pos = NONE;
    k->nres = (uint32_t)nres;
    k->nnames = (uint32_t)nnames;
    k->fetch = fetch;
    k->res = (tgs_cres *)(k + 1);
    k->names = (tgs_str *)(k->res + nres);
    if (nres)
        memcpy(k->res, res, nres * sizeof *res);
    char *p = (char *)(k->names + nnames);
    for (size_t i = 0; i < nnames; i++)
        k->names[i] = tgs__put_str(&p, names[i]);

    int rc = tgs__reserve_starving(c, total_classes(c) + 1);
    if (rc == TGS_OK)
        rc = tgs_map_reserve(&c->classes, 1);
    if (rc == TGS_OK)
        rc = tgs__class_list_reserve(&f->classes, &f->capclasses,
                                     f->nclasses + 1);
    for (size_t i = 0; i < c->nworkers && rc == TGS_OK; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->draining && provides(w, f) && tgs__class_fits(w, k))
            rc = tgs__class_list_reserve(&w->classes, &w->capclasses,
                                         w->nclasses + 1);
    }
    if (rc != TGS_OK) {
        free(k);
        return TGS_ENOMEM;
    }
    tgs_map_insert(&c->classes, h, k);
    c->nclasses++;
    c->nunused++; /* until its first task */
    f->classes[f->nclasses++] = k;
    for (size_t i = 0; i < c->nworkers; i++) {
        tgs_worker *w = c->workers[i];
        if (!w->draining && provides(w, f) && tgs__class_fits(w, k)) {
            w->classes[w->nclasses++] = k;
            k->nplacers++; /* no READY task yet: nothing else to update */
        }
    }
    *out = k;
    return TGS_OK;
}

static int rsort_cmp(const void *a, const void *b)
{
    const tgs_rsort *x = a, *y = b;
    if (x->name != y->name) {
        int r = str_cmp(istr(x->name), istr(y->name));
        if (r != 0)
            return r;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * The canonical form of a request, in c->cres: names interned, sorted by
 * name, the last amount of a repeated name, zero amounts dropped. Amounts
 * were validated by the caller. @return the number of entries, or a
 * negative status.
 */
long tgs__canon_res(tgs_core *c, const tgs_resource *res, size_t n)
{
    if (n == 0)
        return 0;
    if (tg__array_grow(&c->rsort, &c->caprsort, n, sizeof *c->rsort) != TG_OK ||
        tg__array_grow(&c->cres, &c->capcres, n, sizeof *c->cres) != TG_OK)
        return TGS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = tgs__intern_str(&c->rnames, res[i].name, &c->rsort[i].name);
        if (rc != TGS_OK)
            return rc;
        c->rsort[i].amount = res[i].amount;
        c->rsort[i].index = i;
    }
    if (n > 1)
        qsort(c->rsort, n, sizeof *c->rsort, rsort_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && c->rsort[i + 1].name == c->rsort[i].name)
            continue; /* a later entry of the same name wins */
        if (c->rsort[i].amount > 0)
            c->cres[m++] = (tgs_cres){c->rsort[i].name, c->rsort[i].amount};
    }
    return (long)m;
}

static int names_cmp(const void *a, const void *b)
{
    return str_cmp(*(const tgs_str *)a, *(const tgs_str *)b);
}

/* The canonical form of restrictions, in c->cnames: sorted, each once, no
 * empty names. @return the number of names, or a negative status. */
long tgs__canon_names(tgs_core *c, const tgs_str *names, size_t n)
{
    if (n == 0)
        return 0;
    if (tg__array_grow(&c->cnames, &c->capcnames, n, sizeof *c->cnames) !=
        TG_OK)
        return TGS_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (names[i].len > 0)
            c->cnames[m++] = names[i];
    if (m > 1)
        qsort(c->cnames, m, sizeof *c->cnames, names_cmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || str_cmp(c->cnames[u - 1], c->cnames[i]) != 0)
            c->cnames[u++] = c->cnames[i];
    return (long)u;
}
