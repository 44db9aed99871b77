#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Benchmarks, taskgrid and Dask distributed side by side in one run (see
# bench/README.md).
#   bash bench/run.sh --smoke   tiny N, taskgrid only: checks that the
#                               benchmark code still runs (CI); no claims
#   bash bench/run.sh --full    every case, each REPEAT (default 3) times,
#                               for taskgrid and Dask; writes the raw lines
#                               to bench/results.log and the table to
#                               bench/RESULTS.md
#   bash bench/run.sh --data    the data-plane cases only (bench/data_bench.py);
#                               raw lines to bench/results-data.log, the
#                               table into RESULTS.md's "Data plane" section
#   bash bench/run.sh --dataframe
#                               a dask.dataframe workload on taskgrid and on
#                               Dask distributed (bench/dataframe_bench.py);
#                               raw lines to bench/results-dataframe.log, the
#                               table into RESULTS.md's "Dask collections"
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---smoke}
REPEAT=${REPEAT:-3}
DASK_VERSION=2026.8.0

build() {
  bazel build -c opt //bench:tg_bench //bench:rpc_floor //bench:data_plugin.so //tests:libtgnest.so //scheduler //worker >/dev/null 2>&1 ||
    bazel build -c opt //bench:tg_bench //bench:rpc_floor //bench:data_plugin.so //tests:libtgnest.so //scheduler //worker
  # Copy out of bazel-bin, which the next build with other options repoints.
  BIN=$(mktemp -d)
  mkdir -p "$BIN/scheduler" "$BIN/worker" "$BIN/bench"
  cp bazel-bin/scheduler/taskgrid-scheduler "$BIN/scheduler/"
  cp bazel-bin/worker/taskgrid-worker "$BIN/worker/"
  cp bazel-bin/bench/tg_bench bazel-bin/bench/rpc_floor bazel-bin/bench/data_plugin.so bazel-bin/tests/libtgnest.so "$BIN/bench/"
  export TASKGRID_BIN_DIR="$BIN"
  TG="$BIN/bench/tg_bench"
}

venv() {
  VENV=bench/.venv
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
  "$VENV/bin/pip" install -q "dask[distributed]==$DASK_VERSION" psutil
}

# The data plane: the same Python code on both (Python workers), and the
# C workers' transfer (no pickling).
data_cases() {
  DATA="$VENV/bin/python bench/data_bench.py"
  "$VENV/bin/pip" install -q ./bindings/python
  run floor $DATA --case floor --mb 1024 --repeat "$REPEAT"
  run taskgrid $DATA --system taskgrid --case transfer --mb 1024 --repeat "$REPEAT"
  run taskgrid $DATA --system taskgrid --case transfer --mb 1024 --repeat "$REPEAT" \
    --plugin "$BIN/bench/data_plugin.so"
  run dask $DATA --system dask --case transfer --mb 1024 --repeat "$REPEAT"
  run taskgrid $DATA --system taskgrid --case pipeline --mb 64 --parts 8 --repeat "$REPEAT"
  run dask $DATA --system dask --case pipeline --mb 64 --parts 8 --repeat "$REPEAT"
}

# Dask collections: one dask.dataframe workload computed on taskgrid and on
# Dask distributed in one process, answers checked equal; the script names
# the system on each line itself.
dataframe_case() {
  "$VENV/bin/pip" install -q ./bindings/python "dask[dataframe,distributed]==$DASK_VERSION"
  echo "+ dataframe: bench/dataframe_bench.py --repeat $REPEAT" >&2
  "$VENV/bin/python" bench/dataframe_bench.py --repeat "$REPEAT" | tee -a "$log"
}

# One group of cases alone (NAME, its function, its RESULTS.md heading): raw
# lines to bench/results-NAME.log, that section of RESULTS.md rewritten
# (report.py --NAME-section) and shown.
section() {
  local name=$1 cases=$2 heading=$3
  build
  venv
  log=bench/results-$name.log
  : > "$log"
  "$cases"
  rm -rf "$BIN"
  python3 bench/report.py "$log" "--$name-section" bench/RESULTS.md
  awk -v h="## $heading" '/^## /{p=($0 == h)} p' bench/RESULTS.md
}

run() { local who=$1; shift; echo "+ $who: $*" >&2; "$@" | sed "s/^/who=$who /" | tee -a "$log"; }

case "$mode" in
  --smoke)
    build
    $TG --case noop --n 1000 --repeat 1
    $TG --case roundtrip --n 50 --repeat 1
    $TG --case diamond --n 100 --repeat 1
    $TG --case startup --repeat 1
    $TG --case pending --n 1000 --repeat 1
    $TG --case mapreduce --n 100 --repeat 1
    $TG --case nested --n 2 --children 10 --repeat 1 --plugin "$BIN/bench/libtgnest.so"
    "$BIN/bench/rpc_floor" --n-unary 50 --n-stream 1000 --repeat 1
    python3 bench/data_bench.py --case floor --mb 8 --repeat 1
    python3 bench/data_bench.py --case transfer --mb 8 --repeat 1
    python3 bench/data_bench.py --case transfer --mb 8 --repeat 1 --plugin "$BIN/bench/data_plugin.so"
    python3 bench/data_bench.py --case pipeline --mb 1 --parts 2 --repeat 1
    # taskgrid only, checked against Dask's synchronous scheduler.
    python3 bench/dataframe_bench.py --systems taskgrid --end 2000-01-22 --freq 60s \
      --partition-freq 1W --repeat 1
    rm -rf "$BIN"
    echo "bench smoke: ok"
    ;;
  --full)
    build
    venv
    DASK="$VENV/bin/python bench/dask_bench.py"
    log=bench/results.log
    : > "$log"

    run floor "$BIN/bench/rpc_floor" --n-unary 1000 --n-stream 100000 --repeat "$REPEAT"
    for n in 10000 100000; do
      run taskgrid $TG --case noop --n $n --repeat "$REPEAT"
      run dask $DASK --case noop --n $n --repeat "$REPEAT"
      run dask-noqueue $DASK --case noop --n $n --repeat "$REPEAT" --no-queuing
    done
    run taskgrid $TG --case noop --n 1000000 --repeat 1
    run taskgrid $TG --case roundtrip --n 1000 --repeat "$REPEAT"
    run dask $DASK --case roundtrip --n 1000 --repeat "$REPEAT"
    for m in 100 10000; do
      run taskgrid $TG --case diamond --n $m --repeat "$REPEAT"
      run dask $DASK --case diamond --n $m --repeat "$REPEAT"
      run dask-noqueue $DASK --case diamond --n $m --repeat "$REPEAT" --no-queuing
    done
    for n in 10 100; do
      run taskgrid $TG --case nested --n $n --children 100 --repeat "$REPEAT" \
        --plugin "$BIN/bench/libtgnest.so"
      run dask $DASK --case nested --n $n --children 100 --repeat "$REPEAT"
    done
    # Pending-task memory: our own scheduler, so its pid is known.
    for r in $(seq 1 "$REPEAT"); do
      out=$(mktemp)
      "$BIN/scheduler/taskgrid-scheduler" --listen tcp://127.0.0.1:0 --launcher none \
        --log-level warn > "$out" &
      spid=$!
      for _ in $(seq 1 100); do grep -q listening "$out" && break; sleep 0.05; done
      addr=$(sed -n 's/^taskgrid-scheduler listening on //p' "$out")
      run taskgrid $TG --address "$addr" --scheduler-pid "$spid" --case pending \
        --n 1000000 --repeat 1
      kill "$spid"; wait "$spid" || true; rm -f "$out"
    done
    # A fresh process per run: a Python process keeps freed memory, so a
    # second run in one process would measure nothing. N = 20,000: at
    # ~4.5 KB per task Dask's 1M would not fit the time budget.
    for r in $(seq 1 "$REPEAT"); do
      run dask $DASK --case pending --n 20000 --repeat 1
    done
    # Map over 1,000 partitions, then a tree reduction of fan-in 8.
    run taskgrid $TG --case mapreduce --n 1000 --repeat "$REPEAT"
    run dask $DASK --case mapreduce --n 1000 --repeat "$REPEAT"
    run taskgrid $TG --case startup --repeat "$REPEAT"
    run dask $DASK --case startup --repeat "$REPEAT"
    data_cases
    dataframe_case
    rm -rf "$BIN"
    python3 bench/report.py "$log" > bench/RESULTS.md
    python3 bench/report.py "$log" --dataframe-section bench/RESULTS.md
    cat bench/RESULTS.md
    ;;
  --data)
    section data data_cases "Data plane"
    ;;
  --dataframe)
    section dataframe dataframe_case "Dask collections"
    ;;
  *)
    echo "usage: bash bench/run.sh --smoke | --full | --data | --dataframe" >&2
    exit 2
    ;;
esac
