# SPDX-License-Identifier: Apache-2.0
"""The one-import switch from Dask and prefect-dask: prefect-dask's names,
dask.annotate honoured (merged with taskgrid.annotate), Dask's Client /
submit / map / LocalCluster options implemented or refused by name, and
cluster_class checked."""
from __future__ import annotations

import contextlib
import json
import pathlib
from typing import Iterator

import dask
import pytest
from dask import delayed
from prefect import flow, task

from test_dask_collections import gpu_cluster  # noqa: F401 - a fixture

import taskgrid
from taskgrid import _context, _options
from taskgrid.prefect import (
    DaskTaskRunner,
    TaskgridTaskRunner,
    get_async_dask_client,
    get_dask_client,
)

TIMEOUT = 60


def worker_name(_x: object = None) -> str:
    worker = _context.current_worker()
    return worker.name if worker is not None else ""


def task_priority(_x: object = None) -> int:
    import taskgrid.worker

    return int(taskgrid.worker.get_task().priority)


def takes_kwargs(**kwargs: object) -> list[str]:
    return sorted(kwargs)


@pytest.fixture(scope="module")
def gpu(gpu_cluster) -> taskgrid.Client:
    """Two workers: a LocalCluster one without GPU, and 'gpu' with GPU=1."""
    return gpu_cluster


# ---------------------------------------------------------------------------
# dask.annotate and taskgrid.annotate
# ---------------------------------------------------------------------------


def test_innermost_block_wins_per_name_across_both_kinds() -> None:
    assert _options.merged_annotations() == {}
    with dask.annotate(priority=1, retries=2):
        assert _options.merged_annotations() == {"priority": 1, "retries": 2}
        with taskgrid.annotate(priority=5):
            assert _options.merged_annotations() == {"priority": 5, "retries": 2}
            with dask.annotate(priority=9):
                assert _options.merged_annotations() == {"priority": 9, "retries": 2}
            assert _options.merged_annotations()["priority"] == 5
    with taskgrid.annotate(resources={"GPU": 1}), dask.annotate(resources={"CPU": 2}):
        assert _options.merged_annotations() == {"resources": {"CPU": 2}}


def test_dask_annotate_places_submit_and_map_on_the_gpu_worker(gpu) -> None:
    with dask.annotate(resources={"GPU": 1}):
        one = gpu.submit(worker_name, 0, pure=False)
        many = gpu.map(worker_name, range(1, 9), pure=False)
    anywhere = gpu.map(worker_name, range(9, 40), pure=False)
    assert one.result(TIMEOUT) == "gpu"
    assert set(gpu.gather(many)) == {"gpu"}
    assert len(set(gpu.gather(anywhere))) == 2  # without it both workers take some


def test_dask_annotate_priority_and_explicit_arguments_win(gpu) -> None:
    with dask.annotate(priority=7):
        annotated = gpu.submit(task_priority, pure=False)
        explicit = gpu.submit(task_priority, 1, priority=3, pure=False)
    with dask.annotate(priority=lambda key: 11 if key.startswith("task_priority") else 0):
        by_key = gpu.submit(task_priority, 2, pure=False)
    assert (annotated.result(TIMEOUT), explicit.result(TIMEOUT), by_key.result(TIMEOUT)) == (
        7,
        3,
        11,
    )


def test_dask_annotate_applies_to_prefect_tasks(gpu) -> None:
    @task
    def where() -> str:
        return worker_name()

    @flow(task_runner=DaskTaskRunner(address=gpu.address))
    def pipeline() -> list[str]:
        with dask.annotate(resources={"GPU": 1}):
            futures = [where.submit() for _ in range(4)]
        return [f.result() for f in futures]

    assert set(pipeline()) == {"gpu"}


def test_allow_other_workers_is_a_loose_restriction(gpu) -> None:
    # A connected worker named: bound to it, as Dask does.
    bound = gpu.map(worker_name, range(8), workers=["gpu"], allow_other_workers=True, pure=False)
    assert set(gpu.gather(bound)) == {"gpu"}
    # None of them connected: runs anywhere instead of waiting forever.
    loose = gpu.submit(worker_name, workers=["absent"], allow_other_workers=True, pure=False)
    assert loose.result(TIMEOUT) in {w.name for w in gpu.status().workers}
    with pytest.raises(TypeError, match="allow_other_workers must be True, False or None"):
        gpu.submit(worker_name, allow_other_workers="yes")


# ---------------------------------------------------------------------------
# submit / map options
# ---------------------------------------------------------------------------


def test_dask_options_never_reach_the_function(py_client) -> None:
    fut = py_client.submit(
        takes_kwargs, fifo_timeout="60s", allow_other_workers=False, actor=False, a=1
    )
    assert fut.result(TIMEOUT) == ["a"]
    got = py_client.map(takes_kwargs, [1], fifo_timeout=0.1, batch_size=1, actors=False)
    with pytest.raises(TypeError):
        got[0].result(TIMEOUT)  # takes_kwargs takes no positional argument: as in Dask


def test_actors_and_bad_options_are_refused_by_name(py_client) -> None:
    with pytest.raises(NotImplementedError, match=r"submit\(actor=True\) is not supported"):
        py_client.submit(takes_kwargs, actor=True)
    with pytest.raises(NotImplementedError, match=r"map\(actors=True\) is not supported"):
        py_client.map(takes_kwargs, [1], actors=True)
    with pytest.raises(ValueError, match=r"fifo_timeout=\.\.\.\) must be a duration"):
        py_client.submit(takes_kwargs, fifo_timeout="soon")
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        py_client.map(takes_kwargs, [1], batch_size=0)


def test_map_batch_size_submits_in_batches(py_client) -> None:
    sent: list[int] = []
    real = py_client._submit

    def spy(specs, keys):
        sent.append(len(specs))
        return real(specs, keys)

    py_client._submit = spy
    try:
        futures = py_client.map(lambda x: x * 3, range(10), batch_size=4, pure=False)
    finally:
        del py_client._submit
    assert sent == [4, 4, 2]
    assert py_client.gather(futures) == [x * 3 for x in range(10)]


# ---------------------------------------------------------------------------
# Client / LocalCluster options
# ---------------------------------------------------------------------------


def test_client_options(py_cluster, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"address": py_cluster.address}))
    with taskgrid.Client(
        scheduler_file=str(path),
        timeout="20s",
        heartbeat_interval="5s",
        connection_limit=8,
        direct_to_workers=False,
        set_as_default=False,
    ) as c:
        assert c.scheduler.address == c.address
        assert c.submit(sum, [1, 2]).result(TIMEOUT) == 3
    with pytest.raises(NotImplementedError, match=r"Client\(serializers=\.\.\.\) is not supported"):
        taskgrid.Client(py_cluster.address, serializers=["pickle"])
    with pytest.raises(ValueError, match="no \"address\" string"):
        path.write_text("{}")
        taskgrid.Client(scheduler_file=str(path))
    with pytest.raises(TypeError, match=r"unexpected arguments \['n_workers'\].*without an address"):
        taskgrid.Client(py_cluster.address, n_workers=2)


def test_local_cluster_dask_options(binaries) -> None:
    with taskgrid.LocalCluster(
        name="mine",
        n_workers=1,
        processes=None,
        ip="127.0.0.1",
        silence_logs=False,
        scheduler_sync_interval=1,
        worker_class=None,
        memory_limit=0.25,
        dashboard_address=None,
    ) as cl:
        assert (cl.name, cl.processes, cl.log_level) == ("mine", True, "info")
        assert cl.memory_limit > 0
    for name, value in [
        ("worker_class", object),
        ("security", True),
        ("interface", "eth0"),
        ("scheduler_kwargs", {"x": 1}),
    ]:
        with pytest.raises(NotImplementedError, match=rf"LocalCluster\({name}="):
            taskgrid.LocalCluster(n_workers=1, **{name: value})
    with pytest.raises(TypeError, match="unexpected argument 'colour'"):
        taskgrid.LocalCluster(colour="blue")


# ---------------------------------------------------------------------------
# prefect-dask's names
# ---------------------------------------------------------------------------


def test_dask_task_runner_is_the_taskgrid_runner_with_prefect_dask_parameters() -> None:
    runner = DaskTaskRunner(
        cluster_class="taskgrid.LocalCluster",
        cluster_kwargs={"n_workers": 1},
        adapt_kwargs={"maximum": 2},
        client_kwargs={"direct_to_workers": False},
    )
    assert isinstance(runner, TaskgridTaskRunner)
    assert runner.duplicate() == runner
    assert runner._cluster_class is taskgrid.LocalCluster
    with pytest.raises(ValueError, match="Cannot specify `address` and"):
        DaskTaskRunner(address="tcp://127.0.0.1:1", cluster_kwargs={"n_workers": 1})


@pytest.mark.parametrize(
    ("cluster_class", "advice"),
    [
        ("distributed.LocalCluster", "use taskgrid.LocalCluster"),
        ("dask_jobqueue.SLURMCluster", "use taskgrid.SLURMCluster for Slurm"),
        ("dask_kubernetes.KubeCluster", "no cluster class for dask_kubernetes"),
    ],
)
def test_dask_cluster_classes_are_refused_with_advice(cluster_class: str, advice: str) -> None:
    with pytest.raises(ValueError, match=f"is a Dask cluster class.*{advice}"):
        DaskTaskRunner(cluster_class=cluster_class)


def test_dask_cluster_class_object_is_refused() -> None:
    import distributed

    with pytest.raises(ValueError, match="distributed.*use taskgrid.LocalCluster"):
        DaskTaskRunner(cluster_class=distributed.LocalCluster)


def test_cluster_class_needs_the_cluster_interface() -> None:
    class NotACluster:
        scheduler_address = "tcp://x:1"

    with pytest.raises(TypeError, match="lacks close, scale, adapt"):
        DaskTaskRunner(cluster_class=NotACluster)
    with pytest.raises(ValueError, match="'nowhere.Cluster' cannot be imported"):
        DaskTaskRunner(cluster_class="nowhere.Cluster")


class Wrapped:
    """A cluster of one's own: the interface, around a taskgrid LocalCluster."""

    made: list[Wrapped] = []

    def __init__(self, **kwargs: object) -> None:
        self.inner = taskgrid.LocalCluster(**kwargs)
        self.closed = False
        Wrapped.made.append(self)

    @property
    def scheduler_address(self) -> str:
        return self.inner.address

    def close(self) -> None:
        self.closed = True
        self.inner.close()

    def scale(self, n: int) -> None:
        self.inner.scale(n)

    def adapt(self, **kwargs: object) -> None:
        self.inner.adapt(**kwargs)


@task
def double(x: int) -> int:
    return 2 * x


def test_any_object_with_the_cluster_interface_runs_the_flow(binaries) -> None:
    @flow(
        task_runner=DaskTaskRunner(
            cluster_class=Wrapped, cluster_kwargs={"n_workers": 1, "processes": False}
        )
    )
    def pipeline() -> list[int]:
        return [f.result() for f in [double.submit(i) for i in range(3)]]

    Wrapped.made.clear()
    assert pipeline() == [0, 2, 4]
    assert len(Wrapped.made) == 1 and Wrapped.made[0].closed


def _report_flow(path: str):
    @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False},
                                     performance_report_path=path))
    def pipeline() -> int:
        return double.submit(4).result()

    return pipeline


def test_performance_report_path_follows_taskgrid_performance_report(tmp_path) -> None:
    path = str(tmp_path / "report.html")
    if getattr(taskgrid, "performance_report", None) is None:
        with pytest.raises(NotImplementedError, match="performance_report_path is not supported"):
            DaskTaskRunner(performance_report_path=path)
        return
    assert _report_flow(path)() == 8
    assert "double" in pathlib.Path(path).read_text()


def test_performance_report_path_reports_the_runners_client(tmp_path, monkeypatch) -> None:
    from taskgrid._future import current_client

    seen: list[object] = []

    @contextlib.contextmanager
    def fake_report(filename: str = "dask-report.html") -> Iterator[None]:
        client = current_client()  # as taskgrid.performance_report finds its client
        seen.append(client)
        yield
        pathlib.Path(filename).write_text(f"report of {client!r}")

    monkeypatch.setattr(taskgrid, "performance_report", fake_report, raising=False)
    path = str(tmp_path / "fake.html")
    assert _report_flow(path)() == 8
    assert len(seen) == 1 and isinstance(seen[0], taskgrid.Client)
    assert "report of <taskgrid.Client" in pathlib.Path(path).read_text()
    assert current_client() is not seen[0]  # the default client is left as it was


def test_get_dask_client_in_a_task_gives_the_workers_client(py_cluster) -> None:
    @task
    def nested() -> tuple[int, int]:
        with get_dask_client(timeout="30s") as client:
            total = client.submit(sum, client.map(lambda x: x + 1, range(4))).result()
            computed = delayed(sum)([1, 2, 3]).compute()  # runs on the cluster
        return total, computed

    @flow(task_runner=DaskTaskRunner(address=py_cluster.address))
    def pipeline() -> tuple[int, int]:
        return nested.submit().result()

    assert pipeline() == (10, 6)


def test_get_async_dask_client_awaits(py_cluster) -> None:
    @task
    async def nested() -> list[int]:
        async with get_async_dask_client() as client:
            futures = client.map(lambda x: x * 10, range(3))
            gathered = await client.gather(futures)
            one = await client.submit(lambda: 5)
        return [*gathered, one]

    @flow(task_runner=DaskTaskRunner(address=py_cluster.address))
    def pipeline() -> list[int]:
        return nested.submit().result()

    assert pipeline() == [0, 10, 20, 5]
