/* SPDX-License-Identifier: Apache-2.0
 *
 * taskgrid/security.h: the one way to pass TLS material (cluster CA, this
 * side's certificate and private key) to libtaskgrid, the C twin of the
 * `security=` argument of the Python and Go clients. Each item is given
 * either as a file name or as PEM text. Depends only on standard headers.
 */
#ifndef TASKGRID_SECURITY_H
#define TASKGRID_SECURITY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_SECURITY_VERSION 1

/**
 * TLS options for a `tls://` scheduler address (mutual TLS).
 *
 * For each of CA, certificate and key give at most one of `*_file` (a PEM
 * file read when the client connects) and `*_pem` (PEM text). The CA is
 * required; certificate and key go together (both or neither; a TLS
 * scheduler refuses clients without a certificate). All strings are
 * borrowed for the duration of the call that receives the options. Keys
 * must be unencrypted (PKCS#8 or traditional PEM).
 *
 * The certificate's role decides what the scheduler allows: a URI SAN
 * "taskgrid:role=NAME", else the subject OU. "client": Submit, Gather,
 * Annotate, Cancel, Release, Status. "admin": the same and Scale.
 * "worker": WorkerLink (joining as a worker) and what a client may, for
 * nested work. Make certificates with taskgrid-certs, or start a local
 * cluster with tg_cluster_opts.secure and use tg_cluster_security().
 *
 * Initialise with TG_SECURITY_INIT, then set fields:
 *
 *     tg_security sec = TG_SECURITY_INIT;
 *     sec.ca_file = "ca.pem";
 *     sec.cert_file = "client.pem";
 *     sec.key_file = "client.key";
 */
typedef struct tg_security {
    uint32_t version;      /**< TG_SECURITY_VERSION */
    const char *ca_file;   /**< CA certificate(s) that sign the cluster */
    const char *cert_file; /**< this side's certificate chain */
    const char *key_file;  /**< this side's private key */
    const char *ca_pem;    /**< CA as PEM text, instead of ca_file */
    const char *cert_pem;  /**< certificate as PEM text */
    const char *key_pem;   /**< private key as PEM text */
} tg_security;

#define TG_SECURITY_INIT                                        \
    {                                                           \
        TG_SECURITY_VERSION, NULL, NULL, NULL, NULL, NULL, NULL \
    }

#ifdef __cplusplus
}
#endif
#endif
