# SPDX-License-Identifier: Apache-2.0
"""The taskgrid wheel carries its C programs and works without a checkout.

Builds the wheel with install/build_wheel.sh from a copy of the programs
(from $TASKGRID_BIN_DIR, else bazel-bin), deletes that copy, installs the
wheel into a fresh virtual environment in a temporary folder, and there,
with no TASKGRID_BIN_DIR, no checkout on any path and no programs on PATH,
runs a LocalCluster of Python workers and one of C workers. Also checks
the lookup rules: a wrong TASKGRID_BIN_DIR is an error naming it, and it
beats the bundled programs when right. Needs PyPI (or a pip cache) for the
wheel's dependencies; every step is time-bounded.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("TASKGRID_BIN_DIR") or ROOT / "bazel-bin")
PROGRAMS = {
    "taskgrid-scheduler": "scheduler",
    "taskgrid-worker": "worker",
    "taskgrid-certs": "scheduler",
}

# Run by the venv's interpreter, from a folder outside the checkout.
CHECK = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys
    import taskgrid

    venv = pathlib.Path(sys.prefix).resolve()
    pkg = pathlib.Path(taskgrid.__file__).resolve().parent
    assert venv in pkg.parents, (pkg, venv)
    assert "TASKGRID_BIN_DIR" not in os.environ
    for name in ("taskgrid-scheduler", "taskgrid-worker", "taskgrid-certs"):
        path = pathlib.Path(taskgrid.find_binary(name)).resolve()
        assert path == pkg / "_bin" / name, path
    subprocess.run([taskgrid.find_binary("taskgrid-certs"), "--help"],
                   check=True, stdout=subprocess.DEVNULL, timeout=30)

    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=2, timeout=60) as cl:
        with taskgrid.Client(cl, set_as_default=False) as c:
            assert c.submit(lambda x: x + 1, 41).result(timeout=60) == 42
    with taskgrid.LocalCluster(n_workers=2, worker="c", timeout=60) as cl:
        assert len(cl.status().workers) == 2

    # An explicit setting is the only place looked in, and must be right.
    os.environ["TASKGRID_BIN_DIR"] = "/nonexistent/taskgrid-bin"
    try:
        taskgrid.LocalCluster(n_workers=1)
    except taskgrid.BinaryNotFound as e:
        assert "TASKGRID_BIN_DIR" in str(e) and "/nonexistent/taskgrid-bin" in str(e), e
    else:
        raise AssertionError("a wrong TASKGRID_BIN_DIR was ignored")
    print("wheel ok")
    """
)


def _run(cmd: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_wheel_works_without_checkout(tmp_path: pathlib.Path) -> None:
    # The build tree: a copy of the programs, deleted once the wheel exists.
    tree = tmp_path / "build-tree"
    tree.mkdir()
    for name, sub in PROGRAMS.items():
        src = next((p for p in (BIN / sub / name, BIN / name) if p.is_file()), None)
        if src is None:
            pytest.fail(f"{name} not found in {BIN}: run 'bazel build //scheduler "
                        "//worker //scheduler:taskgrid-certs'")
        shutil.copy(src, tree / name)
    out = tmp_path / "dist"
    r = _run(["bash", str(ROOT / "install" / "build_wheel.sh"), "--programs", str(tree),
              str(out)], timeout=300, env={**os.environ, "PYTHON": sys.executable})
    wheel = pathlib.Path(r.stdout.strip().splitlines()[-1])
    assert wheel.is_file() and wheel.name.endswith("-py3-none-linux_x86_64.whl"), wheel
    shutil.rmtree(tree)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv = elsewhere / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
         timeout=600)

    env = {k: v for k, v in os.environ.items()
           if k not in ("TASKGRID_BIN_DIR", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    for d in env["PATH"].split(":"):
        assert not (pathlib.Path(d) / "taskgrid-scheduler").exists(), d
    r = _run([py, "-c", CHECK], timeout=180, cwd=elsewhere, env=env)
    assert "wheel ok" in r.stdout
