# SPDX-License-Identifier: Apache-2.0
"""The taskgrid command (python -m taskgrid, as the console script runs it)
against the fake scheduler: status, watch, log-level, and clear errors for
a bad address, an unreachable scheduler and a refusal."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import grpc
import pytest
from fake_scheduler import FakeScheduler

from taskgrid import cli
from taskgrid._watch import TaskCounts, WatchUpdate
from taskgrid.v1 import taskgrid_pb2 as pb


@pytest.fixture()
def fake() -> Iterator[FakeScheduler]:
    f = FakeScheduler()
    yield f
    f.stop()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TASKGRID_SCHEDULER_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "taskgrid", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_status_prints_workers_and_counts(fake: FakeScheduler) -> None:
    r = run("status", "--scheduler", fake.address)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"scheduler {fake.address} (version fake-1)"
    header = next(i for i, line in enumerate(lines) if line.startswith("WORKER"))
    assert lines[header].split() == ["WORKER", "THREADS", "TASKS", "MEMORY", "SPILLED",
                                     "LIMIT", "RSS", "STATE"]
    one, two = lines[header + 1].split(), lines[header + 2].split()
    assert one[:3] == ["w-one", "4", "2"] and "3.0 MiB" in lines[header + 1]
    assert "8.0 GiB" in lines[header + 1] and one[-1] == "running"
    assert two[0] == "w-two" and two[-1] == "draining"
    counts = next(line for line in lines if line.startswith("tasks"))
    assert counts.split() == ["tasks", "1", "2", "2", "7", "1", "0", "0"]


def test_status_json(fake: FakeScheduler) -> None:
    import json

    r = run("status", "--json", "--scheduler", fake.address)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [w["name"] for w in doc["workers"]] == ["w-one", "w-two"]
    assert (doc["memory"], doc["erred"], doc["version"]) == (7, 1, "fake-1")


def test_status_prints_the_launcher_and_its_units(fake: FakeScheduler) -> None:
    fake.status.launcher.CopyFrom(
        pb.LauncherStatus(
            kind="slurm",
            target=4,
            active=4,
            starting=2,
            failures=1,
            last_error="sbatch refused the job: invalid partition specified",
            units=[
                pb.LauncherUnit(id="u1", state="running", where="slurm job 41", workers=2,
                                connected=2),
                pb.LauncherUnit(id="u2", state="pending", where="slurm job 42", workers=2),
            ],
        )
    )
    r = run("status", "--scheduler", fake.address)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = lines.index("launcher slurm: target 4, active 4 (2 starting), failures 1")
    assert lines[i + 1] == "last error: sbatch refused the job: invalid partition specified"
    assert lines[i + 2].split() == ["UNIT", "STATE", "WHERE", "WORKERS", "CONNECTED"]
    assert lines[i + 3].split() == ["u1", "running", "slurm", "job", "41", "2", "2"]
    assert lines[i + 4].split() == ["u2", "pending", "slurm", "job", "42", "2", "0"]
    import json

    doc = json.loads(run("status", "--json", "--scheduler", fake.address).stdout)
    assert doc["launcher"]["units"][1] == {
        "id": "u2", "state": "pending", "where": "slurm job 42", "workers": 2, "connected": 0
    }


def test_status_without_a_launcher_prints_none(fake: FakeScheduler) -> None:
    r = run("status", "--scheduler", fake.address)
    assert r.returncode == 0 and "launcher" not in r.stdout
    import json

    assert json.loads(run("status", "--json", "--scheduler", fake.address).stdout)[
        "launcher"
    ] is None


def test_log_level_reads_and_sets(fake: FakeScheduler) -> None:
    r = run("log-level", "--scheduler", fake.address)
    assert (r.returncode, r.stdout) == (0, "info\n")
    r = run("log-level", "--scheduler", fake.address, "debug")
    assert (r.returncode, r.stdout) == (0, "log level: info -> debug\n")
    assert fake.log_level == "debug"
    r = run("log-level", "--scheduler", fake.address, "shout")
    assert r.returncode == 2 and "unknown level 'shout'" in r.stderr


def test_permission_denied_is_named(fake: FakeScheduler) -> None:
    fake.deny["SetLogLevel"] = "the log level is for role admin; this certificate has 'client'"
    r = run("log-level", "--scheduler", fake.address, "debug")
    assert r.returncode == 1
    assert "permission denied" in r.stderr and "role admin" in r.stderr
    assert fake.log_level == "info"


def test_bad_address_and_unreachable_scheduler() -> None:
    r = run("status", "--scheduler", "http://x:1")
    assert r.returncode == 2 and "unsupported address 'http://x:1'" in r.stderr
    r = run("status", "--scheduler", "tcp://localhost")
    assert r.returncode == 2 and "has no port" in r.stderr
    r = run("status")
    assert r.returncode == 2 and "TASKGRID_SCHEDULER_ADDRESS" in r.stderr
    r = run("status", "--scheduler", "tls://127.0.0.1:1")
    assert r.returncode == 2 and "--tls-ca, --tls-cert, --tls-key" in r.stderr
    r = run("status", "--scheduler", "tls://127.0.0.1:1", "--tls-ca", "/no/such/ca.pem",
            "--tls-cert", "/no/c", "--tls-key", "/no/k")
    assert r.returncode == 2 and "cannot read --tls-ca /no/such/ca.pem" in r.stderr
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = run("status", "--scheduler", f"tcp://127.0.0.1:{port}", "--timeout", "1")
    assert r.returncode == 1
    assert f"cannot reach the taskgrid scheduler at tcp://127.0.0.1:{port}" in r.stderr
    assert time.monotonic() - t0 < 30


def _busy_then_idle(request, context):
    for processing, memory in ((2, 0), (1, 1), (0, 2)):
        yield pb.WatchUpdate(
            time_us=int(time.time() * 1e6),
            totals=pb.TaskCounts(processing=processing, memory=memory),
            functions=[pb.FunctionCounts(function="tg.inc", counts=pb.TaskCounts(
                processing=processing, memory=memory))],
            nworkers=2)
        time.sleep(0.05)
    while context.is_active():
        time.sleep(0.01)


def test_watch_until_idle_prints_lines(fake: FakeScheduler) -> None:
    fake.watch = _busy_then_idle
    r = run("watch", "--scheduler", fake.address, "--until-idle", "--interval", "0.05")
    assert r.returncode == 0, r.stderr
    assert "workers 2 | waiting 0  ready 0  processing 2 |" in r.stdout
    assert "tg.inc: 0/2 done (2 processing)" in r.stdout
    assert "tg.inc: 2/2 done" in r.stdout
    assert "\r" not in r.stdout  # lines, not bars, into a pipe
    req = fake.requests[0]
    assert (req.functions, req.workers, req.interval_ms) == (True, True, 50)


def test_watch_without_watch_in_the_scheduler(fake: FakeScheduler) -> None:
    def gen(request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        yield  # pragma: no cover

    fake.watch = gen
    r = run("watch", "--scheduler", fake.address, "--until-idle")
    assert r.returncode == 1 and "does not implement it" in r.stderr


def test_bar_display_draws_totals_and_a_bar_per_function() -> None:
    out = io.StringIO()
    d = cli.BarDisplay(out)
    d.update(WatchUpdate(time=0, totals=TaskCounts(processing=3, memory=1),
                         keys_counts=TaskCounts(), tasks=[], dropped_events=0,
                         functions={"tg.inc": TaskCounts(processing=3, memory=1),
                                    "py.load": TaskCounts(memory=2, erred=1)},
                         workers=[], nworkers=2, target_workers=4))
    d.close()
    text = out.getvalue()
    assert "workers 2/4 | waiting 0  ready 0  processing 3 |" in text
    assert "tg.inc" in text and "1/4" in text and "3 processing" in text
    assert "py.load" in text and "3/3" in text and "1 erred" in text
