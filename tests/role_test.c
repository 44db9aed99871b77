/* SPDX-License-Identifier: Apache-2.0
 *
 * role_test.c: tg__role_from_pem (util/role.h), the one reading of a
 * certificate's taskgrid role, against hostile certificates made here
 * with OpenSSL (forge.h): role-looking text in the CN (commas, spaces,
 * RFC 2253 escapes, a literal "+", slashes, newlines), roles in DNS and
 * e-mail SANs and in other attributes, a URI SAN and an OU that disagree,
 * several OUs, several role URIs, bad role values, two SAN extensions,
 * other string types. No network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/asn1.h>
#include <openssl/x509v3.h>

#include "forge.h"
#include "taskgrid/status.h"
#include "util/certs.h"
#include "util/role.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char *ca_pem, *ca_key;

static int setup(void **state)
{
    tg__certs_ca *ca = NULL;
    tg__certs_validity v = {-3600, 86400};

    (void)state;
    if (tg__certs_ca_new(&ca, "role test CA", v) != TG_OK ||
        tg__certs_ca_pem(ca, &ca_pem, &ca_key) != TG_OK)
        return -1;
    tg__certs_ca_free(ca);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ca_pem);
    free(ca_key);
    return 0;
}

/* The role of a forged certificate; *why gets the reason. */
static int role_of(const tgt_attr *attrs, size_t nattrs, const tgt_san *sans,
                   size_t nsans, int two_exts, char role[64], char why[512])
{
    tgt_forge f = {attrs, nattrs, sans, nsans, two_exts};
    char *cert = NULL, *key = NULL;
    int rc;

    tgt_forge_issue(ca_pem, ca_key, &f, &cert, &key);
    strcpy(role, "unset");
    rc = tg__role_from_pem(cert, strlen(cert), role, 64, why, 512);
    free(cert);
    free(key);
    return rc;
}

#define assert_role(rc_, want_rc, want_role)    \
    do {                                        \
        assert_int_equal((rc_), (want_rc));     \
        assert_string_equal(role, (want_role)); \
    } while (0)

/* What taskgrid-certs writes: the URI SAN and the OU, or the OU only. */
static void test_role_role__well_formed(void **state)
{
    tg__certs_ca *ca = NULL;
    tg__certs_leaf leaf = {0};
    char *cert, *key, role[64], why[512];

    (void)state;
    assert_int_equal(tg__certs_ca_load(&ca, ca_pem, ca_key), TG_OK);
    leaf.cn = "w";
    leaf.role = "worker";
    leaf.validity.not_before_s = -60;
    leaf.validity.not_after_s = 600;
    for (int ou_only = 0; ou_only < 2; ou_only++) {
        leaf.ou_only = ou_only;
        assert_int_equal(tg__certs_issue(ca, &leaf, &cert, &key), TG_OK);
        assert_role(tg__role_from_pem(cert, strlen(cert), role, sizeof(role),
                                      why, sizeof(why)),
                    TG_OK, "worker");
        free(cert);
        free(key);
    }
    leaf.role = NULL;
    assert_int_equal(tg__certs_issue(ca, &leaf, &cert, &key), TG_OK);
    assert_role(tg__role_from_pem(cert, strlen(cert), role, sizeof(role), why,
                                  sizeof(why)),
                TG_OK, "");
    assert_non_null(strstr(why, "neither a URI SAN"));
    free(cert);
    free(key);
    tg__certs_ca_free(ca);
}

/* Role-looking text inside the CN is text, whatever gRPC's RFC 2253
 * rendering makes of it. */
static void test_role_role__cn_text_is_not_an_ou(void **state)
{
    static const char *const cns[] = {
        "mallory,OU=admin",    "mallory, OU=admin", "mallory OU=worker",
        " OU=worker",          "OU=admin",          "mallory\\,OU=admin",
        "mallory\\2COU=admin", "mallory+OU=admin",  "mallory/OU=admin",
        "mallory;OU=admin",    "mallory\nOU=admin", "x\",OU=admin,CN=\"y",
        "mallory#OU=admin",    "mallory,ou=admin",  "CN=a,OU=admin,O=taskgrid",
    };
    char role[64], why[512];

    (void)state;
    for (size_t i = 0; i < N(cns); i++) {
        /* With no OU at all: no role. */
        tgt_attr a[] = {{"O", "taskgrid", 0, 0, 0}, {"CN", cns[i], 0, 0, 0}};
        /* With a real OU client: client, not what the CN says. */
        tgt_attr b[] = {{"O", "taskgrid", 0, 0, 0},
                        {"OU", "client", 0, 0, 0},
                        {"CN", cns[i], 0, 0, 0}};

        assert_role(role_of(a, N(a), NULL, 0, 0, role, why), TG_OK, "");
        assert_role(role_of(b, N(b), NULL, 0, 0, role, why), TG_OK, "client");
    }
}

/* Only a URI SAN carries a role: not a DNS name, an e-mail address, an
 * IP address, another URI that merely contains it, or another attribute. */
static void test_role_role__only_uri_sans_count(void **state)
{
    static const tgt_san sans[][1] = {
        {{GEN_DNS, "taskgrid:role=admin", 0}},
        {{GEN_EMAIL, "taskgrid:role=admin", 0}},
        {{GEN_DNS, "taskgrid:role=worker", 0}},
        {{GEN_EMAIL, "taskgrid:role=worker@example.org", 0}},
        {{GEN_IPADD, "\x7f\x00\x00\x01", 4}},
        {{GEN_URI, "https://example.org/taskgrid:role=admin", 0}},
        {{GEN_URI, "TASKGRID:role=admin", 0}},
        {{GEN_URI, " taskgrid:role=admin", 0}},
    };
    tgt_attr cn[] = {{"CN", "mallory", 0, 0, 0},
                     {"O", "taskgrid:role=admin", 0, 0, 0},
                     {"serialNumber", "taskgrid:role=admin", 0, 0, 0}};
    tgt_attr ou[] = {{"CN", "mallory", 0, 0, 0}, {"OU", "client", 0, 0, 0}};
    char role[64], why[512];

    (void)state;
    for (size_t i = 0; i < N(sans); i++) {
        assert_role(role_of(cn, N(cn), sans[i], 1, 0, role, why), TG_OK, "");
        assert_role(role_of(ou, N(ou), sans[i], 1, 0, role, why), TG_OK,
                    "client");
    }
}

/* Rule 2: the URI SAN wins over an OU naming another role. */
static void test_role_role__uri_san_wins_over_ou(void **state)
{
    tgt_attr a[] = {{"CN", "x", 0, 0, 0}, {"OU", "admin", 0, 0, 0}};
    tgt_san s[] = {{GEN_DNS, "localhost", 0},
                   {GEN_URI, "taskgrid:role=worker", 0}};
    char role[64], why[512];

    (void)state;
    assert_role(role_of(a, N(a), s, N(s), 0, role, why), TG_OK, "worker");
}

/* Rule 3: several role URIs, or several OUs, are refused. */
static void test_role_role__ambiguity_is_refused(void **state)
{
    tgt_attr one_ou[] = {{"CN", "x", 0, 0, 0}, {"OU", "client", 0, 0, 0}};
    tgt_attr two_ou[] = {{"OU", "client", 0, 0, 0},
                         {"CN", "x", 0, 0, 0},
                         {"OU", "admin", 0, 0, 0}};
    tgt_attr same_ou[] = {{"OU", "admin", 0, 0, 0},
                          {"OU", "admin", 0, 0, 0},
                          {"CN", "x", 0, 0, 0}};
    tgt_san two[] = {{GEN_URI, "taskgrid:role=client", 0},
                     {GEN_URI, "taskgrid:role=admin", 0}};
    tgt_san twice[] = {{GEN_URI, "taskgrid:role=admin", 0},
                       {GEN_URI, "taskgrid:role=admin", 0}};
    tgt_san uri[] = {{GEN_URI, "taskgrid:role=worker", 0}};
    char role[64], why[512];

    (void)state;
    assert_role(role_of(one_ou, N(one_ou), two, N(two), 0, role, why), TG_EPERM,
                "");
    assert_non_null(strstr(why, "2 URI SANs"));
    assert_role(role_of(one_ou, N(one_ou), twice, N(twice), 0, role, why),
                TG_EPERM, "");
    assert_role(role_of(two_ou, N(two_ou), NULL, 0, 0, role, why), TG_EPERM,
                "");
    assert_non_null(strstr(why, "several OU attributes"));
    assert_role(role_of(same_ou, N(same_ou), NULL, 0, 0, role, why), TG_EPERM,
                "");
    /* A URI SAN decides even if the OUs are ambiguous (rule 2 first). */
    assert_role(role_of(two_ou, N(two_ou), uri, N(uri), 0, role, why), TG_OK,
                "worker");
    /* Two SAN extensions: refused, whatever they hold. */
    assert_role(role_of(one_ou, N(one_ou), uri, N(uri), 1, role, why), TG_EPERM,
                "");
    assert_non_null(strstr(why, "two subjectAltName extensions"));
}

/* A role value must be a role name; a bad role URI does not fall back to
 * the OU. */
static void test_role_role__bad_values_are_refused(void **state)
{
    static const tgt_san bad[][1] = {
        {{GEN_URI, "taskgrid:role=", 0}},
        {{GEN_URI, "taskgrid:role=ad min", 0}},
        {{GEN_URI, "taskgrid:role=admin,OU=x", 0}},
        {{GEN_URI, "taskgrid:role=Admin", 0}},
        {{GEN_URI, "taskgrid:role=admin\0x", 21}},
        {{GEN_URI, "taskgrid:role=admin\n", 0}},
        {{GEN_URI, "taskgrid:role=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0}},
    };
    static const tgt_attr bad_ou[][2] = {
        {{"CN", "x", 0, 0, 0}, {"OU", "", 0, V_ASN1_UTF8STRING, 0}},
        {{"CN", "x", 0, 0, 0}, {"OU", "admin,OU=x", 0, 0, 0}},
        {{"CN", "x", 0, 0, 0}, {"OU", "admin\0", 6, V_ASN1_UTF8STRING, 0}},
        {{"CN", "x", 0, 0, 0}, {"OU", "adm\xc3\xafn", 0, 0, 0}},
    };
    tgt_attr ou[] = {{"CN", "x", 0, 0, 0}, {"OU", "client", 0, 0, 0}};
    char role[64], why[512];

    (void)state;
    for (size_t i = 0; i < N(bad); i++) {
        assert_role(role_of(ou, N(ou), bad[i], 1, 0, role, why), TG_EPERM, "");
        assert_non_null(strstr(why, "is not a role name"));
        assert_null(strchr(why, '\n'));
    }
    for (size_t i = 0; i < N(bad_ou); i++)
        assert_role(role_of(bad_ou[i], 2, NULL, 0, 0, role, why), TG_EPERM, "");
}

/* An OU is read as X.509: a BMPString OU is its characters; an OU that
 * shares an RDN with the CN (a real multi-valued RDN the CA signed) is an
 * OU attribute. */
static void test_role_role__ou_as_an_attribute(void **state)
{
    tgt_attr bmp[] = {{"CN", "x", 0, 0, 0},
                      {"OU", "\0w\0o\0r\0k\0e\0r", 12, V_ASN1_BMPSTRING, 0}};
    tgt_attr multi[] = {{"O", "taskgrid", 0, 0, 0},
                        {"CN", "x", 0, 0, 0},
                        {"OU", "worker", 0, 0, 1}};
    char role[64], why[512];

    (void)state;
    assert_role(role_of(bmp, N(bmp), NULL, 0, 0, role, why), TG_OK, "worker");
    assert_role(role_of(multi, N(multi), NULL, 0, 0, role, why), TG_OK,
                "worker");
}

/* Not a certificate, or a buffer too small for the role. */
static void test_role_role__bad_input(void **state)
{
    tgt_attr a[] = {{"CN", "x", 0, 0, 0}, {"OU", "admin", 0, 0, 0}};
    tgt_forge f = {a, N(a), NULL, 0, 0};
    char *cert, *key, role[64], why[512];

    (void)state;
    assert_role(
        tg__role_from_pem(NULL, 0, role, sizeof(role), why, sizeof(why)),
        TG_ETLS, "");
    assert_role(tg__role_from_pem("junk", 4, role, sizeof(role), NULL, 0),
                TG_ETLS, "");
    tgt_forge_issue(ca_pem, ca_key, &f, &cert, &key);
    /* Cut short: not parsable. */
    assert_role(tg__role_from_pem(cert, strlen(cert) / 2, role, sizeof(role),
                                  why, sizeof(why)),
                TG_ETLS, "");
    assert_int_equal(
        tg__role_from_pem(cert, strlen(cert), role, 5, why, sizeof(why)),
        TG_EPERM);
    assert_string_equal(role, "");
    assert_role(
        tg__role_from_pem(cert, strlen(cert), role, 6, why, sizeof(why)), TG_OK,
        "admin");
    free(cert);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_role__well_formed),
        cmocka_unit_test(test_role_role__cn_text_is_not_an_ou),
        cmocka_unit_test(test_role_role__only_uri_sans_count),
        cmocka_unit_test(test_role_role__uri_san_wins_over_ou),
        cmocka_unit_test(test_role_role__ambiguity_is_refused),
        cmocka_unit_test(test_role_role__bad_values_are_refused),
        cmocka_unit_test(test_role_role__ou_as_an_attribute),
        cmocka_unit_test(test_role_role__bad_input),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
