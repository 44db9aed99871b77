# SPDX-License-Identifier: Apache-2.0
"""Gather of held results through the scheduler, over real processes (the C
scheduler, C and Python workers started by hand on loopback).

* Memory: three clients reading slowly gather ten 50 MB results each; the
  scheduler asks holders for a range at a time and never holds more than
  its relay budget (--relay-memory) plus a little, so its peak resident
  memory (VmRSS, sampled every 20 ms) stays far below one result, let
  alone the 500 MB each client gathers.
* Holder loss: the holder of a 100 MB result is SIGKILLed in the middle of
  a gather; the result is computed again on the other worker (it ran
  twice: an execution counter file says so) and the gather goes on with
  the same bytes and ends complete, with no error.
* A result that is not deterministic (random bytes) loses its holder in
  the middle of a gather: the gather ends that key with tg.DataLost saying
  the recomputed result differs from what was already sent and to gather
  it again; a second gather gets the new result whole.
* A result copied to a second worker (Client.replicate) loses the holder
  the gather is relaying from (the one the scheduler's log names for the
  upload): the gather goes on from the same byte with the other holder,
  the bytes are whole and right, and the result was not computed again.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import pytest

import taskgrid
from taskgrid import _codec
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc
from test_data_plane_e2e import RSSSampler, Workers, make
from test_large_results import big_plugin  # noqa: F401 - a fixture

MB = 1000 * 1000
MIB = 1 << 20
TIMEOUT = 60
RELAY_MEMORY = 16 * MIB


def produce(n: int, counter: str) -> bytes:
    """`n` patterned bytes; one line in `counter` per execution."""
    with open(counter, "a") as f:
        f.write("ran\n")
    return make(n)


def produce_random(n: int, counter: str) -> bytes:
    """`n` random bytes: not the same twice."""
    with open(counter, "a") as f:
        f.write("ran\n")
    return os.urandom(n)


def executions(counter: pathlib.Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


class Scheduler:
    """A scheduler process of our own (launcher none), so its options and
    its pid are ours."""

    def __init__(self, exe: str, log: pathlib.Path, *extra: str, level: str = "info") -> None:
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [exe, "--listen", "tcp://127.0.0.1:0", "--launcher", "none",
                 "--log-level", level, *extra],
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=err)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        prefix = "taskgrid-scheduler listening on "
        assert line.startswith(prefix), line
        self.address = line[len(prefix):]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


W = TypeVar("W", bound=Workers)


def run_cluster(scheduler: str, tmp_path: pathlib.Path, level: str,
                workers_of: Callable[[str], W]) -> Iterator[tuple[Scheduler, taskgrid.Client, W]]:
    """Our scheduler (logging at `level`), a client, and the Workers that
    `workers_of` gives for its address; all stopped afterwards."""
    sched = Scheduler(scheduler, tmp_path / "scheduler.log", "--relay-memory",
                      str(RELAY_MEMORY), level=level)
    workers = workers_of(sched.address)
    try:
        with taskgrid.Client(sched.address, set_as_default=False) as client:
            yield sched, client, workers
    finally:
        workers.close()
        sched.close()


@pytest.fixture()
def cluster(binaries: tuple[str, str], big_plugin: str, tmp_path: pathlib.Path  # noqa: F811
            ) -> Iterator[tuple[Scheduler, taskgrid.Client, Workers]]:
    yield from run_cluster(binaries[0], tmp_path, "info",
                           lambda address: Workers(address, tmp_path, binaries[1], big_plugin))


@pytest.fixture()
def debug_cluster(binaries: tuple[str, str], big_plugin: str, tmp_path: pathlib.Path  # noqa: F811
                  ) -> Iterator[tuple[Scheduler, taskgrid.Client, Workers]]:
    """As `cluster`, with the scheduler logging at debug level (it then
    names the worker each upload of a relay is asked of)."""
    yield from run_cluster(binaries[0], tmp_path, "debug",
                           lambda address: Workers(address, tmp_path, binaries[1], big_plugin))


def stub_of(address: str) -> tuple[grpc.Channel, pb_grpc.SchedulerStub]:
    ch = grpc.insecure_channel(address.removeprefix("tcp://"))
    return ch, pb_grpc.SchedulerStub(ch)


class Assembly:
    """The results and chunks of one chunked Gather, checked as a client
    checks them (in order, sizes, CRC-32 by the protobuf layer's peer)."""

    def __init__(self) -> None:
        self.heads: dict[str, pb.TaskResult] = {}
        self.errors: dict[str, pb.TaskResult] = {}
        self.parts: dict[str, list[bytes]] = {}
        self.got: dict[str, int] = {}
        self.digest: dict[str, hashlib._Hash] = {}

    def take(self, resp: pb.GatherResponse, keep: bool) -> int:
        """Take one message; the bytes of its chunks."""
        for r in resp.results:
            if r.state == pb.TASK_STATE_MEMORY:
                assert r.key not in self.heads, f"a second header for {r.key}"
                self.heads[r.key] = r
                self.got[r.key] = 0
                self.parts[r.key] = []
                self.digest[r.key] = hashlib.sha256()
            else:
                self.errors[r.key] = r
        n = 0
        for c in resp.chunks:
            assert c.offset == self.got[c.key], (c.key, c.offset, self.got[c.key])
            assert c.size == self.heads[c.key].size
            self.got[c.key] += len(c.data)
            self.digest[c.key].update(c.data)
            if keep:
                self.parts[c.key].append(c.data)
            n += len(c.data)
        return n

    def data(self, key: str) -> bytes:
        return b"".join(self.parts[key])


# ---------------------------------------------------------------------------
# The scheduler's memory with slow clients
# ---------------------------------------------------------------------------

SIZE = 50 * MB
NRESULTS = 10
NCLIENTS = 3
CLIENT_RATE = 60 * MB  # bytes per second each client reads


def test_slow_clients_leave_the_scheduler_within_its_relay_budget(cluster) -> None:
    sched, client, workers = cluster
    workers.start("c", "wc")
    workers.start("python", "wp")
    client.wait_for_workers(2, timeout=30)
    futures = [client.submit("big.bytes", str(SIZE), pure=False) for _ in range(NRESULTS // 2)]
    futures += [client.submit(make, SIZE, pure=False) for _ in range(NRESULTS // 2)]
    taskgrid.wait(futures, timeout=TIMEOUT)
    assert all(f.status == "finished" for f in futures), [f.status for f in futures]
    keys = [f.key for f in futures]
    c_digest = hashlib.sha256(b"x" * SIZE).hexdigest()
    py_digest = hashlib.sha256(_codec.dumps(make(SIZE))).hexdigest()
    want = {f.key: c_digest if i < NRESULTS // 2 else py_digest for i, f in enumerate(futures)}
    errors: list[BaseException] = []
    got: list[dict[str, str]] = []

    def slow_client() -> None:
        try:
            ch, stub = stub_of(sched.address)
            with ch:
                a = Assembly()
                t0, total = time.monotonic(), 0
                for resp in stub.Gather(pb.GatherRequest(keys=keys, chunked=True),
                                        timeout=TIMEOUT):
                    total += a.take(resp, keep=False)
                    ahead = total / CLIENT_RATE - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                assert not a.errors, a.errors
                assert all(a.got[k] == a.heads[k].size for k in keys)
                got.append({k: a.digest[k].hexdigest() for k in keys})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with RSSSampler(sched.proc.pid) as rss:
        time.sleep(0.1)  # a baseline sample before the gathers
        baseline = rss.peak
        threads = [threading.Thread(target=slow_client) for _ in range(NCLIENTS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        elapsed = time.monotonic() - t0
    assert not errors, errors
    assert len(got) == NCLIENTS and all(g == want for g in got)
    # What the relays may hold (the budget, one range asked beyond it),
    # a holder's message being decoded and its copy (4 MiB each) per
    # worker, and room for the allocator and gRPC's buffers.
    bound = baseline + RELAY_MEMORY + 4 * MIB + 2 * 2 * 4 * MIB + 24 * MIB
    assert rss.samples > 10
    print(f"scheduler peak RSS {rss.peak / MB:.1f} MB, baseline {baseline / MB:.1f} MB, "
          f"bound {bound / MB:.1f} MB, {elapsed:.1f} s")
    assert rss.peak < bound, (
        f"the scheduler's peak RSS was {rss.peak / MB:.1f} MB (baseline {baseline / MB:.1f} MB, "
        f"bound {bound / MB:.1f} MB, {rss.samples} samples, {elapsed:.1f} s)")
    assert bound < SIZE * NRESULTS / 5  # far below what each client gathers


# ---------------------------------------------------------------------------
# Holder loss in the middle of a gather
# ---------------------------------------------------------------------------


def read_slowly(stub: pb_grpc.SchedulerStub, a: Assembly, key: str, n: int
                ) -> Iterator[pb.GatherResponse]:
    """A chunked Gather of `key`, read into `a` slowly (10 ms a message)
    until at least `n` bytes came; returns the stream, to read on."""
    stream: Iterator[pb.GatherResponse] = stub.Gather(
        pb.GatherRequest(keys=[key], chunked=True), timeout=TIMEOUT)
    for resp in stream:
        a.take(resp, keep=True)
        if a.got.get(key, 0) >= n:
            break
        time.sleep(0.01)
    return stream


def _gather_losing_the_holder(cluster, fn, size: int, counter: pathlib.Path
                              ) -> tuple[taskgrid.Future, Assembly, bytes]:
    """`fn(size, counter)` made on worker "a" only; then worker "b" joins,
    a chunked Gather reads part of the result slowly, "a" is SIGKILLed,
    and the gather is read to its end. Returns the future, the gather's
    assembly and the bytes it had before the kill."""
    sched, client, workers = cluster
    workers.start("python", "a")
    client.wait_for_workers(1, timeout=30)
    f = client.submit(fn, size, str(counter), pure=False)
    taskgrid.wait([f], timeout=TIMEOUT)
    assert f.status == "finished" and executions(counter) == 1
    workers.start("python", "b")
    client.wait_for_workers(2, timeout=30)
    a = Assembly()
    before = b""
    ch, stub = stub_of(sched.address)
    with ch:
        stream = read_slowly(stub, a, f.key, 4 * MIB)
        assert 0 < a.got[f.key] < a.heads[f.key].size
        before = a.data(f.key)
        proc, _ = workers.procs.pop("a")
        proc.kill()
        proc.wait(30)
        for resp in stream:
            a.take(resp, keep=True)
    return f, a, before


def test_a_holder_killed_mid_gather_is_recomputed_and_the_gather_goes_on(
        cluster, tmp_path: pathlib.Path) -> None:
    counter = tmp_path / "runs"
    f, a, _ = _gather_losing_the_holder(cluster, produce, 100 * MB, counter)
    assert not a.errors, a.errors[f.key].error
    head = a.heads[f.key]
    assert a.got[f.key] == head.size
    assert _codec.decode(a.data(f.key), head.codec) == make(100 * MB)
    assert executions(counter) == 2
    # The holder was lost while relaying, and the relay went on.
    log = cluster[0].log.read_text(errors="replace")
    assert re.search(r"worker a, which held result '[^']+', was lost while sending it "
                     r"\(\d+ of 10000\d{4} bytes relayed\)", log), log
    assert "the recomputed result matches the" in log, log


def test_a_random_result_recomputed_mid_gather_ends_with_data_lost(
        cluster, tmp_path: pathlib.Path) -> None:
    counter = tmp_path / "runs"
    f, a, before = _gather_losing_the_holder(cluster, produce_random, 100 * MB, counter)
    err = a.errors.get(f.key)
    assert err is not None, f"{a.got[f.key]} of {a.heads[f.key].size} bytes, no error"
    assert executions(counter) == 2, err
    assert err.state == pb.TASK_STATE_ERRED and err.error.type == "tg.DataLost", err
    assert "differs from what was already sent" in err.error.message, err.error.message
    assert "gather it again" in err.error.message, err.error.message
    # A second gather gets the recomputed result, whole.
    again = f.result(timeout=TIMEOUT)
    assert isinstance(again, bytes) and len(again) == 100 * MB
    assert _codec.dumps(again)[:len(before)] != before


# ---------------------------------------------------------------------------
# A replicated result loses the holder a gather is relaying from
# ---------------------------------------------------------------------------

UPLOAD = re.compile(r'gather of key="([^"]+)": upload (\d+) from byte (\d+) asked of worker="([^"]+)"$',
                    re.MULTILINE)


def uploads(log: pathlib.Path, key: str) -> list[tuple[int, int, str]]:
    """(upload id, first byte, worker) of each upload the scheduler asked
    for `key`, in order (its debug lines)."""
    return [(int(u), int(b), w) for k, u, b, w in UPLOAD.findall(log.read_text(errors="replace"))
            if k == key]


def holders_of(address: str, key: str) -> list[str]:
    """The data addresses of the holders of `key`, as a deferred Gather
    names them."""
    ch, stub = stub_of(address)
    with ch:
        for resp in stub.Gather(pb.GatherRequest(keys=[key], defer_held=True), timeout=TIMEOUT):
            for r in resp.results:
                assert r.key == key and r.state == pb.TASK_STATE_MEMORY and r.held, r
                return list(r.holders)
    raise AssertionError(f"no answer for {key}")


def gather_losing_one_of_two_holders(sched: Scheduler, client: taskgrid.Client,
                                     workers: Workers, copy_kind: str,
                                     counter: pathlib.Path) -> None:
    """A 100 MB result made on Python worker "a" and copied to worker "b"
    (of `copy_kind`); a slow chunked Gather loses the holder it relays
    from after a few MiB (the one the scheduler's log names: that one is
    SIGKILLed) and ends with the right bytes from the other holder, from
    the byte it had reached, with the result computed once (`counter`)."""
    workers.start("python", "a")
    workers.start(copy_kind, "b")
    client.wait_for_workers(2, timeout=30)
    f = client.submit(produce, 100 * MB, str(counter), pure=False, workers=["a"])
    taskgrid.wait([f], timeout=TIMEOUT)
    assert f.status == "finished" and executions(counter) == 1
    assert client.replicate([f], n=2) == {f.key: 2}
    holders = holders_of(sched.address, f.key)
    assert len(set(holders)) == 2, holders
    a = Assembly()
    ch, stub = stub_of(sched.address)
    with ch:
        stream = read_slowly(stub, a, f.key, 4 * MIB)
        size = a.heads[f.key].size
        assert 0 < a.got[f.key] < size
        # The upload under way, and the worker it is asked of: that one dies.
        first = uploads(sched.log, f.key)
        assert len(first) == 1 and first[0][1] == 0, first
        holder = first[0][2]
        assert holder in ("a", "b"), first
        other = "b" if holder == "a" else "a"
        proc, _ = workers.procs.pop(holder)
        proc.kill()
        proc.wait(30)
        for resp in stream:
            a.take(resp, keep=True)
    assert not a.errors, a.errors[f.key].error
    assert a.got[f.key] == size
    assert a.digest[f.key].hexdigest() == hashlib.sha256(_codec.dumps(make(100 * MB))).hexdigest()
    assert executions(counter) == 1  # the other holder had it: not computed again
    log = sched.log.read_text(errors="replace")
    lost = re.findall(rf"worker {holder}, which held result '{re.escape(f.key)}', was lost while "
                      rf"sending it \((\d+) of {size} bytes relayed\)", log)
    assert len(lost) == 1, log
    relayed = int(lost[0])
    assert 0 < relayed < size, lost
    # The relay went on with the other holder, from the byte it had reached.
    again = uploads(sched.log, f.key)
    assert len(again) == 2 and again[0] == first[0], again
    assert again[1][1:] == (relayed, other), again
    assert "the recomputed result" not in log, log


@pytest.mark.parametrize("copy_kind", ["python", "c"])
def test_a_gather_goes_on_with_another_holder_without_recomputing(
        debug_cluster: tuple[Scheduler, taskgrid.Client, Workers], tmp_path: pathlib.Path,
        copy_kind: str) -> None:
    gather_losing_one_of_two_holders(*debug_cluster, copy_kind, tmp_path / "runs")
