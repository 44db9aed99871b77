/* SPDX-License-Identifier: Apache-2.0
 *
 * verify.h (internal): verifying a peer's certificate chain against the
 * cluster CA with OpenSSL, with the exact reason when it fails. A server
 * built on gRPC C core refuses a bad client certificate inside the
 * handshake and says only "certificate verify failed"; the transport asks
 * gRPC not to verify and calls this instead (transport/server_tls.c), so
 * the refusal is the same but the log can say which of unknown CA,
 * expired, not yet valid, wrong purpose or a broken chain it was.
 * Depends on OpenSSL (libcrypto) only.
 *
 * The checks are OpenSSL's own X509_verify_cert with the purpose a TLS
 * server applies to its clients ("ssl_client", as libssl sets it), the
 * cluster CA as the only trust anchor, and any intermediate certificates
 * the peer sent as untrusted.
 */
#ifndef TG_SRC_VERIFY_H
#define TG_SRC_VERIFY_H

#include <stddef.h>

typedef struct tg__verifier tg__verifier;

/**
 * A verifier trusting the certificates in `ca_pem` (NUL-terminated).
 * TG_ETLS when it holds no certificate, TG_ENOMEM. Thread-safe once made:
 * tg__verifier_check may run on several threads at once.
 */
int tg__verifier_new(tg__verifier **out, const char *ca_pem);

/** NULL is a no-op. */
void tg__verifier_free(tg__verifier *v);

/**
 * Verify the leaf `leaf_pem` with the untrusted intermediates in
 * `chain_pem` (either may be NULL; both NUL-terminated PEM). TG_OK, or
 * TG_ETLS with a sentence in `why` that names the certificate (its subject)
 * and the reason, e.g. "the certificate CN=client,OU=client has expired
 * (not after 2025-01-01 00:00:00 GMT)" or "the certificate CN=x is not
 * signed by the cluster CA (issuer CN=other-ca)".
 */
int tg__verifier_check(const tg__verifier *v, const char *leaf_pem,
                       const char *chain_pem, char *why, size_t why_len);

#endif
