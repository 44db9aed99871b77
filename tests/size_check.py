#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Size as a signal of cohesion: fail when a source file (C, Python, Go;
not tests, generated or vendored code) grows past 1,000 lines or a C
function past 150 lines. A file or function that big usually holds more
than one concept; split it by concept rather than raise the limits.

C functions are measured from the line that names them to their closing
brace; the check relies on the project's clang-format style, which puts
a function's braces in column 0.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MAX_FILE_LINES = 1000
MAX_FUNCTION_LINES = 150
SKIP_PARTS = {"tests", "third_party", "testdata"}


def sources(root: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard",
         "*.c", "*.h", "*.py", "*.go"],
        cwd=root, check=True, capture_output=True, text=True).stdout
    keep = []
    for name in out.split():
        p = Path(name)
        if SKIP_PARTS & set(p.parts) or p.name.endswith("_test.go"):
            continue
        if ".pb." in p.name or p.name.endswith("_pb2.py") or \
                p.name.endswith("_pb2_grpc.py") or p.name.startswith("test_"):
            continue
        if (root / p).is_file():
            keep.append(p)
    return keep


def long_functions(lines: list[str]) -> list[tuple[int, str, int]]:
    found = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("{") and i > 0:
            start = i - 1
            while start > 0 and "(" not in lines[start]:
                start -= 1
            head = lines[start].split("(")[0].split()
            name = head[-1].lstrip("*") if head else "?"
            end = i + 1
            while end < len(lines) and not lines[end].startswith("}"):
                end += 1
            n = end - start + 1
            if n > MAX_FUNCTION_LINES:
                found.append((start + 1, name, n))
            i = end
        i += 1
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = []
    for p in sources(root):
        lines = (root / p).read_text(errors="replace").split("\n")
        if len(lines) - 1 > MAX_FILE_LINES:
            problems.append(f"{p}: {len(lines) - 1} lines "
                            f"(limit {MAX_FILE_LINES})")
        if p.suffix == ".c":
            for line, name, n in long_functions(lines):
                problems.append(f"{p}:{line}: {name}() is {n} lines "
                                f"(limit {MAX_FUNCTION_LINES})")
    for msg in problems:
        print(msg)
    if problems:
        print(f"size check: {len(problems)} problem(s)")
        return 1
    print("size check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
