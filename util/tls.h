/* SPDX-License-Identifier: Apache-2.0
 *
 * tls.h (internal): loading and checking TLS material before anything
 * connects. A tg_security (files or PEM text) becomes PEM text for the
 * transport, after checks that give a clear local error instead of a failed
 * handshake later: each item is readable and parses, the key belongs to
 * the certificate, the certificate is inside its validity period. Used by
 * the client (tg_client_connect), the worker (--tls-*) and the scheduler
 * (--tls-*, --worker-tls-*), so all three say the same things. Depends on
 * OpenSSL (libcrypto) and the public taskgrid/security.h.
 *
 * Errors: TG_OK or a tg_status with tg_error_last() set; messages name the
 * side and the file, e.g. "client certificate /p/client.pem expired on
 * 2025-01-01 00:00:00 UTC".
 */
#ifndef TG_SRC_TLS_H
#define TG_SRC_TLS_H

#include <stddef.h>

#include <openssl/x509.h>

#include "taskgrid/security.h"
#include "taskgrid/status.h"

/* Loaded material: PEM text, NULL when absent. */
typedef struct tg__tls {
    char *ca_pem;
    char *cert_pem;
    char *key_pem;
    /* A sentence on why a scheduler would refuse this certificate (see
     * tg__rpc_sec.hint); "" when nothing stands out. */
    char hint[2048];
} tg__tls;

/**
 * Load and check `sec` for the side `who` ("client", "worker",
 * "scheduler": used in messages). The CA is required; certificate and
 * key go together. On failure `out` holds nothing (tg__tls_clear is still
 * safe). Codes: TG_EINVAL (options), TG_ENOTFOUND (missing file), TG_EIO,
 * TG_ETLS (not PEM, no certificate, key mismatch, expired, not yet
 * valid, encrypted key).
 */
int tg__tls_load(tg__tls *out, const tg_security *sec, const char *who);

/** Free the texts, wiping the private key first. */
void tg__tls_clear(tg__tls *t);

/**
 * Every certificate in the PEM text `pem` (NUL-terminated), in order, or
 * NULL when it holds none. Free with sk_X509_pop_free(sk, X509_free).
 */
STACK_OF(X509) * tg__tls_read_certs(const char *pem);

/**
 * Why `cert_pem` (its first certificate) cannot serve TLS to peers that
 * dial `host` (a DNS name or an IP literal): TG_OK when it can, else
 * TG_ETLS with one sentence in `why` (no serverAuth usage, or `host` not
 * among its names). A worker checks its data service's certificate with
 * it at start, since a peer's refused handshake would not say why.
 * Does not set tg_error_last().
 */
int tg__tls_server_check(const char *cert_pem, const char *host, char *why,
                         size_t why_len);

/*
 * The identity of the worker this process runs: its scheduler address and
 * TLS material, set once by taskgrid-worker at start (before any task
 * runs). The worker-side client (tg_task_client, nested work) connects
 * with it, so everything a worker opens presents the worker's own
 * certificate; the scheduler admits role "worker" as a client for this
 * (scheduler/auth.c).
 */

/** Copy `address` and `t` (NULL for plaintext). Call once; TG_ESTATE
 *  after the first time. */
int tg__tls_worker_identity_set(const char *address, const tg__tls *t);

/**
 * The worker's address (NULL if this process is not a worker) and, for
 * TLS, its material as PEM text in `*sec` (TG_SECURITY_INIT otherwise).
 * Borrowed; valid for the life of the process.
 */
const char *tg__tls_worker_identity(tg_security *sec);

#endif
