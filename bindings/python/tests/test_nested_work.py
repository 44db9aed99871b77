# SPDX-License-Identifier: Apache-2.0
"""Nested work never deadlocks a full cluster.

More waiting parents than worker threads (2 workers x 1 thread): each
parent maps children through the worker-side client and waits on them
(gather, Future.result, as_completed, wait), at one level and recursively,
on process and in-process workers, and through Prefect's
get_taskgrid_client. Every wait is bounded: a deadlock fails the test.
Waiting parents secede: the scheduler stops counting them against their
worker's thread (Status shows them seceded), so nesting 6 levels deep
(63 parents waiting at once at the end) finishes on 2 threads; and
cancelling a parent cancels the tasks it submitted.
"""
from __future__ import annotations

import time
from typing import Iterator

import pytest

import taskgrid

TIMEOUT = 60  # s, far above the ~1 s these take; a deadlock fails here
DEEP_TIMEOUT = 30  # s, for nesting 6 levels deep (~2 s): a stall fails it


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


def test_nesting_six_levels_deep(small: taskgrid.Client) -> None:
    # Each level submits 2 children and waits on them: 63 parents wait at
    # once at the bottom, on 2 threads. If waiting parents counted against
    # their worker's thread, the scheduler would stop placing children once
    # both workers held waiting parents, and this would time out.
    start = time.monotonic()
    assert small.submit(tree, 6, pure=False).result(timeout=DEEP_TIMEOUT) == 64
    assert time.monotonic() - start < DEEP_TIMEOUT


def slow_child(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def waits_on_slow_child(seconds: float) -> float:
    c = taskgrid.get_client()
    return float(c.submit(slow_child, seconds, pure=False).result(timeout=TIMEOUT))


def test_waiting_parent_is_seceded_and_no_worker_is_added(small: taskgrid.Client) -> None:
    f = small.submit(waits_on_slow_child, 1.0, pure=False)
    # While the parent waits, Status counts it as seceded on its worker,
    # and the cluster keeps its 2 workers (no helper connections).
    deadline = time.monotonic() + TIMEOUT
    seen = 0
    while time.monotonic() < deadline and not f.done():
        st = small.status()
        assert len(st.workers) == 2, [w.name for w in st.workers]
        seen = max(seen, sum(w.seceded for w in st.workers))
        if seen:
            break
        time.sleep(0.02)
    assert seen == 1
    assert f.result(timeout=TIMEOUT) == 1.0
    # Rejoined and finished: nothing counts as seceded any more.
    deadline = time.monotonic() + TIMEOUT
    while sum(w.seceded for w in small.status().workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(w.seceded for w in small.status().workers) == 0
    assert len(small.status().workers) == 2


def stoppable_child(i: int) -> int:
    # Runs until cancelled (a Python thread cannot be stopped from outside:
    # the task looks at its cancelled flag), at most TIMEOUT.
    from taskgrid import _context

    task = _context.current_task()
    deadline = time.monotonic() + TIMEOUT
    while not (task is not None and task.cancelled) and time.monotonic() < deadline:
        time.sleep(0.02)
    return i


def waits_on_stoppable_children() -> int:
    c = taskgrid.get_client()
    fs = [c.submit(stoppable_child, i, pure=False) for i in range(2)]
    return int(sum(c.gather(fs, timeout=TIMEOUT)))


def test_cancelling_a_parent_cancels_its_children(small: taskgrid.Client) -> None:
    f = small.submit(waits_on_stoppable_children, pure=False)
    deadline = time.monotonic() + TIMEOUT
    kids: list[str] = []
    while time.monotonic() < deadline:
        kids = small.status([f.key], children=True).children.get(f.key, [])
        if len(kids) == 2 and all(
            s == "processing" for s, _ in small.status(kids).keys.values()
        ):
            break
        time.sleep(0.02)
    assert len(kids) == 2
    # Status names the parent of each child when asked about both.
    assert small.status([f.key, *kids]).parents == {k: f.key for k in kids}
    assert small.cancel(f) == 3
    states = small.status([f.key, *kids]).keys
    assert {k: s for k, (s, _) in states.items()} == {
        k: "cancelled" for k in [f.key, *kids]
    }
    with pytest.raises(Exception):
        f.result(timeout=TIMEOUT)
    # The cancelled children stop (their flag), and the cluster goes on.
    assert small.submit(child, 21, pure=False).result(timeout=TIMEOUT) == 42


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
