# SPDX-License-Identifier: Apache-2.0
"""SLURMCluster: taskgrid workers in Slurm batch jobs, with dask-jobqueue's
options.

The C scheduler runs here, as a child of this process (the same start-up
and tear-down as LocalCluster's), with ``--launcher slurm``: each unit it
starts is one ``sbatch`` job running ``processes`` workers, watched with
``squeue`` and cancelled with ``scancel``. Scaling (``scale``, ``adapt``,
the scheduler's adaptive target) counts a job's workers toward the target
as soon as it is submitted (a job waiting in the queue is not submitted
twice) and rounds targets up to whole jobs. A job that ends (walltime,
pre-emption, ``scancel``) is replaced while the target wants it; tasks
that were running there are run again elsewhere. A job Slurm refuses is
counted in ``status().launcher.failures`` with sbatch's message in
``last_error``, and further submissions back off.

The compute nodes must reach the scheduler: by default it listens on
every address (``host="0.0.0.0"``) and jobs connect to this host's name
(``contact_address`` overrides it). Python workers on the nodes run as
``PYTHON -m taskgrid.worker`` (``python``: that interpreter's path on the
nodes, default this one's), C workers as the ``taskgrid-worker`` found
here (the same path must exist there). The jobs inherit this process's
environment (sbatch's default), so a shared file system with the same
installation is what the defaults expect.

Every dask-jobqueue option is either given its meaning here or refused,
naming it (see _JOBQUEUE_REFUSED); none is silently ignored.

Depends on cluster.py (LocalCluster's scheduler start-up) and client.py.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import _options
from ._tls_cluster import cluster_tls, scheduler_names
from .client import ClusterStatus, scale_rpc
from .cluster import C_WORKER, CERTS, SCHEDULER, LocalCluster, dashboard_args, find_binary
from .worker.core import format_resources
from .worker.memory import parse_memory_limit

__all__ = ["SLURMCluster"]


def _whole_seconds(value: Any) -> int:
    """death_timeout as whole seconds (0: workers never give up)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e7:
        raise ValueError(
            f"SLURMCluster(death_timeout=...) must be 0 or more seconds, not {value!r}"
        )
    return math.ceil(value)


# dask-jobqueue options taskgrid does not implement, and why.
_JOBQUEUE_REFUSED = {
    "nanny": "taskgrid workers run without a nanny: a worker that dies ends its job's "
    "share and the scheduler submits a replacement job while the target wants it",
    "interface": "give host= (the address the scheduler listens on) and "
    "contact_address= (the address the jobs connect to) instead",
    "shebang": "the job script is a bash script made by the scheduler",
    "header_skip": "the scheduler writes the #SBATCH lines from the options; "
    "add lines with job_extra_directives",
    "job_directives_skip": "the scheduler writes the #SBATCH lines from the options; "
    "add lines with job_extra_directives",
    "config_name": "taskgrid does not read Dask's configuration files: pass the options",
    "shared_temp_directory": "taskgrid makes no files for the workers to share",
    "job_cls": "the job script is made by the scheduler (--launcher slurm)",
    "scheduler_cls": "taskgrid runs its own C scheduler",
    "loop": "the cluster needs no event loop of yours",
    "job_cpu": "give cores= (the job's CPUs: #SBATCH --cpus-per-task)",
    "job_mem": "give memory= (the job's memory: #SBATCH --mem)",
    "worker_command": "give python= (the interpreter on the nodes, which runs "
    "taskgrid.worker) or worker='c'",
}
# Deprecated dask-jobqueue names, with the current one.
_JOBQUEUE_RENAMED = {
    "project": "account",
    "job_extra": "job_extra_directives",
    "env_extra": "job_script_prologue",
    "extra": "worker_extra_args",
}
_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def default_processes(cores: int) -> int:
    """dask-jobqueue's split of a job's cores into worker processes: one
    per core up to 4, else the smallest factor of `cores` >= its root."""
    if cores <= 4:
        return cores
    return min(f for f in range(1, cores + 1) if cores % f == 0 and f >= math.sqrt(cores))


def _lines(value: Any, what: str) -> list[str]:
    """A list option (job_extra_directives, ...) as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        raise TypeError(f"SLURMCluster({what}=...) expects a list of strings, not one string")
    out = [str(v) for v in value]
    for v in out:
        if "\n" in v or "\r" in v:
            raise ValueError(f"SLURMCluster({what}=...): {v!r} has a line break")
    return out


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"SLURMCluster({what}=...) expects a whole number >= 1, not {value!r}")
    return value


def _take_dask_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The dask-jobqueue options in `kwargs` that SLURMCluster's signature
    does not name: renamed ones returned under their current name, the
    LocalCluster ones mapped, unimplemented ones refused by name."""
    out: dict[str, Any] = {}
    for old, new in _JOBQUEUE_RENAMED.items():
        if old in kwargs:
            warnings.warn(
                f"SLURMCluster({old}=...) is dask-jobqueue's old name of {new}=",
                FutureWarning,
                stacklevel=3,
            )
            out[new] = kwargs.pop(old)
    for name in list(kwargs):
        if name in _JOBQUEUE_REFUSED:
            raise NotImplementedError(
                f"SLURMCluster({name}=...) is not supported: {_JOBQUEUE_REFUSED[name]}"
            )
    if kwargs.pop("asynchronous", False):
        raise NotImplementedError(
            "SLURMCluster(asynchronous=True) is not supported: use it from ordinary (blocking) code"
        )
    if "silence_logs" in kwargs:
        out["log_level"] = _options._silence(kwargs.pop("silence_logs"))
    protocol = kwargs.pop("protocol", None)
    if protocol not in (None, "tcp", "tcp://", "tls", "tls://"):
        raise NotImplementedError(
            f"SLURMCluster(protocol={protocol!r}) is not supported: taskgrid speaks tcp:// "
            "or, with security=, tls://"
        )
    out["protocol"] = (protocol or "tcp").rstrip(":/")
    if kwargs:
        raise TypeError(
            f"SLURMCluster() got an unexpected argument {sorted(kwargs)[0]!r}: it is neither "
            "a taskgrid SLURMCluster option nor a dask-jobqueue one taskgrid supports"
        )
    return out


def _scheduler_options(opts: Mapping[str, Any] | None) -> dict[str, Any]:
    """dask-jobqueue's ``scheduler_options``: host, port and
    dashboard_address are taken; anything else is refused by name."""
    got = dict(opts or {})
    out: dict[str, Any] = {k: got.pop(k) for k in ("host", "port", "dashboard_address") if k in got}
    if got:
        raise NotImplementedError(
            f"SLURMCluster(scheduler_options={{{sorted(got)[0]!r}: ...}}) is not supported: "
            "scheduler_options takes host, port and dashboard_address"
        )
    return out


class SLURMCluster(LocalCluster):
    """A scheduler here and workers in Slurm jobs (dask-jobqueue's
    SLURMCluster options; see the module's docstring).

    Per job: ``cores`` CPUs (``#SBATCH --cpus-per-task``, default 1),
    ``memory`` (``--mem``, e.g. "4GiB"; each worker's memory limit is its
    share), ``processes`` workers (default: dask-jobqueue's split of the
    cores) of ``cores // processes`` threads each; ``queue`` (partition),
    ``account``, ``walltime`` ("01:00:00"), ``job_name`` (default
    "taskgrid-worker"), ``job_extra_directives`` (more ``#SBATCH`` lines),
    ``job_script_prologue`` (shell lines run first), ``worker_extra_args``
    (more worker arguments), ``log_directory`` (the jobs' output files),
    ``local_directory`` (the workers' spill folder). ``n_workers`` jobs'
    worth of workers are asked for at once (default 0: none until
    scale/adapt). ``python`` is the interpreter on the nodes; ``worker``
    "python" or "c"; ``resources`` and ``preload`` as LocalCluster's;
    ``security``: True (certificates made for this cluster, in
    ``certs_dir`` or a private folder), a taskgrid-certs folder or a
    Dask-style Security naming the files (tls://; see _tls_cluster.py).
    ``host``/``scheduler_port`` (or ``scheduler_options``) say where the
    scheduler listens (default every address; the jobs must reach it),
    ``contact_address`` where jobs connect; ``slurm_bin_dir`` where sbatch, squeue and scancel are
    (default PATH); ``death_timeout`` how long a worker waits for a
    scheduler gone before it exits and its job ends (seconds, default 60
    as dask-jobqueue; 0: never); ``job_poll_interval`` how often squeue is asked
    (seconds, default 2). Not starting any job, the cluster returns once
    the scheduler is up; wait_for_workers() waits for jobs to connect.
    """

    def __init__(
        self,
        n_workers: int = 0,
        cores: int | None = None,
        memory: str | int | None = None,
        processes: int | None = None,
        queue: str | None = None,
        account: str | None = None,
        walltime: str | None = None,
        job_name: str | None = None,
        job_extra_directives: Sequence[str] | None = None,
        job_script_prologue: Sequence[str] | None = None,
        worker_extra_args: Sequence[str] | None = None,
        log_directory: str | os.PathLike[str] | None = None,
        local_directory: str | os.PathLike[str] | None = None,
        python: str | None = None,
        security: Any = None,
        certs_dir: str | os.PathLike[str] | None = None,
        resources: Mapping[str, float] | None = None,
        preload: Sequence[str] = (),
        worker: str = "python",
        env: Mapping[str, str] | None = None,
        log_level: str | None = None,
        host: str | None = None,
        scheduler_port: int = 0,
        scheduler_options: Mapping[str, Any] | None = None,
        contact_address: str | None = None,
        dashboard_address: str | bool | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
        slurm_bin_dir: str | os.PathLike[str] | None = None,
        job_poll_interval: float = 2.0,
        death_timeout: float = 60,
        timeout: float = 30.0,
        name: Any = None,
        **dask_options: Any,
    ) -> None:
        options = dict(locals())
        for k in ("self", "dask_options", "env", "timeout"):
            options.pop(k)
        self._prepare(options, dask_options)
        if log_directory is not None:
            # As dask-jobqueue: Slurm does not make the output files' folder.
            os.makedirs(log_directory, exist_ok=True)
        self._init_state(self.log_level, timeout)
        self.security = self._tls.client() if self._tls is not None else None
        self._tee_stderr = True
        self._start_scheduler(self._args, env)
        try:
            if n_workers:
                self.scale(n_workers)
        except BaseException:
            self.close()
            raise

    def _prepare(self, o: dict[str, Any], dask_options: dict[str, Any]) -> None:
        """Check the options and make the scheduler's command (self._args);
        starts nothing."""
        mapped = _take_dask_options(dask_options)
        o.update({k: v for k, v in mapped.items() if k in o and k != "log_level"})
        sched = _scheduler_options(o["scheduler_options"])
        port = int(sched.get("port", o["scheduler_port"]))
        worker = o["worker"]
        if worker not in ("python", "c"):
            raise ValueError("SLURMCluster(worker=...) must be 'python' or 'c'")
        self.cores = _positive(1 if o["cores"] is None else o["cores"], "cores")
        procs = o["processes"]
        self.job_processes = _positive(
            default_processes(self.cores) if procs is None else procs, "processes"
        )
        if self.job_processes > 64:
            raise ValueError("SLURMCluster(processes=...) allows at most 64 workers per job")
        memory = o["memory"]
        if memory is not None and parse_memory_limit(memory, "SLURMCluster(memory=...)") == 0:
            raise ValueError(f"SLURMCluster(memory=...) must be above 0, not {memory!r}")
        n = o["n_workers"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"SLURMCluster(n_workers=...) expects a number >= 0, not {n!r}")
        self.memory = memory
        self.processes = True
        self.worker_kind = worker
        self.threads_per_worker = max(1, self.cores // self.job_processes)
        self.n_workers = n
        self.resources = dict(o["resources"] or {})
        self.preload = list(o["preload"])
        self.log_level = o["log_level"] or mapped.get("log_level") or "warn"
        self.name = o["name"]
        self.memory_limit = 0
        self.job_name = o["job_name"] or "taskgrid-worker"
        self._listen_host = sched.get("host", o["host"])
        if self._listen_host is None:
            self._listen_host = "0.0.0.0"
        self._contact = o["contact_address"]
        self._tls = cluster_tls(
            o["security"],
            "SLURMCluster",
            o["certs_dir"],
            lambda: self._cert_names(),
            lambda: find_binary(CERTS, o["bin_dir"]),
        )
        self._made_dirs = [self._tls.made] if self._tls is not None and self._tls.made else []
        if mapped["protocol"] == "tls" and self._tls is None:
            raise ValueError("SLURMCluster(protocol='tls://') needs security= (the TLS files)")
        scheme = "tls" if self._tls is not None else "tcp"
        args = [
            find_binary(SCHEDULER, o["bin_dir"]),
            *("--listen", f"{scheme}://{self._listen_host}:{port}"),
            *("--log-level", self.log_level, "--launcher", "slurm"),
            *("--job-cores", str(self.cores), "--job-processes", str(self.job_processes)),
            *("--worker-log-level", self.log_level),
            *("--job-poll-interval", str(max(100, int(o["job_poll_interval"] * 1000)))),
            *("--worker-death-timeout", str(_whole_seconds(o["death_timeout"]))),
        ]
        args += dashboard_args(sched.get("dashboard_address", o["dashboard_address"]))
        if self._tls is not None:
            args += self._tls.args()
        log_dir, slurm_bin = o["log_directory"], o["slurm_bin_dir"]
        for flag, value in (
            ("--job-memory", memory),
            ("--job-queue", o["queue"]),
            ("--job-account", o["account"]),
            ("--job-walltime", o["walltime"]),
            ("--job-name", o["job_name"]),
            ("--job-log-dir", os.path.abspath(log_dir) if log_dir else None),
            ("--slurm-bin-dir", os.path.abspath(slurm_bin) if slurm_bin else None),
            ("--contact-address", self._contact),
        ):
            if value is not None:
                args += [flag, str(value)]
        for d in _lines(o["job_extra_directives"], "job_extra_directives"):
            args += ["--job-directive", d]
        for line in _lines(o["job_script_prologue"], "job_script_prologue"):
            args += ["--job-prologue", line]
        extra = _lines(o["worker_extra_args"], "worker_extra_args")
        if o["local_directory"] is not None:
            extra += ["--spill-dir", os.fspath(o["local_directory"])]
        for a in extra:
            args += ["--worker-extra-arg", a]
        if worker == "c":
            args += ["--worker-bin", find_binary(C_WORKER, o["bin_dir"])]
        else:
            interpreter = o["python"] or sys.executable
            args += ["--worker-command", f"{shlex.quote(interpreter)} -m taskgrid.worker"]
        if self.resources:
            args += ["--worker-resources", format_resources(self.resources)]
        for p in self.preload:
            args += ["--worker-preload", p]
        self._args = args

    # -- dask-jobqueue's interface ---------------------------------------------

    def __repr__(self) -> str:
        jobs = -(-self.n_workers // self.job_processes)
        return (
            f"<taskgrid.SLURMCluster {getattr(self, 'address', '?')} "
            f"target {self.n_workers} {self.worker_kind} workers ({jobs} jobs of "
            f"{self.job_processes} x {self.threads_per_worker} threads)>"
        )

    def _per_worker(self, memory: Any, cores: Any) -> int | None:
        """Workers for a total of `memory` or `cores` (None if neither)."""
        if memory is not None:
            if self.memory is None:
                raise ValueError("scale/adapt by memory needs SLURMCluster(memory=...)")
            each = parse_memory_limit(self.memory) / self.job_processes
            return math.ceil(parse_memory_limit(memory) / each)
        if cores is not None:
            return math.ceil(float(cores) / self.threads_per_worker)
        return None

    def scale(
        self, n: int | None = None, jobs: int = 0, memory: Any = None, cores: Any = None
    ) -> None:
        """Ask for `n` workers, or `jobs` jobs (``jobs * processes``
        workers), or enough for `memory` or `cores` in all, as in
        dask-jobqueue. The scheduler submits or cancels whole jobs (extra
        workers are drained first: running work finishes)."""
        if n is None:
            n = jobs * self.job_processes if jobs else self._per_worker(memory, cores) or 0
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"scale: n must be a number of workers >= 0, not {n!r}")
        self.n_workers = n
        scale_rpc(self._rpc_client(), workers=n)

    def adapt(
        self,
        minimum: int | None = 0,
        maximum: int | None = None,
        minimum_jobs: int | None = None,
        maximum_jobs: int | None = None,
        minimum_cores: Any = None,
        maximum_cores: Any = None,
        minimum_memory: Any = None,
        maximum_memory: Any = None,
        **kwargs: Any,
    ) -> None:
        """Adaptive scaling between bounds given in workers, jobs
        (``minimum_jobs``/``maximum_jobs``: times ``processes``), cores or
        memory, as in dask-jobqueue; other Dask adapt() options are
        accepted and ignored as LocalCluster.adapt says."""
        if minimum_jobs is not None:
            minimum = minimum_jobs * self.job_processes
        if maximum_jobs is not None:
            maximum = maximum_jobs * self.job_processes
        lo = self._per_worker(minimum_memory, minimum_cores)
        hi = self._per_worker(maximum_memory, maximum_cores)
        super().adapt(minimum if lo is None else lo, maximum if hi is None else hi, **kwargs)

    def _cert_names(self) -> list[str]:
        """What the scheduler's certificate names (security=True): this
        host's names, the listen host and the contact address's host."""
        names = scheduler_names(self._listen_host, [])
        if self._contact:
            host = self._contact.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
            names.append(host)
        return list(dict.fromkeys(names))

    def contact(self) -> str:
        """The address the jobs connect to."""
        if self._contact:
            return str(self._contact)
        scheme, _, rest = self.address.partition("://")
        where, _, port = rest.rpartition(":")
        if self._listen_host in _WILDCARD_HOSTS or where in _WILDCARD_HOSTS:
            where = socket.gethostname()
        return f"{scheme}://{where}:{port}"

    def job_script(self) -> str:
        """The batch script each job runs (``$TASKGRID_UNIT`` stands for
        the unit id the scheduler gives each job)."""
        args = [*self._args, "--print-job-script"]
        if not self._contact:
            args += ["--contact-address", self.contact()]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        if r.returncode != 0:
            raise RuntimeError(
                f"taskgrid-scheduler --print-job-script failed (status {r.returncode}): "
                f"{r.stderr.strip()}"
            )
        return r.stdout

    def _wait_hint(self, st: ClusterStatus) -> str:
        """wait_for_workers' time-out says what the launcher reports
        (pending jobs, Slurm's last refusal)."""
        ln = st.launcher
        if ln is None:
            return ""
        pending = sum(u.state == "pending" for u in ln.units)
        why = f"; {len(ln.units)} jobs, {pending} pending in the queue"
        if ln.last_error:
            why += f"; last failure: {ln.last_error}"
        return why
