/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_check.h (tests only): decode hostile bytes as one of the messages
 * taskgrid decodes off the network, and check what a decode that
 * succeeded left behind: every zero-copy tg_pbbuf must lie inside the
 * input (read byte by byte, so AddressSanitizer sees any stray pointer),
 * and the message must encode again and decode back. Shared by the
 * libFuzzer targets (tests/fuzz/wire_fuzz.c) and the cmocka test that
 * replays their corpus and found crashes (tests/wire_test.c). Depends on
 * //proto:wire and nanopb.
 */
#ifndef TG_TESTS_WIRE_CHECK_H
#define TG_TESTS_WIRE_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* A decode entry point: a top-level message a peer sends. */
typedef struct tgt_wire_type {
    const char *name;           /* "SubmitRequest"; also the corpus folder */
    const pb_msgdesc_t *fields; /* its nanopb descriptor */
    size_t size;                /* sizeof its struct */
    const char *decoded_by;     /* "scheduler", "worker", "sdk" */
} tgt_wire_type;

extern const tgt_wire_type tgt_wire_types[];
extern const size_t tgt_wire_ntypes;

/** The entry point called `name`, or NULL. */
const tgt_wire_type *tgt_wire_type_find(const char *name);

/* What one checked decode found. */
typedef enum tgt_wire_verdict {
    TGT_WIRE_REFUSED = 0, /* decode failed (TG_EPROTO): fine */
    TGT_WIRE_OK = 1,      /* decoded, every check passed */
    TGT_WIRE_STRAY = -1,  /* decoded, but a tg_pbbuf points outside buf */
    TGT_WIRE_NO_ROUND_TRIP = -2, /* decoded, but does not encode back */
} tgt_wire_verdict;

/**
 * Decode `len` bytes at `buf` as `t` into a fresh heap struct, check it
 * (see above), release it. Never crashes on its own; sanitizers may.
 */
tgt_wire_verdict tgt_wire_check(const tgt_wire_type *t, const uint8_t *buf,
                                size_t len);

#endif
