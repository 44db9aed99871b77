/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/status.h: the one status enum of libtaskgrid. Every fallible
 * call returns TG_OK (0) or one of these negative codes; tg_strerror()
 * names them and tg_error_last() gives the detailed message of the last
 * failure on the calling thread. gRPC status codes are mapped into this
 * enum at the transport edge.
 */
#ifndef TASKGRID_STATUS_H
#define TASKGRID_STATUS_H

#include "taskgrid/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description) */
#define TG_STATUS_MAP(X)                                                    \
    X(TG_OK, 0, "success")                                                  \
    X(TG_EINVAL, -1, "invalid argument")                                    \
    X(TG_ENOMEM, -2, "out of memory")                                       \
    X(TG_ETIMEDOUT, -3, "timed out")                                        \
    X(TG_EUNAVAILABLE, -4, "scheduler unavailable")                         \
    X(TG_ENOTFOUND, -5, "not found")                                        \
    X(TG_EEXIST, -6, "already exists")                                      \
    X(TG_ETASK, -7, "task failed")                                          \
    X(TG_ECANCELLED, -8, "cancelled")                                       \
    X(TG_EPERM, -9, "permission denied")                                    \
    X(TG_EUNAUTHENTICATED, -10, "unauthenticated")                          \
    X(TG_ETOOBIG, -11, "resource exhausted (message or payload too large)") \
    X(TG_EUNIMPLEMENTED, -12, "not implemented")                            \
    X(TG_EPROTO, -13, "protocol error")                                     \
    X(TG_EIO, -14, "i/o or system error")                                   \
    X(TG_ETLS, -15, "TLS or certificate problem")                           \
    X(TG_ESTATE, -16, "invalid state for this operation")                   \
    X(TG_EINTERNAL, -17, "internal error")

typedef enum tg_status {
#define TG__STATUS_ENUM(name, value, desc) name = value,
    TG_STATUS_MAP(TG__STATUS_ENUM)
#undef TG__STATUS_ENUM
} tg_status;

/** Short description of `status` (static string; never NULL). */
TG_EXPORT const char *tg_strerror(int status);

/** Name of `status`, e.g. "TG_EINVAL" (static string; never NULL). */
TG_EXPORT const char *tg_status_name(int status);

/**
 * Detailed message of the last failing libtaskgrid call on this thread,
 * e.g. "dependency 'x' of task 'y' is unknown". Borrowed: valid until the
 * next libtaskgrid call on this thread. Empty string if none.
 */
TG_EXPORT const char *tg_error_last(void);

#ifdef __cplusplus
}
#endif
#endif
