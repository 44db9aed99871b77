# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the stock-client tests: gRPC stubs generated from proto/
with grpcio-tools (never hand-written), and a real taskgrid scheduler with
local workers started for the test session and torn down after it."""
from __future__ import annotations

import contextlib
import os
import pathlib
import select
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("TASKGRID_BIN_DIR", ROOT / "bazel-bin"))


@pytest.fixture(scope="session")
def pb(tmp_path_factory: pytest.TempPathFactory):
    """Generate taskgrid.v1 and grpc.health.v1 stubs into a temp dir."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    # grpc.health.v1 comes from grpcio-health-checking (the stock stubs);
    # generating it here would be shadowed by the grpc package.
    for proto in ("taskgrid/v1/taskgrid.proto",):
        rc = protoc.main([
            "protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
            f"--grpc_python_out={out}", str(ROOT / "proto" / proto),
        ])
        assert rc == 0, f"protoc failed on {proto}"
    sys.path.insert(0, str(out))
    from taskgrid.v1 import taskgrid_pb2, taskgrid_pb2_grpc  # type: ignore
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    class Stubs:
        pass

    s = Stubs()
    s.tg, s.tg_grpc = taskgrid_pb2, taskgrid_pb2_grpc
    s.health, s.health_grpc = health_pb2, health_pb2_grpc
    return s


def python_env() -> dict[str, str]:
    """This process's environment for a Python program of the binding:
    this checkout's binding when its gRPC stubs are generated (a
    developer's tree), else the installed one (what the test command
    installs)."""
    env = dict(os.environ)
    src = ROOT / "bindings" / "python" / "src"
    if (src / "taskgrid" / "v1" / "taskgrid_pb2.py").is_file():
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _scheduler_bin() -> pathlib.Path:
    exe = BIN / "scheduler" / "taskgrid-scheduler"
    if not exe.exists():
        pytest.fail(f"{exe} not found: run 'bazel build //scheduler //worker'")
    return exe


@contextlib.contextmanager
def run_scheduler(args: list[str], stderr: Any = None,
                  return_pid: bool = False, dashboard: bool = False,
                  wrapper: list[str] | None = None) -> Iterator[Any]:
    """Run taskgrid-scheduler ARGS (its --listen among them) until the
    block ends; yields the host:port it printed (with return_pid, the pair
    (host:port, pid); with dashboard, for ARGS with --dashboard-address,
    the pair (host:port, the dashboard's URL it printed next)). Its log
    goes to `stderr` (a file, or None for this process's). With `wrapper`
    (a command that execs the rest, e.g. `ip netns exec NS`), the
    scheduler runs under it."""
    proc = subprocess.Popen([*(wrapper or []), str(_scheduler_bin()), *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "scheduler did not print its address within 10 s"
        line = proc.stdout.readline().strip()
        prefix = "taskgrid-scheduler listening on "
        assert line.startswith(prefix), line
        addr = line[len(prefix):].split("://", 1)[1]
        if dashboard:
            # Printed right after the first line (perhaps read with it).
            line = proc.stdout.readline().strip()
            prefix = "taskgrid-scheduler dashboard at "
            assert line.startswith(prefix), line
            yield addr, line[len(prefix):]
            return
        yield (addr, proc.pid) if return_pid else addr
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A cluster CA and its certificates (taskgrid-certs): ca.pem, and
    ROLE.pem / ROLE-key.pem for the scheduler, worker, client and admin
    roles; the scheduler's names localhost and 127.0.0.1."""
    exe = BIN / "scheduler" / "taskgrid-certs"
    if not exe.exists():
        pytest.fail(f"{exe} not found: run 'bazel build //scheduler:taskgrid-certs'")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(exe), str(d), "--hosts", "localhost,127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL)
    return d


@pytest.fixture(scope="session")
def scheduler() -> Iterator[str]:
    """A scheduler with 2 local workers of 1 thread; yields host:port."""
    with run_scheduler(["--listen", "tcp://127.0.0.1:0",
                        "--workers", "2", "--nthreads", "1",
                        "--worker-bin", str(BIN / "worker" / "taskgrid-worker"),
                        "--max-message", "1048576"]) as addr:
        yield addr


@pytest.fixture()
def channel(scheduler: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(scheduler) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll check() until it returns something true (returned), failing
    with 'timed out waiting for WHAT' after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_workers(pb, channel: grpc.Channel, n: int, timeout: float = 10.0) -> None:
    stub = pb.tg_grpc.SchedulerStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        st = stub.Status(pb.tg.StatusRequest(), timeout=5)
        if len(st.workers) >= n:
            return
        assert time.monotonic() < deadline, f"only {len(st.workers)} workers"
        time.sleep(0.05)
