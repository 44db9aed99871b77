#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Quick start: install what is missing, build, and run the diamond flow
# (inc map, dec map, add map, sum over range(M)) on a temporary local
# cluster that is started for the run and torn down after it.
#   bash tests/quickstart.sh [M]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
bazel build //scheduler //worker //sdk/examples:diamond 2>&1 | tail -n 1
exec bazel-bin/sdk/examples/diamond "${1:-100}"
