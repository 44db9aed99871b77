# SPDX-License-Identifier: Apache-2.0
"""The Python worker speaks WorkerLink like the C worker.

A scripted scheduler (a grpcio server on loopback, from the generated
stubs) drives a real `python -m taskgrid.worker` process message by message:
registration, heartbeats, results, errors, dependencies, cancel, steal,
drain and SIGTERM.
"""
from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Any, Iterator, Optional

import grpc
import pytest

from taskgrid import _codec
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc

HERE = pathlib.Path(__file__).resolve().parent
TIMEOUT = 15.0


class ScriptedScheduler(pb_grpc.WorkerLinkServicer):
    """Records what the worker sends; sends what the test scripts."""

    def __init__(self) -> None:
        self.inbox: "queue.Queue[Optional[Any]]" = queue.Queue()
        self.outbox: "queue.Queue[Optional[Any]]" = queue.Queue()

    def Connect(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        def pump() -> None:
            try:
                for m in request_iterator:
                    self.inbox.put(m)
            except Exception:  # noqa: BLE001 - the stream broke
                pass
            self.inbox.put(None)  # the worker half-closed
            self.outbox.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            m = self.outbox.get()
            if m is None:
                return
            yield m

    def send(self, **fields: Any) -> None:
        self.outbox.put(pb.SchedulerMessage(**fields))

    def next_message(self, skip_heartbeats: bool = True) -> Optional[Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if (m is None or not skip_heartbeats or m.results or m.released
                    or m.HasField("registration")):
                return m

    def results(self, n: int) -> dict:
        out: dict = {}
        while len(out) < n:
            m = self.next_message()
            assert m is not None, f"stream ended with {len(out)} of {n} results"
            for r in m.results:
                out[r.key] = r
        return out


@pytest.fixture()
def scheduler() -> Iterator[tuple[ScriptedScheduler, str]]:
    fake = ScriptedScheduler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_WorkerLinkServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, f"tcp://127.0.0.1:{port}"
    server.stop(grace=0)


def start_worker(address: str, *args: str, env: Optional[dict] = None) -> subprocess.Popen:
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE)] + sys.path))
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "taskgrid.worker", address,
                             "--log-level", "warn", *args], env=e)


def py_call(key: str, fn: Any, *args: Any, deps: tuple = (), attempt: int = 1,
            priority: int = 0) -> Any:
    data = _codec.dumps((_codec.dumps_function(fn), args, {}))
    return pb.Assignment(key=key, func=_codec.PY_CALL, input=data, codec="pickle",
                         deps=list(deps), attempt=attempt, priority=priority)


def named(key: str, func: str, *args: Any, deps: tuple = ()) -> Any:
    return pb.Assignment(key=key, func=func, input=json.dumps(list(args)).encode(),
                         codec="json", deps=list(deps), attempt=1)


def fail(msg):
    raise KeyError(msg)


def square(x):
    return x * x


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.kill()
    return proc.wait(TIMEOUT)


def test_registration_heartbeats_results_and_errors(scheduler) -> None:
    fake, address = scheduler
    proc = start_worker(address, "--name", "w1", "--nthreads", "3",
                        "--resources", "GPU=2,process=1",
                        "--preload", str(HERE / "tg_preload_funcs.py"),
                        env={"TASKGRID_LAUNCH_ID": "launch-7"})
    try:
        reg = fake.next_message().registration
        assert (reg.name, reg.nthreads, reg.pid, reg.launch_id) == ("w1", 3, proc.pid, "launch-7")
        assert {"py.call", "tg.inc", "tg.noop", "demo.shout"} <= set(reg.functions)
        assert {r.name: r.amount for r in reg.resources} == {"GPU": 2.0, "process": 1.0}
        assert reg.agent.startswith("taskgrid-worker/") and "Python" in reg.agent

        # Heartbeats: empty messages at the interval the scheduler sets.
        fake.send(worker_name="w1", heartbeat_ms=50)
        beats = [fake.next_message(skip_heartbeats=False) for _ in range(4)]
        assert all(not b.results and not b.released for b in beats)
        assert beats[-1].uptime_ms > beats[0].uptime_ms

        two = pb.TaskResult(key="two", state=pb.TASK_STATE_MEMORY, data=b"2", codec="json")
        fake.send(assign=[
            named("inc", "tg.inc", 1),
            named("add", "tg.add", 10, deps=(two,)),
            named("shout", "demo.shout", 3),
            py_call("sq", square, _codec.Dep(0), deps=(two,)),
            py_call("bad", fail, "nope", attempt=2),
        ])
        got = fake.results(5)
        assert (got["inc"].data, got["inc"].codec) == (b"2", "json")
        assert json.loads(got["add"].data) == 12
        assert json.loads(got["shout"].data) == "#3"
        assert got["sq"].codec == "pickle" and _codec.loads(got["sq"].data) == 4
        bad = got["bad"]
        assert bad.state == pb.TASK_STATE_ERRED and bad.attempt == 2
        assert bad.error.type == "KeyError" and "nope" in bad.error.message
        assert "in fail" in bad.error.traceback and "raise KeyError(msg)" in bad.error.traceback
        assert all(r.state == pb.TASK_STATE_MEMORY for k, r in got.items() if k != "bad")
    finally:
        stop(proc)


def test_cancel_steal_and_drain(scheduler) -> None:
    fake, address = scheduler
    proc = start_worker(address, "--nthreads", "1")
    try:
        fake.next_message()  # registration
        fake.send(worker_name="w", heartbeat_ms=1000)
        # One slot: "run" starts, the others queue behind it.
        fake.send(assign=[named("run", "tg.sleep", 0.5), named("q1", "tg.inc", 1),
                          named("q2", "tg.inc", 2), named("q3", "tg.inc", 3)])
        time.sleep(0.1)
        fake.send(cancel=["q1"], steal=["q2"])
        m = fake.next_message()
        assert list(m.released) == ["q2"]  # stolen: handed back unstarted
        got = fake.results(2)
        assert set(got) == {"run", "q3"}  # q1 was cancelled: no result
        # Drain: running work finishes, new work is handed back, then the
        # worker disconnects and exits 0.
        fake.send(assign=[named("last", "tg.sleep", 0.4)])
        time.sleep(0.1)
        fake.send(drain=True)
        fake.send(assign=[named("late", "tg.inc", 1)])
        m = fake.next_message()
        assert list(m.released) == ["late"]
        assert set(fake.results(1)) == {"last"}
        assert fake.next_message() is None  # half-closed
        assert proc.wait(TIMEOUT) == 0
    finally:
        stop(proc)


def test_sigterm_hands_queued_work_back_and_finishes_running(scheduler) -> None:
    fake, address = scheduler
    proc = start_worker(address, "--nthreads", "1")
    try:
        fake.next_message()
        fake.send(worker_name="w", heartbeat_ms=1000)
        fake.send(assign=[named("run", "tg.sleep", 0.4), named("q1", "tg.inc", 1)])
        time.sleep(0.15)
        proc.send_signal(signal.SIGTERM)
        released: list = []
        results: dict = {}
        while True:
            m = fake.next_message()
            if m is None:
                break
            released += list(m.released)
            results.update({r.key: r for r in m.results})
        assert released == ["q1"] and set(results) == {"run"}
        assert proc.wait(TIMEOUT) == 0
    finally:
        stop(proc)


@pytest.mark.parametrize("args, message", [
    (["--resources", "GPU"], "is not NAME=AMOUNT"),
    (["--preload", "no_such_module_for_taskgrid"], "No module named"),
    (["--nthreads", "0"], "at least 1"),
    (["--tls-ca", "ca.pem"], "needs --tls-ca, --tls-cert and --tls-key"),
])
def test_bad_command_lines_exit_2_with_a_message(args: list, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "taskgrid.worker", "tcp://127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert message in proc.stderr
