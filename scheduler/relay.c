/* SPDX-License-Identifier: Apache-2.0
 *
 * relay.c: Gather of results held on workers, through the scheduler, so
 * that clients never need a route to workers. For each such key the
 * gather gets a relay: the scheduler asks a holder for the bytes
 * (SchedulerMessage.upload {id, key}), checks every chunk the holder
 * sends back (WorkerMessage.chunks with that id: in order, consistent
 * sizes, at most TG_PROTO_CHUNK_MAX, CRC-32, util/crc.h), and either
 * forwards each chunk to the gather stream after the key's TaskResult
 * (GatherRequest.chunked) or collects them and answers inline when the
 * result fits the message limit (else tg.ResultTooLarge). A holder lost,
 * saying it no longer has the key, or sending an inconsistent chunk ends
 * the key with an ERRED TaskResult of type tg.DataLost. The gather stream
 * ends only once every relay is done.
 *
 * Memory: the transport writes one message of a stream at a time and
 * queues the rest (tg__scall_send), so what a slow client has not read
 * yet waits in that queue. A gather runs at most RELAY_WINDOW relays at
 * once, and starts one only while fewer than RELAY_QUEUE_MAX messages
 * wait to be written to its stream (srv_relay_tick retries after each
 * write). A holder sends an upload as fast as it can (the protocol has
 * no credit), so the scheduler holds at most what the gather's stream has
 * not written yet of its active relays: up to RELAY_WINDOW results for a
 * client slower than the workers (for chunked=false, each result is at
 * most the message limit). Bounding that below one result needs uploads
 * by range, a protocol change. Depends on sched.h (dispatch.c, server.c),
 * proto/wire.h and util/crc.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "sched.h"
#include "util/array.h"
#include "util/crc.h"
#include "util/log.h"

/* Relays uploading at once per gather. */
#define RELAY_WINDOW 4
/* Start another relay only while fewer messages (of at most about a
 * chunk each) wait to be written to the gather's stream. */
#define RELAY_QUEUE_MAX 8

typedef struct relay {
    struct relay *prev, *next; /* in its gather's list */
    peer *g;
    uint64_t id;     /* upload id once started, else 0 */
    uint64_t holder; /* the worker asked */
    char *key;
    char *codec;
    uint64_t size;
    uint64_t next_offset; /* bytes received so far */
    uint32_t attempt;
    uint8_t *buf; /* chunked=false: the bytes collected */
} relay;

/* ---- the table of uploads (by id) ---- */

static size_t upload_index(const sched *s, uint64_t id)
{
    size_t lo = 0, hi = s->nuploads;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->uploads[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->nuploads && s->uploads[lo]->id == id ? lo : SIZE_MAX;
}

static void upload_remove(sched *s, const relay *r)
{
    size_t i = upload_index(s, r->id);

    if (i == SIZE_MAX)
        return;
    memmove(&s->uploads[i], &s->uploads[i + 1],
            (s->nuploads - i - 1) * sizeof(*s->uploads));
    s->nuploads--;
}

/* ---- answers on the gather stream ---- */

/* Append one GatherResponse of about `approx` bytes to `g`'s buffer, in
 * a message of its own when it is large, so no message outgrows the
 * limit by riding with others. */
static void gather_put(sched *s, peer *g, const taskgrid_v1_GatherResponse *m,
                       size_t approx)
{
    if (g->out.count > 0 && g->out.len + approx > FLUSH_BYTES)
        srv_flush_peer(g);
    if (tg__wire_append(taskgrid_v1_GatherResponse_fields, m, &g->out.p,
                        &g->out.len, &g->out.cap) != TG_OK) {
        TG_LOG_ERROR("cannot encode an answer for a gather");
        return;
    }
    g->out.count++;
    srv_mark_dirty(s, g);
    if (g->out.len >= FLUSH_BYTES)
        srv_flush_peer(g);
}

static void put_result(sched *s, peer *g, const taskgrid_v1_TaskResult *r,
                       size_t approx)
{
    taskgrid_v1_GatherResponse m = {0};

    m.results_count = 1;
    m.results = (taskgrid_v1_TaskResult *)r;
    gather_put(s, g, &m, approx);
}

/* Answer `key` ERRED with `type` and `msg` (no data). */
static void put_error(sched *s, peer *g, const char *key, uint32_t attempt,
                      const char *type, const char *msg)
{
    taskgrid_v1_TaskResult r;

    memset(&r, 0, sizeof(r));
    r.key = tg_pbbuf_str(key);
    r.state = taskgrid_v1_TaskState_TASK_STATE_ERRED;
    r.attempt = attempt;
    r.has_error = true;
    r.error.type = tg_pbbuf_str(type);
    r.error.message = tg_pbbuf_str(msg);
    put_result(s, g, &r, 0);
}

/* ---- relays ---- */

static void relay_free(relay *r)
{
    free(r->key);
    free(r->codec);
    free(r->buf);
    free(r);
}

/* `r` is done (answered, or its gather is gone): out of its gather's
 * list and of the uploads; one key less outstanding. */
static void relay_finish(sched *s, relay *r)
{
    peer *g = r->g;

    if (r->prev)
        r->prev->next = r->next;
    else
        g->rhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        g->rtail = r->prev;
    if (r->id != 0) {
        upload_remove(s, r);
        g->nactive--;
    }
    if (g->outstanding > 0)
        g->outstanding--;
    s->nrelays--;
    relay_free(r);
}

/* Start relays while the gather's window and stream allow. */
static void gather_pump(sched *s, peer *g);

/* `r` is done: its gather may start the next or end. */
static void relay_done(sched *s, relay *r)
{
    peer *g = r->g;

    relay_finish(s, r);
    gather_pump(s, g);
    srv_gather_maybe_finish(s, g);
}

/* End `r` with tg.DataLost (`why`, naming the key and the worker). */
static void relay_lost(sched *s, relay *r, const char *why)
{
    TG_LOG_WARN("gather of '%s': %s", r->key, why);
    put_error(s, r->g, r->key, r->attempt, "tg.DataLost", why);
    relay_done(s, r);
}

/* The first holder of `t` with a connected worker, or NULL. */
static peer *holder_of(sched *s, const tgs_task *t)
{
    for (size_t i = 0; i < tgs_task_nholders(t); i++) {
        uint64_t wid;
        peer *w;
        if (tgs_task_holder(t, i, &wid) &&
            (w = srv_table_find(&s->workers, wid)) != NULL)
            return w;
    }
    return NULL;
}

/* Could `r` be answered inline (chunked=false): the result, its key and
 * codec in one message under the limit. */
static bool fits_inline(const sched *s, const relay *r)
{
    size_t max = srv_max_message(s);
    size_t extra = strlen(r->key) + strlen(r->codec) + 64;

    return r->size <= max && max - r->size >= extra;
}

/*
 * Start relay `r`: the task is looked up again (it may have been lost or
 * forgotten since), then a holder is asked for the bytes. False when `r`
 * was answered at once (the caller finishes it).
 */
static bool relay_start(sched *s, relay *r)
{
    const tgs_task *t = tgs_core_find(s->core, CS(r->key));
    taskgrid_v1_SchedulerMessage m = {0};
    taskgrid_v1_Upload u = {0};
    char msg[600];
    peer *w;

    if (t == NULL) {
        snprintf(msg, sizeof(msg),
                 "result '%.400s' was released before it could be gathered",
                 r->key);
        put_error(s, r->g, r->key, r->attempt, "tg.DataLost", msg);
        return false;
    }
    if (!tgs_task_held(t)) { /* lost meanwhile: its current state */
        taskgrid_v1_TaskResult res;
        srv_fill_result(&res, t);
        put_result(s, r->g, &res, 0);
        return false;
    }
    if (!r->g->chunked && !fits_inline(s, r)) {
        snprintf(msg, sizeof(msg),
                 "result '%.400s' is %llu bytes, more than fits in one "
                 "message (limit %zu bytes); gather it in chunks "
                 "(GatherRequest.chunked)",
                 r->key, (unsigned long long)r->size, srv_max_message(s));
        put_error(s, r->g, r->key, r->attempt, "tg.ResultTooLarge", msg);
        return false;
    }
    w = holder_of(s, t);
    if (w == NULL) {
        snprintf(msg, sizeof(msg),
                 "no connected worker holds result '%.400s' any more", r->key);
        put_error(s, r->g, r->key, r->attempt, "tg.DataLost", msg);
        return false;
    }
    if (!r->g->chunked && (r->buf = malloc((size_t)r->size)) == NULL) {
        snprintf(msg, sizeof(msg),
                 "the scheduler has no memory for the %llu bytes of result "
                 "'%.400s'; gather it in chunks (GatherRequest.chunked)",
                 (unsigned long long)r->size, r->key);
        put_error(s, r->g, r->key, r->attempt, "tg.ResultTooLarge", msg);
        return false;
    }
    if (tg__array_grow(&s->uploads, &s->capuploads, s->nuploads + 1,
                       sizeof(*s->uploads)) != TG_OK) {
        put_error(s, r->g, r->key, r->attempt, "tg.DataLost",
                  "the scheduler is out of memory");
        return false;
    }
    if (r->g->chunked) { /* the key's TaskResult, then its chunks */
        taskgrid_v1_TaskResult head;
        memset(&head, 0, sizeof(head));
        head.key = tg_pbbuf_str(r->key);
        head.state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        head.codec = tg_pbbuf_str(r->codec);
        head.size = r->size;
        head.attempt = r->attempt;
        put_result(s, r->g, &head, 0);
    }
    r->id = ++s->next_upload; /* the largest: the table stays sorted */
    r->holder = w->id;
    s->uploads[s->nuploads++] = r;
    r->g->nactive++;
    u.id = r->id;
    u.key = tg_pbbuf_str(r->key);
    m.upload_count = 1;
    m.upload = &u;
    srv_worker_append(s, w, &m);
    TG_LOG_DEBUG("gather of '%s': upload %llu asked of worker %s", r->key,
                 (unsigned long long)r->id, w->name);
    return true;
}

/* Messages waiting to be written to the gather's stream. */
static size_t gather_backlog(const peer *g)
{
    return tg__scall_pending(g->call) + (g->out.count > 0 ? 1 : 0);
}

static void gather_pump(sched *s, peer *g)
{
    relay *r = g->rhead, *next;

    for (; r != NULL; r = next) {
        next = r->next;
        if (r->id != 0)
            continue;
        if (g->finished || g->nactive >= RELAY_WINDOW ||
            gather_backlog(g) >= RELAY_QUEUE_MAX)
            break; /* srv_relay_tick looks again */
        if (!relay_start(s, r))
            relay_finish(s, r);
    }
}

void srv_gather_answer(sched *s, peer *g, const tgs_task *t)
{
    taskgrid_v1_TaskResult res;
    tgs_str key = tgs_task_key(t), codec;
    relay *r;

    if (!tgs_task_held(t) || tgs_task_result_size(t) == 0) {
        srv_fill_result(&res, t); /* an empty held result is inline too */
        srv_gather_append(s, g, &res);
        return;
    }
    if (g->defer_held) { /* done, and where: the bytes stay put */
        srv_fill_result(&res, t);
        res.size = tgs_task_result_size(t);
        res.held = true;
        if (!srv_fill_holders(s, &res, t))
            TG_LOG_ERROR("out of memory listing the holders of a result");
        srv_gather_append(s, g, &res);
        free(res.holders);
        return;
    }
    codec = tgs_task_result_codec(t);
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->key = strndup(key.ptr, key.len);
        r->codec = strndup(codec.ptr, codec.len);
    }
    if (r == NULL || r->key == NULL || r->codec == NULL) {
        char k[TG_PROTO_KEY_MAX + 1];
        snprintf(k, sizeof(k), "%.*s", (int)key.len, key.ptr);
        put_error(s, g, k, tgs_task_attempt(t), "tg.DataLost",
                  "the scheduler is out of memory");
        if (r != NULL)
            relay_free(r);
        return;
    }
    r->g = g;
    r->size = tgs_task_result_size(t);
    r->attempt = tgs_task_attempt(t);
    r->prev = g->rtail;
    if (g->rtail)
        g->rtail->next = r;
    else
        g->rhead = r;
    g->rtail = r;
    g->outstanding++;
    s->nrelays++;
    gather_pump(s, g);
}

/* ---- what holders send ---- */

/* Is `c` the next chunk of `r`; else why not, in `why`. */
static bool chunk_ok(const relay *r, const taskgrid_v1_DataChunk *c, char *why,
                     size_t len)
{
    if (c->key.len > 0 && !tg_pbbuf_eq(c->key, r->key)) {
        snprintf(why, len, "a chunk of key '%.*s'",
                 (int)(c->key.len > 200 ? 200 : c->key.len),
                 (const char *)c->key.ptr);
        return false;
    }
    if (c->size != r->size) {
        snprintf(why, len, "a chunk of size %llu (expected %llu)",
                 (unsigned long long)c->size, (unsigned long long)r->size);
        return false;
    }
    if (c->offset != r->next_offset) {
        snprintf(why, len, "a chunk at offset %llu (expected %llu)",
                 (unsigned long long)c->offset,
                 (unsigned long long)r->next_offset);
        return false;
    }
    if (c->data.len == 0 || c->data.len > TG_PROTO_CHUNK_MAX ||
        c->data.len > r->size - r->next_offset) {
        snprintf(why, len, "a chunk of %zu bytes at offset %llu", c->data.len,
                 (unsigned long long)c->offset);
        return false;
    }
    if (tg__crc32(c->data.ptr, c->data.len) != c->crc32) {
        snprintf(why, len, "a chunk at offset %llu whose CRC-32 does not match",
                 (unsigned long long)c->offset);
        return false;
    }
    return true;
}

/* The last chunk of `r` came: answer inline (chunked=false), done. */
static void relay_complete(sched *s, relay *r)
{
    if (r->buf != NULL) {
        taskgrid_v1_TaskResult res;
        memset(&res, 0, sizeof(res));
        res.key = tg_pbbuf_str(r->key);
        res.state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        res.data = tg_pbbuf_mem(r->buf, (size_t)r->size);
        res.codec = tg_pbbuf_str(r->codec);
        res.size = r->size;
        res.attempt = r->attempt;
        put_result(s, r->g, &res, (size_t)r->size);
    }
    TG_LOG_DEBUG("gather of '%s': %llu bytes relayed", r->key,
                 (unsigned long long)r->size);
    relay_done(s, r);
}

static void on_chunk(sched *s, peer *w, const taskgrid_v1_DataChunk *c)
{
    size_t i = upload_index(s, c->upload);
    char why[300], msg[800];
    relay *r;

    if (i == SIZE_MAX || s->uploads[i]->holder != w->id) {
        /* A gather that ended, or an upload asked of another worker. */
        TG_LOG_DEBUG("ignoring a chunk for upload %llu from worker %s",
                     (unsigned long long)c->upload, w->name);
        return;
    }
    r = s->uploads[i];
    if (!chunk_ok(r, c, why, sizeof(why))) {
        snprintf(msg, sizeof(msg),
                 "worker %s sent %s of result '%.300s', which is %llu bytes",
                 w->name, why, r->key, (unsigned long long)r->size);
        relay_lost(s, r, msg);
        return;
    }
    if (r->buf != NULL) {
        memcpy(r->buf + r->next_offset, c->data.ptr, c->data.len);
    } else {
        taskgrid_v1_GatherResponse m = {0};
        taskgrid_v1_DataChunk out = *c;
        out.key = tg_pbbuf_str(r->key);
        out.codec = tg_pbbuf_str(r->codec);
        out.upload = 0;
        m.chunks_count = 1;
        m.chunks = &out;
        gather_put(s, r->g, &m, c->data.len);
    }
    r->next_offset += c->data.len;
    if (r->next_offset == r->size)
        relay_complete(s, r);
}

/* `w` does not hold `key`: its uploads of it end with tg.DataLost. */
static void on_missing(sched *s, peer *w, const char *key)
{
    char msg[800];

    for (size_t i = 0; i < s->nuploads;) {
        relay *r = s->uploads[i];
        if (r->holder != w->id || strcmp(r->key, key) != 0) {
            i++;
            continue;
        }
        snprintf(msg, sizeof(msg),
                 "worker %s no longer has result '%.300s' (%llu of %llu bytes "
                 "relayed)",
                 w->name, r->key, (unsigned long long)r->next_offset,
                 (unsigned long long)r->size);
        relay_lost(s, r, msg); /* out of the table: same i */
    }
}

void srv_relay_message(sched *s, peer *w, const taskgrid_v1_WorkerMessage *m)
{
    for (pb_size_t i = 0; i < m->chunks_count; i++)
        on_chunk(s, w, &m->chunks[i]);
    for (pb_size_t i = 0; i < m->missing_count; i++)
        on_missing(s, w, m->missing[i]);
}

void srv_relay_worker_lost(sched *s, uint64_t wid, const char *name)
{
    char msg[800];

    for (size_t i = 0; i < s->nuploads;) {
        relay *r = s->uploads[i];
        if (r->holder != wid) {
            i++;
            continue;
        }
        snprintf(msg, sizeof(msg),
                 "worker %s, which held result '%.300s', was lost while "
                 "sending it (%llu of %llu bytes relayed)",
                 name, r->key, (unsigned long long)r->next_offset,
                 (unsigned long long)r->size);
        relay_lost(s, r, msg); /* new uploads never go to it: same i */
    }
}

void srv_relay_gather_gone(sched *s, peer *g)
{
    while (g->rhead != NULL)
        relay_finish(s, g->rhead);
}

void srv_relay_tick(sched *s)
{
    if (s->nrelays == 0)
        return;
    for (size_t i = 0; i < s->gathers.n; i++) {
        peer *g = s->gathers.v[i];
        if (g->rhead != NULL && !g->finished) {
            gather_pump(s, g);
            srv_gather_maybe_finish(s, g);
        }
    }
}
