/* SPDX-License-Identifier: Apache-2.0
 *
 * complete.c: the end of a run: a worker reports a result (the task goes
 * to MEMORY and wakes its dependents), an error (a retry, or a failure
 * cascade) or hands a task back unstarted; and what the core learns from
 * it (each function's measured run time, which sizes the prefetch in
 * schedule.c). A result held on its worker is recorded by data.c.
 * Depends on internal.h, intern.c, errors.c, workers.c, retry.c, ready.c,
 * failure.c and data.c.
 */
#include "scheduler/core/internal.h"

/*
 * Learn how long tasks of `t`'s function take. The core only sees when a
 * task was assigned and when its result came back, and the worker may
 * have queued it behind others (prefetch), which inflates the first
 * measure. On a busy worker, however, results come back about every
 * run/nthreads, so the gap since the worker's previous result times its
 * threads estimates the run time without the queueing. Take the smaller.
 */
static void record_duration(tgs_worker *w, tgs_task *t, int64_t now)
{
    tgs_func *f = t->cls->func;
    double d = (double)(now - t->at.assigned_ms);
    if (w->has_finished) {
        double gap = (double)(now - w->last_finish_ms) * w->nthreads;
        if (gap < d)
            d = gap;
    }
    if (d < 0)
        d = 0;
    if (!f->avg_known) {
        f->avg_ms = d;
        f->avg_known = true;
    } else {
        f->avg_ms += (d - f->avg_ms) * AVG_WEIGHT;
    }
    w->last_finish_ms = now;
    w->has_finished = true;
}

/* `t`'s final outcome came from its run on `w` (off it now). */
static void ran_on(tgs_task *t, const tgs_worker *w, const tgs_outcome *o)
{
    t->ran_on = w->iname;
    t->at.run_us = o->run_us;
}

tgs_str tgs_task_ran(const tgs_task *t, uint64_t *run_us)
{
    bool ran =
        t && t->ran_on && (t->state == TGS_MEMORY || t->state == TGS_ERRED);
    if (run_us)
        *run_us = ran ? t->at.run_us : 0;
    return ran ? (tgs_str){t->ran_on->s, t->ran_on->len} : EMPTY;
}

/* `t` (off its worker) produced `res` (held on workers if t->held: its
 * waiting dependents become its consumers, in fetch classes). */
static void finish_ok(tgs_core *c, tgs_task *t, tgs_result *res)
{
    t->out.result = res;
    tgs__become_final(c, t, TGS_MEMORY);
    for (uint32_t i = 0; i < t->ndependents; i++) {
        tgs_task *d = t->dependents[i];
        d->unfinished--;
        if (d->state == TGS_WAITING) {
            if (t->held)
                tgs__held_consumer(c, t, d);
            if (d->unfinished == 0)
                tgs__ready_push(c, d);
        } else {
            tgs__maybe_forget(c, d);
        }
    }
    drop_dependents(t);
    tgs__maybe_forget(c, t);
}

static tgs_task *processing_on(tgs_core *c, uint64_t wid, tgs_str key)
{
    tgs_worker *w = find_worker(c, wid);
    tgs_task *t = find_key(c, key);
    if (w == NULL || t == NULL || t->state != TGS_PROCESSING ||
        t->u.worker != w)
        return NULL;
    return t;
}

/*
 * A result reported held that cannot be: from a worker without a data
 * service (nobody could fetch it), or with bytes inline as well. The task
 * fails with tg.ProtocolError, without a retry: the same worker would
 * answer the same way. NULL (out of memory) or the error.
 */
static tgs_error *held_refused(const tgs_worker *w, const tgs_task *t,
                               const tgs_outcome *o)
{
    if (o->data_len > 0)
        return tgs__error_newf(
            "tg.ProtocolError", str_of_key(t),
            "worker %.*s reported result '%.*s' as held on it but also "
            "sent %zu bytes of it inline",
            plen(w->name_len), w->name, plen(t->key_len), task_key(t),
            o->data_len);
    return tgs__error_newf("tg.ProtocolError", str_of_key(t),
                           "worker %.*s reported result '%.*s' as held on "
                           "it, but it registered no data address to serve "
                           "it from",
                           plen(w->name_len), w->name, plen(t->key_len),
                           task_key(t));
}

/* The outcome is an error (or a refused held result, `e` given): retry
 * or fail. */
static int finish_error(tgs_core *c, tgs_task *t, const tgs_outcome *o,
                        tgs_error *e, int64_t now_ms)
{
    tgs_worker *w = t->u.worker;
    if (e == NULL && t->retries > 0) {
        record_duration(w, t, now_ms);
        tgs__proc_remove(c, t);
        t->killed = 0;
        tgs__retry_later(c, t);
        return TGS_OK;
    }
    if (e == NULL)
        e = tgs__error_new_payload(
            o->err_type, o->err_message, o->err_traceback, str_of_key(t),
            (tgs_str){(const char *)o->data, o->data ? o->data_len : 0},
            o->codec);
    if (e == NULL)
        return TGS_ENOMEM;
    record_duration(w, t, now_ms);
    tgs__proc_remove(c, t);
    t->killed = 0;
    ran_on(t, w, o);
    tgs__fail_cascade(c, t, TGS_ERRED, e);
    tgs__error_unref(e);
    return TGS_OK;
}

int tgs_core_task_finished(tgs_core *c, uint64_t wid, tgs_str key,
                           const tgs_outcome *o, int64_t now_ms)
{
    if (c == NULL || o == NULL || (o->ok && o->data_len && !o->data))
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    tgs_task *t = processing_on(c, wid, key);
    if (t == NULL) {
        tgs__schedule(c);
        return TGS_ESTATE;
    }
    tgs_worker *w = t->u.worker;
    int rc = TGS_OK;

    /* A run that ended with an outcome did not kill its worker: the run
     * of lost workers counted for tg.KilledWorker is over. */
    if (o->ok && o->held && (!w->can_fetch || o->data_len > 0)) {
        tgs_error *e = held_refused(w, t, o);
        rc = e ? finish_error(c, t, o, e, now_ms) : TGS_ENOMEM;
    } else if (o->ok) {
        const tgs_istr *codec;
        tgs_result *r = NULL;
        rc = tgs__intern_codec(c, o->codec, &codec);
        if (rc == TGS_OK && o->held)
            rc = tgs__held_prepare(c, t, w, codec, o->size, &r);
        else if (rc == TGS_OK && (r = malloc(sizeof *r + o->data_len)) == NULL)
            rc = TGS_ENOMEM;
        if (rc == TGS_OK) {
            if (!o->held) {
                r->codec = codec;
                r->len = o->data_len;
                if (o->data_len)
                    memcpy(r->data, o->data, o->data_len);
            }
            record_duration(w, t, now_ms);
            /* Held first: a draining worker must not be closed (by
             * tgs__proc_remove) before it counts as holding the result. */
            if (o->held)
                tgs__held_commit(c, t, w, r);
            tgs__proc_remove(c, t);
            t->killed = 0;
            ran_on(t, w, o);
            finish_ok(c, t, r);
        }
    } else {
        rc = finish_error(c, t, o, NULL, now_ms);
    }
    tgs__schedule(c);
    return rc;
}

int tgs_core_task_returned(tgs_core *c, uint64_t wid, tgs_str key,
                           int64_t now_ms)
{
    if (c == NULL)
        return TGS_EINVAL;
    tgs__event_begin(c, now_ms);
    tgs_task *t = processing_on(c, wid, key);
    if (t == NULL) {
        tgs__schedule(c);
        return TGS_ESTATE;
    }
    tgs__proc_remove(c, t);
    tgs__ready_push(c, t);
    tgs__schedule(c);
    return TGS_OK;
}
