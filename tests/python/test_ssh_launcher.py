# SPDX-License-Identifier: Apache-2.0
"""The ssh launcher (taskgrid-scheduler --launcher ssh --hosts ...) on
network-namespace hosts with sshd (tests/cluster/netns.sh): the scheduler
runs in host h1 over mutual TLS (its certificate names h1's address) and
starts C workers in h2 and h3 through ssh, which

- run a graph whose large results stay on the workers and move between
  hosts, with correct results;
- lose nothing when a host's workers are killed mid-graph: the launcher
  starts a replacement, and scaling down stops the remote workers;
- keep working when one host of --hosts cannot be reached, naming it in
  the log and in Status;

plus the start-up errors (no --hosts, no ssh program), which need no
namespaces, and taskgrid.SSHCluster from Python. The namespace tests skip
only where netns.sh says this machine cannot run them (exit status 77)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import BIN, ROOT, python_env, run_scheduler, wait_until

CLUSTER = ROOT / "tests" / "cluster"
SCHEDULER = BIN / "scheduler" / "taskgrid-scheduler"
WORKER = BIN / "worker" / "taskgrid-worker"
UNAVAILABLE = 77
BIG = 15000  # numbers in a large result: about 75 KB of JSON


def _script(args: list[str]) -> str:
    r = subprocess.run(["bash", *args], capture_output=True, text=True, timeout=90, check=False)
    if r.returncode == UNAVAILABLE:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[pathlib.Path, dict[str, tuple[str, str]]]]:
    """Three namespace hosts; yields (their DIR, {name: (address, netns)})."""
    d = tmp_path_factory.mktemp("sshhosts")
    out = _script([str(CLUSTER / "netns.sh"), "up", "3", str(d)])
    try:
        found = {}
        for line in out.splitlines():
            name, address, ns = line.split()
            found[name] = (address, ns)
        assert sorted(found) == ["h1", "h2", "h3"], out
        yield d, found
    finally:
        _script([str(CLUSTER / "netns.sh"), "down", str(d)])


@pytest.fixture(scope="module")
def mtls(net, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Certificates whose scheduler certificate names h1's address."""
    d = tmp_path_factory.mktemp("sshcerts")
    subprocess.run(
        [str(BIN / "scheduler" / "taskgrid-certs"), str(d), "--hosts", net[1]["h1"][0]],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=30,
    )
    return d


class Cluster:
    def __init__(self, pb: Any, ch: grpc.Channel, log: pathlib.Path) -> None:
        self.pb, self.ch, self.log = pb, ch, log
        self.stub = pb.tg_grpc.SchedulerStub(ch)

    def status(self) -> Any:
        return self.stub.Status(self.pb.tg.StatusRequest(), timeout=5)

    def scale(self, n: int) -> None:
        self.stub.Scale(self.pb.tg.ScaleRequest(workers=n), timeout=5)

    def gather(self, keys: list[str], timeout: float = 40, held: bool = False) -> dict[str, Any]:
        """Results of `keys`; with `held`, large ones are not fetched but
        name their holders (the workers' data addresses)."""
        got: dict[str, Any] = {}
        for resp in self.stub.Gather(
            self.pb.tg.GatherRequest(keys=keys, timeout_ms=int(timeout * 1000), defer_held=held),
            timeout=timeout + 10,
        ):
            for r in resp.results:
                got[r.key] = r
        return got


def _channel(addr: str, certs: pathlib.Path) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "admin-key.pem").read_bytes(),
        certificate_chain=(certs / "admin.pem").read_bytes(),
    )
    return grpc.secure_channel(addr, creds)


def _start(
    net,
    certs: pathlib.Path,
    hosts: list[str],
    workers: int,
    log: pathlib.Path,
    nthreads: int = 1,
    return_pid: bool = False,
) -> Any:
    """The scheduler in h1 (listening on every address of h1), launching
    C workers over ssh on `hosts`."""
    d, found = net
    args = [
        "--listen",
        "tls://0.0.0.0:0",
        "--launcher",
        "ssh",
        "--hosts",
        ",".join(hosts),
        "--ssh-arg",
        "-F",
        "--ssh-arg",
        str(d / "ssh_config"),
        "--workers",
        str(workers),
        "--nthreads",
        str(nthreads),
        "--worker-bin",
        str(WORKER),
        "--worker-log-level",
        "warn",
        "--inline-limit",
        "16384",
        "--log-level",
        "info",
        "--tls-ca",
        str(certs / "ca.pem"),
        "--tls-cert",
        str(certs / "scheduler.pem"),
        "--tls-key",
        str(certs / "scheduler-key.pem"),
        "--worker-tls-cert",
        str(certs / "worker.pem"),
        "--worker-tls-key",
        str(certs / "worker-key.pem"),
    ]
    return run_scheduler(
        args,
        stderr=log.open("w"),
        wrapper=["ip", "netns", "exec", found["h1"][1]],
        return_pid=return_pid,
    )


def _h1(net, addr: str) -> str:
    """The scheduler's address as the root namespace reaches it."""
    return f"{net[1]['h1'][0]}:{addr.rsplit(':', 1)[1]}"


def _remote_workers(ns: str) -> dict[str, str]:
    """{pid: command line} of C and Python workers in namespace `ns`
    (the namespaces share the machine's process ids: pkill in a host
    would reach every host's processes)."""
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    found = {}
    for pid in pids:
        try:
            cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and (cmd[0].endswith(b"taskgrid-worker") or b"taskgrid.worker" in cmd):
            found[pid] = b" ".join(cmd).decode()
    return found


def _graph(pb, tag: str, n: int, sleep: float | None = None) -> tuple[list[Any], dict[str, int]]:
    """n large echo results (kept on workers), and n sums each of two of
    them (so results move between workers), or with `sleep`, each of one
    large result and a tg.sleep(sleep) (so the graph lasts a while)."""
    T = pb.tg.TaskSpec
    tasks, want = [], {}
    for i in range(n):
        tasks.append(
            T(
                key=f"{tag}-big-{i}",
                func="tg.echo",
                codec="json",
                input=json.dumps([1000 + i] * BIG).encode(),
            )
        )
    for i in range(n):
        if sleep is None:
            j = (i + 1) % n
            tasks.append(
                T(
                    key=f"{tag}-sum-{i}",
                    func="tg.sum",
                    codec="json",
                    deps=[f"{tag}-big-{i}", f"{tag}-big-{j}"],
                )
            )
            want[f"{tag}-sum-{i}"] = BIG * (2000 + i + j)
        else:
            tasks.append(
                T(
                    key=f"{tag}-nap-{i}",
                    func="tg.sleep",
                    codec="json",
                    input=json.dumps(sleep).encode(),
                )
            )
            tasks.append(
                T(
                    key=f"{tag}-sum-{i}",
                    func="tg.sum",
                    codec="json",
                    deps=[f"{tag}-big-{i}", f"{tag}-nap-{i}"],
                )
            )
            want[f"{tag}-sum-{i}"] = BIG * (1000 + i) + int(sleep)
    return tasks, want


def _check(pb, got: dict[str, Any], want: dict[str, int]) -> None:
    for key, value in want.items():
        r = got[key]
        assert r.state == pb.tg.TASK_STATE_MEMORY, (key, r)
        assert json.loads(r.data) == value, key


def test_graph_runs_on_workers_of_both_hosts(pb, net, mtls, tmp_path):
    _d, found = net
    h2, h3 = found["h2"][0], found["h3"][0]
    t0 = time.monotonic()
    with (
        _start(net, mtls, [h2, h3], 2, tmp_path / "sched.log", return_pid=True) as (addr, pid),
        _channel(_h1(net, addr), mtls) as ch,
    ):
        c = Cluster(pb, ch, tmp_path / "sched.log")
        wait_until(lambda: len(c.status().workers) == 2, "2 workers over ssh", 20)
        connected = time.monotonic() - t0
        names = {w.name for w in c.status().workers}
        assert {n.rsplit("-", 1)[0] for n in names} == {h2, h3}, names
        st = c.status()
        assert st.launcher.kind == "ssh"
        assert sorted(u.where for u in st.launcher.units) == sorted([h2, h3]), st.launcher
        tasks, want = _graph(pb, "g", 20)
        c.stub.Submit(pb.tg.SubmitRequest(tasks=tasks), timeout=10)
        got = c.gather(list(want))
        _check(pb, got, want)
        # The large results stayed on workers of both hosts, and sums ran
        # next to results held on the other host (fetched peer to peer).
        bigs = c.gather([f"g-big-{i}" for i in range(20)], held=True)
        held_on = {}
        for i in range(20):
            r = bigs[f"g-big-{i}"]
            assert r.held and r.holders, r
            held_on[i] = {h.rsplit(":", 1)[0] for h in r.holders}
        assert set().union(*held_on.values()) == {h2, h3}, held_on
        ran_on = {i: got[f"g-sum-{i}"].worker.rsplit("-", 1)[0] for i in range(20)}
        assert set(ran_on.values()) <= {h2, h3}, ran_on
        crossed = [i for i in range(20) if ran_on[i] not in held_on[i] & held_on[(i + 1) % 20]]
        assert crossed, (ran_on, held_on)
        # A scheduler killed outright takes its ssh clients with it; the
        # channels close and the remote workers stop.
        assert _remote_workers(found["h2"][1]) and _remote_workers(found["h3"][1])
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: not _remote_workers(found["h2"][1]) and not _remote_workers(found["h3"][1]),
            "the remote workers to stop after the scheduler was killed",
            15,
        )
    print(f"2 workers over ssh connected {connected:.2f} s after the scheduler started")


def test_killed_host_workers_lose_nothing_and_are_replaced(pb, net, mtls, tmp_path):
    d, found = net
    h2, h3 = found["h2"][0], found["h3"][0]
    with (
        _start(net, mtls, [h2, h3], 2, tmp_path / "sched.log", nthreads=4) as addr,
        _channel(_h1(net, addr), mtls) as ch,
    ):
        c = Cluster(pb, ch, tmp_path / "sched.log")
        wait_until(lambda: len(c.status().workers) == 2, "2 workers over ssh", 20)
        before = {u.id for u in c.status().launcher.units}
        tasks, want = _graph(pb, "k", 20, sleep=1)
        c.stub.Submit(pb.tg.SubmitRequest(tasks=tasks), timeout=10)
        wait_until(lambda: c.status().processing > 0, "the graph to run")
        victims = _remote_workers(found["h3"][1])
        assert len(victims) == 1, victims
        kill = subprocess.run(
            ["ssh", "-F", str(d / "ssh_config"), "h3", f"kill -9 {' '.join(victims)}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        assert kill.returncode == 0, kill.stderr
        _check(pb, c.gather(list(want), timeout=60), want)

        # A new unit replaced the killed one, on h3 again (the host with
        # fewer live workers), and its worker connected.
        def replaced() -> bool:
            st = c.status()
            units = {u.id: u for u in st.launcher.units}
            new = [u for i, u in units.items() if i not in before]
            return len(st.workers) == 2 and len(new) == 1 and new[0].where == h3

        wait_until(replaced, "a replacement worker on h3", 20)
        assert _remote_workers(found["h3"][1]), "no worker runs in h3"
        # Scaling down drains the workers (once no result is wanted);
        # their ssh ends, and nothing is left running on the hosts.
        c.stub.Release(pb.tg.ReleaseRequest(keys=[t.key for t in tasks]), timeout=5)
        c.scale(0)
        wait_until(
            lambda: not c.status().workers and not c.status().launcher.units,
            "the workers and units to go after Scale(0)",
            20,
        )
        wait_until(
            lambda: not _remote_workers(found["h2"][1]) and not _remote_workers(found["h3"][1]),
            "no taskgrid-worker left in h2 and h3",
            10,
        )
    log = (tmp_path / "sched.log").read_text()
    assert f"ssh to {h3}" in log, log[-3000:]


def test_unreachable_host_is_named_and_others_work(pb, net, mtls, tmp_path):
    _d, found = net
    h2 = found["h2"][0]
    nobody = h2.rsplit(".", 1)[0] + ".77"  # on the bridge, no host has it
    log = tmp_path / "sched.log"
    with _start(net, mtls, [nobody, h2], 2, log) as addr, _channel(_h1(net, addr), mtls) as ch:
        c = Cluster(pb, ch, log)
        st = wait_until(
            lambda: (s := c.status()).launcher.failures > 0 and s,
            "the unreachable host to fail",
            30,
        )
        assert nobody in st.launcher.last_error, st.launcher.last_error
        assert "ssh" in st.launcher.last_error, st.launcher.last_error
        # Both workers end up on the host that answers.
        wait_until(lambda: len(c.status().workers) == 2, "2 workers on h2", 30)
        assert {w.name.rsplit("-", 1)[0] for w in c.status().workers} == {h2}
        tasks, want = _graph(pb, "u", 4)
        c.stub.Submit(pb.tg.SubmitRequest(tasks=tasks), timeout=10)
        _check(pb, c.gather(list(want)), want)
    text = log.read_text()
    assert f"ssh to {nobody} exited with status 255" in text, text[-3000:]


def _startup_error(args: list[str], env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [str(SCHEDULER), "--listen", "tcp://127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
    assert r.returncode != 0, r
    return r.stderr


def test_ssh_launcher_without_hosts_fails_at_start_up():
    err = _startup_error(["--launcher", "ssh"])
    assert "--launcher ssh needs --hosts" in err, err


def test_missing_ssh_program_fails_at_start_up(tmp_path):
    err = _startup_error(
        ["--launcher", "ssh", "--hosts", "h1"], env={**os.environ, "PATH": str(tmp_path)}
    )
    assert f"ssh: command not found in PATH ({tmp_path})" in err, err
    err = _startup_error(["--launcher", "ssh", "--hosts", "h1", "--ssh", str(tmp_path / "no-ssh")])
    assert f"cannot run {tmp_path / 'no-ssh'}" in err, err


_SSH_CLUSTER_SCRIPT = """
import json, os, sys, time
import taskgrid

bridge, h2, h3, config = sys.argv[1:5]
out = {}
with taskgrid.SSHCluster(
        [bridge, h2, h3], connect_options={"config": config},
        worker_options={"nthreads": 2}, remote_python=sys.executable,
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        security=True) as cluster:
    out["address"] = cluster.scheduler_address
    out["workers"] = sorted(w.name for w in cluster.status().workers)
    with taskgrid.Client(cluster) as client:
        futures = client.map(lambda x: x * x, range(20))
        out["squares"] = client.gather(futures)
    cluster.scale(1)
    deadline = time.monotonic() + 20
    while len(cluster.status().workers) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    out["after_scale"] = len(cluster.status().workers)
print(json.dumps(out))
"""


def test_ssh_cluster_from_python(net, tmp_path):
    """taskgrid.SSHCluster with this machine (its bridge address) as the
    scheduler's host and Python workers over ssh in h2 and h3, over
    mutual TLS with certificates made for the cluster (security=True)."""
    d, found = net
    h2, h3 = found["h2"][0], found["h3"][0]
    bridge = h2.rsplit(".", 1)[0] + ".254"  # this machine's address there
    env = {**python_env(), "TASKGRID_BIN_DIR": str(BIN)}
    r = subprocess.run(
        [sys.executable, "-c", _SSH_CLUSTER_SCRIPT, bridge, h2, h3, str(d / "ssh_config")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {n.rsplit("-", 1)[0] for n in out["workers"]} == {h2, h3}, out
    assert out["squares"] == [x * x for x in range(20)]
    assert out["after_scale"] == 1
    assert out["address"].startswith("tls://"), out  # security=True: mutual TLS
    # close() stopped the scheduler, which stopped the remote workers.
    wait_until(
        lambda: not _remote_workers(found["h2"][1]) and not _remote_workers(found["h3"][1]),
        "no taskgrid worker left in h2 and h3 after close()",
        15,
    )


@pytest.mark.parametrize("kind", ["c", "python"])
def test_worker_stops_at_end_of_file_on_its_parent_fd(pb, kind):
    """--exit-with-parent-fd 0: the worker leaves cleanly when its stdin
    (the ssh channel, for a launched worker) is closed."""
    with (
        run_scheduler(["--listen", "tcp://127.0.0.1:0", "--launcher", "none"]) as addr,
        grpc.insecure_channel(addr) as ch,
    ):
        name = f"eof-{kind}"
        cmd = [str(WORKER)] if kind == "c" else [sys.executable, "-m", "taskgrid.worker"]
        env = python_env()
        w = subprocess.Popen(
            [
                *cmd,
                f"tcp://{addr}",
                "--name",
                name,
                "--nthreads",
                "1",
                "--exit-with-parent-fd",
                "0",
            ],
            stdin=subprocess.PIPE,
            env=env,
        )
        try:
            stub = pb.tg_grpc.SchedulerStub(ch)

            def names() -> set[str]:
                return {x.name for x in stub.Status(pb.tg.StatusRequest(), timeout=5).workers}

            wait_until(lambda: name in names(), f"worker {name} to join", 20)
            assert w.stdin is not None
            w.stdin.close()
            assert w.wait(timeout=20) == 0
            wait_until(lambda: name not in names(), f"worker {name} to leave")
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
