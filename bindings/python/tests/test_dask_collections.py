# SPDX-License-Identifier: Apache-2.0
"""Dask collections computed on taskgrid (Client.get/compute/persist).

Each collection test computes the same graph on taskgrid and on Dask's
synchronous local scheduler and compares the answers. Annotations are
checked where they are observable: resources place tasks on the worker
that has them, priorities order what one thread runs, retries rerun.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from operator import add

import dask
import dask.array as da
import dask.bag as db
import numpy as np
import pandas as pd
import pytest
from dask import delayed

import taskgrid
from taskgrid import _context, _dask

TIMEOUT = 60


@pytest.fixture(scope="module")
def cluster(binaries) -> Iterator[taskgrid.LocalCluster]:
    """2 Python workers x 2 threads."""
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2) as cl:
        yield cl


@pytest.fixture(scope="module")
def client(cluster) -> Iterator[taskgrid.Client]:
    with taskgrid.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=30)
        yield c


def small_timeseries():
    return dask.datasets.timeseries(
        "2000-01-01", "2000-01-08", freq="10s", partition_freq="1D", seed=7
    )


def where_am_i(_x=None) -> str:
    """The taskgrid task running this ('' outside one)."""
    task = _context.current_task()
    return task.key if task is not None else ""


def worker_name(_x=None) -> str:
    worker = _context.current_worker()
    return worker.name if worker is not None else ""


# ---------------------------------------------------------------------------
# Collections: the same answers as Dask's local scheduler
# ---------------------------------------------------------------------------


def test_dataframe_describe(client) -> None:
    df = small_timeseries()
    got = df.describe().compute(scheduler=client)
    pd.testing.assert_frame_equal(got, df.describe().compute(scheduler="sync"))


def test_dataframe_groupby_aggregate(client) -> None:
    df = small_timeseries()
    agg = df.groupby("name").agg({"x": "mean", "y": "max", "id": "count"})
    got = agg.compute(scheduler=client).sort_index()
    pd.testing.assert_frame_equal(got, agg.compute(scheduler="sync").sort_index())
    assert len(got) == 26


def test_array_reduction(client) -> None:
    x = da.random.RandomState(3).random_sample((600, 600), chunks=(150, 200))
    y = (x + x.T).mean(axis=0)
    got = y.compute(scheduler=client)
    np.testing.assert_allclose(got, y.compute(scheduler="sync"), rtol=1e-12)
    assert got.shape == (600,)


def test_bag_fold(client) -> None:
    b = db.from_sequence(range(1000), npartitions=9).map(lambda v: v * v)
    assert b.fold(add, initial=0).compute(scheduler=client) == sum(v * v for v in range(1000))
    freq = b.map(lambda v: v % 7).frequencies()
    assert sorted(freq.compute(scheduler=client)) == sorted(freq.compute(scheduler="sync"))


def test_each_dask_task_is_a_taskgrid_task(client) -> None:
    df = small_timeseries()
    keys = df.map_partitions(lambda p: pd.Series([where_am_i()])).compute(scheduler=client)
    assert len(set(keys)) == df.npartitions
    assert all(k.startswith("(") for k in keys), keys  # tuple keys, mapped


# ---------------------------------------------------------------------------
# Low-level graphs: keys, aliases, literals, nesting
# ---------------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


def test_get_low_level_graph_with_aliases_and_literals(client) -> None:
    dsk = {
        "x": 1,
        ("y", 0): (inc, "x"),
        ("y", 1): (add, ("y", 0), 10),
        "alias": ("y", 1),
        "(tricky": (add, "alias", "x"),
    }
    got = client.get(dsk, [["(tricky", "alias"], "x", [("y", 0)]])
    assert got == [[13, 12], 1, [2]]
    assert dask.get(dsk, ["(tricky", "alias"]) == (13, 12)
    # Only the three calls are tasks: the alias and the literal are not.
    plan = _dask.plan(client, dsk, ["(tricky", "alias", "x"], {})
    assert sorted(s.key for s in plan.specs) == sorted(
        _dask.tg_key(k) for k in [("y", 0), ("y", 1), "(tricky"]
    )
    assert all(not s.deps or _dask.tg_key("x") not in s.deps for s in plan.specs)


def test_large_literal_is_sent_once(client) -> None:
    big = np.arange(100_000)  # 800 kB: one task, read by both dependents
    dsk = {"big": big, "a": (np.sum, "big"), "b": (np.max, "big")}
    plan = _dask.plan(client, dsk, ["a", "b"], {})
    echo = [s for s in plan.specs if s.func == "tg.echo"]
    assert [s.key for s in echo] == ["big"]
    assert all("big" in s.deps for s in plan.specs if s.func != "tg.echo")
    assert client.get(dsk, ["a", "b"]) == [big.sum(), big.max()]


def test_keys_map_one_to_one_within_the_scheduler_limit() -> None:
    keys = [
        "x",
        "(x",
        "~x",
        "",
        "a\nb",
        1,
        1.0,
        b"x",
        ("x", 0),
        ("x", "0"),
        ("x", (0, 1)),
        ("x", 0.5),
        "é",
        "\ud800",
        "y" * 5000,
        "y" * 5001,
    ]
    mapped = [_dask.tg_key(k) for k in keys]
    assert len(set(mapped)) == len(keys), mapped
    for m in mapped:
        assert 0 < len(m.encode()) <= 1024
        assert m.isprintable()
    assert _dask.tg_key(("y" * 5000, 1)) == _dask.tg_key(("y" * 5000, 1))
    assert _dask.tg_key("plain-key-123") == "plain-key-123"
    with pytest.raises(TypeError, match="keys are str, int, float, bytes or tuples"):
        _dask.tg_key(("x", object()))
    with pytest.raises(TypeError, match="is a list"):
        _dask.tg_key(["x"])


def test_cyclic_graph_fails_before_submitting(client) -> None:
    before = dict(client._states)
    dsk = {"a": (inc, "b"), "b": (inc, "c"), "c": (inc, "a"), "d": (inc, 1)}
    with pytest.raises(ValueError, match=r"cycle: '.' -> '.' -> '.' -> '.'; nothing was submitted"):
        client.get(dsk, ["d", "a"])
    assert dict(client._states) == before


def test_unknown_dependency_fails_before_submitting(client) -> None:
    from dask._task_spec import Alias, Task

    dsk = {"a": Task("a", inc, Alias("nowhere"))}
    with pytest.raises(KeyError, match="'nowhere' is a dependency but is neither in the graph"):
        client.get(dsk, "a")


def test_bad_annotation_names_the_key(client) -> None:
    with dask.annotate(priority=2.5):
        x = delayed(inc)(1, dask_key_name="annotated")
    with pytest.raises(ValueError, match=r"Dask task 'annotated': priority 2\.5 is not a whole"):
        x.compute(scheduler=client)
    with dask.annotate(resources={"GPU": -1}):
        y = delayed(inc)(1, dask_key_name="negative")
    with pytest.raises(ValueError, match="Dask task 'negative': resource 'GPU': -1 is not"):
        y.compute(scheduler=client)


# ---------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def python_worker(address: str, *options: str) -> Iterator[subprocess.Popen]:
    """One more Python worker process (stopped at exit)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "taskgrid.worker", address, "--log-level", "warn"]
    proc = subprocess.Popen([*cmd, *options], env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def gpu_cluster(binaries) -> Iterator[taskgrid.Client]:
    """A plain Python worker (LocalCluster) and one named 'gpu' with GPU=1."""
    gpu = ("--name", "gpu", "--nthreads", "2", "--resources", "GPU=1")
    with (
        taskgrid.LocalCluster(n_workers=1, threads_per_worker=2) as cl,
        python_worker(cl.address, *gpu),
        taskgrid.Client(cl, set_as_default=False) as c,
    ):
        c.wait_for_workers(2, timeout=30)
        yield c


def test_resources_annotation_places_tasks(gpu_cluster) -> None:
    client = gpu_cluster
    with dask.annotate(resources={"GPU": 1}):
        on_gpu = [delayed(worker_name)(i) for i in range(6)]
    anywhere = [delayed(worker_name)(i) for i in range(6, 30)]
    got_gpu, got_any = dask.compute(on_gpu, anywhere, scheduler=client)
    assert set(got_gpu) == {"gpu"}
    assert len(set(got_any)) == 2  # without the annotation both workers take some
    # dask.annotate around the compute call applies to every task.
    with dask.annotate(resources={"GPU": 1}):
        (got,) = dask.compute([delayed(worker_name)(i) for i in range(30, 36)], scheduler=client)
    assert set(got) == {"gpu"}


def test_workers_keyword_restricts_and_allow_other_workers_loosens(gpu_cluster) -> None:
    client = gpu_cluster
    tasks = [delayed(worker_name)(i, dask_key_name=f"w-{i}") for i in range(12)]
    futures = client.compute(tasks, workers=["gpu"])
    assert {f.result(TIMEOUT) for f in futures} == {"gpu"}
    # Dask's loose restriction: kept while a named worker is connected,
    # lifted when none is.
    plan = _dask.plan(
        client, {"k": (inc, 1)}, ["k"], {"workers": ["gpu"], "allow_other_workers": True}
    )
    assert list(plan.specs[0].workers) == ["gpu"]
    plan = _dask.plan(
        client, {"k": (inc, 1)}, ["k"], {"workers": ["absent"], "allow_other_workers": True}
    )
    assert list(plan.specs[0].workers) == []


def stamp(_block, label: str) -> tuple[int, str]:
    return time.monotonic_ns(), label


def blocker() -> int:
    time.sleep(0.3)
    return 0


def test_priority_annotation_orders_execution(binaries) -> None:
    with (
        taskgrid.LocalCluster(n_workers=1, threads_per_worker=1) as cl,
        taskgrid.Client(cl, set_as_default=False) as client,
    ):
        for first in ("a", "b"):  # either group may be the favoured one
            block = delayed(blocker)(dask_key_name=f"block-{first}")
            groups = {}
            for label in ("a", "b"):
                with dask.annotate(priority=10 if label == first else 1):
                    groups[label] = [delayed(stamp)(block, label) for _ in range(4)]
            (done,) = dask.compute(groups["a"] + groups["b"], scheduler=client)
            labels = [label for _, label in sorted(done)]
            assert labels == [first] * 4 + [x for x in "ab" if x != first] * 4


def flaky(path: str) -> str:
    p = pathlib.Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < 2:
        raise RuntimeError(f"attempt {n + 1} fails")
    return f"ok after {n + 1}"


def test_retries_annotation(client, tmp_path) -> None:
    with dask.annotate(retries=2):
        ok = delayed(flaky)(str(tmp_path / "a"))
    assert ok.compute(scheduler=client) == "ok after 3"
    with pytest.raises(RuntimeError, match="attempt 1 fails"):
        delayed(flaky)(str(tmp_path / "b")).compute(scheduler=client)


# ---------------------------------------------------------------------------
# compute / persist / default scheduler
# ---------------------------------------------------------------------------


def test_client_compute_returns_futures(client) -> None:
    x = da.arange(1000, chunks=100)
    f = client.compute(x.sum())
    assert isinstance(f, taskgrid.Future)
    assert f.result(TIMEOUT) == 499500
    fs = client.compute([x.max(), 7, (x * 2).min()])
    assert isinstance(fs[0], taskgrid.Future) and fs[1] == 7
    assert fs[0].result(TIMEOUT) == 999
    assert fs[2].result(TIMEOUT) == 0
    assert client.compute(x.sum(), sync=True) == 499500


def count_call(v: int, path: str) -> int:
    with open(path, "a") as f:
        f.write(f"{v}\n")
    return v * 2


def test_persist_then_compute(client, tmp_path) -> None:
    log = str(tmp_path / "calls")
    b = db.from_sequence(range(20), npartitions=4).map(count_call, path=log)
    (bp,) = dask.persist(b, scheduler=client)
    graph = dict(bp.__dask_graph__())
    assert all(isinstance(v, taskgrid.Future) for v in graph.values())
    assert sum(bp.compute(scheduler=client)) == 2 * sum(range(20))
    assert bp.map(inc).sum().compute(scheduler=client) == 2 * sum(range(20)) + 20
    assert len(pathlib.Path(log).read_text().split()) == 20  # each element ran once

    df = client.persist(small_timeseries())
    client.wait_for_workers(2)
    assert df.x.sum().compute(scheduler=client) == pytest.approx(
        small_timeseries().x.sum().compute(scheduler="sync")
    )
    # The partitions (~350 kB each, over the 64 KiB inline limit) are held
    # by the workers (the data plane), not by the scheduler.
    assert sum(w.memory for w in client.status().workers) > df.npartitions * 300_000


def test_with_client_makes_it_dasks_scheduler(cluster, monkeypatch) -> None:
    # No default client or scheduler left by another test.
    monkeypatch.setattr(taskgrid._future, "_default", None)
    monkeypatch.delitem(dask.config.config, "scheduler", raising=False)
    x = delayed(where_am_i)(1)
    assert x.compute() == ""  # Dask's local scheduler: not in a task
    with taskgrid.Client(cluster) as c:
        assert x.compute() == _dask.tg_key(x.key)
        with dask.config.set(scheduler="sync"):  # the user's choice wins
            assert x.compute() == ""
        assert c.get({"k": (inc, 1)}, "k") == 2
    assert dask.config.get("scheduler", None) is None
    assert x.compute() == ""


def test_the_default_client_makes_dataframes_shuffle_with_tasks(cluster, monkeypatch) -> None:
    # Without a distributed client Dask would pick the "disk" shuffle,
    # whose files only workers sharing one filesystem can read.
    monkeypatch.setattr(taskgrid._future, "_default", None)
    monkeypatch.delitem(dask.config.config, "scheduler", raising=False)
    monkeypatch.setitem(dask.config.config["dataframe"]["shuffle"], "method", None)
    with taskgrid.Client(cluster):
        assert dask.config.get("dataframe.shuffle.method") == "tasks"
        df = small_timeseries()
        expected = df.groupby("name").x.mean().compute(scheduler="sync")
        got = df.groupby("name").x.mean().compute()
        assert (got.sort_index() - expected.sort_index()).abs().max() < 1e-9
    assert dask.config.get("dataframe.shuffle.method", None) is None
    with dask.config.set({"dataframe.shuffle.method": "disk"}):  # the user's choice wins
        with taskgrid.Client(cluster):
            assert dask.config.get("dataframe.shuffle.method") == "disk"


def test_config_set_scheduler_client(client) -> None:
    with dask.config.set(scheduler=client):
        assert da.ones(10, chunks=3).sum().compute() == 10
        assert delayed(where_am_i)(2).compute().startswith("where_am_i-")


def test_get_sync_false_returns_futures(client) -> None:
    fs = client.get({"a": (inc, 1), "b": (inc, "a")}, ["b", ["a"]], sync=False)
    assert fs[0].result(TIMEOUT) == 3 and fs[1][0].result(TIMEOUT) == 2


# ---------------------------------------------------------------------------
# Bad input: a function only the client can import
# ---------------------------------------------------------------------------


def test_function_the_workers_cannot_import(client, tmp_path, monkeypatch) -> None:
    mod = tmp_path / "client_only_helpers.py"
    mod.write_text(
        textwrap.dedent("""
        def triple(x):
            return 3 * x
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # the client's path only
    import client_only_helpers

    try:
        x = da.arange(10, chunks=5).map_blocks(client_only_helpers.triple)
        with pytest.raises(ModuleNotFoundError, match="'client_only_helpers'") as info:
            x.compute(scheduler=client)
        assert "cannot load Dask task" in str(info.value)
        assert "module 'client_only_helpers'" in str(info.value)
        # Sent by value, the same graph runs.
        import cloudpickle

        cloudpickle.register_pickle_by_value(client_only_helpers)
        try:
            assert list(x.compute(scheduler=client)) == [3 * v for v in range(10)]
        finally:
            cloudpickle.unregister_pickle_by_value(client_only_helpers)
    finally:
        sys.modules.pop("client_only_helpers", None)


# ---------------------------------------------------------------------------
# Nested: the seeds' df.describe().compute() inside a task
# ---------------------------------------------------------------------------


def describe_in_a_task():
    # The seeds' task body with the import changed (get_dask_client ->
    # taskgrid.get_client) and less data.
    with taskgrid.get_client():
        df = small_timeseries()
        summary_df = df.describe().compute()
        keys = df.map_partitions(lambda p: pd.Series([where_am_i()])).compute()
    return summary_df, where_am_i(), list(keys)


def test_compute_inside_a_task(client) -> None:
    summary, parent, keys = client.submit(describe_in_a_task, pure=False).result(TIMEOUT)
    pd.testing.assert_frame_equal(summary, small_timeseries().describe().compute(scheduler="sync"))
    # The partitions ran as taskgrid tasks of their own, not in the parent.
    assert parent and parent not in keys and all(keys)
