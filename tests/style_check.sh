#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# C style: every C source (not vendored or generated code) is formatted as
# .clang-format says, and no source file or C function outgrows the size
# limits of tests/size_check.py. Fix formatting with
#   git ls-files '*.c' '*.h' | grep -v '^third_party/' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.c' '*.h' |
                     grep -v '^third_party/' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
echo "clang-format: checking ${#files[@]} C files"
clang-format --dry-run --Werror "${files[@]}"
python3 tests/size_check.py

# Every deadline in the C code is monotonic (util/clock.h), so a file that
# waits on a condition variable with a deadline must make its condition
# variables monotonic: a default (wall-clock) one returns from a monotonic
# deadline at once, and its wait loop spins a core.
bad=0
for f in "${files[@]}"; do
  if grep -q 'pthread_cond_timedwait' "$f" && ! grep -q 'pthread_condattr_setclock(.*CLOCK_MONOTONIC' "$f"; then
    echo "$f: waits with pthread_cond_timedwait but never makes a condition variable monotonic (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC))"
    bad=1
  fi
done
[ "$bad" = 0 ] || exit 1
