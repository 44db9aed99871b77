# SPDX-License-Identifier: Apache-2.0
#
# Helpers sourced by the scripts in tests/cluster.

# wait_for SECONDS COMMAND...: run COMMAND (quietly) until it succeeds;
# fail after SECONDS.
wait_for() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# usage_exit TEXT: print "usage: TEXT" and exit with status 2.
usage_exit() {
  echo "usage: $1" >&2
  exit 2
}
