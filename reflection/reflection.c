/* SPDX-License-Identifier: Apache-2.0
 *
 * reflection.c: the answers of server reflection and the services served
 * (see reflection.h). One request in, one response out, at once: the
 * answers are small (a file of the built-in descriptor set with its
 * imports, or the list of services), so the server's one loop thread is
 * never held. The rules, from the protocol (proto/grpc/reflection/v1/):
 *   - file_by_filename, file_containing_symbol: the file with every file
 *     it imports, all of them each time (a server may skip files already
 *     sent on the stream; sending them again keeps no per-stream state).
 *   - all_extension_numbers_of_type of a message: its base_type_name and
 *     no numbers (nothing extends taskgrid's messages); of anything else
 *     NOT_FOUND. file_containing_extension: NOT_FOUND, no extension exists.
 *   - A request that sets none or several of message_request's fields
 *     (nanopb keeps no order among them, so "the last one wins" cannot be
 *     honoured), is malformed, is over TG__REFL_MAX_REQUEST, or holds a
 *     string that is not UTF-8: error_response INVALID_ARGUMENT or
 *     RESOURCE_EXHAUSTED. original_request echoes a well-formed request.
 * Names quoted in error messages are cut and made printable ASCII, so a
 * hostile name cannot make the response invalid (proto3 strings are
 * UTF-8) or forge text. Depends on the codecs and util/error.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb.h"
#include "reflection/descriptors.h"
#include "reflection/index.h"
#include "reflection/reflection.h"
#include "taskgrid/status.h"
#include "util/error.h"
#include "wire.h"

/* gRPC status codes (fixed by the gRPC protocol), for error_response. */
#define CODE_INVALID_ARGUMENT 3
#define CODE_NOT_FOUND 5
#define CODE_RESOURCE_EXHAUSTED 8

#define QUOTE_MAX TG__REFL_QUOTE_MAX

struct tg__refl {
    tgr_index x;
    size_t nservices;
    char **services;          /* full names */
    uint8_t **service_msgs;   /* each an encoded ServiceResponse */
    tg_pbbuf *service_ranges; /* the same, for the list callback */
};

void tg__refl_free(tg__refl *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nservices; i++) {
        free(r->services[i]);
        free(r->service_msgs[i]);
    }
    free(r->services);
    free(r->service_msgs);
    free(r->service_ranges);
    tgr_index_free(&r->x);
    free(r);
}

/* One service of tg__refl_new: checked, copied, its ServiceResponse
 * encoded. */
static int add_service(tg__refl *r, const char *name)
{
    const tgr_sym *s =
        tgr_index_find(&r->x, (const uint8_t *)name, strlen(name));
    ServiceResponse m = {tg_pbbuf_str(name)};
    size_t i = r->nservices, len;
    int rc;

    if (s == NULL || s->kind != TGR_SERVICE)
        return tg__error_set(TG_EINVAL,
                             "reflection: '%s' is not a service of the "
                             "built-in protocol descriptors",
                             name);
    if ((r->services[i] = strdup(name)) == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    rc = tg__wire_encode(ServiceResponse_fields, &m, &r->service_msgs[i], &len);
    if (rc != TG_OK) {
        free(r->services[i]);
        return rc;
    }
    r->service_ranges[i] = tg_pbbuf_mem(r->service_msgs[i], len);
    r->nservices++;
    return TG_OK;
}

int tg__refl_new(tg__refl **out, const char *const *services, size_t n)
{
    tg__refl *r = calloc(1, sizeof(*r));
    int rc;

    *out = NULL;
    if (r == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    rc = tgr_index_build(&r->x, tg__refl_descriptor_set,
                         tg__refl_descriptor_set_len);
    if (rc != TG_OK) {
        free(r);
        return rc;
    }
    r->services = calloc(n ? n : 1, sizeof(*r->services));
    r->service_msgs = calloc(n ? n : 1, sizeof(*r->service_msgs));
    r->service_ranges = calloc(n ? n : 1, sizeof(*r->service_ranges));
    if (r->services == NULL || r->service_msgs == NULL ||
        r->service_ranges == NULL) {
        tg__refl_free(r);
        return tg__error_set(TG_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = add_service(r, services[i])) != TG_OK) {
            tg__refl_free(r);
            return rc;
        }
    *out = r;
    return TG_OK;
}

bool tg__refl_serves(const tg__refl *r, const uint8_t *name, size_t len)
{
    if (len == 0)
        return true;
    for (size_t i = 0; i < r->nservices; i++)
        if (strlen(r->services[i]) == len &&
            memcmp(r->services[i], name, len) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* Whether `b` is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing past U+10FFFF), as proto3 requires of a string. */
static bool utf8_valid(tg_pbbuf b)
{
    const uint8_t *p = b.ptr, *end = b.ptr + b.len;

    while (p < end) {
        uint8_t c = *p;
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        uint32_t cp;

        if (n == 0 || (size_t)(end - p) < n)
            return false;
        cp = n == 1 ? c : (uint32_t)(c & (0x7f >> n));
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
            (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n;
    }
    return true;
}

const char *tg__refl_quote(const uint8_t *p, size_t len, char *buf, size_t cap)
{
    size_t n = len < TG__REFL_QUOTE_MAX ? len : TG__REFL_QUOTE_MAX, k = 0;

    if (cap == 0)
        return "";
    for (size_t i = 0; i < n && k + 4 < cap; i++)
        buf[k++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    if (n < len && k + 4 < cap) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

static const char *quote(tg_pbbuf b, char *buf, size_t cap)
{
    return tg__refl_quote(b.ptr, b.len, buf, cap);
}

/* A present string of the oneof: the field callback points it into the
 * request even when empty; absent ones stay NULL (wire.c). */
#define PRESENT(b) ((b).ptr != NULL)

/* Which of message_request's fields are set; NULL if well-formed. */
static const char *check_request(const ServerReflectionRequest *q)
{
    const tg_pbbuf strings[] = {q->host,
                                q->file_by_filename,
                                q->file_containing_symbol,
                                q->file_containing_extension.containing_type,
                                q->all_extension_numbers_of_type,
                                q->list_services};
    int set =
        PRESENT(q->file_by_filename) + PRESENT(q->file_containing_symbol) +
        q->has_file_containing_extension +
        PRESENT(q->all_extension_numbers_of_type) + PRESENT(q->list_services);

    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if (!utf8_valid(strings[i]))
            return "a string of the request is not valid UTF-8";
    if (set == 0)
        return "the request asks nothing: set one of file_by_filename, "
               "file_containing_symbol, file_containing_extension, "
               "all_extension_numbers_of_type, list_services";
    if (set > 1)
        return "the request sets more than one of file_by_filename, "
               "file_containing_symbol, file_containing_extension, "
               "all_extension_numbers_of_type, list_services: set one";
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

/* What one answer is made of, alive until it is encoded. */
typedef struct answer {
    ServerReflectionResponse m;
    char msg[QUOTE_MAX + 400];
    tg_pbbuf files[TGR_MAX_FILES];
} answer;

static void fail(answer *a, int code, const char *fmt, const char *arg)
{
    snprintf(a->msg, sizeof(a->msg), fmt, arg);
    a->m.has_error_response = true;
    a->m.error_response.error_code = code;
    a->m.error_response.error_message = tg_pbbuf_str(a->msg);
}

/* File `f` and its imports. */
static void give_file(const tg__refl *r, answer *a, size_t f)
{
    size_t idx[TGR_MAX_FILES];
    size_t n = tgr_index_closure(&r->x, f, idx);

    for (size_t i = 0; i < n; i++)
        a->files[i] =
            tg_pbbuf_mem(r->x.files[idx[i]].bytes, r->x.files[idx[i]].len);
    a->m.has_file_descriptor_response = true;
    a->m.file_descriptor_response.file_descriptor_proto.items = a->files;
    a->m.file_descriptor_response.file_descriptor_proto.n = n;
}

/* A fully-qualified name may come with protobuf's leading dot. */
static tg_pbbuf symbol_name(tg_pbbuf b)
{
    if (b.len > 0 && b.ptr[0] == '.') {
        b.ptr++;
        b.len--;
    }
    return b;
}

static void by_filename(const tg__refl *r, answer *a, tg_pbbuf name)
{
    char q[QUOTE_MAX + 8];
    int f = tgr_index_file(&r->x, name.ptr, name.len);

    if (f < 0)
        fail(a, CODE_NOT_FOUND,
             "no file '%s' here (this server describes "
             "taskgrid/v1/taskgrid.proto, grpc/health/v1/health.proto, "
             "grpc/reflection/v1/reflection.proto and "
             "grpc/reflection/v1alpha/reflection.proto)",
             quote(name, q, sizeof(q)));
    else
        give_file(r, a, (size_t)f);
}

static void by_symbol(const tg__refl *r, answer *a, tg_pbbuf name)
{
    char q[QUOTE_MAX + 8];
    const tgr_sym *s;

    name = symbol_name(name);
    if (name.len == 0) {
        fail(a, CODE_INVALID_ARGUMENT, "%s",
             "file_containing_symbol is empty: give a fully-qualified "
             "name, e.g. taskgrid.v1.Scheduler");
        return;
    }
    s = tgr_index_find(&r->x, name.ptr, name.len);
    if (s == NULL)
        fail(a, CODE_NOT_FOUND,
             "no symbol '%s' here (give a fully-qualified service, method, "
             "message, field or enum name, e.g. taskgrid.v1.SubmitRequest)",
             quote(name, q, sizeof(q)));
    else
        give_file(r, a, s->file);
}

static void extension_numbers(const tg__refl *r, answer *a, tg_pbbuf type)
{
    char q[QUOTE_MAX + 8];
    const tgr_sym *s;

    type = symbol_name(type);
    s = tgr_index_find(&r->x, type.ptr, type.len);
    if (s == NULL || s->kind != TGR_MESSAGE) {
        fail(a, CODE_NOT_FOUND, "no message type '%s' here",
             quote(type, q, sizeof(q)));
        return;
    }
    a->m.has_all_extension_numbers_response = true;
    a->m.all_extension_numbers_response.base_type_name = type;
}

static void dispatch(const tg__refl *r, answer *a,
                     const ServerReflectionRequest *q)
{
    char buf[QUOTE_MAX + 8];

    if (PRESENT(q->list_services)) {
        a->m.has_list_services_response = true;
        a->m.list_services_response.service.items = r->service_ranges;
        a->m.list_services_response.service.n = r->nservices;
    } else if (PRESENT(q->file_by_filename)) {
        by_filename(r, a, q->file_by_filename);
    } else if (PRESENT(q->file_containing_symbol)) {
        by_symbol(r, a, q->file_containing_symbol);
    } else if (PRESENT(q->all_extension_numbers_of_type)) {
        extension_numbers(r, a, q->all_extension_numbers_of_type);
    } else {
        fail(a, CODE_NOT_FOUND,
             "no extension of '%s' here: this server's protocol defines no "
             "extensions",
             quote(q->file_containing_extension.containing_type, buf,
                   sizeof(buf)));
    }
}

int tg__refl_answer(const tg__refl *r, const uint8_t *req, size_t len,
                    uint8_t **out, size_t *outlen)
{
    ServerReflectionRequest q;
    answer *a = calloc(1, sizeof(*a));
    const char *bad;
    char size[96];
    int rc;

    *out = NULL;
    *outlen = 0;
    if (a == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    memset(&q, 0, sizeof(q));
    if (len > TG__REFL_MAX_REQUEST) {
        snprintf(size, sizeof(size), "%zu bytes is over the limit of %u", len,
                 TG__REFL_MAX_REQUEST);
        fail(a, CODE_RESOURCE_EXHAUSTED, "a reflection request of %s bytes",
             size);
    } else if (tg__wire_decode(ServerReflectionRequest_fields, &q, req, len) !=
               TG_OK) {
        fail(a, CODE_INVALID_ARGUMENT, "malformed reflection request: %s",
             tg_error_last());
    } else if ((bad = check_request(&q)) != NULL) {
        fail(a, CODE_INVALID_ARGUMENT, "%s", bad);
    } else {
        a->m.has_original_request = true;
        a->m.original_request = q;
        dispatch(r, a, &q);
    }
    rc = tg__wire_encode(ServerReflectionResponse_fields, &a->m, out, outlen);
    tg__wire_release(ServerReflectionRequest_fields, &q);
    free(a);
    return rc;
}
