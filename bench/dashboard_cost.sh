#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The cost of an open dashboard: tg_bench --case noop --n N against a
# scheduler (2 workers x 1 thread) without --dashboard-address, and
# against one with it while a client polls /api/dashboard.json and
# /metrics every second, as the page and a Prometheus scrape would;
# alternating, RUNS runs each. Prints one tg_bench line per run, tagged
# dashboard=off|on. Usage: bench/dashboard_cost.sh BIN_DIR [N] [RUNS]
# (BIN_DIR: an opt build's bazel-bin).
set -euo pipefail
bin=$1
n=${2:-1000000}
runs=${3:-3}

run_one() { # $1: off|on
  local out pid addr url poller="" lines=1
  out=$(mktemp)
  local args=(--listen tcp://127.0.0.1:0 --workers 2 --nthreads 1
    --worker-bin "$bin/worker/taskgrid-worker" --log-level warn)
  if [ "$1" = on ]; then
    args+=(--dashboard-address 127.0.0.1:0)
    lines=2
  fi
  "$bin/scheduler/taskgrid-scheduler" "${args[@]}" >"$out" &
  pid=$!
  for _ in $(seq 100); do
    [ "$(wc -l <"$out")" -ge "$lines" ] && break
    sleep 0.05
  done
  addr=$(sed -n 's/^taskgrid-scheduler listening on //p' "$out")
  if [ "$1" = on ]; then
    url=$(sed -n 's/^taskgrid-scheduler dashboard at //p' "$out")
    (while kill -0 "$pid" 2>/dev/null; do
       curl -s -o /dev/null "${url}api/dashboard.json" || true
       curl -s -o /dev/null "${url}metrics" || true
       sleep 1
     done) &
    poller=$!
  fi
  sleep 0.5 # the workers join
  "$bin/bench/tg_bench" --case noop --n "$n" --address "$addr" | sed "s/^/dashboard=$1 /"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  if [ -n "$poller" ]; then
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
  fi
  rm -f "$out"
}

for _ in $(seq "$runs"); do
  run_one off
  run_one on
done
