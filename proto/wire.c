/* SPDX-License-Identifier: Apache-2.0
 *
 * wire.c: the taskgrid.v1 codec on top of nanopb (see wire.h). Holds the
 * single field callback that makes string/bytes fields zero copy, and
 * refuses such a field when it arrives with a non-length-delimited wire
 * type.
 */
#include <stdio.h>
#include <stdlib.h>

#include <pb_common.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "taskgrid/status.h"
#include "util/array.h"
#include "util/error.h"
#include "wire.h"

/*
 * The input of the tg__wire_decode running on this thread: the only bytes
 * a decoded tg_pbbuf may point into.
 */
static _Thread_local struct {
    uintptr_t lo, hi; /* [lo, hi) */
    uint32_t bad_tag; /* field number refused by the callback, or 0 */
} cur;

/*
 * Decoding: a tg_pbbuf field is declared length-delimited, and then nanopb
 * hands us a substream of the input buffer limited to the field. All
 * decoding goes through tg__wire_decode, which reads from a memory buffer,
 * so the stream's state is the current read pointer: we borrow the bytes
 * instead of copying them, then skip them.
 *
 * But nanopb also calls a field callback when the field arrives with
 * another wire type (VARINT, FIXED32, FIXED64): it copies the raw value
 * into a 10-byte buffer on its own stack and passes a stream over that.
 * Borrowing from it would leave the field pointing at a dead stack frame
 * (and the scheduler would forward those bytes). So the substream must
 * lie inside the buffer being decoded; anything else is a wire type that
 * does not match the declaration, and the message is refused. (Fields
 * that are not callbacks are checked by nanopb itself: "wrong wire
 * type"; tests/wire_test.c checks both for every message type.)
 */
/* Borrow the rest of `istream` into `b` (see above). */
static bool borrow(pb_istream_t *istream, const pb_field_iter_t *field,
                   tg_pbbuf *b)
{
    size_t n = istream->bytes_left;
    uintptr_t p = (uintptr_t)istream->state;

    if (p < cur.lo || p > cur.hi || n > cur.hi - p) {
        cur.bad_tag = field->tag;
        PB_RETURN_ERROR(istream, "wrong wire type");
    }
    b->ptr = (const uint8_t *)istream->state;
    b->len = n;
    return pb_read(istream, NULL, n);
}

bool tg_pb_field_callback(pb_istream_t *istream, pb_ostream_t *ostream,
                          const pb_field_iter_t *field)
{
    tg_pbbuf *b = (tg_pbbuf *)field->pData;

    if (istream != NULL)
        return borrow(istream, field, b);
    if (ostream != NULL) {
        if (b->len == 0)
            return true; /* proto3: empty equals absent */
        return pb_encode_tag_for_field(ostream, field) &&
               pb_encode_string(ostream, b->ptr, b->len);
    }
    return true;
}

/*
 * A repeated field: nanopb calls the decoder once per entry (each its own
 * length-delimited field on the wire), the encoder once for all of them.
 */
bool tg_pb_list_callback(pb_istream_t *istream, pb_ostream_t *ostream,
                         const pb_field_iter_t *field)
{
    tg_pbbuf_list *l = (tg_pbbuf_list *)field->pData;

    if (istream != NULL) {
        tg_pbbuf b;

        if (!borrow(istream, field, &b))
            return false;
        if (l->n < TG_PBBUF_LIST_KEEP)
            l->got[l->n] = b;
        l->n++;
        return true;
    }
    if (ostream != NULL) {
        for (size_t i = 0; i < l->n; i++)
            if (!pb_encode_tag_for_field(ostream, field) ||
                !pb_encode_string(ostream, l->items[i].ptr, l->items[i].len))
                return false;
    }
    return true;
}

/*
 * pb_decode sets every field to its default except callback fields, which
 * it leaves alone (they normally hold user-set function pointers). Ours
 * are tg_pbbuf, so an absent field would keep whatever the caller's stack
 * held: clear them first, recursing into static submessages.
 */
static void clear_callbacks(const pb_msgdesc_t *fields, void *msg)
{
    pb_field_iter_t it;

    if (!pb_field_iter_begin(&it, fields, msg))
        return;
    do {
        if (PB_ATYPE(it.type) == PB_ATYPE_CALLBACK)
            memset(it.pData, 0, it.data_size); /* a tg_pbbuf(_list) */
        else if (PB_ATYPE(it.type) == PB_ATYPE_STATIC &&
                 PB_LTYPE_IS_SUBMSG(it.type) && it.submsg_desc != NULL)
            clear_callbacks(it.submsg_desc, it.pData);
    } while (pb_field_iter_next(&it));
}

int tg__wire_decode(const pb_msgdesc_t *fields, void *msg, const uint8_t *buf,
                    size_t len)
{
    pb_istream_t is = pb_istream_from_buffer(buf, len);
    bool ok;

    clear_callbacks(fields, msg);
    cur.lo = (uintptr_t)buf;
    cur.hi = (uintptr_t)buf + len;
    cur.bad_tag = 0;
    /* pb_decode sets the other fields to defaults and, on failure,
     * releases what it allocated. */
    ok = pb_decode(&is, fields, msg);
    cur.lo = cur.hi = 0;
    if (!ok) {
        /* Nothing may keep pointing anywhere after a failure. */
        clear_callbacks(fields, msg);
        if (cur.bad_tag != 0)
            return tg__error_set(TG_EPROTO,
                                 "malformed message: field %u of a message "
                                 "is a string or bytes field, but arrived "
                                 "with another wire type",
                                 (unsigned)cur.bad_tag);
        return tg__error_set(TG_EPROTO, "malformed message: %s",
                             PB_GET_ERROR(&is));
    }
    return TG_OK;
}

void tg__wire_release(const pb_msgdesc_t *fields, void *msg)
{
    if (msg != NULL)
        pb_release(fields, msg);
}

size_t tg__wire_size(const pb_msgdesc_t *fields, const void *msg)
{
    size_t n = 0;

    if (!pb_get_encoded_size(&n, fields, msg))
        return SIZE_MAX;
    return n;
}

int tg__wire_encode(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                    size_t *outlen)
{
    size_t n = tg__wire_size(fields, msg);
    uint8_t *buf;
    pb_ostream_t os;

    *out = NULL;
    *outlen = 0;
    if (n == SIZE_MAX) {
        return tg__error_set(TG_EINVAL, "cannot encode message: %s",
                             "sizing failed");
    }
    /* malloc(0) may return NULL; an empty message is valid protobuf. */
    buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return tg__error_set(TG_ENOMEM, "cannot encode message: %s",
                             "out of memory");
    }
    os = pb_ostream_from_buffer(buf, n);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return tg__error_set(TG_EINVAL, "cannot encode message: %s",
                             PB_GET_ERROR(&os));
    }
    *out = buf;
    *outlen = os.bytes_written;
    return TG_OK;
}

int tg__wire_append(const pb_msgdesc_t *fields, const void *msg, uint8_t **buf,
                    size_t *len, size_t *cap)
{
    size_t n = tg__wire_size(fields, msg);
    pb_ostream_t os;

    if (n == SIZE_MAX)
        return tg__error_set(TG_EINVAL, "cannot encode message: %s",
                             "sizing failed");
    if (tg__array_grow_to(buf, cap, *len + n, 1, 4096, SIZE_MAX) != TG_OK)
        return tg__error_set(TG_ENOMEM, "cannot encode message: %s",
                             "out of memory");
    os = pb_ostream_from_buffer(*buf + *len, n);
    if (!pb_encode(&os, fields, msg))
        return tg__error_set(TG_EINVAL, "cannot encode message: %s",
                             PB_GET_ERROR(&os));
    *len += os.bytes_written;
    return TG_OK;
}

char *tg_pbbuf_strdup(tg_pbbuf b)
{
    char *s = malloc(b.len + 1);

    if (s == NULL)
        return NULL;
    if (b.len)
        memcpy(s, b.ptr, b.len);
    s[b.len] = '\0';
    return s;
}
