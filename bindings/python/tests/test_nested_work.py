# SPDX-License-Identifier: Apache-2.0
"""Nested work never deadlocks a full cluster.

More waiting parents than worker threads (2 workers x 1 thread): each
parent maps children through the worker-side client and waits on them
(gather, Future.result, as_completed, wait), at one level and recursively,
on process and in-process workers, and through Prefect's
get_taskgrid_client. Every wait is bounded: a deadlock fails the test.
"""
from __future__ import annotations

import time
from typing import Iterator

import pytest

import taskgrid

TIMEOUT = 60  # s, far above the ~1 s these take; a deadlock fails here


def child(x: int) -> int:
    return 2 * x


def parent(i: int, how: str) -> int:
    c = taskgrid.get_client()
    fs = c.map(child, [10 * i + j for j in range(4)], pure=False)
    if how == "gather":
        return sum(c.gather(fs, timeout=TIMEOUT))
    if how == "result":
        return sum(f.result(timeout=TIMEOUT) for f in fs)
    if how == "as_completed":
        return sum(f.result() for f in taskgrid.as_completed(fs))
    done, not_done = taskgrid.wait(fs, timeout=TIMEOUT)
    assert not not_done
    return sum(f.result() for f in done)


def expected(i: int) -> int:
    return sum(2 * (10 * i + j) for j in range(4))


def tree(depth: int) -> int:
    """1 at the leaves; each inner task waits on two subtrees."""
    if depth == 0:
        return 1
    c = taskgrid.get_client()
    a, b = c.submit(tree, depth - 1, pure=False), c.submit(tree, depth - 1, pure=False)
    return int(sum(c.gather([a, b], timeout=TIMEOUT)))


@pytest.fixture(scope="module", params=[True, False], ids=["processes", "threads"])
def small(request: pytest.FixtureRequest, binaries: tuple[str, str]) -> Iterator[taskgrid.Client]:
    """2 Python workers x 1 thread: fewer slots than waiting parents."""
    with taskgrid.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=request.param
    ) as cl, taskgrid.Client(cl, set_as_default=False) as c:
        yield c


@pytest.mark.parametrize("how", ["gather", "result", "as_completed", "wait"])
def test_more_waiting_parents_than_slots(small: taskgrid.Client, how: str) -> None:
    fs = small.map(parent, range(6), how=how, pure=False)
    assert small.gather(fs, timeout=TIMEOUT) == [expected(i) for i in range(6)]


def test_recursive_nesting(small: taskgrid.Client) -> None:
    # 15 inner tasks waiting at once at depth 4, on 2 threads.
    assert small.submit(tree, 4, pure=False).result(timeout=TIMEOUT) == 16


def test_waiting_parents_leave_no_lent_links(small: taskgrid.Client) -> None:
    fs = small.map(parent, range(6), how="gather", pure=False)
    small.gather(fs, timeout=TIMEOUT)
    # The links lent while parents waited stop once the parents rejoin
    # (polled, bounded: a link ends after its goodbye round trip).
    deadline = time.monotonic() + TIMEOUT
    names = [w.name for w in small.status().workers]
    while len(names) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        names = [w.name for w in small.status().workers]
    assert len(names) == 2, names


def test_prefect_nested_tasks_on_a_full_cluster(binaries: tuple[str, str]) -> None:
    from prefect import flow, task

    from taskgrid.prefect import TaskgridTaskRunner, get_taskgrid_client

    @task
    def summarize(i: int) -> int:
        with get_taskgrid_client() as client:
            futures = client.map(child, [10 * i + j for j in range(4)], pure=False)
            return int(sum(client.gather(futures, timeout=TIMEOUT)))

    @flow(
        task_runner=TaskgridTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1}
        )
    )
    def pipeline() -> list[int]:
        futures = [summarize.submit(i) for i in range(6)]
        return [f.result(timeout=TIMEOUT) for f in futures]

    assert pipeline() == [expected(i) for i in range(6)]
