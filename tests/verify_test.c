/* SPDX-License-Identifier: Apache-2.0
 *
 * verify_test.c: tg__verifier_check (util/verify.h), the cluster CA's
 * verdict on a peer's certificate, with certificates made here: a good
 * one, expired, not yet valid, from another CA, one whose signature was
 * altered, the CA's own certificate, a CA bundle with two CAs, and input
 * that is not a certificate at all. No network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "taskgrid/status.h"
#include "util/certs.h"
#include "util/verify.h"

static tg__certs_ca *ca, *other;
static char *ca_pem, *other_pem;

static int setup(void **state)
{
    tg__certs_validity v = {-3600, 86400};
    char *key;

    (void)state;
    if (tg__certs_ca_new(&ca, "verify test CA", v) != TG_OK ||
        tg__certs_ca_pem(ca, &ca_pem, &key) != TG_OK)
        return -1;
    free(key);
    if (tg__certs_ca_new(&other, "another CA", v) != TG_OK ||
        tg__certs_ca_pem(other, &other_pem, &key) != TG_OK)
        return -1;
    free(key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ca_pem);
    free(other_pem);
    tg__certs_ca_free(ca);
    tg__certs_ca_free(other);
    return 0;
}

static char *leaf(const tg__certs_ca *by, const char *cn, int64_t from,
                  int64_t to)
{
    tg__certs_leaf l = {0};
    char *cert = NULL, *key = NULL;

    l.cn = cn;
    l.role = "client";
    l.validity.not_before_s = from;
    l.validity.not_after_s = to;
    assert_int_equal(tg__certs_issue(by, &l, &cert, &key), TG_OK);
    free(key);
    return cert;
}

/* The verdict of `ca_pem` on `cert`; `why` gets the reason. */
static int check(const char *trust, const char *cert, char why[1024])
{
    tg__verifier *v = NULL;
    int rc;

    assert_int_equal(tg__verifier_new(&v, trust), TG_OK);
    rc = tg__verifier_check(v, cert, NULL, why, 1024);
    tg__verifier_free(v);
    return rc;
}

static void test_verify_verify__good_certificate_passes(void **state)
{
    char *cert = leaf(ca, "good", -60, 3600), why[1024];

    (void)state;
    assert_int_equal(check(ca_pem, cert, why), TG_OK);
    assert_string_equal(why, "");
    free(cert);
}

static void test_verify_verify__expired_says_so_with_the_date(void **state)
{
    char *cert = leaf(ca, "old", -7200, -3600), why[1024];

    (void)state;
    assert_int_equal(check(ca_pem, cert, why), TG_ETLS);
    assert_non_null(strstr(why, "CN=old"));
    assert_non_null(strstr(why, "has expired (not after "));
    assert_non_null(strstr(why, "GMT)"));
    free(cert);
}

static void test_verify_verify__not_yet_valid_says_so(void **state)
{
    char *cert = leaf(ca, "early", 3600, 7200), why[1024];

    (void)state;
    assert_int_equal(check(ca_pem, cert, why), TG_ETLS);
    assert_non_null(strstr(why, "CN=early"));
    assert_non_null(strstr(why, "is not valid yet (not before "));
    free(cert);
}

static void test_verify_verify__other_ca_names_its_issuer(void **state)
{
    char *cert = leaf(other, "stranger", -60, 3600), why[1024];

    (void)state;
    assert_int_equal(check(ca_pem, cert, why), TG_ETLS);
    assert_non_null(strstr(why, "CN=stranger"));
    assert_non_null(strstr(why, "is not signed by the cluster CA (issuer "));
    assert_non_null(strstr(why, "another CA"));
    free(cert);
}

static void test_verify_verify__a_bundle_trusts_each_ca(void **state)
{
    char *cert = leaf(other, "stranger", -60, 3600), why[1024];
    size_t n = strlen(ca_pem) + strlen(other_pem) + 1;
    char *bundle = malloc(n);

    (void)state;
    snprintf(bundle, n, "%s%s", ca_pem, other_pem);
    assert_int_equal(check(bundle, cert, why), TG_OK);
    free(bundle);
    free(cert);
}

/* Flip one bit of the signature (the last bytes of the DER, inside the
 * base64 body just before the END line): the issuer still names our CA,
 * but the signature does not verify. */
static void test_verify_verify__altered_signature_is_refused(void **state)
{
    char *cert = leaf(ca, "tampered", -60, 3600), why[1024];
    char *end = strstr(cert, "-----END");

    (void)state;
    assert_non_null(end);
    /* end[-1] is '\n'; end[-2] the last base64 character, often '='
     * padding: go back to a data character. */
    char *p = end - 2;
    while (*p == '=')
        p--;
    p -= 2;
    *p = (*p == 'A') ? 'B' : 'A';
    assert_int_equal(check(ca_pem, cert, why), TG_ETLS);
    assert_non_null(strstr(why, "CN=tampered"));
    free(cert);
}

static void test_verify_verify__not_a_certificate(void **state)
{
    char why[1024];

    (void)state;
    assert_int_equal(check(ca_pem, "not a certificate", why), TG_ETLS);
    assert_string_equal(why, "the peer presented no readable certificate");
    assert_int_equal(check(ca_pem, "", why), TG_ETLS);
    assert_int_equal(check(ca_pem, NULL, why), TG_ETLS);
}

static void test_verify_verify__bad_trust_anchor(void **state)
{
    tg__verifier *v = (tg__verifier *)1;

    (void)state;
    assert_int_equal(tg__verifier_new(&v, "no PEM here"), TG_ETLS);
    assert_null(v);
    tg__verifier_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_verify__good_certificate_passes),
        cmocka_unit_test(test_verify_verify__expired_says_so_with_the_date),
        cmocka_unit_test(test_verify_verify__not_yet_valid_says_so),
        cmocka_unit_test(test_verify_verify__other_ca_names_its_issuer),
        cmocka_unit_test(test_verify_verify__a_bundle_trusts_each_ca),
        cmocka_unit_test(test_verify_verify__altered_signature_is_refused),
        cmocka_unit_test(test_verify_verify__not_a_certificate),
        cmocka_unit_test(test_verify_verify__bad_trust_anchor),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
