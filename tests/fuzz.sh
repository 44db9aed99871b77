#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/fuzz.sh: build one libFuzzer target per decode entry point (every
# top-level message the scheduler, the worker or the SDK decodes off the
# network; tests/fuzz/wire_check.c lists them) with clang and
# -fsanitize=fuzzer,address,undefined, outside Bazel, replay the found
# crashes in tests/fuzz/regressions/, then fuzz each briefly from the seed
# corpus in tests/fuzz/corpus/. Fails on any crash, leak or sanitizer
# report, and says where the input was saved (copy it into
# tests/fuzz/regressions/<Type>/ once fixed: wire_test replays it).
#
#   bash tests/fuzz.sh                  # every target, 8 s each, 2 at a time
#   FUZZ_SECONDS=60 bash tests/fuzz.sh SubmitRequest WorkerMessage
#   FUZZ_WIRE_C=/tmp/old_wire.c bash tests/fuzz.sh   # fuzz another codec
#
# Needs: apt-get install -y clang libclang-rt-14-dev (plus the build's
# protobuf-compiler, nanopb, libnanopb-dev). Nanopb's runtime is Debian's
# prebuilt libprotobuf-nanopb.a (no sources ship), so coverage guidance
# sees our codec and its callback but not nanopb's insides.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${FUZZ_SECONDS:-8}
JOBS=${FUZZ_JOBS:-2}
WIRE_C=${FUZZ_WIRE_C:-$ROOT/proto/wire.c}
OUT=${FUZZ_OUT:-${TMPDIR:-/tmp}/taskgrid-fuzz}
CC=$(command -v clang || command -v clang-14 || true)
if [ -z "$CC" ]; then
    echo "fuzz.sh: clang not found (apt-get install -y clang libclang-rt-14-dev)" >&2
    exit 2
fi

TYPES=(SubmitRequest GatherRequest ScaleRequest AnnotateRequest CancelRequest
    ReleaseRequest StatusRequest HealthCheckRequest WorkerMessage
    ServerReflectionRequest SchedulerMessage SubmitResponse GatherResponse ScaleResponse
    AnnotateResponse CancelResponse ReleaseResponse StatusResponse
    HealthCheckResponse)
if [ $# -gt 0 ]; then TYPES=("$@"); fi

rm -rf "$OUT"
mkdir -p "$OUT/gen" "$OUT/obj" "$OUT/bin" "$OUT/log"

# The nanopb code, generated as proto/BUILD does.
for p in taskgrid/v1/taskgrid grpc/health/v1/health \
    grpc/reflection/v1/reflection; do
    protoc --plugin=protoc-gen-nanopb=/usr/bin/protoc-gen-nanopb \
        --nanopb_opt=-I"$ROOT/proto" --nanopb_out="$OUT/gen" \
        -I"$ROOT/proto" "$ROOT/proto/$p.proto"
done

SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
CFLAGS=(-std=c11 -D_GNU_SOURCE -DPB_ENABLE_MALLOC=1 -g -O1
    -fno-omit-frame-pointer -Wall -Wextra -Werror -Wno-unused-parameter
    -I"$ROOT" -I"$ROOT/proto" -I"$OUT/gen" -I"$ROOT/sdk/include"
    -I"$ROOT/tests")
SRCS=("$WIRE_C" "$OUT/gen/taskgrid/v1/taskgrid.pb.c"
    "$OUT/gen/grpc/health/v1/health.pb.c"
    "$OUT/gen/grpc/reflection/v1/reflection.pb.c" "$ROOT/util/status.c"
    "$ROOT/util/array.c" "$ROOT/tests/fuzz/wire_check.c")
OBJS=()
for s in "${SRCS[@]}"; do
    o="$OUT/obj/$(basename "$s" .c).o"
    "$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o"
    OBJS+=("$o")
done
for t in "${TYPES[@]}"; do
    "$CC" "${CFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer -DTG_FUZZ_TYPE="$t" \
        "$ROOT/tests/fuzz/wire_fuzz.c" "${OBJS[@]}" -lprotobuf-nanopb -lpthread \
        -o "$OUT/bin/$t"
done
echo "fuzz.sh: built ${#TYPES[@]} targets in $OUT/bin"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# 1. The crashes found so far must stay fixed.
fail=0
for t in "${TYPES[@]}"; do
    d="$ROOT/tests/fuzz/regressions/$t"
    [ -d "$d" ] || continue
    files=("$d"/*)
    [ -e "${files[0]}" ] || continue
    if ! "$OUT/bin/$t" "${files[@]}" >"$OUT/log/$t.regressions" 2>&1; then
        echo "fuzz.sh: FAIL: a regression input crashes $t:" >&2
        tail -30 "$OUT/log/$t.regressions" >&2
        fail=1
    fi
done
[ $fail -eq 0 ] || exit 1
echo "fuzz.sh: regressions replay clean"

# 2. Fuzz each target for a while, from a copy of its seeds.
run_one() {
    t=$1
    mkdir -p "$OUT/corpus/$t" "$OUT/crash/$t"
    cp "$ROOT/tests/fuzz/corpus/$t/"* "$OUT/corpus/$t/" 2>/dev/null || true
    if "$OUT/bin/$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$OUT/crash/$t/" "$OUT/corpus/$t" \
        >"$OUT/log/$t.fuzz" 2>&1; then
        echo "fuzz.sh: ok   $t ($(grep -o 'stat::number_of_executed_units: *[0-9]*' \
            "$OUT/log/$t.fuzz" | grep -o '[0-9]*$') runs)"
    else
        echo "fuzz.sh: FAIL $t: input saved in $OUT/crash/$t/" >&2
        grep -E "ERROR|SUMMARY|==|runtime error|outside" "$OUT/log/$t.fuzz" |
            head -20 >&2
        return 1
    fi
}
export -f run_one
export OUT ROOT SECONDS_EACH
printf '%s\n' "${TYPES[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}' ||
    fail=1
if [ $fail -ne 0 ]; then
    echo "fuzz.sh: FAILED (logs in $OUT/log)" >&2
    exit 1
fi
echo "fuzz.sh: all ${#TYPES[@]} targets clean (${SECONDS_EACH}s each)"
