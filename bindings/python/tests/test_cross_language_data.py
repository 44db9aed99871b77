# SPDX-License-Identifier: Apache-2.0
"""Held results across worker languages, over real processes: the C
scheduler and one worker of each kind (the C taskgrid-worker, the Python
worker, the Go taskgrid-go-worker built here with `go build`), each
logging to its own file, on loopback.

Each worker makes one held result with the built-in every kind has,
tg.echo: a JSON number amid several MiB of whitespace that varies with
the position (so any built-in taking JSON numbers reads it, and every byte
is checked where bytes are compared). Then:

* one chunked Gather gets the three through the scheduler's relay,
  each uploaded by the worker that made it (the scheduler's debug line
  names it), byte for byte;
* a task pinned to each other kind consumes each (tg.inc on C and
  Python, go.double on Go): it fetches the input from a worker of another
  language and reads the number in it;
* Client.replicate copies each to the two other kinds; every holder
  then serves the exact bytes to DataService.Fetch (its own data address).

At the end the workers' exit counters agree: each uploaded its own result
once, fetched each other result twice (a dependent's input and a copy),
and what they served is what was fetched from them.

And test_gather_relay's gather that loses the holder it relays from,
with the other copy on a Go worker.
"""

from __future__ import annotations

import itertools
import pathlib
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator

import pytest

import taskgrid
from conftest import REPO
from taskgrid._rpc import peer_channel
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc
from test_data_plane_e2e import Counters, Workers, _free_port
from test_gather_relay import (
    Assembly,
    Scheduler,
    gather_losing_one_of_two_holders,
    holders_of,
    run_cluster,
    stub_of,
    uploads,
)
from test_large_results import big_plugin  # noqa: F401 - a fixture

MIB = 1 << 20
TIMEOUT = 60
KINDS = ("c", "python", "go")
# Distinct sizes (over the 64 KiB inline limit, over one 4 MiB relay
# range, not a whole number of 1 MiB chunks), so the counters say whose.
SIZES = {"c": 5 * MIB + 1, "python": 6 * MIB + 2, "go": 7 * MIB + 3}
VALUES = {"c": 101, "python": 202, "go": 303}
# A built-in of each kind that takes one JSON number, and what it gives.
CONSUMER = {"c": "tg.inc", "python": "tg.inc", "go": "go.double"}
EXPECT = {"tg.inc": lambda x: x + 1, "go.double": lambda x: 2 * x}

_WHITESPACE = bytes(b" \t\n\r"[i & 3] for i in range(256))


def payload(kind: str) -> bytes:
    """The JSON number VALUES[kind] amid SIZES[kind] bytes in all of JSON
    whitespace, in an order drawn from a generator seeded by `kind`."""
    num = str(VALUES[kind]).encode()
    pad = random.Random(kind).randbytes(SIZES[kind] - len(num)).translate(_WHITESPACE)
    half = len(pad) // 2
    return pad[:half] + num + pad[half:]


@pytest.fixture(scope="module")
def go_worker(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example Go worker, built from this checkout."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("no go command to build bindings/go/cmd/taskgrid-go-worker")
    out = tmp_path_factory.mktemp("go") / "taskgrid-go-worker"
    built = subprocess.run(
        [go, "build", "-o", str(out), "./cmd/taskgrid-go-worker"],
        cwd=REPO / "bindings" / "go",
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, f"go build ./cmd/taskgrid-go-worker:\n{built.stderr}"
    return str(out)


class MixedWorkers(Workers):
    """Workers of all three kinds, each with a data service on a port
    chosen here (so a holder's data address says which worker it is)."""

    def __init__(
        self, go_worker: str, address: str, tmp: pathlib.Path, c_worker: str, plugin: str
    ) -> None:
        super().__init__(address, tmp, c_worker, plugin)
        self.go_worker = go_worker
        self.data: dict[str, str] = {}

    def start(self, kind: str, name: str, *extra: str) -> None:
        self.data[name] = f"127.0.0.1:{_free_port()}"
        listen = ("--data-listen", self.data[name])
        if kind != "go":
            super().start(kind, name, *listen, *extra)
            return
        log = self.tmp / f"{name}.log"
        cmd = [
            self.go_worker,
            self.address,
            "--name",
            name,
            "--nthreads",
            "2",
            "--log-level",
            "info",
            *listen,
            *extra,
        ]
        with open(log, "wb") as err:
            self.procs[name] = (subprocess.Popen(cmd, stderr=err), log)


Hand = tuple[Scheduler, taskgrid.Client, MixedWorkers]


@pytest.fixture()
def by_hand(
    binaries: tuple[str, str],
    big_plugin: str,  # noqa: F811
    go_worker: str,
    tmp_path: pathlib.Path,
) -> Iterator[Hand]:
    """A scheduler logging at debug level, a client, and no workers yet."""
    yield from run_cluster(
        binaries[0],
        tmp_path,
        "debug",
        lambda address: MixedWorkers(go_worker, address, tmp_path, binaries[1], big_plugin),
    )


@pytest.fixture()
def mixed(by_hand: Hand) -> Hand:
    """One worker of each kind, named after its kind."""
    sched, client, workers = by_hand
    for kind in KINDS:
        workers.start(kind, kind)
    client.wait_for_workers(len(KINDS), timeout=30)
    return sched, client, workers


def fetch_from(address: str, key: str) -> bytes:
    """`key` fetched from the data service at `address`, every chunk
    checked (in order, its size and CRC-32)."""
    parts: list[bytes] = []
    got, size = 0, -1
    with peer_channel(address, None) as ch:
        stub = pb_grpc.DataServiceStub(ch)
        for c in stub.Fetch(pb.FetchRequest(key=key), timeout=TIMEOUT):
            assert c.offset == got and 0 < len(c.data) <= MIB, (address, key, c.offset, got)
            assert zlib.crc32(c.data) == c.crc32, (address, key, c.offset)
            assert size in (-1, c.size), (address, key, size, c.size)
            parts.append(c.data)
            got, size = got + len(c.data), c.size
    assert got == size, (address, key, got, size)
    return b"".join(parts)


def test_held_results_move_between_c_python_and_go_workers(mixed: Hand) -> None:
    sched, client, workers = mixed
    t0 = time.monotonic()
    data = {kind: payload(kind) for kind in KINDS}
    keys = {kind: f"xlang-{kind}" for kind in KINDS}
    ch, stub = stub_of(sched.address)
    with ch:
        stub.Submit(
            pb.SubmitRequest(
                client_id="xlang",
                tasks=[
                    pb.TaskSpec(
                        key=keys[k], func="tg.echo", input=data[k], codec="json", workers=[k]
                    )
                    for k in KINDS
                ],
            ),
            timeout=30,
        )
        made = {k: client.future(keys[k]) for k in KINDS}
        taskgrid.wait(list(made.values()), timeout=TIMEOUT)
        assert all(f.status == "finished" for f in made.values()), made
        for k in KINDS:  # held by its maker only
            assert holders_of(sched.address, keys[k]) == [workers.data[k]], k

        # Gathered through the relay, each from the worker that made it.
        a = Assembly()
        for resp in stub.Gather(
            pb.GatherRequest(keys=list(keys.values()), chunked=True), timeout=TIMEOUT
        ):
            a.take(resp, keep=True)
        assert not a.errors, a.errors
        for k in KINDS:
            assert (a.heads[keys[k]].codec, a.heads[keys[k]].size) == ("json", SIZES[k]), k
            assert a.data(keys[k]) == data[k], f"the bytes made on the {k} worker"
            assert [u[1:] for u in uploads(sched.log, keys[k])] == [(0, k)], k

        # Consumed by a task on each other kind: fetched across languages.
        pairs = list(itertools.permutations(KINDS, 2))
        used = [client.submit(CONSUMER[q], made[p], workers=[q], pure=False) for p, q in pairs]
        for (p, q), f in zip(pairs, used):
            want = EXPECT[CONSUMER[q]](VALUES[p])
            assert f.result(timeout=TIMEOUT) == want, f"made on {p}, consumed on {q}"

        # Copied to the two other kinds; every copy serves the same bytes.
        assert client.replicate(list(made.values()), n=len(KINDS)) == {
            keys[k]: len(KINDS) for k in KINDS
        }
        for k in KINDS:
            holders = holders_of(sched.address, keys[k])
            assert sorted(holders) == sorted(workers.data.values()), (k, holders)
            for h in holders:
                assert fetch_from(h, keys[k]) == data[k], f"made on {k}, copy at {h}"
        stub.Release(pb.ReleaseRequest(keys=list(keys.values())), timeout=30)
    elapsed = time.monotonic() - t0

    counters: dict[str, Counters] = {k: workers.stop(k) for k in KINDS}
    print(
        f"{elapsed:.1f} s; " + "; ".join(f"{k}: {c}" for k, c in counters.items()), file=sys.stderr
    )
    for k, c in counters.items():
        others = sum(SIZES[o] for o in KINDS if o != k)
        assert (c.uploaded, c.uploaded_bytes) == (1, SIZES[k]), (k, c)
        assert (c.fetched, c.fetched_bytes) == (4, 2 * others), (k, c)
        assert (c.held, c.held_bytes) == (len(KINDS), sum(SIZES.values())), (k, c)
    fetched_by_workers = sum(c.fetched_bytes for c in counters.values())
    fetched_here = len(KINDS) * sum(SIZES.values())
    assert sum(c.served_bytes for c in counters.values()) == fetched_by_workers + fetched_here, (
        counters
    )


def test_a_gather_goes_on_with_a_copy_on_a_go_worker(by_hand: Hand, tmp_path: pathlib.Path) -> None:
    """test_gather_relay's holder loss, the copy on a Go worker: the relay
    goes on from the Go worker at the byte it had reached (or began
    there and goes on from the Python worker)."""
    gather_losing_one_of_two_holders(*by_hand, "go", tmp_path / "runs")
