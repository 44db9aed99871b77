# SPDX-License-Identifier: Apache-2.0
"""taskgrid.Client against the C scheduler and C workers (named functions)."""
from __future__ import annotations

import gc
import time

import pytest

import taskgrid


def test_named_function_with_json_arguments(c_client: taskgrid.Client) -> None:
    assert c_client.submit("tg.inc", 1).result(10) == 2
    assert c_client.submit("tg.add", 1, 2, 3).result(10) == 6
    assert c_client.submit("tg.sum", [1, 2, 3]).result(10) == 6
    assert c_client.submit("tg.noop").result(10) is None  # empty raw result


def test_futures_become_dependencies_resolved_by_the_scheduler(c_client: taskgrid.Client) -> None:
    # The diamond of the seeds, on C built-ins: inc/dec over a range, add
    # pairwise, one sum; only the final result comes back to the client.
    incs = c_client.map("tg.inc", range(100))
    decs = c_client.map("tg.dec", range(100))
    adds = [c_client.submit("tg.add", i, d) for i, d in zip(incs, decs)]
    total = c_client.submit("tg.sum", *adds)
    assert total.result(30) == sum(2 * i for i in range(100))
    assert c_client.gather(adds[:3]) == [0, 2, 4]


def test_literal_arguments_come_before_futures(c_client: taskgrid.Client) -> None:
    one = c_client.submit("tg.inc", 0)
    assert c_client.submit("tg.add", 10, one).result(10) == 11
    with pytest.raises(TypeError, match="futures must come last"):
        c_client.submit("tg.add", one, 10)
    with pytest.raises(TypeError, match="positional arguments only"):
        c_client.submit("tg.inc", x=1)
    with pytest.raises(TypeError, match="must be JSON"):
        c_client.submit("tg.echo", object())


def test_map_and_gather_ten_thousand_in_one_batch(c_client: taskgrid.Client) -> None:
    start = time.monotonic()
    futures = c_client.map("tg.inc", range(10_000))
    results = c_client.gather(futures, timeout=60)
    assert results == list(range(1, 10_001))
    # One Submit and one Gather stream: far below a per-task RPC budget.
    assert time.monotonic() - start < 20


def test_c_error_becomes_task_error_and_dependents_inherit_it(c_client: taskgrid.Client) -> None:
    bad = c_client.submit("tg.fail", "boom", key="bad-c-task")
    child = c_client.submit("tg.inc", bad, key="child-of-bad-c-task")
    with pytest.raises(taskgrid.TaskError, match="boom") as e:
        bad.result(10)
    assert e.value.type == "tg.Fail"
    with pytest.raises(taskgrid.TaskError, match="boom") as e:
        child.result(10)
    assert e.value.origin_key == "bad-c-task"
    assert child.status == "error"


def test_c_type_error_is_a_python_type_error(c_client: taskgrid.Client) -> None:
    with pytest.raises(TypeError, match="tg.inc expects one number"):
        c_client.submit("tg.inc", "x").result(10)


def test_same_key_is_one_task(c_client: taskgrid.Client) -> None:
    a = c_client.submit("tg.inc", 41, key="answer")
    b = c_client.submit("tg.inc", 41, key="answer")
    assert a.result(10) == b.result(10) == 42
    # Pure (default) keys: the same call gives the same key.
    assert c_client.submit("tg.inc", 5).key == c_client.submit("tg.inc", 5).key
    impure = [c_client.submit("tg.inc", 5, pure=False) for _ in range(2)]
    assert impure[0].key != impure[1].key


def test_cancel_a_running_task_and_its_dependents(c_client: taskgrid.Client) -> None:
    slow = c_client.submit("tg.sleep", 30, pure=False)
    after = c_client.submit("tg.inc", slow, pure=False)
    deadline = time.monotonic() + 10
    while c_client.status([slow.key]).keys[slow.key][0] != "processing":
        assert time.monotonic() < deadline, "tg.sleep never started"
        time.sleep(0.02)
    assert c_client.cancel([slow]) == 2
    with pytest.raises(taskgrid.CancelledError):
        slow.result(10)
    with pytest.raises(taskgrid.CancelledError):
        after.result(10)
    assert slow.cancelled() and after.cancelled()


def test_result_timeout_and_done_callbacks(c_client: taskgrid.Client) -> None:
    slow = c_client.submit("tg.sleep", 0.5, pure=False)
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.05)
    seen: list = []
    slow.add_done_callback(seen.append)
    assert slow.result(10) == 0.5
    deadline = time.monotonic() + 5
    while not seen:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert seen == [slow]
    late: list = []
    slow.add_done_callback(late.append)  # already done: called at once
    deadline = time.monotonic() + 5
    while not late:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_as_completed_yields_in_completion_order(c_client: taskgrid.Client) -> None:
    slow = c_client.submit("tg.sleep", 0.6, pure=False)
    fast = c_client.submit("tg.sleep", 0.05, pure=False)
    order = [f for f in taskgrid.as_completed([slow, fast])]
    assert order == [fast, slow]
    pairs = list(taskgrid.as_completed([c_client.submit("tg.inc", 1)], with_results=True))
    assert pairs[0][1] == 2


def test_unknown_key_is_an_unknown_key_error(c_client: taskgrid.Client) -> None:
    with pytest.raises(taskgrid.UnknownKeyError, match="not known"):
        c_client.future("never-submitted").result(10)


def test_dropping_futures_releases_results_on_the_scheduler(c_client: taskgrid.Client) -> None:
    futures = c_client.map("tg.inc", range(500), key=[f"rel-{i}" for i in range(500)])
    c_client.gather(futures, timeout=30)
    keys = [f.key for f in futures[:5]]
    assert {s for s, _ in c_client.status(keys).keys.values()} == {"memory"}
    del futures
    gc.collect()
    # Releases are batched (they ride on the next Submit or go alone).
    deadline = time.monotonic() + 10
    while {s for s, _ in c_client.status(keys).keys.values()} != {"released"}:
        assert time.monotonic() < deadline, c_client.status(keys).keys
        time.sleep(0.02)


def test_python_callable_without_python_workers_fails_clearly(binaries: tuple) -> None:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1, worker="c",
                               no_worker_timeout=0.3) as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        fut = c.submit(abs, -1)
        with pytest.raises(taskgrid.NoWorkerError):
            fut.result(10)


def test_status_reports_workers_and_counts(c_client: taskgrid.Client, c_cluster) -> None:
    st = c_client.status()
    assert len(st.workers) == 2
    assert all(w.nthreads == 2 for w in st.workers)
    assert st.version.startswith("taskgrid-scheduler/")
