"""The same small programs with Dask distributed and with taskgrid.

Each file in tests/compat/ is a program written for Dask distributed (and
prefect-dask): it imports only through the lines mapped in SWITCH below,
and prints one JSON document as its last line of output. The test runs it
as it is, then with only those import lines switched to taskgrid, and
compares the two documents: what a user porting the program would see.
A program may print {"skip": "why"} on one side only when that side cannot
run it here (never used to hide a difference).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
PROGRAMS = sorted((HERE / "compat").glob("*.py"))

# The one-line switch: each Dask import line and its taskgrid spelling.
SWITCH = [
    (re.compile(r"^from distributed import (.+)$", re.M), r"from taskgrid import \1"),
    (re.compile(r"^from prefect_dask import (.+)$", re.M), r"from taskgrid.prefect import \1"),
]


def switched(source: str) -> str:
    """The program with its Dask import lines switched to taskgrid."""
    out, n = source, 0
    for pattern, repl in SWITCH:
        out, k = pattern.subn(repl, out)
        n += k
    assert n > 0, "a compat program must import from distributed or prefect_dask"
    changed = [a for a, b in zip(source.splitlines(), out.splitlines()) if a != b]
    assert len(changed) == n  # only the import lines differ
    return out


def run(source: str, name: str, tmp: pathlib.Path) -> dict[str, object]:
    path = tmp / name
    path.write_text(source)
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert proc.returncode == 0 and lines, (
        f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    doc = json.loads(lines[-1])
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_same_result_with_dask_and_taskgrid(program: pathlib.Path, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("distributed", reason="the compat suite compares against Dask distributed")
    source = program.read_text()
    (tmp_path / "dask").mkdir()
    (tmp_path / "taskgrid").mkdir()
    want = run(source, program.name, tmp_path / "dask")
    got = run(switched(source), program.name, tmp_path / "taskgrid")
    if "skip" in want:
        pytest.skip(f"Dask side: {want['skip']}")
    assert "skip" not in got, got
    assert got == want
