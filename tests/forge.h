/* SPDX-License-Identifier: Apache-2.0
 *
 * forge.h (tests only): certificates with the odd subjects and subject
 * alternative names a hostile peer would bring, signed by a real cluster
 * CA, so tests can show that none of them buys a role. util/certs.c makes
 * only well-formed ones; this builds the subject attribute by attribute
 * (any attribute, any string type, multi-valued RDNs) and the SAN name by
 * name (URI, DNS, e-mail, IP, several of each, even two SAN extensions).
 * Depends on OpenSSL 3.
 */
#ifndef TG_TESTS_FORGE_H
#define TG_TESTS_FORGE_H

#include <stddef.h>

/* One subject attribute. */
typedef struct tgt_attr {
    const char *field; /* "CN", "OU", "O", ... */
    const char *value; /* bytes; `len` of them if len > 0, else a string */
    size_t len;
    int type;     /* 0: MBSTRING_UTF8; else a V_ASN1_* type, raw bytes */
    int same_rdn; /* 1: join the previous attribute's RDN ("+") */
} tgt_attr;

/* One subject alternative name. */
typedef struct tgt_san {
    int type;          /* GEN_URI, GEN_DNS, GEN_EMAIL or GEN_IPADD */
    const char *value; /* text, or for GEN_IPADD the 4 or 16 raw bytes */
    size_t len;        /* 0: strlen(value) */
} tgt_san;

typedef struct tgt_forge {
    const tgt_attr *attrs; /* subject, in order (first = outermost RDN) */
    size_t nattrs;
    const tgt_san *sans;
    size_t nsans;
    int two_san_exts; /* write the SAN extension twice */
} tgt_forge;

/**
 * Issue a certificate for a new EC P-256 key, signed by the CA whose
 * certificate and key are `ca_pem` and `ca_key_pem`, valid from an hour
 * ago for a day, clientAuth. *cert_pem and *key_pem: malloc'd PEM (free
 * both). Fails the running cmocka test on any error.
 */
void tgt_forge_issue(const char *ca_pem, const char *ca_key_pem,
                     const tgt_forge *f, char **cert_pem, char **key_pem);

#endif
