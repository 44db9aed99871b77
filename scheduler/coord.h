/* SPDX-License-Identifier: Apache-2.0
 *
 * coord.h (private to taskgrid-scheduler): what coord.c and coord_wait.c
 * share for service taskgrid.v1.Scheduler/Coordinate, the coordination
 * primitives (Variable, Queue, Event, Semaphore) and published datasets
 * the scheduler keeps for clients. coord.c holds the primitives and runs
 * one operation; coord_wait.c parks the operations that wait (a peer per
 * call, never a blocked loop), answers them when the state allows or at
 * their timeout, and expires leases. The loop thread owns all of it.
 * Depends on sched.h.
 */
#ifndef TGS_COORD_H
#define TGS_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched.h"

/* The limits of the contract (taskgrid.proto, CoordRequest). */
#define COORD_NAME_MAX 1024u
#define COORD_VALUE_MAX (8u << 20)
#define COORD_REFS_MAX 10000u
#define COORD_BYTES_MAX (256ull << 20)
#define COORD_PRIMS_MAX 10000u
#define COORD_QUEUE_MAX 100000u
#define COORD_WAITS_MAX 10000u
#define COORD_LEASE_MAX 256u
#define COORD_LEASES_MAX 100000u
#define COORD_LEASE_DEFAULT_MS 30000u
#define COORD_LEASE_MIN_MS 100u
#define COORD_LEASE_MAX_MS 3600000u

/* A stored value: bytes and codec, or a task's key; `refs` are keys its
 * bytes refer to. While a value exists the scheduler holds one client hold
 * on its key and refs (taken by coord_value_take, given back by
 * coord_value_drop) and counts its bytes. */
typedef struct cval {
    uint8_t *data;
    size_t len;
    char *codec;
    char *key; /* NULL: not a future */
    char **refs;
    size_t nrefs;
} cval;

typedef struct clease {
    char *id;
    int64_t expires_ms;
} clease;

/* One primitive, by (kind, name). */
typedef struct cprim {
    int kind; /* taskgrid_v1_CoordKind */
    char *name;
    size_t namelen;
    bool has; /* variable, dataset: `val` is set */
    cval val;
    cval *items; /* queue: items[head, head + n) */
    size_t head, n, cap;
    uint32_t maxsize;
    bool set;            /* event */
    uint32_t max_leases; /* semaphore */
    clease *leases;
    size_t nleases, capleases;
    bool expired; /* leases expired this tick: wake its waits */
} cprim;

/* One operation, owning copies of what it needs (a parked one outlives
 * its request's buffer). */
typedef struct cop {
    int kind, op;
    char *name;
    size_t namelen;
    bool has_val; /* `val` taken (held, counted) */
    cval val;
    int64_t timeout_ms;
    uint32_t count;
    bool all;
    uint32_t limit;
    char *lease;
    uint32_t lease_timeout_ms;
    bool override;
} cop;

/* What an operation answers. `vals` are owned when `own` (taken out of a
 * queue), else borrowed from a primitive. */
typedef struct cres {
    bool ok, timed_out;
    uint64_t size;
    cval *vals;
    size_t nvals;
    bool own;
    char **names; /* borrowed from the primitives */
    size_t nnames;
} cres;

/* An operation parked until it can be done or its deadline passes. */
typedef struct cwait {
    peer *p;
    cop op;
    int64_t deadline_ms; /* 0: none */
} cwait;

typedef struct srv_coord {
    cprim **v; /* sorted by (kind, name) */
    size_t n, cap;
    cwait **w; /* in arrival order */
    size_t nw, capw;
    uint64_t bytes; /* of stored and parked values */
} srv_coord;

/* Outcomes of coord_try besides a TG_* error (then `msg` says why). */
#define COORD_DONE 0
#define COORD_WAIT 1

/* ---- coord.c ---- */

/* Run `o` now: COORD_DONE (`r` filled), COORD_WAIT (it must wait; `r`
 * untouched), or a TG_* status with `msg` (`msglen` bytes) naming the
 * problem. */
int coord_try(sched *s, cop *o, cres *r, char *msg, size_t msglen);
/* Answer call `c` with `r` and free what `r` owns. */
void coord_answer(sched *s, tg__scall *c, cres *r);
/* Give back the holds and the bytes of a taken value, and free it. */
void coord_value_drop(sched *s, cval *v);
/* Free what `o` owns (its value dropped). */
void coord_op_free(sched *s, cop *o);
/* The primitive (kind, name), or NULL. */
cprim *coord_find(srv_coord *co, int kind, const char *name, size_t len);
/* At shutdown: free every primitive (holds not given back: the core goes
 * too). */
void coord_prims_free(sched *s);
/* Drop `p` if it is in its default state (nothing to keep). */
void coord_prim_maybe_drop(sched *s, cprim *p);

/* ---- coord_wait.c ---- */

/* Park `o` (moved into the wait) for call `c`; a TG_* status with `msg`
 * when the wait cannot be kept (then `o` is still the caller's). */
int coord_park(sched *s, tg__scall *c, cop *o, char *msg, size_t msglen);
/* The state of (kind, name) changed: answer the waits it allows, in
 * arrival order. */
void coord_wake(sched *s, int kind, const char *name, size_t len);

#endif
