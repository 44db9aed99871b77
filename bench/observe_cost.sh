#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# What watching costs: tg_bench --case noop --n N against a fresh
# scheduler (2 workers x 1 thread) per run, in four modes, interleaved:
#   off        nobody watches, no --dashboard-address
#   counts     a Watch of counts only (totals and tasks per function), as a
#              progress display of the whole cluster (tg_bench --watch 2)
#   events     a Watch of every task with its events (tg_bench --watch 1)
#   dashboard  --dashboard-address, a client fetching /api/dashboard.json
#              and /metrics every second (an open page and a scrape)
# Prints one tg_bench line per run (with sched_cpu=, the scheduler's CPU
# seconds), tagged mode=MODE. Usage:
#   bench/observe_cost.sh BIN_DIR [N] [RUNS] [MODES...]
# (BIN_DIR: an opt build's bazel-bin; default modes: all four).
set -euo pipefail
bin=$1
n=${2:-1000000}
runs=${3:-3}
shift $(($# < 3 ? $# : 3))
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(off counts events dashboard)

run_one() { # $1: mode
  local out pid addr url poller="" lines=1 watch=0
  out=$(mktemp)
  local args=(--listen tcp://127.0.0.1:0 --workers 2 --nthreads 1
    --worker-bin "$bin/worker/taskgrid-worker" --log-level warn)
  case $1 in
  off) ;;
  counts) watch=2 ;;
  events) watch=1 ;;
  dashboard)
    args+=(--dashboard-address 127.0.0.1:0)
    lines=2
    ;;
  *)
    echo "observe_cost: unknown mode $1" >&2
    exit 2
    ;;
  esac
  "$bin/scheduler/taskgrid-scheduler" "${args[@]}" >"$out" &
  pid=$!
  for _ in $(seq 100); do
    [ "$(wc -l <"$out")" -ge "$lines" ] && break
    sleep 0.05
  done
  addr=$(sed -n 's/^taskgrid-scheduler listening on //p' "$out")
  if [ "$1" = dashboard ]; then
    url=$(sed -n 's/^taskgrid-scheduler dashboard at //p' "$out")
    (while kill -0 "$pid" 2>/dev/null; do
      curl -s -o /dev/null "${url}api/dashboard.json" || true
      curl -s -o /dev/null "${url}metrics" || true
      sleep 1
    done) &
    poller=$!
  fi
  sleep 0.5 # the workers join
  "$bin/bench/tg_bench" --case noop --n "$n" --address "$addr" \
    --scheduler-pid "$pid" --watch "$watch" | sed "s/^/mode=$1 /"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  if [ -n "$poller" ]; then
    kill "$poller" 2>/dev/null || true
    wait "$poller" 2>/dev/null || true
  fi
  rm -f "$out"
}

for _ in $(seq "$runs"); do
  for m in "${modes[@]}"; do
    run_one "$m"
  done
done
