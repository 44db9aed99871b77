# SPDX-License-Identifier: Apache-2.0
"""--death-timeout (C and Python workers): a worker whose scheduler is
gone, or never came, exits with status 1 once it has gone without one for
that long, so a batch job whose scheduler died does not keep its
allocation until its walltime; without the option it keeps trying. The
Slurm launcher gives its workers --death-timeout 60 unless told
otherwise (--worker-death-timeout)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from conftest import BIN, python_env, run_scheduler, stop_process, wait_for_workers

WORKER = BIN / "worker" / "taskgrid-worker"


def _worker(kind: str, address: str, name: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [str(WORKER)] if kind == "c" else [sys.executable, "-m", "taskgrid.worker"]
    return subprocess.Popen(
        [*cmd, address, "--name", name, "--nthreads", "1", *extra],
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["c", "python"])
def test_no_scheduler_at_start(kind):
    address = f"tcp://127.0.0.1:{_free_port()}"  # nobody listens there
    patient = _worker(kind, address, "patient")
    quitter = _worker(kind, address, "quitter", "--death-timeout", "1")
    try:
        t0 = time.monotonic()
        assert quitter.wait(timeout=30) == 1
        took = time.monotonic() - t0
        err = quitter.stderr.read()
        assert "--death-timeout" in err and "127.0.0.1" in err, err
        assert took >= 1.0, took
        # Started with it, the worker without the option still tries.
        assert patient.poll() is None
    finally:
        for p in (patient, quitter):
            if p.poll() is None:
                stop_process(p)


@pytest.mark.parametrize("kind", ["c", "python"])
def test_scheduler_gone_after_registration(pb, kind):
    with run_scheduler(
        ["--listen", "tcp://127.0.0.1:0", "--launcher", "none", "--log-level", "warn"],
        return_pid=True,
    ) as (addr, pid):
        w = _worker(kind, f"tcp://{addr}", f"orphan-{kind}", "--death-timeout", "1")
        try:
            with grpc.insecure_channel(addr) as ch:
                wait_for_workers(pb, ch, 1, timeout=30)
            os.kill(pid, signal.SIGKILL)  # gone without a word
            assert w.wait(timeout=30) == 1
            assert "--death-timeout" in w.stderr.read()
        finally:
            if w.poll() is None:
                stop_process(w)


def test_bad_value_is_refused():
    for kind in ("c", "python"):
        p = _worker(kind, "tcp://127.0.0.1:1", "bad", "--death-timeout", "soon")
        assert p.wait(timeout=30) == 2
        err = p.stderr.read()
        assert "death-timeout" in err and "soon" in err, err


def test_slurm_jobs_get_a_death_timeout():
    sched = BIN / "scheduler" / "taskgrid-scheduler"
    base = [str(sched), "--launcher", "slurm", "--print-job-script", "--contact-address", "tcp://h:1"]
    script = subprocess.run(base, capture_output=True, text=True, timeout=30, check=True).stdout
    assert "'--death-timeout' '60'" in script
    script = subprocess.run(
        [*base, "--worker-death-timeout", "0"], capture_output=True, text=True, timeout=30,
        check=True,
    ).stdout
    assert "--death-timeout" not in script
    r = subprocess.run([*base, "--worker-death-timeout", "1.5"], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 2 and "--worker-death-timeout expects whole seconds" in r.stderr
