/* SPDX-License-Identifier: Apache-2.0
 *
 * forge.c: hostile-looking certificates for the tests (see forge.h).
 * Depends on OpenSSL 3 and cmocka (failures end the running test).
 */
#include "forge.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static char *bio_text(BIO *b)
{
    char *data = NULL, *out;
    long n = BIO_get_mem_data(b, &data);

    assert_true(n > 0);
    out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    return out;
}

static void add_ext(X509 *x, X509 *ca, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ex;

    X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
    ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ex);
    assert_int_equal(X509_add_ext(x, ex, -1), 1);
    X509_EXTENSION_free(ex);
}

static void add_subject(X509 *x, const tgt_forge *f)
{
    X509_NAME *name = X509_get_subject_name(x);

    for (size_t i = 0; i < f->nattrs; i++) {
        const tgt_attr *a = &f->attrs[i];
        int len = a->len ? (int)a->len : -1;
        int type = a->type ? a->type : MBSTRING_UTF8;

        /* set -1 adds to the previous RDN (a multi-valued RDN), 0 makes
         * a new one; loc -1 appends. */
        if (!X509_NAME_add_entry_by_txt(name, a->field, type,
                                        (const unsigned char *)a->value, len,
                                        -1, a->same_rdn ? -1 : 0))
            fail_msg("subject attribute %s", a->field);
    }
}

static void add_sans(X509 *x, const tgt_forge *f)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

    assert_non_null(gens);
    for (size_t i = 0; i < f->nsans; i++) {
        const tgt_san *s = &f->sans[i];
        size_t len = s->len ? s->len : strlen(s->value);
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_STRING *v = s->type == GEN_IPADD ? ASN1_OCTET_STRING_new()
                                              : ASN1_IA5STRING_new();

        assert_non_null(g);
        assert_non_null(v);
        assert_int_equal(ASN1_STRING_set(v, s->value, (int)len), 1);
        GENERAL_NAME_set0_value(g, s->type, v);
        assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
    }
    if (f->nsans > 0) {
        assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                                           X509V3_ADD_DEFAULT),
                         1);
        if (f->two_san_exts)
            assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                                               X509V3_ADD_APPEND),
                             1);
    }
    GENERAL_NAMES_free(gens);
}

void tgt_forge_issue(const char *ca_pem, const char *ca_key_pem,
                     const tgt_forge *f, char **cert_pem, char **key_pem)
{
    BIO *b = BIO_new_mem_buf(ca_pem, -1);
    X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
    EVP_PKEY *cakey, *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    static uint64_t serial = 0x7e570000;

    BIO_free(b);
    b = BIO_new_mem_buf(ca_key_pem, -1);
    cakey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(ca);
    assert_non_null(cakey);
    assert_non_null(key);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(
        ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial++), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    add_subject(x, f);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, ca, NID_key_usage, "critical,digitalSignature");
    add_ext(x, ca, NID_ext_key_usage, "clientAuth");
    add_ext(x, ca, NID_subject_key_identifier, "hash");
    add_ext(x, ca, NID_authority_key_identifier, "keyid:always");
    add_sans(x, f);
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);

    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    *cert_pem = bio_text(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    *key_pem = bio_text(b);
    BIO_free(b);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
}
