/* SPDX-License-Identifier: Apache-2.0
 *
 * server_tls.h (internal to transport/): mutual-TLS server credentials
 * whose client-certificate check says why it refused (server_tls.c).
 */
#ifndef TG_TRANSPORT_SERVER_TLS_H
#define TG_TRANSPORT_SERVER_TLS_H

#include <grpc/grpc_security.h>

/**
 * Credentials serving `cert_pem`/`key_pem` and requiring a client
 * certificate that `ca_pem` verifies (all NUL-terminated, copied). NULL
 * when `ca_pem` holds no certificate or memory runs out. Release with
 * grpc_server_credentials_release.
 */
grpc_server_credentials *tg__server_tls_credentials(const char *ca_pem,
                                                    const char *cert_pem,
                                                    const char *key_pem);

#endif
