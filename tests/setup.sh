#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs what taskgrid needs on a Debian 12 machine, skipping what is
# already there: the C toolchain and libraries (gRPC C core, nanopb,
# OpenSSL, cmocka, jansson, libmicrohttpd and GnuTLS for the scheduler's
# HTTP port), Bazel, clang-format and clang with its libFuzzer runtime (the
# fuzz targets), Chromium and its WebDriver (the dashboard test), Slurm,
# munge and OpenSSH's server (the cluster tests, tests/cluster) from
# Debian's packages, and the Python test dependencies (grpcio, grpcio-tools,
# grpcio-health-checking, pytest, prometheus_client, selenium) from PyPI,
# and grpcurl from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential pkg-config
  libgrpc-dev protobuf-compiler protobuf-compiler-grpc
  nanopb libnanopb-dev
  libssl-dev libcmocka-dev libjansson-dev zlib1g-dev libisal-dev
  libmicrohttpd-dev libgnutls28-dev
  chromium chromium-driver
  bazel-bootstrap valgrind clang-format
  clang libclang-rt-14-dev
  slurm-wlm munge openssh-server
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import grpc, grpc_tools, grpc_health, pytest, cryptography, prometheus_client, selenium' 2>/dev/null; then
  echo "setup: installing grpcio grpcio-tools grpcio-health-checking pytest cryptography prometheus_client selenium"
  "$PY" -m pip install -q grpcio grpcio-tools grpcio-health-checking pytest cryptography \
    prometheus_client selenium
fi

# The Python binding and its test extras (Prefect, ...). Always installed
# from this checkout: an installed copy from another checkout would test
# that one's code and find that one's programs.
echo "setup: installing the Python binding (bindings/python[test])"
"$PY" -m pip install -q './bindings/python[test]'


# Go: the module asks for Go 1.26; an older go fetches that toolchain
# through the Go module proxy by itself (GOTOOLCHAIN=auto).
if ! command -v go >/dev/null 2>&1; then
  echo "setup: installing golang-go"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go >/dev/null
fi

# grpcurl, the stock reflection client tests/python/test_reflection.py
# runs against the scheduler and a worker's data service: from the Go
# module proxy into Go's bin directory (GOBIN, else GOPATH/bin), once per
# version. Not fatal: without it that test is skipped, saying why.
GRPCURL_VERSION=v1.9.3
GO_BIN_DIR=$(go env GOBIN)
if [ -z "$GO_BIN_DIR" ]; then GO_BIN_DIR="$(go env GOPATH)/bin"; fi
if ! go version -m "$GO_BIN_DIR/grpcurl" 2>/dev/null |
    grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/fullstorydev/grpcurl[[:space:]]+$GRPCURL_VERSION[[:space:]]"; then
  echo "setup: installing grpcurl $GRPCURL_VERSION into $GO_BIN_DIR"
  GOBIN="$GO_BIN_DIR" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" ||
    echo "setup: could not install grpcurl (tests/python/test_reflection.py will be skipped)" >&2
fi
