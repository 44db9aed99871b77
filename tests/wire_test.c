/* SPDX-License-Identifier: Apache-2.0
 *
 * wire_test.c: the codec (proto/wire.c) against hostile bytes. Every field
 * of every message type, at every nesting depth, sent with each wire type
 * its declaration does not allow, must be refused (a string/bytes field
 * sent as VARINT, FIXED32 or FIXED64 used to decode into a pointer to
 * nanopb's stack); hand-made cases name the ones that matter per entry
 * point; the fuzzers' seed corpus and the crashes they found
 * (tests/fuzz/regressions/) replay here. No network.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pb_common.h>

#include "fuzz/wire_check.h"
#include "taskgrid/status.h"
#include "taskgrid/taskgrid.h"
#include "wire.h"

enum { WT_VARINT = 0, WT_64 = 1, WT_LEN = 2, WT_32 = 5 };

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    return n;
}

/* Field `tag` with wire type `wt`: for WT_LEN around `in`, else a value
 * of the wire type's size (nothing for group and invalid types). */
static size_t put_field(uint8_t *out, uint32_t tag, int wt, const uint8_t *in,
                        size_t inlen)
{
    size_t n = put_varint(out, ((uint64_t)tag << 3) | (unsigned)wt);

    switch (wt) {
    case WT_VARINT:
        out[n++] = 0x01;
        break;
    case WT_64:
        memset(out + n, 'A', 8);
        n += 8;
        break;
    case WT_32:
        memset(out + n, 'A', 4);
        n += 4;
        break;
    case WT_LEN:
        n += put_varint(out + n, inlen);
        memcpy(out + n, in, inlen);
        n += inlen;
        break;
    default:
        break;
    }
    return n;
}

/* Wire types the declaration of a field admits. */
static bool wt_ok(pb_type_t type, int wt)
{
    bool rep = PB_HTYPE(type) == PB_HTYPE_REPEATED;

    if (PB_ATYPE(type) == PB_ATYPE_CALLBACK)
        return wt == WT_LEN; /* our callbacks: string and bytes only */
    switch (PB_LTYPE(type)) {
    case PB_LTYPE_BOOL:
    case PB_LTYPE_VARINT:
    case PB_LTYPE_UVARINT:
    case PB_LTYPE_SVARINT:
        return wt == WT_VARINT || (rep && wt == WT_LEN);
    case PB_LTYPE_FIXED32:
        return wt == WT_32 || (rep && wt == WT_LEN);
    case PB_LTYPE_FIXED64:
        return wt == WT_64 || (rep && wt == WT_LEN);
    default:
        return wt == WT_LEN;
    }
}

/* The message being built: the tags of the submessage fields around the
 * malformed one, outermost first. */
typedef struct gen {
    const tgt_wire_type *top;
    uint32_t path[8];
    int depth;
    size_t tried, accepted;
    char first[256]; /* the first accepted one, for the failure */
} gen;

static void try_one(gen *g, uint32_t tag, int wt)
{
    uint8_t a[512], b[512];
    size_t n = put_field(a, tag, wt, (const uint8_t *)"A", 1);
    tgt_wire_verdict v;

    for (int k = g->depth - 1; k >= 0; k--) {
        size_t m = put_field(b, g->path[k], WT_LEN, a, n);
        memcpy(a, b, m);
        n = m;
    }
    v = tgt_wire_check(g->top, a, n);
    g->tried++;
    if (v != TGT_WIRE_REFUSED) {
        if (g->accepted++ == 0) {
            int o = snprintf(g->first, sizeof(g->first), "%s", g->top->name);
            for (int k = 0; k < g->depth; k++)
                o += snprintf(g->first + o, sizeof(g->first) - (size_t)o, ".%u",
                              (unsigned)g->path[k]);
            snprintf(g->first + o, sizeof(g->first) - (size_t)o,
                     ".%u as wire type %d (verdict %d)", (unsigned)tag, wt,
                     (int)v);
        }
    }
}

static void gen_fields(gen *g, const pb_msgdesc_t *d)
{
    pb_field_iter_t it;
    static const int wts[] = {0, 1, 2, 3, 4, 5, 6, 7};

    if (!pb_field_iter_begin_const(&it, d, NULL))
        return;
    do {
        for (size_t w = 0; w < sizeof(wts) / sizeof(wts[0]); w++)
            if (!wt_ok(it.type, wts[w]))
                try_one(g, it.tag, wts[w]);
        if (PB_LTYPE_IS_SUBMSG(it.type) && it.submsg_desc != NULL &&
            g->depth < 4) {
            g->path[g->depth++] = it.tag;
            gen_fields(g, it.submsg_desc);
            g->depth--;
        }
    } while (pb_field_iter_next(&it));
}

/* Every field, every depth, every wrong wire type: refused. */
static void test_wire_wire__wrong_wire_types_refused(void **state)
{
    size_t total = 0;

    (void)state;
    for (size_t i = 0; i < tgt_wire_ntypes; i++) {
        gen g = {&tgt_wire_types[i], {0}, 0, 0, 0, ""};

        gen_fields(&g, g.top->fields);
        if (g.accepted != 0)
            fail_msg("%zu of %zu malformed %s accepted, e.g. %s", g.accepted,
                     g.tried, g.top->name, g.first);
        total += g.tried;
    }
    assert_true(total > 500);
}

/* Hand-made: the zero-copy fields of each entry point. */
typedef struct named {
    const char *type, *what;
    const char *bytes;
    size_t len;
} named;

#define B(s) s, sizeof(s) - 1

static const named cases[] = {
    {"SubmitRequest", "tasks[0].key as VARINT", B("\x0a\x02\x08\x01")},
    {"SubmitRequest", "tasks[0].func as FIXED32",
     B("\x0a\x05\x15"
       "AAAA")},
    {"SubmitRequest", "tasks[0].input as FIXED64",
     B("\x0a\x09\x19"
       "AAAAAAAA")},
    {"SubmitRequest", "tasks[0].codec as VARINT (10 bytes)",
     B("\x0a\x0b\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")},
    {"SubmitRequest", "client_id as VARINT", B("\x10\x05")},
    {"SubmitRequest", "tasks[0].resources[0].name as FIXED64",
     B("\x0a\x0b\x3a\x09\x09"
       "AAAAAAAA")},
    {"WorkerMessage", "results[0].data as FIXED64",
     B("\x12\x09\x19"
       "AAAAAAAA")},
    {"WorkerMessage", "results[0].key as VARINT", B("\x12\x02\x08\x01")},
    {"WorkerMessage", "results[0].error.message as FIXED32",
     B("\x12\x07\x2a\x05\x15"
       "AAAA")},
    {"WorkerMessage", "registration.name as VARINT", B("\x0a\x02\x08\x01")},
    {"WorkerMessage", "registration.host as FIXED64",
     B("\x0a\x09\x39"
       "AAAAAAAA")},
    {"SchedulerMessage", "assign[0].input as FIXED64",
     B("\x0a\x09\x19"
       "AAAAAAAA")},
    {"SchedulerMessage", "assign[0].deps[0].data as FIXED32",
     B("\x0a\x07\x2a\x05\x1d"
       "AAAA")},
    {"SchedulerMessage", "worker_name as VARINT", B("\x20\x01")},
    {"HealthCheckRequest", "service as VARINT", B("\x08\x01")},
    {"GatherRequest", "keys[0] as VARINT", B("\x08\x01")},
    {"CancelRequest", "keys[0] as FIXED32",
     B("\x0d"
       "AAAA")},
    {"ReleaseRequest", "keys[0] as FIXED64",
     B("\x09"
       "AAAAAAAA")},
    {"StatusResponse", "version as VARINT", B("\x48\x01")},
};

static void test_wire_wire__named_cases_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const tgt_wire_type *t = tgt_wire_type_find(cases[i].type);
        uint8_t *copy = malloc(cases[i].len);
        void *msg = calloc(1, t->size);
        int rc;

        assert_non_null(copy);
        assert_non_null(msg);
        memcpy(copy, cases[i].bytes, cases[i].len);
        rc = tg__wire_decode(t->fields, msg, copy, cases[i].len);
        if (rc != TG_EPROTO)
            fail_msg("%s %s: decoded (%d)", cases[i].type, cases[i].what, rc);
        assert_non_null(strstr(tg_error_last(), "wire type"));
        free(msg);
        free(copy);
    }
}

/* The right wire types still decode, zero copy, into the input. */
static void test_wire_wire__well_formed_still_decodes(void **state)
{
    /* SubmitRequest{tasks: [TaskSpec{key: "k", func: "f", input: "i",
     * deps: ["d"], priority: 2}], client_id: "cl"} */
    static const uint8_t buf[] = {0x0a, 0x0e, 0x0a, 0x01, 'k',  0x12, 0x01,
                                  'f',  0x1a, 0x01, 'i',  0x2a, 0x01, 'd',
                                  0x30, 0x02, 0x12, 0x02, 'c',  'l'};
    taskgrid_v1_SubmitRequest m;

    (void)state;
    assert_int_equal(
        tg__wire_decode(taskgrid_v1_SubmitRequest_fields, &m, buf, sizeof(buf)),
        TG_OK);
    assert_int_equal(m.tasks_count, 1);
    assert_true(tg_pbbuf_eq(m.tasks[0].key, "k"));
    assert_true(tg_pbbuf_eq(m.tasks[0].input, "i"));
    assert_true(m.tasks[0].key.ptr == buf + 4);
    assert_int_equal(m.tasks[0].deps_count, 1);
    assert_string_equal(m.tasks[0].deps[0], "d");
    assert_int_equal(m.tasks[0].priority, 2);
    assert_true(tg_pbbuf_eq(m.client_id, "cl"));
    tg__wire_release(taskgrid_v1_SubmitRequest_fields, &m);
    assert_int_equal(
        tgt_wire_check(tgt_wire_type_find("SubmitRequest"), buf, sizeof(buf)),
        TGT_WIRE_OK);
}

/* Replay every file under DIR/<Type>/; returns how many. */
static size_t replay(const char *dir)
{
    size_t count = 0;

    for (size_t i = 0; i < tgt_wire_ntypes; i++) {
        char path[1024];
        DIR *d;
        struct dirent *e;

        snprintf(path, sizeof(path), "%s/%s", dir, tgt_wire_types[i].name);
        if ((d = opendir(path)) == NULL)
            continue;
        while ((e = readdir(d)) != NULL) {
            char file[2048];
            FILE *f;
            uint8_t *buf = malloc(1 << 20);
            size_t n;
            tgt_wire_verdict v;

            assert_non_null(buf);
            if (e->d_name[0] == '.') {
                free(buf);
                continue;
            }
            snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
            assert_non_null(f = fopen(file, "rb"));
            n = fread(buf, 1, 1 << 20, f);
            fclose(f);
            v = tgt_wire_check(&tgt_wire_types[i], buf, n);
            if (v != TGT_WIRE_OK && v != TGT_WIRE_REFUSED)
                fail_msg("%s: verdict %d", file, (int)v);
            free(buf);
            count++;
        }
        closedir(d);
    }
    return count;
}

static const char *data_dir(const char *name, char *buf, size_t len)
{
    const char *base = getenv("TG_WIRE_DATA_DIR"); /* outside Bazel */

    snprintf(buf, len, "%s/%s", base ? base : "tests/fuzz", name);
    return buf;
}

/* The fuzzers' crash inputs (found before the fix) and seed corpus. */
static void test_wire_wire__fuzz_regressions_replay(void **state)
{
    char dir[1024];

    (void)state;
    assert_true(replay(data_dir("regressions", dir, sizeof(dir))) > 0);
    assert_true(replay(data_dir("corpus", dir, sizeof(dir))) >=
                tgt_wire_ntypes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_wire__wrong_wire_types_refused),
        cmocka_unit_test(test_wire_wire__named_cases_refused),
        cmocka_unit_test(test_wire_wire__well_formed_still_decodes),
        cmocka_unit_test(test_wire_wire__fuzz_regressions_replay),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
