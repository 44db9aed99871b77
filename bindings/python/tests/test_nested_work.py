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

Dask's explicit API: on 1 worker x 1 thread a task that secede()s (or
enters worker_client()) lets a second task run while it waits, and the
scheduler counts it seceded; without it the second task waits (a control
that shows the single slot); secede/rejoin nest in any order; outside a
task each function raises NotInTaskError. The nesting depth limit: a
recursion that never ends fails at the scheduler's limit with
NestingTooDeep, quickly.
"""
from __future__ import annotations

import os
import pathlib
import time
from typing import Callable, Iterator

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


def one_thread_workers(n: int, processes: bool) -> Iterator[taskgrid.Client]:
    """A client of `n` Python workers x 1 thread (processes or threads)."""
    with taskgrid.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=processes
    ) as cl, taskgrid.Client(cl, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module", params=[True, False], ids=["processes", "threads"])
def small(request: pytest.FixtureRequest, binaries: tuple[str, str]) -> Iterator[taskgrid.Client]:
    """2 Python workers x 1 thread: fewer slots than waiting parents."""
    yield from one_thread_workers(2, request.param)


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


# ---------------------------------------------------------------------------
# Dask's explicit API: secede, rejoin, worker_client, get_worker
# ---------------------------------------------------------------------------

GATE_S = 10.0  # how long a task waits for its gate; a failure waits this long
CONTROL_GATE_S = 1.0  # the control case, which times out on purpose


def wait_file(path: str, timeout: float) -> bool:
    """Wait (bounded) for `path` to exist: a gate other tasks or the test
    open, across processes."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def touch(path: str) -> str:
    pathlib.Path(path).touch()
    return path


def waits_at_gate(gate: str, how: str) -> bool:
    """Waits (not on futures) until `gate` opens: seceded around the wait
    (`how`: "secede" or "worker_client") or holding its slot ("hold")."""
    if how == "secede":
        taskgrid.secede()
        opened = wait_file(gate, GATE_S)
        taskgrid.rejoin()
        return opened
    if how == "worker_client":
        with taskgrid.worker_client() as c:
            # The client works, and the wait below holds no slot.
            assert c.submit(child, 4, pure=False).result(timeout=TIMEOUT) == 8
            return wait_file(gate, GATE_S)
    return wait_file(gate, CONTROL_GATE_S)


@pytest.fixture(scope="module", params=[True, False], ids=["processes", "threads"])
def one(request: pytest.FixtureRequest, binaries: tuple[str, str]) -> Iterator[taskgrid.Client]:
    """1 Python worker x 1 thread: one slot."""
    yield from one_thread_workers(1, request.param)


def seceded(c: taskgrid.Client) -> int:
    return sum(w.seceded for w in c.status().workers)


def eventually(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def wait_processing(c: taskgrid.Client, f: taskgrid.Future) -> None:
    eventually(lambda: c.status([f.key]).keys[f.key][0] == "processing", f"{f.key} runs")


@pytest.mark.parametrize("how", ["secede", "worker_client"])
def test_a_seceded_task_lets_another_run_in_its_slot(
    one: taskgrid.Client, tmp_path: pathlib.Path, how: str
) -> None:
    gate = str(tmp_path / "gate")
    waiting = one.submit(waits_at_gate, gate, how, pure=False)
    wait_processing(one, waiting)
    # The scheduler heard (WorkerMessage.secessions): the waiting task does
    # not count against the worker's one thread.
    eventually(lambda: seceded(one) == 1, "the waiting task is seceded")
    # So a second task runs in the slot, and it is what opens the gate: if
    # secede did nothing, it would wait behind the first until its gate
    # timed out, and the first would return False.
    opener = one.submit(touch, gate, pure=False)
    assert opener.result(timeout=GATE_S) == gate
    assert waiting.result(timeout=TIMEOUT) is True
    eventually(lambda: seceded(one) == 0, "nothing is seceded any more")


def test_without_secede_the_slot_stays_taken(one: taskgrid.Client, tmp_path: pathlib.Path) -> None:
    # The control of the test above: the same wait, holding the slot. The
    # opener can only run after the waiting task gave up.
    gate = str(tmp_path / "gate")
    waiting = one.submit(waits_at_gate, gate, "hold", pure=False)
    wait_processing(one, waiting)
    opener = one.submit(touch, gate, pure=False)
    assert waiting.result(timeout=TIMEOUT) is False
    assert opener.result(timeout=TIMEOUT) == gate
    assert seceded(one) == 0


def rejoins_after_block(entered: str, left: str, gate: str) -> bool:
    with taskgrid.worker_client():
        touch(entered)
        assert wait_file(gate + ".1", GATE_S)
    touch(left)  # rejoined: holds its slot again
    return wait_file(gate + ".2", GATE_S)


def test_worker_client_rejoins_on_exit(one: taskgrid.Client, tmp_path: pathlib.Path) -> None:
    entered, left, gate = (str(tmp_path / n) for n in ("entered", "left", "gate"))
    f = one.submit(rejoins_after_block, entered, left, gate, pure=False)
    assert wait_file(entered, TIMEOUT)
    eventually(lambda: seceded(one) == 1, "the task in worker_client() is seceded")
    touch(gate + ".1")
    assert wait_file(left, TIMEOUT)
    # Out of the block: counted again, while it still runs.
    eventually(lambda: seceded(one) == 0, "the task rejoined")
    assert one.status([f.key]).keys[f.key][0] == "processing"
    touch(gate + ".2")
    assert f.result(timeout=TIMEOUT) is True


def fib(n: int) -> int:
    if n < 2:
        return n
    with taskgrid.worker_client() as c:
        a, b = c.submit(fib, n - 1), c.submit(fib, n - 2)
        return int(sum(c.gather([a, b], timeout=TIMEOUT)))


def test_worker_client_recursion_on_one_thread(one: taskgrid.Client) -> None:
    assert one.submit(fib, 7).result(timeout=TIMEOUT) == 13


def secede_and_rejoin_in_any_order() -> str:
    taskgrid.rejoin()  # not seceded: returns at once, counts nothing
    taskgrid.secede()
    taskgrid.secede()  # already seceded: nothing
    with taskgrid.worker_client() as c:  # seceded already: no rejoin on exit
        assert c.submit(child, 1, pure=False).result(timeout=TIMEOUT) == 2
    taskgrid.rejoin()
    taskgrid.rejoin()  # rejoined already: nothing
    return "ok"


def test_secede_and_rejoin_are_idempotent(one: taskgrid.Client) -> None:
    f = one.submit(secede_and_rejoin_in_any_order, pure=False)
    assert f.result(timeout=TIMEOUT) == "ok"
    eventually(lambda: seceded(one) == 0, "nothing is seceded any more")
    # The slot count is intact: one task at a time still runs, and runs.
    assert one.gather(one.map(child, range(4), pure=False), timeout=TIMEOUT) == [0, 2, 4, 6]


def whoami() -> tuple[str, str | None, int]:
    w = taskgrid.get_worker()
    return w.name, w.data_address, w.nthreads


def test_get_worker_names_the_running_worker(one: taskgrid.Client) -> None:
    name, data_address, nthreads = one.submit(whoami, pure=False).result(timeout=TIMEOUT)
    assert [w.name for w in one.status().workers] == [name]
    assert nthreads == 1
    assert data_address and ":" in data_address


def test_outside_a_task_each_raises_a_clear_error() -> None:
    calls: dict[str, Callable[[], object]] = {
        "secede": taskgrid.secede,
        "rejoin": taskgrid.rejoin,
        "get_worker": taskgrid.get_worker,
        "worker_client": lambda: taskgrid.worker_client().__enter__(),
    }
    for name, call in calls.items():
        with pytest.raises(taskgrid.NotInTaskError) as e:
            call()
        msg = str(e.value)
        assert f"taskgrid.{name}()" in msg and "inside a task" in msg, msg
        assert isinstance(e.value, ValueError)  # as Dask's "No worker found"


def test_get_client_with_no_client_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskgrid import _future

    monkeypatch.setattr(_future, "_default", None)
    with pytest.raises(taskgrid.NotInTaskError) as e:
        taskgrid.get_client()
    msg = str(e.value)
    assert "get_client()" in msg and "not running a task" in msg and "taskgrid.Client(" in msg


# ---------------------------------------------------------------------------
# The nesting depth limit
# ---------------------------------------------------------------------------


def recurse(depth: int) -> int:
    """Never stops: each level submits the next and waits on it."""
    c = taskgrid.get_client()
    return int(c.submit(recurse, depth + 1, key=f"recurse-{depth + 1}").result(timeout=TIMEOUT))


def test_runaway_recursion_fails_at_the_depth_limit(binaries: tuple[str, str]) -> None:
    with taskgrid.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, max_nesting_depth=5
    ) as cl, taskgrid.Client(cl, set_as_default=False) as c:
        start = time.monotonic()
        f = c.submit(recurse, 0, key="recurse-0")  # depth 0
        with pytest.raises(taskgrid.NestingTooDeep) as e:
            f.result(timeout=TIMEOUT)
        assert time.monotonic() - start < 20  # no hang, no timeout
        msg = str(e.value)
        # The task submitted at depth 6 never ran; the error names it, its
        # depth, its parent and the limit, and reaches the top unchanged.
        assert "'recurse-6'" in msg and "6 levels deep" in msg, msg
        assert "'recurse-5'" in msg and "limit of 5" in msg, msg
        assert msg.count("tg.NestingTooDeep") == 1, msg
        st = c.status([f"recurse-{d}" for d in range(7)]).keys
        assert st["recurse-6"][0] == "erred"
        assert all(st[f"recurse-{d}"][0] == "erred" for d in range(6))
        # The cluster goes on: a task within the limit still runs.
        assert c.submit(tree, 3, pure=False).result(timeout=TIMEOUT) == 8


def test_max_nesting_depth_is_checked(binaries: tuple[str, str]) -> None:
    for bad in (-1, 1.5, True, 10**7):
        with pytest.raises(ValueError, match="max_nesting_depth"):
            taskgrid.LocalCluster(n_workers=1, processes=False, max_nesting_depth=bad)  # type: ignore[arg-type]
