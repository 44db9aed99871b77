/* SPDX-License-Identifier: Apache-2.0
 *
 * dispatch.c: the core's actions (assign, cancel, steal, notify, close,
 * scale, retire, free, copy) turned into messages: one-entry messages appended
 * to the buffer of their destination (a worker's stream or a gather's),
 * which server.c flushes once per loop turn. A held result a gather waits
 * for goes through relay.c.
 */
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "sched.h"
#include "transport/transport.h"
#include "util/clock.h"
#include "util/log.h"

size_t srv_max_message(const sched *s)
{
    return s->opts.max_message ? s->opts.max_message : TG__RPC_DEFAULT_MAX_MSG;
}

/* Fill a TaskResult for a task in its current state. */
void srv_fill_result(taskgrid_v1_TaskResult *r, const tgs_task *t)
{
    tgs_state st = tgs_task_state(t);

    memset(r, 0, sizeof(*r));
    r->key = B(tgs_task_key(t));
    r->state = (taskgrid_v1_TaskState)st;
    r->attempt = tgs_task_attempt(t);
    r->worker = B(tgs_task_ran(t, &r->run_us));
    if (st == TGS_MEMORY) {
        size_t n;
        const uint8_t *d = tgs_task_result(t, &n); /* held: none here */
        r->data = tg_pbbuf_mem(d, n);
        r->codec = B(tgs_task_result_codec(t));
        /* Inline, the size is len(data): leaving it out keeps the
         * messages of small results as they were. */
        if (tgs_task_held(t))
            r->size = tgs_task_result_size(t);
    } else if (st == TGS_ERRED || st == TGS_CANCELLED) {
        r->has_error = true;
        r->error.type = B(tgs_task_err_type(t));
        r->error.message = B(tgs_task_err_message(t));
        r->error.traceback = B(tgs_task_err_traceback(t));
        r->error.origin_key = B(tgs_task_err_origin(t));
        /* The serialized error, so that clients can restore it. */
        size_t n;
        const uint8_t *d = tgs_task_err_data(t, &n);
        if (d != NULL) {
            r->data = tg_pbbuf_mem(d, n);
            r->codec = B(tgs_task_err_codec(t));
        }
    }
}

void srv_gather_append(sched *s, peer *g, const taskgrid_v1_TaskResult *r)
{
    taskgrid_v1_GatherResponse m = {0};

    m.results_count = 1;
    m.results = (taskgrid_v1_TaskResult *)r;
    if (tg__wire_append(taskgrid_v1_GatherResponse_fields, &m, &g->out.p,
                        &g->out.len, &g->out.cap) != TG_OK) {
        TG_LOG_ERROR("cannot encode a result for a gather");
        return;
    }
    g->out.count++;
    srv_mark_dirty(s, g);
    if (g->out.len >= FLUSH_BYTES)
        srv_flush_peer(g);
}

void srv_worker_append(sched *s, peer *w, const taskgrid_v1_SchedulerMessage *m)
{
    if (tg__wire_append(taskgrid_v1_SchedulerMessage_fields, m, &w->out.p,
                        &w->out.len, &w->out.cap) != TG_OK) {
        TG_LOG_ERROR("cannot encode a message for worker %s", w->name);
        return;
    }
    w->out.count++;
    srv_mark_dirty(s, w);
    if (w->out.len >= FLUSH_BYTES)
        srv_flush_peer(w);
}

bool srv_fill_holders(sched *s, taskgrid_v1_TaskResult *r, const tgs_task *d)
{
    size_t n = tgs_task_nholders(d);

    r->holders = calloc(n ? n : 1, sizeof(*r->holders));
    if (r->holders == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint64_t wid;
        peer *h;
        if (tgs_task_holder(d, i, &wid) &&
            (h = srv_table_find(&s->workers, wid)) != NULL &&
            h->data_address != NULL)
            r->holders[r->holders_count++] = h->data_address;
    }
    return true;
}

static void act_assign(sched *s, uint64_t wid, const tgs_task *t)
{
    peer *w = srv_table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};
    taskgrid_v1_Assignment a = {0};
    taskgrid_v1_TaskResult small[8], *deps = small;
    size_t nd = tgs_task_ndeps(t), len;
    bool held = false;

    if (w == NULL)
        return; /* the core learns of the loss from on_done */
    if (nd > 8) {
        deps = malloc(nd * sizeof(*deps));
        if (deps == NULL) {
            TG_LOG_ERROR("out of memory assigning a task");
            return;
        }
    }
    for (size_t i = 0; i < nd; i++) {
        const tgs_task *d = tgs_task_dep(t, i);
        srv_fill_result(&deps[i], d);
        if (tgs_task_held(d)) {
            held = true;
            if (!srv_fill_holders(s, &deps[i], d))
                TG_LOG_ERROR("out of memory listing the holders of a result");
        }
    }
    a.key = B(tgs_task_key(t));
    a.func = B(tgs_task_func(t));
    a.input.ptr = tgs_task_input(t, &len);
    a.input.len = len;
    a.codec = B(tgs_task_codec(t));
    a.deps_count = (pb_size_t)nd;
    a.deps = deps;
    a.attempt = tgs_task_attempt(t);
    a.priority = tgs_task_priority(t);
    m.assign_count = 1;
    m.assign = &a;
    srv_worker_append(s, w, &m);
    for (size_t i = 0; held && i < nd; i++)
        free(deps[i].holders);
    if (deps != small)
        free(deps);
    /* The debug log's line for it is observe.c's (to=processing). */
}

/* Copy a held result from one of its holders (Replicate). */
static void act_copy(sched *s, uint64_t wid, const tgs_task *t)
{
    peer *w = srv_table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};
    taskgrid_v1_Copy cp = {0};
    taskgrid_v1_TaskResult r = {0};

    if (w == NULL || !srv_fill_holders(s, &r, t)) {
        TG_LOG_ERROR("cannot ask for a copy: %s",
                     w ? "out of memory" : "the worker is gone");
        return; /* the copy ends with the worker, or at the deadline */
    }
    cp.key = B(tgs_task_key(t));
    cp.size = tgs_task_result_size(t);
    cp.codec = B(tgs_task_result_codec(t));
    cp.holders = r.holders;
    cp.holders_count = r.holders_count;
    m.copy_count = 1;
    m.copy = &cp;
    srv_worker_append(s, w, &m);
    free(r.holders);
}

/* Cancel, steal and free: a key in one of the repeated string fields. */
static void act_key(sched *s, uint64_t wid, const tgs_task *t,
                    tgs_action_kind kind)
{
    peer *w = srv_table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};
    tgs_str k = tgs_task_key(t);
    char *key;

    if (w == NULL)
        return;
    key = malloc(k.len + 1);
    if (key == NULL)
        return;
    memcpy(key, k.ptr, k.len);
    key[k.len] = '\0';
    if (kind == TGS_ACT_STEAL) {
        m.steal_count = 1;
        m.steal = &key;
    } else if (kind == TGS_ACT_FREE) {
        m.free_count = 1;
        m.free = &key;
    } else {
        m.cancel_count = 1;
        m.cancel = &key;
    }
    srv_worker_append(s, w, &m);
    free(key);
}

void srv_gather_timeout(sched *s, peer *g)
{
    for (size_t i = 0; i < g->npending; i++) {
        const tgs_task *t = tgs_core_find(s->core, CS(g->pending[i]));
        taskgrid_v1_TaskResult r;

        /* Final tasks were answered when they finished; forgotten ones
         * too (a task is forgotten only once final). */
        if (t == NULL || tgs_task_state(t) == TGS_MEMORY ||
            tgs_task_state(t) == TGS_ERRED ||
            tgs_task_state(t) == TGS_CANCELLED)
            continue;
        /* Lost half-way through its relay and computed again: the client
         * has part of its bytes; the status says the rest never came. */
        if (srv_relay_started(g, g->pending[i]))
            continue;
        srv_fill_result(&r, t);
        srv_gather_append(s, g, &r);
    }
    /* Keys being relayed are not answered (a result without its bytes
     * would read as empty to a client not asking for chunks). */
    srv_relay_gather_gone(s, g);
    srv_flush_peer(g);
    tg__scall_finish(g->call, TG_ETIMEDOUT,
                     "gather timed out before every key finished");
    g->finished = true;
}

void srv_gather_maybe_finish(sched *s, peer *g)
{
    if (g->outstanding == 0 && !g->finished && g->call) {
        /* The last results and the OK status leave in one batch. */
        if (g->out.count > 0) {
            tg__scall_reply(g->call, g->out.p, g->out.len);
            g->out.p = NULL;
            g->out.len = g->out.cap = 0;
            g->out.count = 0;
        } else {
            tg__scall_finish(g->call, TG_OK, "");
        }
        g->finished = true;
    }
    (void)s;
}

static void act_notify(sched *s, uint64_t watcher, const tgs_task *t)
{
    peer *g = srv_table_find(&s->gathers, watcher);
    taskgrid_v1_TaskResult r;

    if (g == NULL || g->finished)
        return;
    if (g->outstanding > 0)
        g->outstanding--;
    if (tgs_task_held(t)) {
        srv_gather_answer(s, g, t); /* through a relay */
    } else {
        srv_fill_result(&r, t);
        srv_gather_append(s, g, &r);
    }
    srv_gather_maybe_finish(s, g);
}

static void act_close_worker(sched *s, uint64_t wid)
{
    peer *w = srv_table_find(&s->workers, wid);
    taskgrid_v1_SchedulerMessage m = {0};

    if (w == NULL)
        return;
    TG_LOG_INFO("worker %s drained; asking it to stop", w->name);
    w->closing = true;
    m.drain = true;
    srv_worker_append(s, w, &m);
    srv_flush_peer(w);
}

/* The core's scaling target: scale_tick starts processes up to it. */
static void act_scale(sched *s, uint32_t target)
{
    if (!s->have_target || s->target != target)
        TG_LOG_INFO("scaling to %u workers", target);
    s->target = target;
    s->have_target = true;
}

/* The core retires (drains) worker `wid`: its process no longer counts
 * toward the target, and it stops once drained (TGS_ACT_CLOSE_WORKER). */
static void act_retire(sched *s, uint64_t wid)
{
    peer *w = srv_table_find(&s->workers, wid);

    if (w == NULL)
        return;
    TG_LOG_INFO("retiring worker %s", w->name);
    if (s->launcher != NULL && w->launch_id != NULL)
        tgs_launcher_retire(s->launcher, w->launch_id);
}

void srv_run_actions(sched *s)
{
    tgs_action a;

    srv_observe(s); /* the last event's state changes, before its actions */

    while (tgs_core_next_action(s->core, &a)) {
        switch (a.kind) {
        case TGS_ACT_ASSIGN:
            act_assign(s, a.worker, a.task);
            break;
        case TGS_ACT_CANCEL:
        case TGS_ACT_STEAL:
        case TGS_ACT_FREE:
            act_key(s, a.worker, a.task, a.kind);
            break;
        case TGS_ACT_NOTIFY:
            act_notify(s, a.watcher, a.task);
            break;
        case TGS_ACT_CLOSE_WORKER:
            act_close_worker(s, a.worker);
            break;
        case TGS_ACT_SCALE:
            act_scale(s, a.target);
            break;
        case TGS_ACT_RETIRE:
            act_retire(s, a.worker);
            break;
        case TGS_ACT_COPY:
            act_copy(s, a.worker, a.task);
            break;
        }
    }
}
