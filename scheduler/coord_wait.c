/* SPDX-License-Identifier: Apache-2.0
 *
 * coord_wait.c: the operations of Scheduler/Coordinate that wait (see
 * coord.h). Such a call is parked, a peer of kind PEER_COORD holding a
 * copy of its operation, and the loop goes on: whenever the primitive it
 * waits on changes, the waits on it are tried again in arrival order
 * (coord_wake), and each tick answers those whose timeout passed and
 * expires the leases not refreshed in time (a holder that died or was cut
 * off), handing them to the next waiter. A cancelled call just leaves
 * (srv_coord_gone). Waits are bounded (COORD_WAITS_MAX). Depends on
 * sched.h and coord.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "util/array.h"
#include "util/clock.h"
#include "util/log.h"

int coord_park(sched *s, tg__scall *c, cop *o, char *msg, size_t msglen)
{
    srv_coord *co = s->coord;
    cwait *w;
    peer *p;

    if (co->nw >= COORD_WAITS_MAX) {
        snprintf(msg, msglen,
                 "the scheduler keeps %zu waiting coordination calls, its "
                 "limit: cannot wait on '%.200s' (retry later, or wait "
                 "with a timeout of 0)",
                 co->nw, o->name);
        return TG_ETOOBIG;
    }
    w = calloc(1, sizeof(*w));
    p = calloc(1, sizeof(*p));
    if (w == NULL || p == NULL ||
        tg__array_grow_to(&co->w, &co->capw, co->nw + 1, sizeof(*co->w), 16,
                          SIZE_MAX) != TG_OK) {
        free(w);
        free(p);
        snprintf(msg, msglen, "%s", "scheduler out of memory");
        return TG_ENOMEM;
    }
    p->kind = PEER_COORD;
    p->id = ++s->next_id;
    p->call = c;
    p->cwait = w;
    w->p = p;
    w->op = *o; /* moved */
    memset(o, 0, sizeof(*o));
    if (w->op.timeout_ms > 0)
        w->deadline_ms = tg__now_ms() + w->op.timeout_ms;
    co->w[co->nw++] = w;
    tg__scall_set_data(c, p);
    return COORD_WAIT;
}

/* Take wait `i` out of the table and free it (its call answered or
 * gone). */
static void wait_remove(sched *s, size_t i)
{
    srv_coord *co = s->coord;
    cwait *w = co->w[i];

    memmove(&co->w[i], &co->w[i + 1], (co->nw - i - 1) * sizeof(*co->w));
    co->nw--;
    if (w->p != NULL)
        w->p->cwait = NULL;
    coord_op_free(s, &w->op);
    free(w);
}

/* Answer wait `i` with `r` (or the error `rc`, `msg`). The call ends, so
 * its peer is freed by cb_done; it no longer points here. */
static void wait_answer(sched *s, size_t i, int rc, cres *r, const char *msg)
{
    tg__scall *c = s->coord->w[i]->p->call;

    wait_remove(s, i);
    if (rc == COORD_DONE)
        coord_answer(s, c, r);
    else
        tg__scall_finish(c, rc, msg);
}

void coord_wake(sched *s, int kind, const char *name, size_t len)
{
    srv_coord *co = s->coord;
    bool progress = true;

    /* An answer may allow another (a GET makes room for a PUT): again
     * until a pass answers none. Each pass answers or skips every wait
     * once, so this ends. */
    while (progress) {
        progress = false;
        for (size_t i = 0; i < co->nw;) {
            cwait *w = co->w[i];
            cres r = {0};
            char msg[700] = "";
            int rc;

            if (w->op.kind != kind || w->op.namelen != len ||
                memcmp(w->op.name, name, len) != 0) {
                i++;
                continue;
            }
            rc = coord_try(s, &w->op, &r, msg, sizeof(msg));
            if (rc == COORD_WAIT) {
                i++;
                continue;
            }
            wait_answer(s, i, rc, &r, msg);
            progress = true;
        }
    }
}

/* Leases not refreshed in time end; their semaphores' waits are tried. */
static void expire_leases(sched *s, int64_t now)
{
    srv_coord *co = s->coord;
    bool any = false;

    for (size_t i = 0; i < co->n; i++) {
        cprim *p = co->v[i];
        for (size_t j = 0; j < p->nleases;) {
            if (now < p->leases[j].expires_ms) {
                j++;
                continue;
            }
            TG_LOG_WARN("lease %.100s of semaphore '%.200s' expired (not "
                        "refreshed in time: its holder died or was cut off)",
                        p->leases[j].id, p->name);
            free(p->leases[j].id);
            p->leases[j] = p->leases[--p->nleases];
            p->expired = any = true;
        }
    }
    /* Each wake may change the table: look for the next one afresh (only
     * when leases expired, which is rare). */
    while (any) {
        any = false;
        for (size_t i = 0; i < co->n; i++) {
            cprim *p = co->v[i];
            char name[COORD_NAME_MAX + 1];
            size_t len = p->namelen;
            int kind = p->kind;

            if (!p->expired)
                continue;
            p->expired = false;
            memcpy(name, p->name, len);
            name[len] = '\0';
            coord_prim_maybe_drop(s, p); /* may free p */
            coord_wake(s, kind, name, len);
            any = true;
            break;
        }
    }
}

void srv_coord_tick(sched *s, int64_t now)
{
    srv_coord *co = s->coord;

    if (co == NULL)
        return;
    for (size_t i = 0; i < co->nw;) {
        cwait *w = co->w[i];
        cres r = {0};

        if (w->deadline_ms == 0 || now < w->deadline_ms) {
            i++;
            continue;
        }
        r.timed_out = true;
        wait_answer(s, i, COORD_DONE, &r, NULL);
    }
    expire_leases(s, now);
}

void srv_coord_gone(sched *s, peer *p)
{
    srv_coord *co = s->coord;

    if (co == NULL || p->cwait == NULL)
        return;
    for (size_t i = 0; i < co->nw; i++)
        if (co->w[i] == p->cwait) {
            co->w[i]->p = NULL;
            wait_remove(s, i);
            return;
        }
}

void srv_coord_free(sched *s)
{
    srv_coord *co = s->coord;

    if (co == NULL)
        return;
    while (co->nw > 0)
        wait_remove(s, co->nw - 1);
    coord_prims_free(s);
    free(co->w);
    free(co);
    s->coord = NULL;
}
