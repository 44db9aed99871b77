/* SPDX-License-Identifier: Apache-2.0
 *
 * dashboard.h (private to taskgrid-scheduler): the scheduler's HTTP port
 * (--dashboard-address): a live dashboard page and Prometheus /metrics.
 * The loop thread keeps what the port shows (finished runs for the task
 * stream, run-time histograms, RPC counters) and, only while someone has
 * asked within the last few seconds, publishes an immutable snapshot of
 * it at most every DASH_BUILD_MS; the HTTP thread (http.c) serves the
 * latest snapshot and never reads the scheduler's state. A snapshot costs
 * O(workers + functions + task stream entries), never O(tasks).
 */
#ifndef TGS_DASHBOARD_H
#define TGS_DASHBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "transport/server.h"

struct sched;

/**
 * Start the HTTP port on `address` ("HOST:PORT", ":PORT" or "PORT"; port
 * 0 picks a free one; an empty host is the host of the scheduler's own
 * address), with HTTPS and the cluster's roles when the scheduler runs
 * with TLS. On success s->dashboard is set and the core observes
 * transitions. `methods` (borrowed for the daemon's life) name the
 * RPC counters. Returns 0, or -1 with the reason printed.
 */
int srv_dashboard_start(struct sched *s, const char *address,
                        const tg__method *methods, size_t nmethods);

/**
 * Say where the port is: "taskgrid-scheduler dashboard at
 * http://HOST:PORT/" (https:// with TLS) on stdout, after the line
 * "taskgrid-scheduler listening on ..." that launchers read first, and
 * in the log at info. No-op while the dashboard is off.
 */
void srv_dashboard_announce(const struct sched *s);

/** Stop the HTTP port and free what it kept (before the core goes). */
void srv_dashboard_stop(struct sched *s);

/**
 * One change of a task's state, after a core event, at `now_us`
 * (tg__now_us). A run that made a task MEMORY or ERRED (tgs_task_ran
 * names its worker) enters the task stream and the run-time histograms;
 * every other change is ignored. No-op while the dashboard is off.
 */
void srv_dashboard_record(struct sched *s, const tgs_transition *tr,
                          int64_t now_us);

/** Every loop turn: publish a snapshot when one is wanted (cheap else). */
void srv_dashboard_tick(struct sched *s, int64_t now_ms);

/**
 * A call of method index `method` ended with gRPC status `code` (0-16)
 * after `dur_us` microseconds (-1: not timed, a stream). A few integer
 * increments; no-op while the dashboard is off.
 */
void srv_dashboard_rpc(struct sched *s, size_t method, int code,
                       int64_t dur_us);

#endif
