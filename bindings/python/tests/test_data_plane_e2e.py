# SPDX-License-Identifier: Apache-2.0
"""The data plane end to end, measured: real C scheduler, C and Python
workers as processes on loopback.

* A 4-stage pipeline moving 2 GiB between workers keeps the scheduler's
  resident memory (VmRSS, sampled every 20 ms) under 100 MB: the bytes go
  peer to peer.
* A dependent on the worker holding its input moves no bytes (the
  worker's exit counters: fetched 0, local >= 1); one on another worker
  fetches it once, with its exact size.
* Over mutual TLS, a client certificate cannot fetch from a worker's data
  service (PERMISSION_DENIED); a worker certificate can.

The workers of the last two are started by hand, so their logs (and the
counter line "data: held N (B bytes), served ..., fetched ..., local ...,
uploaded ..." they write at exit) can be read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator

import grpc
import pytest

import taskgrid
from taskgrid import _codec
from taskgrid._rpc import peer_channel
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc

from test_large_results import big_plugin  # noqa: F401 - a fixture

HERE = pathlib.Path(__file__).resolve().parent
MIB = 1 << 20
TIMEOUT = 120

COUNTERS = re.compile(
    r"data: held (\d+) \((\d+) bytes\), served (\d+) \((\d+) bytes\), "
    r"fetched (\d+) \((\d+) bytes\), local (\d+) \((\d+) bytes\), "
    r"uploaded (\d+) \((\d+) bytes\)"
)


def make(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def length(x: bytes) -> int:
    return len(x)


# ---------------------------------------------------------------------------
# Workers started by hand
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Counters:
    held: int
    held_bytes: int
    served: int
    served_bytes: int
    fetched: int
    fetched_bytes: int
    local: int
    local_bytes: int
    uploaded: int
    uploaded_bytes: int


class Workers:
    """C and Python workers of one scheduler, each logging to its own file;
    stop() ends one (SIGTERM) and returns its exit counters."""

    def __init__(self, address: str, tmp: pathlib.Path, c_worker: str, plugin: str,
                 tls: list[str] | None = None) -> None:
        self.address, self.tmp, self.c_worker, self.plugin = address, tmp, c_worker, plugin
        self.tls = tls or []
        self.procs: dict[str, tuple[subprocess.Popen[bytes], pathlib.Path]] = {}

    def start(self, kind: str, name: str, *extra: str) -> None:
        if kind == "c":
            cmd = [self.c_worker, self.address, "--preload", self.plugin]
        else:
            cmd = [sys.executable, "-m", "taskgrid.worker", self.address]
        cmd += ["--name", name, "--nthreads", "2", "--log-level", "info", *self.tls, *extra]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as err:
            self.procs[name] = (subprocess.Popen(cmd, env=env, stderr=err), log)

    def stop(self, name: str) -> Counters:
        proc, log = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        text = log.read_text(errors="replace")
        found = COUNTERS.findall(text)
        assert found, f"no counter line in the log of {name}:\n{text}"
        return Counters(*(int(v) for v in found[-1]))

    def close(self) -> None:
        for proc, _ in self.procs.values():
            proc.kill()
            proc.wait(30)
        self.procs.clear()


@pytest.fixture()
def hand(binaries: tuple[str, str], big_plugin: str, tmp_path: pathlib.Path  # noqa: F811
         ) -> Iterator[tuple[taskgrid.Client, Workers]]:
    """A scheduler with no workers of its own, a client, and Workers."""
    with taskgrid.LocalCluster(n_workers=0) as cl, taskgrid.Client(
        cl, set_as_default=False
    ) as client:
        workers = Workers(cl.address, tmp_path, binaries[1], big_plugin)
        try:
            yield client, workers
        finally:
            workers.close()


# ---------------------------------------------------------------------------
# A dependent on the holder moves no bytes
# ---------------------------------------------------------------------------

N = 3 * MIB  # well over the 64 KiB inline limit


def _produce(client: taskgrid.Client, kind: str, where: str) -> tuple[taskgrid.Future, int]:
    """A held result of N bytes on worker `where`, and its stored size. On
    a C worker it is scattered (the C worker's tg.echo holds it)."""
    if kind == "c":
        return client.scatter(make(N), workers=[where], hash=False), N
    return client.submit(make, N, pure=False, workers=[where]), len(_codec.dumps(make(N)))


def _consume(client: taskgrid.Client, kind: str, src: taskgrid.Future, where: str
             ) -> taskgrid.Future:
    if kind == "c":
        return client.submit("big.len", src, pure=False, workers=[where])
    return client.submit(length, src, pure=False, workers=[where])


@pytest.mark.parametrize("kind", ["python", "c"])
def test_a_dependent_on_the_same_worker_moves_no_bytes(hand, kind: str) -> None:
    client, workers = hand
    workers.start(kind, "a")
    workers.start(kind, "b")
    client.wait_for_workers(2, timeout=30)
    src, size = _produce(client, kind, "a")
    first = _consume(client, kind, src, "a")
    second = _consume(client, kind, src, "a")
    assert first.result(timeout=TIMEOUT) == second.result(timeout=TIMEOUT) == N
    a, b = workers.stop("a"), workers.stop("b")
    assert (a.held, a.held_bytes) == (1, size), a
    assert (a.fetched, a.fetched_bytes) == (0, 0), a
    assert a.local >= 1 and a.local_bytes == a.local * size, a
    assert (a.served, b.fetched, b.held) == (0, 0, 0), (a, b)


@pytest.mark.parametrize("kind", ["python", "c"])
def test_a_dependent_on_another_worker_fetches_once(hand, kind: str) -> None:
    client, workers = hand
    workers.start(kind, "a")
    workers.start(kind, "b")
    client.wait_for_workers(2, timeout=30)
    src, size = _produce(client, kind, "a")
    assert _consume(client, kind, src, "b").result(timeout=TIMEOUT) == N
    a, b = workers.stop("a"), workers.stop("b")
    assert (b.fetched, b.fetched_bytes) == (1, size), b
    assert (b.local, b.held) == (0, 0), b
    assert (a.served, a.served_bytes) == (1, size), a
    assert (a.held, a.held_bytes, a.fetched) == (1, size, 0), a


# ---------------------------------------------------------------------------
# The scheduler's memory in a pipeline of 2 GiB
# ---------------------------------------------------------------------------

PARTS = 8
PART = 64 * MIB
STAGES = 4
_NEXT = bytes((b + 1) % 256 for b in range(256))


def first_stage(i: int, n: int) -> bytes:
    return bytes([i]) * n


def next_stage(x: bytes) -> bytes:
    return x.translate(_NEXT)


def sha256(x: bytes) -> str:
    return hashlib.sha256(x).hexdigest()


class RSSSampler:
    """The peak VmRSS of a process, sampled every 20 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.path = f"/proc/{pid}/status"
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with open(self.path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
                            self.samples += 1
                            break
            except OSError:
                return
            self._stop.wait(0.02)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _py_task(key: str, fn: Callable[..., object], args: tuple[object, ...], deps: list[str],
             worker: str) -> pb.TaskSpec:
    """A py.call TaskSpec as taskgrid.Client.submit makes it (dependency
    results in place of _codec.Dep placeholders), pinned to `worker`."""
    data = _codec.dumps((_codec.dumps_function(fn), args, {}))
    return pb.TaskSpec(key=key, func=_codec.PY_CALL, input=data, codec=_codec.PICKLE,
                       deps=deps, workers=[worker] if worker else [])


def test_a_2_gib_pipeline_keeps_the_scheduler_under_100_mb(binaries: tuple[str, str]) -> None:
    """8 partitions x 64 MiB x 4 stages, each input fetched from the other
    worker; only the digests of the last stage come back.

    The graph goes to the scheduler as the Go and C clients send it (one
    Submit, then a Gather of the keys wanted only): taskgrid.Client
    gathers every key it submits as it finishes, so each 64 MiB
    intermediate would be relayed through the scheduler to it."""
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1) as cl, taskgrid.Client(
        cl, set_as_default=False
    ) as client:
        assert cl._proc is not None
        names = sorted(w.name for w in client.status().workers)
        specs, middle, digests = [], [], []
        for i in range(PARTS):
            # Stage s of partition i runs on worker (i + s) % 2.
            key = f"pipe-{i}-0"
            specs.append(_py_task(key, first_stage, (i, PART), [], names[i % 2]))
            for s in range(1, STAGES):
                middle.append(key)
                nxt = f"pipe-{i}-{s}"
                specs.append(_py_task(nxt, next_stage, (_codec.Dep(0),), [key],
                                      names[(i + s) % 2]))
                key = nxt
            middle.append(key)
            digests.append(f"pipe-{i}-sha256")
            specs.append(_py_task(digests[-1], sha256, (_codec.Dep(0),), [key], ""))
        got: dict[str, str] = {}
        t0 = time.monotonic()
        with RSSSampler(cl._proc.pid) as rss, grpc.insecure_channel(
            cl.address.removeprefix("tcp://")
        ) as ch:
            stub = pb_grpc.SchedulerStub(ch)
            stub.Submit(pb.SubmitRequest(tasks=specs, client_id="pipeline"), timeout=30)
            # Held until no dependent needs them, as dropped futures are.
            stub.Release(pb.ReleaseRequest(keys=middle), timeout=30)
            for resp in stub.Gather(pb.GatherRequest(keys=digests, chunked=True),
                                    timeout=TIMEOUT):
                for r in resp.results:
                    assert r.state == pb.TASK_STATE_MEMORY, r
                    got[r.key] = _codec.decode(r.data, r.codec)
            stub.Release(pb.ReleaseRequest(keys=digests), timeout=30)
        elapsed = time.monotonic() - t0
    want = [sha256(bytes([(i + STAGES - 1) % 256]) * PART) for i in range(PARTS)]
    assert [got.get(k) for k in digests] == want
    assert rss.samples > 10
    assert rss.peak < 100 * 1000 * 1000, (
        f"the scheduler's peak RSS was {rss.peak / 1e6:.1f} MB ({rss.samples} samples, "
        f"{elapsed:.1f} s)")


# ---------------------------------------------------------------------------
# Over TLS, only workers may fetch from a data service
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certs(binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    try:
        exe = taskgrid.find_binary("taskgrid-certs")
    except taskgrid.BinaryNotFound as e:
        pytest.fail(f"{e} (bazel build //scheduler:taskgrid-certs)")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([exe, str(d), "--hosts", "localhost,127.0.0.1"], check=True,
                   stdout=subprocess.DEVNULL)
    return d


def worker_tls(certs: pathlib.Path) -> list[str]:
    """A worker's --tls-* options with the worker certificate of `certs`."""
    return ["--tls-ca", str(certs / "ca.pem"), "--tls-cert", str(certs / "worker.pem"),
            "--tls-key", str(certs / "worker-key.pem")]


def _security(certs: pathlib.Path, role: str) -> taskgrid.Security:
    return taskgrid.Security(ca=str(certs / "ca.pem"), cert=str(certs / f"{role}.pem"),
                             key=str(certs / f"{role}-key.pem"))


@pytest.fixture()
def tls_scheduler(binaries: tuple[str, str], certs: pathlib.Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [binaries[0], "--listen", "tls://127.0.0.1:0", "--launcher", "none",
         "--log-level", "warn", "--tls-ca", str(certs / "ca.pem"),
         "--tls-cert", str(certs / "scheduler.pem"),
         "--tls-key", str(certs / "scheduler-key.pem")],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        prefix = "taskgrid-scheduler listening on "
        assert line.startswith(prefix), line
        yield line[len(prefix):]
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("kind", ["c", "python"])
def test_a_client_certificate_cannot_fetch_from_a_worker(
    kind: str, binaries: tuple[str, str], big_plugin: str,  # noqa: F811
    certs: pathlib.Path, tls_scheduler: str, tmp_path: pathlib.Path,
) -> None:
    workers = Workers(tls_scheduler, tmp_path, binaries[1], big_plugin, worker_tls(certs))
    data = f"127.0.0.1:{_free_port()}"
    try:
        workers.start(kind, "holder", "--data-listen", data)
        with taskgrid.Client(tls_scheduler, security=_security(certs, "client"),
                             set_as_default=False) as client:
            client.wait_for_workers(1, timeout=30)
            held = client.scatter(make(N), hash=False)
            assert client.submit(length if kind == "python" else "big.len", held,
                                 pure=False).result(timeout=TIMEOUT) == N

            def fetch(role: str) -> bytes:
                with peer_channel(data, _security(certs, role)) as ch:
                    stub = pb_grpc.DataServiceStub(ch)
                    chunks = stub.Fetch(pb.FetchRequest(key=held.key), timeout=30)
                    return b"".join(c.data for c in chunks)

            with pytest.raises(grpc.RpcError) as info:
                fetch("client")
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
            assert "worker role" in (info.value.details() or ""), info.value.details()
            # The same service answers a worker certificate.
            assert fetch("worker") == make(N)
            assert held.result(timeout=TIMEOUT) == make(N)
    finally:
        workers.close()
