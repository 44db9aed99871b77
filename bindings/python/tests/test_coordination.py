# SPDX-License-Identifier: Apache-2.0
"""Coordination primitives and published datasets, kept by the scheduler.

Against a real LocalCluster (the C scheduler and Python workers): two
clients share a Queue, an Event, a Variable; a Lock excludes across tasks;
a Semaphore(2) admits two of three; the lease of a killed process expires
and goes to the next caller; a Variable (and a dataset) holding a future
keeps its result after the client that stored it closed, and lets it go
once deleted; hostile requests get errors naming the limit they pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import grpc
import pytest

import taskgrid
from taskgrid._rpc import pb, pb_grpc

TIMEOUT = 30


@pytest.fixture(scope="module")
def cluster(binaries: tuple[str, str]) -> Iterator[taskgrid.LocalCluster]:
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2) as cl:
        yield cl


@pytest.fixture
def two(cluster: taskgrid.LocalCluster) -> Iterator[tuple[taskgrid.Client, taskgrid.Client]]:
    with taskgrid.Client(cluster) as a, taskgrid.Client(cluster, set_as_default=False) as b:
        yield a, b


@pytest.fixture
def stub(cluster: taskgrid.LocalCluster) -> Iterator[pb_grpc.SchedulerStub]:
    """A stock gRPC client, as any language would use."""
    channel = grpc.insecure_channel(cluster.address.removeprefix("tcp://"))
    yield pb_grpc.SchedulerStub(channel)
    channel.close()


def key_state(client: taskgrid.Client, key: str) -> str:
    return client.status([key]).keys[key][0]


def wait_state(client: taskgrid.Client, key: str, state: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while key_state(client, key) != state:
        assert time.monotonic() < deadline, f"{key} never became {state}"
        time.sleep(0.05)


def test_two_clients_share_a_queue(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two
    qa, qb = taskgrid.Queue("shared-q", client=a), taskgrid.Queue("shared-q", client=b)
    fut = a.submit(lambda: "computed")
    qa.put(1)
    qa.put({"x": [1, 2]})
    qa.put(fut)
    qa.put((1, "tuple"))  # not JSON: pickled, and comes back a tuple
    assert qb.qsize() == 4
    assert qb.get(timeout=TIMEOUT) == 1
    got = qb.get(batch=2)
    assert got[0] == {"x": [1, 2]}
    assert isinstance(got[1], taskgrid.Future) and got[1].key == fut.key
    assert got[1].result(TIMEOUT) == "computed"
    assert qb.get() == (1, "tuple")
    assert qb.qsize() == 0
    # Empty: get with a timeout raises TimeoutError after about that time.
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="shared-q"):
        qb.get(timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 5
    assert qb.get(batch=True) == []


def test_queue_future_and_blocking_get(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two
    qa, qb = taskgrid.Queue("fut-q", client=a), taskgrid.Queue("fut-q", client=b)
    fut = a.submit(lambda: 41 + 1)
    qa.put(fut)
    got = qb.get(timeout=TIMEOUT)
    assert isinstance(got, taskgrid.Future) and got.key == fut.key
    assert got.result(TIMEOUT) == 42
    # A get parked in the scheduler is answered by a later put.
    task = a.submit(lambda: taskgrid.Queue("late-q").get(timeout=TIMEOUT))
    wait = time.monotonic() + TIMEOUT
    while key_state(a, task.key) != "processing":
        assert time.monotonic() < wait
        time.sleep(0.02)
    taskgrid.Queue("late-q", client=b).put("hello")
    assert task.result(TIMEOUT) == "hello"


def test_bounded_queue_put_waits(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two
    q = taskgrid.Queue("small-q", client=a, maxsize=1)
    q.put("first")
    with pytest.raises(TimeoutError, match="stayed full"):
        q.put("second", timeout=0.2)
    assert taskgrid.Queue("small-q", client=b).get() == "first"
    q.put("third", timeout=TIMEOUT)
    assert q.qsize() == 1
    assert q.get() == "third"


def test_two_clients_share_an_event(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two
    ea, eb = taskgrid.Event("go", client=a), taskgrid.Event("go", client=b)
    assert not ea.is_set()
    assert ea.wait(0.2) is False
    # Tasks wait on it in the scheduler (their slots given back meanwhile).
    waiters = a.map(lambda i: taskgrid.Event("go").wait(TIMEOUT), range(5))
    eb.set()
    assert a.gather(waiters) == [True] * 5
    assert ea.is_set() and ea.wait() is True
    eb.clear()
    assert not ea.is_set()


def test_lock_excludes_across_tasks(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two

    def critical(i: int) -> tuple[float, float]:
        with taskgrid.Lock("critical"):
            start = time.time()
            time.sleep(0.15)  # the work the lock protects
            return start, time.time()

    spans = sorted(a.gather(a.map(critical, range(4)), timeout=TIMEOUT))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two tasks held the lock at once: {spans}"
    lock = taskgrid.Lock("critical", client=b)
    assert not lock.locked()
    assert lock.acquire()
    assert lock.locked()
    other = taskgrid.Lock("critical", client=a)
    assert other.acquire(blocking=False) is False
    assert other.acquire(timeout=0.2) is False
    lock.release()
    assert other.acquire(timeout=TIMEOUT)
    other.release()
    with pytest.raises(RuntimeError, match="Released too often"):
        other.release()
    with pytest.raises(ValueError, match="non-blocking"):
        other.acquire(blocking=False, timeout=1)


def test_semaphore_admits_two_of_three(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two
    s1 = taskgrid.Semaphore(2, "db", client=a)
    s2 = taskgrid.Semaphore(2, "db", client=b)
    s3 = taskgrid.Semaphore(2, "db", client=b)
    assert s1.acquire() and s2.acquire()
    assert s3.get_value() == 2
    assert s3.acquire(timeout=0.3) is False
    s1.release()
    assert s3.acquire(timeout=TIMEOUT)
    assert s1.get_value() == 2
    s2.release()
    s3.release()
    assert s1.get_value() == 0
    # Every user of a name must agree on max_leases.
    with s1, pytest.raises(ValueError, match="max_leases 2, not 3"):
        taskgrid.Semaphore(3, "db", client=a).acquire()


def test_lease_of_killed_process_expires(
    cluster: taskgrid.LocalCluster, two: tuple[taskgrid.Client, taskgrid.Client]
) -> None:
    a, _ = two
    child = textwrap.dedent(
        f"""
        import sys, time, taskgrid
        c = taskgrid.Client({cluster.address!r})
        lock = taskgrid.Lock("killed-holder", lease_timeout=1.0)
        assert lock.acquire(timeout=30)
        print("acquired", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acquired"
        lock = taskgrid.Lock("killed-holder", client=a)
        # Alive, the holder refreshes its lease: still held after several
        # lease timeouts.
        assert lock.acquire(timeout=2.5) is False
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
        t0 = time.monotonic()
        assert lock.acquire(timeout=TIMEOUT), "the dead holder's lease never expired"
        assert time.monotonic() - t0 < 5
        lock.release()
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


def test_variable_keeps_future_after_client_closed(cluster: taskgrid.LocalCluster) -> None:
    with taskgrid.Client(cluster, set_as_default=False) as reader:
        with taskgrid.Client(cluster, set_as_default=False) as writer:
            fut = writer.submit(lambda: list(range(5)))
            key = fut.key
            assert fut.result(TIMEOUT) == [0, 1, 2, 3, 4]
            taskgrid.Variable("kept", client=writer).set(fut)
            writer.publish_dataset(data=[fut, "label"])
        # The writer released everything it held on close.
        assert key_state(reader, key) == "memory"
        got = taskgrid.Variable("kept", client=reader).get(timeout=TIMEOUT)
        assert got.key == key and got.result(TIMEOUT) == [0, 1, 2, 3, 4]
        ds = reader.get_dataset("data")
        assert ds[1] == "label" and ds[0].result(TIMEOUT) == [0, 1, 2, 3, 4]
        assert "data" in reader.list_datasets() and reader.datasets["data"][1] == "label"
        # Deleted, unpublished, and no Future left: the result goes.
        taskgrid.Variable("kept", client=reader).delete()
        reader.unpublish_dataset("data")
        del got, ds
        wait_state(reader, key, "released")
        with pytest.raises(TimeoutError):
            taskgrid.Variable("kept", client=reader).get(timeout=0.1)
        assert reader.get_dataset("data", default=None) is None
        with pytest.raises(KeyError, match="not found"):
            reader.get_dataset("data")


def test_datasets(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, b = two
    a.publish_dataset(x=1, y="two")
    a.publish_dataset({"z": [3]})
    a.publish_dataset(4, 5, name="w")
    assert b.get_dataset(["x", "y", "z", "w"]) == [1, "two", [3], (4, 5)]
    with pytest.raises(KeyError, match="already exists"):
        b.publish_dataset(9, name="x")
    b.publish_dataset(9, name="x", override=True)
    assert a.get_dataset("x") == 9
    assert [n for n in a.list_datasets() if n in "xyzw"] == ["w", "x", "y", "z"]
    with pytest.raises(ValueError, match="name: value"):
        a.publish_dataset(1, 2)
    a.unpublish_dataset(["x", "y", "z", "w", "never-published"])
    assert not set("xyzw") & set(a.list_datasets())


def test_hostile_requests_get_clear_errors(
    two: tuple[taskgrid.Client, taskgrid.Client], stub: pb_grpc.SchedulerStub
) -> None:
    a, _ = two
    with pytest.raises(ValueError, match="1 to 1024 bytes"):
        taskgrid.Variable("n" * 5000, client=a).set(1)
    with pytest.raises(ValueError, match="8 MiB"):
        taskgrid.Queue("big", client=a).put(b"x" * (9 << 20))

    def call(**fields: object) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            stub.Coordinate(pb.CoordRequest(**fields), timeout=TIMEOUT)
        return info.value

    e = call(kind=pb.COORD_KIND_EVENT, name="e", op=pb.COORD_OP_PUT)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "not one a event takes" in e.details()
    e = call(kind=77, name="e", op=pb.COORD_OP_SET)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    e = call(
        kind=pb.COORD_KIND_VARIABLE,
        name="v",
        op=pb.COORD_OP_SET,
        value=pb.CoordValue(key="no-such-key"),
    )
    assert (
        e.code() == grpc.StatusCode.INVALID_ARGUMENT and "'no-such-key' is not known" in e.details()
    )
    e = call(kind=pb.COORD_KIND_SEMAPHORE, name="s", op=pb.COORD_OP_ACQUIRE, limit=1)
    assert "lease id" in e.details()
    e = call(
        kind=pb.COORD_KIND_SEMAPHORE,
        name="s",
        op=pb.COORD_OP_ACQUIRE,
        lease="l",
        limit=1,
        lease_timeout_ms=5,
    )
    assert "lease_timeout_ms" in e.details()
    e = call(kind=pb.COORD_KIND_VARIABLE, name="v\0x", op=pb.COORD_OP_SET)
    assert "NUL" in e.details()
    # Garbage bytes instead of a message.
    channel = grpc.insecure_channel(a.address.removeprefix("tcp://"))
    raw = channel.unary_unary("/taskgrid.v1.Scheduler/Coordinate")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff\xff", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


def test_too_many_primitives(binaries: tuple[str, str]) -> None:
    """The 10,001st primitive is refused, naming the limit; emptied ones
    free their places."""
    with taskgrid.LocalCluster(n_workers=0) as cl:
        channel = grpc.insecure_channel(cl.address.removeprefix("tcp://"))
        stub = pb_grpc.SchedulerStub(channel)
        sets = [
            stub.Coordinate.future(
                pb.CoordRequest(kind=pb.COORD_KIND_EVENT, name=f"e{i}", op=pb.COORD_OP_SET)
            )
            for i in range(10_000)
        ]
        assert all(f.result(TIMEOUT).ok for f in sets)
        put = pb.CoordRequest(
            kind=pb.COORD_KIND_QUEUE,
            name="one-more",
            op=pb.COORD_OP_PUT,
            value=pb.CoordValue(data=b"1", codec="json"),
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Coordinate(put, timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "10000 coordination primitives" in info.value.details()
        stub.Coordinate(
            pb.CoordRequest(kind=pb.COORD_KIND_EVENT, name="e0", op=pb.COORD_OP_CLEAR),
            timeout=TIMEOUT,
        )
        assert stub.Coordinate(put, timeout=TIMEOUT).ok
        channel.close()


def test_primitives_travel_by_name(two: tuple[taskgrid.Client, taskgrid.Client]) -> None:
    a, _ = two
    v = taskgrid.Variable("travels", client=a)
    v.set("from the client")
    sem = taskgrid.Semaphore(3, "travels-sem", client=a)
    assert a.submit(lambda var, s: (var.get(), s.max_leases, s.name), v, sem).result(TIMEOUT) == (
        "from the client",
        3,
        "travels-sem",
    )
