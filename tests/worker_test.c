/* SPDX-License-Identifier: Apache-2.0
 *
 * worker_test.c: unit tests of taskgrid-worker without a scheduler: the
 * JSON reader/writer, the argument convention and every built-in (results
 * and type errors), the registry, plug-in loading (the example
 * libshout.so), the command line, the outbox's batching, and the
 * executor: priority order, cancel, steal, and secede/rejoin on a one-slot
 * pool.
 * Every wait is bounded (condition variables with deadlines), so a broken
 * executor fails a test instead of hanging it. Depends on //worker:worker_lib
 * and cmocka.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/clock.h"
#include "util/error.h"
#include "worker/builtins.h"
#include "worker/config.h"
#include "worker/executor.h"
#include "worker/json.h"
#include "worker/loader.h"
#include "worker/outbox.h"
#include "worker/registry.h"
#include "worker/task.h"

#define WAIT_MS 5000 /* bound of every wait in these tests */

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static tgw_bytes b_str(const char *s)
{
    tgw_bytes b = {(const uint8_t *)s, s ? strlen(s) : 0};

    return b;
}

/* A task from strings; every dependency result has codec "json". */
static tg_task_ctx *mk(const tg_registry *reg, const char *key,
                       const char *func, const char *input, const char *codec,
                       const char *const *deps, size_t ndeps)
{
    tgw_dep_spec ds[128];
    tgw_task_spec s;
    tg_task_ctx *t = NULL;

    assert_true(ndeps <= 128);
    for (size_t i = 0; i < ndeps; i++) {
        ds[i].data = b_str(deps[i]);
        ds[i].codec = b_str("json");
    }
    memset(&s, 0, sizeof(s));
    s.key = b_str(key);
    s.func = b_str(func);
    s.input = b_str(input);
    s.codec = b_str(codec);
    s.deps = ds;
    s.ndeps = ndeps;
    s.attempt = 1;
    assert_int_equal(tgw_task_new(&t, &s, reg), TG_OK);
    return t;
}

/* The result bytes as a string (for comparisons). */
static char *result_str(const tg_task_ctx *t)
{
    static char buf[4096];

    snprintf(buf, sizeof(buf), "%.*s", (int)t->data_len,
             t->data ? (const char *)t->data : "");
    return buf;
}

static tg_registry *builtins_reg(void)
{
    tg_registry *r = NULL;

    assert_int_equal(tgw_registry_new(&r), TG_OK);
    assert_int_equal(tgw_builtins_register(r), TG_OK);
    tgw_registry_freeze(r);
    return r;
}

/* Run a built-in synchronously; the caller frees the task. */
static tg_task_ctx *run(const char *func, const char *input, const char *codec,
                        const char *const *deps, size_t ndeps)
{
    tg_registry *r = builtins_reg();
    tg_task_ctx *t = mk(r, "k", func, input, codec, deps, ndeps);

    tgw_task_run(t);
    /* The outcome no longer needs the registry. */
    tgw_registry_free(r);
    t->fn = NULL;
    return t;
}

static void expect_result(const char *func, const char *input, const char *want,
                          const char *want_codec)
{
    tg_task_ctx *t = run(func, input, "json", NULL, 0);

    if (t->erred)
        fail_msg("%s(%s) erred: %s: %s", func, input, t->err_type,
                 t->err_message);
    assert_string_equal(result_str(t), want);
    assert_string_equal(tgw_task_result_codec(t), want_codec);
    tgw_task_free(t);
}

static void expect_error(const char *func, const char *input, const char *codec,
                         const char *type, const char *message_part)
{
    tg_task_ctx *t = run(func, input, codec, NULL, 0);

    if (!t->erred)
        fail_msg("%s(%s) succeeded with %s", func, input, result_str(t));
    assert_string_equal(t->err_type, type);
    if (strstr(t->err_message, message_part) == NULL)
        fail_msg("message '%s' lacks '%s'", t->err_message, message_part);
    tgw_task_free(t);
}

static char *json_roundtrip(const char *in)
{
    static char out[1024];
    json_t *v;
    tgw_buf b = {0};

    if (tgw_json_parse(&v, (const uint8_t *)in, strlen(in)) != TG_OK)
        fail_msg("parse '%s': %s", in, tg_error_last());
    assert_int_equal(tgw_json_write(&b, v), TG_OK);
    snprintf(out, sizeof(out), "%.*s", (int)b.len, (const char *)b.ptr);
    tgw_buf_free(&b);
    json_decref(v);
    return out;
}

/* Parse `in` (which must be valid) and return the value. */
static json_t *json_of(const char *in)
{
    json_t *v = NULL;

    if (tgw_json_parse(&v, (const uint8_t *)in, strlen(in)) != TG_OK)
        fail_msg("parse '%s': %s", in, tg_error_last());
    return v;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static void test_worker__json_numbers_keep_integers_exact(void **state)
{
    json_t *v;

    (void)state;
    v = json_of(" 42 ");
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);
    v = json_of("9223372036854775807");
    assert_true(json_is_integer(v));
    assert_true(json_integer_value(v) == INT64_MAX);
    json_decref(v);
    v = json_of("9223372036854775808");
    assert_true(json_is_real(v));
    json_decref(v);
    v = json_of("1e3");
    assert_true(json_is_real(v));
    assert_true(json_real_value(v) == 1000.0);
    json_decref(v);

    assert_string_equal(json_roundtrip("-17"), "-17");
    assert_string_equal(json_roundtrip("-0"), "0");
    assert_string_equal(json_roundtrip("2.5"), "2.5");
    assert_string_equal(json_roundtrip("3.0"), "3.0");
    assert_string_equal(json_roundtrip("0.1"), "0.1");
    assert_string_equal(json_roundtrip("1e300"), "1e+300");
    assert_string_equal(json_roundtrip("-9223372036854775808"),
                        "-9223372036854775808");
    /* Beyond int64 is a double; the integers around it stay exact. */
    assert_string_equal(json_roundtrip("[1, 9223372036854775808, 2]"),
                        "[1,9.223372036854776e+18,2]");
    assert_string_equal(json_roundtrip("-9223372036854775809"),
                        "-9.223372036854776e+18");
}

static void test_worker__json_roundtrips_structures(void **state)
{
    (void)state;
    assert_string_equal(json_roundtrip(" [ 1 , [2, []], null, true, false ] "),
                        "[1,[2,[]],null,true,false]");
    assert_string_equal(json_roundtrip("{\"a\": [1, {\"b\": null}], \"\": 2}"),
                        "{\"a\":[1,{\"b\":null}],\"\":2}");
    assert_string_equal(json_roundtrip("\"tab\\tq\\\"b\\\\s\\/\""),
                        "\"tab\\tq\\\"b\\\\s/\"");
    /* \u escapes decode to UTF-8, surrogate pairs included; control
     * characters are escaped again on output. */
    assert_string_equal(json_roundtrip("\"\\u00e9\\ud83d\\ude00\\u0001\""),
                        "\"\xc3\xa9\xf0\x9f\x98\x80\\u0001\"");
}

static void test_worker__json_rejects_malformed_input(void **state)
{
    static const char *bad[] = {
        "",          "   ",         "01",
        "1.",        ".5",          "+1",
        "1e",        "-",           "[1,]",
        "[1 2]",     "{\"a\":1,}",  "{a:1}",
        "'x'",       "NaN",         "Infinity",
        "[1] x",     "\"\\x\"",     "\"\x01\"",
        "\"open",    "\"\\ud800\"", "\"\\udc00\"",
        "tru",       "nul",         "[",
        "{\"a\" 1}",
    };
    static const char big[] = "[1, 10000000000000000000, x]";
    char deep[400];
    json_t *v;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg__error_clear();
        if (tgw_json_parse(&v, (const uint8_t *)bad[i], strlen(bad[i])) ==
            TG_OK) {
            json_decref(v);
            fail_msg("accepted malformed JSON '%s'", bad[i]);
        }
        assert_true(strlen(tg_error_last()) > 0);
    }
    /* Nesting beyond the limit fails instead of exhausting the stack. */
    memset(deep, '[', 300);
    deep[300] = '\0';
    assert_int_equal(tgw_json_parse(&v, (const uint8_t *)deep, 300), TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "deep"));
    /* The error names where it went wrong. */
    assert_int_equal(tgw_json_parse(&v, (const uint8_t *)"[1, x]", 6),
                     TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "offset 4"));
    /* ... also after an integer beyond int64. */
    assert_int_equal(tgw_json_parse(&v, (const uint8_t *)big, strlen(big)),
                     TG_EINVAL);
    assert_non_null(strstr(tg_error_last(), "offset 26"));
}

static void test_worker__json_writes_shortest_doubles(void **state)
{
    json_t *v = json_real(0.1 + 0.2);
    tgw_buf b = {0};

    (void)state;
    tgw_json_write(&b, v);
    json_decref(v);
    tgw_buf_append(&b, " ", 1);
    tgw_json_write_double(&b, 1.0 / 0.0); /* not representable in JSON */
    tgw_buf_append(&b, "", 1);
    assert_string_equal((char *)b.ptr, "0.30000000000000004 null");
    tgw_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* Arguments and built-ins                                             */
/* ------------------------------------------------------------------ */

static void test_worker__args_input_array_then_deps(void **state)
{
    const char *deps[] = {"10", "[20, 30]"};
    tg_task_ctx *t;
    tgw_args a;

    (void)state;
    /* An array input spreads into positional arguments; each dependency
     * result is one more argument, even when it is an array. */
    t = mk(NULL, "k", "tg.x", "[1, \"two\"]", "json", deps, 2);
    assert_int_equal(tgw_args_parse(t, "tg.x", &a), 0);
    assert_int_equal(a.n, 4);
    assert_int_equal(json_integer_value(a.v[0]), 1);
    assert_string_equal(json_string_value(a.v[1]), "two");
    assert_int_equal(json_integer_value(a.v[2]), 10);
    assert_true(json_is_array(a.v[3]));
    tgw_args_free(&a);
    tgw_task_free(t);

    /* A non-array input is one argument; an empty input is none. */
    t = mk(NULL, "k", "tg.x", "{\"a\":1}", "json", NULL, 0);
    assert_int_equal(tgw_args_parse(t, "tg.x", &a), 0);
    assert_int_equal(a.n, 1);
    assert_true(json_is_object(a.v[0]));
    tgw_args_free(&a);
    tgw_task_free(t);
    t = mk(NULL, "k", "tg.x", "", "", deps, 1);
    assert_int_equal(tgw_args_parse(t, "tg.x", &a), 0);
    assert_int_equal(a.n, 1);
    tgw_args_free(&a);
    tgw_task_free(t);
}

static void test_worker__noop_and_echo(void **state)
{
    tg_task_ctx *t;

    (void)state;
    t = run("tg.noop", "[1]", "json", NULL, 0);
    assert_false(t->erred);
    assert_int_equal(t->data_len, 0);
    assert_string_equal(tgw_task_result_codec(t), "raw");
    tgw_task_free(t);

    /* echo: the input bytes unchanged, with their codec. */
    t = run("tg.echo", "\x01\x02 not json", "pickle", NULL, 0);
    assert_false(t->erred);
    assert_int_equal(t->data_len, 11);
    assert_memory_equal(t->data, "\x01\x02 not json", 11);
    assert_string_equal(tgw_task_result_codec(t), "pickle");
    tgw_task_free(t);
    t = run("tg.echo", "abc", "", NULL, 0);
    assert_string_equal(tgw_task_result_codec(t), "raw");
    tgw_task_free(t);
}

static void test_worker__arithmetic(void **state)
{
    (void)state;
    expect_result("tg.inc", "41", "42", "json");
    expect_result("tg.inc", "[41]", "42", "json");
    expect_result("tg.inc", "1.5", "2.5", "json");
    expect_result("tg.dec", "0", "-1", "json");
    /* int64 overflow continues as a double rather than wrapping. */
    expect_result("tg.inc", "9223372036854775807", "9.223372036854776e+18",
                  "json");
    expect_result("tg.add", "[1, 2]", "3", "json");
    expect_result("tg.add", "[1, 2, 3.5]", "6.5", "json");
    expect_result("tg.add", "[0.5, 0.5]", "1.0", "json");
    expect_result("tg.sum", "[1, 2, 3]", "6", "json");
    expect_result("tg.sum", "[[1, 2, 3]]", "6", "json");
    expect_result("tg.sum", "[[1, 2], 3, []]", "6", "json");
    expect_result("tg.sum", "", "0", "json");
}

static void test_worker__sum_and_add_take_dependency_results(void **state)
{
    char texts[100][16];
    const char *deps[100];
    tg_task_ctx *t;

    (void)state;
    for (int i = 0; i < 100; i++) {
        snprintf(texts[i], sizeof(texts[i]), "%d", i + 1);
        deps[i] = texts[i];
    }
    t = run("tg.sum", "", "json", deps, 100);
    assert_false(t->erred);
    assert_string_equal(result_str(t), "5050");
    tgw_task_free(t);

    t = run("tg.add", "", "json", deps, 2);
    assert_string_equal(result_str(t), "3");
    tgw_task_free(t);
    /* Input arguments come before dependency results. */
    t = run("tg.add", "[100]", "json", deps + 9, 1);
    assert_string_equal(result_str(t), "110");
    tgw_task_free(t);
}

static void test_worker__type_errors_are_clear(void **state)
{
    (void)state;
    expect_error("tg.inc", "[1, 2]", "json", "TypeError",
                 "tg.inc expects one number, got 2 arguments");
    expect_error("tg.inc", "", "json", "TypeError",
                 "tg.inc expects one number, got 0 arguments");
    expect_error("tg.dec", "\"a\"", "json", "TypeError",
                 "tg.dec expects one number, got string");
    expect_error("tg.add", "[1]", "json", "TypeError",
                 "tg.add expects at least two numbers, got 1 argument");
    expect_error("tg.add", "[1, null]", "json", "TypeError",
                 "got null as argument 2");
    expect_error("tg.sum", "[1, [2, \"x\"]]", "json", "TypeError",
                 "got string in argument 2");
    expect_error("tg.sleep", "-1", "json", "TypeError", "non-negative");
    expect_error("tg.print", "[1, 2]", "json", "TypeError",
                 "tg.print expects one argument, got 2");
    /* Arguments must be JSON, and valid JSON. */
    expect_error("tg.inc", "1", "raw", "TypeError", "codec 'raw'");
    expect_error("tg.inc", "[1", "json", "ValueError", "not valid JSON");
}

static void test_worker__fail_print_sleep(void **state)
{
    tg_task_ctx *t;
    int64_t t0;

    (void)state;
    expect_error("tg.fail", "\"boom\"", "json", "tg.Fail", "boom");
    expect_error("tg.fail", "[1, [2]]", "json", "tg.Fail", "1 [2]");
    expect_result("tg.print", "[[1, \"a\"]]", "[1,\"a\"]", "json");
    t0 = tg__now_ms();
    expect_result("tg.sleep", "[0.05]", "0.05", "json");
    assert_true(tg__now_ms() - t0 >= 50);

    /* A cancelled sleep returns within one slice, not after 60 s. */
    {
        tg_registry *r = builtins_reg();

        t = mk(r, "k", "tg.sleep", "60", "json", NULL, 0);
        atomic_store(&t->cancelled, true);
        t0 = tg__now_ms();
        tgw_task_run(t);
        assert_true(tg__now_ms() - t0 < 1000);
        assert_true(t->erred);
        tgw_task_free(t);
        tgw_registry_free(r);
    }
}

static void test_worker__unknown_function_and_attempt(void **state)
{
    tg_registry *r;
    tg_task_ctx *t;

    (void)state;
    t = run("tg.nope", "1", "json", NULL, 0);
    assert_true(t->erred);
    assert_string_equal(t->err_type, "tg.UnknownFunction");
    assert_non_null(strstr(t->err_message, "tg.nope"));
    tgw_task_free(t);

    r = builtins_reg();
    t = mk(r, "my-key", "tg.inc", "1", "json", NULL, 0);
    t->attempt = 3;
    assert_int_equal(tg_task_attempt(t), 3);
    assert_string_equal(tg_task_key(t), "my-key");
    assert_string_equal(tg_task_func(t), "tg.inc");
    assert_string_equal(tg_task_codec(t), "json");
    assert_null(tg_task_dep(t, 0, NULL));
    tgw_task_free(t);
    tgw_registry_free(r);
}

/* ------------------------------------------------------------------ */
/* Registry and plug-ins                                               */
/* ------------------------------------------------------------------ */

static int fn_const(tg_task_ctx *ctx, void *ud)
{
    return tg_task_set_result(ctx, ud, strlen(ud), "json");
}

static int fn_silent_fail(tg_task_ctx *ctx, void *ud)
{
    (void)ctx;
    (void)ud;
    return 7;
}

static void test_worker__registry_add_find_and_rules(void **state)
{
    tg_registry *r = NULL;
    tg_task_ctx *t;
    char name[32];

    (void)state;
    assert_int_equal(tgw_registry_new(&r), TG_OK);
    assert_int_equal(tg_registry_add(r, "my.const", fn_const, "\"c\""), TG_OK);
    assert_int_equal(tg_registry_add(r, "my.const", fn_const, NULL), TG_EEXIST);
    assert_int_equal(tg_registry_add(r, "noplace", fn_const, NULL), TG_EINVAL);
    assert_int_equal(tg_registry_add(r, ".x", fn_const, NULL), TG_EINVAL);
    assert_int_equal(tg_registry_add(r, "x.", fn_const, NULL), TG_EINVAL);
    assert_int_equal(tg_registry_add(r, "a b.c", fn_const, NULL), TG_EINVAL);
    assert_int_equal(tg_registry_add(r, "a.b", NULL, NULL), TG_EINVAL);
    assert_int_equal(tg_registry_add(r, "my.fails", fn_silent_fail, NULL),
                     TG_OK);
    /* Many names: lookups stay right across table growth. */
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "bulk.f%d", i);
        assert_int_equal(tg_registry_add(r, name, fn_const, NULL), TG_OK);
    }
    assert_int_equal(tgw_registry_count(r), 202);
    assert_string_equal(tgw_registry_at(r, 0)->name, "my.const");
    assert_non_null(tgw_registry_find(r, "bulk.f199"));
    assert_null(tgw_registry_find(r, "bulk.f200"));
    tgw_registry_freeze(r);
    assert_int_equal(tg_registry_add(r, "late.add", fn_const, NULL), TG_ESTATE);

    t = mk(r, "k", "my.const", "", "", NULL, 0);
    tgw_task_run(t);
    assert_string_equal(result_str(t), "\"c\"");
    tgw_task_free(t);
    /* Nonzero without an error message: a generic error naming the code. */
    t = mk(r, "k", "my.fails", "", "", NULL, 0);
    tgw_task_run(t);
    assert_true(t->erred);
    assert_string_equal(t->err_type, "tg.TaskError");
    assert_non_null(strstr(t->err_message, "returned 7"));
    tgw_task_free(t);
    tgw_registry_free(r);
}

static void shout_path(char *buf, size_t len)
{
    const char *srcdir = getenv("TEST_SRCDIR");
    const char *ws = getenv("TEST_WORKSPACE");

    if (srcdir != NULL)
        snprintf(buf, len, "%s/%s/worker/examples/libshout.so", srcdir,
                 ws ? ws : "taskgrid");
    else
        snprintf(buf, len, "bazel-bin/worker/examples/libshout.so");
}

static void test_worker__plugin_loads_example_shout(void **state)
{
    tg_registry *r = NULL;
    tgw_plugins *ps = NULL;
    tg_task_ctx *t;
    char path[4096];
    int64_t t0;

    (void)state;
    shout_path(path, sizeof(path));
    assert_int_equal(tgw_registry_new(&r), TG_OK);
    assert_int_equal(tgw_plugins_new(&ps), TG_OK);
    if (tgw_plugins_load(ps, r, path) != TG_OK)
        fail_msg("%s", tg_error_last());
    tgw_registry_freeze(r);
    assert_non_null(tgw_registry_find(r, "example.shout"));

    t = mk(r, "shout-3", "example.shout", "3", "json", NULL, 0);
    t0 = tg__now_ms();
    tgw_task_run(t); /* prints "#3" */
    assert_true(tg__now_ms() - t0 >= 450);
    assert_false(t->erred);
    assert_string_equal(result_str(t), "3");
    assert_string_equal(tgw_task_result_codec(t), "json");
    tgw_task_free(t);

    /* Loading it twice registers the same name twice: refused. */
    assert_int_not_equal(tgw_plugins_load(ps, r, path), TG_OK);
    tgw_plugins_free(ps);
    tgw_registry_free(r);

    /* A missing library fails with the loader's message and the path. */
    assert_int_equal(tgw_registry_new(&r), TG_OK);
    assert_int_equal(tgw_plugins_new(&ps), TG_OK);
    assert_int_equal(tgw_plugins_load(ps, r, "/nonexistent/libx.so"),
                     TG_ENOTFOUND);
    assert_non_null(strstr(tg_error_last(), "/nonexistent/libx.so"));
    tgw_plugins_free(ps);
    tgw_registry_free(r);
}

/* ------------------------------------------------------------------ */
/* Command line                                                        */
/* ------------------------------------------------------------------ */

static int parse(tgw_config *cfg, const char *a1, const char *a2,
                 const char *a3, const char *a4)
{
    char *argv[] = {"taskgrid-worker", (char *)a1, (char *)a2,
                    (char *)a3,        (char *)a4, NULL};
    int argc = 1;

    while (argc < 5 && argv[argc] != NULL)
        argc++;
    return tgw_config_parse(cfg, argc, argv);
}

static void expect_usage_error(const char *a1, const char *a2, const char *a3,
                               const char *part)
{
    tgw_config cfg;

    assert_int_equal(parse(&cfg, a1, a2, a3, NULL), TG_EINVAL);
    if (strstr(tg_error_last(), part) == NULL)
        fail_msg("error '%s' lacks '%s'", tg_error_last(), part);
    tgw_config_free(&cfg);
}

static void test_worker__command_line(void **state)
{
    tgw_config cfg;

    (void)state;
    assert_int_equal(parse(&cfg, "tcp://127.0.0.1:8786", NULL, NULL, NULL),
                     TG_OK);
    assert_true(cfg.nthreads >= 1);
    assert_non_null(strchr(cfg.name, '-')); /* hostname-pid */
    assert_int_equal(cfg.heartbeat_ms, TGW_DEFAULT_HEARTBEAT_MS);
    assert_string_equal(cfg.log_level, "info");
    tgw_config_free(&cfg);

    assert_int_equal(parse(&cfg, "--nthreads=3", "127.0.0.1:1", "--resources",
                           "GPU=2,MEM=1.5e9"),
                     TG_OK);
    assert_int_equal(cfg.nthreads, 3);
    assert_int_equal(cfg.nresources, 2);
    assert_string_equal(cfg.resources[1].name, "MEM");
    assert_true(cfg.resources[1].amount == 1.5e9);
    tgw_config_free(&cfg);

    assert_int_equal(parse(&cfg, "--help", NULL, NULL, NULL), TG_OK);
    assert_true(cfg.help);
    tgw_config_free(&cfg);

    expect_usage_error(NULL, NULL, NULL, "missing ADDRESS");
    expect_usage_error("tcp://h:1", "--nthreads", "zero", "--nthreads");
    expect_usage_error("tcp://h:1", "--nthreads", NULL, "needs a value");
    expect_usage_error("tcp://h:1", "--frobnicate", NULL, "--frobnicate");
    expect_usage_error("tcp://h:1", "--resources", "GPU", "NAME=AMOUNT");
    expect_usage_error("tcp://h:1", "--resources", "GPU=-1", "non-negative");
    expect_usage_error("tcp://h:1", "--log-level", "loud", "loud");
    expect_usage_error("http://h:1", NULL, NULL, "unsupported address");
    expect_usage_error("tcp://h", NULL, NULL, "host:port");
    expect_usage_error("tls://h:1", NULL, NULL, "--tls-ca");
    expect_usage_error("tcp://h:1", "--tls-ca", "ca.pem", "tls://");
    expect_usage_error("tcp://h:1", "tcp://h:2", NULL, "only one ADDRESS");
}

/* ------------------------------------------------------------------ */
/* Outbox                                                              */
/* ------------------------------------------------------------------ */

static void test_worker__outbox_batches_what_waits(void **state)
{
    tgw_outbox *ob = NULL;
    tgw_batch b;
    char key[16];

    (void)state;
    assert_int_equal(tgw_outbox_new(&ob), TG_OK);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        tgw_outbox_push(ob, mk(NULL, key, "tg.noop", "", "", NULL, 0));
    }
    assert_int_equal(tgw_outbox_push_released(ob, "back"), TG_OK);

    /* Everything waiting goes out at once, up to the item cap, in order. */
    tgw_outbox_take(ob, &b, 4, 1u << 20, 0);
    assert_int_equal(b.nresults, 4);
    assert_string_equal(b.results->key, "r0");
    assert_int_equal(b.nreleased, 1);
    assert_string_equal(b.released[0], "back");
    tgw_outbox_batch_free(&b);
    tgw_outbox_done(ob);
    tgw_outbox_take(ob, &b, 100, 1u << 20, 0);
    assert_int_equal(b.nresults, 6);
    assert_string_equal(b.results->key, "r4");
    tgw_outbox_batch_free(&b);
    tgw_outbox_done(ob);
    assert_true(tgw_outbox_flush(ob, 0));

    /* The byte cap still lets one result through. */
    tgw_outbox_push(ob, mk(NULL, "a", "tg.noop", "", "", NULL, 0));
    tgw_outbox_push(ob, mk(NULL, "b", "tg.noop", "", "", NULL, 0));
    tgw_outbox_take(ob, &b, 100, 1, 0);
    assert_int_equal(b.nresults, 1);
    tgw_outbox_batch_free(&b);
    tgw_outbox_done(ob);
    assert_false(tgw_outbox_flush(ob, 10));
    tgw_outbox_clear(ob);
    assert_true(tgw_outbox_flush(ob, 0));
    tgw_outbox_free(ob);
}

/* ------------------------------------------------------------------ */
/* Executor                                                            */
/* ------------------------------------------------------------------ */

/* Shared state of the executor tests' task functions and done callback. */
static struct {
    pthread_mutex_t mu;
    bool gate_open;
    int started;
    char order[64][16]; /* keys in the order they ran */
    int norder;
    char done[64][16]; /* keys in the order they finished */
    int ndone;
    bool b_ran_while_seceded;
    bool seceded;
    int secede_rc, rejoin_rc;
    int running, max_running; /* slot holders (seceded ones excluded) */
    char secs[8][24]; /* the secession hook's calls: "KEY seceded|rejoined" */
    int nsecs;
} S; /* mutex initialised in exec_setup */

static void s_reset(void)
{
    pthread_mutex_lock(&S.mu);
    S.gate_open = false;
    S.started = S.norder = S.ndone = 0;
    S.b_ran_while_seceded = S.seceded = false;
    S.secede_rc = S.rejoin_rc = -100;
    S.running = S.max_running = 0;
    S.nsecs = 0;
    pthread_mutex_unlock(&S.mu);
}

static pthread_cond_t s_cv_mono;

/* Bounded wait on S.cv for predicate `pred`; returns whether it holds. */
static bool s_wait(bool (*pred)(void *), void *arg)
{
    struct timespec dl = tg__deadline_ms(WAIT_MS);
    bool ok;

    pthread_mutex_lock(&S.mu);
    while (!(ok = pred(arg)))
        if (pthread_cond_timedwait(&s_cv_mono, &S.mu, &dl) != 0) {
            ok = pred(arg);
            break;
        }
    pthread_mutex_unlock(&S.mu);
    return ok;
}

static void s_broadcast(void)
{
    pthread_cond_broadcast(&s_cv_mono);
}

static bool p_started_at_least(void *n)
{
    return S.started >= *(int *)n;
}

static bool p_done_at_least(void *n)
{
    return S.ndone >= *(int *)n;
}

static bool p_gate_open(void *unused)
{
    (void)unused;
    return S.gate_open;
}

static bool p_order_has_b(void *unused)
{
    (void)unused;
    for (int i = 0; i < S.norder; i++)
        if (strcmp(S.order[i], "B") == 0)
            return true;
    return false;
}

static void slot_enter(tg_task_ctx *ctx)
{
    pthread_mutex_lock(&S.mu);
    S.started++;
    if (++S.running > S.max_running)
        S.max_running = S.running;
    if (S.norder < 64)
        snprintf(S.order[S.norder++], sizeof(S.order[0]), "%s",
                 tg_task_key(ctx));
    if (S.seceded && strcmp(tg_task_key(ctx), "B") == 0)
        S.b_ran_while_seceded = true;
    s_broadcast();
    pthread_mutex_unlock(&S.mu);
}

static void slot_leave(void)
{
    pthread_mutex_lock(&S.mu);
    S.running--;
    pthread_mutex_unlock(&S.mu);
}

/* test.record: note that it ran. */
static int fn_record(tg_task_ctx *ctx, void *ud)
{
    (void)ud;
    slot_enter(ctx);
    slot_leave();
    return 0;
}

/* test.gate: hold the slot until the test opens the gate. */
static int fn_gate(tg_task_ctx *ctx, void *ud)
{
    (void)ud;
    slot_enter(ctx);
    s_wait(p_gate_open, NULL);
    slot_leave();
    return 0;
}

/* test.until_cancelled: run until cancelled (bounded). */
static int fn_until_cancelled(tg_task_ctx *ctx, void *ud)
{
    int64_t end = tg__now_ms() + WAIT_MS;

    (void)ud;
    slot_enter(ctx);
    while (!tg_task_cancelled(ctx) && tg__now_ms() < end) {
        struct timespec ms = {0, 1000000};

        nanosleep(&ms, NULL);
    }
    slot_leave();
    return 0;
}

/* test.seceder: give the slot back, wait for B to run, take it again. */
static int fn_seceder(tg_task_ctx *ctx, void *ud)
{
    int rc;

    (void)ud;
    slot_enter(ctx);
    slot_leave();
    /* Marked before the call: B may start before tg__exec_secede returns. */
    pthread_mutex_lock(&S.mu);
    S.seceded = true;
    pthread_mutex_unlock(&S.mu);
    rc = tg__exec_secede(ctx);
    pthread_mutex_lock(&S.mu);
    S.secede_rc = rc;
    S.seceded = rc == TG_OK;
    s_broadcast();
    pthread_mutex_unlock(&S.mu);
    /* Nested work would be waited on here: B stands in for it. */
    s_wait(p_order_has_b, NULL);
    rc = tg__exec_rejoin(ctx);
    pthread_mutex_lock(&S.mu);
    S.rejoin_rc = rc;
    S.seceded = false;
    if (++S.running > S.max_running)
        S.max_running = S.running;
    S.running--;
    pthread_mutex_unlock(&S.mu);
    return 0;
}

static void on_done(void *ud, tg_task_ctx *t)
{
    (void)ud;
    pthread_mutex_lock(&S.mu);
    if (S.ndone < 64)
        snprintf(S.done[S.ndone], sizeof(S.done[0]), "%s", t->key);
    S.ndone++;
    s_broadcast();
    pthread_mutex_unlock(&S.mu);
    tgw_task_free(t);
}

/* The executor's secession hook (called with its lock held). */
static void on_secession(void *ud, const char *key, bool rejoined)
{
    (void)ud;
    pthread_mutex_lock(&S.mu);
    if (S.nsecs < 8)
        snprintf(S.secs[S.nsecs], sizeof(S.secs[0]), "%s %s", key,
                 rejoined ? "rejoined" : "seceded");
    S.nsecs++;
    pthread_mutex_unlock(&S.mu);
}

static tg_registry *test_reg;

static int exec_setup(void **state)
{
    pthread_condattr_t ca;

    (void)state;
    pthread_mutex_init(&S.mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s_cv_mono, &ca);
    pthread_condattr_destroy(&ca);
    if (tgw_registry_new(&test_reg) != TG_OK ||
        tg_registry_add(test_reg, "test.record", fn_record, NULL) != TG_OK ||
        tg_registry_add(test_reg, "test.gate", fn_gate, NULL) != TG_OK ||
        tg_registry_add(test_reg, "test.until_cancelled", fn_until_cancelled,
                        NULL) != TG_OK ||
        tg_registry_add(test_reg, "test.seceder", fn_seceder, NULL) != TG_OK)
        return -1;
    tgw_registry_freeze(test_reg);
    return 0;
}

static int exec_teardown(void **state)
{
    (void)state;
    tgw_registry_free(test_reg);
    pthread_cond_destroy(&s_cv_mono);
    pthread_mutex_destroy(&S.mu);
    return 0;
}

static tg__exec *new_exec(unsigned nslots)
{
    tg__exec_opts o = {
        .nslots = nslots, .done = on_done, .secession = on_secession};
    tg__exec *e = NULL;

    s_reset();
    assert_int_equal(tg__exec_new(&e, &o), TG_OK);
    return e;
}

static void submit1(tg__exec *e, const char *key, const char *func,
                    int32_t priority)
{
    tg_task_ctx *t = mk(test_reg, key, func, "", "", NULL, 0);

    t->priority = priority;
    assert_int_equal(tg__exec_submit(e, &t, 1), TG_OK);
}

static void open_gate(void)
{
    pthread_mutex_lock(&S.mu);
    S.gate_open = true;
    s_broadcast();
    pthread_mutex_unlock(&S.mu);
}

static void test_worker__executor_runs_by_priority_then_fifo(void **state)
{
    static const struct {
        const char *key;
        int32_t prio;
    } tasks[] = {{"p0a", 0},  {"p5a", 5}, {"p1", 1}, {"p5b", 5},
                 {"p10", 10}, {"p0b", 0}, {"n1", -1}};
    static const char *want[] = {"p10", "p5a", "p5b", "p1", "p0a", "p0b", "n1"};
    tg__exec *e = new_exec(1);
    tg_task_ctx *batch[7];
    int one = 1, all = 8;

    (void)state;
    /* The gate holds the only slot while the others queue up. */
    submit1(e, "gate", "test.gate", 0);
    assert_true(s_wait(p_started_at_least, &one));
    for (size_t i = 0; i < 7; i++) {
        batch[i] = mk(test_reg, tasks[i].key, "test.record", "", "", NULL, 0);
        batch[i]->priority = tasks[i].prio;
    }
    assert_int_equal(tg__exec_submit(e, batch, 7), TG_OK);
    open_gate();
    assert_true(s_wait(p_done_at_least, &all));
    assert_true(tg__exec_wait_idle(e, WAIT_MS));
    for (int i = 0; i < 7; i++)
        assert_string_equal(S.order[i + 1], want[i]);
    assert_int_equal(S.max_running, 1);
    tg__exec_free(e);
}

static void test_worker__executor_cancel_queued_and_running(void **state)
{
    tg__exec *e = new_exec(1);
    tg_task_ctx **q;
    size_t nq;
    int one = 1;

    (void)state;
    submit1(e, "run", "test.until_cancelled", 0);
    assert_true(s_wait(p_started_at_least, &one));
    submit1(e, "q1", "test.record", 0);
    submit1(e, "q2", "test.record", 0);
    submit1(e, "q3", "test.record", 0);
    /* Queued: dropped. Running: flagged, and its outcome discarded. */
    assert_int_equal(tg__exec_cancel(e, "q1"), 1);
    assert_int_equal(tg__exec_cancel(e, "nope"), 0);
    assert_int_equal(tg__exec_cancel(e, "run"), 1);
    /* Hand the rest back unstarted (what a stopping worker does). */
    assert_int_equal(tg__exec_take_queued(e, &q, &nq), TG_OK);
    assert_int_equal(nq, 2);
    assert_string_equal(q[0]->key, "q2");
    assert_string_equal(q[1]->key, "q3");
    tgw_task_free(q[0]);
    tgw_task_free(q[1]);
    free(q);
    assert_true(tg__exec_wait_idle(e, WAIT_MS));
    assert_int_equal(S.ndone, 0);
    assert_int_equal(S.norder, 1);
    tg__exec_free(e);
}

static void test_worker__executor_steal_takes_only_queued(void **state)
{
    tg__exec *e = new_exec(1);
    int one = 1, two = 2;

    (void)state;
    submit1(e, "held", "test.gate", 0);
    assert_true(s_wait(p_started_at_least, &one));
    submit1(e, "queued", "test.record", 0);
    submit1(e, "kept", "test.record", 0);
    /* Queued: handed back (no result). Running: untouched, reports. */
    assert_int_equal(tg__exec_steal(e, "queued"), 1);
    assert_int_equal(tg__exec_steal(e, "held"), 0);
    open_gate();
    assert_true(s_wait(p_done_at_least, &two));
    assert_true(tg__exec_wait_idle(e, WAIT_MS));
    assert_int_equal(S.ndone, 2);
    assert_string_equal(S.done[0], "held");
    assert_string_equal(S.done[1], "kept");
    tg__exec_free(e);
}

static void test_worker__executor_secede_lets_another_task_run(void **state)
{
    tg__exec *e = new_exec(1);
    tg__exec_stats st;
    int two = 2;

    (void)state;
    /* One slot: B can only run if A gave the slot back. */
    submit1(e, "A", "test.seceder", 0);
    submit1(e, "B", "test.record", 0);
    assert_true(s_wait(p_done_at_least, &two));
    assert_int_equal(S.secede_rc, TG_OK);
    assert_int_equal(S.rejoin_rc, TG_OK);
    assert_true(S.b_ran_while_seceded);
    assert_string_equal(S.done[0], "B");
    assert_string_equal(S.done[1], "A");
    assert_int_equal(S.max_running, 1); /* never two slot holders */
    /* The hook saw both, in order: what the scheduler is told. */
    assert_int_equal(S.nsecs, 2);
    assert_string_equal(S.secs[0], "A seceded");
    assert_string_equal(S.secs[1], "A rejoined");
    assert_true(tg__exec_wait_idle(e, WAIT_MS));
    tg__exec_stats_get(e, &st);
    assert_int_equal(st.seceded, 0);
    assert_int_equal(st.active, 0);
    tg__exec_free(e);
}

static bool p_rejoining(void *e)
{
    tg__exec_stats st;

    tg__exec_stats_get(e, &st);
    return st.rejoining == 1;
}

static void test_worker__executor_rejoin_waits_for_a_free_slot(void **state)
{
    tg__exec *e = new_exec(1);
    int three = 3;
    bool rejoining = false;
    int64_t end;

    (void)state;
    /* A secedes; B takes the slot and holds it (gate closed); A, wanting
     * its slot back, must wait until B is done. */
    submit1(e, "A", "test.seceder", 0);
    submit1(e, "B", "test.gate", 0);
    assert_true(s_wait(p_order_has_b, NULL));
    end = tg__now_ms() + WAIT_MS;
    while (!(rejoining = p_rejoining(e)) && tg__now_ms() < end) {
        struct timespec ms = {0, 1000000};

        nanosleep(&ms, NULL);
    }
    assert_true(rejoining);
    /* Queued work waits behind the rejoining task. */
    submit1(e, "C", "test.record", 0);
    pthread_mutex_lock(&S.mu);
    assert_int_equal(S.ndone, 0);
    pthread_mutex_unlock(&S.mu);
    open_gate();
    assert_true(s_wait(p_done_at_least, &three));
    assert_string_equal(S.done[0], "B");
    assert_string_equal(S.done[1], "A");
    assert_string_equal(S.done[2], "C");
    assert_int_equal(S.max_running, 1);
    tg__exec_free(e);
}

static void test_worker__secede_outside_a_pool_is_refused(void **state)
{
    tg_task_ctx *t = mk(NULL, "k", "x.y", "", "", NULL, 0);

    (void)state;
    assert_int_equal(tg__exec_secede(t), TG_ESTATE);
    assert_int_equal(tg__exec_rejoin(t), TG_ESTATE);
    tgw_task_free(t);
}

static void test_worker__executor_many_tasks_many_slots(void **state)
{
    enum { N = 20000 };
    tg__exec *e = new_exec(4);
    tg_task_ctx **batch = calloc(N, sizeof(*batch));

    (void)state;
    /* No function: each task still yields exactly one (error) result. */
    for (int i = 0; i < N; i++)
        batch[i] = mk(NULL, "k", "test.none", "", "", NULL, 0);
    assert_int_equal(tg__exec_submit(e, batch, N / 2), TG_OK);
    assert_int_equal(tg__exec_submit(e, batch + N / 2, N - N / 2), TG_OK);
    assert_true(tg__exec_wait_idle(e, WAIT_MS * 2));
    pthread_mutex_lock(&S.mu);
    assert_int_equal(S.ndone, N);
    pthread_mutex_unlock(&S.mu);
    free(batch);
    tg__exec_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker__json_numbers_keep_integers_exact),
        cmocka_unit_test(test_worker__json_roundtrips_structures),
        cmocka_unit_test(test_worker__json_rejects_malformed_input),
        cmocka_unit_test(test_worker__json_writes_shortest_doubles),
        cmocka_unit_test(test_worker__args_input_array_then_deps),
        cmocka_unit_test(test_worker__noop_and_echo),
        cmocka_unit_test(test_worker__arithmetic),
        cmocka_unit_test(test_worker__sum_and_add_take_dependency_results),
        cmocka_unit_test(test_worker__type_errors_are_clear),
        cmocka_unit_test(test_worker__fail_print_sleep),
        cmocka_unit_test(test_worker__unknown_function_and_attempt),
        cmocka_unit_test(test_worker__registry_add_find_and_rules),
        cmocka_unit_test(test_worker__plugin_loads_example_shout),
        cmocka_unit_test(test_worker__command_line),
        cmocka_unit_test(test_worker__outbox_batches_what_waits),
        cmocka_unit_test(test_worker__executor_runs_by_priority_then_fifo),
        cmocka_unit_test(test_worker__executor_cancel_queued_and_running),
        cmocka_unit_test(test_worker__executor_steal_takes_only_queued),
        cmocka_unit_test(test_worker__executor_secede_lets_another_task_run),
        cmocka_unit_test(test_worker__executor_rejoin_waits_for_a_free_slot),
        cmocka_unit_test(test_worker__secede_outside_a_pool_is_refused),
        cmocka_unit_test(test_worker__executor_many_tasks_many_slots),
    };

    return cmocka_run_group_tests(tests, exec_setup, exec_teardown);
}
