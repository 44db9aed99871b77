/* SPDX-License-Identifier: Apache-2.0
 *
 * transport.h (internal): what both sides of taskgrid's gRPC transport
 * share: transport security material, the reference-counted gRPC
 * initialisation (the address syntax is util/address.h). The client side is
 * client.h, the server side server.h. Every grpc_* call of the project lives in
 * this folder, because the gRPC C core API changes between minor versions;
 * everything here moves opaque encoded protobuf bytes (the codec is
 * proto/wire.h, the logic is elsewhere).
 *
 * Errors: functions return tg_status codes; details go to tg_error_last()
 * of the calling thread. gRPC status codes map to tg_status in one place
 * (grpc_util.h).
 */
#ifndef TG_TRANSPORT_H
#define TG_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskgrid/status.h"

/* Default maximum message size both ways (64 MiB). */
#define TG__RPC_DEFAULT_MAX_MSG (64u * 1024u * 1024u)

/*
 * Transport security. All three NULL → plaintext (tcp://). Otherwise PEM
 * text (not file names): the CA that signs every cluster certificate, and
 * this side's certificate chain and private key (mutual TLS).
 *
 * `hint` (client side, may be NULL): a sentence on why the scheduler would
 * refuse this side's certificate, worked out from the material before
 * connecting (tg__tls_diagnose). gRPC never says why a server refused a
 * certificate (the client only sees the socket close), so it is appended
 * to that error.
 */
typedef struct tg__rpc_sec {
    const char *ca_pem;
    const char *cert_pem;
    const char *key_pem;
    const char *hint;
    /* If set: the name the server's certificate must carry, checked
     * instead of the host dialled (gRPC's target name override), e.g.
     * TG_PROTO_WORKER_TLS_NAME for a worker's data service. */
    const char *tls_name;
} tg__rpc_sec;

/**
 * The name of the gRPC status code that carries `status` (a tg_status)
 * on the wire, e.g. "UNAVAILABLE", "NOT_FOUND" (static string), for
 * messages that name what a peer answered.
 */
const char *tg__rpc_status_name(int status);

/** The name of gRPC status code `code` (0 "OK" ... 16 "UNAUTHENTICATED");
 * "UNKNOWN" out of range. */
const char *tg__grpc_code_name(int code);

/* Reference-counted grpc_init/grpc_shutdown. */
void tg__rpc_init(void);
void tg__rpc_shutdown(void);

#endif
