/* SPDX-License-Identifier: Apache-2.0
 *
 * relay.c: Gather of results held on workers, through the scheduler, so
 * that clients never need a route to workers. For each such key the
 * gather gets a relay: the scheduler asks a holder for the bytes a range
 * at a time (SchedulerMessage.upload {id, key, offset, length}), checks
 * every chunk the holder sends back (relay_in.c), and either forwards
 * each chunk to the gather stream after the key's TaskResult
 * (GatherRequest.chunked) or collects them and answers inline when the
 * result fits the message limit (else tg.ResultTooLarge). The gather
 * stream ends only once every relay is done.
 *
 * Memory: a relay asks for RELAY_RANGE bytes at a time, and asks for the
 * next range only while its gather's bytes (asked and not arrived, plus
 * what its stream has not written yet: tg__scall_pending_bytes) stay
 * within RELAY_GATHER_BYTES, so a slow client holds at most two ranges
 * (8 MiB) in the scheduler whatever the size of its results; and all
 * relays together stay within the budget opts.relay_memory
 * (--relay-memory, default 64 MiB): what they asked and did not receive,
 * what the gathers' streams have not written, and the buffers of results
 * answered inline. A relay answered inline (a client not asking for
 * chunks) must hold its whole result, at most the message limit: it
 * starts when the budget has room for it, or when the relays hold
 * nothing, and while one waits no relay asks for a new range, so it gets
 * its turn. So the scheduler holds at most about the budget (or one
 * message, if larger) for all gathers however slow their clients; a
 * client that stops reading keeps its share (at most 8 MiB) until its
 * gather ends (its deadline, or the client going away). Ranges are asked
 * each loop turn (after every batch of events: a write to a gather's
 * stream is one), starting with a different gather each turn.
 *
 * Loss: a holder lost, saying it no longer has the key, or sending a bad
 * chunk is replaced (relay_in.c): the relay goes on from the same offset
 * with another holder, or waits until the result is computed again
 * (lineage) and checks the new bytes against those already sent. Depends
 * on relay.h, sched.h, proto/wire.h and util/crc.h.
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

/* Relays uploading at once per gather. */
#define RELAY_WINDOW 4
/* How often relays waiting for their result look at it again. */
#define RELAY_POLL_MS 20

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

relay *relay_upload_find(const sched *s, uint64_t id)
{
    size_t i = upload_index(s, id);

    return i == SIZE_MAX ? NULL : s->uploads[i];
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

/* In a message of its own when it is large, so no message outgrows the
 * limit by riding with others. */
void relay_gather_put(sched *s, peer *g, const taskgrid_v1_GatherResponse *m,
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
    relay_gather_put(s, g, &m, approx);
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

void relay_put_error(sched *s, relay *r, const char *type, const char *msg)
{
    TG_LOG_WARN("gather of '%s': %s", r->key, msg);
    put_error(s, r->g, r->key, r->attempt, type, msg);
}

/* ---- relays ---- */

static void relay_free(relay *r)
{
    free(r->key);
    free(r->codec);
    free(r->buf);
    free(r->segs);
    free(r);
}

/* Bytes the stream of `g` has not written yet. */
static uint64_t gather_queued(const peer *g)
{
    return (g->call ? tg__scall_pending_bytes(g->call) : 0) + g->out.len;
}

/* The bytes of all relays now, as the budget counts them. */
static uint64_t relays_used(const sched *s)
{
    uint64_t used = s->relay_inflight + s->relay_inline;

    for (size_t i = 0; i < s->gathers.n; i++)
        used += gather_queued(s->gathers.v[i]);
    return used;
}

void relay_detach(sched *s, relay *r)
{
    peer *g = r->g;

    if (r->id != 0) {
        upload_remove(s, r);
        r->id = 0;
        g->nactive--;
    }
    if (r->buf == NULL) { /* inline relays ask for no budget */
        g->rinflight -= r->asked - r->pos;
        s->relay_inflight -= r->asked - r->pos;
    }
    if (r->pos < r->done) { /* a check of recomputed bytes starts over */
        r->pos = 0;
        r->vseg = 0;
        r->vcrc = r->vlen = 0;
    }
    r->asked = r->pos;
}

/* `r` is done (answered, or its gather is gone): out of its gather's
 * list and of the uploads; one key less outstanding. */
static void relay_finish(sched *s, relay *r)
{
    peer *g = r->g;

    relay_detach(s, r);
    if (r->buf != NULL)
        s->relay_inline -= r->size;
    if (r->prev)
        r->prev->next = r->next;
    else
        g->rhead = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        g->rtail = r->prev;
    if (g->outstanding > 0)
        g->outstanding--;
    s->nrelays--;
    relay_free(r);
}

/* Start relays while the gather's window and stream allow (`poll`: also
 * those waiting for their result). */
static void gather_pump(sched *s, peer *g, bool poll);

void relay_done(sched *s, relay *r)
{
    peer *g = r->g;

    relay_finish(s, r);
    gather_pump(s, g, false);
    srv_gather_maybe_finish(s, g);
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

/* Ask `w` for `len` bytes of `r` from `offset`. */
static void ask_range(sched *s, peer *w, const relay *r, uint64_t offset,
                      uint64_t len)
{
    taskgrid_v1_SchedulerMessage m = {0};
    taskgrid_v1_Upload u = {0};

    u.id = r->id;
    u.key = tg_pbbuf_str(r->key);
    u.offset = offset;
    u.length = len;
    m.upload_count = 1;
    m.upload = &u;
    srv_worker_append(s, w, &m);
}

/* Ask the holder of `r` for more while its gather's share and the budget
 * allow; `used`: the relays' bytes, updated. A check of recomputed bytes
 * asks only up to what was forwarded. */
static void relay_ask(sched *s, relay *r, uint64_t *used)
{
    uint64_t budget = s->opts.relay_memory;
    uint64_t limit = r->pos < r->done ? r->done : r->size;
    peer *g = r->g, *w;

    if (r->id == 0 || r->buf != NULL ||
        (w = srv_table_find(&s->workers, r->holder)) == NULL)
        return;
    while (r->asked < limit && !s->relay_inline_waiting) {
        uint64_t want = limit - r->asked;
        if (want > RELAY_RANGE)
            want = RELAY_RANGE;
        if (want > budget)
            want = budget;
        if (g->rinflight + gather_queued(g) + want > RELAY_GATHER_BYTES ||
            *used + want > budget)
            return;
        ask_range(s, w, r, r->asked, want);
        r->asked += want;
        g->rinflight += want;
        s->relay_inflight += want;
        *used += want;
    }
}

/* The result was computed again since `r` started: nothing sent yet
 * (or collected only), start over with the new result; else it must
 * have the size and codec already announced, and its bytes are checked
 * from the start. False when `r` was answered. */
static bool relay_renew(sched *s, relay *r, const tgs_task *t)
{
    tgs_str codec = tgs_task_result_codec(t);
    uint64_t size = tgs_task_result_size(t);
    char *c;

    if (r->done > 0 && r->buf == NULL) {
        if (size != r->size) {
            relay_differs(s, r, "its size");
            return false;
        }
        if (codec.len != strlen(r->codec) ||
            memcmp(codec.ptr, r->codec, codec.len) != 0) {
            relay_differs(s, r, "its codec");
            return false;
        }
        r->attempt = tgs_task_attempt(t);
        r->pos = 0;
        r->vseg = 0;
        r->vcrc = r->vlen = 0;
        r->asked = 0;
        return true;
    }
    if ((c = strndup(codec.ptr, codec.len)) == NULL) {
        relay_put_error(s, r, "tg.DataLost", "the scheduler is out of memory");
        return false;
    }
    if (r->buf != NULL) {
        s->relay_inline -= r->size;
        free(r->buf);
        r->buf = NULL;
    }
    free(r->codec);
    r->codec = c;
    r->size = size;
    r->attempt = tgs_task_attempt(t);
    r->done = r->pos = r->asked = 0;
    r->nsegs = 0;
    return true;
}

/* Reserve the buffer of an inline relay within the budget; false (and
 * r->buf NULL) to wait, or when answered (*answered). */
static bool inline_reserve(sched *s, relay *r, bool *answered)
{
    uint64_t used = relays_used(s);
    char msg[600];

    *answered = false;
    if (used > 0 && used + r->size > s->opts.relay_memory) {
        s->relay_inline_waiting = true;
        return false;
    }
    if ((r->buf = malloc((size_t)r->size)) == NULL) {
        snprintf(msg, sizeof(msg),
                 "the scheduler has no memory for the %llu bytes of result "
                 "'%.400s'; gather it in chunks (GatherRequest.chunked)",
                 (unsigned long long)r->size, r->key);
        relay_put_error(s, r, "tg.ResultTooLarge", msg);
        *answered = true;
        return false;
    }
    s->relay_inline += r->size;
    return true;
}

/* `r`'s task is MEMORY: answer it at once when its bytes are in the core
 * (false), or check that a holder can send them (true). */
static bool relay_check_held(sched *s, relay *r, const tgs_task *t)
{
    char msg[600];

    if (!tgs_task_held(t)) { /* computed again, inline this time */
        size_t len = 0;
        const uint8_t *p = tgs_task_result(t, &len);
        if (r->done == 0) {
            taskgrid_v1_TaskResult res;
            srv_fill_result(&res, t);
            put_result(s, r->g, &res, len);
        } else {
            relay_take_inline(s, r, p, len);
        }
        return false;
    }
    if (!r->g->chunked && !fits_inline(s, r)) {
        snprintf(msg, sizeof(msg),
                 "result '%.400s' is %llu bytes, more than fits in one "
                 "message (limit %zu bytes); gather it in chunks "
                 "(GatherRequest.chunked)",
                 r->key, (unsigned long long)r->size, srv_max_message(s));
        relay_put_error(s, r, "tg.ResultTooLarge", msg);
        return false;
    }
    return true;
}

/*
 * Start or resume `r` (no upload) from its task's state now: released
 * (tg.DataLost), failed for good (its error), being computed again (wait
 * for it), or held: ask a holder. False when `r` was answered (the
 * caller finishes it).
 */
static bool relay_go(sched *s, relay *r)
{
    const tgs_task *t = tgs_core_find(s->core, CS(r->key));
    char msg[600];
    bool answered;
    peer *w;

    r->waiting = false;
    if (t == NULL) {
        snprintf(msg, sizeof(msg),
                 "result '%.400s' was released before it could be gathered",
                 r->key);
        relay_put_error(s, r, "tg.DataLost", msg);
        return false;
    }
    if (tgs_task_state(t) != TGS_MEMORY) {
        taskgrid_v1_TaskResult res;
        if (tgs_task_state(t) != TGS_ERRED &&
            tgs_task_state(t) != TGS_CANCELLED) {
            r->waiting = true; /* lost, and being computed again */
            return true;
        }
        srv_fill_result(&res, t); /* lost for good: why */
        put_result(s, r->g, &res, 0);
        return false;
    }
    if ((tgs_task_attempt(t) != r->attempt && !relay_renew(s, r, t)) ||
        !relay_check_held(s, r, t))
        return false;
    if ((w = holder_of(s, t)) == NULL) {
        snprintf(msg, sizeof(msg),
                 "no connected worker holds result '%.400s' any more", r->key);
        relay_put_error(s, r, "tg.DataLost", msg);
        return false;
    }
    if (!r->g->chunked && r->buf == NULL && !inline_reserve(s, r, &answered))
        return !answered; /* waits for the budget, or answered */
    if (tg__array_grow(&s->uploads, &s->capuploads, s->nuploads + 1,
                       sizeof(*s->uploads)) != TG_OK) {
        relay_put_error(s, r, "tg.DataLost", "the scheduler is out of memory");
        return false;
    }
    r->id = ++s->next_upload; /* the largest: the table stays sorted */
    r->holder = w->id;
    s->uploads[s->nuploads++] = r;
    r->g->nactive++;
    r->asked = r->pos;
    if (r->buf != NULL) { /* collected whole: asked all at once */
        ask_range(s, w, r, r->pos, r->size - r->pos);
        r->asked = r->size;
    }
    if (tg__log_enabled(TG__LOG_DEBUG)) {
        char q[1024], qw[1024];
        TG_LOG_DEBUG(
            "gather of key=%s: upload %llu from byte %llu asked of "
            "worker=%s",
            tg__log_quote(q, sizeof(q), r->key, strlen(r->key), 200),
            (unsigned long long)r->id, (unsigned long long)r->pos,
            tg__log_quote(qw, sizeof(qw), w->name, strlen(w->name), 200));
    }
    return true;
}

void relay_resume(sched *s, relay *r)
{
    if (!relay_go(s, r))
        relay_done(s, r);
}

static void gather_pump(sched *s, peer *g, bool poll)
{
    relay *r = g->rhead, *next;

    for (; r != NULL && !g->finished; r = next) {
        next = r->next;
        if (r->id != 0 || (r->waiting && !poll))
            continue;
        if (!r->waiting && r->done == 0 &&
            (g->nactive >= RELAY_WINDOW ||
             g->rinflight + gather_queued(g) >= RELAY_GATHER_BYTES)) {
            if (!poll)
                break; /* srv_relay_tick looks again */
            continue;
        }
        if (!relay_go(s, r))
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
    gather_pump(s, g, false);
}

void srv_relay_gather_gone(sched *s, peer *g)
{
    while (g->rhead != NULL)
        relay_finish(s, g->rhead);
}

bool srv_relay_started(const peer *g, const char *key)
{
    for (const relay *r = g->rhead; r != NULL; r = r->next)
        if (r->head_sent && strcmp(r->key, key) == 0)
            return true;
    return false;
}

void srv_relay_tick(sched *s)
{
    int64_t now;
    uint64_t used;
    bool poll;
    size_t n = s->gathers.n;

    if (s->nrelays == 0 || n == 0)
        return;
    now = tg__now_ms();
    poll = now - s->relay_polled_ms >= RELAY_POLL_MS;
    if (poll)
        s->relay_polled_ms = now;
    /* Starts first (an inline relay waiting for the budget says so), then
     * ranges, beginning with another gather each turn. */
    s->relay_inline_waiting = false;
    for (size_t i = 0; i < n; i++) {
        peer *g = s->gathers.v[i];
        if (g->rhead != NULL && !g->finished) {
            gather_pump(s, g, poll);
            srv_gather_maybe_finish(s, g);
        }
    }
    used = relays_used(s);
    s->relay_turn++;
    for (size_t i = 0; i < n; i++) {
        peer *g = s->gathers.v[(s->relay_turn + i) % n];
        if (g->finished)
            continue;
        for (relay *r = g->rhead; r != NULL; r = r->next)
            relay_ask(s, r, &used);
    }
}
