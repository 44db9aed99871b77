/* SPDX-License-Identifier: Apache-2.0
 *
 * transport_test.c: the one mapping between taskgrid's status codes and
 * gRPC's (transport/grpc_util.h). Every tg_status has a gRPC code that
 * keeps its meaning on the wire, and every gRPC code a client can receive
 * maps back to the tg_status a caller can act on. cmocka, no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "taskgrid/status.h"
#include "transport/grpc_util.h"

typedef struct pair {
    int status;
    grpc_status_code code;
} pair;

/* What each tg_status becomes on the wire. */
static const pair to_wire[] = {
    {TG_OK, GRPC_STATUS_OK},
    {TG_EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
    {TG_ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {TG_ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
    {TG_EUNAVAILABLE, GRPC_STATUS_UNAVAILABLE},
    {TG_ENOTFOUND, GRPC_STATUS_NOT_FOUND},
    {TG_EEXIST, GRPC_STATUS_ALREADY_EXISTS},
    {TG_ETASK, GRPC_STATUS_INTERNAL},
    {TG_ECANCELLED, GRPC_STATUS_CANCELLED},
    {TG_EPERM, GRPC_STATUS_PERMISSION_DENIED},
    {TG_EUNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED},
    {TG_ETOOBIG, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {TG_EUNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED},
    {TG_EPROTO, GRPC_STATUS_INVALID_ARGUMENT},
    {TG_EIO, GRPC_STATUS_INTERNAL},
    {TG_ETLS, GRPC_STATUS_UNAUTHENTICATED},
    {TG_ESTATE, GRPC_STATUS_FAILED_PRECONDITION},
    {TG_EINTERNAL, GRPC_STATUS_INTERNAL},
};

/* What each gRPC code means to a caller of the SDK. */
static const pair from_wire[] = {
    {TG_OK, GRPC_STATUS_OK},
    {TG_ECANCELLED, GRPC_STATUS_CANCELLED},
    {TG_EINTERNAL, GRPC_STATUS_UNKNOWN},
    {TG_EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
    {TG_ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
    {TG_ENOTFOUND, GRPC_STATUS_NOT_FOUND},
    {TG_EEXIST, GRPC_STATUS_ALREADY_EXISTS},
    {TG_EPERM, GRPC_STATUS_PERMISSION_DENIED},
    {TG_ETOOBIG, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {TG_ESTATE, GRPC_STATUS_FAILED_PRECONDITION},
    {TG_ESTATE, GRPC_STATUS_ABORTED},
    {TG_EINVAL, GRPC_STATUS_OUT_OF_RANGE},
    {TG_EUNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED},
    {TG_EINTERNAL, GRPC_STATUS_INTERNAL},
    {TG_EUNAVAILABLE, GRPC_STATUS_UNAVAILABLE},
    {TG_EPROTO, GRPC_STATUS_DATA_LOSS},
    {TG_EUNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED},
};

static void test_transport_codes__every_status_has_its_wire_code(void **state)
{
    size_t n = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(to_wire) / sizeof(to_wire[0]); i++)
        assert_int_equal(tg__status_to_grpc(to_wire[i].status),
                         to_wire[i].code);
        /* The table covers the whole enum, so a new code cannot be added
         * without deciding what it means on the wire. */
#define TG__COUNT(name, value, desc) n++;
    TG_STATUS_MAP(TG__COUNT)
#undef TG__COUNT
    assert_int_equal(n, sizeof(to_wire) / sizeof(to_wire[0]));
}

static void test_transport_codes__every_wire_code_maps_back(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(from_wire) / sizeof(from_wire[0]); i++)
        assert_int_equal(tg__grpc_to_status(from_wire[i].code),
                         from_wire[i].status);
}

static void test_transport_codes__meanings_survive_a_round_trip(void **state)
{
    /* The codes a server sends on purpose come back as themselves. */
    static const int kept[] = {TG_OK,
                               TG_EINVAL,
                               TG_ETIMEDOUT,
                               TG_EUNAVAILABLE,
                               TG_ENOTFOUND,
                               TG_EEXIST,
                               TG_ECANCELLED,
                               TG_EPERM,
                               TG_ETOOBIG,
                               TG_EUNIMPLEMENTED,
                               TG_ESTATE,
                               TG_EINTERNAL,
                               TG_EUNAUTHENTICATED};

    (void)state;
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        assert_int_equal(tg__grpc_to_status(tg__status_to_grpc(kept[i])),
                         kept[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transport_codes__every_status_has_its_wire_code),
        cmocka_unit_test(test_transport_codes__every_wire_code_maps_back),
        cmocka_unit_test(test_transport_codes__meanings_survive_a_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
