# SPDX-License-Identifier: Apache-2.0
"""TaskgridTaskRunner as a Prefect 3 TaskRunner: DaskTaskRunner's
parameters and behaviour, states in Prefect, futures as dependencies."""
from __future__ import annotations

import os
import pathlib
import signal
import time
import uuid
import warnings
from typing import Iterator

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client as get_prefect_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from prefect.states import State

import taskgrid
import taskgrid.worker
from taskgrid.prefect import PrefectTaskgridFuture, TaskgridTaskRunner


@pytest.fixture(scope="module")
def cluster(binaries) -> Iterator[taskgrid.LocalCluster]:
    """An existing cluster (the `address=` case): 2 workers x 2 threads."""
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2) as cl:
        yield cl


@task
def add(x, y):
    return x + y


@task
def slow_value(value, seconds=0.5):
    time.sleep(seconds)
    return value


@task
def explode():
    raise ValueError("task exploded")


@task
def priority_seen():
    return taskgrid.worker.get_task().priority


@task
def die_once(marker: str):
    path = pathlib.Path(marker)
    if not path.exists():
        path.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def task_run_states(flow_state: State, expected: int, timeout: float = 30.0) -> dict:
    """Task run name -> state type, as the Prefect API records them."""
    flow_run_id = flow_state.state_details.flow_run_id
    deadline = time.monotonic() + timeout
    with get_prefect_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
            states = {r.name: r.state_type.value if r.state_type else None for r in runs}
            done = [s for s in states.values() if s in ("COMPLETED", "FAILED", "CRASHED")]
            if len(done) >= expected or time.monotonic() > deadline:
                return states
            time.sleep(0.1)


def test_parameters_are_validated_like_dask_task_runner() -> None:
    with pytest.raises(ValueError, match="Cannot specify `address`"):
        TaskgridTaskRunner(address="tcp://127.0.0.1:1", cluster_kwargs={"n_workers": 1})
    with pytest.raises(ValueError, match="asynchronous"):
        TaskgridTaskRunner(client_kwargs={"asynchronous": True})
    runner = TaskgridTaskRunner(cluster_class="taskgrid.LocalCluster",
                                cluster_kwargs={"n_workers": 1}, adapt_kwargs={"maximum": 2})
    dup = runner.duplicate()
    assert dup == runner and dup is not runner
    assert dup.cluster_kwargs == {"n_workers": 1} and dup.adapt_kwargs == {"maximum": 2}
    assert runner.client_kwargs["set_as_default"] is False
    assert TaskgridTaskRunner() != runner


def test_the_client_is_lazy() -> None:
    with TaskgridTaskRunner(cluster_kwargs={"n_workers": 1}) as runner:
        assert runner._client is None and runner._cluster is None  # nothing started


def test_existing_cluster_by_address_with_states_in_prefect(cluster) -> None:
    @flow(task_runner=TaskgridTaskRunner(address=cluster.address))
    def pipeline():
        a = slow_value.submit(20)
        start = time.monotonic()
        b = add.submit(a, 1)          # upstream future -> taskgrid dependency
        c = add.submit(b, a)
        submitted_in = time.monotonic() - start
        assert isinstance(b, PrefectTaskgridFuture)
        assert not a.wrapped_future.done() and submitted_in < 0.5  # nothing waited
        b.wait()
        return c.result(), b.state.is_completed()

    state = pipeline(return_state=True)
    assert state.is_completed()
    assert state.result() == (41, True)
    states = task_run_states(state, 3)
    assert sorted(states.values()) == ["COMPLETED"] * 3, states


def test_failed_tasks_are_failed_states(cluster) -> None:
    @flow(task_runner=TaskgridTaskRunner(address=cluster.address))
    def pipeline():
        bad = explode.submit()
        downstream = add.submit(bad, 1)
        with pytest.raises(ValueError, match="task exploded"):
            bad.result()
        bad.wait()
        return bad.state.is_failed(), downstream.state

    failed, downstream_state = pipeline()
    assert failed
    assert not downstream_state.is_completed()  # upstream failure propagates


def test_annotate_is_honoured_not_overridden(cluster) -> None:
    @flow(task_runner=TaskgridTaskRunner(address=cluster.address))
    def pipeline():
        plain = priority_seen.submit()
        with taskgrid.annotate(priority=10):
            high = priority_seen.submit()
        return plain.result(), high.result()

    assert pipeline() == (0, 10)


def test_map_runs_on_the_cluster(cluster) -> None:
    @flow(task_runner=TaskgridTaskRunner(address=cluster.address))
    def pipeline():
        return [f.result() for f in add.map(range(5), 10)]

    assert pipeline() == [10, 11, 12, 13, 14]


def test_adapt_kwargs_make_the_temporary_cluster_adaptive(binaries) -> None:
    runner = TaskgridTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1},
                                adapt_kwargs={"minimum": 1, "maximum": 2})

    @flow(task_runner=runner)
    def pipeline():
        futures = [slow_value.submit(i, 0.4) for i in range(6)]
        results = [f.result() for f in futures]
        return results

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert pipeline() == list(range(6))


def test_adapt_kwargs_warn_when_the_cluster_cannot_adapt(binaries) -> None:
    runner = TaskgridTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False},
                                adapt_kwargs={"maximum": 2})

    @flow(task_runner=runner)
    def pipeline():
        return add.submit(1, 2).result()

    with pytest.warns(RuntimeWarning, match="adaptive scaling"):
        assert pipeline() == 3


def test_sigkill_of_a_worker_mid_flow(binaries, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / f"died-{uuid.uuid4().hex}"

    @flow(task_runner=TaskgridTaskRunner(cluster_kwargs={"n_workers": 2,
                                                         "threads_per_worker": 1}))
    def pipeline():
        others = [slow_value.submit(i, 0.2) for i in range(4)]
        victim = die_once.submit(str(marker))
        return victim.result(), [f.result() for f in others]

    assert pipeline() == ("survived", [0, 1, 2, 3])
    assert marker.read_text() == "died"
