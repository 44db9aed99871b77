# SPDX-License-Identifier: Apache-2.0
"""Scheduler.Watch and SetLogLevel through a stock gRPC client (grpcio,
stubs generated from proto/) against the C scheduler and C workers: task
events of a diamond graph in a valid order, with workers and run times;
counts per named key and per function; workers joining and leaving; a
watcher that stops reading while 200,000 tasks run costs the scheduler a
bounded amount of memory and still gets exact counts; hostile requests
refused naming the field; key prefixes only for the admin role over mutual
TLS; the debug log's escaped key=value lines, switched on and off at run
time."""
from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from conftest import BIN, run_scheduler, wait_for_workers

WORKER = BIN / "worker" / "taskgrid-worker"


def _key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


class Watcher:
    """Reads a Watch stream on a thread; updates collect in `updates`."""

    def __init__(self, stub: Any, req: Any, call: Any = None) -> None:
        """Open Watch(req), or read `call`, an open one, from now on."""
        self.call = call if call is not None else stub.Watch(req, timeout=120)
        self.updates: list[Any] = []
        self.error: grpc.RpcError | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for u in self.call:
                with self.cond:
                    self.updates.append(u)
                    self.cond.notify_all()
        except grpc.RpcError as e:
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def wait(self, pred: Callable[[list[Any]], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.updates):
                left = deadline - time.monotonic()
                if left <= 0 or (self.error is not None and
                                 self.error.code() != grpc.StatusCode.CANCELLED):
                    raise AssertionError(
                        f"watch condition not met in {timeout} s "
                        f"({len(self.updates)} updates, error {self.error})")
                self.cond.wait(left)

    def events(self) -> list[Any]:
        with self.cond:
            return [e for u in self.updates for e in u.tasks]

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(timeout=10)


def _start_worker(addr: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([str(WORKER), f"tcp://{addr}", "--nthreads", "1",
                             "--name", name, "--log-level", "warn"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, pathlib.Path]]:
    """A scheduler without a launcher (the test starts its workers) and
    one worker "wa"; yields (host:port, the scheduler's log file)."""
    log = tmp_path_factory.mktemp("watchlog") / "scheduler.log"
    with open(log, "w") as f, run_scheduler(
            ["--listen", "tcp://127.0.0.1:0", "--launcher", "none"],
            stderr=f) as addr:
        w = _start_worker(addr, "wa")
        try:
            yield addr, log
        finally:
            w.terminate()
            w.wait(timeout=10)


@pytest.fixture()
def stub(pb, cluster) -> Iterator[Any]:
    with grpc.insecure_channel(cluster[0]) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        wait_for_workers(pb, ch, 1)
        yield pb.tg_grpc.SchedulerStub(ch)


def _gather(pb, stub, keys):
    out = {}
    for resp in stub.Gather(pb.tg.GatherRequest(keys=keys, timeout_ms=20000),
                            timeout=30):
        for r in resp.results:
            out[r.key] = r
    return out


def test_diamond_events_come_in_a_valid_order(pb, stub):
    a, b, c, d = (_key(n) for n in "abcd")
    T = pb.tg.TaskSpec
    w = Watcher(stub, pb.tg.WatchRequest(keys=[a, b, c, d], task_events=True,
                                         functions=True, workers=True,
                                         interval_ms=10))
    try:
        # The first update comes at once, with the current state: the
        # keys are not known yet, the connected worker has joined.
        w.wait(lambda us: len(us) >= 1)
        first = w.updates[0]
        assert first.keys_counts.released == 4
        assert first.HasField("totals")
        assert [e.kind for e in first.workers] == [pb.tg.WorkerEvent.KIND_JOINED]
        assert first.workers[0].worker.name == "wa"
        assert first.workers[0].worker.nthreads == 1
        assert "tg.sleep" in first.workers[0].worker.functions
        assert first.nworkers == 1

        stub.Submit(pb.tg.SubmitRequest(tasks=[
            T(key=a, func="tg.sleep", input=b"[0.02]", codec="json"),
            T(key=b, func="tg.noop", deps=[a]),
            T(key=c, func="tg.noop", deps=[a]),
            T(key=d, func="tg.noop", deps=[b, c]),
        ]), timeout=10)
        w.wait(lambda us: us[-1].keys_counts.memory == 4)
        last = w.updates[-1]
        assert last.keys_counts.waiting == last.keys_counts.released == 0
    finally:
        w.close()

    evs = w.events()
    assert {e.key for e in evs} == {a, b, c, d}
    S = pb.tg
    seq = {k: [e.state for e in evs if e.key == k] for k in (a, b, c, d)}
    for k in (a, b, c, d):
        assert seq[k] == [S.TASK_STATE_WAITING, S.TASK_STATE_READY,
                          S.TASK_STATE_PROCESSING, S.TASK_STATE_MEMORY], k
        prev = [e.previous for e in evs if e.key == k]
        assert prev == [S.TASK_STATE_UNSPECIFIED] + seq[k][:-1]

    def at(k: str, st: int) -> int:
        return next(i for i, e in enumerate(evs) if e.key == k and e.state == st)

    for k in (b, c):
        assert at(k, S.TASK_STATE_READY) > at(a, S.TASK_STATE_MEMORY)
    assert at(d, S.TASK_STATE_PROCESSING) > at(b, S.TASK_STATE_MEMORY)
    assert at(d, S.TASK_STATE_PROCESSING) > at(c, S.TASK_STATE_MEMORY)
    for e in evs:
        assert e.time_us > 1_600_000_000 * 10**6
        assert e.attempt == 1
        if e.state in (S.TASK_STATE_PROCESSING, S.TASK_STATE_MEMORY):
            assert e.worker == "wa", e
        else:
            assert e.worker == ""
    done_a = evs[at(a, S.TASK_STATE_MEMORY)]
    assert done_a.run_us >= 20000  # it slept 20 ms on the worker
    assert done_a.function == "tg.sleep"
    # Function counts: one tg.sleep and (at least) three tg.noop in memory.
    fc: dict[str, Any] = {}
    for u in w.updates:
        for f in u.functions:
            fc[f.function] = f.counts
    assert fc["tg.sleep"].memory >= 1 and fc["tg.noop"].memory >= 3


def test_workers_join_and_leave(pb, stub, cluster):
    w = Watcher(stub, pb.tg.WatchRequest(workers=True, interval_ms=10))
    try:
        w.wait(lambda us: len(us) >= 1)
        p = _start_worker(cluster[0], "wb")

        def kinds(us: list[Any]) -> list[tuple[int, str]]:
            return [(e.kind, e.worker.name) for u in us for e in u.workers
                    if e.worker.name == "wb"]

        try:
            w.wait(lambda us: (pb.tg.WorkerEvent.KIND_JOINED, "wb") in kinds(us))
            w.wait(lambda us: us[-1].nworkers == 2)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        w.wait(lambda us: (pb.tg.WorkerEvent.KIND_LEFT, "wb") in kinds(us))
        w.wait(lambda us: us[-1].nworkers == 1)
        left = [e for u in w.updates for e in u.workers
                if e.kind == pb.tg.WorkerEvent.KIND_LEFT]
        assert left[0].reason == "disconnected" and left[0].time_us > 0
    finally:
        w.close()


def _rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_watcher_costs_bounded_memory(pb):
    n, batch = 200_000, 10_000
    # One worker: with two, a task handed back to be stolen by the other
    # changes state twice more, and the exact tally below would not hold.
    with run_scheduler(["--listen", "tcp://127.0.0.1:0", "--workers", "1",
                        "--nthreads", "2", "--log-level", "warn",
                        "--worker-bin", str(WORKER)],
                       return_pid=True) as (addr, pid), \
            grpc.insecure_channel(addr) as ch:
        wait_for_workers(pb, ch, 1, timeout=20)
        stub = pb.tg_grpc.SchedulerStub(ch)
        # Not read until the end: its updates wait in flow control.
        call = stub.Watch(pb.tg.WatchRequest(key_prefixes=[""], task_events=True,
                                             max_events=100, interval_ms=10),
                          timeout=180)
        prefix = _key("slow")
        rss0 = 0
        for start in range(0, n, batch):
            keys = [f"{prefix}-{i}" for i in range(start, start + batch)]
            stub.Submit(pb.tg.SubmitRequest(
                tasks=[pb.tg.TaskSpec(key=k, func="tg.noop") for k in keys]),
                timeout=30)
            res = _gather(pb, stub, keys)
            assert all(r.state == pb.tg.TASK_STATE_MEMORY for r in res.values())
            stub.Release(pb.tg.ReleaseRequest(keys=keys), timeout=30)
            if start == batch:  # the scheduler's pools are warm by now
                rss0 = _rss_kb(pid)
        grown = _rss_kb(pid) - rss0
        # Buffering every event would take far more than this: 190,000
        # tasks x 5 changes x some 50 bytes each is over 45 MB.
        assert grown < 20_000, f"scheduler RSS grew {grown} kB"

        # Now read it: every change is either sent or counted as dropped,
        # and the counts are exact.
        w = Watcher(stub, None, call=call)

        def tally(us: list[Any]) -> tuple[int, int]:
            return (sum(len(u.tasks) for u in us),
                    sum(u.dropped_events for u in us))

        try:
            w.wait(lambda us: bool(us) and us[-1].totals.released == n
                   and sum(tally(us)) == 5 * n, timeout=60)
        except AssertionError:
            last = w.updates[-1].totals if w.updates else None
            raise AssertionError(f"tally {tally(w.updates)} of {5 * n}, last totals {last}")
        finally:
            w.close()
        final = w.updates[-1].totals
        events, dropped = tally(w.updates)
        assert all(len(u.tasks) <= 100 for u in w.updates)
        assert final.waiting == final.ready == final.processing == final.memory == 0
        assert dropped > 0
        # new -> waiting -> ready -> processing -> memory -> released
        assert events + dropped == 5 * n


def _watch_error(stub, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        next(iter(stub.Watch(req, timeout=10)))
    return ei.value


@pytest.mark.parametrize("field,req", [
    ("key_prefixes", {"key_prefixes": [f"p{i}" for i in range(65)]}),
    ("keys[1]", {"keys": ["ok", "k" * 1025]}),
    ("key_prefixes[0]", {"key_prefixes": ["p" * 1025]}),
    ("interval_ms", {"interval_ms": 3_600_001}),
    ("max_events", {"max_events": 100_001}),
])
def test_hostile_watch_requests_name_the_field(pb, stub, field, req):
    e = _watch_error(stub, pb.tg.WatchRequest(**req))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"WatchRequest.{field}" in e.details(), e.details()


def test_too_many_keys_are_refused(pb, stub):
    e = _watch_error(stub, pb.tg.WatchRequest(keys=[f"k{i}" for i in range(65_536)]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "keys" in e.details(), e.details()
    # The scheduler goes on serving.
    assert stub.Status(pb.tg.StatusRequest(), timeout=10).version


def test_set_log_level_logs_escaped_state_changes(pb, stub, cluster):
    log = cluster[1]
    r = stub.SetLogLevel(pb.tg.SetLogLevelRequest(), timeout=10)
    assert (r.previous, r.level) == ("info", "info")
    with pytest.raises(grpc.RpcError) as ei:
        stub.SetLogLevel(pb.tg.SetLogLevelRequest(level="loud"), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "error, warn, info, debug" in ei.value.details()

    r = stub.SetLogLevel(pb.tg.SetLogLevelRequest(level="debug"), timeout=10)
    assert (r.previous, r.level) == ("info", "debug")
    tag = uuid.uuid4().hex[:8]
    evil = f'evil-{tag}"\nINFO  scheduler: forged \\ line'
    stub.Submit(pb.tg.SubmitRequest(tasks=[
        pb.tg.TaskSpec(key=evil, func="tg.inc", input=b"1", codec="json")]),
        timeout=10)
    assert _gather(pb, stub, [evil])[evil].state == pb.tg.TASK_STATE_MEMORY
    r = stub.SetLogLevel(pb.tg.SetLogLevelRequest(level="info"), timeout=10)
    assert (r.previous, r.level) == ("debug", "info")
    plain = _key("quiet")
    stub.Submit(pb.tg.SubmitRequest(tasks=[
        pb.tg.TaskSpec(key=plain, func="tg.inc", input=b"1", codec="json")]),
        timeout=10)
    _gather(pb, stub, [plain])

    quoted = f'key="evil-{tag}\\"\\nINFO  scheduler: forged \\\\ line"'
    deadline = time.monotonic() + 10
    while True:
        text = log.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if quoted in ln]
        if len(lines) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 4, text[-3000:]
    assert all(" DEBUG scheduler: task " in ln for ln in lines)
    assert any("from=ready to=processing" in ln and 'worker="wa"' in ln
               and "attempt=1" in ln and 'func="tg.inc"' in ln for ln in lines)
    assert any("from=processing to=memory" in ln and "nbytes=1" in ln
               for ln in lines)
    assert not any(ln.startswith("INFO  scheduler: forged") for ln in text.splitlines())
    assert plain not in text  # back at info: no lines for it
    assert re.search(r'worker joined name="wa"', text)


# ---- mutual TLS: prefixes and SetLogLevel need the admin role ----

@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("watchcerts")
    subprocess.run([str(BIN / "scheduler" / "taskgrid-certs"), str(d),
                    "--hosts", "localhost,127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL)
    return d


def _tls(certs: pathlib.Path, target: str, role: str) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / f"{role}-key.pem").read_bytes(),
        certificate_chain=(certs / f"{role}.pem").read_bytes())
    return grpc.secure_channel(target, creds)


def test_prefixes_need_admin_over_mtls(pb, certs):
    with run_scheduler(["--listen", "tls://127.0.0.1:0", "--launcher", "none",
                        "--log-level", "error",
                        "--tls-ca", str(certs / "ca.pem"),
                        "--tls-cert", str(certs / "scheduler.pem"),
                        "--tls-key", str(certs / "scheduler-key.pem")]) as addr:
        with _tls(certs, addr, "client") as ch:
            st = pb.tg_grpc.SchedulerStub(ch)
            first = next(iter(st.Watch(pb.tg.WatchRequest(keys=["x"]), timeout=10)))
            assert first.keys_counts.released == 1
            e = _watch_error(st, pb.tg.WatchRequest(key_prefixes=[""]))
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "role 'admin'" in e.details() and "'client'" in e.details()
            with pytest.raises(grpc.RpcError) as ei:
                st.SetLogLevel(pb.tg.SetLogLevelRequest(level="debug"), timeout=10)
            assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with _tls(certs, addr, "admin") as ch:
            st = pb.tg_grpc.SchedulerStub(ch)
            first = next(iter(st.Watch(pb.tg.WatchRequest(key_prefixes=[""]),
                                       timeout=10)))
            assert first.HasField("totals")
            r = st.SetLogLevel(pb.tg.SetLogLevelRequest(), timeout=10)
            assert r.level == "error"
