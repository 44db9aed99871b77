# SPDX-License-Identifier: Apache-2.0
"""taskgrid.SLURMCluster's options without a Slurm: dask-jobqueue's names
mapped to the scheduler's --job-* options (checked in the job script the
real scheduler prints for them), the options taskgrid does not implement
refused by name, and Status' launcher as plain data. The cluster with
real Slurm jobs is tested in tests/python/test_slurm_cluster.py."""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import Any

import pytest

import taskgrid
from taskgrid import _status, jobqueue
from taskgrid.v1 import taskgrid_pb2 as pb


def prepared(**options: Any) -> taskgrid.SLURMCluster:
    """A SLURMCluster with its options checked and its scheduler command
    made, not started (no Slurm needed)."""
    c = object.__new__(taskgrid.SLURMCluster)
    dask = {k: options.pop(k) for k in list(options) if k not in _SIGNATURE}
    c._prepare({**_DEFAULTS, **options}, dask)
    return c


_DEFAULTS = {
    k: v.default
    for k, v in __import__("inspect").signature(taskgrid.SLURMCluster.__init__).parameters.items()
    if k not in ("self", "dask_options", "env", "timeout")
}
_SIGNATURE = set(_DEFAULTS)


def job_script(c: taskgrid.SLURMCluster, contact: str = "tcp://head-node:8786") -> str:
    """The script the scheduler prints for `c`'s options."""
    r = subprocess.run(
        [*c._args, "--print-job-script", "--contact-address", contact],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _after(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_dask_jobqueue_options_become_the_job_script(binaries, tmp_path) -> None:
    c = prepared(
        cores=4,
        memory="8GiB",
        processes=2,
        queue="gpu",
        account="proj7",
        walltime="01:30:00",
        job_name="tg-test",
        job_extra_directives=["--exclusive", "--constraint=avx2"],
        job_script_prologue=["module load python", "export FOO=1"],
        worker_extra_args=["--heartbeat-ms", "500"],
        log_directory=str(tmp_path / "logs"),
        python="/opt/venv/bin/python",
        resources={"GPU": 1},
    )
    script = job_script(c)
    lines = sbatch_lines(script)
    assert "#SBATCH -J tg-test" in lines
    assert "#SBATCH -p gpu" in lines
    assert "#SBATCH -A proj7" in lines
    assert "#SBATCH --cpus-per-task=4" in lines
    assert "#SBATCH --mem=8192M" in lines
    assert "#SBATCH -t 01:30:00" in lines
    assert lines[-2:] == ["#SBATCH --exclusive", "#SBATCH --constraint=avx2"]
    assert f"#SBATCH -o {tmp_path}/logs/tg-test-%j.out" in lines
    body = script.splitlines()
    assert body.index("module load python") < body.index("export FOO=1")
    workers = [line for line in body if "/opt/venv/bin/python -m taskgrid.worker" in line]
    assert len(workers) == 2  # processes=2: two workers per job
    for w in workers:
        words = shlex.split(w)
        assert "tcp://head-node:8786" in words
        assert _after(words, "--nthreads") == "2"  # cores // processes
        assert _after(words, "--memory-limit") == "4294967296"  # memory / processes
        assert _after(words, "--heartbeat-ms") == "500"
        assert _after(words, "--resources") == "GPU=1"
    assert body.index("export FOO=1") < body.index(workers[0])
    assert (c.cores, c.job_processes, c.threads_per_worker) == (4, 2, 2)


def test_c_workers_and_defaults(binaries) -> None:
    c = prepared(worker="c")
    script = job_script(c)
    assert "#SBATCH -J taskgrid-worker" in sbatch_lines(script)
    assert "#SBATCH --cpus-per-task=1" in sbatch_lines(script)
    assert not any(line.startswith("#SBATCH --mem") for line in sbatch_lines(script))
    (worker,) = [line for line in script.splitlines() if "tcp://head-node:8786" in line]
    assert binaries[1] in worker and "taskgrid.worker" not in worker
    # Listens on every address: the nodes must reach it.
    assert c._args[c._args.index("--listen") + 1] == "tcp://0.0.0.0:0"


def test_default_python_is_this_interpreter(binaries) -> None:
    c = prepared(cores=6)
    assert c.job_processes == 3  # dask-jobqueue's split of 6 cores
    assert f"--worker-command {sys.executable} -m taskgrid.worker" in " ".join(c._args)


@pytest.mark.parametrize(
    ("cores", "processes"), [(1, 1), (2, 2), (4, 4), (6, 3), (8, 4), (12, 4), (36, 6)]
)
def test_default_processes_follow_dask_jobqueue(cores: int, processes: int) -> None:
    assert jobqueue.default_processes(cores) == processes


def test_scheduler_options_and_local_directory(binaries, tmp_path) -> None:
    c = prepared(
        scheduler_options={"host": "10.0.0.5", "port": 8786, "dashboard_address": ":0"},
        local_directory=str(tmp_path),
        contact_address="tcp://login1:8786",
    )
    args = c._args
    assert args[args.index("--listen") + 1] == "tcp://10.0.0.5:8786"
    assert args[args.index("--dashboard-address") + 1] == ":0"
    assert args[args.index("--contact-address") + 1] == "tcp://login1:8786"
    assert ["--worker-extra-arg", "--spill-dir", "--worker-extra-arg", str(tmp_path)] == args[
        args.index("--spill-dir") - 1 : args.index("--spill-dir") + 3
    ]
    with pytest.raises(NotImplementedError, match="scheduler_options=.'interface'"):
        prepared(scheduler_options={"interface": "ib0"})


@pytest.mark.parametrize("name", sorted(jobqueue._JOBQUEUE_REFUSED))
def test_unimplemented_dask_jobqueue_options_are_refused_by_name(name: str) -> None:
    with pytest.raises(NotImplementedError, match=rf"SLURMCluster\({name}=\.\.\.\) is not"):
        prepared(**{name: "x"})


def test_old_names_keep_their_meaning(binaries) -> None:
    with pytest.warns(FutureWarning, match="old name of account="):
        c = prepared(project="p1", env_extra=["module load x"])
    args = c._args
    assert args[args.index("--job-account") + 1] == "p1"
    assert args[args.index("--job-prologue") + 1] == "module load x"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bogus": 1}, TypeError, "unexpected argument 'bogus'"),
        ({"asynchronous": True}, NotImplementedError, "asynchronous=True"),
        ({"protocol": "ucx://"}, NotImplementedError, "protocol='ucx://'"),
        ({"protocol": "tls://"}, ValueError, "needs security="),
        ({"cores": 0}, ValueError, r"cores=\.\.\.\) expects a whole number"),
        ({"processes": 65}, ValueError, "at most 64"),
        ({"memory": "lots"}, ValueError, "memory=.... must be bytes"),
        ({"memory": 0}, ValueError, "must be above 0"),
        ({"worker": "go"}, ValueError, "'python' or 'c'"),
        ({"n_workers": -1}, ValueError, "n_workers"),
        ({"job_extra_directives": "--exclusive"}, TypeError, "list of strings"),
        ({"job_script_prologue": ["a\nb"]}, ValueError, "line break"),
        ({"security": "/nonexistent"}, ValueError, "ca file is '/nonexistent/ca.pem'"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        prepared(**options)


def test_the_scheduler_checks_what_python_passes_on(binaries) -> None:
    # A walltime Slurm would refuse fails at start-up, naming the option.
    r = subprocess.run(
        [*prepared(walltime="soon")._args, "--print-job-script"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 2 and "--job-walltime expects a time" in r.stderr


def test_tls_from_a_taskgrid_certs_folder(binaries, tmp_path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [taskgrid.find_binary("taskgrid-certs"), str(certs), "--hosts", "localhost"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    c = prepared(security=str(certs))
    args = c._args
    assert args[args.index("--listen") + 1].startswith("tls://")
    assert args[args.index("--worker-tls-cert") + 1] == str(certs / "worker.pem")
    # The cluster's own calls (scale, adapt) need the admin role.
    assert c._tls is not None and c._tls.client().cert == str(certs / "admin.pem")
    (worker,) = [
        shlex.split(line)
        for line in job_script(c, "tls://head-node:8786").splitlines()
        if "taskgrid.worker" in line
    ]
    assert _after(worker, "--tls-cert") == str(certs / "worker.pem")
    assert _after(worker, "--tls-key") == str(certs / "worker-key.pem")
    assert _after(worker, "--tls-ca") == str(certs / "ca.pem")


def test_launcher_status_as_plain_data() -> None:
    assert _status.launcher_status(pb.StatusResponse()) is None
    unit = pb.LauncherUnit(id="7", state="pending", where="slurm job 9", workers=2)
    msg = pb.LauncherStatus(kind="slurm", target=3, active=2, failures=4, units=[unit])
    got = _status.launcher_status(pb.StatusResponse(launcher=msg))
    want_unit = taskgrid.LauncherUnit("7", "pending", "slurm job 9", 2, 0)
    assert got == taskgrid.LauncherStatus("slurm", 3, 2, 0, 4, "", [want_unit])


def test_prefect_names_the_slurm_cluster_for_dask_jobqueue() -> None:
    pytest.importorskip("prefect")
    from taskgrid._prefect_dask import resolve_cluster_class

    assert resolve_cluster_class("taskgrid.SLURMCluster") is taskgrid.SLURMCluster
    with pytest.raises(ValueError, match="use taskgrid.SLURMCluster for Slurm"):
        resolve_cluster_class("dask_jobqueue.SLURMCluster")


def test_death_timeout_reaches_the_workers() -> None:
    # dask-jobqueue's default, 60 s: a job whose scheduler died ends soon.
    assert "'--death-timeout' '60'" in job_script(prepared())
    assert "'--death-timeout' '15'" in job_script(prepared(death_timeout=14.2))
    assert "--death-timeout" not in job_script(prepared(death_timeout=0))
    with pytest.raises(ValueError, match="death_timeout=.... must be 0 or more seconds"):
        prepared(death_timeout=-1)
