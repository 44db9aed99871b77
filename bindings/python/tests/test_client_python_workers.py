# SPDX-License-Identifier: Apache-2.0
"""taskgrid.Client against Python workers: callables, dependencies, errors
with their tracebacks, retries, nested work, cancellation, priorities,
resources, named functions, mixed C/Python graphs, and worker loss."""
from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import Iterator

import pytest

import taskgrid
import taskgrid.worker

HERE = pathlib.Path(__file__).resolve().parent


# -- task functions (importable by the workers, which see our sys.path) ------

def inc(x):
    return x + 1


def add(a, b):
    return a + b


def fail(msg):
    raise ValueError(msg)


class Boom(Exception):
    pass


class OddError(Exception):
    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code


def raise_boom():
    raise Boom("kaboom")


def raise_odd():
    raise OddError(7, "odd")


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def started_at(tag, seconds=0.0, after=None):
    t = time.monotonic()
    time.sleep(seconds)
    return tag, t, time.monotonic()


def task_priority():
    return taskgrid.worker.get_task().priority


def flaky(counter_file):
    path = pathlib.Path(counter_file)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n < 3:
        raise RuntimeError(f"attempt {n} fails")
    return n, taskgrid.worker.get_task().attempt


def nested_sum(n):
    client = taskgrid.get_client()
    return sum(client.gather(client.map(inc, range(n))))


def wait_for_cancel(marker):
    task = taskgrid.worker.get_task()
    deadline = time.monotonic() + 30
    while not task.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    pathlib.Path(marker).write_text("cancelled" if task.cancelled else "timeout")


def pid_after(seconds, i):
    time.sleep(seconds)
    return i, os.getpid()


def wait_until(pred, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- basics ------------------------------------------------------------------

def test_callables_closures_and_keyword_arguments(py_client: taskgrid.Client) -> None:
    assert py_client.submit(inc, 1).result(10) == 2
    offset = 100
    assert py_client.submit(lambda x: x + offset, 1).result(10) == 101
    assert py_client.submit(sorted, [3, 1, 2], reverse=True).result(10) == [3, 2, 1]
    assert py_client.submit(divmod, 7, 2).result(10) == (3, 1)  # tuples stay tuples
    futures = py_client.map(add, range(5), range(5))
    assert py_client.gather(futures) == [0, 2, 4, 6, 8]
    assert py_client.gather(py_client.map(pow, [2, 3], exp=2)) == [4, 9]


def test_futures_in_arguments_are_dependencies(py_client: taskgrid.Client) -> None:
    a = py_client.submit(sleep_then, 0.3, 20, pure=False)
    start = time.monotonic()
    b = py_client.submit(add, a, 2)            # does not wait for a
    c = py_client.submit(sum, [a, b, 1])       # futures inside a list
    d = py_client.submit(dict, x=a, y={"b": b})  # and inside a dict
    assert time.monotonic() - start < 0.2 and not a.done()
    assert b.result(10) == 22
    assert c.result(10) == 43
    assert d.result(10) == {"x": 20, "y": {"b": 22}}
    assert py_client.gather({"b": b, "nested": [a, (b,)]}) == {"b": 22, "nested": [20, (22,)]}


def test_ten_thousand_python_tasks(py_client: taskgrid.Client) -> None:
    futures = py_client.map(inc, range(10_000))
    assert sum(py_client.gather(futures, timeout=60)) == sum(range(1, 10_001))


# -- errors --------------------------------------------------------------------

def test_errors_come_back_as_the_original_type_with_traceback(py_client: taskgrid.Client) -> None:
    fut = py_client.submit(fail, "bad input")
    with pytest.raises(ValueError, match="bad input") as e:
        fut.result(10)
    cause = e.value.__cause__
    assert isinstance(cause, taskgrid.RemoteTraceback)
    assert "in fail" in cause.tb and 'raise ValueError(msg)' in cause.tb
    assert "taskgrid/worker" not in cause.tb  # starts at the user's code
    assert "ValueError: bad input" in fut.traceback()
    assert isinstance(fut.exception(), ValueError)
    with pytest.raises(Boom, match="kaboom"):
        py_client.submit(raise_boom).result(10)
    with pytest.raises(OddError):  # constructor with another signature
        py_client.submit(raise_odd).result(10)


def test_dependents_fail_with_the_same_error(py_client: taskgrid.Client) -> None:
    bad = py_client.submit(fail, "upstream", key="py-bad")
    child = py_client.submit(inc, bad, key="py-child")
    grandchild = py_client.submit(inc, child, key="py-grandchild")
    with pytest.raises(ValueError, match="upstream") as e:
        grandchild.result(10)
    assert any("py-bad" in note for note in getattr(e.value, "__notes__", []))


def test_retries_rerun_a_failing_task(py_client: taskgrid.Client, tmp_path: pathlib.Path) -> None:
    fut = py_client.submit(flaky, str(tmp_path / "count"), retries=3, pure=False)
    assert fut.result(20) == (3, 3)  # third run, attempt number 3
    with pytest.raises(RuntimeError, match="attempt 1 fails"):
        py_client.submit(flaky, str(tmp_path / "other"), pure=False).result(10)


# -- annotations ---------------------------------------------------------------

def test_annotate_sets_priority_and_explicit_arguments_win(py_client: taskgrid.Client) -> None:
    with taskgrid.annotate(priority=5):
        assert py_client.submit(task_priority, pure=False).result(10) == 5
        assert py_client.submit(task_priority, pure=False, priority=7).result(10) == 7
        with taskgrid.annotate(retries=2):  # nested scopes merge
            assert py_client._annotations(None, None, None, None) == {"priority": 5, "retries": 2}
    assert py_client.submit(task_priority, pure=False).result(10) == 0


@pytest.fixture(scope="module")
def one_slot() -> Iterator[taskgrid.Client]:
    """One Python worker with one thread (ordering and nesting tests)."""
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        yield c


def test_higher_priority_runs_first(one_slot: taskgrid.Client) -> None:
    # Everything waits on the blocker, so all become ready at once and the
    # scheduler (then the worker's queue) must order them by priority.
    blocker = one_slot.submit(started_at, "blocker", 0.3, pure=False)
    with taskgrid.annotate(priority=-10):
        low = [one_slot.submit(started_at, f"low{i}", after=blocker, pure=False) for i in range(3)]
    with taskgrid.annotate(priority=10):
        high = [one_slot.submit(started_at, f"high{i}", after=blocker, pure=False)
                for i in range(3)]
    lows = [f.result(10)[1] for f in low]
    highs = [f.result(10)[1] for f in high]
    assert max(highs) < min(lows), "high-priority tasks must start before low ones"
    assert lows == sorted(lows) and highs == sorted(highs)  # FIFO among equals


def test_priority_beats_prefetch_to_a_busy_worker(one_slot: taskgrid.Client) -> None:
    # Separate submissions while the only slot is busy: the scheduler hands
    # `low` to the worker's prefetch queue at once; `high`, arriving later,
    # must still start first (it takes low's place, low is handed back).
    blocker = one_slot.submit(started_at, "blocker", 0.5, pure=False)
    blocker_start = time.monotonic()
    wait_until(lambda: one_slot.status([blocker.key]).keys[blocker.key][0] == "processing",
               what="the blocker to start")
    low = one_slot.submit(started_at, "low", priority=-10, pure=False)
    wait_until(lambda: one_slot.status([low.key]).keys[low.key][0] == "processing",
               what="low to be assigned")
    high = one_slot.submit(started_at, "high", priority=10, pure=False)
    assert time.monotonic() - blocker_start < 0.5
    assert high.result(10)[1] < low.result(10)[1]


def test_nested_work_with_get_client_does_not_deadlock(one_slot: taskgrid.Client) -> None:
    # The parent holds the only slot while it waits on its children: it
    # secedes, so they run on the same worker.
    assert one_slot.submit(nested_sum, 10, pure=False).result(30) == 55


def test_cancel_reaches_a_running_python_task(one_slot: taskgrid.Client,
                                              tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "marker"
    fut = one_slot.submit(wait_for_cancel, str(marker), pure=False)
    wait_until(lambda: one_slot.status([fut.key]).keys[fut.key][0] == "processing",
               what="the task to start")
    fut.cancel()
    with pytest.raises(taskgrid.CancelledError):
        fut.result(10)
    wait_until(marker.exists, what="the task to see its cancelled flag")
    assert marker.read_text() == "cancelled"
    assert one_slot.submit(inc, 1, pure=False).result(10) == 2  # slot is free again


def test_resources_limit_concurrency(binaries: tuple) -> None:
    # The seed: 1 worker with GPU=1 and process=1; tasks needing process=1
    # run one at a time even though the worker has 2 threads.
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=2,
                               resources={"GPU": 1, "process": 1}) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        assert c.submit(started_at, "gpu", resources={"GPU": 1}, pure=False).result(10)[0] == "gpu"
        with taskgrid.annotate(resources={"process": 1}):
            spans = c.gather([c.submit(started_at, i, 0.3, pure=False) for i in range(3)],
                             timeout=20)
        spans.sort(key=lambda s: s[1])
        for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
            assert start >= end, f"tasks needing process=1 overlapped: {spans}"


# -- named functions and mixed graphs ----------------------------------------

def test_named_python_functions_from_a_preload_module(binaries: tuple) -> None:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1,
                               preload=[str(HERE / "tg_preload_funcs.py")]) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        assert c.submit("demo.shout", 3).result(10) == "#3"
        assert c.submit("demo.pair", 1, "a").result(10) == [1, "a"]  # JSON
        assert c.submit("demo.obj", 3).result(10) == {1, 2, 3}  # pickle
        # A Python result (pickle) feeds a named Python function...
        assert c.submit("demo.double", c.submit(inc, 20)).result(10) == 42
        # ...and a named function's JSON result feeds a C-style built-in.
        assert c.submit("tg.inc", c.submit("demo.double", 4)).result(10) == 9


def times10(x):
    return 10 * x


def test_mixed_graph_of_c_and_python_workers(c_cluster: taskgrid.LocalCluster) -> None:
    # Add a Python worker (in this process) to the C cluster: py.call tasks
    # go to it, tg.* built-ins to either kind.
    worker = taskgrid.worker.Worker(c_cluster.address, nthreads=1, name="py-in-c").start()
    try:
        with taskgrid.Client(c_cluster, set_as_default=False) as c:
            c.wait_for_workers(3)
            x = c.submit("tg.inc", 1)
            y = c.submit(times10, x)  # JSON result decoded for Python
            assert y.result(10) == 20
            z = c.submit("tg.inc", y)  # C cannot read a pickled result
            with pytest.raises(TypeError, match="codec 'pickle'"):
                z.result(10)
    finally:
        worker.stop(timeout=15)
    assert worker.stopped


# -- clusters ------------------------------------------------------------------

def test_in_process_workers(binaries: tuple) -> None:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        assert c.submit(os.getpid, pure=False).result(10) == os.getpid()
        assert c.submit(nested_sum, 5, pure=False).result(20) == 15


def test_scale_up_and_down(binaries: tuple) -> None:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        c.scale(2)
        c.wait_for_workers(2, timeout=30)
        slow = c.map(sleep_then, [0.2] * 6, range(6), pure=False)
        c.scale(1)  # the retired worker drains: nothing is lost
        assert c.gather(slow, timeout=30) == list(range(6))
        wait_until(lambda: len(c.status().workers) == 1, timeout=30, what="scale down to 1")


def test_adaptive_scaling_follows_the_work(binaries: tuple) -> None:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        with pytest.raises(ValueError, match="minimum <= maximum"):
            cl.adapt(minimum=3, maximum=2)
        cl.adapt(minimum=1, maximum=3)
        work = c.map(sleep_then, [0.4] * 12, range(12), pure=False)
        wait_until(lambda: len(c.status().workers) == 3, timeout=30, what="scale up to 3")
        assert c.gather(work, timeout=60) == list(range(12))
        # Back to the minimum after a quiet spell (the retired are drained).
        wait_until(lambda: len(c.status().workers) == 1, timeout=30, what="scale down to 1")


def test_sigkill_of_a_python_worker_mid_work(binaries: tuple) -> None:
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        first = c.submit(pid_after, 0.0, -1, pure=False)
        _, victim = first.result(20)
        futures = c.map(pid_after, [0.3] * 8, range(8), pure=False)
        wait_until(lambda: c.status().processing >= 2, what="work to be running")
        os.kill(victim, signal.SIGKILL)
        results = c.gather(futures, timeout=60)
        assert [i for i, _ in results] == list(range(8))
        # Tasks lost with the worker ran again elsewhere; the launcher
        # replaces the dead worker.
        c.wait_for_workers(2, timeout=30)
        assert c.submit(pid_after, 0.0, 99, pure=False).result(20)[0] == 99
