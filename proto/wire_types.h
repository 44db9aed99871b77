/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_types.h: the field type nanopb generates for every singular string
 * and bytes field of taskgrid.v1 (see taskgrid.options), and for the
 * repeated fields of grpc.reflection.v1 that a server sends (see
 * grpc/reflection/v1/reflection.options). Included by the generated
 * headers before their declarations; include "wire.h" instead.
 */
#ifndef TG_WIRE_TYPES_H
#define TG_WIRE_TYPES_H

#include <stddef.h>
#include <stdint.h>

/*
 * A borrowed byte range. After decoding it points into the received buffer
 * (zero copy); before encoding the sender points it at its own bytes. Never
 * NUL-terminated; never freed through the message.
 */
typedef struct tg_pbbuf {
    const uint8_t *ptr;
    size_t len;
} tg_pbbuf;

/* The one callback nanopb calls for every tg_pbbuf field (wire.c). */
bool tg_pb_field_callback(pb_istream_t *istream, pb_ostream_t *ostream,
                          const pb_field_iter_t *field);

/* Entries of a tg_pbbuf_list that a decoder keeps (it counts them all). */
#define TG_PBBUF_LIST_KEEP 8

/*
 * A repeated bytes (or message) field as borrowed byte ranges, each one
 * entry on the wire: for a message field, each range is an encoded
 * message. Encoding writes the `n` ranges at `items` (borrowed). Decoding
 * counts the entries in `n` and keeps the first TG_PBBUF_LIST_KEEP in
 * `got` (zero copy, as tg_pbbuf); `items` is left NULL.
 */
typedef struct tg_pbbuf_list {
    const tg_pbbuf *items;
    size_t n;
    tg_pbbuf got[TG_PBBUF_LIST_KEEP];
} tg_pbbuf_list;

/* The callback nanopb calls for every tg_pbbuf_list field (wire.c). */
bool tg_pb_list_callback(pb_istream_t *istream, pb_ostream_t *ostream,
                         const pb_field_iter_t *field);

#endif
