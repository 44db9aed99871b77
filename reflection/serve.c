/* SPDX-License-Identifier: Apache-2.0
 *
 * serve.c: reflection and health answered on the transport's calls (see
 * serve.h). Depends on reflection.h, transport/server.h and the codec.
 */
#include <stdio.h>
#include <stdlib.h>

#include "reflection/serve.h"
#include "taskgrid/status.h"
#include "util/error.h"
#include "util/log.h"
#include "wire.h"

void tg__refl_serve_message(const tg__refl *r, tg__scall *c, const uint8_t *msg,
                            size_t len)
{
    char why[200];
    uint8_t *out;
    size_t outlen;

    /* The loop reads a stream's messages as they come; a client that
     * sends requests but never reads the answers would make this process
     * hold them all. */
    if (tg__scall_pending_bytes(c) > TG__REFL_MAX_PENDING) {
        snprintf(why, sizeof(why),
                 "reflection answers are not being read: %zu bytes wait "
                 "for this stream, over the limit of %u",
                 tg__scall_pending_bytes(c), TG__REFL_MAX_PENDING);
        TG_LOG_WARN("ending a reflection stream of %s: %s", tg__scall_peer(c),
                    why);
        tg__scall_finish(c, TG_ETOOBIG, why);
        return;
    }
    if (tg__refl_answer(r, msg, len, &out, &outlen) != TG_OK) {
        tg__scall_finish(c, TG_ENOMEM, "out of memory");
        return;
    }
    tg__scall_send(c, out, outlen);
}

void tg__refl_serve_health(const tg__refl *r, tg__scall *c, const uint8_t *req,
                           size_t len)
{
    HealthCheckRequest m;
    HealthCheckResponse resp = {0};
    char msg[300];
    uint8_t *out;
    size_t outlen;

    if (tg__wire_decode(HealthCheckRequest_fields, &m, req, len) != TG_OK) {
        tg__scall_finish(c, TG_EINVAL, tg_error_last());
        return;
    }
    if (!tg__refl_serves(r, m.service.ptr, m.service.len)) {
        char name[TG__REFL_QUOTE_MAX + 8];
        snprintf(
            msg, sizeof(msg), "unknown service '%s'",
            tg__refl_quote(m.service.ptr, m.service.len, name, sizeof(name)));
        tg__scall_finish(c, TG_ENOTFOUND, msg);
        return;
    }
    resp.status = HealthCheckResponse_ServingStatus_SERVING;
    if (tg__wire_encode(HealthCheckResponse_fields, &resp, &out, &outlen) !=
        TG_OK) {
        tg__scall_finish(c, TG_ENOMEM, "out of memory");
        return;
    }
    tg__scall_reply(c, out, outlen);
}
