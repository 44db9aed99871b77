# SPDX-License-Identifier: Apache-2.0
"""client.map_partitions and client.tree_reduce end to end: real C
scheduler, Python and C workers.

200 partitions of 10,000 int64 (80 KB each, over the 64 KiB inline limit,
so each is held by its worker and moves peer to peer to its combine) are
generated on the workers and summed in trees of fan-in 8 and 2, checked
exactly; the trees' depth shows in the root keys; inner results and
partitions are forgotten once used; combines outrank the map tasks still
queued; C functions by name work the same; bad input raises an error
naming the problem before anything is submitted.
"""

from __future__ import annotations

import array
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

import taskgrid
from taskgrid.collections import UnknownFunctionError

TIMEOUT = 60
NPARTS = 200
PART_LEN = 10_000


def make_range(i: int, length: int) -> array.array:
    return array.array("q", range(i * length, (i + 1) * length))


def add_all(*xs: Any) -> int:
    return sum(sum(x) if isinstance(x, array.array) else x for x in xs)


@pytest.fixture(scope="module")
def client(binaries: tuple[str, str]) -> Iterator[taskgrid.Client]:
    with (
        taskgrid.LocalCluster(n_workers=2, threads_per_worker=2) as cl,
        taskgrid.Client(cl, set_as_default=False) as c,
    ):
        c.wait_for_workers(2, timeout=30)
        yield c


def wait_memory_at_most(client: taskgrid.Client, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := client.status().memory) > n:
        assert time.monotonic() < deadline, f"{got} results in memory, want at most {n}"
        time.sleep(0.05)


@pytest.mark.parametrize("fan_in,depth", [(8, 3), (2, 8)])
def test_map_then_tree_reduce_sums_exactly(
    client: taskgrid.Client, fan_in: int, depth: int
) -> None:
    parts = client.map_partitions(make_range, range(NPARTS), PART_LEN, key=f"ranges{fan_in}")
    assert [p.key for p in parts[:2]] == [f"ranges{fan_in}-0", f"ranges{fan_in}-1"]
    root = client.tree_reduce(add_all, parts, fan_in=fan_in, key=f"sum{fan_in}")
    # depth ceil(log_fan_in 200): 200 -> 25 -> 4 -> 1 at 8, 8 levels at 2.
    assert root.key == f"sum{fan_in}-r{depth}-0"
    del parts  # each partition goes once its combine used it
    n = NPARTS * PART_LEN
    assert root.result(timeout=TIMEOUT) == n * (n - 1) // 2
    wait_memory_at_most(client, 1)


def test_tree_over_one_input_is_one_call(client: taskgrid.Client) -> None:
    (part,) = client.map_partitions(make_range, [5], 3)
    assert part.key.startswith("make_range-") and part.key.endswith("-0")
    root = client.tree_reduce(add_all, [part], fan_in=8, key="one")
    assert root.key == "one-r1-0"
    assert root.result(timeout=TIMEOUT) == 15 + 16 + 17
    # Values and keyword arguments, as Dask's map_partitions passes them.
    got = client.map_partitions(lambda p, k=0: p * k, [1, 2], k=10)
    assert client.gather(got, timeout=TIMEOUT) == [10, 20]


def test_combines_run_before_queued_map_tasks(
    binaries: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "order"

    def gen(i: int) -> int:
        time.sleep(0.02)
        with open(log, "a") as f:
            f.write("m\n")
        return i

    def combine(*xs: int) -> int:
        with open(log, "a") as f:
            f.write("r\n")
        return sum(xs)

    with (
        taskgrid.LocalCluster(n_workers=1, threads_per_worker=1) as cl,
        taskgrid.Client(cl, set_as_default=False) as c,
    ):
        c.wait_for_workers(1, timeout=30)
        parts = c.map_partitions(gen, range(32))
        root = c.tree_reduce(combine, parts, fan_in=4)
        assert root.result(timeout=TIMEOUT) == sum(range(32))
    order = log.read_text().split()
    assert order.count("m") == 32 and order.count("r") == 8 + 2 + 1
    # With equal priorities (FIFO) every map would run first; a combine's
    # higher priority puts it ahead of the map tasks still queued.
    assert order.index("r") < 16, order


def test_named_c_functions(c_client: taskgrid.Client) -> None:
    sums = c_client.map_partitions("tg.sum", [[1, 2], [3, 4], [5, 6]], key="csum")
    assert c_client.gather(sums, timeout=TIMEOUT) == [3, 7, 11]
    root = c_client.tree_reduce("tg.sum", sums, fan_in=2, key="ctotal")
    assert root.key == "ctotal-r2-0"
    assert root.result(timeout=TIMEOUT) == 21
    # Literal arguments first, then the partition.
    plus = c_client.map_partitions("tg.add", sums, 100)
    assert c_client.gather(plus, timeout=TIMEOUT) == [103, 107, 111]


def test_bad_input_names_the_problem(c_client: taskgrid.Client) -> None:
    (part,) = c_client.map_partitions("tg.sum", [[1]])
    before = c_client.status()
    with pytest.raises(ValueError, match=r"fan_in must be 2 to 65535 \(got 1\)"):
        c_client.tree_reduce("tg.sum", [part], fan_in=1)
    with pytest.raises(ValueError, match="no futures to reduce"):
        c_client.tree_reduce("tg.sum", [], fan_in=2)
    with pytest.raises(ValueError, match="no partitions to map over"):
        c_client.map_partitions("tg.sum", [])
    with pytest.raises(ValueError, match=r"namespace\.name"):
        c_client.map_partitions("sum", [1])
    with pytest.raises(
        UnknownFunctionError, match=r"no connected worker provides function 'nope\.fn'.*tg\.sum"
    ):
        c_client.tree_reduce("nope.fn", [part], fan_in=2)
    # A Python callable needs Python workers: these are C workers.
    with pytest.raises(
        UnknownFunctionError, match=r"'py\.call' \(Python callables run on Python workers\)"
    ):
        c_client.map_partitions(add_all, [1, 2])
    after = c_client.status()
    assert (after.waiting, after.ready) == (before.waiting, before.ready) == (0, 0)
