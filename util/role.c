/* SPDX-License-Identifier: Apache-2.0
 *
 * role.c: a certificate's taskgrid role from its X.509 structure (see
 * role.h for the rules). Depends on OpenSSL 3 (libcrypto) and certs.h (the
 * URI prefix, the no-password callback).
 *
 * Why not the subject text gRPC offers: it is RFC 2253 output, where a CN
 * of "x,OU=admin" and a real OU attribute differ only by a backslash, and
 * matching substrings of it let anyone who may choose a CN choose a role.
 */
#include "util/role.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "taskgrid/status.h"
#include "util/certs.h"

static const char uri_prefix[] = TG__CERTS_ROLE_URI;
#define URI_PREFIX_LEN (sizeof(uri_prefix) - 1)

/* 1 to TG__ROLE_MAX of [a-z0-9_-]: what tg__certs_issue writes. */
static bool valid_name(const unsigned char *v, size_t n)
{
    if (n == 0 || n > TG__ROLE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* `v` for a log line: printable ASCII as is, the rest as \xNN, at most
 * 48 input bytes, so that a hostile value cannot forge log lines. */
static void quote(char *out, size_t outlen, const unsigned char *v, size_t n)
{
    size_t o = 0;

    if (outlen == 0)
        return;
    for (size_t i = 0; i < n && i < 48 && o + 5 < outlen; i++) {
        if (v[i] >= 0x20 && v[i] < 0x7f && v[i] != '\\' && v[i] != '\'')
            out[o++] = (char)v[i];
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", v[i]);
    }
    if (n > 48 && o + 4 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static void say(char *why, size_t why_len, const char *msg, const char *what,
                const unsigned char *v, size_t n)
{
    char q[256];

    if (why == NULL || why_len == 0)
        return;
    quote(q, sizeof(q), v, n);
    snprintf(why, why_len, msg, what, q);
}

/* Copy an accepted name (valid_name) into role. */
static int take(char *role, size_t role_len, const unsigned char *v, size_t n,
                const char *what, char *why, size_t why_len)
{
    if (!valid_name(v, n) || n >= role_len) {
        say(why, why_len,
            "%s '%s' is not a role name (1 to 32 of a-z, 0-9, _ and -)", what,
            v, n);
        return TG_EPERM;
    }
    memcpy(role, v, n);
    role[n] = '\0';
    return TG_OK;
}

/*
 * Rule 1 and 3 for the SAN: TG_OK with *found = whether exactly one role
 * URI was there (then copied into role), or TG_EPERM.
 */
static int from_san(X509 *x, char *role, size_t role_len, bool *found,
                    char *why, size_t why_len)
{
    int crit = 0, count = 0, rc;
    GENERAL_NAMES *gens =
        X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    const ASN1_IA5STRING *hit = NULL;

    *found = false;
    if (gens == NULL) {
        if (crit == -1)
            return TG_OK; /* no SAN extension */
        /* -2: the extension occurs twice; else it does not parse. */
        say(why, why_len, "%s%s",
            crit == -2 ? "two subjectAltName extensions"
                       : "an unparsable subjectAltName extension",
            NULL, 0);
        return TG_EPERM;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_IA5STRING *s;

        /* Only URIs: a role in a DNS, e-mail or IP SAN is not one. */
        if (g->type != GEN_URI)
            continue;
        s = g->d.uniformResourceIdentifier;
        if ((size_t)ASN1_STRING_length(s) >= URI_PREFIX_LEN &&
            memcmp(ASN1_STRING_get0_data(s), uri_prefix, URI_PREFIX_LEN) == 0) {
            count++;
            hit = s;
        }
    }
    if (count > 1) {
        char n[32];
        snprintf(n, sizeof(n), "%d", count);
        say(why, why_len,
            "%s URI SANs " TG__CERTS_ROLE_URI "...%s: refused "
            "as ambiguous",
            n, NULL, 0);
        rc = TG_EPERM;
    } else if (count == 1) {
        rc = take(role, role_len, ASN1_STRING_get0_data(hit) + URI_PREFIX_LEN,
                  (size_t)ASN1_STRING_length(hit) - URI_PREFIX_LEN,
                  "the URI SAN " TG__CERTS_ROLE_URI "NAME value", why, why_len);
        *found = rc == TG_OK;
    } else {
        rc = TG_OK;
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Rules 1, 3 and 4 for the subject's OU attributes. */
static int from_ou(X509 *x, char *role, size_t role_len, char *why,
                   size_t why_len)
{
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_organizationalUnitName, -1);
    unsigned char *u = NULL;
    int n, rc;

    if (idx < 0) {
        say(why, why_len, "%s%s",
            "neither a URI SAN " TG__CERTS_ROLE_URI "NAME nor an OU", NULL, 0);
        return TG_OK;
    }
    if (X509_NAME_get_index_by_NID(subj, NID_organizationalUnitName, idx) >=
        0) {
        say(why, why_len, "%s%s",
            "several OU attributes and no URI SAN " TG__CERTS_ROLE_URI
            "NAME: refused as ambiguous",
            NULL, 0);
        return TG_EPERM;
    }
    /* Any string type (UTF8String, BMPString, ...) as UTF-8, so that the
     * check below sees the characters, not their encoding. */
    n = ASN1_STRING_to_UTF8(
        &u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    if (n < 0) {
        say(why, why_len, "%s%s", "an OU that is not a string", NULL, 0);
        return TG_EPERM;
    }
    rc = take(role, role_len, u, (size_t)n, "the OU", why, why_len);
    OPENSSL_free(u);
    return rc;
}

int tg__role_from_pem(const char *pem, size_t pem_len, char *role,
                      size_t role_len, char *why, size_t why_len)
{
    BIO *bio;
    X509 *x;
    bool found = false;
    int rc;

    if (why != NULL && why_len > 0)
        why[0] = '\0';
    if (role == NULL || role_len == 0)
        return TG_EPERM;
    role[0] = '\0';
    if (pem == NULL || pem_len == 0 || pem_len > INT_MAX) {
        say(why, why_len, "%s%s", "no certificate", NULL, 0);
        return TG_ETLS;
    }
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    x = bio ? PEM_read_bio_X509(bio, NULL, tg__certs_no_password, NULL) : NULL;
    BIO_free(bio);
    if (x == NULL) {
        say(why, why_len, "%s%s", "the certificate does not parse", NULL, 0);
        ERR_clear_error();
        return TG_ETLS;
    }
    rc = from_san(x, role, role_len, &found, why, why_len);
    if (rc == TG_OK && !found)
        rc = from_ou(x, role, role_len, why, why_len);
    if (rc != TG_OK)
        role[0] = '\0';
    X509_free(x);
    ERR_clear_error();
    return rc;
}
