/* SPDX-License-Identifier: Apache-2.0
 *
 * certs.h (internal): makes the X.509 material of a taskgrid cluster with
 * OpenSSL 3: a cluster CA, and certificates signed by it for the four
 * roles (scheduler, worker, client, admin). A role is written twice into
 * each certificate: as a URI subject alternative name
 * "taskgrid:role=NAME" (what the scheduler reads first) and as the
 * subject's OU (for tools that only show the subject). One copy of this
 * code serves the taskgrid-certs tool, the secure temporary local cluster
 * (tg_cluster_opts.secure) and the tests. Depends on OpenSSL (libcrypto).
 *
 * Errors: TG_OK or a tg_status, with tg_error_last() set.
 */
#ifndef TG_SRC_CERTS_H
#define TG_SRC_CERTS_H

#include <stdbool.h>
#include <stdint.h>

/* The URI SAN prefix that carries a certificate's role. */
#define TG__CERTS_ROLE_URI "taskgrid:role="
/* The DNS name every worker certificate carries (besides the worker role):
 * a worker fetching a result from another verifies the holder's
 * certificate for this name (proto/methods.h TG_PROTO_WORKER_TLS_NAME). */
#define TG__CERTS_WORKER_NAME "taskgrid-worker"

/* A CA: its certificate and private key. Opaque. */
typedef struct tg__certs_ca tg__certs_ca;

/*
 * Validity, in seconds relative to now. not_before is usually a little in
 * the past (clock skew between hosts); a not_after in the past makes an
 * already expired certificate (for tests).
 */
typedef struct tg__certs_validity {
    int64_t not_before_s;
    int64_t not_after_s;
} tg__certs_validity;

/**
 * Make a new self-signed CA (EC P-256) whose subject is
 * "O=taskgrid, CN=`cn`". Free with tg__certs_ca_free().
 */
int tg__certs_ca_new(tg__certs_ca **out, const char *cn, tg__certs_validity v);

/** Load a CA from PEM text (certificate and its unencrypted key). */
int tg__certs_ca_load(tg__certs_ca **out, const char *cert_pem,
                      const char *key_pem);

/** The CA's certificate and key as malloc'd PEM text (free() both). */
int tg__certs_ca_pem(const tg__certs_ca *ca, char **cert_pem, char **key_pem);

/** NULL is a no-op. */
void tg__certs_ca_free(tg__certs_ca *ca);

/* What to put into a leaf certificate. */
typedef struct tg__certs_leaf {
    const char *cn;    /* subject CN */
    const char *role;  /* "scheduler", "worker", "client", "admin" or any
                        * [a-z0-9_-] name; NULL: no role at all */
    const char *hosts; /* comma-separated DNS names and IP addresses for
                        * the SAN (a server's names); NULL: none */
    bool server;       /* extendedKeyUsage serverAuth besides clientAuth */
    tg__certs_validity validity;
    bool ou_only; /* the role only as the OU, no URI SAN (as other
                   * tools make them; the scheduler reads both) */
} tg__certs_leaf;

/**
 * Issue a certificate for a new EC P-256 key, signed by `ca`. On TG_OK
 * *cert_pem and *key_pem are malloc'd PEM text (free() both; the key is
 * unencrypted PKCS#8).
 */
int tg__certs_issue(const tg__certs_ca *ca, const tg__certs_leaf *leaf,
                    char **cert_pem, char **key_pem);

/* Options of tg__certs_write_dir. */
typedef struct tg__certs_dir_opts {
    int days;          /* validity of every certificate; 0: 365 */
    const char *hosts; /* the scheduler's names (comma-separated); NULL:
                        * localhost,127.0.0.1,::1 and this host's name */
    bool write_ca_key; /* also write ca-key.pem (to issue more later) */
    bool overwrite;    /* replace existing files instead of failing */
} tg__certs_dir_opts;

/* The files tg__certs_write_dir writes (in `dir`). */
#define TG__CERTS_CA_FILE "ca.pem"
#define TG__CERTS_CA_KEY_FILE "ca-key.pem"

/**
 * Write a fresh CA and a certificate for each role into `dir` (which must
 * exist): ca.pem, [ca-key.pem,] scheduler.pem, scheduler-key.pem,
 * worker.pem, worker-key.pem, client.pem, client-key.pem, admin.pem,
 * admin-key.pem. Keys are created with mode 0600, certificates 0644.
 * TG_EEXIST if a file exists and !overwrite (nothing is written then).
 */
int tg__certs_write_dir(const char *dir, const tg__certs_dir_opts *opts);

/** Write `text` to `path` with `mode` (created, or replaced if
 *  `overwrite`). */
int tg__certs_write_file(const char *path, const char *text, unsigned mode,
                         bool overwrite);

/* A PEM password callback (pem_password_cb) that refuses: loading
 * material never prompts on a terminal; an encrypted key fails to load. */
int tg__certs_no_password(char *buf, int size, int rwflag, void *u);

#endif
