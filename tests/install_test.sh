#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `bazel run //:install` gives C users a working taskgrid outside Bazel:
# installs into a temporary prefix, checks libtaskgrid.so (SONAME, NEEDED
# gRPC/gpr/OpenSSL/ISA-L, nothing left undefined, only tg_* exported) and
# that the .pc files name libisal (the SDK's CRC-32), then
# builds sdk/examples/diamond.c out of tree with
#   cc diamond.c $(pkg-config --cflags --libs taskgrid)          (shared)
#   cc diamond.c $(pkg-config --cflags --libs taskgrid-static)   (static)
# and runs each from a folder outside the checkout with only PREFIX/bin
# (and the system's) on PATH: no TASKGRID_BIN_DIR, no bazel-bin. Also: a
# wrong TASKGRID_BIN_DIR is an error naming it; the shared library finds
# PREFIX/bin by itself; a static program without the programs on PATH gets
# an error saying where it looked.
#
# BAZEL (default bazel; may carry startup options) and BAZEL_FLAGS (extra
# options) choose how Bazel runs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
read -r -a bazel <<<"${BAZEL:-bazel}"
read -r -a flags <<<"${BAZEL_FLAGS:-}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }

echo "== bazel run //:install -- --prefix $prefix"
(cd "$repo" && "${bazel[@]}" run "${flags[@]}" //:install -- --prefix "$prefix") >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "install failed"; }

for f in bin/taskgrid-scheduler bin/taskgrid-worker bin/taskgrid-certs \
  lib/libtaskgrid.so lib/libtaskgrid.so.0 lib/libtaskgrid.a \
  include/taskgrid/taskgrid.h include/taskgrid/cluster.h \
  lib/pkgconfig/taskgrid.pc lib/pkgconfig/taskgrid-static.pc; do
  [ -e "$prefix/$f" ] || fail "missing $f"
done

echo "== taskgrid-scheduler: libmicrohttpd (its HTTP port) resolved, page embedded"
sdyn=$(readelf -d "$prefix/bin/taskgrid-scheduler")
grep -q "NEEDED.*\[libmicrohttpd.so.12" <<<"$sdyn" || fail "taskgrid-scheduler does not link libmicrohttpd.so.12:
$sdyn"
if grep -q 'not found' <<<"$(ldd "$prefix/bin/taskgrid-scheduler")"; then
  fail "taskgrid-scheduler needs a library this machine lacks: $(ldd "$prefix/bin/taskgrid-scheduler")"
fi
grep -q 'tgDashboard' <<<"$(strings "$prefix/bin/taskgrid-scheduler")" ||
  fail "the dashboard page is not embedded in taskgrid-scheduler"

echo "== libtaskgrid.so: SONAME, NEEDED, undefined symbols, exports"
lib=$prefix/lib/libtaskgrid.so
dyn=$(readelf -d "$lib")
grep -q 'SONAME.*\[libtaskgrid\.so\.0\]' <<<"$dyn" || fail "no SONAME libtaskgrid.so.0"
for needed in libgrpc.so libgpr.so libcrypto.so libisal.so libc.so; do
  grep -q "NEEDED.*\[$needed" <<<"$dyn" || fail "$needed is not NEEDED:
$dyn"
done
# Everything resolves against the NEEDED libraries alone.
# (grep reads whole outputs from here-strings: with pipefail, `cmd | grep
# -q` can fail when grep exits early and cmd gets SIGPIPE.)
if grep -q 'undefined symbol' <<<"$(ldd -r "$lib" 2>&1)"; then
  ldd -r "$lib" 2>&1 | grep 'undefined symbol' | head
  fail "undefined symbols in $lib"
fi
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
  grep -v -E '^(tg_[a-z0-9_]+|_init|_fini|__bss_start|_edata|_end)$' || true)
[ -z "$bad" ] || fail "exports beyond tg_*: $bad"
# The archive holds the SDK, the codec, the transport and nanopb.
members=$(ar t "$prefix/lib/libtaskgrid.a")
for m in cluster client wire pb_encode; do
  grep -q "^$m" <<<"$members" || fail "libtaskgrid.a lacks $m"
done

# ISA-L comes through its own libisal.pc, as OpenSSL through openssl.pc.
grep -q '^Requires.private: openssl libisal$' "$prefix/lib/pkgconfig/taskgrid.pc" ||
  fail "taskgrid.pc does not require libisal privately: $(cat "$prefix/lib/pkgconfig/taskgrid.pc")"
grep -q '^Requires: openssl libisal$' "$prefix/lib/pkgconfig/taskgrid-static.pc" ||
  fail "taskgrid-static.pc does not require libisal: $(cat "$prefix/lib/pkgconfig/taskgrid-static.pc")"

echo "== build sdk/examples/diamond.c out of tree with pkg-config"
app=$tmp/app
mkdir -p "$app"
cp "$repo/sdk/examples/diamond.c" "$app/"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cd "$app"
# shellcheck disable=SC2046 # word splitting of pkg-config output is meant
cc -o diamond diamond.c $(pkg-config --cflags --libs taskgrid) \
  -Wl,-rpath,"$(pkg-config --variable=libdir taskgrid)"
# shellcheck disable=SC2046
cc -o diamond-static diamond.c $(pkg-config --cflags --libs taskgrid-static)
grep -q "$prefix/lib/libtaskgrid.so.0" <<<"$(ldd diamond)" ||
  fail "diamond does not use the installed libtaskgrid.so"
if grep -q libtaskgrid <<<"$(ldd diamond-static)"; then fail "diamond-static needs libtaskgrid.so"; fi

# Only the install's programs and the system's on PATH; nothing else.
clean=(env -i "HOME=$tmp" "TMPDIR=$tmp" "PATH=$prefix/bin:/usr/bin:/bin")
for exe in diamond diamond-static; do
  echo "== run $exe (programs from $prefix/bin via PATH)"
  out=$(timeout 60 "${clean[@]}" "./$exe" 100) || fail "$exe failed: $out"
  grep -q '^diamond(100) = 9900 ' <<<"$out" || fail "$exe printed: $out"
  echo "$out"
done

echo "== lookup errors are explicit"
if out=$(timeout 60 "${clean[@]}" TASKGRID_BIN_DIR=/nonexistent/tg ./diamond 100 2>&1); then
  fail "a wrong TASKGRID_BIN_DIR was ignored: $out"
fi
grep -q 'TASKGRID_BIN_DIR.*/nonexistent/tg' <<<"$out" || fail "the error does not name TASKGRID_BIN_DIR: $out"
# The static program has no library folder to go by: PATH it is.
if out=$(timeout 60 env -i "HOME=$tmp" PATH=/usr/bin:/bin ./diamond-static 100 2>&1); then
  fail "found programs that are not on PATH: $out"
fi
grep -q 'taskgrid-scheduler not found' <<<"$out" || fail "unclear error: $out"
# PREFIX/lib/libtaskgrid.so finds PREFIX/bin by itself.
out=$(timeout 60 env -i "HOME=$tmp" PATH=/usr/bin:/bin ./diamond 100) ||
  fail "libtaskgrid.so did not find the programs installed beside it: $out"
# TASKGRID_BIN_DIR may name a bazel-bin-like tree too.
mkdir -p "$tmp/tree/scheduler" "$tmp/tree/worker"
cp "$prefix/bin/taskgrid-scheduler" "$tmp/tree/scheduler/"
cp "$prefix/bin/taskgrid-worker" "$tmp/tree/worker/"
out=$(timeout 60 env -i "HOME=$tmp" PATH=/usr/bin:/bin TASKGRID_BIN_DIR="$tmp/tree" ./diamond 100) ||
  fail "TASKGRID_BIN_DIR with scheduler/ and worker/ failed: $out"

echo "install_test: ok"
