#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Benchmarks (see bench/README.md).
#   bash bench/run.sh --smoke   tiny N, taskgrid only: checks the benchmark
#                               code still runs (CI); no numbers are claimed
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---smoke}
case "$mode" in
  --smoke)
    bazel build -c opt //bench:tg_bench //scheduler //worker >/dev/null 2>&1 ||
      bazel build -c opt //bench:tg_bench //scheduler //worker
    B=bazel-bin/bench/tg_bench
    export TASKGRID_BIN_DIR="$PWD/bazel-bin"
    $B --case noop --n 1000 --repeat 1
    $B --case roundtrip --n 50 --repeat 1
    $B --case diamond --n 100 --repeat 1
    $B --case startup --repeat 1
    $B --case pending --n 1000 --repeat 1
    echo "bench smoke: ok"
    ;;
  *)
    echo "usage: bash bench/run.sh --smoke" >&2
    exit 2
    ;;
esac
