/* SPDX-License-Identifier: Apache-2.0
 *
 * registry.c: the function table behind tg_registry_add (see registry.h).
 * Entries live in an array in registration order (what Register.functions
 * advertises) and are indexed by an open-addressing hash of their names,
 * because every task does one lookup and plug-ins may register hundreds.
 * Depends on libc and the SDK's error reporting.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "util/array.h"
#include "util/error.h"

struct tg_registry {
    tgw_fn *fns;
    size_t n, cap;
    size_t *slots; /* index + 1 into fns; 0 = empty; size nslots (pow2) */
    size_t nslots;
    bool frozen;
};

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    while (*s)
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

int tgw_registry_new(tg_registry **out)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    return TG_OK;
}

void tgw_registry_free(tg_registry *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        free((char *)r->fns[i].name);
    free(r->fns);
    free(r->slots);
    free(r);
}

void tgw_registry_freeze(tg_registry *r)
{
    r->frozen = true;
}

static size_t *find_slot(const tg_registry *r, const char *name)
{
    size_t mask = r->nslots - 1;

    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        size_t *s = &r->slots[i];

        if (*s == 0 || strcmp(r->fns[*s - 1].name, name) == 0)
            return s;
    }
}

/* Keep the table at most half full, so probes stay short. */
static int rehash(tg_registry *r)
{
    size_t ns = r->nslots ? r->nslots * 2 : 16;
    size_t *slots = calloc(ns, sizeof(*slots));

    if (slots == NULL)
        return -1;
    free(r->slots);
    r->slots = slots;
    r->nslots = ns;
    for (size_t i = 0; i < r->n; i++)
        *find_slot(r, r->fns[i].name) = i + 1;
    return 0;
}

/* "namespace.name": printable, no whitespace, a dot with text on both
 * sides, so names read the same in every language's worker. */
static bool valid_name(const char *name)
{
    const char *dot;

    if (name == NULL || *name == '\0' || strlen(name) > 256)
        return false;
    for (const char *p = name; *p; p++)
        if (!isgraph((unsigned char)*p))
            return false;
    dot = strchr(name, '.');
    return dot != NULL && dot != name && dot[1] != '\0' &&
           name[strlen(name) - 1] != '.';
}

int tg_registry_add(tg_registry *r, const char *name, tg_task_fn fn,
                    void *userdata)
{
    char *copy;

    if (r == NULL || fn == NULL)
        return tg__error_set(TG_EINVAL, "tg_registry_add: NULL %s",
                             r == NULL ? "registry" : "function");
    if (!valid_name(name))
        return tg__error_set(TG_EINVAL,
                             "tg_registry_add: invalid function name '%s' "
                             "(expected \"namespace.name\", no spaces)",
                             name ? name : "(null)");
    if (r->frozen)
        return tg__error_set(TG_ESTATE,
                             "tg_registry_add: '%s' added after start-up "
                             "(only valid inside tg_plugin_init)",
                             name);
    if (tgw_registry_find(r, name) != NULL)
        return tg__error_set(TG_EEXIST, "function '%s' is already registered",
                             name);
    if (tg__array_grow_to(&r->fns, &r->cap, r->n + 1, sizeof(*r->fns), 16,
                          SIZE_MAX) != TG_OK)
        return tg__error_set(TG_ENOMEM, "out of memory");
    if ((r->n + 1) * 2 > r->nslots && rehash(r) != 0)
        return tg__error_set(TG_ENOMEM, "out of memory");
    copy = strdup(name);
    if (copy == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    r->fns[r->n].name = copy;
    r->fns[r->n].fn = fn;
    r->fns[r->n].userdata = userdata;
    *find_slot(r, copy) = r->n + 1;
    r->n++;
    return TG_OK;
}

const tgw_fn *tgw_registry_find(const tg_registry *r, const char *name)
{
    size_t *s;

    if (r->nslots == 0)
        return NULL;
    s = find_slot(r, name);
    return *s ? &r->fns[*s - 1] : NULL;
}

size_t tgw_registry_count(const tg_registry *r)
{
    return r->n;
}

const tgw_fn *tgw_registry_at(const tg_registry *r, size_t i)
{
    return i < r->n ? &r->fns[i] : NULL;
}
