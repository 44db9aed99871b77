/* SPDX-License-Identifier: Apache-2.0
 *
 * verify.c: the cluster CA's verdict on a peer's certificate, with the
 * reason in words (see verify.h).
 */
#include "verify.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "taskgrid/status.h"
#include "util/tls.h"

struct tg__verifier {
    X509_STORE *store;
};

int tg__verifier_new(tg__verifier **out, const char *ca_pem)
{
    STACK_OF(X509) *cas = tg__tls_read_certs(ca_pem);
    tg__verifier *v;
    int ok = 1;

    *out = NULL;
    if (cas == NULL)
        return TG_ETLS;
    v = calloc(1, sizeof(*v));
    if (v == NULL || (v->store = X509_STORE_new()) == NULL) {
        free(v);
        sk_X509_pop_free(cas, X509_free);
        return TG_ENOMEM;
    }
    for (int i = 0; ok && i < sk_X509_num(cas); i++)
        ok = X509_STORE_add_cert(v->store, sk_X509_value(cas, i));
    sk_X509_pop_free(cas, X509_free);
    if (!ok) {
        ERR_clear_error();
        tg__verifier_free(v);
        return TG_ETLS;
    }
    *out = v;
    return TG_OK;
}

void tg__verifier_free(tg__verifier *v)
{
    if (v == NULL)
        return;
    X509_STORE_free(v->store);
    free(v);
}

/* `name` in one line, RFC 2253 order ("CN=x,OU=y"), escaped by OpenSSL
 * (a hostile subject cannot forge the sentence around it). */
static void name_line(const X509_NAME *name, char *buf, size_t len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int n = 0;

    buf[0] = '\0';
    if (bio == NULL)
        return;
    if (X509_NAME_print_ex(bio, name, 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
        n = BIO_read(bio, buf, (int)len - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
}

static void time_line(const ASN1_TIME *t, char *buf, size_t len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int n = 0;

    buf[0] = '\0';
    if (bio == NULL)
        return;
    if (t != NULL && ASN1_TIME_print(bio, t))
        n = BIO_read(bio, buf, (int)len - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(bio);
}

/* The sentence for a failed X509_verify_cert. */
static void explain(X509_STORE_CTX *ctx, X509 *leaf, char *why, size_t len)
{
    int err = X509_STORE_CTX_get_error(ctx);
    X509 *at = X509_STORE_CTX_get_current_cert(ctx);
    char subject[512], issuer[512], when[64];

    if (at == NULL)
        at = leaf;
    name_line(X509_get_subject_name(at), subject, sizeof(subject));
    name_line(X509_get_issuer_name(at), issuer, sizeof(issuer));
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        time_line(X509_get0_notAfter(at), when, sizeof(when));
        snprintf(why, len, "the certificate %s has expired (not after %s)",
                 subject, when);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        time_line(X509_get0_notBefore(at), when, sizeof(when));
        snprintf(why, len,
                 "the certificate %s is not valid yet (not before %s)", subject,
                 when);
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        snprintf(why, len,
                 "the certificate %s is not signed by the cluster CA "
                 "(issuer %s)",
                 subject, issuer);
        break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        snprintf(why, len,
                 "the certificate %s has a signature that does not verify "
                 "(issuer %s): forged or corrupt",
                 subject, issuer);
        break;
    case X509_V_ERR_INVALID_PURPOSE:
        snprintf(why, len,
                 "the certificate %s may not be used by a TLS client (its "
                 "key usage or extended key usage)",
                 subject);
        break;
    default:
        snprintf(why, len, "the certificate %s failed verification: %s",
                 subject, X509_verify_cert_error_string(err));
        break;
    }
}

int tg__verifier_check(const tg__verifier *v, const char *leaf_pem,
                       const char *chain_pem, char *why, size_t why_len)
{
    STACK_OF(X509) *leaf = tg__tls_read_certs(leaf_pem);
    STACK_OF(X509) *chain = tg__tls_read_certs(chain_pem);
    X509_STORE_CTX *ctx = NULL;
    int rc = TG_ETLS;

    if (why_len > 0)
        why[0] = '\0';
    if (leaf == NULL) {
        snprintf(why, why_len, "the peer presented no readable certificate");
        goto done;
    }
    ctx = X509_STORE_CTX_new();
    if (ctx == NULL ||
        !X509_STORE_CTX_init(ctx, v->store, sk_X509_value(leaf, 0), chain) ||
        !X509_STORE_CTX_set_default(ctx, "ssl_client")) {
        snprintf(why, why_len, "cannot verify the certificate: out of memory");
        goto done;
    }
    if (X509_verify_cert(ctx) == 1)
        rc = TG_OK;
    else
        explain(ctx, sk_X509_value(leaf, 0), why, why_len);
done:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(leaf, X509_free);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}
