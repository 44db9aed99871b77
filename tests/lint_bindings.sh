#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Static checks of the language bindings, installing what is missing:
#   Python (bindings/python/src): ruff check, ruff format --check and mypy
#     (strict), with the tool versions pinned in
#     bindings/python/requirements-lint.txt and the configuration in
#     bindings/python/pyproject.toml. mypy reads the message types from the
#     stubs protoc generates, so they are generated first into
#     src/taskgrid/v1/, where an editable install puts them too (git
#     ignores it).
#   Go (bindings/go): gofmt -l (must list nothing), go vet and staticcheck
#     (version below).
# Expects what tests/setup.sh installs (Python with pip, the binding's
# dependencies, Go).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2, for Go 1.26
PYDIR=bindings/python
GODIR=bindings/go

# -- Python -------------------------------------------------------------------

# Every pin of requirements-lint.txt installed at exactly its version?
pins_ok() {
  "$PY" - "$PYDIR/requirements-lint.txt" <<'PYEOF'
import sys
from importlib import metadata

for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PYEOF
}
if ! pins_ok; then
  echo "lint: installing $PYDIR/requirements-lint.txt"
  "$PY" -m pip install -q -r "$PYDIR/requirements-lint.txt"
fi
# mypy checks the code against its dependencies' types; grpcio-tools
# generates the stubs.
if ! "$PY" -c 'import cloudpickle, dask, google.protobuf, grpc, grpc_tools, prefect, tqdm' 2>/dev/null; then
  echo "lint: installing the Python binding's dependencies ($PYDIR[test])"
  "$PY" -m pip install -q "./$PYDIR[test]"
fi

echo "== generating the gRPC stubs for mypy ($PYDIR/src/taskgrid/v1)"
rm -rf "$PYDIR/src/taskgrid/v1"
"$PY" - <<'PYEOF'
import pathlib
import sys

import grpc_tools
from grpc_tools import protoc

root = pathlib.Path("proto")
out = pathlib.Path("bindings/python/src")
well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
args = [
    "grpc_tools.protoc",
    f"-I{root}",
    f"-I{well_known}",
    f"--python_out={out}",
    f"--pyi_out={out}",
    f"--grpc_python_out={out}",
    str(root / "taskgrid" / "v1" / "taskgrid.proto"),
]
if protoc.main(args) != 0:
    sys.exit("lint: protoc failed")
(out / "taskgrid" / "v1" / "__init__.py").write_text(
    '"""taskgrid.v1: gRPC stubs generated from proto/taskgrid/v1."""\n'
)
PYEOF

echo "== ruff check"
(cd "$PYDIR" && "$PY" -m ruff check src)
echo "== ruff format --check"
(cd "$PYDIR" && "$PY" -m ruff format --check src)
echo "== mypy"
(cd "$PYDIR" && "$PY" -m mypy src)

# -- Go -----------------------------------------------------------------------

gobin() {
  local d
  d=$(cd "$GODIR" && go env GOBIN)
  if [ -z "$d" ]; then d="$(cd "$GODIR" && go env GOPATH)/bin"; fi
  echo "$d"
}
STATICCHECK="$(gobin)/staticcheck"
if ! grep -qF "(${STATICCHECK_VERSION#v})" <<<"$("$STATICCHECK" -version 2>/dev/null)"; then
  echo "lint: installing staticcheck $STATICCHECK_VERSION"
  # From the module's folder, so it is built by the Go the module asks for
  # (an older go fetches that toolchain itself): staticcheck can only check
  # code of a Go version it was built with.
  (cd "$GODIR" && go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
fi

echo "== gofmt -l"
# The gofmt of the toolchain go selected for the module, not whichever
# (possibly older) one is first on PATH.
unformatted=$(cd "$GODIR" && "$(go env GOROOT)/bin/gofmt" -l .)
if [ -n "$unformatted" ]; then
  echo "lint: not gofmt-formatted (run gofmt -w on them):" >&2
  echo "$unformatted" >&2
  exit 1
fi
echo "== go vet"
(cd "$GODIR" && go vet ./...)
echo "== staticcheck"
(cd "$GODIR" && "$STATICCHECK" ./...)

echo "lint: all binding checks passed"
