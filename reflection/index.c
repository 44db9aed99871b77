/* SPDX-License-Identifier: Apache-2.0
 *
 * index.c: the built-in descriptor set read into files and a sorted symbol
 * table (see index.h). A FileDescriptorSet is `repeated FileDescriptorProto
 * file = 1`; of each file only the fields that name things are read (its
 * name, package and imports; messages with their fields, oneofs, nested
 * messages and enums; enums with their values; services with their
 * methods; extensions), by a small bounded protobuf reader, so no
 * descriptor.proto codec is needed. Full names follow protobuf's scoping:
 * "pkg.Message.field", "pkg.Service.Method", and an enum value is a
 * sibling of its enum ("pkg.TASK_STATE_MEMORY"). Depends on libc and
 * util/error.h.
 */
#include <stdlib.h>
#include <string.h>

#include "reflection/index.h"
#include "taskgrid/status.h"
#include "util/error.h"

/* Nesting of messages in messages that is read; deeper is refused. */
#define MAX_DEPTH 32

/* A bounded reader over [p, end). */
typedef struct rd {
    const uint8_t *p, *end;
} rd;

static bool rd_varint(rd *r, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* The next field: its number, and for a length-delimited one its bytes
 * in `sub`; other wire types are skipped. 1: a field, 0: the end, -1:
 * malformed (groups included: no descriptor has one). */
static int rd_next(rd *r, uint32_t *num, rd *sub)
{
    uint64_t key, v;

    if (r->p >= r->end)
        return 0;
    if (!rd_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return -1;
    *num = (uint32_t)(key >> 3);
    sub->p = sub->end = NULL;
    switch (key & 7) {
    case 0:
        return rd_varint(r, &v) ? 1 : -1;
    case 1:
        if (r->end - r->p < 8)
            return -1;
        r->p += 8;
        return 1;
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 1;
    case 2:
        if (!rd_varint(r, &v) || v > (uint64_t)(r->end - r->p))
            return -1;
        sub->p = r->p;
        sub->end = r->p + v;
        r->p += v;
        return 1;
    default:
        return -1;
    }
}

/* Field 1 (`name`) of a descriptor message; false if absent, empty or
 * malformed. */
static bool name_of(rd m, rd *name)
{
    uint32_t num;
    rd sub;
    int k;
    bool found = false;

    while ((k = rd_next(&m, &num, &sub)) == 1)
        if (num == 1 && sub.p != NULL) {
            *name = sub;
            found = sub.end > sub.p;
        }
    return k == 0 && found;
}

static int broken(const char *what)
{
    return tg__error_set(
        TG_EINTERNAL, "the built-in protocol descriptors are broken: %s", what);
}

/* Append `scope` "." `name` (or `name` alone at the top of an unnamed
 * package) as a symbol of `kind` in `file`; the full name in `full`. */
static int add_sym(tgr_index *x, const char *scope, rd name, tgr_kind kind,
                   size_t file, char full[TGR_NAME_MAX])
{
    size_t sl = strlen(scope), nl = (size_t)(name.end - name.p);
    size_t fl = sl + (sl ? 1 : 0) + nl;
    tgr_sym *s;

    if (fl >= TGR_NAME_MAX)
        return broken("a name is too long");
    memmove(full, scope, sl);
    if (sl)
        full[sl++] = '.';
    memcpy(full + sl, name.p, nl);
    full[fl] = '\0';
    if (x->names_len + fl > x->names_cap) {
        size_t cap = x->names_cap ? x->names_cap * 2 : 8192;
        char *p;
        while (cap < x->names_len + fl)
            cap *= 2;
        if ((p = realloc(x->names, cap)) == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        x->names = p;
        x->names_cap = cap;
    }
    if (x->nsyms == x->syms_cap) {
        size_t cap = x->syms_cap ? x->syms_cap * 2 : 256;
        tgr_sym *p = realloc(x->syms, cap * sizeof(*p));
        if (p == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        x->syms = p;
        x->syms_cap = cap;
    }
    s = &x->syms[x->nsyms++];
    s->off = (uint32_t)x->names_len;
    s->len = (uint32_t)fl;
    s->file = (uint16_t)file;
    s->kind = (uint8_t)kind;
    memcpy(x->names + x->names_len, full, fl);
    x->names_len += fl;
    return TG_OK;
}

/* A descriptor message whose only indexed part is its name (a field, a
 * oneof, a method, an enum value, an extension): `scope`.name. */
static int add_named(tgr_index *x, const char *scope, rd m, tgr_kind kind,
                     size_t file)
{
    char full[TGR_NAME_MAX];
    rd name;

    if (!name_of(m, &name))
        return broken("an element has no name");
    return add_sym(x, scope, name, kind, file, full);
}

/*
 * An EnumDescriptorProto (name 1, value 2) or a ServiceDescriptorProto
 * (name 1, method 2): its name, then each child's. Methods live in their
 * service's scope; enum values in their enum's parent's (they are its
 * siblings).
 */
static int walk_named_list(tgr_index *x, const char *scope, rd m, size_t file,
                           tgr_kind kind)
{
    tgr_kind child = kind == TGR_ENUM ? TGR_ENUM_VALUE : TGR_METHOD;
    char full[TGR_NAME_MAX];
    uint32_t num;
    rd name, sub;
    int k, rc;

    if (!name_of(m, &name))
        return broken("an enum or service has no name");
    if ((rc = add_sym(x, scope, name, kind, file, full)) != TG_OK)
        return rc;
    while ((k = rd_next(&m, &num, &sub)) == 1)
        if (num == 2 && sub.p != NULL &&
            (rc = add_named(x, kind == TGR_ENUM ? scope : full, sub, child,
                            file)) != TG_OK)
            return rc;
    return k == 0 ? TG_OK : broken("a malformed enum or service");
}

/* DescriptorProto: name 1, field 2, nested_type 3, enum_type 4,
 * extension 6, oneof_decl 8. */
static int walk_message(tgr_index *x, const char *scope, rd m, size_t file,
                        int depth)
{
    char full[TGR_NAME_MAX];
    uint32_t num;
    rd name, sub;
    int k, rc = TG_OK;

    if (depth > MAX_DEPTH)
        return broken("messages nested too deep");
    if (!name_of(m, &name))
        return broken("a message has no name");
    if ((rc = add_sym(x, scope, name, TGR_MESSAGE, file, full)) != TG_OK)
        return rc;
    while (rc == TG_OK && (k = rd_next(&m, &num, &sub)) == 1) {
        if (sub.p == NULL)
            continue;
        if (num == 2)
            rc = add_named(x, full, sub, TGR_FIELD, file);
        else if (num == 3)
            rc = walk_message(x, full, sub, file, depth + 1);
        else if (num == 4)
            rc = walk_named_list(x, full, sub, file, TGR_ENUM);
        else if (num == 6)
            rc = add_named(x, full, sub, TGR_EXTENSION, file);
        else if (num == 8)
            rc = add_named(x, full, sub, TGR_ONEOF, file);
    }
    if (rc != TG_OK)
        return rc;
    return k == 0 ? TG_OK : broken("a malformed message");
}

/* FileDescriptorProto, first pass: name 1 and package 2. */
static int read_file_head(tgr_file *f, rd m, char pkg[TGR_NAME_MAX])
{
    uint32_t num;
    rd sub;
    int k;

    pkg[0] = '\0';
    while ((k = rd_next(&m, &num, &sub)) == 1) {
        if (sub.p == NULL)
            continue;
        if (num == 1) {
            f->name = sub.p;
            f->name_len = (size_t)(sub.end - sub.p);
        } else if (num == 2) {
            size_t n = (size_t)(sub.end - sub.p);
            if (n >= TGR_NAME_MAX)
                return broken("a package name is too long");
            memcpy(pkg, sub.p, n);
            pkg[n] = '\0';
        }
    }
    if (k != 0)
        return broken("a malformed file");
    return f->name_len > 0 ? TG_OK : broken("a file has no name");
}

/* FileDescriptorProto, second pass: message_type 4, enum_type 5,
 * service 6, extension 7. */
static int read_file_symbols(tgr_index *x, size_t file, const char *pkg)
{
    rd m = {x->files[file].bytes, x->files[file].bytes + x->files[file].len};
    uint32_t num;
    rd sub;
    int k, rc = TG_OK;

    while (rc == TG_OK && (k = rd_next(&m, &num, &sub)) == 1) {
        if (sub.p == NULL)
            continue;
        if (num == 4)
            rc = walk_message(x, pkg, sub, file, 0);
        else if (num == 5)
            rc = walk_named_list(x, pkg, sub, file, TGR_ENUM);
        else if (num == 6)
            rc = walk_named_list(x, pkg, sub, file, TGR_SERVICE);
        else if (num == 7)
            rc = add_named(x, pkg, sub, TGR_EXTENSION, file);
    }
    return rc;
}

/* FileDescriptorProto.dependency (3): each must be a file of the set. */
static int resolve_deps(tgr_index *x, size_t file)
{
    tgr_file *f = &x->files[file];
    rd m = {f->bytes, f->bytes + f->len}, sub;
    uint32_t num;
    int k, d;

    while ((k = rd_next(&m, &num, &sub)) == 1) {
        if (num != 3 || sub.p == NULL)
            continue;
        d = tgr_index_file(x, sub.p, (size_t)(sub.end - sub.p));
        if (d < 0)
            return broken("a file imports one that is not built in");
        if (f->ndeps == TGR_MAX_DEPS)
            return broken("a file has too many imports");
        f->deps[f->ndeps++] = (size_t)d;
    }
    return TG_OK;
}

static int cmp_names(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0)
        return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int cmp_sym(const void *pa, const void *pb, void *names)
{
    const tgr_sym *a = pa, *b = pb;
    return cmp_names((const char *)names + a->off, a->len,
                     (const char *)names + b->off, b->len);
}

int tgr_index_build(tgr_index *x, const uint8_t *set, size_t len)
{
    rd r = {set, set + len}, sub;
    char pkg[TGR_NAME_MAX];
    uint32_t num;
    int k, rc = TG_OK;

    memset(x, 0, sizeof(*x));
    while (rc == TG_OK && (k = rd_next(&r, &num, &sub)) == 1) {
        tgr_file *f;
        if (num != 1 || sub.p == NULL)
            continue;
        if (x->nfiles == TGR_MAX_FILES) {
            rc = broken("too many files");
            break;
        }
        f = &x->files[x->nfiles];
        f->bytes = sub.p;
        f->len = (size_t)(sub.end - sub.p);
        if ((rc = read_file_head(f, sub, pkg)) == TG_OK)
            rc = read_file_symbols(x, x->nfiles, pkg);
        x->nfiles++;
    }
    if (rc == TG_OK && k != 0)
        rc = broken("a malformed descriptor set");
    for (size_t i = 0; rc == TG_OK && i < x->nfiles; i++)
        rc = resolve_deps(x, i);
    if (rc == TG_OK && x->nsyms > 0) {
        qsort_r(x->syms, x->nsyms, sizeof(*x->syms), cmp_sym, x->names);
        for (size_t i = 1; rc == TG_OK && i < x->nsyms; i++)
            if (cmp_sym(&x->syms[i - 1], &x->syms[i], x->names) == 0)
                rc = broken("a name is defined twice");
    }
    if (rc != TG_OK)
        tgr_index_free(x);
    return rc;
}

void tgr_index_free(tgr_index *x)
{
    free(x->names);
    free(x->syms);
    memset(x, 0, sizeof(*x));
}

const tgr_sym *tgr_index_find(const tgr_index *x, const uint8_t *name,
                              size_t len)
{
    size_t lo = 0, hi = x->nsyms;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const tgr_sym *s = &x->syms[mid];
        int c = cmp_names(x->names + s->off, s->len, (const char *)name, len);
        if (c == 0)
            return s;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int tgr_index_file(const tgr_index *x, const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < x->nfiles; i++)
        if (x->files[i].name_len == len &&
            memcmp(x->files[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

size_t tgr_index_closure(const tgr_index *x, size_t f, size_t *out)
{
    bool seen[TGR_MAX_FILES] = {false};
    size_t n = 0;

    /* Breadth first over `out` itself: each file is added once. */
    out[n++] = f;
    seen[f] = true;
    for (size_t i = 0; i < n; i++) {
        const tgr_file *file = &x->files[out[i]];
        for (size_t d = 0; d < file->ndeps; d++)
            if (!seen[file->deps[d]]) {
                seen[file->deps[d]] = true;
                out[n++] = file->deps[d];
            }
    }
    return n;
}
