/* SPDX-License-Identifier: Apache-2.0
 *
 * replicate.c: service taskgrid.v1.Scheduler/Replicate. Each key is
 * looked at in the core: a result held on workers gets copies to more
 * workers (the core chooses the targets and queues TGS_ACT_COPY, which
 * dispatch.c sends as SchedulerMessage.copy); an inline result lives in
 * the scheduler, so there is nothing to copy; any other key gets an error
 * naming why. The call stays open until every copy of its keys is done
 * (the workers' WorkerMessage.copied, or a target lost), or until its
 * timeout, and then answers each key with its holders, the copies it
 * made and any error. Depends on sched.h (the core, the peer tables,
 * srv_reply) and the codec.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"
#include "util/clock.h"
#include "util/log.h"

/* How often waiting calls look at the core again (a key forgotten while
 * copying ends its copies without a message). */
#define RECHECK_MS 100

/* One key of a call. */
typedef struct rkey {
    char *key;
    bool pending; /* waits for copies under way */
    bool inline_result;
    uint32_t copied;   /* copies of this call that landed */
    const char *etype; /* static; NULL: no error */
    char *emsg;
    uint64_t *targets; /* workers this call asked to copy it */
    bool *done;        /* per target: answered (or lost) */
    uint32_t ntargets;
} rkey;

typedef struct replica {
    rkey *keys;
    size_t nkeys;
    size_t *order;       /* indices of keys, sorted by key */
    int64_t deadline_ms; /* 0: none */
    int64_t started_ms;
    int64_t checked_ms;
} replica;

static replica *rep_of(const peer *p)
{
    return p->replica;
}

static void key_error(rkey *k, const char *type, const char *fmt, const char *a,
                      const char *b)
{
    char msg[1200];

    if (k->etype != NULL)
        return; /* the first error wins */
    snprintf(msg, sizeof(msg), fmt, a, b);
    k->etype = type;
    k->emsg = strdup(msg);
}

static const char *state_name(tgs_state st)
{
    switch (st) {
    case TGS_WAITING:
        return "WAITING";
    case TGS_READY:
        return "READY";
    case TGS_PROCESSING:
        return "PROCESSING";
    default:
        return "unknown";
    }
}

/* Look at one key and start its copies. `wids` has room for every
 * connected worker. */
static void start_key(sched *s, rkey *k, uint32_t n, const tgs_str *names,
                      size_t nnames, uint64_t *wids, size_t cap)
{
    const tgs_task *t = tgs_core_find(s->core, CS(k->key));
    uint32_t started = 0;
    char why[700];

    if (t == NULL) {
        key_error(k, "tg.UnknownKey",
                  "key '%.400s' is not known to the scheduler (never "
                  "submitted, or released)%s",
                  k->key, "");
        return;
    }
    switch (tgs_task_state(t)) {
    case TGS_MEMORY:
        if (!tgs_task_held(t)) {
            k->inline_result = true; /* it lives here: nothing to copy */
            return;
        }
        if (tgs_core_replicate(s->core, CS(k->key), n, names, nnames, wids, cap,
                               &started) == TGS_ENOMEM)
            key_error(k, "tg.CopyFailed", "key '%.400s': %s", k->key,
                      "scheduler out of memory");
        k->targets = calloc(started ? started : 1, sizeof(*k->targets));
        k->done = calloc(started ? started : 1, sizeof(*k->done));
        if (k->targets != NULL && k->done != NULL) {
            memcpy(k->targets, wids, started * sizeof(*wids));
            k->ntargets = started;
        }
        k->pending = tgs_task_ncopies(t) > 0;
        return;
    case TGS_ERRED:
    case TGS_CANCELLED:
        snprintf(why, sizeof(why), "%s %.*s: %.*s",
                 tgs_task_state(t) == TGS_ERRED ? "erred with"
                                                : "was cancelled:",
                 (int)tgs_task_err_type(t).len, tgs_task_err_type(t).ptr,
                 (int)(tgs_task_err_message(t).len > 400
                           ? 400
                           : tgs_task_err_message(t).len),
                 tgs_task_err_message(t).ptr);
        key_error(k, "tg.Erred", "key '%.400s' has no result: it %s", k->key,
                  why);
        return;
    default:
        key_error(k, "tg.NotFinished",
                  "key '%.400s' has not finished (state %s): wait for it "
                  "first",
                  k->key, state_name(tgs_task_state(t)));
    }
}

static const replica *cmp_rep; /* the event loop's thread only */

static int cmp_order(const void *a, const void *b)
{
    return strcmp(cmp_rep->keys[*(const size_t *)a].key,
                  cmp_rep->keys[*(const size_t *)b].key);
}

static void replica_free(replica *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nkeys; i++) {
        free(r->keys[i].key);
        free(r->keys[i].emsg);
        free(r->keys[i].targets);
        free(r->keys[i].done);
    }
    free(r->keys);
    free(r->order);
    free(r);
}

/* The call's keys copied from the request, sorted for lookups. */
static replica *replica_new(const taskgrid_v1_ReplicateRequest *m)
{
    replica *r = calloc(1, sizeof(*r));
    size_t n = m->keys_count;

    if (r == NULL)
        return NULL;
    r->keys = calloc(n ? n : 1, sizeof(*r->keys));
    r->order = calloc(n ? n : 1, sizeof(*r->order));
    if (r->keys == NULL || r->order == NULL) {
        replica_free(r);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if ((r->keys[i].key = strdup(m->keys[i])) == NULL) {
            replica_free(r);
            return NULL;
        }
        r->nkeys++;
        r->order[i] = i;
    }
    cmp_rep = r;
    qsort(r->order, n, sizeof(*r->order), cmp_order);
    return r;
}

/* Take `p` out of the waiting calls (if it is there). */
static void replicas_remove(sched *s, const peer *p)
{
    for (size_t i = 0; i < s->replicas.n; i++)
        if (s->replicas.v[i] == p) {
            memmove(&s->replicas.v[i], &s->replicas.v[i + 1],
                    (s->replicas.n - i - 1) * sizeof(peer *));
            s->replicas.n--;
            return;
        }
}

/* Answer the call with every key's outcome; it leaves the table. */
static void answer(sched *s, peer *p)
{
    replica *r = rep_of(p);
    taskgrid_v1_ReplicateResponse resp = {0};
    taskgrid_v1_KeyReplication *v = calloc(r->nkeys ? r->nkeys : 1, sizeof(*v));
    char msg[300];

    replicas_remove(s, p);
    if (v == NULL) {
        tg__scall_finish(p->call, TG_ENOMEM, "scheduler out of memory");
        return;
    }
    for (size_t i = 0; i < r->nkeys; i++) {
        rkey *k = &r->keys[i];
        const tgs_task *t = tgs_core_find(s->core, CS(k->key));

        if (k->pending && t == NULL)
            key_error(k, "tg.UnknownKey",
                      "key '%.400s' was released while it was being "
                      "replicated%s",
                      k->key, "");
        else if (k->pending) {
            snprintf(msg, sizeof(msg), "%zu", tgs_task_ncopies(t));
            key_error(k, "tg.Timeout",
                      "key '%.400s': %s copies still under way when the "
                      "timeout passed (they go on)",
                      k->key, msg);
        }
        v[i].key = tg_pbbuf_str(k->key);
        v[i].holders = t ? (uint32_t)tgs_task_nholders(t) : 0;
        v[i].copied = k->copied;
        v[i].inline_result = k->inline_result;
        if (k->etype != NULL) {
            v[i].has_error = true;
            v[i].error.type = tg_pbbuf_str(k->etype);
            v[i].error.message = tg_pbbuf_str(k->emsg ? k->emsg : "");
        }
    }
    resp.keys_count = (pb_size_t)r->nkeys;
    resp.keys = v;
    srv_reply(p->call, taskgrid_v1_ReplicateResponse_fields, &resp);
    free(v);
    TG_LOG_DEBUG("replicate: answered %zu keys after %lld ms", r->nkeys,
                 (long long)(tg__now_ms() - r->started_ms));
}

/* A key is done once no copy of it is under way (its own or another
 * call's), or once it is gone. */
static bool settle(sched *s, replica *r)
{
    bool all = true;

    for (size_t i = 0; i < r->nkeys; i++) {
        rkey *k = &r->keys[i];
        const tgs_task *t;

        if (!k->pending)
            continue;
        t = tgs_core_find(s->core, CS(k->key));
        if (t == NULL || !tgs_task_held(t))
            continue; /* answered as released, or lost */
        if (tgs_task_ncopies(t) == 0)
            k->pending = false;
        else
            all = false;
    }
    return all;
}

/* Answer every waiting call whose copies are all done. */
static void settle_all(sched *s, int64_t now)
{
    for (size_t i = 0; i < s->replicas.n;) {
        peer *p = s->replicas.v[i];
        replica *r = rep_of(p);

        r->checked_ms = now;
        if (settle(s, r) || (r->deadline_ms != 0 && now >= r->deadline_ms))
            answer(s, p); /* takes it out of the table */
        else
            i++;
    }
}

void srv_do_replicate(sched *s, tg__scall *c, const uint8_t *req, size_t len)
{
    taskgrid_v1_ReplicateRequest m;
    size_t nw = tgs_core_nworkers(s->core);
    tgs_str *names = NULL;
    uint64_t *wids = NULL;
    peer *p = NULL;
    replica *r = NULL;

    if (!srv_decode(c, taskgrid_v1_ReplicateRequest_fields, &m, req, len))
        return;
    names = calloc(m.workers_count ? m.workers_count : 1, sizeof(*names));
    wids = calloc(nw ? nw : 1, sizeof(*wids));
    p = calloc(1, sizeof(*p));
    r = replica_new(&m);
    if (names == NULL || wids == NULL || p == NULL || r == NULL ||
        srv_table_add(&s->replicas, p) != TG_OK) {
        free(p);
        replica_free(r);
        tg__scall_finish(c, TG_ENOMEM, "scheduler out of memory");
        goto cleanup;
    }
    for (pb_size_t i = 0; i < m.workers_count; i++)
        names[i] = CS(m.workers[i]);
    p->kind = PEER_REPLICATE;
    p->id = ++s->next_id;
    p->call = c;
    p->replica = r;
    tg__scall_set_data(c, p);
    r->started_ms = r->checked_ms = tg__now_ms();
    if (m.timeout_ms)
        r->deadline_ms = r->started_ms + m.timeout_ms;
    for (size_t i = 0; i < r->nkeys; i++)
        start_key(s, &r->keys[i], m.n, names, m.workers_count, wids, nw);
    srv_run_actions(s); /* the copies go out */
    if (settle(s, r))
        answer(s, p);

cleanup:
    free(names);
    free(wids);
    tg__wire_release(taskgrid_v1_ReplicateRequest_fields, &m);
}

/* The entry of `key` in `r`, or NULL (binary search of r->order). */
static rkey *find_key(replica *r, const char *key, size_t len)
{
    size_t lo = 0, hi = r->nkeys;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        rkey *k = &r->keys[r->order[mid]];
        size_t kl = strlen(k->key);
        int c = memcmp(k->key, key, kl < len ? kl : len);

        if (c == 0)
            c = kl < len ? -1 : kl > len;
        if (c == 0)
            return k;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Target `wid` of `k` ended: landed (`why` NULL) or failed. */
static void target_done(rkey *k, uint64_t wid, const char *name,
                        const char *why)
{
    for (uint32_t j = 0; j < k->ntargets; j++) {
        if (k->targets[j] != wid || k->done[j])
            continue;
        k->done[j] = true;
        if (why == NULL) {
            k->copied++;
        } else {
            char who[300];
            snprintf(who, sizeof(who), "worker %s", name);
            key_error(k, "tg.CopyFailed", "%s could not copy it: %s", who, why);
        }
    }
}

void srv_replicate_copied(sched *s, peer *w, const taskgrid_v1_WorkerMessage *m)
{
    for (size_t i = 0; i < s->replicas.n; i++) {
        replica *r = rep_of(s->replicas.v[i]);

        for (pb_size_t j = 0; j < m->copied_count; j++) {
            const taskgrid_v1_CopyResult *cr = &m->copied[j];
            rkey *k = find_key(r, (const char *)cr->key.ptr, cr->key.len);
            char why[800];

            /* A key given twice: its copies were asked once, by the
             * entry found (the other waits for them through the core). */
            if (k == NULL)
                continue;
            snprintf(why, sizeof(why), "%.*s",
                     (int)(cr->error.len > 700 ? 700 : cr->error.len),
                     (const char *)cr->error.ptr);
            target_done(k, w->id, w->name, cr->ok ? NULL : why);
        }
    }
    settle_all(s, tg__now_ms());
}

void srv_replicate_worker_lost(sched *s, uint64_t wid, const char *name)
{
    for (size_t i = 0; i < s->replicas.n; i++) {
        replica *r = rep_of(s->replicas.v[i]);

        for (size_t j = 0; j < r->nkeys; j++)
            target_done(&r->keys[j], wid, name,
                        "the worker was lost while copying it");
    }
    settle_all(s, tg__now_ms());
}

void srv_replicate_gone(sched *s, peer *p)
{
    replicas_remove(s, p);
    replica_free(p->replica);
    p->replica = NULL;
}

void srv_replicate_tick(sched *s, int64_t now)
{
    for (size_t i = 0; i < s->replicas.n; i++) {
        replica *r = rep_of(s->replicas.v[i]);

        if (now - r->checked_ms >= RECHECK_MS ||
            (r->deadline_ms != 0 && now >= r->deadline_ms)) {
            settle_all(s, now);
            return;
        }
    }
}
