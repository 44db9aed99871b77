# SPDX-License-Identifier: Apache-2.0
"""Client.scatter end to end: real C scheduler, C and Python workers.

The data goes into the cluster once, as the input of a tg.echo task, and
is held by the worker that ran it when it is over the inline limit; the
workers' exit counters show that it was held once and fetched by the
tasks on other workers. Content keys deduplicate (and equal those of the
Go and C clients); data over one message is refused before anything is
sent.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

import pytest

import taskgrid
from taskgrid import _codec
from taskgrid.client import SCATTER_MAX_BYTES

from test_data_plane_e2e import hand, length, make  # noqa: F401 - a fixture
from test_large_results import big_plugin  # noqa: F401 - a fixture

MB = 1_000_000
TIMEOUT = 120


def check(x: bytes, i: int) -> tuple[int, str]:
    return len(x) + i, hashlib.sha256(x).hexdigest()


def test_one_20_mb_object_feeds_10_tasks_on_2_workers(hand) -> None:  # noqa: F811
    client, workers = hand
    workers.start("python", "a")
    workers.start("python", "b")
    client.wait_for_workers(2, timeout=30)
    data = make(20 * MB)
    src = client.scatter(data, workers=["a"])
    fs = [client.submit(check, src, i, workers=[["a", "b"][i % 2]]) for i in range(10)]
    want = hashlib.sha256(data).hexdigest()
    assert client.gather(fs, timeout=TIMEOUT) == [(20 * MB + i, want) for i in range(10)]
    assert src.result(timeout=TIMEOUT) == data
    a, b = workers.stop("a"), workers.stop("b")
    # Held once, raw (bytes are not pickled), by the worker asked for.
    assert (a.held, a.held_bytes, b.held) == (1, 20 * MB, 0), (a, b)
    # Used in place on a; fetched from a by the tasks on b.
    assert a.local == 5 and a.fetched == 0, a
    assert 1 <= b.fetched <= 5 and b.fetched_bytes == b.fetched * 20 * MB, b
    assert a.served == b.fetched, (a, b)


def test_scattered_data_crosses_c_and_python_workers(hand) -> None:  # noqa: F811
    client, workers = hand
    workers.start("c", "c1")
    workers.start("python", "p1")
    client.wait_for_workers(2, timeout=30)
    n = 5 * MB
    on_c = client.scatter(make(n), workers=["c1"], hash=False)
    on_py = client.scatter(make(n), workers=["p1"], hash=False)
    assert client.submit(length, on_c, pure=False, workers=["p1"]).result(TIMEOUT) == n
    assert client.submit("big.len", on_py, pure=False, workers=["c1"]).result(TIMEOUT) == n
    assert client.submit("big.len", on_c, pure=False, workers=["c1"]).result(TIMEOUT) == n
    c1, p1 = workers.stop("c1"), workers.stop("p1")
    assert (c1.held, c1.held_bytes, c1.served, c1.fetched, c1.local) == (1, n, 1, 1, 1), c1
    assert (p1.held, p1.held_bytes, p1.served, p1.fetched) == (1, n, 1, 1), p1


@pytest.fixture(scope="module")
def client(binaries: tuple[str, str]) -> Iterator[taskgrid.Client]:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=2) as cl, taskgrid.Client(
        cl, set_as_default=False
    ) as c:
        yield c


def test_equal_data_gets_one_key(client: taskgrid.Client, binaries: tuple[str, str]) -> None:
    data = make(2 * MB)
    first = client.scatter(data)
    again = client.scatter(bytes(data))
    assert first.key == again.key
    assert first.key.startswith("bytes-")
    # Another client scattering the same data names the same task.
    with taskgrid.Client(client.address, set_as_default=False) as other:
        assert other.scatter(data).key == first.key
        assert other.scatter(data).result(TIMEOUT) == data
    assert client.scatter(make(2 * MB + 1)).key != first.key
    unhashed = [client.scatter(data, hash=False) for _ in range(2)]
    assert len({f.key for f in unhashed} | {first.key}) == 3
    assert all(f.result(TIMEOUT) == data for f in [first, again, *unhashed])
    # The content key is the Go and C clients' for the same bytes.
    assert client.scatter(b"hello").key == "bytes-b283d65915fb8ea11ff200265bdee351"


def test_containers_and_python_objects(client: taskgrid.Client) -> None:
    fs = client.scatter([1, "two", {"three": 3}])
    assert isinstance(fs, list) and len(fs) == 3
    assert client.gather(fs, timeout=TIMEOUT) == [1, "two", {"three": 3}]
    tup = client.scatter((1, 2))
    assert isinstance(tup, tuple) and client.gather(list(tup), timeout=TIMEOUT) == [1, 2]
    named = client.scatter({"x-scatter-test": [1, 2, 3], "y-scatter-test": (4,)})
    assert sorted(named) == ["x-scatter-test", "y-scatter-test"]
    assert named["x-scatter-test"].key == "x-scatter-test"
    total = client.submit(lambda a, b: sum(a) + sum(b), named["x-scatter-test"],
                          named["y-scatter-test"])
    assert total.result(TIMEOUT) == 10
    one = client.scatter({"a": 1})  # a dict given as one object: its keys name tasks
    assert one["a"].result(TIMEOUT) == 1
    obj = client.scatter(bytearray(b"abc"))
    assert obj.key.startswith("bytearray-") and obj.result(TIMEOUT) == bytearray(b"abc")


def test_data_over_one_message_is_refused(client: taskgrid.Client) -> None:
    big = bytes(SCATTER_MAX_BYTES + 1)
    with pytest.raises(ValueError) as info:
        client.scatter([b"small", big])
    text = str(info.value)
    assert f"{SCATTER_MAX_BYTES + 1} bytes" in text and f"{SCATTER_MAX_BYTES}-byte limit" in text
    # Nothing was sent, not even the small one.
    key = "bytes-" + hashlib.sha256(b"raw\0small").hexdigest()[:32]
    assert client.status([key]).keys.get(key, ("released", ""))[0] in ("released", "unspecified")
    # A pickled object is measured encoded.
    with pytest.raises(ValueError, match="bytes encoded"):
        client.scatter([big])
    assert len(_codec.dumps([big])) > SCATTER_MAX_BYTES


def test_broadcast_is_not_available(client: taskgrid.Client) -> None:
    with pytest.raises(NotImplementedError, match="broadcast"):
        client.scatter(b"x", broadcast=True)


def test_the_scatter_function_is_a_python_worker_builtin() -> None:
    from taskgrid.worker.builtins import BUILTINS

    assert taskgrid.client.SCATTER_FUNC in BUILTINS
