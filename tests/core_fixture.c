/* SPDX-License-Identifier: Apache-2.0
 *
 * core_fixture.c: the helpers of core_fixture.h. Depends on
 * //scheduler:core and cmocka.
 */
#include "core_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

tgs_str cf_str(const char *z)
{
    return (tgs_str){z, strlen(z)};
}

tgs_core *cf_core_new(const tgs_core_opts *opts)
{
    tgs_core *c = NULL;
    assert_int_equal(tgs_core_new(&c, opts), TGS_OK);
    assert_non_null(c);
    return c;
}

size_t cf_pop_all(tgs_core *c, cf_act *out, size_t cap)
{
    tgs_action a;
    size_t n = 0;
    while (tgs_core_next_action(c, &a)) {
        assert_true(n < cap);
        out[n].kind = a.kind;
        out[n].worker = a.worker;
        out[n].watcher = a.watcher;
        out[n].key[0] = '\0';
        if (a.task != NULL) {
            tgs_str k = tgs_task_key(a.task);
            assert_true(k.len < sizeof out[n].key);
            memcpy(out[n].key, k.ptr, k.len);
            out[n].key[k.len] = '\0';
        }
        n++;
    }
    return n;
}

size_t cf_count_acts(const cf_act *a, size_t n, tgs_action_kind kind,
                     uint64_t worker, const char *key)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i].kind == kind && strcmp(a[i].key, key) == 0 &&
            (worker == 0 || a[i].worker == worker))
            k++;
    return k;
}

void cf_worker_add(tgs_core *c, uint64_t wid, const char *name, bool can_fetch)
{
    tgs_str funcs[] = {cf_str("f")};
    tgs_worker_spec w;
    memset(&w, 0, sizeof w);
    w.name = cf_str(name);
    w.nthreads = 1;
    w.funcs = funcs;
    w.nfuncs = 1;
    w.can_fetch = can_fetch;
    assert_int_equal(tgs_core_worker_add(c, wid, &w, 0), TGS_OK);
}

void cf_worker_add_f(tgs_core *c, uint64_t wid, const char *name)
{
    cf_worker_add(c, wid, name, false);
}

void cf_assert_str_is(tgs_str s, const char *z)
{
    char buf[512];
    assert_true(s.len < sizeof buf);
    if (s.len)
        memcpy(buf, s.ptr, s.len);
    buf[s.len] = '\0';
    assert_string_equal(buf, z);
}

void cf_submit_f(tgs_core *c, const char *key)
{
    tgs_task_spec s;
    char err[256];
    memset(&s, 0, sizeof s);
    s.key = cf_str(key);
    s.func = cf_str("f");
    if (tgs_core_submit(c, &s, 1, 0, NULL, err, sizeof err) != TGS_OK)
        fail_msg("submit %s: %s", key, err);
}

void cf_finish(tgs_core *c, uint64_t wid, const char *key, bool held)
{
    tgs_outcome o;
    memset(&o, 0, sizeof o);
    o.ok = true;
    o.codec = cf_str("raw");
    if (held) {
        o.held = true;
        o.size = 100000;
    } else {
        o.data = (const uint8_t *)"1";
        o.data_len = 1;
    }
    assert_int_equal(tgs_core_task_finished(c, wid, cf_str(key), &o, 1),
                     TGS_OK);
}
