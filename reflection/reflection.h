/* SPDX-License-Identifier: Apache-2.0
 *
 * reflection.h (internal): what a taskgrid gRPC server says about itself,
 * for the scheduler and for the workers' data service: gRPC server
 * reflection (grpc.reflection.v1 and v1alpha, ServerReflectionInfo), so
 * that grpcurl and other stock tools list and describe the services with
 * no .proto files, and grpc.health.v1 health per service. Both answer from
 * one list, the services this server serves.
 *
 * The descriptors are the serialized FileDescriptorProtos of
 * taskgrid/v1/taskgrid.proto, grpc/health/v1/health.proto and the two
 * reflection protos, built by protoc into the program (descriptors.c);
 * tg__refl_new indexes their symbols. Answering is pure (request bytes in,
 * response bytes out, no I/O, no gRPC): tg__refl_answer. The transport
 * side, answering on a call, is serve.h.
 *
 * Every request byte is hostile: a malformed, oversized or meaningless
 * request gets an error_response naming the problem, never a crash, and
 * the stream goes on. Depends on the codec (proto/wire.h and the
 * reflection codec) and util/error.h.
 */
#ifndef TG_REFLECTION_H
#define TG_REFLECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest request answered; a longer one gets an error_response
 * RESOURCE_EXHAUSTED (file and symbol names are short). */
#define TG__REFL_MAX_REQUEST (64u * 1024u)

typedef struct tg__refl tg__refl;

/**
 * Index the built-in descriptors for a server that serves `services`
 * (full names, e.g. "taskgrid.v1.Scheduler"; copied). Each must be a
 * service the descriptors define.
 *
 * @param out       the new handle; free with tg__refl_free
 * @param services  the services this server answers, in the order
 *                  list_services gives them
 * @param n         how many
 * @return TG_OK; TG_EINVAL naming a service the descriptors do not
 *         define; TG_EINTERNAL when the built-in descriptors cannot be
 *         read (a broken build); TG_ENOMEM.
 */
int tg__refl_new(tg__refl **out, const char *const *services, size_t n);

/** Free. NULL is a no-op. */
void tg__refl_free(tg__refl *r);

/**
 * The answer to one ServerReflectionRequest (`len` bytes at `req`): an
 * encoded ServerReflectionResponse in a new heap buffer (*out, *outlen;
 * free with free()). Any input gets a response: an error_response for a
 * bad one (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED).
 *
 * @return TG_OK; TG_ENOMEM (then *out is NULL).
 */
int tg__refl_answer(const tg__refl *r, const uint8_t *req, size_t len,
                    uint8_t **out, size_t *outlen);

/**
 * Health per service: whether grpc.health.v1 Check of `name` (`len`
 * bytes, not NUL-terminated) is SERVING, i.e. `name` is "" (the server as
 * a whole) or one of the services given to tg__refl_new. Otherwise the
 * server does not know the service (NOT_FOUND, as the health protocol
 * says).
 */
bool tg__refl_serves(const tg__refl *r, const uint8_t *name, size_t len);

/* How much of a client's name a message quotes. */
#define TG__REFL_QUOTE_MAX 200

/**
 * `len` bytes of a client's name at `p` made fit for a message: at most
 * TG__REFL_QUOTE_MAX of them ("..." after a cut), each byte outside
 * printable ASCII a '?', so a hostile name can neither make a proto3
 * string invalid (not UTF-8) nor forge text. Written to `buf` (`cap`
 * bytes, TG__REFL_QUOTE_MAX + 4 suffice).
 * @return buf
 */
const char *tg__refl_quote(const uint8_t *p, size_t len, char *buf, size_t cap);

#endif
