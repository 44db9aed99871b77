/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_check.c: the checked decode of hostile bytes (see wire_check.h).
 * Walks a decoded message with nanopb's field iterator, into static and
 * heap (FT_POINTER) submessages alike.
 */
#include "wire_check.h"

#include <stdlib.h>
#include <string.h>

#include <pb_common.h>

#include "grpc/reflection/v1/reflection.pb.h"
#include "taskgrid/status.h"

#define T(name, who)                                                        \
    {                                                                       \
#name, taskgrid_v1_##name##_fields, sizeof(taskgrid_v1_##name), who \
    }

const tgt_wire_type tgt_wire_types[] = {
    /* The scheduler decodes requests and worker messages. */
    T(SubmitRequest, "scheduler"),
    T(GatherRequest, "scheduler"),
    T(ScaleRequest, "scheduler"),
    T(AnnotateRequest, "scheduler"),
    T(CancelRequest, "scheduler"),
    T(ReleaseRequest, "scheduler"),
    T(StatusRequest, "scheduler"),
    {"HealthCheckRequest", HealthCheckRequest_fields,
     sizeof(HealthCheckRequest), "scheduler"},
    T(WorkerMessage, "scheduler"),
    /* Server reflection: the scheduler and the data service. */
    {"ServerReflectionRequest", ServerReflectionRequest_fields,
     sizeof(ServerReflectionRequest), "scheduler"},
    /* The worker decodes what the scheduler sends. */
    T(SchedulerMessage, "worker"),
    /* The SDK decodes the scheduler's answers. */
    T(SubmitResponse, "sdk"),
    T(GatherResponse, "sdk"),
    T(ScaleResponse, "sdk"),
    T(AnnotateResponse, "sdk"),
    T(CancelResponse, "sdk"),
    T(ReleaseResponse, "sdk"),
    T(StatusResponse, "sdk"),
    {"HealthCheckResponse", HealthCheckResponse_fields,
     sizeof(HealthCheckResponse), "sdk"},
};
const size_t tgt_wire_ntypes =
    sizeof(tgt_wire_types) / sizeof(tgt_wire_types[0]);

const tgt_wire_type *tgt_wire_type_find(const char *name)
{
    for (size_t i = 0; i < tgt_wire_ntypes; i++)
        if (strcmp(tgt_wire_types[i].name, name) == 0)
            return &tgt_wire_types[i];
    return NULL;
}

/* Bytes are summed into here so the reads cannot be optimised away. */
static volatile unsigned sink;

typedef struct range {
    uintptr_t lo, hi;
} range;

static bool walk(const pb_msgdesc_t *d, const void *msg, range r, int depth);

static bool check_buf(const tg_pbbuf *b, range r)
{
    uintptr_t p = (uintptr_t)b->ptr;
    unsigned s = 0;

    if (b->len == 0)
        return true;
    if (p < r.lo || p > r.hi || b->len > r.hi - p)
        return false;
    for (size_t i = 0; i < b->len; i++)
        s += b->ptr[i];
    sink += s;
    return true;
}

/* The elements of a submessage field: `n` structs of `size` at `base`. */
static bool walk_elems(const pb_field_iter_t *it, const char *base, size_t n,
                       range r, int depth)
{
    for (size_t i = 0; base != NULL && i < n; i++)
        if (!walk(it->submsg_desc, base + i * it->data_size, r, depth + 1))
            return false;
    return true;
}

static bool walk_field(const pb_field_iter_t *it, range r, int depth)
{
    bool repeated = PB_HTYPE(it->type) == PB_HTYPE_REPEATED;
    size_t n = repeated && it->pSize ? *(const pb_size_t *)it->pSize : 1;

    if (PB_ATYPE(it->type) == PB_ATYPE_CALLBACK)
        return check_buf((const tg_pbbuf *)it->pData, r);
    /* For FT_POINTER fields nanopb's iterator already dereferences:
     * pData is the heap array (pField the pointer to it). */
    if (PB_LTYPE_IS_SUBMSG(it->type) && it->submsg_desc != NULL)
        return walk_elems(it, (const char *)it->pData, n, r, depth);
    if (PB_ATYPE(it->type) == PB_ATYPE_POINTER &&
        PB_LTYPE(it->type) == PB_LTYPE_STRING && repeated) {
        char *const *strs = (char *const *)it->pData;
        for (size_t i = 0; strs != NULL && i < n; i++)
            sink += strs[i] ? (unsigned)strlen(strs[i]) : 0;
    }
    return true;
}

static bool walk(const pb_msgdesc_t *d, const void *msg, range r, int depth)
{
    pb_field_iter_t it;

    if (depth > 32 || !pb_field_iter_begin_const(&it, d, msg))
        return depth <= 32;
    do {
        if (!walk_field(&it, r, depth))
            return false;
    } while (pb_field_iter_next(&it));
    return true;
}

tgt_wire_verdict tgt_wire_check(const tgt_wire_type *t, const uint8_t *buf,
                                size_t len)
{
    void *msg = calloc(1, t->size), *again = calloc(1, t->size);
    tgt_wire_verdict v = TGT_WIRE_REFUSED;
    range r = {(uintptr_t)buf, (uintptr_t)buf + len};
    uint8_t *enc = NULL;
    size_t enclen = 0;

    if (msg == NULL || again == NULL)
        abort();
    if (tg__wire_decode(t->fields, msg, buf, len) == TG_OK) {
        v = walk(t->fields, msg, r, 0) ? TGT_WIRE_OK : TGT_WIRE_STRAY;
        if (v == TGT_WIRE_OK) {
            if (tg__wire_encode(t->fields, msg, &enc, &enclen) != TG_OK ||
                tg__wire_decode(t->fields, again, enc, enclen) != TG_OK)
                v = TGT_WIRE_NO_ROUND_TRIP;
            else
                tg__wire_release(t->fields, again);
            free(enc);
        }
        tg__wire_release(t->fields, msg);
    }
    free(msg);
    free(again);
    return v;
}
