/* SPDX-License-Identifier: Apache-2.0
 *
 * common.c: what both sides of the transport share (transport.h,
 * grpc_util.h): the reference-counted gRPC initialisation, deadlines, the
 * tg_status <-> gRPC status mapping, reading messages and channel arguments.
 * Depends on the gRPC C core.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "transport/grpc_util.h"
#include "transport/transport.h"
#include "util/error.h"

/* ------------------------------------------------------------------ */
/* Common                                                              */
/* ------------------------------------------------------------------ */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int init_refs;

void tg__rpc_init(void)
{
    pthread_mutex_lock(&init_mu);
    if (init_refs++ == 0)
        grpc_init();
    pthread_mutex_unlock(&init_mu);
}

void tg__rpc_shutdown(void)
{
    pthread_mutex_lock(&init_mu);
    if (init_refs > 0 && --init_refs == 0)
        grpc_shutdown();
    pthread_mutex_unlock(&init_mu);
}

gpr_timespec tg__grpc_deadline(int64_t ms)
{
    if (ms < 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int tg__grpc_to_status(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK:
        return TG_OK;
    case GRPC_STATUS_CANCELLED:
        return TG_ECANCELLED;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
        return TG_EINVAL;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return TG_ETIMEDOUT;
    case GRPC_STATUS_NOT_FOUND:
        return TG_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS:
        return TG_EEXIST;
    case GRPC_STATUS_PERMISSION_DENIED:
        return TG_EPERM;
    case GRPC_STATUS_UNAUTHENTICATED:
        return TG_EUNAUTHENTICATED;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return TG_ETOOBIG;
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_ABORTED:
        return TG_ESTATE;
    case GRPC_STATUS_UNIMPLEMENTED:
        return TG_EUNIMPLEMENTED;
    case GRPC_STATUS_UNAVAILABLE:
        return TG_EUNAVAILABLE;
    case GRPC_STATUS_DATA_LOSS:
        return TG_EPROTO;
    default:
        return TG_EINTERNAL;
    }
}

grpc_status_code tg__status_to_grpc(int status)
{
    switch (status) {
    case TG_OK:
        return GRPC_STATUS_OK;
    case TG_ECANCELLED:
        return GRPC_STATUS_CANCELLED;
    case TG_EINVAL:
    case TG_EPROTO:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case TG_ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case TG_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case TG_EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case TG_EPERM:
        return GRPC_STATUS_PERMISSION_DENIED;
    case TG_EUNAUTHENTICATED:
    case TG_ETLS:
        return GRPC_STATUS_UNAUTHENTICATED;
    case TG_ETOOBIG:
    case TG_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case TG_ESTATE:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case TG_EUNIMPLEMENTED:
        return GRPC_STATUS_UNIMPLEMENTED;
    case TG_EUNAVAILABLE:
        return GRPC_STATUS_UNAVAILABLE;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

const char *tg__grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };

    return code >= 0 && (size_t)code < sizeof(names) / sizeof(names[0])
               ? names[code]
               : "UNKNOWN";
}

const char *tg__rpc_status_name(int status)
{
    return tg__grpc_code_name((int)tg__status_to_grpc(status));
}

/* Copy a received byte buffer into one malloc'd block. */
int tg__grpc_read(grpc_byte_buffer *bb, uint8_t **out, size_t *len)
{
    grpc_byte_buffer_reader r;
    grpc_slice s;
    size_t n;
    uint8_t *p;

    if (!grpc_byte_buffer_reader_init(&r, bb))
        return tg__error_set(TG_EPROTO, "cannot read gRPC message");
    s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    n = GRPC_SLICE_LENGTH(s);
    p = malloc(n ? n : 1);
    if (p == NULL) {
        grpc_slice_unref(s);
        return tg__error_set(TG_ENOMEM, "out of memory reading a message");
    }
    if (n)
        memcpy(p, GRPC_SLICE_START_PTR(s), n);
    grpc_slice_unref(s);
    *out = p;
    *len = n;
    return TG_OK;
}

/* Fill two channel args (max message size both ways) in `store`. */
void tg__grpc_channel_args(size_t max_msg, grpc_arg *store)
{
    store[0].type = GRPC_ARG_INTEGER;
    store[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    store[0].value.integer = (int)(max_msg > 0x7fffffff ? 0x7fffffff : max_msg);
    store[1].type = GRPC_ARG_INTEGER;
    store[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    store[1].value.integer = store[0].value.integer;
}
