/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_types.h: the field type nanopb generates for every singular string
 * and bytes field of taskgrid.v1 (see taskgrid.options). Included by the
 * generated headers before their declarations; include "wire.h" instead.
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

#endif
