/* SPDX-License-Identifier: Apache-2.0
 *
 * certs.c: a cluster CA and role certificates with the OpenSSL 3 API (see
 * certs.h). Keys are EC P-256: small, fast to make (the temporary cluster
 * makes five at start-up in about a millisecond) and supported by every
 * gRPC implementation taskgrid talks to (grpc-core, grpc-go, grpcio).
 * Certificates are X.509 v3 with the extensions strict verifiers expect:
 * basicConstraints, keyUsage, extendedKeyUsage, subject and authority key
 * identifiers, and subject alternative names (the role URI; the host names
 * and addresses of a server, which gRPC checks against the target).
 * Depends on libcrypto and POSIX file calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "taskgrid/status.h"
#include "util/certs.h"
#include "util/error.h"

struct tg__certs_ca {
    X509 *cert;
    EVP_PKEY *key;
};

/* Record the OpenSSL error queue behind `what` and return TG_ETLS. */
static int ossl_fail(const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_peek_last_error();

    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return tg__error_set(TG_ETLS, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

static EVP_PKEY *new_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* A random positive 159-bit serial number (RFC 5280: at most 20 octets,
 * and unpredictable). */
static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL &&
             BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok ? 0 : -1;
}

static int set_validity(X509 *x, tg__certs_validity v)
{
    return X509_gmtime_adj(X509_getm_notBefore(x), (long)v.not_before_s) &&
                   X509_gmtime_adj(X509_getm_notAfter(x), (long)v.not_after_s)
               ? 0
               : -1;
}

static int add_name(X509_NAME *n, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8,
                                      (const unsigned char *)value, -1, -1, 0)
               ? 0
               : -1;
}

/* Add one extension given in OpenSSL's configuration syntax. TG_OK or
 * TG_ETLS (the caller reports OpenSSL's error). */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ex;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ex == NULL)
        return TG_ETLS;
    ok = X509_add_ext(x, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? TG_OK : TG_ETLS;
}

static bool valid_role(const char *r)
{
    size_t n = strlen(r);

    if (n == 0 || n > 32)
        return false;
    return strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* One GENERAL_NAME of type `type` (GEN_DNS, GEN_URI) holding `value`. */
static GENERAL_NAME *gen_string(int type, const char *value)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (g == NULL || s == NULL ||
        !ASN1_STRING_set(s, value, (int)strlen(value))) {
        GENERAL_NAME_free(g);
        ASN1_IA5STRING_free(s);
        return NULL;
    }
    GENERAL_NAME_set0_value(g, type, s);
    return g;
}

/*
 * The subjectAltName: the role URI, then each host as an IP address (if
 * it parses as one) or a DNS name. Built directly rather than through the
 * configuration syntax, whose ':' separators make "IP:::1" ambiguous.
 */
static int add_san(X509 *x, const char *role, const char *hosts)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g;
    char *copy = NULL, *save = NULL;
    int rc = TG_ETLS;

    if (gens == NULL)
        return TG_ETLS;
    if (role != NULL) {
        char uri[64];

        snprintf(uri, sizeof(uri), TG__CERTS_ROLE_URI "%s", role);
        if ((g = gen_string(GEN_URI, uri)) == NULL ||
            !sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto cleanup;
        }
    }
    if (hosts != NULL) {
        copy = strdup(hosts);
        if (copy == NULL)
            goto cleanup;
        for (char *h = strtok_r(copy, ",", &save); h != NULL;
             h = strtok_r(NULL, ",", &save)) {
            ASN1_OCTET_STRING *ip;

            while (*h == ' ')
                h++;
            if (*h == '\0')
                continue;
            ip = a2i_IPADDRESS(h);
            if (ip != NULL) {
                g = GENERAL_NAME_new();
                if (g == NULL) {
                    ASN1_OCTET_STRING_free(ip);
                    goto cleanup;
                }
                GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
            } else {
                ERR_clear_error(); /* "not an address" is not an error */
                g = gen_string(GEN_DNS, h);
            }
            if (g == NULL || !sk_GENERAL_NAME_push(gens, g)) {
                GENERAL_NAME_free(g);
                goto cleanup;
            }
        }
    }
    rc = sk_GENERAL_NAME_num(gens) == 0 ||
                 X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                                   X509V3_ADD_DEFAULT) == 1
             ? TG_OK
             : TG_ETLS;

cleanup:
    free(copy);
    GENERAL_NAMES_free(gens);
    return rc;
}

/* A malloc'd copy of what a memory BIO holds. */
static char *bio_text(BIO *b)
{
    char *data = NULL, *out;
    long n = BIO_get_mem_data(b, &data);

    if (n < 0)
        return NULL;
    out = malloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    return out;
}

static int to_pem(X509 *cert, EVP_PKEY *key, char **cert_pem, char **key_pem)
{
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    int rc = TG_OK;

    *cert_pem = NULL;
    if (key_pem)
        *key_pem = NULL;
    if (cb == NULL || kb == NULL || !PEM_write_bio_X509(cb, cert) ||
        (key_pem &&
         !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))) {
        rc = ossl_fail("cannot encode a certificate as PEM");
        goto cleanup;
    }
    *cert_pem = bio_text(cb);
    if (key_pem)
        *key_pem = bio_text(kb);
    if (*cert_pem == NULL || (key_pem && *key_pem == NULL)) {
        free(*cert_pem);
        *cert_pem = NULL;
        if (key_pem) {
            free(*key_pem);
            *key_pem = NULL;
        }
        rc = tg__error_set(TG_ENOMEM, "out of memory");
    }

cleanup:
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

/* Free a half-made CA, with OpenSSL's reason as the error. */
static int ca_fail(tg__certs_ca *ca)
{
    int rc = ossl_fail("cannot make a CA certificate");

    tg__certs_ca_free(ca);
    return rc;
}

int tg__certs_ca_new(tg__certs_ca **out, const char *cn, tg__certs_validity v)
{
    tg__certs_ca *ca;
    X509_NAME *name;

    *out = NULL;
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    ca->key = new_key();
    ca->cert = X509_new();
    if (ca->key == NULL || ca->cert == NULL)
        goto fail;
    name = X509_get_subject_name(ca->cert);
    if (!X509_set_version(ca->cert, X509_VERSION_3) ||
        set_serial(ca->cert) != 0 || set_validity(ca->cert, v) != 0 ||
        add_name(name, "O", "taskgrid") != 0 || add_name(name, "CN", cn) != 0 ||
        !X509_set_issuer_name(ca->cert, name) ||
        !X509_set_pubkey(ca->cert, ca->key) ||
        add_ext(ca->cert, ca->cert, NID_basic_constraints,
                "critical,CA:TRUE,pathlen:0") != 0 ||
        add_ext(ca->cert, ca->cert, NID_key_usage,
                "critical,keyCertSign,cRLSign") != 0 ||
        add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash") != 0 ||
        !X509_sign(ca->cert, ca->key, EVP_sha256()))
        goto fail;
    *out = ca;
    return TG_OK;

fail:
    return ca_fail(ca);
}

int tg__certs_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int tg__certs_ca_load(tg__certs_ca **out, const char *cert_pem,
                      const char *key_pem)
{
    tg__certs_ca *ca;
    BIO *b;

    *out = NULL;
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    b = BIO_new_mem_buf(cert_pem, -1);
    ca->cert =
        b ? PEM_read_bio_X509(b, NULL, tg__certs_no_password, NULL) : NULL;
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem, -1);
    ca->key = b ? PEM_read_bio_PrivateKey(b, NULL, tg__certs_no_password, NULL)
                : NULL;
    BIO_free(b);
    if (ca->cert == NULL || ca->key == NULL) {
        tg__certs_ca_free(ca);
        return ossl_fail("cannot read the CA certificate and key");
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        tg__certs_ca_free(ca);
        ERR_clear_error();
        return tg__error_set(TG_ETLS, "the CA key does not belong to the CA "
                                      "certificate");
    }
    *out = ca;
    return TG_OK;
}

int tg__certs_ca_pem(const tg__certs_ca *ca, char **cert_pem, char **key_pem)
{
    return to_pem(ca->cert, ca->key, cert_pem, key_pem);
}

void tg__certs_ca_free(tg__certs_ca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca);
}

int tg__certs_issue(const tg__certs_ca *ca, const tg__certs_leaf *leaf,
                    char **cert_pem, char **key_pem)
{
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    X509_NAME *name;
    int rc;

    *cert_pem = *key_pem = NULL;
    if (leaf->cn == NULL || leaf->cn[0] == '\0')
        return tg__error_set(TG_EINVAL, "a certificate needs a CN");
    if (leaf->role != NULL && !valid_role(leaf->role))
        return tg__error_set(TG_EINVAL,
                             "role '%s' must be 1 to 32 of a-z, 0-9, _ "
                             "and -",
                             leaf->role);
    key = new_key();
    x = X509_new();
    if (key == NULL || x == NULL) {
        rc = ossl_fail("cannot make a key");
        goto cleanup;
    }
    name = X509_get_subject_name(x);
    if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) != 0 ||
        set_validity(x, leaf->validity) != 0 ||
        add_name(name, "O", "taskgrid") != 0 ||
        (leaf->role && add_name(name, "OU", leaf->role) != 0) ||
        add_name(name, "CN", leaf->cn) != 0 ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
        !X509_set_pubkey(x, key) ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, ca->cert, NID_ext_key_usage,
                leaf->server ? "serverAuth,clientAuth" : "clientAuth") != 0 ||
        add_ext(x, ca->cert, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") !=
            0 ||
        add_san(x, leaf->ou_only ? NULL : leaf->role, leaf->hosts) != 0 ||
        !X509_sign(x, ca->key, EVP_sha256())) {
        rc = ossl_fail("cannot make a certificate");
        goto cleanup;
    }
    rc = to_pem(x, key, cert_pem, key_pem);

cleanup:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

int tg__certs_write_file(const char *path, const char *text, unsigned mode,
                         bool overwrite)
{
    size_t left = strlen(text);
    int fd;

    /* Replace by unlink + exclusive create, so a key never inherits the
     * wider mode of the file it replaces. */
    if (overwrite && unlink(path) != 0 && errno != ENOENT)
        return tg__error_set(TG_EIO, "cannot replace %s: %s", path,
                             strerror(errno));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return tg__error_set(errno == EEXIST ? TG_EEXIST : TG_EIO,
                             "cannot create %s: %s", path, strerror(errno));
    while (left > 0) {
        ssize_t w = write(fd, text, left);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;

            close(fd);
            unlink(path);
            return tg__error_set(TG_EIO, "cannot write %s: %s", path,
                                 strerror(e));
        }
        text += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0)
        return tg__error_set(TG_EIO, "cannot write %s: %s", path,
                             strerror(errno));
    return TG_OK;
}

/* The roles of a cluster, and whether each is a server. A worker serves
 * its results to other workers (DataService) under the fixed name
 * TG__CERTS_WORKER_NAME, since workers' addresses are not known when
 * certificates are made. */
static const struct {
    const char *role;
    bool server;
} roles[] = {
    {"scheduler", true},
    {"worker", true},
    {"client", false},
    {"admin", false},
};
#define NROLES (sizeof(roles) / sizeof(roles[0]))

/* Free PEM text of a private key, wiping it first. */
static void free_secret(char *key)
{
    if (key != NULL) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
}

static void path_of(char *buf, size_t len, const char *dir, const char *base,
                    const char *suffix)
{
    snprintf(buf, len, "%s/%s%s", dir, base, suffix);
}

int tg__certs_write_dir(const char *dir, const tg__certs_dir_opts *opts)
{
    tg__certs_dir_opts o = {0};
    tg__certs_validity v;
    tg__certs_ca *ca = NULL;
    char hostsbuf[512], path[4096], cn[128];
    char *cert = NULL, *key = NULL;
    unsigned char rnd[4];
    struct stat st;
    int rc;

    if (opts != NULL)
        o = *opts;
    if (o.days <= 0)
        o.days = 365;
    if (o.days > 100 * 365)
        return tg__error_set(TG_EINVAL, "at most 36500 days of validity");
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tg__error_set(TG_ENOTFOUND, "%s is not a directory", dir);
    if (o.hosts == NULL) {
        char host[256] = "";

        if (gethostname(host, sizeof(host) - 1) != 0 ||
            strcmp(host, "localhost") == 0)
            host[0] = '\0';
        snprintf(hostsbuf, sizeof(hostsbuf), "localhost,127.0.0.1,::1%s%s",
                 host[0] ? "," : "", host);
        o.hosts = hostsbuf;
    }
    /* Refuse before writing anything, so a second run cannot leave a
     * mix of two CAs behind. */
    if (!o.overwrite) {
        path_of(path, sizeof(path), dir, "ca", ".pem");
        for (size_t i = 0; i <= NROLES; i++) {
            const char *base = i < NROLES ? roles[i].role : "ca";
            for (int k = 0; k < 2; k++) {
                path_of(path, sizeof(path), dir, base, k ? "-key.pem" : ".pem");
                if (access(path, F_OK) == 0)
                    return tg__error_set(TG_EEXIST,
                                         "%s already exists (use another "
                                         "directory, or replace the files: "
                                         "taskgrid-certs --force)",
                                         path);
            }
        }
    }
    /* A little in the past: hosts' clocks differ. */
    v.not_before_s = -3600;
    v.not_after_s = (int64_t)o.days * 86400;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        memset(rnd, 0, sizeof(rnd)); /* only a name: uniqueness helps */
    snprintf(cn, sizeof(cn), "taskgrid cluster CA %02x%02x%02x%02x", rnd[0],
             rnd[1], rnd[2], rnd[3]);
    if ((rc = tg__certs_ca_new(&ca, cn, v)) != TG_OK)
        return rc;
    if ((rc = tg__certs_ca_pem(ca, &cert, &key)) != TG_OK)
        goto cleanup;
    path_of(path, sizeof(path), dir, "ca", ".pem");
    if ((rc = tg__certs_write_file(path, cert, 0644, o.overwrite)) != TG_OK)
        goto cleanup;
    if (o.write_ca_key) {
        path_of(path, sizeof(path), dir, "ca", "-key.pem");
        if ((rc = tg__certs_write_file(path, key, 0600, o.overwrite)) != TG_OK)
            goto cleanup;
    }
    for (size_t i = 0; i < NROLES; i++) {
        tg__certs_leaf leaf = {0};

        free(cert);
        free_secret(key);
        cert = key = NULL;
        snprintf(cn, sizeof(cn), "taskgrid %s", roles[i].role);
        leaf.cn = cn;
        leaf.role = roles[i].role;
        leaf.hosts = !roles[i].server ? NULL
                     : strcmp(roles[i].role, "worker") == 0
                         ? TG__CERTS_WORKER_NAME
                         : o.hosts;
        leaf.server = roles[i].server;
        leaf.validity = v;
        if ((rc = tg__certs_issue(ca, &leaf, &cert, &key)) != TG_OK)
            goto cleanup;
        path_of(path, sizeof(path), dir, roles[i].role, ".pem");
        if ((rc = tg__certs_write_file(path, cert, 0644, o.overwrite)) != TG_OK)
            goto cleanup;
        path_of(path, sizeof(path), dir, roles[i].role, "-key.pem");
        if ((rc = tg__certs_write_file(path, key, 0600, o.overwrite)) != TG_OK)
            goto cleanup;
    }

cleanup:
    free(cert);
    free_secret(key);
    tg__certs_ca_free(ca);
    return rc;
}
