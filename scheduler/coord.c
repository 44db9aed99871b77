/* SPDX-License-Identifier: Apache-2.0
 *
 * coord.c: service taskgrid.v1.Scheduler/Coordinate (see coord.h and
 * CoordRequest in the contract): the named primitives, each operation on
 * them, and the values they store. A value refers to futures by key; it
 * holds their results through the core's client holds (tgs_core_hold), so
 * they outlive the client that stored them, and every value handed out
 * gives its caller holds of its own. An operation that must wait is
 * parked by coord_wait.c. Every byte of a request is checked against the
 * limits of coord.h first, with an error naming the one passed. Depends
 * on sched.h, coord.h, the core and the codec.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "methods.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/log.h"

#define K(x) taskgrid_v1_CoordKind_COORD_KIND_##x
#define OP(x) taskgrid_v1_CoordOp_COORD_OP_##x

static const char *kind_name(int kind)
{
    static const char *const names[] = {"?",     "variable",  "queue",
                                        "event", "semaphore", "dataset"};
    return kind >= 0 && kind <= K(DATASET) ? names[kind] : "?";
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

static size_t value_bytes(const cval *v)
{
    size_t n = v->len + (v->key ? strlen(v->key) : 0);
    for (size_t i = 0; i < v->nrefs; i++)
        n += strlen(v->refs[i]);
    return n;
}

/* The value's keys (its key and refs) as core strings; NULL when out of
 * memory. */
static tgs_str *value_keys(const cval *v, size_t *n)
{
    tgs_str *ks = calloc(v->nrefs + 1, sizeof(*ks));
    size_t k = 0;

    if (ks == NULL)
        return NULL;
    if (v->key != NULL)
        ks[k++] = CS(v->key);
    for (size_t i = 0; i < v->nrefs; i++)
        ks[k++] = CS(v->refs[i]);
    *n = k;
    return ks;
}

static void value_free(cval *v)
{
    free(v->data);
    free(v->codec);
    free(v->key);
    for (size_t i = 0; i < v->nrefs; i++)
        free(v->refs[i]);
    free(v->refs);
    memset(v, 0, sizeof(*v));
}

/* One more client hold on each key of `v` (for the caller it is handed
 * to); false when out of memory. */
static bool value_hold(sched *s, const cval *v)
{
    size_t n;
    tgs_str *ks = value_keys(v, &n);

    if (ks == NULL)
        return false;
    tgs_core_hold(s->core, ks, n, NULL);
    free(ks);
    return true;
}

void coord_value_drop(sched *s, cval *v)
{
    size_t n;
    tgs_str *ks = value_keys(v, &n);
    size_t bytes = value_bytes(v);

    if (ks != NULL) {
        tgs_core_release(s->core, ks, n, NULL);
        free(ks);
        srv_run_actions(s);
    }
    s->coord->bytes -= bytes < s->coord->bytes ? bytes : s->coord->bytes;
    value_free(v);
}

/* Check a key the value refers to: bounded, and known to the core. */
static int check_key(sched *s, const char *k, const char *what, char *msg,
                     size_t msglen)
{
    size_t len = strlen(k);

    if (len == 0 || len > TG_PROTO_KEY_MAX) {
        snprintf(msg, msglen,
                 "CoordValue.%s: a key of %zu bytes (1 to %u allowed)", what,
                 len, (unsigned)TG_PROTO_KEY_MAX);
        return TG_EINVAL;
    }
    if (tgs_core_find(s->core, CS(k)) == NULL) {
        snprintf(msg, msglen,
                 "CoordValue.%s: key '%.300s' is not known to the scheduler "
                 "(never submitted, or released): store a value only while "
                 "its futures are held",
                 what, k);
        return TG_EINVAL;
    }
    return TG_OK;
}

/* Copy, check and take the value of a request: its keys held, its bytes
 * counted. */
static int value_take(sched *s, const taskgrid_v1_CoordValue *m, cval *v,
                      char *msg, size_t msglen)
{
    int rc;

    memset(v, 0, sizeof(*v));
    if (m->data.len > COORD_VALUE_MAX || m->refs_count > COORD_REFS_MAX) {
        snprintf(msg, msglen,
                 "CoordValue of %zu bytes and %u refs: at most %u bytes "
                 "(8 MiB) and %u refs are allowed; share large data as a "
                 "future (scatter it) instead",
                 m->data.len, (unsigned)m->refs_count, COORD_VALUE_MAX,
                 COORD_REFS_MAX);
        return TG_ETOOBIG;
    }
    if (m->key.len > 0 && (m->data.len > 0 || m->refs_count > 0)) {
        snprintf(msg, msglen, "%s",
                 "CoordValue: a value is either a key or data (with refs), "
                 "not both");
        return TG_EINVAL;
    }
    if (m->codec.len > 64) {
        snprintf(msg, msglen, "CoordValue.codec of %zu bytes (at most 64)",
                 m->codec.len);
        return TG_EINVAL;
    }
    v->len = m->data.len;
    v->data = malloc(v->len ? v->len : 1);
    v->codec = tg_pbbuf_strdup(m->codec);
    v->refs = calloc(m->refs_count ? m->refs_count : 1, sizeof(*v->refs));
    if (m->key.len > 0)
        v->key = tg_pbbuf_strdup(m->key);
    if (v->data == NULL || v->codec == NULL || v->refs == NULL ||
        (m->key.len > 0 && v->key == NULL))
        goto nomem;
    if (v->len)
        memcpy(v->data, m->data.ptr, v->len);
    for (pb_size_t i = 0; i < m->refs_count; i++) {
        if ((v->refs[i] = strdup(m->refs[i])) == NULL)
            goto nomem;
        v->nrefs++;
    }
    if (v->key != NULL && (rc = check_key(s, v->key, "key", msg, msglen)))
        goto fail;
    for (size_t i = 0; i < v->nrefs; i++)
        if ((rc = check_key(s, v->refs[i], "refs", msg, msglen)))
            goto fail;
    if (s->coord->bytes + value_bytes(v) > COORD_BYTES_MAX) {
        snprintf(msg, msglen,
                 "the scheduler keeps %llu bytes of coordination values, and "
                 "this one of %zu would pass its limit of %llu (256 MiB): "
                 "delete some, or share data as futures",
                 (unsigned long long)s->coord->bytes, value_bytes(v),
                 (unsigned long long)COORD_BYTES_MAX);
        rc = TG_ETOOBIG;
        goto fail;
    }
    if (!value_hold(s, v))
        goto nomem;
    s->coord->bytes += value_bytes(v);
    return TG_OK;
nomem:
    snprintf(msg, msglen, "%s", "scheduler out of memory");
    rc = TG_ENOMEM;
fail:
    value_free(v);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The table of primitives                                             */
/* ------------------------------------------------------------------ */

static int prim_cmp(const cprim *p, int kind, const char *name, size_t len)
{
    int c;

    if (p->kind != kind)
        return p->kind < kind ? -1 : 1;
    c = memcmp(p->name, name, p->namelen < len ? p->namelen : len);
    if (c != 0)
        return c;
    return p->namelen < len ? -1 : p->namelen > len;
}

/* Index of (kind, name), or where it would go. */
static size_t prim_index(const srv_coord *co, int kind, const char *name,
                         size_t len, bool *found)
{
    size_t lo = 0, hi = co->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = prim_cmp(co->v[mid], kind, name, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

cprim *coord_find(srv_coord *co, int kind, const char *name, size_t len)
{
    bool found;
    size_t i = prim_index(co, kind, name, len, &found);
    return found ? co->v[i] : NULL;
}

/* The primitive of `o`, created if need be: NULL with `msg` when the
 * table is full or memory is out. */
static cprim *prim_get(sched *s, const cop *o, int *rc, char *msg,
                       size_t msglen)
{
    srv_coord *co = s->coord;
    bool found;
    size_t i = prim_index(co, o->kind, o->name, o->namelen, &found);
    cprim *p;

    if (found)
        return co->v[i];
    if (co->n >= COORD_PRIMS_MAX) {
        snprintf(msg, msglen,
                 "the scheduler keeps %zu coordination primitives and "
                 "datasets, its limit: cannot create %s '%.200s' (delete "
                 "or empty some first)",
                 co->n, kind_name(o->kind), o->name);
        *rc = TG_ETOOBIG;
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(o->name)) == NULL ||
        tg__array_grow_to(&co->v, &co->cap, co->n + 1, sizeof(*co->v), 16,
                          SIZE_MAX) != TG_OK) {
        if (p)
            free(p->name);
        free(p);
        snprintf(msg, msglen, "%s", "scheduler out of memory");
        *rc = TG_ENOMEM;
        return NULL;
    }
    p->kind = o->kind;
    p->namelen = o->namelen;
    memmove(&co->v[i + 1], &co->v[i], (co->n - i) * sizeof(*co->v));
    co->v[i] = p;
    co->n++;
    return p;
}

static void prim_free(sched *s, cprim *p)
{
    if (p->has)
        coord_value_drop(s, &p->val);
    for (size_t i = 0; i < p->n; i++)
        coord_value_drop(s, &p->items[p->head + i]);
    free(p->items);
    for (size_t i = 0; i < p->nleases; i++)
        free(p->leases[i].id);
    free(p->leases);
    free(p->name);
    free(p);
}

void coord_prims_free(sched *s)
{
    srv_coord *co = s->coord;

    for (size_t i = 0; i < co->n; i++) {
        cprim *p = co->v[i];
        value_free(&p->val);
        for (size_t j = 0; j < p->n; j++)
            value_free(&p->items[p->head + j]);
        p->has = false;
        p->n = 0;
        prim_free(s, p);
    }
    free(co->v);
    co->v = NULL;
    co->n = co->cap = 0;
}

void coord_prim_maybe_drop(sched *s, cprim *p)
{
    srv_coord *co = s->coord;
    bool found;
    size_t i;

    if (p->has || p->n > 0 || p->set || p->nleases > 0)
        return;
    i = prim_index(co, p->kind, p->name, p->namelen, &found);
    if (!found || co->v[i] != p)
        return;
    memmove(&co->v[i], &co->v[i + 1], (co->n - i - 1) * sizeof(*co->v));
    co->n--;
    prim_free(s, p);
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */
/* ------------------------------------------------------------------ */

/* A copy of `v` for an answer, borrowed, with a hold for the caller. */
static int hand_out(sched *s, cval *v, cres *r)
{
    if (!value_hold(s, v))
        return TG_ENOMEM;
    r->vals = v;
    r->nvals = 1;
    r->own = false;
    return TG_OK;
}

/* Variable and dataset: one value. */
static int op_value(sched *s, cop *o, cres *r, char *msg, size_t msglen)
{
    cprim *p = coord_find(s->coord, o->kind, o->name, o->namelen);
    int rc = TG_OK;

    switch (o->op) {
    case OP(SET):
        if (p != NULL && p->has && o->kind == K(DATASET) && !o->override)
            return COORD_DONE; /* ok false: published already */
        if (p == NULL && (p = prim_get(s, o, &rc, msg, msglen)) == NULL)
            return rc;
        if (p->has)
            coord_value_drop(s, &p->val);
        p->val = o->val; /* moved: its holds go with it */
        p->has = true;
        o->has_val = false;
        memset(&o->val, 0, sizeof(o->val));
        r->ok = true;
        return COORD_DONE;
    case OP(GET):
        if (p == NULL || !p->has)
            return o->kind == K(VARIABLE) ? COORD_WAIT : COORD_DONE;
        r->ok = true;
        return hand_out(s, &p->val, r) == TG_OK ? COORD_DONE : TG_ENOMEM;
    case OP(DELETE):
        if (p != NULL && p->has) {
            coord_value_drop(s, &p->val);
            p->has = false;
            r->ok = true;
            coord_prim_maybe_drop(s, p);
        }
        return COORD_DONE;
    default:
        return TG_EINVAL;
    }
}

static int queue_push(sched *s, cprim *p, cop *o, char *msg, size_t msglen)
{
    if (p->head + p->n == p->cap && p->head > 0) {
        memmove(p->items, p->items + p->head, p->n * sizeof(*p->items));
        p->head = 0;
    }
    if (tg__array_grow_to(&p->items, &p->cap, p->n + 1, sizeof(*p->items), 16,
                          SIZE_MAX) != TG_OK) {
        snprintf(msg, msglen, "%s", "scheduler out of memory");
        return TG_ENOMEM;
    }
    (void)s;
    p->items[p->head + p->n++] = o->val;
    o->has_val = false;
    memset(&o->val, 0, sizeof(o->val));
    return TG_OK;
}

static int op_queue(sched *s, cop *o, cres *r, char *msg, size_t msglen)
{
    cprim *p = coord_find(s->coord, o->kind, o->name, o->namelen);
    size_t want, n = p ? p->n : 0;
    int rc = TG_OK;

    switch (o->op) {
    case OP(PUT):
        if (p != NULL && p->maxsize > 0 && p->n >= p->maxsize)
            return COORD_WAIT;
        if (n >= COORD_QUEUE_MAX) {
            snprintf(msg, msglen,
                     "queue '%.200s' holds %zu items, the most a queue may "
                     "hold",
                     o->name, n);
            return TG_ETOOBIG;
        }
        if (p == NULL) {
            if ((p = prim_get(s, o, &rc, msg, msglen)) == NULL)
                return rc;
            p->maxsize = o->limit;
        }
        if ((rc = queue_push(s, p, o, msg, msglen)) != TG_OK) {
            coord_prim_maybe_drop(s, p);
            return rc;
        }
        r->ok = true;
        return COORD_DONE;
    case OP(GET):
        want = o->all ? n : (o->count ? o->count : 1);
        if (n < want || (want == 0 && !o->all))
            return COORD_WAIT;
        r->vals = calloc(want ? want : 1, sizeof(*r->vals));
        if (r->vals == NULL)
            return TG_ENOMEM;
        for (size_t i = 0; i < want; i++) /* moved: their holds go along */
            r->vals[i] = p->items[p->head + i];
        r->nvals = want;
        r->own = true;
        r->ok = true;
        if (p != NULL) {
            p->head += want;
            p->n -= want;
            if (p->n == 0)
                p->head = 0;
            coord_prim_maybe_drop(s, p);
        }
        return COORD_DONE;
    case OP(SIZE):
        r->ok = true;
        r->size = n;
        return COORD_DONE;
    case OP(DELETE):
        if (p != NULL) {
            r->ok = p->n > 0;
            while (p->n > 0) {
                coord_value_drop(s, &p->items[p->head++]);
                p->n--;
            }
            p->head = 0;
            coord_prim_maybe_drop(s, p);
        }
        return COORD_DONE;
    default:
        return TG_EINVAL;
    }
}

static int op_event(sched *s, cop *o, cres *r, char *msg, size_t msglen)
{
    cprim *p = coord_find(s->coord, o->kind, o->name, o->namelen);
    int rc = TG_OK;

    switch (o->op) {
    case OP(SET):
        if (p == NULL && (p = prim_get(s, o, &rc, msg, msglen)) == NULL)
            return rc;
        p->set = true;
        r->ok = true;
        return COORD_DONE;
    case OP(CLEAR):
        if (p != NULL) {
            p->set = false;
            coord_prim_maybe_drop(s, p);
        }
        r->ok = true;
        return COORD_DONE;
    case OP(WAIT):
        r->ok = p != NULL && p->set;
        return r->ok ? COORD_DONE : COORD_WAIT;
    default:
        return TG_EINVAL;
    }
}

/* The index of lease `id` in `p`, or SIZE_MAX. */
static size_t lease_index(const cprim *p, const char *id)
{
    for (size_t i = 0; p != NULL && i < p->nleases; i++)
        if (strcmp(p->leases[i].id, id) == 0)
            return i;
    return SIZE_MAX;
}

static int64_t lease_deadline(const cop *o)
{
    return tg__now_ms() +
           (o->lease_timeout_ms ? o->lease_timeout_ms : COORD_LEASE_DEFAULT_MS);
}

static int sem_acquire(sched *s, cop *o, cres *r, char *msg, size_t msglen)
{
    cprim *p = coord_find(s->coord, o->kind, o->name, o->namelen);
    size_t i = lease_index(p, o->lease);
    int rc = TG_OK;
    char *id;

    if (o->limit == 0 || o->limit > COORD_LEASES_MAX) {
        snprintf(msg, msglen,
                 "ACQUIRE of semaphore '%.200s' needs its number of leases "
                 "in CoordRequest.limit (1 to %u), not %u",
                 o->name, COORD_LEASES_MAX, (unsigned)o->limit);
        return TG_EINVAL;
    }
    if (p != NULL && p->max_leases != o->limit) {
        snprintf(msg, msglen,
                 "semaphore '%.200s' has max_leases %u, not %u: every user "
                 "of a name must give the same number",
                 o->name, (unsigned)p->max_leases, (unsigned)o->limit);
        return TG_ESTATE;
    }
    if (i != SIZE_MAX) { /* held already: granted again */
        p->leases[i].expires_ms = lease_deadline(o);
        r->ok = true;
        return COORD_DONE;
    }
    if (p != NULL && p->nleases >= p->max_leases)
        return COORD_WAIT;
    if (p == NULL) {
        if ((p = prim_get(s, o, &rc, msg, msglen)) == NULL)
            return rc;
        p->max_leases = o->limit;
    }
    if ((id = strdup(o->lease)) == NULL ||
        tg__array_grow_to(&p->leases, &p->capleases, p->nleases + 1,
                          sizeof(*p->leases), 4, SIZE_MAX) != TG_OK) {
        free(id);
        coord_prim_maybe_drop(s, p);
        snprintf(msg, msglen, "%s", "scheduler out of memory");
        return TG_ENOMEM;
    }
    p->leases[p->nleases].id = id;
    p->leases[p->nleases++].expires_ms = lease_deadline(o);
    r->ok = true;
    return COORD_DONE;
}

static int op_semaphore(sched *s, cop *o, cres *r, char *msg, size_t msglen)
{
    cprim *p = coord_find(s->coord, o->kind, o->name, o->namelen);
    size_t i;

    switch (o->op) {
    case OP(ACQUIRE):
        return sem_acquire(s, o, r, msg, msglen);
    case OP(RELEASE):
        if ((i = lease_index(p, o->lease)) != SIZE_MAX) {
            free(p->leases[i].id);
            p->leases[i] = p->leases[--p->nleases];
            r->ok = true;
            coord_prim_maybe_drop(s, p);
        }
        return COORD_DONE;
    case OP(REFRESH):
        if ((i = lease_index(p, o->lease)) != SIZE_MAX) {
            p->leases[i].expires_ms = lease_deadline(o);
            r->ok = true;
        }
        return COORD_DONE;
    case OP(SIZE):
        r->ok = true;
        r->size = p ? p->nleases : 0;
        return COORD_DONE;
    default:
        return TG_EINVAL;
    }
}

static int op_list(sched *s, cres *r)
{
    srv_coord *co = s->coord;
    size_t n = 0;

    r->names = calloc(co->n ? co->n : 1, sizeof(*r->names));
    if (r->names == NULL)
        return TG_ENOMEM;
    for (size_t i = 0; i < co->n; i++) /* sorted by kind, then name */
        if (co->v[i]->kind == K(DATASET) && co->v[i]->has)
            r->names[n++] = co->v[i]->name;
    r->nnames = n;
    r->ok = true;
    return COORD_DONE;
}

int coord_try(sched *s, cop *o, cres *r, char *msg, size_t msglen)
{
    int rc;

    if (o->kind == K(DATASET) && o->op == OP(LIST))
        rc = op_list(s, r);
    else if (o->kind == K(VARIABLE) || o->kind == K(DATASET))
        rc = op_value(s, o, r, msg, msglen);
    else if (o->kind == K(QUEUE))
        rc = op_queue(s, o, r, msg, msglen);
    else if (o->kind == K(EVENT))
        rc = op_event(s, o, r, msg, msglen);
    else
        rc = op_semaphore(s, o, r, msg, msglen);
    if (rc == TG_ENOMEM && msg[0] == '\0')
        snprintf(msg, msglen, "%s", "scheduler out of memory");
    return rc;
}

void coord_answer(sched *s, tg__scall *c, cres *r)
{
    taskgrid_v1_CoordResponse m = {0};
    taskgrid_v1_CoordValue *v = calloc(r->nvals ? r->nvals : 1, sizeof(*v));

    if (v == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    m.ok = r->ok;
    m.timed_out = r->timed_out;
    m.size = r->size;
    for (size_t i = 0; i < r->nvals; i++) {
        const cval *x = &r->vals[i];
        v[i].data = tg_pbbuf_mem(x->data, x->len);
        v[i].codec = tg_pbbuf_str(x->codec ? x->codec : "");
        v[i].key = tg_pbbuf_str(x->key ? x->key : "");
        v[i].refs = x->refs;
        v[i].refs_count = (pb_size_t)x->nrefs;
    }
    m.values = v;
    m.values_count = (pb_size_t)r->nvals;
    m.names = r->names;
    m.names_count = (pb_size_t)r->nnames;
    srv_reply(c, taskgrid_v1_CoordResponse_fields, &m);
cleanup:
    free(v);
    if (r->own) /* taken out of a queue: the caller has their holds now */
        for (size_t i = 0; i < r->nvals; i++) {
            s->coord->bytes -= value_bytes(&r->vals[i]);
            value_free(&r->vals[i]);
        }
    if (r->own)
        free(r->vals);
    free(r->names);
    memset(r, 0, sizeof(*r));
}

void coord_op_free(sched *s, cop *o)
{
    if (o->has_val)
        coord_value_drop(s, &o->val);
    free(o->name);
    free(o->lease);
    memset(o, 0, sizeof(*o));
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* Which ops each kind takes (bit per CoordOp). */
static bool op_allowed(int kind, int op)
{
    static const unsigned ops[] = {
        [K(VARIABLE)] = 1u << OP(SET) | 1u << OP(GET) | 1u << OP(DELETE),
        [K(QUEUE)] =
            1u << OP(PUT) | 1u << OP(GET) | 1u << OP(SIZE) | 1u << OP(DELETE),
        [K(EVENT)] = 1u << OP(SET) | 1u << OP(CLEAR) | 1u << OP(WAIT),
        [K(SEMAPHORE)] = 1u << OP(ACQUIRE) | 1u << OP(RELEASE) |
                         1u << OP(REFRESH) | 1u << OP(SIZE),
        [K(DATASET)] =
            1u << OP(SET) | 1u << OP(GET) | 1u << OP(DELETE) | 1u << OP(LIST),
    };
    return kind > 0 && kind <= K(DATASET) && op > 0 && op <= OP(LIST) &&
           (ops[kind] & (1u << op)) != 0;
}

static bool has_nul(tg_pbbuf b)
{
    return b.len > 0 && memchr(b.ptr, '\0', b.len) != NULL;
}

/* Check the request and copy it into `o` (its value taken). */
static int op_from(sched *s, const taskgrid_v1_CoordRequest *m, cop *o,
                   char *msg, size_t msglen)
{
    bool list = m->op == OP(LIST);
    bool sem = m->kind == K(SEMAPHORE) && m->op != OP(SIZE);

    memset(o, 0, sizeof(*o));
    if (!op_allowed(m->kind, m->op)) {
        snprintf(msg, msglen,
                 "CoordRequest: operation %d is not one a %s takes (see "
                 "CoordKind in taskgrid.proto)",
                 (int)m->op,
                 m->kind > 0 && m->kind <= K(DATASET)
                     ? kind_name(m->kind)
                     : "primitive of unknown kind");
        return TG_EINVAL;
    }
    if (!list && (m->name.len == 0 || m->name.len > COORD_NAME_MAX ||
                  has_nul(m->name))) {
        snprintf(msg, msglen,
                 "CoordRequest.name: %zu bytes%s; a name has 1 to %u bytes "
                 "and no NUL",
                 m->name.len, has_nul(m->name) ? " with a NUL" : "",
                 COORD_NAME_MAX);
        return m->name.len > COORD_NAME_MAX ? TG_ETOOBIG : TG_EINVAL;
    }
    if (sem && (m->lease.len == 0 || m->lease.len > COORD_LEASE_MAX ||
                has_nul(m->lease))) {
        snprintf(msg, msglen,
                 "CoordRequest.lease: %zu bytes; a semaphore operation needs "
                 "a lease id of 1 to %u bytes (no NUL)",
                 m->lease.len, COORD_LEASE_MAX);
        return TG_EINVAL;
    }
    if (sem && m->lease_timeout_ms != 0 &&
        (m->lease_timeout_ms < COORD_LEASE_MIN_MS ||
         m->lease_timeout_ms > COORD_LEASE_MAX_MS)) {
        snprintf(msg, msglen,
                 "CoordRequest.lease_timeout_ms: %u; %u to %u allowed (0: "
                 "%u)",
                 (unsigned)m->lease_timeout_ms, COORD_LEASE_MIN_MS,
                 COORD_LEASE_MAX_MS, COORD_LEASE_DEFAULT_MS);
        return TG_EINVAL;
    }
    if (m->kind == K(QUEUE) && m->op == OP(GET) && m->count > COORD_QUEUE_MAX) {
        snprintf(msg, msglen,
                 "CoordRequest.count: %u items, more than a queue may hold "
                 "(%u)",
                 (unsigned)m->count, COORD_QUEUE_MAX);
        return TG_EINVAL;
    }
    o->kind = m->kind;
    o->op = m->op;
    o->name = tg_pbbuf_strdup(m->name);
    o->namelen = m->name.len;
    o->lease = sem ? tg_pbbuf_strdup(m->lease) : NULL;
    if (o->name == NULL || (sem && o->lease == NULL)) {
        coord_op_free(s, o);
        snprintf(msg, msglen, "%s", "scheduler out of memory");
        return TG_ENOMEM;
    }
    o->timeout_ms = m->timeout_ms;
    o->count = m->count;
    o->all = m->all;
    o->limit = m->limit;
    o->lease_timeout_ms = m->lease_timeout_ms;
    o->override = m->override;
    if (m->op == OP(PUT) || (m->op == OP(SET) && m->kind != K(EVENT))) {
        int rc = value_take(s, &m->value, &o->val, msg, msglen);
        if (rc != TG_OK) {
            coord_op_free(s, o);
            return rc;
        }
        o->has_val = true;
    }
    return TG_OK;
}

void srv_do_coordinate(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_CoordRequest m;
    cop o;
    cres r = {0};
    char msg[700] = "";
    int rc;

    if (s->coord == NULL && (s->coord = calloc(1, sizeof(*s->coord))) == NULL) {
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    if (!srv_decode(c, taskgrid_v1_CoordRequest_fields, &m, req, len))
        return;
    rc = op_from(s, &m, &o, msg, sizeof(msg));
    tg__wire_release(taskgrid_v1_CoordRequest_fields, &m);
    if (rc != TG_OK) {
        tg__scall_finish(c, rc, msg);
        return;
    }
    rc = coord_try(s, &o, &r, msg, sizeof(msg));
    if (rc == COORD_WAIT && o.timeout_ms != 0)
        rc = coord_park(s, c, &o, msg, sizeof(msg));
    else if (rc == COORD_WAIT) /* not asked to wait: how things are */
        rc = COORD_DONE;
    if (rc == COORD_DONE)
        coord_answer(s, c, &r);
    else if (rc != COORD_WAIT)
        tg__scall_finish(c, rc, msg);
    if (rc != COORD_WAIT) {
        int kind = o.kind;
        char name[COORD_NAME_MAX + 1];
        size_t nlen = o.namelen;
        memcpy(name, o.name, nlen);
        name[nlen] = '\0';
        coord_op_free(s, &o);
        coord_wake(s, kind, name, nlen);
    }
}
