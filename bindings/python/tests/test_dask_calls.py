# SPDX-License-Identifier: Apache-2.0
"""Dask's cluster-wide Client calls on real LocalClusters: fire_and_forget
(a task outlives its client), who_has/has_what (held results name their
workers, inline ones the scheduler), scheduler_info's shape, run (one
result per worker, on_error, unknown workers), upload_file (a module
imported in a task), restart (futures cancelled, workers replaced),
retire_workers (held results moved, nothing lost; unknown names refused),
shutdown, futures_of, get_task_stream and performance_report."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterator

import pytest

import taskgrid

BIG = 200_000  # bytes: over the scheduler's 64 KiB inline limit


def _big(n: int) -> bytes:
    return b"x" * n


def _slow_write(path: str, delay: float) -> str:
    time.sleep(delay)
    pathlib.Path(path).write_text("done")
    return path


def _pid() -> int:
    return os.getpid()


def _fail() -> None:
    raise ValueError("boom in run")


def _wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.05)


@pytest.fixture()
def cluster(binaries: tuple[str, str]) -> Iterator[taskgrid.LocalCluster]:
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1) as cl:
        yield cl


def test_fire_and_forget_task_outlives_its_client(py_cluster: taskgrid.LocalCluster, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "ff.txt"
    with taskgrid.Client(py_cluster, set_as_default=False) as c:
        f = c.submit(_slow_write, str(target), 1.0, pure=False)
        taskgrid.fire_and_forget(f)
        del f
    # The client is gone (its holds released) before the task ended.
    assert not target.exists()
    _wait_for(target.exists, 30, "the fire-and-forget task did not write its file")


def test_fire_and_forget_released_once_final(py_client: taskgrid.Client) -> None:
    f = py_client.submit(_big, 10, pure=False)
    key = f.key
    taskgrid.fire_and_forget([{"a": f}])
    f.result(timeout=30)
    del f
    _wait_for(
        lambda: py_client.status([key]).keys[key][0] == "released",
        10,
        "the fire-and-forget result was not forgotten once final",
    )


def test_who_has_names_holders_and_the_scheduler(py_client: taskgrid.Client) -> None:
    big = py_client.submit(_big, BIG, pure=False)
    small = py_client.submit(_big, 10, pure=False)
    taskgrid.wait([big, small], timeout=30)
    names = {w.name for w in py_client.status().workers}
    wh = py_client.who_has([big, small])
    assert set(wh) == {big.key, small.key}
    assert wh[small.key] == ("scheduler",)
    assert len(wh[big.key]) == 1 and wh[big.key][0] in names
    hw = py_client.has_what()
    assert big.key in hw[wh[big.key][0]]
    assert set(names) <= set(hw)
    with pytest.raises(TypeError, match="keys"):
        py_client.who_has([big], keys=1)


def test_scheduler_info_shape(py_client: taskgrid.Client) -> None:
    info = py_client.scheduler_info()
    assert info["type"] == "Scheduler"
    assert {"id", "address", "services", "workers"} <= set(info)
    assert info["address"] == py_client.address
    assert len(info["workers"]) == len(py_client.status().workers)
    for name, w in info["workers"].items():
        assert w["name"] == name
        assert w["nthreads"] == 2
        assert {"memory_limit", "metrics", "status"} <= set(w)


def test_run_once_per_worker(py_client: taskgrid.Client) -> None:
    names = sorted(w.name for w in py_client.status().workers)
    pids = py_client.run(_pid)
    assert pids is not None and sorted(pids) == names
    assert len(set(pids.values())) == len(names)  # one process each
    one = py_client.run(_pid, workers=[names[0]])
    assert one == {names[0]: pids[names[0]]}
    with pytest.raises(ValueError, match="boom in run"):
        py_client.run(_fail)
    got = py_client.run(_fail, on_error="return")
    assert got is not None and all(isinstance(e, ValueError) for e in got.values())
    assert py_client.run(_fail, on_error="ignore") == {}
    with pytest.raises(ValueError, match="on_error"):
        py_client.run(_pid, on_error="shrug")
    with pytest.raises(ValueError, match="no connected worker is named 'nope'"):
        py_client.run(_pid, workers=["nope"])
    with pytest.raises(NotImplementedError, match="nanny"):
        py_client.run(_pid, nanny=True)


def test_run_a_named_function_on_c_workers(c_client: taskgrid.Client) -> None:
    got = c_client.run("tg.echo", 7)
    assert got is not None and len(got) == len(c_client.status().workers)
    assert list(got.values()) == [[7]] * len(got)  # tg.echo returns its JSON input


def test_upload_file_makes_a_module_importable(py_client: taskgrid.Client, tmp_path: pathlib.Path) -> None:
    mod = tmp_path / "tg_uploaded_mod.py"
    mod.write_text("def answer():\n    return 42\n")
    paths = py_client.upload_file(str(mod))
    assert len(paths) == len(py_client.status().workers)

    def use() -> int:
        import tg_uploaded_mod  # type: ignore[import-not-found]

        return int(tg_uploaded_mod.answer())

    assert py_client.run(use) == {name: 42 for name in paths}
    with pytest.raises(ValueError, match=".py, .zip or .egg"):
        py_client.upload_file(str(tmp_path / "x.txt"))


def test_retire_workers_moves_results(cluster: taskgrid.LocalCluster) -> None:
    with taskgrid.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2)
        futs = [c.submit(_big, BIG + i, pure=False) for i in range(4)]
        taskgrid.wait(futs, timeout=30)
        with pytest.raises(ValueError, match="no connected worker is named 'ghost'"):
            c.retire_workers(["ghost"])
        assert len(c.status().workers) == 2  # nothing retired
        victim = c.who_has([futs[0]])[futs[0].key][0]
        out = c.retire_workers([victim], timeout=30)
        assert list(out) == [victim]
        left = [w.name for w in c.status().workers]
        assert victim not in left and len(left) == 1
        # Nothing lost: every result is on the remaining worker.
        wh = c.who_has(futs)
        assert all(h == (left[0],) for h in wh.values()), wh
        assert [len(f.result(timeout=30)) for f in futs] == [BIG + i for i in range(4)]
        # Not replaced: the launcher's target went down.
        time.sleep(0.5)
        assert len(c.status().workers) == 1
        with pytest.raises(NotImplementedError, match="close_workers"):
            c.retire_workers(close_workers=False)


def test_restart_cancels_futures_and_replaces_workers(cluster: taskgrid.LocalCluster) -> None:
    with taskgrid.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2)
        before = {w.name for w in c.status().workers}
        done = c.submit(_big, BIG, pure=False)
        done.result(timeout=30)
        slow = c.submit(time.sleep, 30, pure=False)
        c.restart(timeout=60)
        after = {w.name for w in c.status().workers}
        assert len(after) == 2 and not (after & before)
        assert done.status == "cancelled" and slow.status == "cancelled"
        with pytest.raises(taskgrid.CancelledError):
            done.result(timeout=1)
        assert c.submit(_big, 3, pure=False).result(timeout=30) == b"xxx"


def test_shutdown_closes_an_owned_cluster(binaries: tuple[str, str]) -> None:
    c = taskgrid.Client(n_workers=1, threads_per_worker=1, set_as_default=False)
    cluster = c.cluster
    c.shutdown()
    assert c._closed
    with pytest.raises(Exception):
        taskgrid.Client(cluster.address, timeout=2, set_as_default=False)


def test_shutdown_of_a_remote_scheduler_is_refused(py_cluster: taskgrid.LocalCluster) -> None:
    with taskgrid.Client(py_cluster.address, set_as_default=False) as c:
        with pytest.raises(RuntimeError, match="cannot shut down"):
            c.shutdown()
        assert c.submit(_big, 1, pure=False).result(timeout=30) == b"x"


def test_futures_of_nested(py_client: taskgrid.Client) -> None:
    a, b = py_client.submit(_big, 1, pure=False), py_client.submit(_big, 2, pure=False)
    got = taskgrid.futures_of({"x": [a, (b, a)], "y": 3})
    assert [f.key for f in got] == [b.key, a.key]  # Dask's order
    assert taskgrid.futures_of(5) == []


def test_task_stream_and_performance_report(py_client: taskgrid.Client, tmp_path: pathlib.Path) -> None:
    report = tmp_path / "report.html"
    from taskgrid._future import clear_default, set_default

    set_default(py_client)
    try:
        with taskgrid.performance_report(filename=str(report)):
            with taskgrid.get_task_stream(client=py_client) as ts:
                futs = py_client.map(_big, range(5), pure=False)
                py_client.gather(futs)
    finally:
        clear_default(py_client)
    keys = {f.key for f in futs}
    assert {e["key"] for e in ts.data} >= keys
    for e in ts.data:
        assert {"key", "worker", "status", "startstops"} <= set(e)
        ss = e["startstops"][0]
        assert ss["action"] == "compute" and ss["start"] <= ss["stop"]
    text = report.read_text()
    assert "<svg" in text and "<td>big</td>" in text  # the function's row
    assert "<script" not in text and "src=" not in text  # self-contained
    stream = py_client.get_task_stream(count=2)
    assert len(stream) <= 2
    with pytest.raises(NotImplementedError, match="plot"):
        py_client.get_task_stream(plot=True)


def test_dask_names_exported() -> None:
    for name in ("fire_and_forget", "futures_of", "performance_report", "get_task_stream", "progress"):
        assert callable(getattr(taskgrid, name))
    assert isinstance(taskgrid.Client.dashboard_link, property)
