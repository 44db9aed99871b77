/* SPDX-License-Identifier: Apache-2.0
 *
 * grpc_util.h (private to transport/): the pieces of gRPC glue both sides
 * use: deadlines, the one mapping between gRPC status codes and tg_status
 * (so NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED... keep their
 * meaning on the wire both ways), reading a received message, and the
 * message-size channel arguments.
 */
#ifndef TG_TRANSPORT_GRPC_UTIL_H
#define TG_TRANSPORT_GRPC_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

/** The monotonic deadline `ms` from now; ms < 0: none (infinite). */
gpr_timespec tg__grpc_deadline(int64_t ms);

/** The tg_status a gRPC status code means. */
int tg__grpc_to_status(grpc_status_code code);

/** The gRPC status code that carries `status` (a tg_status) on the wire. */
grpc_status_code tg__status_to_grpc(int status);

/** Copy a received byte buffer into one malloc'd block (*out, *len). */
int tg__grpc_read(grpc_byte_buffer *bb, uint8_t **out, size_t *len);

/** Fill two channel args (max message size both ways) in `store`. */
void tg__grpc_channel_args(size_t max_msg, grpc_arg *store);

#endif
