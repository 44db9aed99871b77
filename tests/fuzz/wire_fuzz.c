/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_fuzz.c: one libFuzzer target per decode entry point: build with
 * -DTG_FUZZ_TYPE=SubmitRequest (a name from tgt_wire_types) and
 * -fsanitize=fuzzer,address,undefined; tests/fuzz.sh builds and runs them
 * all. A decode that succeeds must leave every zero-copy field inside the
 * input and encode back (tgt_wire_check); anything else aborts, and
 * AddressSanitizer catches stray reads on the way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "wire_check.h"

#ifndef TG_FUZZ_TYPE
#error "build with -DTG_FUZZ_TYPE=<message name>"
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const tgt_wire_type *t;
    tgt_wire_verdict v;

    if (t == NULL && (t = tgt_wire_type_find(STR(TG_FUZZ_TYPE))) == NULL) {
        fprintf(stderr, "unknown message type %s\n", STR(TG_FUZZ_TYPE));
        abort();
    }
    v = tgt_wire_check(t, data, size);
    if (v == TGT_WIRE_STRAY) {
        fprintf(stderr, "%s: a decoded field points outside the input\n",
                t->name);
        abort();
    }
    if (v == TGT_WIRE_NO_ROUND_TRIP) {
        fprintf(stderr, "%s: decoded, but does not encode back\n", t->name);
        abort();
    }
    return 0;
}
