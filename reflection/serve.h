/* SPDX-License-Identifier: Apache-2.0
 *
 * serve.h (internal): reflection and health answered on calls of the
 * transport's server loop (transport/server.h), for the scheduler and the
 * workers' data service alike. A server registers TG_METHOD_REFLECTION and
 * TG_METHOD_REFLECTION_V1ALPHA as bidirectional streams and
 * TG_METHOD_HEALTH_CHECK as unary (proto/methods.h), then hands each
 * stream message and each Check here. Runs on the loop thread and answers
 * at once. Depends on reflection.h, the transport's server side and the
 * codec.
 */
#ifndef TG_REFLECTION_SERVE_H
#define TG_REFLECTION_SERVE_H

#include "reflection/reflection.h"
#include "transport/server.h"

/* Answers a reflection stream may leave unread; past that the client is
 * not reading them, and the stream ends (RESOURCE_EXHAUSTED). */
#define TG__REFL_MAX_PENDING (4u << 20)

/**
 * One message of a ServerReflectionInfo stream: its answer is queued on
 * `c` (an error_response for a bad request; the stream goes on).
 */
void tg__refl_serve_message(const tg__refl *r, tg__scall *c, const uint8_t *msg,
                            size_t len);

/**
 * A grpc.health.v1.Health/Check request (`len` bytes at `req`): SERVING
 * for "" and each service `r` serves (tg__refl_serves); NOT_FOUND
 * "unknown service '...'" for any other; INVALID_ARGUMENT for a malformed
 * request.
 */
void tg__refl_serve_health(const tg__refl *r, tg__scall *c, const uint8_t *req,
                           size_t len);

#endif
