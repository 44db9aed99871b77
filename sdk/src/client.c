/* SPDX-License-Identifier: Apache-2.0
 *
 * client.c: tg_client, the C client of service taskgrid.v1.Scheduler (see
 * taskgrid/client.h): connecting (with TLS material from tg_security),
 * batched submission of whole graphs, streamed gathering of results,
 * cancel/release/annotate/scale, status reports, and task key generation.
 * Depends on rpc.h (the one gRPC layer), proto/wire.h (the codec) and
 * future.h (futures and the key maps); it never touches gRPC itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/error.h"
#include "future.h"
#include "transport/client.h"
#include "util/address.h"
#include "taskgrid/client.h"
#include "util/tls.h"
#include "wire.h"
#include "methods.h"


/*
 * Batching. The protocol caps a repeated field at 65,535 entries (16-bit
 * pb_size_t); 10,000 per message amortises the per-message cost (about
 * 8 CPU-us per hop) to under a microsecond per task while keeping each
 * message small enough to stream without stalling the scheduler's loop.
 */
#define CHUNK 10000
/* Gather streams open at once: enough to keep the scheduler answering
 * while we decode, few enough to bound its per-call memory. */
#define GATHER_WINDOW 8
/* Extra time given to the scheduler to send its final answer after the
 * Gather time limit it was told about. */
#define GATHER_GRACE_MS 2000
/* Submit messages stay under a quarter of the message limit ("well under"
 * 64 MiB by default), so a worst-case size estimate never overflows. */
#define SUBMIT_BYTES_DIV 4

struct tg_client {
    tg__chan *ch;
    tg__shared *sh;
    char *address;
    char *client_id;
    int64_t timeout_ms;
    size_t max_message;
    tg__tls tls; /* loaded and checked security material */
};

/* ------------------------------------------------------------------ */
/* Keys                                                                */
/* ------------------------------------------------------------------ */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static uint64_t key_seed;
static atomic_uint_fast64_t key_counter;

static void key_reseed(void)
{
    uint64_t s = 0;

    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        s = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 16);
    }
    key_seed = s;
}

static void key_init(void)
{
    key_reseed();
    /* A forked child would otherwise repeat its parent's keys. */
    pthread_atfork(NULL, NULL, key_reseed);
}

/*
 * splitmix64's finaliser is a bijection of 64-bit integers, so distinct
 * counter values give distinct keys: no collision within a process, and
 * keys look random (well spread in the scheduler's hash map).
 */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t key_prefix_len(const char *func)
{
    size_t n = strlen(func);

    return n > TG_KEY_MAX - 17 ? TG_KEY_MAX - 17 : n;
}

/* Write "<func>-<16 hex>" at `buf` (room checked by the caller); returns
 * the key length. */
static size_t key_write(char *buf, const char *func)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = key_prefix_len(func);
    uint64_t v;

    pthread_once(&key_once, key_init);
    v = mix64(key_seed + atomic_fetch_add(&key_counter, 1));
    memcpy(buf, func, n);
    buf[n] = '-';
    for (int i = 15; i >= 0; i--) {
        buf[n + 1 + (size_t)i] = hex[v & 15];
        v >>= 4;
    }
    buf[n + 17] = '\0';
    return n + 17;
}

int tg_key_generate(char *buf, size_t buflen, const char *func)
{
    if (buf == NULL || func == NULL)
        return tg__error_set(TG_EINVAL, "tg_key_generate: NULL argument");
    if (buflen < key_prefix_len(func) + 18)
        return tg__error_set(TG_EINVAL,
                             "tg_key_generate: buffer of %zu bytes is too "
                             "small (need %zu)",
                             buflen, key_prefix_len(func) + 18);
    key_write(buf, func);
    return TG_OK;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Copy of the thread's last error, for messages that quote it (the
 * message buffer cannot be a vsnprintf argument into itself). */
static void last_error_copy(char *buf, size_t len)
{
    snprintf(buf, len, "%s", tg_error_last());
}

/* Copy `b` to *p as a C string and advance *p past its NUL. */
static const char *put_str(char **p, tg_pbbuf b)
{
    char *s = *p;

    if (b.len)
        memcpy(s, b.ptr, b.len);
    s[b.len] = '\0';
    *p += b.len + 1;
    return s;
}

/*
 * One unary call: encode `req`, call, decode into `resp`. On TG_OK the
 * caller owns *raw (free() after tg__wire_release(respf, resp)): decoded
 * strings point into it.
 */
static int unary(tg_client *c, const char *method, const pb_msgdesc_t *reqf,
                 const void *req, const pb_msgdesc_t *respf, void *resp,
                 uint8_t **raw, int64_t timeout_ms)
{
    uint8_t *buf = NULL, *out = NULL;
    size_t len = 0, outlen = 0;
    int rc;

    *raw = NULL;
    if (tg__wire_encode(reqf, req, &buf, &len) != TG_OK)
        return tg__error_set(TG_EINTERNAL, "%s: %s", method, tg_error_last());
    rc = tg__chan_unary(c->ch, method, buf, len, &out, &outlen, timeout_ms);
    free(buf);
    if (rc != TG_OK)
        return rc;
    if (tg__wire_decode(respf, resp, out, outlen) != TG_OK) {
        free(out);
        return tg__error_set(TG_EPROTO, "%s: %s", method, tg_error_last());
    }
    *raw = out;
    return TG_OK;
}

/*
 * Send the batched releases of freed futures (one Release call per CHUNK
 * keys). Errors are dropped: a key not released costs scheduler memory
 * until it is released by other means, not correctness, and the caller's
 * own call must not fail for it.
 */
/* Release `n` keys in Release calls of at most CHUNK keys; stops at and
 * returns the first failure. */
static int release_keys(tg_client *c, char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i += CHUNK) {
        taskgrid_v1_ReleaseRequest req;
        taskgrid_v1_ReleaseResponse resp;
        uint8_t *raw;
        int rc;

        memset(&req, 0, sizeof(req));
        req.keys_count = (pb_size_t)(n - i < CHUNK ? n - i : CHUNK);
        req.keys = (char **)(uintptr_t)(keys + i);
        rc = unary(c, TG_METHOD_RELEASE, taskgrid_v1_ReleaseRequest_fields, &req,
                   taskgrid_v1_ReleaseResponse_fields, &resp, &raw,
                   c->timeout_ms);
        if (rc != TG_OK)
            return rc;
        tg__wire_release(taskgrid_v1_ReleaseResponse_fields, &resp);
        free(raw);
    }
    return TG_OK;
}

/* Release the NUL-separated keys of `arena` (freed futures). Errors are
 * dropped: see flush_releases. */
static void send_releases(tg_client *c, const char *arena, size_t n)
{
    char **keys = malloc((n ? n : 1) * sizeof(*keys));
    const char *p = arena;

    if (keys == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        keys[i] = (char *)p;
        p += strlen(p) + 1;
    }
    if (release_keys(c, keys, n) != TG_OK)
        tg__error_clear();
    free(keys);
}

static void flush_releases(tg_client *c)
{
    char *arena;
    size_t len, n;

    if (!tg__shared_take_releases(c->sh, &arena, &len, &n))
        return;
    send_releases(c, arena, n);
    free(arena);
}

/* Start of every public call that talks to the scheduler. */
static int enter(tg_client *c, const char *what)
{
    if (c == NULL)
        return tg__error_set(TG_EINVAL, "%s: client is NULL", what);
    flush_releases(c);
    return TG_OK;
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */
/* ------------------------------------------------------------------ */

static void client_destroy(tg_client *c)
{
    tg__chan_close(c->ch);
    tg__shared_unref(c->sh);
    free(c->address);
    free(c->client_id);
    tg__tls_clear(&c->tls); /* wipes the private key */
    free(c);
}

/*
 * Check that a scheduler answers at c->address, retrying refused
 * connections until `timeout_ms` passes: a scheduler started together with
 * its client may not listen yet (Dask's Client waits the same way).
 */
static int check_alive(tg_client *c, int64_t timeout_ms)
{
    int64_t start = tg__now_ms(), left = timeout_ms;
    char why[512];
    int rc;

    for (;;) {
        taskgrid_v1_StatusRequest req;
        taskgrid_v1_StatusResponse resp;
        uint8_t *raw;
        struct timespec nap = {0, 100 * 1000 * 1000};

        memset(&req, 0, sizeof(req));
        rc = unary(c, TG_METHOD_STATUS, taskgrid_v1_StatusRequest_fields, &req,
                   taskgrid_v1_StatusResponse_fields, &resp, &raw, left);
        if (rc == TG_OK) {
            tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
            free(raw);
            return TG_OK;
        }
        left = timeout_ms - (tg__now_ms() - start);
        if (rc != TG_EUNAVAILABLE || left <= 0)
            break;
        if (left < 100)
            nap.tv_nsec = (long)left * 1000000L;
        nanosleep(&nap, NULL);
        left = timeout_ms - (tg__now_ms() - start);
        if (left <= 0)
            break;
    }
    /* TLS refusals already say which side refused what. */
    if (rc == TG_ETLS)
        return rc;
    last_error_copy(why, sizeof(why));
    if (rc == TG_ETIMEDOUT || rc == TG_EUNAVAILABLE)
        return tg__error_set(TG_EUNAVAILABLE,
                             "no taskgrid scheduler answers at %s after "
                             "%" PRId64 " ms (%s); start one (bazel run "
                             "//scheduler) or use a local cluster "
                             "(tg_cluster_start)",
                             c->address, tg__now_ms() - start, why);
    return tg__error_set(rc, "the scheduler at %s refused the connection "
                             "check: %s",
                         c->address, why);
}

int tg_client_connect(tg_client **out, const char *address,
                      const tg_client_opts *opts)
{
    static const tg_client_opts defaults = TG_CLIENT_OPTS_INIT;
    tg_client *c = NULL;
    tg__rpc_sec sec;
    char idbuf[32];
    int64_t connect_ms;
    int rc;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_connect: out is NULL");
    *out = NULL;
    if (address == NULL || address[0] == '\0')
        return tg__error_set(TG_EINVAL,
                             "tg_client_connect: no scheduler address "
                             "(e.g. tcp://127.0.0.1:8786)");
    if (opts == NULL)
        opts = &defaults;
    if (opts->version != TG_CLIENT_OPTS_VERSION)
        return tg__error_set(TG_EINVAL,
                             "tg_client_opts version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_CLIENT_OPTS_INIT)",
                             opts->version, TG_CLIENT_OPTS_VERSION);
    if (opts->timeout_ms < 0 || opts->connect_timeout_ms < 0)
        return tg__error_set(TG_EINVAL,
                             "tg_client_opts: timeouts must be >= 0");
    if (opts->client_id != NULL &&
        (opts->client_id[0] == '\0' || strlen(opts->client_id) > 256))
        return tg__error_set(TG_EINVAL,
                             "tg_client_opts: client_id must be 1 to 256 "
                             "bytes");

    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return tg__error_set(TG_ENOMEM, "out of memory");
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    c->max_message =
        opts->max_message > 0 ? opts->max_message : TG__RPC_DEFAULT_MAX_MSG;
    connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                              : 10000;
    if (opts->client_id == NULL)
        key_write(idbuf, "client");
    c->address = strdup(address);
    c->client_id = strdup(opts->client_id ? opts->client_id : idbuf);
    if (c->address == NULL || c->client_id == NULL) {
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto fail;
    }
    rc = tg__shared_new(&c->sh, c);
    if (rc != TG_OK)
        goto fail;
    /* Scheme and security options must agree before anything is read. */
    {
        char target[512];
        bool tls = false;

        rc = tg__address_parse(address, target, sizeof(target), &tls);
        if (rc != TG_OK)
            goto fail;
        if (tls && opts->security == NULL) {
            rc = tg__error_set(TG_ETLS,
                               "address '%s' asks for TLS but no security "
                               "options (CA, certificate, key) were given",
                               address);
            goto fail;
        }
        if (!tls && opts->security != NULL) {
            rc = tg__error_set(TG_ETLS,
                               "security options were given but address "
                               "'%s' is plaintext; use tls://",
                               address);
            goto fail;
        }
    }
    /* Files exist and parse, key and certificate match, dates are valid:
     * a clear local error now beats a failed handshake later. */
    if (opts->security != NULL &&
        (rc = tg__tls_load(&c->tls, opts->security, "client")) != TG_OK)
        goto fail;
    memset(&sec, 0, sizeof(sec));
    sec.ca_pem = c->tls.ca_pem;
    sec.cert_pem = c->tls.cert_pem;
    sec.key_pem = c->tls.key_pem;
    sec.hint = c->tls.hint[0] ? c->tls.hint : NULL;
    rc = tg__chan_open(&c->ch, address, opts->security ? &sec : NULL,
                       c->max_message);
    if (rc != TG_OK)
        goto fail;
    if (!opts->lazy) {
        rc = check_alive(c, connect_ms);
        if (rc != TG_OK)
            goto fail;
    }
    *out = c;
    return TG_OK;

fail:
    client_destroy(c);
    return rc;
}

void tg_client_free(tg_client *c)
{
    if (c == NULL)
        return;
    tg__shared_close(c->sh);
    flush_releases(c);
    client_destroy(c);
}

const char *tg_client_address(const tg_client *c)
{
    return c ? c->address : NULL;
}

const char *tg_client_id(const tg_client *c)
{
    return c ? c->client_id : NULL;
}

/* ------------------------------------------------------------------ */
/* Submit                                                              */
/* ------------------------------------------------------------------ */

/* Upper bound of the encoded size of a string/bytes field. */
static size_t field_bound(size_t len)
{
    return len + 11; /* tag (1) + length varint (<= 10) */
}

/* Upper bound of one TaskSpec inside a SubmitRequest. */
static size_t spec_bound(const tg_task_def *t, size_t keylen)
{
    size_t n = 16 + field_bound(keylen) + field_bound(strlen(t->func)) +
               field_bound(t->input_len) +
               field_bound(t->codec ? strlen(t->codec) : 0) + 22;

    for (size_t i = 0; i < t->ndeps; i++)
        n += field_bound(strlen(t->deps[i]));
    for (size_t i = 0; i < t->nresources; i++)
        n += 11 + field_bound(strlen(t->resources[i].name)) + 9;
    for (size_t i = 0; i < t->nworkers; i++)
        n += field_bound(strlen(t->workers[i]));
    return n;
}

static int check_resources(const char *what, size_t idx,
                           const tg_resource *res, size_t n)
{
    if (n > 0 && res == NULL)
        return tg__error_set(TG_EINVAL, "%s %zu: nresources is %zu but "
                                        "resources is NULL",
                             what, idx, n);
    if (n > 65535)
        return tg__error_set(TG_EINVAL, "%s %zu: more than 65535 resources",
                             what, idx);
    for (size_t i = 0; i < n; i++) {
        if (res[i].name == NULL || res[i].name[0] == '\0')
            return tg__error_set(TG_EINVAL, "%s %zu: resource %zu has no "
                                            "name",
                                 what, idx, i);
        if (!isfinite(res[i].amount) || res[i].amount < 0)
            return tg__error_set(TG_EINVAL,
                                 "%s %zu: resource '%s' needs a finite "
                                 "amount >= 0",
                                 what, idx, res[i].name);
    }
    return TG_OK;
}

/* Validate one definition; messages name the task by index and key. */
static int check_task(const tg_task_def *t, size_t i)
{
    const char *k = t->key ? t->key : "(generated)";

    if (t->version != TG_TASK_DEF_VERSION)
        return tg__error_set(TG_EINVAL,
                             "task %zu: tg_task_def version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_TASK_DEF_INIT)",
                             i, t->version, TG_TASK_DEF_VERSION);
    if (t->func == NULL || t->func[0] == '\0')
        return tg__error_set(TG_EINVAL, "task %zu ('%s'): no function",
                             i, k);
    if (t->key != NULL &&
        (t->key[0] == '\0' || strlen(t->key) > TG_KEY_MAX))
        return tg__error_set(TG_EINVAL,
                             "task %zu: key must be 1 to %d bytes", i,
                             TG_KEY_MAX);
    if (t->input_len > 0 && t->input == NULL)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): input_len is %zu but input "
                             "is NULL",
                             i, k, t->input_len);
    if (t->ndeps > 0 && t->deps == NULL)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): ndeps is %zu but deps is "
                             "NULL",
                             i, k, t->ndeps);
    if (t->ndeps > 65535 || t->nworkers > 65535)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): more than 65535 deps or "
                             "workers",
                             i, k);
    for (size_t d = 0; d < t->ndeps; d++)
        if (t->deps[d] == NULL || t->deps[d][0] == '\0')
            return tg__error_set(TG_EINVAL,
                                 "task %zu ('%s'): dependency %zu is empty",
                                 i, k, d);
    if (t->nworkers > 0 && t->workers == NULL)
        return tg__error_set(TG_EINVAL,
                             "task %zu ('%s'): nworkers is %zu but workers "
                             "is NULL",
                             i, k, t->nworkers);
    for (size_t w = 0; w < t->nworkers; w++)
        if (t->workers[w] == NULL || t->workers[w][0] == '\0')
            return tg__error_set(TG_EINVAL,
                                 "task %zu ('%s'): worker %zu is empty", i,
                                 k, w);
    return check_resources("task", i, t->resources, t->nresources);
}

static void fill_spec(taskgrid_v1_TaskSpec *s, const tg_task_def *t,
                      const tg_future *f, taskgrid_v1_Resource *res)
{
    memset(s, 0, sizeof(*s));
    s->key = tg_pbbuf_mem(f->key, f->keylen);
    s->func = tg_pbbuf_str(t->func);
    s->input = tg_pbbuf_mem(t->input, t->input_len);
    s->codec = tg_pbbuf_str(t->codec);
    /* nanopb's encoder only reads these arrays; the casts drop const. */
    s->deps_count = (pb_size_t)t->ndeps;
    s->deps = (char **)(uintptr_t)t->deps;
    s->priority = t->priority;
    s->retries = t->retries;
    s->resources_count = (pb_size_t)t->nresources;
    s->resources = t->nresources ? res : NULL;
    for (size_t r = 0; r < t->nresources; r++) {
        res[r].name = tg_pbbuf_str(t->resources[r].name);
        res[r].amount = t->resources[r].amount;
    }
    s->workers_count = (pb_size_t)t->nworkers;
    s->workers = (char **)(uintptr_t)t->workers;
}

/* Send tasks [from, to) as one SubmitRequest. */
static int submit_chunk(tg_client *c, const tg_task_def *tasks,
                        tg_future *fut, size_t from, size_t to,
                        taskgrid_v1_TaskSpec *specs,
                        taskgrid_v1_Resource *res, char **rel, size_t nrel)
{
    taskgrid_v1_SubmitRequest req;
    taskgrid_v1_SubmitResponse resp;
    uint8_t *raw;
    size_t r = 0;
    int rc;

    memset(&req, 0, sizeof(req));
    for (size_t i = from; i < to; i++) {
        fill_spec(&specs[i - from], &tasks[i], &fut[i],
                  res != NULL ? res + r : NULL);
        r += tasks[i].nresources;
    }
    req.tasks_count = (pb_size_t)(to - from);
    req.tasks = specs;
    req.client_id = tg_pbbuf_str(c->client_id);
    req.release_count = (pb_size_t)nrel;
    req.release = nrel ? rel : NULL;
    rc = unary(c, TG_METHOD_SUBMIT, taskgrid_v1_SubmitRequest_fields, &req,
               taskgrid_v1_SubmitResponse_fields, &resp, &raw, c->timeout_ms);
    if (rc != TG_OK)
        return rc; /* the scheduler's message is in tg_error_last() */
    tg__wire_release(taskgrid_v1_SubmitResponse_fields, &resp);
    free(raw);
    return TG_OK;
}

int tg_client_submit(tg_client *c, const tg_task_def *tasks, size_t n,
                     tg_future **futures)
{
    tg__fslab *slab = NULL;
    tg_future *fut = NULL;
    taskgrid_v1_TaskSpec *specs = NULL;
    taskgrid_v1_Resource *res = NULL;
    size_t keybytes = 0, limit, maxres = 0, sent = 0;
    char *kp, *rel_arena = NULL, **rel = NULL;
    size_t rel_len = 0, nrel = 0;
    int rc;

    if (c == NULL || n == 0 || tasks == NULL || futures == NULL) {
        if ((rc = enter(c, "tg_client_submit")) != TG_OK)
            return rc;
        if (n == 0)
            return TG_OK;
        return tg__error_set(TG_EINVAL,
                             "tg_client_submit: tasks or futures is NULL");
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_task(&tasks[i], i)) != TG_OK) {
            flush_releases(c);
            return rc;
        }
        keybytes += tasks[i].key ? strlen(tasks[i].key) + 1
                                 : key_prefix_len(tasks[i].func) + 18;
    }
    /* Keys of freed futures ride on the first Submit (SubmitRequest.release)
     * instead of costing a Release call of their own. */
    if (tg__shared_take_releases(c->sh, &rel_arena, &rel_len, &nrel)) {
        rel = nrel <= CHUNK ? malloc(nrel * sizeof(*rel)) : NULL;
        if (rel == NULL) {
            send_releases(c, rel_arena, nrel);
            nrel = 0;
        } else {
            const char *p = rel_arena;
            for (size_t i = 0; i < nrel; i++) {
                rel[i] = (char *)p;
                p += strlen(p) + 1;
            }
        }
    }

    rc = tg__fslab_new(c->sh, n, keybytes, &slab, &fut, &kp);
    if (rc != TG_OK) {
        if (nrel)
            send_releases(c, rel_arena, nrel);
        free(rel);
        free(rel_arena);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;

        if (tasks[i].key) {
            len = strlen(tasks[i].key);
            memcpy(kp, tasks[i].key, len + 1);
        } else {
            len = key_write(kp, tasks[i].func);
        }
        tg__future_set_key(&fut[i], kp, len);
        kp += len + 1;
    }
    /* Register first so that a concurrent free of another future with one
     * of these keys does not release it under our feet. */
    rc = tg__fslab_register(slab);
    if (rc != TG_OK) {
        tg__fslab_drop(slab);
        if (nrel)
            send_releases(c, rel_arena, nrel);
        free(rel);
        free(rel_arena);
        return rc;
    }

    limit = c->max_message / SUBMIT_BYTES_DIV;
    specs = malloc((n < CHUNK ? n : CHUNK) * sizeof(*specs));
    if (specs == NULL) {
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto fail;
    }
    while (sent < n) {
        size_t end = sent, bytes = 0, nres = 0;

        /* Grow the chunk while it stays under CHUNK tasks and `limit`
         * bytes; a single task may exceed `limit` up to the message
         * limit. */
        while (end < n && end - sent < CHUNK) {
            size_t b = spec_bound(&tasks[end], fut[end].keylen);

            if (b > c->max_message) {
                rc = tg__error_set(TG_ETOOBIG,
                                   "task %zu ('%s') needs up to %zu bytes, "
                                   "over the %zu-byte message limit "
                                   "(tg_client_opts.max_message)",
                                   end, fut[end].key, b, c->max_message);
                goto fail;
            }
            if (end > sent && bytes + b > limit)
                break;
            bytes += b;
            nres += tasks[end].nresources;
            end++;
        }
        if (nres > maxres) {
            taskgrid_v1_Resource *nr = realloc(res, nres * sizeof(*nr));
            if (nr == NULL) {
                rc = tg__error_set(TG_ENOMEM, "out of memory");
                goto fail;
            }
            res = nr;
            maxres = nres;
        }
        rc = submit_chunk(c, tasks, fut, sent, end, specs, res, rel, nrel);
        /* The scheduler applies the releases even when it refuses the
         * batch; on a transport failure they are lost, as a failed
         * Release call's would be (it costs memory, not correctness). */
        nrel = 0;
        if (rc != TG_OK)
            goto fail;
        sent = end;
    }
    free(specs);
    free(res);
    free(rel);
    free(rel_arena);
    for (size_t i = 0; i < n; i++)
        futures[i] = &fut[i];
    return TG_OK;

fail:
    /*
     * Free every future. Keys of chunks the scheduler accepted are
     * released (the normal path); keys never accepted are only dropped:
     * releasing them could drop a task another client submitted under the
     * same key.
     */
    if (nrel)
        send_releases(c, rel_arena, nrel);
    free(rel);
    free(rel_arena);
    free(specs);
    free(res);
    tg__futures_discard(fut, n, sent);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Gather                                                              */
/* ------------------------------------------------------------------ */

/* Open one Gather stream for keys [from, from + n) of the map. */
static int gather_open(tg_client *c, const tg__gmap *m, size_t from,
                       size_t n, int64_t timeout_ms, int64_t remaining,
                       tg__cstream **out)
{
    taskgrid_v1_GatherRequest req;
    uint8_t *buf = NULL, *junk = NULL;
    size_t len = 0, junklen = 0;
    int64_t call_ms;
    int rc, rc2;

    memset(&req, 0, sizeof(req));
    *out = NULL;
    req.keys_count = (pb_size_t)n;
    req.keys = m->keys + from;
    if (timeout_ms == 0) {
        /* A poll: the scheduler answers with the current states. */
        req.no_wait = true;
        call_ms = c->timeout_ms;
    } else if (timeout_ms < 0) {
        call_ms = 0; /* no deadline */
    } else {
        /* The scheduler answers pending keys with their state when its
         * limit passes; the call's own deadline leaves it time to. */
        req.timeout_ms =
            (uint32_t)(remaining > UINT32_MAX ? UINT32_MAX : remaining);
        if (req.timeout_ms == 0)
            req.timeout_ms = 1;
        call_ms = remaining + GATHER_GRACE_MS;
    }
    if (tg__wire_encode(taskgrid_v1_GatherRequest_fields, &req, &buf, &len) !=
        TG_OK)
        return tg__error_set(TG_EINTERNAL, "Gather: %s", tg_error_last());
    /* Request and half-close in one batch: no wait before the first
     * response. */
    rc = tg__cstream_open_request(out, c->ch, TG_METHOD_GATHER, buf, len, call_ms);
    free(buf);
    if (rc != TG_OK && *out != NULL) {
        /* A failed send says little ("stream is broken"); the call's
         * status says why (unavailable, refused...). */
        rc2 = tg__cstream_recv(*out, &junk, &junklen, 1000);
        free(junk);
        if (rc2 != TG_OK && rc2 != TG_ETIMEDOUT)
            rc = rc2;
        tg__cstream_free(*out);
        *out = NULL;
    }
    return rc;
}

/* Decode and apply one GatherResponse. */
static int gather_apply(tg__gmap *m, const uint8_t *buf, size_t len)
{
    taskgrid_v1_GatherResponse resp;
    int rc;

    if (tg__wire_decode(taskgrid_v1_GatherResponse_fields, &resp, buf, len) !=
        TG_OK)
        return tg__error_set(TG_EPROTO, "Gather: %s", tg_error_last());
    rc = tg__gmap_apply(m, &resp);
    tg__wire_release(taskgrid_v1_GatherResponse_fields, &resp);
    return rc;
}

int tg_client_gather(tg_client *c, tg_future *const *fs, size_t n,
                     int64_t timeout_ms)
{
    tg__cstream *streams[GATHER_WINDOW] = {NULL};
    tg__gmap m;
    size_t nchunks, opened = 0, next = 0;
    int64_t start, deadline;
    bool timed_out = false;
    int rc;

    if ((rc = enter(c, "tg_client_gather")) != TG_OK)
        return rc;
    if (n == 0)
        return TG_OK;
    if (fs == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_gather: futures is NULL");
    if (timeout_ms < 0 && timeout_ms != TG_WAIT_FOREVER)
        return tg__error_set(TG_EINVAL,
                             "tg_client_gather: timeout %" PRId64
                             " ms (use >= 0 or TG_WAIT_FOREVER)",
                             timeout_ms);
    for (size_t i = 0; i < n; i++) {
        if (fs[i] == NULL)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_gather: future %zu is NULL", i);
        if (tg__future_shared(fs[i]) != c->sh)
            return tg__error_set(TG_EINVAL,
                                 "tg_client_gather: future '%s' belongs to "
                                 "another client",
                                 fs[i]->key);
    }
    rc = tg__gmap_init(&m, fs, n);
    if (rc != TG_OK || m.pending == 0)
        return rc;

    start = tg__now_ms();
    deadline = timeout_ms < 0 ? INT64_MAX
               : timeout_ms == 0 ? start + c->timeout_ms
                                 : start + timeout_ms;
    nchunks = (m.nkeys + CHUNK - 1) / CHUNK;
    /*
     * Up to GATHER_WINDOW streams are open at once so the scheduler
     * answers all their keys as tasks finish; we read them in order (one
     * receiver per stream), and what a later stream already answered waits
     * in its buffers, so nothing is lost and no key costs a round trip.
     */
    while (next < nchunks) {
        size_t slot = next % GATHER_WINDOW;

        while (!timed_out && opened < nchunks &&
               opened - next < GATHER_WINDOW) {
            int64_t now = tg__now_ms();
            size_t from = opened * CHUNK;
            size_t cnt = m.nkeys - from < CHUNK ? m.nkeys - from : CHUNK;

            if (timeout_ms > 0 && now >= deadline) {
                timed_out = true;
                break;
            }
            rc = gather_open(c, &m, from, cnt, timeout_ms, deadline - now,
                             &streams[opened % GATHER_WINDOW]);
            if (rc != TG_OK)
                goto cleanup;
            opened++;
        }
        if (next >= opened)
            break; /* timed out before this chunk was asked for */
        for (;;) {
            uint8_t *buf = NULL;
            size_t len = 0;
            int64_t wait;

            if (deadline == INT64_MAX) {
                wait = -1;
            } else {
                wait = deadline + GATHER_GRACE_MS - tg__now_ms();
                if (wait < 0)
                    wait = 0;
            }
            rc = tg__cstream_recv(streams[slot], &buf, &len, wait);
            if (rc == TG_OK && buf != NULL) {
                rc = gather_apply(&m, buf, len);
                free(buf);
                if (rc != TG_OK)
                    goto cleanup;
                continue;
            }
            if (rc == TG_OK)
                break; /* every key of this stream answered */
            if (rc == TG_ETIMEDOUT) {
                /* Our limit passed, or the scheduler's (it then sent the
                 * current states and ended the call): either way, stop. */
                timed_out = true;
                rc = TG_OK;
                break;
            }
            goto cleanup;
        }
        tg__cstream_free(streams[slot]);
        streams[slot] = NULL;
        next++;
    }
    if (m.pending > 0 && timed_out)
        rc = tg__error_set(TG_ETIMEDOUT,
                           "%zu of %zu keys not finished after %" PRId64
                           " ms",
                           m.pending, m.nkeys, tg__now_ms() - start);
    else if (m.pending > 0 && timeout_ms == 0)
        rc = tg__error_set(TG_ETIMEDOUT, "%zu of %zu keys not finished yet",
                           m.pending, m.nkeys);
    else if (m.pending > 0)
        rc = tg__error_set(TG_EPROTO,
                           "the scheduler ended Gather with %zu of %zu keys "
                           "unanswered",
                           m.pending, m.nkeys);

cleanup:
    for (size_t i = 0; i < GATHER_WINDOW; i++)
        tg__cstream_free(streams[i]);
    tg__gmap_free(&m);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Cancel, release, annotate, scale                                    */
/* ------------------------------------------------------------------ */

static int check_keys(const char *what, const char *const *keys, size_t n)
{
    if (n > 0 && keys == NULL)
        return tg__error_set(TG_EINVAL, "%s: keys is NULL", what);
    for (size_t i = 0; i < n; i++)
        if (keys[i] == NULL || keys[i][0] == '\0')
            return tg__error_set(TG_EINVAL, "%s: key %zu is empty", what,
                                 i);
    return TG_OK;
}

int tg_client_cancel(tg_client *c, const char *const *keys, size_t n,
                     uint32_t *count)
{
    uint32_t total = 0;
    int rc;

    if (count)
        *count = 0;
    if ((rc = enter(c, "tg_client_cancel")) != TG_OK ||
        (rc = check_keys("tg_client_cancel", keys, n)) != TG_OK)
        return rc;
    for (size_t i = 0; i < n; i += CHUNK) {
        taskgrid_v1_CancelRequest req;
        taskgrid_v1_CancelResponse resp;
        uint8_t *raw;

        memset(&req, 0, sizeof(req));
        req.keys_count = (pb_size_t)(n - i < CHUNK ? n - i : CHUNK);
        req.keys = (char **)(uintptr_t)(keys + i);
        rc = unary(c, TG_METHOD_CANCEL, taskgrid_v1_CancelRequest_fields, &req,
                   taskgrid_v1_CancelResponse_fields, &resp, &raw,
                   c->timeout_ms);
        if (rc != TG_OK)
            return rc;
        total += resp.cancelled;
        tg__wire_release(taskgrid_v1_CancelResponse_fields, &resp);
        free(raw);
    }
    if (count)
        *count = total;
    return TG_OK;
}

int tg_client_release(tg_client *c, const char *const *keys, size_t n)
{
    int rc;

    if ((rc = enter(c, "tg_client_release")) != TG_OK ||
        (rc = check_keys("tg_client_release", keys, n)) != TG_OK)
        return rc;
    return release_keys(c, (char *const *)(uintptr_t)keys, n);
}

int tg_client_annotate(tg_client *c, const char *const *keys, size_t n,
                       const tg_annotation *a, uint32_t *changed)
{
    taskgrid_v1_Resource *res = NULL;
    uint32_t total = 0;
    int rc;

    if (changed)
        *changed = 0;
    if ((rc = enter(c, "tg_client_annotate")) != TG_OK ||
        (rc = check_keys("tg_client_annotate", keys, n)) != TG_OK)
        return rc;
    if (a == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_annotate: no annotation");
    if (a->version != TG_ANNOTATION_VERSION)
        return tg__error_set(TG_EINVAL,
                             "tg_annotation version %" PRIu32
                             " is not supported (expected %d; initialise "
                             "with TG_ANNOTATION_INIT)",
                             a->version, TG_ANNOTATION_VERSION);
    if (a->set_resources &&
        (rc = check_resources("annotation", 0, a->resources,
                              a->nresources)) != TG_OK)
        return rc;
    if (a->set_resources && a->nresources > 0) {
        res = calloc(a->nresources, sizeof(*res));
        if (res == NULL)
            return tg__error_set(TG_ENOMEM, "out of memory");
        for (size_t r = 0; r < a->nresources; r++) {
            res[r].name = tg_pbbuf_str(a->resources[r].name);
            res[r].amount = a->resources[r].amount;
        }
    }
    for (size_t i = 0; i < n; i += CHUNK) {
        taskgrid_v1_AnnotateRequest req;
        taskgrid_v1_AnnotateResponse resp;
        uint8_t *raw;

        memset(&req, 0, sizeof(req));
        req.keys_count = (pb_size_t)(n - i < CHUNK ? n - i : CHUNK);
        req.keys = (char **)(uintptr_t)(keys + i);
        req.has_annotation = true;
        req.annotation.has_priority = a->set_priority;
        req.annotation.priority = a->priority;
        req.annotation.has_resources = a->set_resources;
        req.annotation.resources_count =
            (pb_size_t)(a->set_resources ? a->nresources : 0);
        req.annotation.resources = res;
        req.annotation.has_retries = a->set_retries;
        req.annotation.retries = a->retries;
        rc = unary(c, TG_METHOD_ANNOTATE, taskgrid_v1_AnnotateRequest_fields, &req,
                   taskgrid_v1_AnnotateResponse_fields, &resp, &raw,
                   c->timeout_ms);
        if (rc != TG_OK)
            break;
        total += resp.changed;
        tg__wire_release(taskgrid_v1_AnnotateResponse_fields, &resp);
        free(raw);
    }
    free(res);
    if (rc == TG_OK && changed)
        *changed = total;
    return rc;
}

static int scale_call(tg_client *c, const taskgrid_v1_ScaleRequest *req,
                      uint32_t *workers_now)
{
    taskgrid_v1_ScaleResponse resp;
    uint8_t *raw;
    int rc;

    rc = unary(c, TG_METHOD_SCALE, taskgrid_v1_ScaleRequest_fields, req,
               taskgrid_v1_ScaleResponse_fields, &resp, &raw, c->timeout_ms);
    if (rc != TG_OK)
        return rc;
    if (workers_now)
        *workers_now = resp.workers;
    tg__wire_release(taskgrid_v1_ScaleResponse_fields, &resp);
    free(raw);
    return TG_OK;
}

int tg_client_scale(tg_client *c, uint32_t n, uint32_t *workers_now)
{
    taskgrid_v1_ScaleRequest req;
    int rc;

    memset(&req, 0, sizeof(req));
    if (workers_now)
        *workers_now = 0;
    if ((rc = enter(c, "tg_client_scale")) != TG_OK)
        return rc;
    req.workers = n;
    return scale_call(c, &req, workers_now);
}

int tg_client_adapt(tg_client *c, uint32_t minimum, uint32_t maximum)
{
    taskgrid_v1_ScaleRequest req;
    int rc;

    memset(&req, 0, sizeof(req));
    if ((rc = enter(c, "tg_client_adapt")) != TG_OK)
        return rc;
    if (maximum == 0 || minimum > maximum)
        return tg__error_set(TG_EINVAL,
                             "tg_client_adapt: need 0 <= minimum <= maximum "
                             "and maximum > 0 (got %" PRIu32 "..%" PRIu32 ")",
                             minimum, maximum);
    req.minimum = minimum;
    req.maximum = maximum;
    return scale_call(c, &req, NULL);
}

/* ------------------------------------------------------------------ */
/* Status                                                              */
/* ------------------------------------------------------------------ */

typedef struct report_worker {
    const char *name; /* in the report's arena */
    uint32_t nthreads;
    uint32_t processing;
    bool draining;
} report_worker;

struct tg_status_report {
    size_t nworkers;
    report_worker *workers;
    uint64_t counts[TG_TASK_RELEASED + 1];
    uint64_t unplaceable;
    const char *version;
    char *arena;
};

static int status_call(tg_client *c, const char *key,
                       taskgrid_v1_StatusResponse *resp, uint8_t **raw)
{
    taskgrid_v1_StatusRequest req;
    char *keys[1];

    memset(&req, 0, sizeof(req));
    if (key != NULL) {
        keys[0] = (char *)(uintptr_t)key;
        req.keys_count = 1;
        req.keys = keys;
    }
    return unary(c, TG_METHOD_STATUS, taskgrid_v1_StatusRequest_fields, &req,
                 taskgrid_v1_StatusResponse_fields, resp, raw, c->timeout_ms);
}

int tg_client_status(tg_client *c, tg_status_report **out)
{
    taskgrid_v1_StatusResponse resp;
    tg_status_report *r = NULL;
    uint8_t *raw = NULL;
    size_t bytes;
    char *p;
    int rc;

    if (out == NULL)
        return tg__error_set(TG_EINVAL, "tg_client_status: out is NULL");
    *out = NULL;
    if ((rc = enter(c, "tg_client_status")) != TG_OK)
        return rc;
    rc = status_call(c, NULL, &resp, &raw);
    if (rc != TG_OK)
        return rc;
    bytes = resp.version.len + 1;
    for (pb_size_t i = 0; i < resp.workers_count; i++)
        bytes += resp.workers[i].name.len + 1;
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->arena = malloc(bytes);
        r->workers = calloc(resp.workers_count ? resp.workers_count : 1,
                            sizeof(*r->workers));
    }
    if (r == NULL || r->arena == NULL || r->workers == NULL) {
        tg_status_report_free(r);
        rc = tg__error_set(TG_ENOMEM, "out of memory");
        goto cleanup;
    }
    p = r->arena;
    r->version = put_str(&p, resp.version);
    r->nworkers = resp.workers_count;
    for (pb_size_t i = 0; i < resp.workers_count; i++) {
        const taskgrid_v1_WorkerInfo *w = &resp.workers[i];

        r->workers[i].name = put_str(&p, w->name);
        r->workers[i].nthreads = w->nthreads;
        r->workers[i].processing = w->processing;
        r->workers[i].draining = w->draining;
    }
    r->counts[TG_TASK_WAITING] = resp.waiting;
    r->counts[TG_TASK_READY] = resp.ready;
    r->counts[TG_TASK_PROCESSING] = resp.processing;
    r->counts[TG_TASK_MEMORY] = resp.memory;
    r->counts[TG_TASK_ERRED] = resp.erred;
    r->counts[TG_TASK_CANCELLED] = resp.cancelled;
    r->unplaceable = resp.unplaceable;
    *out = r;

cleanup:
    tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
    free(raw);
    return rc;
}

int tg_client_key_status(tg_client *c, const char *key, tg_task_state *state,
                         char *reason, size_t reasonlen)
{
    taskgrid_v1_StatusResponse resp;
    uint8_t *raw = NULL;
    int rc;

    if (reason && reasonlen)
        reason[0] = '\0';
    if (state)
        *state = TG_TASK_RELEASED;
    if ((rc = enter(c, "tg_client_key_status")) != TG_OK)
        return rc;
    if (key == NULL || key[0] == '\0' || state == NULL)
        return tg__error_set(TG_EINVAL,
                             "tg_client_key_status: key or state is NULL");
    rc = status_call(c, key, &resp, &raw);
    if (rc != TG_OK)
        return rc;
    for (pb_size_t i = 0; i < resp.keys_count; i++) {
        const taskgrid_v1_KeyStatus *k = &resp.keys[i];
        int st = (int)k->state;

        if (!tg_pbbuf_eq(k->key, key))
            continue;
        *state = st >= TG_TASK_WAITING && st <= TG_TASK_RELEASED
                     ? (tg_task_state)st
                     : TG_TASK_RELEASED;
        if (reason && reasonlen) {
            size_t n = k->reason.len < reasonlen - 1 ? k->reason.len
                                                     : reasonlen - 1;
            if (n)
                memcpy(reason, k->reason.ptr, n);
            reason[n] = '\0';
        }
        break;
    }
    tg__wire_release(taskgrid_v1_StatusResponse_fields, &resp);
    free(raw);
    return TG_OK;
}

size_t tg_status_report_nworkers(const tg_status_report *r)
{
    return r ? r->nworkers : 0;
}

const char *tg_status_report_worker_name(const tg_status_report *r, size_t i)
{
    return r && i < r->nworkers ? r->workers[i].name : NULL;
}

uint32_t tg_status_report_worker_nthreads(const tg_status_report *r,
                                          size_t i)
{
    return r && i < r->nworkers ? r->workers[i].nthreads : 0;
}

uint32_t tg_status_report_worker_processing(const tg_status_report *r,
                                            size_t i)
{
    return r && i < r->nworkers ? r->workers[i].processing : 0;
}

bool tg_status_report_worker_draining(const tg_status_report *r, size_t i)
{
    return r && i < r->nworkers && r->workers[i].draining;
}

uint32_t tg_status_report_nthreads(const tg_status_report *r)
{
    uint32_t n = 0;

    for (size_t i = 0; r && i < r->nworkers; i++)
        n += r->workers[i].nthreads;
    return n;
}

uint64_t tg_status_report_count(const tg_status_report *r,
                                tg_task_state state)
{
    if (r == NULL || state < TG_TASK_WAITING || state > TG_TASK_CANCELLED)
        return 0;
    return r->counts[state];
}

uint64_t tg_status_report_unplaceable(const tg_status_report *r)
{
    return r ? r->unplaceable : 0;
}

const char *tg_status_report_version(const tg_status_report *r)
{
    return r ? r->version : NULL;
}

void tg_status_report_free(tg_status_report *r)
{
    if (r == NULL)
        return;
    free(r->workers);
    free(r->arena);
    free(r);
}
