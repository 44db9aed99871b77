# SPDX-License-Identifier: Apache-2.0
"""The multi-host test infrastructure (tests/cluster), proved with workers
started by hand against a real scheduler:

- a one-node Slurm (tests/cluster/slurm.sh): a worker submitted with
  `sbatch` joins the scheduler, runs a task, and leaves on `scancel`;
- network-namespace hosts with sshd (tests/cluster/netns.sh): the
  scheduler in host 1 on its own address over mutual TLS, a worker started
  over `ssh` in host 2 runs a task, and killing it over ssh makes it leave.

Each test skips, saying why, only where this machine cannot run it (not
root, namespaces refused, packages missing); the scripts report that with
exit status 77."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from conftest import BIN, ROOT, run_scheduler, stop_process, wait_until

CLUSTER = ROOT / "tests" / "cluster"
WORKER = BIN / "worker" / "taskgrid-worker"
UNAVAILABLE = 77  # the scripts' "this machine cannot run it"


def _script(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run a tests/cluster script; skip on status 77, fail on any other
    error (with its message); return its output."""
    r = subprocess.run(
        ["bash", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    if r.returncode == UNAVAILABLE:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


def _worker_cmd(address: str, name: str, *extra: str) -> str:
    """The shell command running the built worker as `name` on `address`."""
    return shlex.join(
        [
            str(WORKER),
            address,
            "--name",
            name,
            "--nthreads",
            "1",
            "--log-level",
            "error",
            *extra,
        ]
    )


def _worker_names(pb, ch: grpc.Channel) -> set[str]:
    st = pb.tg_grpc.SchedulerStub(ch).Status(pb.tg.StatusRequest(), timeout=5)
    return {w.name for w in st.workers}


def _run_inc_on(pb, ch: grpc.Channel, worker: str) -> None:
    """Run tg.inc(41) pinned to `worker`; assert 42 came back from it."""
    stub = pb.tg_grpc.SchedulerStub(ch)
    key = f"inc-{uuid.uuid4().hex[:8]}"
    stub.Submit(
        pb.tg.SubmitRequest(
            tasks=[
                pb.tg.TaskSpec(
                    key=key, func="tg.inc", input=b"41", codec="json", workers=[worker]
                )
            ]
        ),
        timeout=10,
    )
    results = [
        r
        for resp in stub.Gather(
            pb.tg.GatherRequest(keys=[key], timeout_ms=15000), timeout=30
        )
        for r in resp.results
    ]
    assert len(results) == 1
    assert results[0].state == pb.tg.TASK_STATE_MEMORY, results[0]
    assert json.loads(results[0].data) == 42
    assert results[0].worker == worker


# ---------------------------------------------------------------- Slurm


@pytest.fixture()
def slurm(tmp_path: pathlib.Path) -> Iterator[dict[str, str]]:
    """A one-node Slurm under tmp_path; yields the environment for its
    commands (SLURM_CONF among them)."""
    d = tmp_path / "slurm"
    out = _script([str(CLUSTER / "slurm.sh"), "start", str(d)])
    env = dict(os.environ)
    for line in out.splitlines():
        k, sep, v = line.partition("=")
        assert sep, f"slurm.sh start printed {line!r}, not NAME=VALUE"
        env[k] = v
    assert pathlib.Path(env["SLURM_CONF"]).is_file()
    try:
        yield env
    finally:
        _script([str(CLUSTER / "slurm.sh"), "stop", str(d)])


def _squeue(env: dict[str, str]) -> str:
    """The cluster's queue: "JOBID STATE" lines (pending and running jobs;
    not `-j JOBID`, which fails once Slurm has forgotten the job)."""
    return subprocess.run(
        ["squeue", "-h", "-o", "%i %T"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()


def test_slurm_job_worker_joins_runs_and_leaves(pb, slurm, tmp_path):
    with (
        run_scheduler(
            ["--listen", "tcp://127.0.0.1:0", "--workers", "0", "--log-level", "error"]
        ) as addr,
        grpc.insecure_channel(addr) as ch,
    ):
        name = f"slurm-{uuid.uuid4().hex[:6]}"
        cmd = _worker_cmd(f"tcp://{addr}", name)
        sub = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--job-name",
                name,
                "--ntasks",
                "1",
                "--output",
                str(tmp_path / "job-%j.out"),
                "--wrap",
                f"exec {cmd}",
            ],
            env=slurm,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert sub.returncode == 0, f"sbatch failed: {sub.stderr}"
        job = sub.stdout.strip().split(";")[0]
        assert job.isdigit(), sub.stdout
        try:
            wait_until(
                lambda: name in _worker_names(pb, ch),
                f"worker {name} (Slurm job {job}) to join",
            )
            assert _squeue(slurm) == f"{job} RUNNING"
            _run_inc_on(pb, ch, name)
        finally:
            subprocess.run(["scancel", job], env=slurm, check=True, timeout=10)
        wait_until(
            lambda: name not in _worker_names(pb, ch),
            f"worker {name} to leave after scancel",
        )
        wait_until(
            lambda: _squeue(slurm) == "", f"Slurm job {job} to leave squeue (empty)"
        )


# ---------------------------------------------------------------- netns


@pytest.fixture()
def hosts(
    tmp_path: pathlib.Path,
) -> Iterator[tuple[pathlib.Path, dict[str, tuple[str, str]]]]:
    """Two namespace hosts; yields (their DIR, {name: (address, netns)})."""
    d = tmp_path / "hosts"
    out = _script([str(CLUSTER / "netns.sh"), "up", "2", str(d)])
    try:
        found = {}
        for line in out.splitlines():
            name, address, ns = line.split()
            found[name] = (address, ns)
        assert sorted(found) == ["h1", "h2"], out
        yield d, found
    finally:
        _script([str(CLUSTER / "netns.sh"), "down", str(d)])


def _ssh(d: pathlib.Path, host: str, command: str, **kw: Any) -> Any:
    return subprocess.Popen(["ssh", "-F", str(d / "ssh_config"), host, command], **kw)


def test_netns_worker_over_ssh_with_mtls(pb, hosts, tmp_path):
    d, found = hosts
    h1_addr, h1_ns = found["h1"]
    certs_exe = BIN / "scheduler" / "taskgrid-certs"
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [str(certs_exe), str(certs), "--hosts", h1_addr],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=30,
    )
    tls = ["--tls-ca", str(certs / "ca.pem")]
    with run_scheduler(
        [
            "--listen",
            f"tls://{h1_addr}:0",
            "--workers",
            "0",
            "--log-level",
            "error",
            *tls,
            "--tls-cert",
            str(certs / "scheduler.pem"),
            "--tls-key",
            str(certs / "scheduler-key.pem"),
        ],
        wrapper=["ip", "netns", "exec", h1_ns],
    ) as addr:
        assert addr.startswith(f"{h1_addr}:"), addr
        creds = grpc.ssl_channel_credentials(
            root_certificates=(certs / "ca.pem").read_bytes(),
            private_key=(certs / "client-key.pem").read_bytes(),
            certificate_chain=(certs / "client.pem").read_bytes(),
        )
        # The client runs in the root namespace, on the hosts' bridge.
        with grpc.secure_channel(addr, creds) as ch:
            name = f"h2-{uuid.uuid4().hex[:6]}"
            pidfile = d / "worker-h2.pid"
            cmd = _worker_cmd(
                f"tls://{addr}",
                name,
                *tls,
                "--tls-cert",
                str(certs / "worker.pem"),
                "--tls-key",
                str(certs / "worker-key.pem"),
            )
            with open(tmp_path / "worker-h2.log", "wb") as log:
                worker = _ssh(
                    d,
                    "h2",
                    f"echo $$ > {shlex.quote(str(pidfile))}; exec {cmd}",
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            try:
                wait_until(
                    lambda: name in _worker_names(pb, ch),
                    f"worker {name} started over ssh in h2 to join",
                )
                _run_inc_on(pb, ch, name)
                pid = pidfile.read_text().strip()
                assert pid.isdigit(), pid
                where = subprocess.run(
                    ["ip", "netns", "identify", pid],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=10,
                )
                assert where.stdout.strip() == found["h2"][1]
                kill = subprocess.run(
                    ["ssh", "-F", str(d / "ssh_config"), "h2", f"kill -9 {pid}"],
                    capture_output=True,
                    text=True,
                    timeout=15,
                    check=False,
                )
                assert kill.returncode == 0, kill.stderr
                wait_until(
                    lambda: name not in _worker_names(pb, ch),
                    f"killed worker {name} to leave",
                )
                assert worker.wait(timeout=10) != 0
            finally:
                if worker.poll() is None:
                    stop_process(worker)
