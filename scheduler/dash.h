/* SPDX-License-Identifier: Apache-2.0
 *
 * dash.h (private to dashboard.c, dash_json.c and metrics.c): what the
 * loop thread keeps for the HTTP port, and the snapshot it publishes to
 * the HTTP thread under a mutex.
 */
#ifndef TGS_DASH_H
#define TGS_DASH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "sched.h"
#include "text.h"

/* Finished runs kept for the task stream (the latest ones). */
#define DASH_RUNS 10000
/* Bytes of a task key kept for the task stream (longer keys cut). */
#define DASH_KEY 128
/* Functions with their own label in the metrics; later ones are counted
 * under function="other", so a client cannot grow the series without
 * bound. */
#define DASH_FUNCS 100
/* Worker names remembered for the task stream (later ones: "other"). */
#define DASH_WORKER_NAMES 4096
#define DASH_MAX_METHODS 32
#define DASH_RUN_BUCKETS 14
#define DASH_RPC_BUCKETS 14
#define DASH_CODES 17
/* A snapshot is built at most this often, and only while someone asked
 * within DASH_WANTED_MS. */
#define DASH_BUILD_MS 400
#define DASH_WANTED_MS 5000

typedef struct dash_run {
    int64_t start_us, stop_us;
    uint32_t func;   /* index in funcs; DASH_FUNCS: "other" */
    uint32_t worker; /* index in workers; DASH_WORKER_NAMES: "other" */
    bool erred;
    uint8_t keylen;
    char key[DASH_KEY];
} dash_run;

typedef struct dash_hist {
    uint64_t bucket[DASH_RUN_BUCKETS + 1]; /* the last one: +Inf */
    double sum;                            /* seconds */
    uint64_t count;
} dash_hist;

typedef struct dash_func {
    char *name;
    uint64_t memory, erred; /* runs finished */
    dash_hist hist;
} dash_func;

/* Names by hash, open addressing: index + 1 in each slot (0: empty). */
typedef struct dash_names {
    uint32_t *slot;
    size_t cap; /* a power of two */
} dash_names;

typedef struct dash_rpc {
    uint64_t count[DASH_CODES];
    dash_hist hist; /* unary methods only */
} dash_rpc;

/* The published snapshot of one kind (metrics text, dashboard JSON). */
enum { DASH_METRICS = 0, DASH_JSON = 1, DASH_KINDS = 2 };

typedef struct dash_pub {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* monotonic: a new build */
    tgs_text body[DASH_KINDS];
    uint64_t gen[DASH_KINDS]; /* builds so far */
    int64_t built_ms[DASH_KINDS];
    /* When the HTTP thread last asked (tg__now_ms), and whether a
     * request waits for a fresh build. */
    _Atomic int64_t asked_ms[DASH_KINDS];
    _Atomic bool urgent[DASH_KINDS];
} dash_pub;

struct srv_dash {
    dash_run *runs; /* ring of DASH_RUNS */
    uint64_t nruns; /* recorded so far; runs[(nruns - 1) % DASH_RUNS] last */
    dash_func funcs[DASH_FUNCS + 1]; /* [DASH_FUNCS]: "other" */
    uint32_t nfuncs;
    dash_names func_index;
    char *workers[DASH_WORKER_NAMES];
    uint32_t nworkers;
    dash_names worker_index;
    const tg__method *methods;
    size_t nmethods;
    dash_rpc rpc[DASH_MAX_METHODS];
    int64_t built_ms[DASH_KINDS]; /* loop's copy */
    dash_pub pub;
    tgs_http *http;
    char url[320];
};

/* Bucket bounds, in seconds (ascending; +Inf implied). */
extern const double tgs_dash_run_bounds[DASH_RUN_BUCKETS];
extern const double tgs_dash_rpc_bounds[DASH_RPC_BUCKETS];

/* metrics.c: the Prometheus text of the scheduler's state now. */
void tgs_dash_metrics(const sched *s, tgs_text *out);
/* dash_json.c: the dashboard's JSON of the scheduler's state now. */
void tgs_dash_json(const sched *s, int64_t now_us, tgs_text *out);
/* The i-th connected worker as the core sees it, and its peer (NULL if
 * the table has none); false out of range. */
bool tgs_dash_worker_at(const sched *s, size_t i, tgs_worker_info *wi,
                        const peer **w);
/* A worker's name for the task stream ("other" past the table). */
const char *tgs_dash_worker_name(const struct srv_dash *d, uint32_t i);

#endif
