# SPDX-License-Identifier: Apache-2.0
"""Client.replicate end to end: LocalCluster with the real C scheduler and
Python workers as processes on loopback (and a C worker beside them).

* A 20 MB result copied to a second worker survives its first holder's
  SIGKILL: a dependent still runs, and the producer ran once (each run is
  noted in a file with its worker's pid).
* Releasing a replicated result frees it on both holders (Status: their
  held bytes in memory fall back).
* An unknown key raises UnknownKeyError naming it; an erred task and a
  small (inline) result are answered for what they are.
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from collections.abc import Callable, Iterator

import pytest

import taskgrid

MB = 1_000_000
TIMEOUT = 120


def counted(log: str, name: str, n: int) -> bytes:
    """`n` bytes, noting each run (name and this worker's pid) in `log`."""
    with open(log, "a", encoding="ascii") as f:
        f.write(f"{name} {os.getpid()}\n")
    return bytes(range(256)) * (n // 256) + bytes(n % 256)


def length(x: bytes) -> int:
    return len(x)


def boom() -> None:
    raise ValueError("no result here")


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


@pytest.fixture()
def cluster(binaries: tuple[str, str]) -> Iterator[tuple[taskgrid.Client, dict[str, int]]]:
    """3 Python workers x 1 thread; the client and each worker's pid."""
    with (
        taskgrid.LocalCluster(n_workers=3, threads_per_worker=1) as cl,
        taskgrid.Client(cl, set_as_default=False) as c,
    ):
        c.wait_for_workers(3, timeout=30)
        names = sorted(w.name for w in c.status().workers)
        pids = {
            n: c.submit(os.getpid, pure=False, workers=[n]).result(timeout=TIMEOUT) for n in names
        }
        yield c, pids


def held_in_memory(c: taskgrid.Client) -> dict[str, int]:
    return {w.name: w.memory for w in c.status().workers}


def test_a_replica_survives_its_first_holder(cluster, tmp_path: pathlib.Path) -> None:
    c, pids = cluster
    w0, w1, w2 = sorted(pids)
    log = str(tmp_path / "runs")
    a = c.submit(counted, log, "a", 20 * MB, pure=False, workers=[w0])
    assert c.replicate(a, n=2, workers=[w1]) == {a.key: 2}
    # Asked again: it has two holders, nothing moves.
    assert c.replicate([a], n=2) == {a.key: 2}
    os.kill(pids[w0], signal.SIGKILL)
    wait_until("the killed worker leaves", lambda: w0 not in {w.name for w in c.status().workers})
    n = c.submit(length, a, pure=False, workers=[w2])  # fetched from w1
    assert n.result(timeout=TIMEOUT) == 20 * MB
    runs = [line.split()[0] for line in pathlib.Path(log).read_text().splitlines()]
    assert runs.count("a") == 1, runs  # another holder: not recomputed


def test_releasing_frees_every_holder(cluster, tmp_path: pathlib.Path) -> None:
    c, pids = cluster
    w0, w1, _ = sorted(pids)
    a = c.submit(counted, str(tmp_path / "runs"), "a", 20 * MB, pure=False, workers=[w0])
    assert c.replicate(a, n=2, workers=[w1]) == {a.key: 2}
    wait_until(
        "both holders report it", lambda: all(held_in_memory(c)[w] >= 20 * MB for w in (w0, w1))
    )
    a.release()
    wait_until("both holders free it", lambda: all(held_in_memory(c)[w] < MB for w in (w0, w1)))


def test_every_worker_when_n_is_none(cluster, tmp_path: pathlib.Path) -> None:
    c, pids = cluster
    a = c.submit(counted, str(tmp_path / "runs"), "a", 2 * MB, pure=False)
    assert c.replicate(a) == {a.key: len(pids)}


def test_unknown_erred_and_inline_keys(cluster) -> None:
    c, _ = cluster
    with pytest.raises(taskgrid.UnknownKeyError, match="no-such-key"):
        c.replicate(c.future("no-such-key"))
    bad = c.submit(boom, pure=False)
    with pytest.raises(taskgrid.ReplicateError, match="ValueError") as e:
        c.replicate(bad, n=2)
    assert e.value.errors[bad.key][0] == "tg.Erred"
    small = c.submit(length, b"tiny", pure=False)
    assert c.replicate(small, n=2) == {small.key: 0}  # inline: in the scheduler
    with pytest.raises(ValueError, match="n must be"):
        c.replicate(small, n=0)
