# SPDX-License-Identifier: Apache-2.0
"""What a cluster spanning several hosts relies on: a worker (C, Python or
Go) of a scheduler listening on 0.0.0.0 advertises a data address peers on
other hosts can dial (this host's non-loopback IP address, never a
loopback one), and taskgrid-certs --hosts puts the names given into the
scheduler's certificate (and a worker's, with --issue), as subjectAltName
entries."""
from __future__ import annotations

import ipaddress
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import uuid

import grpc
import pytest
from conftest import BIN, ROOT, python_env, run_scheduler, stop_process, wait_for_workers


def _global_ipv4() -> str:
    """An IPv4 address of this machine that is not loopback, or skip."""
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("no 'ip' command to list this machine's addresses")
    out = subprocess.run([ip, "-4", "-o", "addr", "show", "scope", "global"],
                         check=True, capture_output=True, text=True).stdout
    for m in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+)/", out):
        if not ipaddress.ip_address(m.group(1)).is_loopback:
            return m.group(1)
    pytest.skip("this machine has no non-loopback IPv4 address")


PY_SRC = ROOT / "bindings" / "python" / "src"


def _python_worker() -> tuple[list[str], dict[str, str]]:
    """`python -m taskgrid.worker`: this checkout's binding when its gRPC
    stubs have been generated, else the installed one."""
    env = python_env()
    check = subprocess.run([sys.executable, "-c", "import taskgrid.worker"], env=env,
                           capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        pytest.fail("the Python worker does not import (install bindings/python, or "
                    f"generate its stubs into {PY_SRC}):\n{check.stderr}")
    return [sys.executable, "-m", "taskgrid.worker"], env


def _go_worker(tmp: pathlib.Path) -> tuple[list[str], dict[str, str]]:
    """The example Go worker, built from this checkout."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("no go command to build bindings/go/cmd/taskgrid-go-worker")
    out = tmp / "taskgrid-go-worker"
    built = subprocess.run([go, "build", "-o", str(out), "./cmd/taskgrid-go-worker"],
                           cwd=ROOT / "bindings" / "go", capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, f"go build ./cmd/taskgrid-go-worker:\n{built.stderr}"
    return [str(out)], dict(os.environ)


@pytest.mark.parametrize("kind", ["c", "python", "go"])
def test_worker_of_a_wildcard_scheduler_advertises_a_reachable_address(
        pb, kind: str, tmp_path: pathlib.Path) -> None:
    host_ip = _global_ipv4()
    if kind == "c":
        command, env = [str(BIN / "worker" / "taskgrid-worker")], dict(os.environ)
    elif kind == "python":
        command, env = _python_worker()
    else:
        command, env = _go_worker(tmp_path)
    with run_scheduler(["--listen", "tcp://0.0.0.0:0", "--launcher", "none",
                        "--inline-limit", "1024"]) as addr:
        port = addr.rsplit(":", 1)[1]
        # As a worker on another host would: the scheduler by its network
        # address, no --data-listen or --data-address.
        worker = subprocess.Popen([*command, f"tcp://{host_ip}:{port}", "--nthreads", "1"],
                                  stdout=subprocess.DEVNULL, env=env)
        try:
            with grpc.insecure_channel(f"{host_ip}:{port}") as ch:
                grpc.channel_ready_future(ch).result(timeout=10)
                wait_for_workers(pb, ch, 1, timeout=60)
                stub = pb.tg_grpc.SchedulerStub(ch)
                key = f"big-{uuid.uuid4().hex[:8]}"
                stub.Submit(pb.tg.SubmitRequest(tasks=[pb.tg.TaskSpec(
                    key=key, func="tg.echo", input=b"x" * 8192, codec="raw")]),
                    timeout=10)
                holders: list[str] = []
                for resp in stub.Gather(pb.tg.GatherRequest(
                        keys=[key], defer_held=True, timeout_ms=20000), timeout=30):
                    for r in resp.results:
                        assert r.state == pb.tg.TASK_STATE_MEMORY and r.held, r
                        holders = list(r.holders)
                    if holders:
                        break
        finally:
            stop_process(worker)
    assert len(holders) == 1, holders
    h, _, p = holders[0].rpartition(":")
    assert int(p) > 0, holders
    assert h == host_ip, f"{kind} worker advertised {holders[0]}, expected {host_ip}:PORT"


def _certs_bin() -> pathlib.Path:
    exe = BIN / "scheduler" / "taskgrid-certs"
    if not exe.exists():
        pytest.fail(f"{exe} not found: run 'bazel build //scheduler:taskgrid-certs'")
    return exe


def _sans(pem: pathlib.Path) -> list[str]:
    """The subjectAltName entries of a certificate, as openssl prints them."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to read certificates")
    text = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    m = re.search(r"X509v3 Subject Alternative Name:.*\n\s*(.*)\n", text)
    assert m, f"no subjectAltName in {pem}:\n{text}"
    return [s.strip() for s in m.group(1).split(",")]


def test_certs_hosts_name_the_scheduler_and_issued_workers(tmp_path: pathlib.Path) -> None:
    exe = _certs_bin()
    subprocess.run([str(exe), str(tmp_path), "--hosts",
                    "sched.example,192.0.2.77,fd00::7"],
                   check=True, stdout=subprocess.DEVNULL)
    sched = _sans(tmp_path / "scheduler.pem")
    assert "DNS:sched.example" in sched, sched
    assert "IP Address:192.0.2.77" in sched, sched
    assert "IP Address:FD00:0:0:0:0:0:0:7" in sched, sched
    assert "URI:taskgrid:role=scheduler" in sched, sched
    # --hosts replaces the default names: nothing else answers for it.
    assert "DNS:localhost" not in sched and "IP Address:127.0.0.1" not in sched, sched
    # Workers are verified by peers under one fixed name, not by host.
    worker = _sans(tmp_path / "worker.pem")
    assert "DNS:taskgrid-worker" in worker, worker
    assert "DNS:sched.example" not in worker, worker
    # One more worker certificate, for a host of its own.
    subprocess.run([str(exe), str(tmp_path), "--issue", "worker", "host2",
                    "--hosts", "host2.example,192.0.2.78"],
                   check=True, stdout=subprocess.DEVNULL)
    host2 = _sans(tmp_path / "host2.pem")
    assert {"DNS:taskgrid-worker", "DNS:host2.example", "IP Address:192.0.2.78",
            "URI:taskgrid:role=worker"} <= set(host2), host2


def test_certs_default_hosts_are_loopback_and_this_host(tmp_path: pathlib.Path) -> None:
    subprocess.run([str(_certs_bin()), str(tmp_path)], check=True,
                   stdout=subprocess.DEVNULL)
    sched = _sans(tmp_path / "scheduler.pem")
    assert {"DNS:localhost", "IP Address:127.0.0.1"} <= set(sched), sched
    name = socket.gethostname()
    if name != "localhost":
        assert f"DNS:{name}" in sched, sched
