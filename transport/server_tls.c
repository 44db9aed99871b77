/* SPDX-License-Identifier: Apache-2.0
 *
 * server_tls.c: a server's mutual-TLS credentials, with the client's
 * certificate verified by util/verify.c instead of inside gRPC's handshake.
 *
 * Why: gRPC C core 1.51's own verification refuses a bad client
 * certificate with OpenSSL's bare "certificate verify failed", which cannot
 * tell an unknown CA from an expired certificate. Here gRPC is asked to
 * require a client certificate but not to verify it
 * (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY), and its
 * external-verifier hook runs OpenSSL's X509_verify_cert against the
 * cluster CA at the same point of the handshake. The verdict is the same
 * (a refused connection), the log line says why. A client with no
 * certificate is still refused by OpenSSL inside the handshake.
 */
#include <stdlib.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>

#include "transport/server.h"
#include "transport/server_tls.h"
#include "util/log.h"
#include "util/verify.h"

typedef struct peer_check {
    grpc_tls_certificate_verifier_external ext;
    tg__verifier *verifier;
} peer_check;

static int peer_verify(void *ud, grpc_tls_custom_verification_check_request *r,
                       grpc_tls_on_custom_verification_check_done_cb cb,
                       void *cb_arg, grpc_status_code *status, char **details)
{
    peer_check *pc = ud;
    char why[1024];

    (void)cb;
    (void)cb_arg;
    if (tg__verifier_check(pc->verifier, r->peer_info.peer_cert,
                           r->peer_info.peer_cert_full_chain, why,
                           sizeof(why)) == TG_OK) {
        *status = GRPC_STATUS_OK;
        *details = NULL;
        return 1;
    }
    /* gRPC 1.51 gives the verifier no peer address. */
    TG_LOG_WARN("refused a TLS handshake: %s", why);
    *status = GRPC_STATUS_UNAUTHENTICATED;
    *details = gpr_strdup(why);
    return 1; /* answered synchronously */
}

static void peer_cancel(void *ud, grpc_tls_custom_verification_check_request *r)
{
    (void)ud;
    (void)r; /* nothing runs asynchronously */
}

static void peer_destruct(void *ud)
{
    peer_check *pc = ud;

    tg__verifier_free(pc->verifier);
    free(pc);
}

grpc_server_credentials *tg__server_tls_credentials(const char *ca_pem,
                                                    const char *cert_pem,
                                                    const char *key_pem)
{
    grpc_tls_credentials_options *o;
    grpc_tls_identity_pairs *ids;
    grpc_tls_certificate_provider *prov;
    grpc_tls_certificate_verifier *ver;
    grpc_server_credentials *creds;
    peer_check *pc = calloc(1, sizeof(*pc));

    if (pc == NULL || tg__verifier_new(&pc->verifier, ca_pem) != TG_OK) {
        free(pc);
        return NULL;
    }
    pc->ext.user_data = pc;
    pc->ext.verify = peer_verify;
    pc->ext.cancel = peer_cancel;
    pc->ext.destruct = peer_destruct;

    ids = grpc_tls_identity_pairs_create();
    grpc_tls_identity_pairs_add_pair(ids, key_pem, cert_pem);
    prov = grpc_tls_certificate_provider_static_data_create(ca_pem, ids);
    o = grpc_tls_credentials_options_create();
    grpc_tls_credentials_options_set_certificate_provider(o, prov);
    grpc_tls_credentials_options_watch_root_certs(o);
    grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
    grpc_tls_credentials_options_set_cert_request_type(
        o, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
    ver = grpc_tls_certificate_verifier_external_create(&pc->ext);
    grpc_tls_credentials_options_set_certificate_verifier(o, ver);
    creds = grpc_tls_server_credentials_create(o); /* takes `o` */
    /* The options hold their own references to both. */
    grpc_tls_certificate_verifier_release(ver);
    grpc_tls_certificate_provider_release(prov);
    return creds;
}
