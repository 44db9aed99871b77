# SPDX-License-Identifier: Apache-2.0
"""taskgrid.SLURMCluster on a real one-node Slurm (tests/cluster/slurm.sh):
workers run in sbatch jobs the scheduler submits, watches and cancels.

- a Prefect flow (TaskgridTaskRunner with cluster_class
  "taskgrid.SLURMCluster", adaptive) runs a diamond; jobs appear in squeue
  while it runs and none is left after it;
- scale(jobs=2) with processes=2 gives 4 workers, scale(0) empties the
  queue; a job held in the queue is reported pending and counts as
  capacity; scancel of a worker's job mid-graph loses no result;
- workers in jobs join over mutual TLS (security=a taskgrid-certs folder);
- a job Slurm refuses puts sbatch's message in status().launcher;
- a missing sbatch fails at start-up naming it; job_script();
- the time from scale(jobs=3) to 3 connected workers is printed.

Skips only where slurm.sh says this machine cannot run Slurm (exit 77)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

# Prefect without a server (a temporary API per flow run), isolated, set
# before Prefect is first imported.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="taskgrid-test-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import pytest
import taskgrid
from conftest import ROOT, wait_until

SLURM_SH = ROOT / "tests" / "cluster" / "slurm.sh"
UNAVAILABLE = 77  # slurm.sh's "this machine cannot run it"


def _slurm_sh(*args: str) -> str:
    r = subprocess.run(
        ["bash", str(SLURM_SH), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if r.returncode == UNAVAILABLE:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, f"slurm.sh {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """A one-node Slurm for this module; its SLURM_CONF is exported (the
    scheduler's sbatch, squeue and scancel read it); yields a folder for
    the jobs' output files."""
    d = tmp_path_factory.mktemp("slurm")
    _slurm_sh("start", str(d))
    saved = dict(os.environ)
    try:
        for line in _slurm_sh("env", str(d)).splitlines():
            k, sep, v = line.partition("=")
            assert sep, f"slurm.sh env printed {line!r}"
            os.environ[k] = v
        logs = d / "jobs"
        logs.mkdir()
        yield logs
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _slurm_sh("stop", str(d))


def _options(logs: pathlib.Path, **extra: Any) -> dict[str, Any]:
    """SLURMCluster options for a test: loopback, a job name of its own
    (squeue is asked about that name), output files under `logs`."""
    return {
        "host": "127.0.0.1",
        "cores": 1,
        "processes": 1,
        "job_name": f"tg-{uuid.uuid4().hex[:8]}",
        "log_directory": str(logs),
        "job_poll_interval": 0.3,
        "log_level": os.environ.get("TG_TEST_LOG_LEVEL", "warn"),
        "dashboard_address": None,
        # The node has few CPUs: let jobs share them.
        "job_extra_directives": ["--oversubscribe"],
        **extra,
    }


def squeue(name: str) -> dict[str, str]:
    """Jobs named `name` in the queue: {job id: state}."""
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i %T"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def job_of(unit: taskgrid.LauncherUnit) -> str | None:
    """The Slurm job id of a unit ("slurm job 42"), once known."""
    prefix = "slurm job "
    rest = unit.where[len(prefix) :] if unit.where.startswith(prefix) else ""
    return rest if rest.isdigit() else None


def slow_square(x: int) -> int:
    time.sleep(0.4)
    return x * x


# ---------------------------------------------------------------- Prefect

from prefect import flow, task, unmapped


@task
def seed() -> int:
    return 3


@task
def left(a: int, i: int) -> int:
    time.sleep(0.5)
    return a + i


@task
def right(a: int, i: int) -> int:
    time.sleep(0.5)
    return a * i


@task
def join(bs: list[int], cs: list[int]) -> int:
    return sum(bs) - sum(cs)


@flow
def diamond(width: int) -> int:
    a = seed.submit()
    bs = left.map(unmapped(a), range(width))
    cs = right.map(unmapped(a), range(width))
    return join.submit(bs, cs).result()


def test_prefect_flow_runs_on_slurm_jobs(slurm: pathlib.Path) -> None:
    from taskgrid.prefect import TaskgridTaskRunner

    opts = _options(slurm)
    name = opts["job_name"]
    runner = TaskgridTaskRunner(
        cluster_class="taskgrid.SLURMCluster",
        cluster_kwargs=opts,
        adapt_kwargs={"minimum": 0, "maximum": 3},
    )
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(squeue(name))
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        width = 8
        got = diamond.with_options(task_runner=runner)(width)
    finally:
        done.set()
        watcher.join(15)
    assert got == sum(3 + i for i in range(width)) - sum(3 * i for i in range(width))
    assert len(seen) >= 2, f"jobs seen in squeue while the flow ran: {seen}"
    wait_until(lambda: not squeue(name), f"jobs {name} to leave squeue", timeout=30)


# ---------------------------------------------------------------- scaling


def test_scale_jobs_then_zero(slurm: pathlib.Path) -> None:
    opts = _options(slurm, cores=2, processes=2)
    with taskgrid.SLURMCluster(**opts) as cluster:
        cluster.scale(jobs=2)
        assert cluster.n_workers == 4
        ln = wait_until(
            lambda: (st := cluster.status().launcher) and len(st.units) == 2 and st,
            "2 units",
        )
        assert (ln.kind, ln.target, ln.active) == ("slurm", 4, 4)
        assert all(
            u.workers == 2 and u.state in ("starting", "pending", "running")
            for u in ln.units
        )
        cluster.wait_for_workers(4, timeout=60)
        st = cluster.status()
        names = {w.name for w in st.workers}
        assert st.launcher is not None
        jobs = {job_of(u) for u in st.launcher.units}
        assert jobs == set(squeue(opts["job_name"])), (jobs, squeue(opts["job_name"]))
        assert names == {f"slurm-{j}-{k}" for j in jobs for k in (0, 1)}
        assert all(
            u.connected == 2 and u.state == "running" for u in st.launcher.units
        ), st.launcher
        assert all(w.nthreads == 1 for w in st.workers)  # cores // processes
        cluster.scale(0)
        wait_until(
            lambda: not squeue(opts["job_name"]), "the jobs to leave squeue", timeout=30
        )
        wait_until(lambda: not cluster.status().workers, "the workers to leave")
        wait_until(lambda: not cluster.status().launcher.units, "the units to end")  # type: ignore[union-attr]


def test_a_queued_job_is_pending_capacity_and_cancelled(slurm: pathlib.Path) -> None:
    # --begin keeps the job in the queue: Slurm reports it PENDING.
    opts = _options(slurm, job_extra_directives=["--begin=now+1hour"])
    with taskgrid.SLURMCluster(**opts) as cluster:
        cluster.scale(1)
        ln = wait_until(
            lambda: (
                (st := cluster.status().launcher)
                and st.units
                and st.units[0].state == "pending"
                and job_of(st.units[0])
                and st
            ),
            "the job to be pending",
        )
        job = job_of(ln.units[0])
        assert squeue(opts["job_name"]) == {job: "PENDING"}
        assert (ln.active, ln.starting, ln.failures) == (1, 1, 0)
        time.sleep(1.5)  # several squeue polls: a pending job is not submitted twice
        assert len(squeue(opts["job_name"])) == 1
        cluster.scale(0)
        wait_until(
            lambda: not squeue(opts["job_name"]), "the pending job to be cancelled"
        )


def test_scancel_of_a_workers_job_loses_nothing(slurm: pathlib.Path) -> None:
    opts = _options(slurm)
    with taskgrid.SLURMCluster(**opts) as cluster, taskgrid.Client(cluster) as client:
        cluster.scale(jobs=2)
        cluster.wait_for_workers(2, timeout=60)
        first = cluster.status().launcher
        assert first is not None
        futures = client.map(slow_square, range(16), pure=False)
        wait_until(
            lambda: all(w.processing for w in cluster.status().workers),
            "both workers busy",
        )
        victim = job_of(first.units[0])
        assert victim is not None
        subprocess.run(["scancel", victim], check=True, timeout=10)
        assert client.gather(futures) == [x * x for x in range(16)]
        # The job was replaced: the target still wants 2 workers.
        wait_until(
            lambda: (
                len(cluster.status().workers) == 2
                and victim not in {job_of(u) for u in cluster.status().launcher.units}
            ),  # type: ignore[union-attr]
            "a replacement job's worker",
            timeout=60,
        )


@pytest.mark.parametrize("how", ["folder", "made for the cluster"])
def test_workers_in_jobs_over_mutual_tls(
    slurm: pathlib.Path, certs: pathlib.Path, how: str
) -> None:
    # A taskgrid-certs folder (conftest), the scheduler's naming 127.0.0.1;
    # or security=True: certificates made for this cluster, removed with it.
    security: Any = str(certs) if how == "folder" else True
    with (
        taskgrid.SLURMCluster(security=security, **_options(slurm)) as cluster,
        taskgrid.Client(cluster) as client,
    ):
        assert cluster.address.startswith("tls://")
        cluster.scale(1)
        assert client.submit(slow_square, 7).result(timeout=60) == 49
        (unit,) = cluster.status().launcher.units  # type: ignore[union-attr]
        assert unit.connected == 1
        made = list(getattr(cluster, "_made_dirs", []))
    assert (len(made) == 1) == (how != "folder")
    assert all(not os.path.exists(d) for d in made)  # removed with the cluster


# ---------------------------------------------------------------- failures


def test_a_job_slurm_refuses_is_reported(slurm: pathlib.Path) -> None:
    opts = _options(slurm, queue="nosuchpartition")
    with taskgrid.SLURMCluster(**opts) as cluster:
        cluster.scale(1)
        ln = wait_until(
            lambda: (st := cluster.status().launcher) and st.failures >= 1 and st,
            "a failed submission",
        )
        assert "invalid partition" in ln.last_error.lower(), ln.last_error
        assert "sbatch" in ln.last_error
        # Submissions are retried (after a back-off) and fail again.
        wait_until(
            lambda: cluster.status().launcher.failures >= 2,  # type: ignore[union-attr]
            "a second failed submission",
        )
        assert cluster._proc is not None and cluster._proc.poll() is None
        assert not squeue(opts["job_name"])
        with pytest.raises(TimeoutError, match="invalid partition"):
            cluster.wait_for_workers(1, timeout=1)


def test_missing_sbatch_fails_at_start_up(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    with pytest.raises(RuntimeError, match=r"status 2 at start-up.*needs sbatch"):
        taskgrid.SLURMCluster(host="127.0.0.1", slurm_bin_dir=str(empty))


# ---------------------------------------------------------------- job script, timing


def test_job_script(slurm: pathlib.Path) -> None:
    opts = _options(
        slurm,
        cores=4,
        processes=2,
        memory="2GiB",
        queue="debug",
        walltime="00:10:00",
        job_extra_directives=["--oversubscribe", "--comment=taskgrid"],
        job_script_prologue=["export TG_PROLOGUE=1"],
    )
    with taskgrid.SLURMCluster(**opts) as cluster:
        script = cluster.job_script()
        contact = cluster.contact()
    lines = script.splitlines()
    for want in (
        f"#SBATCH -J {opts['job_name']}",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=2048M",
        "#SBATCH -p debug",
        "#SBATCH -t 00:10:00",
        "#SBATCH --oversubscribe",
        "#SBATCH --comment=taskgrid",
        "export TG_PROLOGUE=1",
    ):
        assert want in lines, (want, script)
    workers = [line for line in lines if f"{sys.executable} -m taskgrid.worker" in line]
    assert len(workers) == 2 and all(contact in w for w in workers), script
    assert contact.startswith("tcp://127.0.0.1:")
    assert lines.index("export TG_PROLOGUE=1") < lines.index(workers[0])


def test_time_to_three_workers(slurm: pathlib.Path) -> None:
    with taskgrid.SLURMCluster(**_options(slurm)) as cluster:
        t0 = time.monotonic()
        cluster.scale(jobs=3)
        cluster.wait_for_workers(3, timeout=60)
        elapsed = time.monotonic() - t0
        print(f"\nscale(jobs=3) to 3 connected workers: {elapsed:.2f} s")
        assert len(cluster.status().workers) == 3
