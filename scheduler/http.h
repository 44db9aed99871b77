/* SPDX-License-Identifier: Apache-2.0
 *
 * http.h (private to taskgrid-scheduler): the HTTP port's server, on
 * Debian's libmicrohttpd, serving from its own thread: the dashboard page
 * and its static files (embedded at build time, assets.h), its JSON and
 * Prometheus /metrics, both from snapshots the loop thread publishes
 * (the server never reads the scheduler's state). With TLS it serves
 * HTTPS with the scheduler's certificate and checks the client's
 * certificate against the cluster CA and its role (util/verify.h,
 * util/role.h, auth.h): /metrics and the static files for any admitted
 * certificate, the page and its JSON (which show task keys) for role
 * admin only. Only GET and HEAD; bounded connections and timeouts.
 */
#ifndef TGS_HTTP_H
#define TGS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tgs_http tgs_http;

/* What a snapshot callback is asked for. */
enum { TGS_HTTP_METRICS = 0, TGS_HTTP_JSON = 1 };

typedef struct tgs_http_opts {
    const char *host; /* a literal or a name; "" or NULL: all interfaces */
    uint16_t port;    /* 0: a free one */
    /* PEM (NUL-terminated), all or none: HTTPS and client certificates
     * from the cluster CA. Borrowed until tgs_http_start returns. */
    const char *ca_pem, *cert_pem, *key_pem;
    /* On the HTTP thread: a malloc'd copy of the latest snapshot of
     * `kind` in *body; false when there is none (503). */
    bool (*snapshot)(void *ud, int kind, char **body, size_t *len);
    void *ud;
} tgs_http_opts;

/**
 * Bind and start serving. TG_OK, or a tg_status with the reason in `err`
 * ("cannot listen on 127.0.0.1:8787: Address already in use"). Free with
 * tgs_http_stop.
 */
int tgs_http_start(tgs_http **out, const tgs_http_opts *o, char *err,
                   size_t errlen);

/** The bound port. */
int tgs_http_port(const tgs_http *h);

/** Stop serving (waits for the HTTP thread) and free; NULL is a no-op. */
void tgs_http_stop(tgs_http *h);

#endif
