/* SPDX-License-Identifier: Apache-2.0
 *
 * reflection_test.c: server reflection and health per service answered on
 * raw bytes (cmocka, no network): list_services, file_by_filename and
 * file_containing_symbol for every kind of symbol, the extension
 * requests, and hostile requests (malformed, truncated, wrong wire types,
 * oversized, not UTF-8, several or no questions, mutated at random) each
 * answered by an error_response, never a crash. Also the descriptor index
 * on broken descriptor sets. Beside the code, as it reads the private
 * index.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/reflection/v1/reflection.pb.h"
#include "reflection/descriptors.h"
#include "reflection/index.h"
#include "reflection/reflection.h"
#include "taskgrid/status.h"
#include "wire.h"

static const char *const sched_services[] = {
    "taskgrid.v1.Scheduler",
    "taskgrid.v1.WorkerLink",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
};
#define NSERVICES (sizeof(sched_services) / sizeof(sched_services[0]))

/* One request answered and decoded; the response bytes stay alive in
 * `raw` because the decoded message borrows them. */
typedef struct reply {
    uint8_t *raw;
    size_t len;
    ServerReflectionResponse m;
} reply;

static void ask(const tg__refl *r, const void *req, size_t len, reply *out)
{
    memset(out, 0, sizeof(*out));
    assert_int_equal(tg__refl_answer(r, req, len, &out->raw, &out->len), TG_OK);
    assert_int_equal(tg__wire_decode(ServerReflectionResponse_fields, &out->m,
                                     out->raw, out->len),
                     TG_OK);
    /* Exactly one answer, whatever the question. */
    assert_int_equal(out->m.has_file_descriptor_response +
                         out->m.has_all_extension_numbers_response +
                         out->m.has_list_services_response +
                         out->m.has_error_response,
                     1);
}

static void reply_free(reply *p)
{
    tg__wire_release(ServerReflectionResponse_fields, &p->m);
    free(p->raw);
}

/* A request of one string field `tag` (3, 4, 6 or 7). */
static size_t string_request(uint8_t *buf, size_t cap, int tag, const char *s)
{
    size_t n = strlen(s);

    assert_true(n < 128 && n + 2 <= cap);
    buf[0] = (uint8_t)(tag << 3 | 2);
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, s, n);
    return n + 2;
}

static void ask_string(const tg__refl *r, int tag, const char *s, reply *out)
{
    uint8_t buf[160];

    ask(r, buf, string_request(buf, sizeof(buf), tag, s), out);
}

static bool eq(tg_pbbuf b, const char *s)
{
    return tg_pbbuf_eq(b, s);
}

/* Field 1 (name) of a serialized FileDescriptorProto. */
static bool file_is(tg_pbbuf fd, const char *name)
{
    size_t n = strlen(name);

    /* protoc writes `name` first: tag 0x0a, a one-byte length here. */
    return fd.len > n + 2 && fd.ptr[0] == 0x0a && fd.ptr[1] == n &&
           memcmp(fd.ptr + 2, name, n) == 0;
}

static void expect_error(const reply *p, int code, const char *part)
{
    char msg[1024];
    size_t n;

    assert_true(p->m.has_error_response);
    assert_int_equal(p->m.error_response.error_code, code);
    n = p->m.error_response.error_message.len;
    assert_true(n > 0 && n < sizeof(msg));
    memcpy(msg, p->m.error_response.error_message.ptr, n);
    msg[n] = '\0';
    if (strstr(msg, part) == NULL)
        fail_msg("error message '%s' does not contain '%s'", msg, part);
    /* Printable ASCII, so always a valid proto3 string. */
    for (size_t i = 0; i < n; i++)
        assert_true(msg[i] >= 0x20 && msg[i] < 0x7f);
}

static int setup(void **state)
{
    tg__refl *r;

    assert_int_equal(tg__refl_new(&r, sched_services, NSERVICES), TG_OK);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    tg__refl_free(*state);
    return 0;
}

static void test_reflection_reflection__list_services(void **state)
{
    reply p;

    ask_string(*state, 7, "", &p);
    assert_true(p.m.has_list_services_response);
    assert_int_equal(p.m.list_services_response.service.n, NSERVICES);
    for (size_t i = 0; i < NSERVICES; i++) {
        ServiceResponse s;
        assert_int_equal(
            tg__wire_decode(ServiceResponse_fields, &s,
                            p.m.list_services_response.service.got[i].ptr,
                            p.m.list_services_response.service.got[i].len),
            TG_OK);
        assert_true(eq(s.name, sched_services[i]));
    }
    /* The request comes back (list_services' content is not checked). */
    reply_free(&p);
    ask_string(*state, 7, "*", &p);
    assert_true(p.m.has_original_request);
    assert_true(eq(p.m.original_request.list_services, "*"));
    assert_int_equal(p.m.list_services_response.service.n, NSERVICES);
    reply_free(&p);
}

static void expect_file(const tg__refl *r, const char *symbol, const char *file)
{
    reply p;

    ask_string(r, 4, symbol, &p);
    if (!p.m.has_file_descriptor_response)
        fail_msg("no file for '%s'", symbol);
    /* None of the built-in files imports another. */
    assert_int_equal(p.m.file_descriptor_response.file_descriptor_proto.n, 1);
    if (!file_is(p.m.file_descriptor_response.file_descriptor_proto.got[0],
                 file))
        fail_msg("'%s' is not in %s", symbol, file);
    reply_free(&p);
}

static void test_reflection_reflection__file_containing_symbol(void **state)
{
    static const char tg[] = "taskgrid/v1/taskgrid.proto";
    static const char health[] = "grpc/health/v1/health.proto";

    expect_file(*state, "taskgrid.v1.Scheduler", tg);           /* service */
    expect_file(*state, "taskgrid.v1.Scheduler.Submit", tg);    /* method */
    expect_file(*state, "taskgrid.v1.SubmitRequest", tg);       /* message */
    expect_file(*state, "taskgrid.v1.SubmitRequest.tasks", tg); /* field */
    expect_file(*state, "taskgrid.v1.TaskState", tg);           /* enum */
    expect_file(*state, "taskgrid.v1.TASK_STATE_MEMORY", tg);   /* value */
    expect_file(*state, ".taskgrid.v1.DataService.Fetch", tg);  /* dot */
    expect_file(*state, "grpc.health.v1.Health.Check", health);
    /* A nested enum, and its value as its sibling. */
    expect_file(*state, "grpc.health.v1.HealthCheckResponse.ServingStatus",
                health);
    expect_file(*state, "grpc.health.v1.HealthCheckResponse.SERVING", health);
    expect_file(*state, "grpc.reflection.v1.ServerReflection",
                "grpc/reflection/v1/reflection.proto");
    expect_file(*state,
                "grpc.reflection.v1alpha.ServerReflectionRequest."
                "message_request", /* a oneof */
                "grpc/reflection/v1alpha/reflection.proto");
}

static void test_reflection_reflection__file_by_filename(void **state)
{
    reply p;

    ask_string(*state, 3, "grpc/health/v1/health.proto", &p);
    assert_true(p.m.has_file_descriptor_response);
    assert_true(
        file_is(p.m.file_descriptor_response.file_descriptor_proto.got[0],
                "grpc/health/v1/health.proto"));
    reply_free(&p);

    ask_string(*state, 3, "taskgrid/v2/taskgrid.proto", &p);
    expect_error(&p, 5, "no file 'taskgrid/v2/taskgrid.proto'");
    reply_free(&p);
}

static void test_reflection_reflection__not_found_keeps_request(void **state)
{
    reply p;

    ask_string(*state, 4, "taskgrid.v1.NoSuchThing", &p);
    expect_error(&p, 5, "no symbol 'taskgrid.v1.NoSuchThing'");
    assert_true(p.m.has_original_request);
    assert_true(eq(p.m.original_request.file_containing_symbol,
                   "taskgrid.v1.NoSuchThing"));
    reply_free(&p);
    /* A prefix of a name, or a package, is not a symbol. */
    ask_string(*state, 4, "taskgrid.v1.Sched", &p);
    expect_error(&p, 5, "no symbol");
    reply_free(&p);
    ask_string(*state, 4, "taskgrid.v1", &p);
    expect_error(&p, 5, "no symbol");
    reply_free(&p);
    ask_string(*state, 4, "", &p);
    expect_error(&p, 3, "file_containing_symbol is empty");
    reply_free(&p);
}

static void test_reflection_reflection__extensions(void **state)
{
    /* file_containing_extension {containing_type: "taskgrid.v1.TaskSpec",
     * extension_number: 100} */
    static const uint8_t ext[] = "\x2a\x18\x0a\x14taskgrid.v1.TaskSpec\x10\x64";
    reply p;

    ask(*state, ext, sizeof(ext) - 1, &p);
    expect_error(&p, 5, "no extension of 'taskgrid.v1.TaskSpec'");
    reply_free(&p);

    ask_string(*state, 6, "taskgrid.v1.TaskSpec", &p);
    assert_true(p.m.has_all_extension_numbers_response);
    assert_true(eq(p.m.all_extension_numbers_response.base_type_name,
                   "taskgrid.v1.TaskSpec"));
    assert_int_equal(p.m.all_extension_numbers_response.extension_number_count,
                     0);
    reply_free(&p);

    ask_string(*state, 6, "taskgrid.v1.Scheduler", &p); /* not a message */
    expect_error(&p, 5, "no message type 'taskgrid.v1.Scheduler'");
    reply_free(&p);
}

static void test_reflection_reflection__malformed(void **state)
{
    static const struct {
        const char *what, *bytes;
        size_t len;
        int code;
        const char *part;
    } cases[] = {
        {"nothing asked", "", 0, 3, "asks nothing"},
        {"host only", "\x0a\x01h", 3, 3, "asks nothing"},
        {"two questions", "\x3a\x00\x22\x01x", 5, 3, "more than one"},
        {"truncated length",
         "\x22\x05"
         "ab",
         4, 3, "malformed"},
        {"truncated varint", "\x22\xff", 2, 3, "malformed"},
        {"symbol as varint", "\x20\x01", 2, 3, "malformed"},
        {"a group", "\x23\x24", 2, 3, "malformed"},
        {"field 0", "\x02\x00", 2, 3, "malformed"},
        {"not UTF-8", "\x22\x02\xc3\x28", 4, 3, "not valid UTF-8"},
        {"overlong UTF-8", "\x22\x02\xc0\xaf", 4, 3, "not valid UTF-8"},
        {"surrogate", "\x22\x03\xed\xa0\x80", 5, 3, "not valid UTF-8"},
        {"extension type not UTF-8", "\x2a\x03\x0a\x01\xff", 5, 3,
         "not valid UTF-8"},
    };
    reply p;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("%s\n", cases[i].what);
        ask(*state, cases[i].bytes, cases[i].len, &p);
        expect_error(&p, cases[i].code, cases[i].part);
        /* Only a well-formed request is echoed. */
        assert_false(p.m.has_original_request);
        reply_free(&p);
    }
    /* Unknown fields are skipped, as protobuf says. */
    ask(*state, "\x3a\x00\xf8\x01\x07\x92\x02\x01z", 9, &p);
    assert_true(p.m.has_list_services_response);
    reply_free(&p);
}

static void test_reflection_reflection__hostile_names(void **state)
{
    uint8_t buf[TG__REFL_MAX_REQUEST + 16];
    reply p;
    size_t n;

    /* Control characters and a long name: quoted cut and printable. */
    memset(buf, 0, sizeof(buf));
    buf[0] = 0x22;
    buf[1] = 0xe8; /* 1000 */
    buf[2] = 0x07;
    for (n = 0; n < 1000; n++)
        buf[3 + n] = n % 7 == 0 ? '\n' : 'a';
    ask(*state, buf, 1003, &p);
    expect_error(&p, 5, "no symbol '?aaaaaa?aaaaaa?");
    expect_error(&p, 5, "...'");
    reply_free(&p);

    /* Over the request limit: refused before it is decoded. */
    ask(*state, buf, TG__REFL_MAX_REQUEST + 1, &p);
    expect_error(&p, 8, "over the limit of 65536");
    reply_free(&p);
}

/* Random mutations of good requests: an answer each time, one response
 * member set (checked by ask), no crash or leak (run under ASan too). */
static void test_reflection_reflection__mutations(void **state)
{
    static const struct {
        const char *b;
        size_t len;
    } seeds[] = {
        {"\x3a\x00", 2},
        {"\x22\x15taskgrid.v1.Scheduler", 23},
        {"\x1a\x1bgrpc/health/v1/health.proto", 29},
        {"\x2a\x18\x0a\x14taskgrid.v1.TaskSpec\x10\x64", 26},
        {"\x32\x14taskgrid.v1.TaskSpec\x0a\x04host", 28},
    };
    uint64_t x = 0x9e3779b97f4a7c15u;
    uint8_t buf[128];

    for (int i = 0; i < 20000; i++) {
        size_t len = seeds[i % 5].len;
        reply p;

        memcpy(buf, seeds[i % 5].b, len);
        for (int k = 0; k < 1 + i % 4; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[x % len] = (uint8_t)(x >> 32);
        }
        if (i % 3 == 0) /* truncated too */
            len = (size_t)(x % (len + 1));
        ask(*state, buf, len, &p);
        reply_free(&p);
    }
}

static void test_reflection_reflection__health_per_service(void **state)
{
    const tg__refl *r = *state;

    assert_true(tg__refl_serves(r, (const uint8_t *)"", 0));
    assert_true(
        tg__refl_serves(r, (const uint8_t *)"taskgrid.v1.Scheduler", 21));
    assert_true(
        tg__refl_serves(r, (const uint8_t *)"taskgrid.v1.WorkerLink", 22));
    assert_false(
        tg__refl_serves(r, (const uint8_t *)"taskgrid.v1.DataService", 23));
    assert_false(
        tg__refl_serves(r, (const uint8_t *)"taskgrid.v1.Scheduler2", 22));
    assert_false(tg__refl_serves(r, (const uint8_t *)"taskgrid.v1.Sched", 17));
}

static void test_reflection_reflection__new_checks_services(void **state)
{
    const char *bad[] = {"taskgrid.v1.DataService", "taskgrid.v1.Nope"};
    const char *not_service[] = {"taskgrid.v1.SubmitRequest"};
    tg__refl *r = (tg__refl *)1;

    (void)state;
    assert_int_equal(tg__refl_new(&r, bad, 2), TG_EINVAL);
    assert_null(r);
    assert_non_null(strstr(tg_error_last(), "'taskgrid.v1.Nope'"));
    assert_int_equal(tg__refl_new(&r, not_service, 1), TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "is not a service"));
    tg__refl_free(NULL);
}

/* The index refuses a broken set instead of reading past it: every
 * truncation of the built-in set, and a few corrupted bytes. */
static void test_reflection_index__broken_sets(void **state)
{
    size_t n = tg__refl_descriptor_set_len;
    uint8_t *copy = malloc(n);
    tgr_index x;

    (void)state;
    assert_non_null(copy);
    assert_int_equal(tgr_index_build(&x, tg__refl_descriptor_set, n), TG_OK);
    assert_true(x.nfiles == 4 && x.nsyms > 100);
    tgr_index_free(&x);
    for (size_t cut = 1; cut < n; cut += 97) {
        int rc = tgr_index_build(&x, tg__refl_descriptor_set, cut);
        assert_true(rc == TG_OK || rc == TG_EINTERNAL);
        tgr_index_free(&x);
    }
    for (size_t at = 0; at < n; at += 131) {
        memcpy(copy, tg__refl_descriptor_set, n);
        copy[at] ^= 0xa5;
        int rc = tgr_index_build(&x, copy, n);
        assert_true(rc == TG_OK || rc == TG_EINTERNAL);
        tgr_index_free(&x);
    }
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reflection_reflection__list_services),
        cmocka_unit_test(test_reflection_reflection__file_containing_symbol),
        cmocka_unit_test(test_reflection_reflection__file_by_filename),
        cmocka_unit_test(test_reflection_reflection__not_found_keeps_request),
        cmocka_unit_test(test_reflection_reflection__extensions),
        cmocka_unit_test(test_reflection_reflection__malformed),
        cmocka_unit_test(test_reflection_reflection__hostile_names),
        cmocka_unit_test(test_reflection_reflection__mutations),
        cmocka_unit_test(test_reflection_reflection__health_per_service),
        cmocka_unit_test(test_reflection_reflection__new_checks_services),
        cmocka_unit_test(test_reflection_index__broken_sets),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
