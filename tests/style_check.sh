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
