/* SPDX-License-Identifier: Apache-2.0
 *
 * sched.h (private to taskgrid-scheduler): the daemon's state and what
 * its files share. One event-loop thread (tg__server_run) owns all of it:
 * the core, the worker and gather tables, the launcher. The files:
 *   server.c     the loop: transport callbacks, peer tables, output
 *                buffers, start-up and shutdown (tgs_server_main)
 *   service.c    service taskgrid.v1.Scheduler (and grpc.health.v1):
 *                each RPC decoded (proto/wire.h) into core events
 *   workerlink.c service taskgrid.v1.WorkerLink: registration and the
 *                messages of each worker's stream
 *   dispatch.c   the core's actions encoded into per-destination buffers
 *   relay.c      Gather of results held on workers: uploads asked of a
 *                holder, its chunks checked and relayed (or collected)
 *   replicate.c  Replicate: copies asked of workers, their answers
 *                collected, the call answered when they are done
 *   relay.c      Gather of results held on workers: a relay per key,
 *                ranges asked of a holder within the relays' byte budget
 *   relay_in.c   what holders send for relays: chunks checked and relayed
 *                (or collected), a failed holder replaced, a recomputed
 *                result checked against what was already relayed
 *   scaling.c    the launcher following the core's scaling target
 *   launcher.c   the launcher's units and counts (launcher.h), with one
 *                backend per kind (launch.h): launch_local.c (processes
 *                here), launch_slurm.c (batch jobs), launch_ssh.c (SSH
 *                hosts); proc.c runs their commands, polled from the
 *                loop; launch_args.c parses their options
 *   coord.c      Coordinate: Variable, Queue, Event, Semaphore, datasets
 *                (coord.h), with coord_wait.c (waits, timeouts, leases)
 *   dashboard.c  the HTTP port's state and snapshots (dashboard.h), with
 *                metrics.c (Prometheus text), dash_json.c (the page's
 *                JSON) and http.c (the server, its own thread)
 *   watch.c      Watch: followed keys counted, task and worker events
 *                batched into at most one update in flight per watcher
 *   observe.c    each core event's state changes handed to the watchers,
 *                the debug log and the dashboard; SetLogLevel
 * No scheduling decision is taken in any of them: that is the core's
 * (core.h).
 */
#ifndef TGS_SCHED_H
#define TGS_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "launcher.h"
#include "reflection/reflection.h"
#include "server.h"
#include "transport/server.h"
#include "wire.h"

#define TGS_VERSION "taskgrid-scheduler/0.1"
/* Flush a destination's buffer early past this size, to bound latency and
 * stay far below the message limit. */
#define FLUSH_BYTES (1u << 20)
#define HEARTBEAT_MS 2000u

/* A growable buffer of appended one-entry messages. */
typedef struct outbuf {
    uint8_t *p;
    size_t len, cap;
    uint32_t count;
} outbuf;

typedef enum peer_kind {
    PEER_RPC = 0,
    PEER_WORKER,
    PEER_GATHER,
    PEER_REPLICATE,
    PEER_WATCH,
    PEER_COORD,
} peer_kind;

struct relay;
struct replica;
struct srv_dash;
struct watch;
struct cwait;
struct srv_coord;

/* Per-call state (tg__scall data). Workers and gathers are found by id in
 * sorted arrays (ids only grow), so a stale id from the core is harmless. */
typedef struct peer {
    peer_kind kind;
    uint64_t id;
    tg__scall *call;
    outbuf out;
    /* worker */
    bool registered;
    char *name;
    char *launch_id;
    bool launched; /* a worker of one of our launcher's units, marked */
    char **funcs;  /* as registered, for Status */
    size_t nfuncs;
    char **res_names;
    double *res_amounts;
    size_t nres;
    /* Register.data_address ("host:port"), NULL without a data service */
    char *data_address;
    /* The worker's last WorkerMessage.memory (zero until one), for
     * Status; `paused` is also the core's (tgs_core_worker_pause). */
    taskgrid_v1_MemoryReport mem;
    uint32_t nthreads; /* as registered (for watchers' WorkerInfo) */
    bool closing;      /* drained and asked to stop (a watcher's reason) */
    /* gather */
    size_t outstanding;  /* keys not answered yet, relays included */
    int64_t deadline_ms; /* 0: none */
    bool finished;
    /* With a deadline: the keys waited for, so that a timeout can answer
     * the pending ones with their current state (GatherRequest). */
    char **pending;
    size_t npending, pendingcap;
    /* GatherRequest.chunked: held results may come as chunks */
    bool chunked;
    /* GatherRequest.defer_held: held results come as their TaskResult
     * only (no bytes) */
    bool defer_held;
    /* Held results to answer through the scheduler, in order (relay.c):
     * `nactive` of them are uploading; `rinflight` bytes were asked of
     * their holders and have not arrived yet. */
    struct relay *rhead, *rtail;
    uint32_t nactive;
    /* replicate: the call waiting for its copies (replicate.c) */
    struct replica *replica;
    uint64_t rinflight;
    /* watch: the watcher's state (watch.c) */
    struct watch *watch;
    /* coordinate: the operation waiting (coord_wait.c) */
    struct cwait *cwait;
} peer;

typedef struct peer_table {
    peer **v;
    size_t n, cap;
} peer_table;

typedef struct sched {
    tgs_server_opts opts;
    tgs_core *core;
    tg__server *srv;
    tgs_launcher *launcher;
    peer_table workers, gathers;
    peer_table replicas; /* Replicate calls waiting for copies */
    peer **dirty;        /* peers with buffered output */
    size_t ndirty, dirtycap;
    uint64_t next_id;
    /* Scaling: the core decides (tgs_core_scale, tgs_core_adapt); this
     * keeps its last TGS_ACT_SCALE target, which the launcher meets. */
    uint32_t target;
    bool have_target;
    int64_t last_spawn_ms;
    char address[300];
    bool tls;       /* mutual TLS: every call is checked against auth.c */
    tg__refl *refl; /* reflection and health per service (server.c) */
    /* Relays uploading (relay.c), by upload id (ids only grow, so the
     * array stays sorted), and the relays of all gathers, started or
     * not (0: the loop has none to look after). */
    struct relay **uploads;
    size_t nuploads, capuploads;
    uint64_t next_upload;
    size_t nrelays;
    /* The relays' bytes (relay.c): asked of holders and not arrived yet
     * (the sum of the gathers' rinflight), and the buffers of relays
     * answered inline; with what the gathers' streams have not written
     * yet, they stay within opts.relay_memory. */
    uint64_t relay_inflight, relay_inline;
    /* A relay answered inline waits for the budget: no new range is
     * asked until it could start. */
    bool relay_inline_waiting;
    int64_t relay_polled_ms; /* relays waiting for their result, looked at */
    size_t relay_turn;       /* the gather asking first, in turn */
    /* Bytes of held results relayed to clients (relay_in.c), for
     * /metrics. */
    uint64_t relayed_bytes;
    /* The HTTP port (dashboard.h), NULL without --dashboard-address. */
    struct srv_dash *dashboard;
    /* Watch calls (watch.c), and how many of them follow keys (they need
     * the core's record of state changes). */
    peer_table watches;
    size_t nfollowing;
    /* The core records state changes (tgs_core_observe) only while a
     * watcher follows keys, the log level is debug, or the dashboard
     * records them (srv_observe_update). */
    bool observing;
    bool dashboard_observes;
    /* Coordination primitives and datasets (coord.h), NULL until used. */
    struct srv_coord *coord;
} sched;

/* Core strings from and to the codec's zero-copy buffers. */
static inline tgs_str S(tg_pbbuf b)
{
    tgs_str s = {(const char *)b.ptr, b.len};
    return s;
}

static inline tg_pbbuf B(tgs_str s)
{
    return tg_pbbuf_mem(s.ptr, s.len);
}

static inline tgs_str CS(const char *s)
{
    tgs_str r = {s, s ? strlen(s) : 0};
    return r;
}

/* ---- server.c: tables of peers and their output ---- */

/* Add `p` to `t` (ids only grow, so it stays sorted); TG_ENOMEM. */
int srv_table_add(peer_table *t, peer *p);
/* The peer with `id`, or NULL (a stale id from the core is harmless). */
peer *srv_table_find(const peer_table *t, uint64_t id);
/* `p` has buffered output: flush it at the end of this loop turn. */
void srv_mark_dirty(sched *s, peer *p);
/* Hand the buffered bytes of `p` to gRPC as one message. */
void srv_flush_peer(peer *p);
/* Encode `msg` into a new buffer (NULL, logged, on failure). */
uint8_t *srv_encode(const pb_msgdesc_t *f, const void *msg, size_t *len);
/* Reply to a unary call, or fail it if the response cannot be encoded. */
void srv_reply(tg__scall *c, const pb_msgdesc_t *f, const void *msg);
/* Decode a request; on failure the call ends with INVALID_ARGUMENT. */
bool srv_decode(tg__scall *c, const pb_msgdesc_t *f, void *msg,
                const uint8_t *req, size_t len);

/* ---- dispatch.c: core actions -> messages ---- */

/* Fill a TaskResult for a task in its current state. */
void srv_fill_result(taskgrid_v1_TaskResult *r, const tgs_task *t);
/* A result held on workers: its connected holders' data addresses in
 * r->holders (an array allocated here, freed by the caller), as an
 * Assignment's deps carry them (a worker fetches from one, or finds it in
 * its own store) and a deferred Gather answer does (a client may fetch
 * from one directly). false: out of memory. */
bool srv_fill_holders(sched *s, taskgrid_v1_TaskResult *r, const tgs_task *d);
/* Append one result to a gather's stream. */
void srv_gather_append(sched *s, peer *g, const taskgrid_v1_TaskResult *r);
/* Append one message to a worker's stream. */
void srv_worker_append(sched *s, peer *w,
                       const taskgrid_v1_SchedulerMessage *m);
/* A gather's deadline passed: answer each key still pending with its
 * current state (no data), then end the call with DEADLINE_EXCEEDED. */
void srv_gather_timeout(sched *s, peer *g);
/* End a gather once nothing is outstanding. */
void srv_gather_maybe_finish(sched *s, peer *g);
/* Pop every queued core action and turn it into messages. */
void srv_run_actions(sched *s);
/* The largest message this scheduler sends (--max-message). */
size_t srv_max_message(const sched *s);

/* ---- relay.c: held results through the scheduler ---- */

/* Answer final task `t` on gather `g`: inline as srv_fill_result, or, if
 * its result is held on workers, through a relay (chunks, or collected
 * and sent inline), counted in g->outstanding until it is done. */
void srv_gather_answer(sched *s, peer *g, const tgs_task *t);
/* The upload chunks and `missing` keys of a worker's message. */
void srv_relay_message(sched *s, peer *w, const taskgrid_v1_WorkerMessage *m);
/* Worker `wid` (`name`) is gone (the core knows already): its uploads
 * go on from another holder, or wait for the result to be computed
 * again, or end with the task's error when it cannot be had. */
void srv_relay_worker_lost(sched *s, uint64_t wid, const char *name);
/* Has `g` sent part of `key`'s bytes (a gather timing out answers such
 * a key no more). */
bool srv_relay_started(const peer *g, const char *key);
/* Gather `g` ends (answered, timed out, or gone): drop its relays. */
void srv_relay_gather_gone(sched *s, peer *g);
/* Every loop turn: start the relays that waited for their gather's
 * stream to drain. */
void srv_relay_tick(sched *s);

/* ---- replicate.c: Replicate calls ---- */

void srv_do_replicate(sched *s, tg__scall *c, const uint8_t *req, size_t len);
/* Worker `w` answered copies (WorkerMessage.copied). */
void srv_replicate_copied(sched *s, peer *w,
                          const taskgrid_v1_WorkerMessage *m);
/* Worker `wid` (`name`) is gone: its copies under way failed. */
void srv_replicate_worker_lost(sched *s, uint64_t wid, const char *name);
/* The call of `p` ended (answered or gone). */
void srv_replicate_gone(sched *s, peer *p);
/* Every loop turn: calls whose deadline passed are answered. */
void srv_replicate_tick(sched *s, int64_t now);

/* ---- service.c: one handler per method ---- */

void srv_do_submit(sched *s, tg__scall *c, const uint8_t *req, size_t len);
void srv_do_gather(sched *s, tg__scall *c, const uint8_t *req, size_t len);
void srv_do_scale(sched *s, tg__scall *c, const uint8_t *req, size_t len);
void srv_do_annotate(sched *s, tg__scall *c, const uint8_t *req, size_t len);
void srv_do_cancel(sched *s, tg__scall *c, const uint8_t *req, size_t len);
void srv_do_release(sched *s, tg__scall *c, const uint8_t *req, size_t len);
void srv_do_status(sched *s, tg__scall *c, const uint8_t *req, size_t len);
/* tree.c: fill the nested-work fields of Status's answer for the keys of
 * `m` (ks[i] answers m->keys[i]); returns the memory the answer borrows
 * (free it after the reply), NULL when out of memory (nothing filled). */
void *srv_status_tree(sched *s, const taskgrid_v1_StatusRequest *m,
                      taskgrid_v1_KeyStatus *ks);
void srv_do_health(sched *s, tg__scall *c, const uint8_t *req, size_t len);
/* retire.c: Retire; Release with when_done (the keys of the request);
 * the holders of Status's keys (memory to free after the reply, NULL
 * when out of memory). */
void srv_do_retire(sched *s, tg__scall *c, const uint8_t *req, size_t len);
int srv_release_when_done(sched *s, char **keys, pb_size_t n, uint32_t *count);
void *srv_status_holders(sched *s, const taskgrid_v1_StatusRequest *m,
                         taskgrid_v1_KeyStatus *ks);

/* ---- coord.c, coord_wait.c: Coordinate (coord.h) ---- */

void srv_do_coordinate(sched *s, tg__scall *c, const uint8_t *req, size_t len);
/* Every slow tick: waits whose timeout passed, leases expired. */
void srv_coord_tick(sched *s, int64_t now);
/* The call of `p` ended (answered or gone). */
void srv_coord_gone(sched *s, peer *p);
/* At shutdown, after every call ended. */
void srv_coord_free(sched *s);

/* ---- workerlink.c ---- */

/* One message of a worker's stream (registration first). */
void srv_worker_message(sched *s, peer *w, const uint8_t *msg, size_t len);

/* ---- observe.c: the core's state changes fanned out ---- */

/* After any core event: hand its state changes (if recorded) to the
 * watchers, the debug log and the dashboard, once each. */
void srv_observe_slow(sched *s);
static inline void srv_observe(sched *s)
{
    if (s->observing)
        srv_observe_slow(s);
}
/* Turn the core's record on or off as watchers, the log level and the
 * dashboard need it. */
void srv_observe_update(sched *s);
/* The worker a change names: PROCESSING, the one assigned; MEMORY or
 * ERRED from a run, the one that ran it (and *run_us its run time). */
tgs_str srv_transition_worker(sched *s, const tgs_transition *tr,
                              uint64_t *run_us);
/* Wall-clock microseconds since the Unix epoch (Watch's time_us). */
int64_t srv_wall_us(void);
void srv_do_set_log_level(sched *s, tg__scall *c, const uint8_t *req,
                          size_t len);

/* ---- watch.c: Watch calls ---- */

/* `role`: the caller's certificate role ("" plaintext or none). */
void srv_do_watch(sched *s, tg__scall *c, const uint8_t *req, size_t len,
                  const char *role);
/* One state change (from srv_observe_slow), for watchers following keys;
 * `now_us`: wall-clock microseconds. */
void srv_watch_transition(sched *s, const tgs_transition *tr, int64_t now_us);
/* Worker `w` registered (joined) or is gone (left, `reason`). */
void srv_watch_worker(sched *s, peer *w, bool joined, const char *reason);
/* The watcher's call ended: free it. */
void srv_watch_gone(sched *s, peer *p);
/* Every loop turn: send the updates that are due. */
void srv_watch_tick(sched *s, int64_t now_ms);

/* ---- scaling.c ---- */

/* Reap exited workers and start or stop processes toward the target. */
void srv_scale_tick(sched *s, int64_t now);
/* Is the worker with launch id `id` registered now (`ud`: the sched).
 * A tgs_launcher_connected_fn, for scaling, Status and the dashboard. */
bool srv_launch_connected(void *ud, const char *id);

#endif
