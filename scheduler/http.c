/* SPDX-License-Identifier: Apache-2.0
 *
 * http.c: the HTTP port's server (http.h) on libmicrohttpd, which serves
 * from one internal thread: routes, the access policy, and with TLS the
 * client certificate checks (the certificate GnuTLS received, verified
 * against the cluster CA and read for its role with OpenSSL through
 * util/verify.h and util/role.h, as the gRPC side does: roles as in
 * auth.h, admin being the operator's). Depends on
 * libmicrohttpd, GnuTLS, OpenSSL and util/.
 */
#include "http.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "assets.h"
#include "taskgrid/status.h"
#include "util/log.h"
#include "util/role.h"
#include "util/verify.h"

/* Connections at once, per client address, and idle seconds. */
#define HTTP_CONNECTIONS 64
#define HTTP_PER_IP 16
#define HTTP_TIMEOUT_S 30

struct tgs_http {
    struct MHD_Daemon *d;
    tg__verifier *verifier; /* TLS only */
    char *pem[3];           /* key, cert, trust: kept while serving */
    bool (*snapshot)(void *ud, int kind, char **body, size_t *len);
    void *ud;
    int port;
    char err[300]; /* the library's last complaint, while starting */
};

/* What a route serves and who may see it. */
typedef struct route {
    const char *path;
    bool admin;        /* with TLS: role admin only (else any admitted) */
    int kind;          /* TGS_HTTP_METRICS / _JSON; -1: an embedded file */
    const char *type;  /* Content-Type of a snapshot */
    const char *label; /* for refusals */
} route;

static const route routes[] = {
    {"/metrics", false, TGS_HTTP_METRICS,
     "text/plain; version=0.0.4; charset=utf-8", "/metrics"},
    {"/api/dashboard.json", true, TGS_HTTP_JSON, "application/json",
     "the dashboard"},
    {"/", true, -1, NULL, "the dashboard"},
};

static void on_log(void *cls, const char *fmt, va_list ap)
{
    tgs_http *h = cls;
    char msg[300];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    snprintf(h->err, sizeof(h->err), "%s", msg);
    TG_LOG_DEBUG("http: %s", msg);
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status,
                               const char *type, void *body, size_t len,
                               bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ok;

    if (r == NULL) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(
        r, "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        "frame-ancestors 'none'");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, "Allow", "GET, HEAD");
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* A refusal or an error, as one line of text naming the problem. */
static enum MHD_Result fail(struct MHD_Connection *c, unsigned status,
                            const char *msg)
{
    size_t n = strlen(msg);
    char *body = malloc(n + 2);

    if (body == NULL)
        return MHD_NO;
    memcpy(body, msg, n);
    body[n] = '\n';
    return respond(c, status, "text/plain; charset=utf-8", body, n + 1, true);
}

/* A certificate GnuTLS received, as PEM (malloc'd), or NULL. */
static char *der_to_pem(const gnutls_datum_t *der)
{
    const unsigned char *p = der->data;
    X509 *x = d2i_X509(NULL, &p, (long)der->size);
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL, *data;
    long n;

    if (x != NULL && b != NULL && PEM_write_bio_X509(b, x) == 1 &&
        (n = BIO_get_mem_data(b, &data)) > 0 &&
        (pem = malloc((size_t)n + 1)) != NULL) {
        memcpy(pem, data, (size_t)n);
        pem[n] = '\0';
    }
    X509_free(x);
    BIO_free(b);
    return pem;
}

/* The intermediates after the leaf, as one PEM text (malloc'd; "" when
 * none), or NULL when out of memory or unparsable. */
static char *chain_pem(const gnutls_datum_t *certs, unsigned n)
{
    char *all = calloc(1, 1);
    size_t len = 0;

    for (unsigned i = 1; all != NULL && i < n && i < 8; i++) {
        char *one = der_to_pem(&certs[i]), *grown;
        size_t k = one ? strlen(one) : 0;
        grown = one ? realloc(all, len + k + 1) : NULL;
        if (grown == NULL) {
            free(one);
            free(all);
            return NULL;
        }
        all = grown;
        memcpy(all + len, one, k + 1);
        len += k;
        free(one);
    }
    return all;
}

/* With TLS: may the peer of `c` see route `r`? Writes the refusal in
 * `why` when not. */
static bool admitted(tgs_http *h, struct MHD_Connection *c, const route *r,
                     char *why, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const gnutls_datum_t *certs;
    unsigned n = 0;
    char *leaf, *chain, role[TG__ROLE_MAX + 1], rwhy[200], vwhy[300];
    bool ok = false;

    if (ci == NULL || ci->tls_session == NULL ||
        (certs = gnutls_certificate_get_peers(ci->tls_session, &n)) == NULL ||
        n == 0) {
        snprintf(why, len,
                 "this port needs a client certificate signed by the "
                 "cluster CA (make one with taskgrid-certs); none was sent");
        return false;
    }
    leaf = der_to_pem(&certs[0]);
    chain = chain_pem(certs, n);
    if (leaf == NULL || chain == NULL) {
        snprintf(why, len, "the client certificate cannot be read");
    } else if (tg__verifier_check(h->verifier, leaf, chain, vwhy,
                                  sizeof(vwhy)) != TG_OK) {
        snprintf(why, len, "client certificate refused: %s", vwhy);
    } else if (tg__role_from_pem(leaf, strlen(leaf), role, sizeof(role), rwhy,
                                 sizeof(rwhy)) == TG_EPERM) {
        snprintf(why, len, "client certificate refused: %s", rwhy);
    } else if (r->admin && strcmp(role, "admin") != 0) {
        snprintf(why, len,
                 "%s needs role 'admin' (this certificate has %s%s%s)",
                 r->label, role[0] ? "role '" : "no taskgrid role",
                 role[0] ? role : "", role[0] ? "'" : "");
    } else {
        ok = true;
    }
    free(leaf);
    free(chain);
    return ok;
}

static const tgs_asset *find_asset(const char *url)
{
    for (size_t i = 0; i < tgs_nassets; i++)
        if (strcmp(url, tgs_assets[i].path) == 0)
            return &tgs_assets[i];
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req)
{
    tgs_http *h = cls;
    const tgs_asset *a = find_asset(url);
    const route *r = NULL, any = {url, false, -1, NULL, url};
    char why[600], *body;
    size_t len;

    (void)version, (void)upload, (void)upload_size, (void)req;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(url, routes[i].path) == 0)
            r = &routes[i];
    if (r == NULL && a != NULL)
        r = &any; /* the page's code and style: nothing of the cluster's */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        snprintf(why, sizeof(why), "method %.40s not allowed: GET or HEAD",
                 method);
        return fail(c, MHD_HTTP_METHOD_NOT_ALLOWED, why);
    }
    if (h->verifier != NULL && !admitted(h, c, r ? r : &any, why, sizeof(why)))
        return fail(c, MHD_HTTP_FORBIDDEN, why);
    if (r == NULL)
        return fail(c, MHD_HTTP_NOT_FOUND,
                    "not found: this port serves /, /api/dashboard.json and "
                    "/metrics");
    if (r->kind < 0)
        return respond(c, MHD_HTTP_OK, a->type, (void *)a->bytes, a->len,
                       false);
    if (!h->snapshot(h->ud, r->kind, &body, &len))
        return fail(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                    "the scheduler has not published its state yet (busy or "
                    "out of memory); try again");
    return respond(c, MHD_HTTP_OK, r->type, body, len, true);
}

/* The socket address of `host` (NULL or "": every IPv4 interface). */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss,
                   char *err, size_t len)
{
    struct addrinfo hints = {0}, *res = NULL;
    char p[8];
    int e;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(p, sizeof(p), "%u", port);
    e = getaddrinfo(host && host[0] ? host : "0.0.0.0", p, &hints, &res);
    if (e != 0 || res == NULL) {
        snprintf(err, len, "cannot resolve dashboard host '%s': %s",
                 host ? host : "", gai_strerror(e));
        return TG_EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return TG_OK;
}

static int start_daemon(tgs_http *h, const tgs_http_opts *o,
                        struct sockaddr_storage *ss)
{
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *di;

    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (h->verifier != NULL)
        flags |= MHD_USE_TLS;
    h->d = MHD_start_daemon(
        flags, o->port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)HTTP_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
        h->verifier ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, h->pem[0],
        MHD_OPTION_HTTPS_MEM_CERT, h->pem[1], MHD_OPTION_HTTPS_MEM_TRUST,
        h->pem[2], MHD_OPTION_END);
    if (h->d == NULL)
        return TG_EIO;
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    return TG_OK;
}

int tgs_http_start(tgs_http **out, const tgs_http_opts *o, char *err,
                   size_t errlen)
{
    tgs_http *h = calloc(1, sizeof(*h));
    struct sockaddr_storage ss;
    int rc;

    *out = NULL;
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    h->snapshot = o->snapshot;
    h->ud = o->ud;
    if ((rc = resolve(o->host, o->port, &ss, err, errlen)) != TG_OK)
        goto fail;
    if (o->ca_pem != NULL) {
        h->pem[0] = strdup(o->key_pem);
        h->pem[1] = strdup(o->cert_pem);
        h->pem[2] = strdup(o->ca_pem);
        rc = tg__verifier_new(&h->verifier, o->ca_pem);
        if (rc != TG_OK || !h->pem[0] || !h->pem[1] || !h->pem[2]) {
            snprintf(err, errlen, "cannot load the cluster CA for HTTPS");
            rc = rc ? rc : TG_ENOMEM;
            goto fail;
        }
    }
    if ((rc = start_daemon(h, o, &ss)) != TG_OK) {
        snprintf(err, errlen, "cannot serve HTTP%s on %s:%u: %s",
                 h->verifier ? "S" : "", o->host && o->host[0] ? o->host : "*",
                 o->port, h->err[0] ? h->err : "libmicrohttpd refused");
        goto fail;
    }
    *out = h;
    return TG_OK;
fail:
    tgs_http_stop(h);
    return rc;
}

int tgs_http_port(const tgs_http *h)
{
    return h ? h->port : 0;
}

void tgs_http_stop(tgs_http *h)
{
    if (h == NULL)
        return;
    if (h->d != NULL)
        MHD_stop_daemon(h->d);
    tg__verifier_free(h->verifier);
    for (int i = 0; i < 3; i++)
        free(h->pem[i]);
    free(h);
}
