#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bash install/build_wheel.sh [--programs DIR] [OUTDIR]
#
# Builds the taskgrid Python wheel with the C programs inside
# (taskgrid/_bin/: taskgrid-scheduler, taskgrid-worker, taskgrid-certs),
# so that `pip install` of it anywhere on this platform gives a working
# LocalCluster with no checkout and no TASKGRID_BIN_DIR. Steps: build the
# programs with Bazel, copy bindings/python and proto/ to a temporary
# folder (a clean build, nothing shared with the checkout), and run
# `pip wheel` there with TASKGRID_BUNDLE_PROGRAMS pointing at bazel-bin
# (see bindings/python/setup.py). The wheel (py3-none-linux_x86_64) lands
# in OUTDIR (default: dist/ at the repository root); its path is printed
# last. The programs link Debian's gRPC, OpenSSL, jansson, libmicrohttpd
# and GnuTLS shared libraries, which the target machine needs (libgrpc29,
# libssl3, libjansson4, libmicrohttpd12, libgnutls30). With --programs DIR the programs are taken from DIR (a
# folder holding them, or a bazel-bin) and Bazel is not run.
#
# Environment: PYTHON (default python3; needs setuptools, wheel and
# grpcio-tools, as tests/setup.sh installs), BAZEL (default bazel; may
# carry startup options) and BAZEL_FLAGS (extra build options).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=""
if [ "${1:-}" = --programs ]; then
  bin=$(cd "${2:?--programs needs a directory}" && pwd)
  shift 2
fi
out=${1:-$repo/dist}
PY=${PYTHON:-python3}
read -r -a bazel <<<"${BAZEL:-bazel}"
read -r -a flags <<<"${BAZEL_FLAGS:-}"

cd "$repo"
if [ -z "$bin" ]; then
  "${bazel[@]}" build "${flags[@]}" //scheduler:taskgrid-scheduler \
    //worker:taskgrid-worker //scheduler:taskgrid-certs >&2
  bin=$("${bazel[@]}" info "${flags[@]}" bazel-bin 2>/dev/null)
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/bindings"
cp -r "$repo/proto" "$tmp/src/proto"
# The sources only: no build/, egg-info or generated stubs of the checkout.
(cd "$repo/bindings" && tar --exclude=build --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude=src/taskgrid/v1 -cf - python) |
  (cd "$tmp/src/bindings" && tar -xf -)
mkdir -p "$out"
out=$(cd "$out" && pwd)
TASKGRID_BUNDLE_PROGRAMS="$bin" "$PY" -m pip wheel -q --no-deps \
  --no-build-isolation -w "$tmp/wheel" "$tmp/src/bindings/python" >&2
whl=$(ls "$tmp"/wheel/taskgrid-*.whl)
cp "$whl" "$out/"
echo "$out/$(basename "$whl")"
