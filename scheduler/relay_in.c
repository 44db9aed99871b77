/* SPDX-License-Identifier: Apache-2.0
 *
 * relay_in.c: what holders send for the Gather relays (relay.c). Every
 * chunk is checked (the upload's key and size, the next offset, inside
 * the range asked, at most TG_PROTO_CHUNK_MAX, its CRC-32), then
 * forwarded to the gather after the key's TaskResult, or collected for an
 * inline answer. The CRC-32 and length of every chunk forwarded are kept
 * (8 bytes per chunk of up to 1 MiB).
 *
 * A holder that fails a relay (lost, saying it no longer has the key, or
 * sending a bad chunk: then the core counts it as no longer holding the
 * key, and it is told to drop its copy) is replaced without ending the
 * key while the result can still be had: the relay goes on from the same
 * offset with another holder (same bytes), or waits while lineage
 * computes the result again. A recomputed result (its task's attempt
 * changed) of which nothing was sent yet simply replaces the old one;
 * else it must have the size and codec already announced, and its bytes
 * up to what was forwarded must match the kept CRC-32s (a deterministic
 * task gives the same bytes) before the relay goes on; if not, the key
 * ends with tg.DataLost saying the result differs from what was already
 * sent and to gather it again (the recomputed result stays, so a new
 * gather gets it whole). Only a result that cannot be had any more
 * (released, its inputs forgotten, lost allowed_failures times: the
 * core's error) ends the key with its error. Waiting is bounded by the
 * gather's deadline. Depends on relay.h, sched.h and proto/wire.h.
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/crc.h"
#include "util/log.h"

/* Is `c` the next chunk of `r`, inside the range asked; else why not,
 * in `why`. */
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
    if (c->offset != r->pos) {
        snprintf(why, len, "a chunk at offset %llu (expected %llu)",
                 (unsigned long long)c->offset, (unsigned long long)r->pos);
        return false;
    }
    if (c->data.len == 0 || c->data.len > TG_PROTO_CHUNK_MAX ||
        c->data.len > r->asked - r->pos) {
        snprintf(why, len,
                 "a chunk of %zu bytes at offset %llu, outside the range "
                 "asked (bytes %llu to %llu)",
                 c->data.len, (unsigned long long)c->offset,
                 (unsigned long long)r->pos, (unsigned long long)r->asked);
        return false;
    }
    if (tg__crc32(c->data.ptr, c->data.len) != c->crc32) {
        snprintf(why, len, "a chunk at offset %llu whose CRC-32 does not match",
                 (unsigned long long)c->offset);
        return false;
    }
    return true;
}

/* Forward `len` bytes of `r` at `off` (`crc` their CRC-32), after the
 * key's TaskResult the first time; their CRC-32 is kept. False when out
 * of memory (nothing sent). */
static bool forward(sched *s, relay *r, uint64_t off, const uint8_t *p,
                    size_t len, uint32_t crc)
{
    taskgrid_v1_GatherResponse m = {0};
    taskgrid_v1_DataChunk out;

    if (tg__array_grow(&r->segs, &r->capsegs, r->nsegs + 1, sizeof(*r->segs)) !=
        TG_OK)
        return false;
    if (!r->head_sent) {
        taskgrid_v1_TaskResult head;
        memset(&head, 0, sizeof(head));
        head.key = tg_pbbuf_str(r->key);
        head.state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        head.codec = tg_pbbuf_str(r->codec);
        head.size = r->size;
        head.attempt = r->attempt;
        m.results_count = 1;
        m.results = &head;
        relay_gather_put(s, r->g, &m, 0);
        memset(&m, 0, sizeof(m));
        r->head_sent = true;
    }
    memset(&out, 0, sizeof(out));
    out.key = tg_pbbuf_str(r->key);
    out.offset = off;
    out.data = tg_pbbuf_mem(p, len);
    out.size = r->size;
    out.codec = tg_pbbuf_str(r->codec);
    out.crc32 = crc;
    m.chunks_count = 1;
    m.chunks = &out;
    relay_gather_put(s, r->g, &m, len);
    r->segs[r->nsegs].len = (uint32_t)len;
    r->segs[r->nsegs].crc = crc;
    r->nsegs++;
    return true;
}

/* Compare `len` more bytes of a recomputed result with the chunks
 * forwarded before (r->vseg on). */
static bool check(relay *r, const uint8_t *p, size_t len)
{
    while (len > 0) {
        const relay_seg *sg;
        size_t n;
        if (r->vseg >= r->nsegs)
            return false;
        sg = &r->segs[r->vseg];
        n = sg->len - r->vlen < len ? sg->len - r->vlen : len;
        r->vcrc = tg__crc32_update(r->vcrc, p, n);
        r->vlen += (uint32_t)n;
        p += n;
        len -= n;
        if (r->vlen == sg->len) {
            if (r->vcrc != sg->crc)
                return false;
            r->vseg++;
            r->vcrc = r->vlen = 0;
        }
    }
    return true;
}

void relay_differs(sched *s, relay *r, const char *what)
{
    char msg[800];

    snprintf(msg, sizeof(msg),
             "the result of '%.300s' was lost with its holder and computed "
             "again, and the recomputed result differs from what was already "
             "sent (%s; %llu of %llu bytes sent): the task is not "
             "deterministic; gather it again to get the new result whole",
             r->key, what, (unsigned long long)r->done,
             (unsigned long long)r->size);
    relay_put_error(s, r, "tg.DataLost", msg);
}

/* The last byte of `r` came: answer inline (chunked=false). */
static void relay_complete(sched *s, relay *r)
{
    if (r->buf != NULL) {
        taskgrid_v1_GatherResponse m = {0};
        taskgrid_v1_TaskResult res;
        memset(&res, 0, sizeof(res));
        res.key = tg_pbbuf_str(r->key);
        res.state = taskgrid_v1_TaskState_TASK_STATE_MEMORY;
        res.data = tg_pbbuf_mem(r->buf, (size_t)r->size);
        res.codec = tg_pbbuf_str(r->codec);
        res.size = r->size;
        res.attempt = r->attempt;
        m.results_count = 1;
        m.results = &res;
        relay_gather_put(s, r->g, &m, (size_t)r->size);
    }
    if (tg__log_enabled(TG__LOG_DEBUG)) {
        char q[256];
        TG_LOG_DEBUG("gather of key=%s: %llu bytes relayed",
                     tg__log_quote(q, sizeof(q), r->key, strlen(r->key), 200),
                     (unsigned long long)r->size);
    }
}

/* Take `len` checked bytes at r->pos (`crc` their CRC-32): compared with
 * those forwarded before (a recomputed result), collected, or forwarded.
 * `r` is done (and freed) once complete or failed. */
static void relay_take(sched *s, relay *r, const uint8_t *p, size_t len,
                       uint32_t crc)
{
    if (r->buf == NULL) {
        r->g->rinflight -= len;
        s->relay_inflight -= len;
    }
    if (r->pos < r->done) {
        if (!check(r, p, len)) {
            relay_differs(s, r, "its bytes");
            relay_done(s, r);
            return;
        }
        r->pos += len;
        if (r->pos == r->done)
            TG_LOG_INFO("gather of '%s': the recomputed result matches the "
                        "%llu bytes already sent; going on",
                        r->key, (unsigned long long)r->done);
        return;
    }
    if (r->buf != NULL) {
        memcpy(r->buf + r->pos, p, len);
    } else if (!forward(s, r, r->pos, p, len, crc)) {
        relay_put_error(s, r, "tg.DataLost", "the scheduler is out of memory");
        relay_done(s, r);
        return;
    }
    r->pos += len;
    r->done = r->pos;
    if (r->done == r->size) {
        relay_complete(s, r);
        relay_done(s, r);
    }
}

void relay_take_inline(sched *s, relay *r, const uint8_t *p, size_t len)
{
    if (len != r->size) {
        relay_differs(s, r, "its size");
        return;
    }
    r->pos = 0;
    r->vseg = 0;
    r->vcrc = r->vlen = 0;
    if (!check(r, p, (size_t)r->done)) {
        relay_differs(s, r, "its bytes");
        return;
    }
    for (uint64_t off = r->done; off < r->size; off += TG_PROTO_CHUNK_MAX) {
        size_t n =
            (size_t)(r->size - off < TG_PROTO_CHUNK_MAX ? r->size - off
                                                        : TG_PROTO_CHUNK_MAX);
        if (!forward(s, r, off, p + off, n, tg__crc32(p + off, n))) {
            relay_put_error(s, r, "tg.DataLost",
                            "the scheduler is out of memory");
            return;
        }
    }
    r->pos = r->done = r->size;
    relay_complete(s, r);
}

/* Tell `w` to drop its copy of `key` (it sent a bad chunk of it). */
static void drop_copy(sched *s, peer *w, const char *key)
{
    taskgrid_v1_SchedulerMessage m = {0};
    char *k = (char *)key;

    m.free_count = 1;
    m.free = &k;
    srv_worker_append(s, w, &m);
}

/* The holder of `r` failed it (`why`, logged): another holder, or wait
 * for the result to be computed again, or the task's error. */
static void holder_failed(sched *s, relay *r, const char *why)
{
    TG_LOG_WARN("gather of '%s': %s; going on without that worker", r->key,
                why);
    relay_detach(s, r);
    relay_resume(s, r);
}

static void on_chunk(sched *s, peer *w, const taskgrid_v1_DataChunk *c)
{
    relay *r = relay_upload_find(s, c->upload);
    char why[300], msg[800];

    if (r == NULL || r->holder != w->id) {
        /* A gather that ended, or an upload asked of another worker. */
        TG_LOG_DEBUG("ignoring a chunk for upload %llu from worker %s",
                     (unsigned long long)c->upload, w->name);
        return;
    }
    if (chunk_ok(r, c, why, sizeof(why))) {
        s->relayed_bytes += c->data.len;
        relay_take(s, r, c->data.ptr, c->data.len, c->crc32);
        return;
    }
    snprintf(msg, sizeof(msg),
             "worker %s sent %s of result '%.300s', which is %llu bytes",
             w->name, why, r->key, (unsigned long long)r->size);
    /* Its copy is not trusted any more: the core counts it as gone (and
     * computes the result again if it was the only one), the worker drops
     * it. Before the relay lets go of its upload, so that the actions
     * run here leave `r` alone. */
    tgs_core_result_missing(s->core, w->id, CS(r->key), tg__now_ms());
    srv_run_actions(s);
    drop_copy(s, w, r->key);
    holder_failed(s, r, msg);
}

/* `w` does not hold `key` (the core knows already). */
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
                 w->name, r->key, (unsigned long long)r->done,
                 (unsigned long long)r->size);
        /* Out of the table, back at its end with another holder, or
         * done: the same i again. */
        holder_failed(s, r, msg);
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
                 name, r->key, (unsigned long long)r->done,
                 (unsigned long long)r->size);
        holder_failed(s, r, msg); /* none goes to it again: same i */
    }
}
