# SPDX-License-Identifier: Apache-2.0
"""A LocalCluster lives exactly as long as the process that started it,
whichever thread started it.

A child interpreter starts a cluster from a thread that then ends, checks
the cluster still runs a task, reports its scheduler's pid, and dies
without close() (os._exit, or SIGKILL from the test). Every process of the
scheduler's process group (the scheduler and its launched workers) must be
gone within a bounded time. Also: the lookup order of the C programs.
"""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import taskgrid
from taskgrid import cluster as cluster_mod

CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    import taskgrid

    box = {}
    t = threading.Thread(
        target=lambda: box.update(cl=taskgrid.LocalCluster(n_workers=2, threads_per_worker=1)))
    t.start()
    t.join()
    time.sleep(0.3)  # a death tied to the ended thread would show now
    cl = box["cl"]
    c = taskgrid.Client(cl, set_as_default=False)
    assert c.submit(lambda x: x + 1, 1).result(timeout=30) == 2
    print(cl._proc.pid, flush=True)
    if sys.argv[1] == "exit":
        os._exit(0)  # no close(), no atexit
    time.sleep(120)  # the test SIGKILLs us
    """
)


def _group(pgid: int) -> set[int]:
    """Live (not zombie) processes of process group `pgid`."""
    found = set()
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.add(int(d.name))
    return found


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_cluster_started_from_a_thread_dies_with_its_process(binaries, how) -> None:
    env = dict(os.environ)
    src = str(pathlib.Path(taskgrid.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # bounded by the child's own timeouts
        assert line.strip().isdigit(), f"child failed (exit {child.wait(30)})"
        sched = int(line)
        members = _group(sched)
        assert sched in members and len(members) >= 3  # scheduler + 2 workers
        if how == "sigkill":
            child.send_signal(signal.SIGKILL)
        child.wait(30)
        deadline = time.monotonic() + 15
        while _group(sched):
            if time.monotonic() > deadline:
                left = _group(sched)
                os.killpg(sched, signal.SIGKILL)
                pytest.fail(f"processes {sorted(left)} of the cluster outlived their parent")
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_cluster_started_from_an_ended_thread_keeps_working(binaries) -> None:
    box: dict[str, taskgrid.LocalCluster] = {}
    t = threading.Thread(target=lambda: box.update(cl=taskgrid.LocalCluster(n_workers=1)))
    t.start()
    t.join()
    with box["cl"] as cl:
        time.sleep(0.5)
        assert cl._proc is not None and cl._proc.poll() is None
        with taskgrid.Client(cl, set_as_default=False) as c:
            assert c.gather(c.map(lambda x: x * 2, range(5))) == [0, 2, 4, 6, 8]


def test_lookup_order(binaries, tmp_path, monkeypatch) -> None:
    scheduler, _ = binaries
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "taskgrid-scheduler").symlink_to(scheduler)
    # An explicit argument beats TASKGRID_BIN_DIR, which beats the rest.
    monkeypatch.setenv("TASKGRID_BIN_DIR", str(tmp_path / "missing"))
    assert taskgrid.find_binary("taskgrid-scheduler", flat).startswith(str(flat))
    with pytest.raises(taskgrid.BinaryNotFound, match="TASKGRID_BIN_DIR"):
        taskgrid.find_binary("taskgrid-scheduler")
    with pytest.raises(taskgrid.BinaryNotFound, match="bin_dir"):
        taskgrid.LocalCluster(n_workers=1, bin_dir=tmp_path / "also-missing")
    # Programs inside the package come before PATH.
    monkeypatch.delenv("TASKGRID_BIN_DIR")
    monkeypatch.setattr(cluster_mod, "package_bin_dir", lambda: flat)
    on_path = tmp_path / "path"
    on_path.mkdir()
    (on_path / "taskgrid-scheduler").symlink_to(scheduler)
    monkeypatch.setenv("PATH", str(on_path))
    assert taskgrid.find_binary("taskgrid-scheduler").startswith(str(flat))
    monkeypatch.setattr(cluster_mod, "package_bin_dir", lambda: tmp_path / "none")
    assert taskgrid.find_binary("taskgrid-scheduler").startswith(str(on_path))
