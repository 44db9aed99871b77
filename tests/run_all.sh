#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs every taskgrid test after installing what is missing:
#   0. style: clang-format and size limits of the C sources
#      (tests/style_check.sh); ruff, ruff format, mypy, gofmt, go vet and
#      staticcheck on the bindings (tests/lint_bindings.sh)
#   1. bazel test //...           unit tests (pure core, codec, worker, SDK)
#                                 and multi-process integration tests
#   2. the same under AddressSanitizer + UBSan (--config=asan), then
#      each codec entry point fuzzed briefly (tests/fuzz.sh, libFuzzer)
#      and the C install checked out of tree (tests/install_test.sh)
#   3. the Go binding (go vet, go test -race) against real C processes
#   4. the Python binding (client, worker, Prefect runner) and a stock
#      Python gRPC client (grpcio, stubs generated from proto/)
#      against a real scheduler and workers, among them workers started
#      by hand in a one-node Slurm and over ssh in network-namespace
#      hosts (tests/cluster)
#   5. an integration run under valgrind
#   6. the benchmark smoke mode (tiny N, no timing claims)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh

echo "== style (clang-format, size limits)"
bash tests/style_check.sh

echo "== binding linters (ruff, mypy, gofmt, go vet, staticcheck)"
bash tests/lint_bindings.sh

echo "== bazel test //..."
bazel test //... 

echo "== bazel test --config=asan //..."
bazel test --config=asan //...

echo "== fuzz (libFuzzer, each decode entry point, briefly)"
bash tests/fuzz.sh

# Back to the plain build for the process-level checks below, which use
# this checkout's programs (not ones found elsewhere on the machine).
bazel build //scheduler //worker //scheduler:taskgrid-certs //sdk/examples:diamond >/dev/null
export TASKGRID_BIN_DIR="$PWD/bazel-bin"

echo "== C install (bazel run //:install, pkg-config, out-of-tree build)"
bash tests/install_test.sh

echo "== Go binding (go vet, go test -race)"
(cd bindings/go && go vet ./... && CI=true go test -race -count=1 ./...)

echo "== Python binding (client, worker, Prefect task runner)"
python3 -m pytest -q bindings/python/tests

echo "== stock gRPC client (Python grpcio)"
python3 -m pytest -q tests/python

echo "== valgrind"
bash tests/valgrind.sh

echo "== bench smoke"
bash bench/run.sh --smoke
