#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# An integration run under valgrind: a scheduler and a worker, each under
# memcheck, run the diamond flow submitted by the C example; both must
# exit with no memory errors and no definite leaks. Expects the plain
# build (bazel build //scheduler //worker //sdk/examples:diamond).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bazel-bin
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

VG=(valgrind --quiet --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --track-origins=no)

export GRPC_DNS_RESOLVER=native
"${VG[@]}" --log-file="$out/scheduler.vg" "$BIN/scheduler/taskgrid-scheduler" \
  --listen tcp://127.0.0.1:0 --launcher none --log-level warn > "$out/sched.out" &
spid=$!
for _ in $(seq 1 300); do
  grep -q "listening on" "$out/sched.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^taskgrid-scheduler listening on //p' "$out/sched.out")
[ -n "$addr" ] || { echo "valgrind: scheduler did not start"; cat "$out/scheduler.vg"; exit 1; }

"${VG[@]}" --log-file="$out/worker.vg" "$BIN/worker/taskgrid-worker" "$addr" \
  --nthreads 2 --name vg-worker --log-level warn &
wpid=$!

"$BIN/sdk/examples/diamond" --address "$addr" 100 | tee "$out/diamond.out"
grep -q "= 9900" "$out/diamond.out"

kill -TERM "$wpid"; wrc=0; wait "$wpid" || wrc=$?
kill -TERM "$spid"; src=0; wait "$spid" || src=$?
for f in scheduler worker; do
  if [ -s "$out/$f.vg" ]; then echo "--- valgrind $f"; cat "$out/$f.vg"; fi
done
if [ "$wrc" != 0 ] || [ "$src" != 0 ]; then
  echo "valgrind: worker exit $wrc, scheduler exit $src (99 = memory errors)"
  exit 1
fi
echo "valgrind: scheduler and worker clean"
