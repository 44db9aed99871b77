#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bazel run //:install -- --prefix DIR [--destdir STAGING]
#
# Installs what C users of taskgrid need, from this build:
#   DIR/bin/taskgrid-scheduler, taskgrid-worker, taskgrid-certs
#   DIR/lib/libtaskgrid.so.0.1.0, with the links libtaskgrid.so.0 (its
#     SONAME) and libtaskgrid.so: the SDK with this repository's code and
#     nanopb inside, exporting only the tg_* API; gRPC, gpr, OpenSSL and
#     ISA-L are recorded as NEEDED shared libraries
#   DIR/lib/libtaskgrid.a: the same code as one static archive
#   DIR/include/taskgrid/*.h: the public headers
#   DIR/lib/pkgconfig/taskgrid.pc (the shared library) and
#     taskgrid-static.pc (the archive)
# With --destdir, files go under STAGING/DIR while the .pc files still say
# DIR (for packagers). A relative DIR is taken from where `bazel run` was
# started. Needs only coreutils and sed.
set -euo pipefail

# Keep in step with bindings/python/pyproject.toml.
VERSION=0.1.0
SOMAJOR=0

usage() {
  sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'
}

prefix=""
destdir=""
while [ $# -gt 0 ]; do
  case "$1" in
  --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
  --prefix=*) prefix=${1#--prefix=}; shift ;;
  --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
  --destdir=*) destdir=${1#--destdir=}; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "install: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$prefix" ]; then
  echo "install: give the target with --prefix DIR (e.g. --prefix /usr/local)" >&2
  exit 2
fi
# `bazel run` runs us in the runfiles tree; relative paths are the user's.
abspath() {
  case "$1" in
  /*) printf '%s\n' "$1" ;;
  *) printf '%s/%s\n' "${BUILD_WORKING_DIRECTORY:-$PWD}" "$1" ;;
  esac
}
prefix=$(abspath "$prefix")
prefix=${prefix%/}
[ -n "$destdir" ] && destdir=$(abspath "$destdir") && destdir=${destdir%/}

# The built files, from the runfiles tree (bazel run's working directory).
src=""
for d in "${RUNFILES_DIR:-}/taskgrid" "$0.runfiles/taskgrid" "$PWD"; do
  if [ -f "$d/install/taskgrid.pc.in" ]; then src=$d; break; fi
done
if [ -z "$src" ]; then
  echo "install: cannot find the built files; run me with 'bazel run //:install -- --prefix DIR'" >&2
  exit 1
fi

root="$destdir$prefix"
bindir="$root/bin"
libdir="$root/lib"
incdir="$root/include/taskgrid"
pcdir="$libdir/pkgconfig"
mkdir -p "$bindir" "$libdir" "$incdir" "$pcdir"

install -m 755 "$src/scheduler/taskgrid-scheduler" "$src/worker/taskgrid-worker" \
  "$src/scheduler/taskgrid-certs" "$bindir/"
real="libtaskgrid.so.$VERSION"
install -m 755 "$src/sdk/shared/libtaskgrid.so" "$libdir/$real"
ln -sfn "$real" "$libdir/libtaskgrid.so.$SOMAJOR"
ln -sfn "libtaskgrid.so.$SOMAJOR" "$libdir/libtaskgrid.so"
install -m 644 "$src/sdk/static/libtaskgrid.a" "$libdir/libtaskgrid.a"
install -m 644 "$src"/sdk/include/taskgrid/*.h "$incdir/"

# What the archive still needs, from its deps' linkopts (-lgrpc -lgpr
# -lssl -lcrypto -lisal -lpthread -ldl); OpenSSL and ISA-L come through their
# own openssl.pc and libisal.pc.
others=""
while read -r flag; do
  case "$flag" in
  "" | -lssl | -lcrypto | -lisal) ;;
  *) others="$others $flag" ;;
  esac
done <"$src/sdk/static/libtaskgrid.a.linkopts"
others=${others# }

pc() { # NAME DESCRIPTION REQUIRES REQUIRES_PRIVATE LIBS LIBS_PRIVATE
  sed -e "s|@PREFIX@|$prefix|" -e "s|@NAME@|$1|" -e "s|@DESCRIPTION@|$2|" \
    -e "s|@VERSION@|$VERSION|" -e "s|@REQUIRES@|$3|" \
    -e "s|@REQUIRES_PRIVATE@|$4|" -e "s|@LIBS@|$5|" -e "s|@LIBS_PRIVATE@|$6|" \
    "$src/install/taskgrid.pc.in"
}
# Shared: gRPC, OpenSSL and ISA-L are NEEDED by libtaskgrid.so itself, so
# an application links -ltaskgrid only; the private fields serve --static.
pc taskgrid "" "" "openssl libisal" '-L${libdir} -ltaskgrid' "$others" >"$pcdir/taskgrid.pc"
# Static: the archive by path (a plain -ltaskgrid would pick the .so).
pc taskgrid-static " (static archive)" "openssl libisal" "" \
  "\${libdir}/libtaskgrid.a $others" "" >"$pcdir/taskgrid-static.pc"
chmod 644 "$pcdir/taskgrid.pc" "$pcdir/taskgrid-static.pc"

echo "installed taskgrid $VERSION in $root:"
echo "  bin/taskgrid-scheduler bin/taskgrid-worker bin/taskgrid-certs"
echo "  lib/libtaskgrid.so.$VERSION (+ .so.$SOMAJOR, .so) lib/libtaskgrid.a"
echo "  include/taskgrid/ lib/pkgconfig/taskgrid.pc lib/pkgconfig/taskgrid-static.pc"
echo "build with: cc app.c \$(pkg-config --cflags --libs taskgrid)   (PKG_CONFIG_PATH=$prefix/lib/pkgconfig)"
