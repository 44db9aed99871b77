# SPDX-License-Identifier: Apache-2.0
"""LocalCluster: finding the C programs, starting, and leaving nothing behind."""
from __future__ import annotations

import os
import pathlib
import time

import pytest

import taskgrid
from taskgrid import cluster as cluster_mod


def worker_pid():
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("layout", ["flat", "bazel"])
def test_taskgrid_bin_dir_is_searched_first(binaries, tmp_path, monkeypatch, layout) -> None:
    scheduler, worker = binaries
    if layout == "flat":
        (tmp_path / "taskgrid-scheduler").symlink_to(scheduler)
        (tmp_path / "taskgrid-worker").symlink_to(worker)
    else:
        (tmp_path / "scheduler").mkdir()
        (tmp_path / "worker").mkdir()
        (tmp_path / "scheduler" / "taskgrid-scheduler").symlink_to(scheduler)
        (tmp_path / "worker" / "taskgrid-worker").symlink_to(worker)
    monkeypatch.setenv("TASKGRID_BIN_DIR", str(tmp_path))
    assert taskgrid.find_binary("taskgrid-scheduler").startswith(str(tmp_path))
    assert taskgrid.find_binary("taskgrid-worker").startswith(str(tmp_path))


def test_missing_binaries_say_how_to_get_them(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TASKGRID_BIN_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cluster_mod, "__file__", str(tmp_path / "taskgrid" / "cluster.py"))
    with pytest.raises(taskgrid.BinaryNotFound) as e:
        taskgrid.LocalCluster(n_workers=1)
    msg = str(e.value)
    assert "taskgrid-scheduler" in msg and "bazel build //scheduler //worker" in msg
    assert "TASKGRID_BIN_DIR" in msg


def test_close_leaves_no_process_behind(binaries) -> None:
    cl = taskgrid.LocalCluster(n_workers=2, threads_per_worker=1)
    with taskgrid.Client(cl, set_as_default=False) as c:
        pids = set(c.gather(c.map(lambda _: worker_pid(), range(20), pure=False)))
    scheduler_pid = cl._proc.pid
    assert pids and scheduler_pid
    start = time.monotonic()
    cl.close()
    assert time.monotonic() - start < 10
    assert not _alive(scheduler_pid)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "worker processes outlived the cluster"
        time.sleep(0.05)


def test_client_without_address_starts_and_stops_its_own_cluster(binaries) -> None:
    with taskgrid.Client(n_workers=1, threads_per_worker=1) as c:
        cl = c.cluster
        assert isinstance(cl, taskgrid.LocalCluster)
        assert c.submit(sum, [1, 2]).result(10) == 3
        assert taskgrid.get_client() is c  # the default client
    assert cl._closed
    assert not _alive(cl._proc.pid)


def test_c_worker_cluster_and_repr(c_cluster) -> None:
    assert "2 c workers" in repr(c_cluster)
    assert c_cluster.address.startswith("tcp://127.0.0.1:")
