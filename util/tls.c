/* SPDX-License-Identifier: Apache-2.0
 *
 * tls.c: loading and checking TLS material before connecting (see tls.h).
 * gRPC only says "Socket closed" when a scheduler refuses a certificate,
 * and "handshake failed" for most local mistakes, so everything that can
 * be checked here is: readable, PEM, a certificate where one belongs, a
 * key that matches it, dates. What cannot be known locally (which CA the
 * scheduler trusts) becomes a hint for the transport's refusal message.
 * Depends on libcrypto and the per-thread error (error.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "taskgrid/status.h"
#include "util/certs.h"
#include "util/error.h"
#include "util/tls.h"

/* Security files larger than this are not certificates. */
#define PEM_MAX (1u << 20)

/* One item being loaded: what it is and where it came from. */
typedef struct item {
    const char *who;  /* "client" */
    const char *what; /* "CA", "certificate", "key" */
    const char *file; /* NULL: given as PEM text */
} item;

/* "client certificate /path/c.pem" or "client certificate (PEM text)". */
static const char *item_name(const item *it, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s %s", it->who, it->what,
             it->file ? it->file : "(PEM text)");
    return buf;
}

static void free_secret(char *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

static int read_file(const item *it, char **out)
{
    FILE *f = fopen(it->file, "rb");
    char *buf = NULL, name[600];
    size_t n;
    int rc = TG_OK;

    *out = NULL;
    if (f == NULL)
        return tg__error_set(
            errno == ENOENT ? TG_ENOTFOUND : TG_EIO, "%s cannot be read: %s",
            item_name(it, name, sizeof(name)), strerror(errno));
    buf = malloc(PEM_MAX + 1);
    if (buf == NULL) {
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto cleanup;
    }
    n = fread(buf, 1, PEM_MAX + 1, f);
    if (ferror(f)) {
        rc = tg__error_set(TG_EIO, "%s cannot be read",
                           item_name(it, name, sizeof(name)));
        goto cleanup;
    }
    if (n > PEM_MAX) {
        rc = tg__error_set(TG_ETLS, "%s is larger than %u bytes: not PEM",
                           item_name(it, name, sizeof(name)), PEM_MAX);
        goto cleanup;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;

cleanup:
    if (buf != NULL) { /* not NUL-terminated: wipe all of it */
        OPENSSL_cleanse(buf, PEM_MAX + 1);
        free(buf);
    }
    fclose(f);
    return rc;
}

/* Load one item given as a file or as PEM text into a heap string. */
static int load_item(const item *it, const char *pem, char **out)
{
    char name[600];
    int rc;

    *out = NULL;
    if (it->file != NULL) {
        if ((rc = read_file(it, out)) != TG_OK)
            return rc;
    } else if ((*out = strdup(pem)) == NULL) {
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    if (strstr(*out, "-----BEGIN ") == NULL) {
        free_secret(*out);
        *out = NULL;
        return tg__error_set(TG_ETLS,
                             "%s is not PEM text (no -----BEGIN "
                             "line)",
                             item_name(it, name, sizeof(name)));
    }
    return TG_OK;
}

STACK_OF(X509) * tg__tls_read_certs(const char *pem)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x;

    if (sk == NULL || b == NULL) {
        sk_X509_free(sk);
        BIO_free(b);
        return NULL;
    }
    while ((x = PEM_read_bio_X509(b, NULL, tg__certs_no_password, NULL)) !=
           NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            break;
        }
    }
    ERR_clear_error(); /* the end of the text reads as an error */
    BIO_free(b);
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
}

/* "2025-01-01 00:00:00 UTC" */
static const char *time_text(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "(unreadable date)");
    return buf;
}

/* TG_OK if `x` is valid now; else TG_ETLS naming `it` and the date. */
static int check_dates(const item *it, X509 *x)
{
    char name[600], when[64];

    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        return tg__error_set(
            TG_ETLS,
            "%s is not valid before %s (is this host's "
            "clock right?)",
            item_name(it, name, sizeof(name)),
            time_text(X509_get0_notBefore(x), when, sizeof(when)));
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        return tg__error_set(
            TG_ETLS, "%s expired on %s", item_name(it, name, sizeof(name)),
            time_text(X509_get0_notAfter(x), when, sizeof(when)));
    return TG_OK;
}

static int check_ca(const item *it, const char *pem)
{
    STACK_OF(X509) *sk = tg__tls_read_certs(pem);
    char name[600];
    int rc = TG_OK;

    if (sk == NULL)
        return tg__error_set(TG_ETLS,
                             "%s holds no PEM certificate (-----BEGIN "
                             "CERTIFICATE-----)",
                             item_name(it, name, sizeof(name)));
    /* A bundle may hold old CAs beside the current one: refuse only when
     * none of them is valid. */
    for (int i = 0; i < sk_X509_num(sk); i++) {
        rc = check_dates(it, sk_X509_value(sk, i));
        if (rc == TG_OK)
            break;
    }
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

static bool is_encrypted(const char *pem)
{
    return strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
           strstr(pem, "Proc-Type: 4,ENCRYPTED") != NULL;
}

static int check_pair(const item *ci, const char *cert_pem, const item *ki,
                      const char *key_pem)
{
    STACK_OF(X509) *sk = tg__tls_read_certs(cert_pem);
    EVP_PKEY *key = NULL;
    BIO *b;
    char cname[600], kname[600];
    int rc = TG_OK;

    item_name(ci, cname, sizeof(cname));
    item_name(ki, kname, sizeof(kname));
    if (sk == NULL)
        return tg__error_set(TG_ETLS,
                             "%s holds no PEM certificate (-----BEGIN "
                             "CERTIFICATE-----)",
                             cname);
    if (is_encrypted(key_pem)) {
        rc = tg__error_set(TG_ETLS,
                           "%s is encrypted; taskgrid needs an unencrypted "
                           "private key (keep it readable only by its user)",
                           kname);
        goto cleanup;
    }
    b = BIO_new_mem_buf(key_pem, -1);
    key = b ? PEM_read_bio_PrivateKey(b, NULL, tg__certs_no_password, NULL)
            : NULL;
    BIO_free(b);
    ERR_clear_error();
    if (key == NULL) {
        rc = tg__error_set(TG_ETLS, "%s holds no PEM private key", kname);
        goto cleanup;
    }
    if (X509_check_private_key(sk_X509_value(sk, 0), key) != 1) {
        ERR_clear_error();
        rc = tg__error_set(TG_ETLS,
                           "%s does not belong to %s (the key and the "
                           "certificate are not a pair)",
                           kname, cname);
        goto cleanup;
    }
    rc = check_dates(ci, sk_X509_value(sk, 0));

cleanup:
    EVP_PKEY_free(key);
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

/*
 * What a scheduler trusting our CA would think of our certificate: the
 * likely reason for a refusal, computed once here because the handshake
 * error will not say.
 */
static void diagnose(tg__tls *t, const item *ca, const item *cert)
{
    STACK_OF(X509) *cas = NULL, *chain = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    char cname[600], caname[600], issuer[256];

    t->hint[0] = '\0';
    if (t->cert_pem == NULL) {
        snprintf(t->hint, sizeof(t->hint),
                 "this %s presented no certificate, and a TLS scheduler "
                 "requires one (mutual TLS): give a certificate and key",
                 cert->who);
        return;
    }
    cas = tg__tls_read_certs(t->ca_pem);
    chain = tg__tls_read_certs(t->cert_pem);
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (cas == NULL || chain == NULL || store == NULL || ctx == NULL)
        goto cleanup;
    for (int i = 0; i < sk_X509_num(cas); i++)
        X509_STORE_add_cert(store, sk_X509_value(cas, i));
    if (X509_STORE_CTX_init(ctx, store, sk_X509_value(chain, 0), chain) != 1)
        goto cleanup;
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx) == 1)
        goto cleanup; /* fine as far as we can tell */
    X509_NAME_oneline(X509_get_issuer_name(sk_X509_value(chain, 0)), issuer,
                      sizeof(issuer));
    snprintf(t->hint, sizeof(t->hint),
             "%s is not signed by %s (issuer %s: %s), so a scheduler "
             "trusting that CA refuses it",
             item_name(cert, cname, sizeof(cname)),
             item_name(ca, caname, sizeof(caname)), issuer,
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));

cleanup:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(cas, X509_free);
    sk_X509_pop_free(chain, X509_free);
}

int tg__tls_server_check(const char *cert_pem, const char *host, char *why,
                         size_t why_len)
{
    STACK_OF(X509) *chain = tg__tls_read_certs(cert_pem);
    X509 *x = chain ? sk_X509_value(chain, 0) : NULL;
    char h[256];
    size_t n = strlen(host);
    int rc = TG_OK;

    /* "[::1]" is how an IPv6 literal appears in an address. */
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        snprintf(h, sizeof(h), "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(h, sizeof(h), "%s", host);
    if (x == NULL) {
        snprintf(why, why_len, "it holds no certificate");
        rc = TG_ETLS;
    } else if (X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) != 1) {
        snprintf(why, why_len,
                 "it is not a server certificate (no serverAuth extended "
                 "key usage)");
        rc = TG_ETLS;
    } else if (X509_check_ip_asc(x, h, 0) != 1 &&
               X509_check_host(x, h, 0, 0, NULL) != 1) {
        snprintf(why, why_len, "it does not name '%s' (DNS or IP SAN)", h);
        rc = TG_ETLS;
    }
    ERR_clear_error();
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

int tg__tls_load(tg__tls *out, const tg_security *s, const char *who)
{
    item ca = {who, "CA", NULL}, cert = {who, "certificate", NULL},
         key = {who, "key", NULL};
    int rc;

    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return tg__error_set(TG_EINVAL, "%s: no security options", who);
    if (s->version != TG_SECURITY_VERSION)
        return tg__error_set(TG_EINVAL,
                             "security: version %u is not supported "
                             "(expected %d; initialise with "
                             "TG_SECURITY_INIT)",
                             (unsigned)s->version, TG_SECURITY_VERSION);
    if ((s->ca_file && s->ca_pem) || (s->cert_file && s->cert_pem) ||
        (s->key_file && s->key_pem))
        return tg__error_set(TG_EINVAL,
                             "security: give each of ca, cert and key as a "
                             "file or as PEM text, not both");
    if (s->ca_file == NULL && s->ca_pem == NULL)
        return tg__error_set(TG_EINVAL,
                             "security: the cluster CA (ca_file or ca_pem) "
                             "is required");
    if ((s->cert_file == NULL && s->cert_pem == NULL) !=
        (s->key_file == NULL && s->key_pem == NULL))
        return tg__error_set(TG_EINVAL,
                             "security: certificate and key go together "
                             "(give both or neither)");
    ca.file = s->ca_file;
    cert.file = s->cert_file;
    key.file = s->key_file;
    if ((rc = load_item(&ca, s->ca_pem, &out->ca_pem)) != TG_OK ||
        (rc = check_ca(&ca, out->ca_pem)) != TG_OK)
        goto fail;
    if (s->cert_file != NULL || s->cert_pem != NULL) {
        if ((rc = load_item(&cert, s->cert_pem, &out->cert_pem)) != TG_OK ||
            (rc = load_item(&key, s->key_pem, &out->key_pem)) != TG_OK ||
            (rc = check_pair(&cert, out->cert_pem, &key, out->key_pem)) !=
                TG_OK)
            goto fail;
    }
    diagnose(out, &ca, &cert);
    return TG_OK;

fail:
    tg__tls_clear(out);
    return rc;
}

void tg__tls_clear(tg__tls *t)
{
    if (t == NULL)
        return;
    free(t->ca_pem);
    free(t->cert_pem);
    free_secret(t->key_pem);
    memset(t, 0, sizeof(*t));
}

/* The worker identity: written once before tasks run, then read-only. */
static pthread_mutex_t identity_mu = PTHREAD_MUTEX_INITIALIZER;
static bool identity_set;
static char *identity_address;
static tg__tls identity_tls;

int tg__tls_worker_identity_set(const char *address, const tg__tls *t)
{
    int rc = TG_OK;

    pthread_mutex_lock(&identity_mu);
    if (identity_set) {
        rc = tg__error_set(TG_ESTATE, "the worker identity is already set");
        goto unlock;
    }
    identity_address = strdup(address);
    if (t != NULL && t->ca_pem != NULL) {
        identity_tls.ca_pem = strdup(t->ca_pem);
        identity_tls.cert_pem = t->cert_pem ? strdup(t->cert_pem) : NULL;
        identity_tls.key_pem = t->key_pem ? strdup(t->key_pem) : NULL;
        snprintf(identity_tls.hint, sizeof(identity_tls.hint), "%s", t->hint);
    }
    if (identity_address == NULL ||
        (t != NULL && t->ca_pem != NULL &&
         (identity_tls.ca_pem == NULL ||
          (t->cert_pem && identity_tls.cert_pem == NULL) ||
          (t->key_pem && identity_tls.key_pem == NULL)))) {
        free(identity_address);
        identity_address = NULL;
        tg__tls_clear(&identity_tls);
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto unlock;
    }
    identity_set = true;

unlock:
    pthread_mutex_unlock(&identity_mu);
    return rc;
}

const char *tg__tls_worker_identity(tg_security *sec)
{
    const char *addr;

    *sec = (tg_security)TG_SECURITY_INIT;
    pthread_mutex_lock(&identity_mu);
    addr = identity_set ? identity_address : NULL;
    if (identity_set && identity_tls.ca_pem != NULL) {
        sec->ca_pem = identity_tls.ca_pem;
        sec->cert_pem = identity_tls.cert_pem;
        sec->key_pem = identity_tls.key_pem;
    }
    pthread_mutex_unlock(&identity_mu);
    return addr;
}
