/* SPDX-License-Identifier: Apache-2.0
 *
 * intern.c: interned names of the core. Function names become tgs_func
 * records (with their plain placement class and run-time statistics);
 * codecs and resource names become tgs_istr, so that the core compares
 * them by pointer and stores each once. Interned names live as long as
 * the core. Depends on internal.h and hashmap.h.
 */
#include "scheduler/core/internal.h"

int tgs__intern_func(tgs_core *c, tgs_str name, tgs_func **out)
{
    if (c->last_func != NULL &&
        bytes_eq(c->last_func->name, c->last_func->len, name)) {
        *out = c->last_func;
        return TGS_OK;
    }
    uint32_t h = tgs_hash32(name.ptr, name.len);
    size_t pos = tgs_map_start(&c->funcs, h);
    tgs_func *f;
    while ((f = tgs_map_next(&c->funcs, h, &pos)) != NULL) {
        if (bytes_eq(f->name, f->len, name)) {
            *out = c->last_func = f;
            return TGS_OK;
        }
    }
    if (name.len > UINT32_MAX)
        return TGS_EINVAL;
    if (tgs__reserve_starving(c, total_classes(c) + 1) != TGS_OK ||
        tgs_map_reserve(&c->funcs, 1) != TGS_OK)
        return TGS_ENOMEM;
    f = calloc(1, sizeof *f + name.len + 1);
    if (f == NULL)
        return TGS_ENOMEM;
    if (tgs__class_list_reserve(&f->classes, &f->capclasses, 1) != TGS_OK) {
        free(f);
        return TGS_ENOMEM;
    }
    memcpy(f->name, name.ptr, name.len);
    f->len = (uint32_t)name.len;
    f->hash = h;
    f->nclasses = 1;
    f->classes[0] = &f->plain;
    f->plain.func = f;
    f->plain.starving_pos = NONE;
    f->plain.hash = h;
    tgs_map_insert(&c->funcs, h, f);
    *out = c->last_func = f;
    return TGS_OK;
}

/* Intern `name` in `m` (codecs, resource names). */
int tgs__intern_str(tgs_map *m, tgs_str name, const tgs_istr **out)
{
    if (name.ptr == NULL || name.len > UINT32_MAX)
        return TGS_EINVAL;
    uint32_t h = tgs_hash32(name.ptr, name.len);
    size_t pos = tgs_map_start(m, h);
    tgs_istr *s;
    while ((s = tgs_map_next(m, h, &pos)) != NULL) {
        if (bytes_eq(s->s, s->len, name)) {
            *out = s;
            return TGS_OK;
        }
    }
    if (tgs_map_reserve(m, 1) != TGS_OK)
        return TGS_ENOMEM;
    s = malloc(sizeof *s + name.len + 1);
    if (s == NULL)
        return TGS_ENOMEM;
    if (name.len)
        memcpy(s->s, name.ptr, name.len);
    s->s[name.len] = '\0';
    s->len = (uint32_t)name.len;
    s->hash = h;
    tgs_map_insert(m, h, s);
    *out = s;
    return TGS_OK;
}

/* Empty codecs are stored as NULL. */
int tgs__intern_codec(tgs_core *c, tgs_str name, const tgs_istr **out)
{
    *out = NULL;
    if (name.len == 0)
        return TGS_OK;
    if (c->last_codec != NULL &&
        bytes_eq(c->last_codec->s, c->last_codec->len, name)) {
        *out = c->last_codec;
        return TGS_OK;
    }
    int rc = tgs__intern_str(&c->codecs, name, out);
    if (rc == TGS_OK)
        c->last_codec = *out;
    return rc;
}
