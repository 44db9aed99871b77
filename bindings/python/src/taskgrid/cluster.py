# SPDX-License-Identifier: Apache-2.0
"""LocalCluster: a temporary taskgrid cluster on this machine.

The C scheduler runs as a child process on loopback; workers are either
processes started and supervised by the scheduler's own launcher (Python
workers through a small wrapper script, or C workers), restarted if they
die, or, with ``processes=False``, Python workers running as threads of this
process. Everything is torn down on close() (and at interpreter exit).

The C programs (taskgrid-scheduler, taskgrid-worker) are looked up in one
documented order (see find_binary): the ``bin_dir`` argument, else
``$TASKGRID_BIN_DIR``, else the programs inside this package (a wheel built
with them carries them in ``taskgrid/_bin/``), else ``PATH``. A folder given
explicitly (argument or variable) is the only place searched, and one that
lacks the program is an error naming it. The scheduler stops with its
workers when this process ends, however it ends and from whichever thread
the cluster was started (``--exit-with-parent-fd``).

Depends on client.py (the RPC client behind status/scale) and worker/ (the
in-process workers); neither imports this module at import time.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import math
import os
import pathlib
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from . import _options
from .client import Client, ClusterStatus, scale_rpc
from .security import Security
from .worker.core import Worker, format_resources
from .worker.memory import parse_memory_limit, total_memory

SCHEDULER = "taskgrid-scheduler"
C_WORKER = "taskgrid-worker"
CERTS = "taskgrid-certs"
# Each program's folder in a bazel-bin-like tree.
_BAZEL_PACKAGE = {SCHEDULER: "scheduler", C_WORKER: "worker", CERTS: "scheduler"}
_HOW_TO_GET = (
    "install a taskgrid wheel built with the programs, or build them with "
    "'bazel build //scheduler //worker' in a checkout of the taskgrid "
    "repository and set TASKGRID_BIN_DIR to its bazel-bin (or to any folder "
    "holding them), or put them on PATH"
)


class BinaryNotFound(FileNotFoundError):
    pass


def package_bin_dir() -> pathlib.Path:
    """Where a wheel built with the C programs carries them."""
    return pathlib.Path(__file__).resolve().parent / "_bin"


def _in_dir(folder: str | os.PathLike[str], program: str) -> str | None:
    """`folder`/program, or `folder`/scheduler|worker/program (bazel-bin)."""
    base = pathlib.Path(folder)
    for p in (base / program, base / _BAZEL_PACKAGE.get(program, "") / program):
        if p.is_file() and os.access(p, os.X_OK):
            return str(p.absolute())
    return None


def find_binary(program: str, bin_dir: str | os.PathLike[str] | None = None) -> str:
    """Path of a taskgrid C program (taskgrid-scheduler, taskgrid-worker,
    taskgrid-certs), from the first of these that applies:

    1. ``bin_dir``, if given;
    2. ``$TASKGRID_BIN_DIR``, if set and not empty;
    3. the programs inside this package (``taskgrid/_bin/``);
    4. ``PATH``.

    A folder in 1 or 2 holds the programs themselves or in ``scheduler/``
    and ``worker/`` subfolders (a bazel-bin), and is the only place
    searched: if it lacks the program, BinaryNotFound names it.
    """
    explicit = [("bin_dir", bin_dir), ("TASKGRID_BIN_DIR", os.environ.get("TASKGRID_BIN_DIR"))]
    for what, folder in explicit:
        if folder:
            found = _in_dir(folder, program)
            if found:
                return found
            sub = _BAZEL_PACKAGE.get(program, "")
            raise BinaryNotFound(
                f"{what} is {str(folder)!r}, which holds no {program} (looked for "
                f"{os.path.join(folder, program)} and {os.path.join(folder, sub, program)}); "
                f"point it at the folder holding the programs or at a bazel-bin "
                f"('bazel build //scheduler //worker'), or unset it"
            )
    found = _in_dir(package_bin_dir(), program) or shutil.which(program)
    if found:
        return found
    raise BinaryNotFound(
        f"cannot find {program} (looked in: $TASKGRID_BIN_DIR (not set); this package's "
        f"programs ({package_bin_dir()}, absent: the package was built without them); "
        f"PATH): {_HOW_TO_GET}"
    )


def _default_sizes(processes: bool, n_workers: int | None, threads: int | None) -> tuple[int, int]:
    """Dask's rule of thumb: a few processes with a few threads each."""
    cores = os.cpu_count() or 1
    if not processes:
        return n_workers or 1, threads or max(1, cores // (n_workers or 1))
    if n_workers is None:
        if threads is None:
            if cores <= 4:
                return cores, 1
            n = next(k for k in range(int(math.sqrt(cores)), 0, -1) if cores % k == 0)
            return n, cores // n
        return max(1, cores // threads), threads
    return n_workers, threads or max(1, cores // max(n_workers, 1))


def dashboard_args(address: str | bool | None) -> list[str]:
    """The scheduler's dashboard options for a cluster's
    ``dashboard_address`` (True: Dask's default port; None/False: none)."""
    if address is True:
        address = "127.0.0.1:8787"
    if not address:
        return []
    if not isinstance(address, str):
        raise TypeError(
            f"dashboard_address must be 'HOST:PORT', ':PORT', None or False, not {address!r}"
        )
    return ["--dashboard-address", address, "--dashboard-fallback"]


_live: weakref.WeakSet[LocalCluster] = weakref.WeakSet()
# "No maximum": the scheduler's own limit on launched workers.
_ADAPT_UNBOUNDED = 4096


class LocalCluster:
    """A scheduler plus workers on loopback, torn down on close().

    ``n_workers``/``threads_per_worker`` default to a split of the CPU
    cores; ``processes=False`` runs Python workers as threads of this
    process; ``resources`` (e.g. ``{"GPU": 1}``) are each worker's
    capacities; ``worker="c"`` starts C workers instead of Python ones;
    ``preload`` names modules (Python) or shared libraries (C) to load in
    every worker; ``bin_dir`` is the folder of the C programs (see
    find_binary for where they are found without it); ``memory_limit`` is
    each worker's memory limit as in Dask (bytes, "4GiB", None/"none": no
    limit; the default "auto" is this machine's memory divided among the
    ``n_workers``): past 60% of it workers spill held results to disk,
    past 80% they pause, past 95% they exit (and are restarted);
    ``max_nesting_depth`` is the scheduler's --max-nesting-depth (tasks
    submitted from inside tasks nested deeper fail with
    :class:`NestingTooDeep`; default 100, 0: no limit);
    ``dashboard_address`` is where the scheduler serves its dashboard page
    and Prometheus ``/metrics`` (default ``"127.0.0.1:8787"`` as Dask's,
    a free port when 8787 is taken; ``":0"`` any free port; None or False:
    none), and ``dashboard_link`` its URL (None without one). Dask's
    other options are given Dask's meaning (``ip``, ``name``,
    ``silence_logs``, ``processes=None``, a ``memory_limit`` fraction) or
    refused naming them (see _options.cluster_options and the README's
    option table). Use as a context manager or call close().
    ``asynchronous=True``, as in Dask, gives a cluster for ``async with``
    (see taskgrid._async_cluster).
    """

    def __new__(cls, *args: Any, asynchronous: bool = False, **kwargs: Any) -> LocalCluster:
        # LocalCluster(..., asynchronous=True), as Dask's: for `async with`
        # (_async_cluster.py).
        if asynchronous and cls is LocalCluster:
            from ._async_cluster import AsyncLocalCluster

            cls = AsyncLocalCluster
        return super().__new__(cls)

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = True,
        resources: Mapping[str, float] | None = None,
        worker: str = "python",
        preload: Sequence[str] = (),
        host: str = "127.0.0.1",
        scheduler_port: int = 0,
        log_level: str | None = None,
        no_worker_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        bin_dir: str | os.PathLike[str] | None = None,
        memory_limit: float | str | None = "auto",
        max_nesting_depth: int | None = None,
        dashboard_address: str | bool | None = "127.0.0.1:8787",
        **dask_options: Any,
    ) -> None:
        # Dask's other LocalCluster options: mapped, or refused by name.
        mapped = _options.cluster_options(dask_options)
        host = mapped.get("host", host)
        log_level = log_level or mapped.get("log_level", "warn")
        self.name: Any = mapped.get("name")
        if mapped.get("asynchronous") and not hasattr(self, "__aenter__"):
            raise NotImplementedError(
                "LocalCluster(asynchronous=True) is not supported by this installation: "
                "use the cluster from ordinary (blocking) code"
            )
        processes = True if processes is None else processes
        if worker not in ("python", "c"):
            raise ValueError("worker must be 'python' or 'c'")
        if max_nesting_depth is not None and (
            not isinstance(max_nesting_depth, int)
            or isinstance(max_nesting_depth, bool)
            or not 0 <= max_nesting_depth <= 1000000
        ):
            raise ValueError(
                f"max_nesting_depth must be 0 (no limit) to 1000000, not {max_nesting_depth!r}"
            )
        if worker == "c" and not processes:
            raise ValueError("C workers run as processes (processes=False is for Python workers)")
        self.processes = processes
        self.worker_kind = worker
        self.n_workers, self.threads_per_worker = _default_sizes(
            processes, n_workers, threads_per_worker
        )
        if memory_limit == "auto":
            self.memory_limit = total_memory() // max(self.n_workers, 1)
        elif isinstance(memory_limit, float) and 0 < memory_limit <= 1:
            # Dask's: a fraction of this machine's memory, per worker.
            self.memory_limit = int(memory_limit * total_memory())
        else:
            self.memory_limit = parse_memory_limit(memory_limit)
        self.resources = dict(resources or {})
        self.preload = list(preload)
        self._init_state(log_level, timeout)
        scheduler = find_binary(SCHEDULER, bin_dir)
        args = [scheduler, "--listen", f"tcp://{host}:{scheduler_port}", "--log-level", log_level]
        if no_worker_timeout is not None:
            args += ["--no-worker-timeout", str(int(no_worker_timeout * 1000))]
        if max_nesting_depth is not None:
            args += ["--max-nesting-depth", str(int(max_nesting_depth))]
        args += dashboard_args(dashboard_address)
        if processes:
            args += [
                "--workers",
                str(self.n_workers),
                "--nthreads",
                str(self.threads_per_worker),
                "--worker-log-level",
                log_level,
            ]
            if worker == "c":
                args += ["--worker-bin", find_binary(C_WORKER, bin_dir)]
            else:
                args += ["--worker-bin", self._python_worker_script()]
            if self.resources:
                args += ["--worker-resources", format_resources(self.resources)]
            args += ["--worker-memory-limit", str(self.memory_limit or "none")]
            for p in self.preload:
                args += ["--worker-preload", p]
        else:
            args += ["--launcher", "none"]
        self._start_scheduler(args, env)
        _live.add(self)
        try:
            if not processes:
                self.scale(self.n_workers)
            self.wait_for_workers(self.n_workers, timeout)
        except BaseException:
            self.close()
            raise

    # -- start-up -------------------------------------------------------------

    def _init_state(self, log_level: str, timeout: float) -> None:
        """What every cluster of this kind keeps before its scheduler
        starts (SSHCluster and SLURMCluster share the start-up and
        tear-down below)."""
        self.security: Security | None = None
        self.log_level = log_level
        self._timeout = timeout
        self._tmp = tempfile.mkdtemp(prefix="taskgrid-cluster-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None  # write end of --exit-with-parent-fd
        self._threads: list[Any] = []  # in-process workers
        self._closed = False
        self._lock = threading.Lock()
        self._client: Client | None = None
        self.dashboard_link: str | None = None
        # Copy the scheduler's stderr through this process, keeping its
        # last lines for a start-up failure's message (SLURMCluster: a
        # missing sbatch, a bad job option); else it inherits ours.
        self._tee_stderr = False
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._tee: threading.Thread | None = None

    def _python_worker_script(self) -> str:
        """A wrapper the launcher can exec: this interpreter, this package."""
        path = os.path.join(self._tmp, "taskgrid-python-worker")
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m taskgrid.worker "$@"\n')
        os.chmod(path, 0o755)
        return path

    def _worker_env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        # Like Dask's spawned workers, worker processes see this process's
        # import path, so tasks defined in scripts and test modules unpickle.
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        paths.insert(0, os.getcwd())
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + ([old] if old else [])))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def _read_line(self, out: Any, deadline: float, args: list[str]) -> str:
        """One line of the scheduler's stdout, read byte by byte (the rest
        is copied by _forward), within the start-up deadline."""
        assert self._proc is not None
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([out], [], [], max(left, 0))
            if not ready:
                self.close()
                raise TimeoutError(f"taskgrid-scheduler did not start within {self._timeout} s")
            chunk = os.read(out.fileno(), 1)
            if not chunk:
                code = self._proc.wait()
                if self._tee is not None:
                    self._tee.join(5)
                said = "".join(self._stderr_tail).strip()
                self.close()
                raise RuntimeError(
                    f"taskgrid-scheduler exited with status {code} at start-up "
                    f"(command: {shlex.join(args)}): "
                    + (said if said else "see its messages above")
                )
            line += chunk
        return line.decode().strip()

    def _start_scheduler(self, args: list[str], env: Mapping[str, str] | None) -> None:
        # Its own session, so a terminal's Ctrl-C reaches only us and we stop
        # it in order. And it must die with this process however that ends
        # (os._exit, SIGKILL), from whichever thread we were started: the
        # scheduler watches the read end of a pipe whose write end only this
        # process holds (os.pipe() descriptors are not inherited by other
        # children) and stops with its workers at end of file, when the
        # kernel closes our end. (PR_SET_PDEATHSIG would fire when the
        # starting *thread* ends, and needs a preexec_fn, which gRPC's fork
        # handlers do not survive.)
        life_r, life_w = os.pipe()
        args = [*args, "--exit-with-parent-fd", str(life_r)]
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=self._worker_env(env),
                stderr=subprocess.PIPE if self._tee_stderr else None,
                start_new_session=True,
                pass_fds=(life_r,),
            )
        except BaseException:
            os.close(life_w)
            raise
        finally:
            os.close(life_r)
        self._lifeline = life_w
        if self._proc.stderr is not None:
            self._tee = threading.Thread(
                target=self._copy_stderr,
                args=(self._proc.stderr,),
                daemon=True,
                name="taskgrid-cluster-stderr",
            )
            self._tee.start()
        assert self._proc.stdout is not None
        out = self._proc.stdout
        deadline = time.monotonic() + self._timeout
        text = self._read_line(out, deadline, args)
        prefix = "taskgrid-scheduler listening on "
        if not text.startswith(prefix):
            self.close()
            raise RuntimeError(f"unexpected first line from taskgrid-scheduler: {text!r}")
        self.address = text[len(prefix) :]
        if "--dashboard-address" in args:
            text = self._read_line(out, deadline, args)
            prefix = "taskgrid-scheduler dashboard at "
            if not text.startswith(prefix):
                self.close()
                raise RuntimeError(f"unexpected second line from taskgrid-scheduler: {text!r}")
            self.dashboard_link = text[len(prefix) :]
        # Workers launched by the scheduler share its stdout: keep copying
        # it (task prints) to ours, or the pipe would fill and block them.
        threading.Thread(
            target=self._forward, args=(out,), daemon=True, name="taskgrid-cluster-output"
        ).start()

    @staticmethod
    def _forward(out: Any) -> None:
        fd = out.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                out.close()
                return
            try:
                sys.stdout.write(data.decode(errors="replace"))
                sys.stdout.flush()
            except Exception:  # noqa: BLE001 - a closed stdout must not kill us
                pass

    def _copy_stderr(self, err: Any) -> None:
        """The scheduler's stderr to ours, line by line, keeping the last."""
        for raw in iter(err.readline, b""):
            line = raw.decode(errors="replace")
            self._stderr_tail.append(line)
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except Exception:  # noqa: BLE001 - a closed stderr must not kill us
                pass
        err.close()

    # -- use ------------------------------------------------------------------

    def __repr__(self) -> str:
        kind = "processes" if self.processes else "threads"
        return (
            f"<taskgrid.LocalCluster {getattr(self, 'address', '?')} "
            f"{self.n_workers} {self.worker_kind} workers ({kind}) x "
            f"{self.threads_per_worker} threads>"
        )

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def scheduler_address(self) -> str:
        return self.address

    def _rpc_client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client(self, set_as_default=False, name="cluster")
                self._client.cluster = None  # scale() must not loop back here
            return self._client

    def status(self) -> ClusterStatus:
        return self._rpc_client().status()

    def wait_for_workers(self, n: int | None = None, timeout: float | None = None) -> None:
        """Block until `n` (default: all) workers are connected."""
        n = self.n_workers if n is None else n
        timeout = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"taskgrid-scheduler exited with status {self._proc.returncode}")
            st = self.status()
            got = len(st.workers)
            if got >= n:
                return
            if time.monotonic() > deadline:
                hint = self._wait_hint(st)
                raise TimeoutError(f"only {got} of {n} workers connected after {timeout} s{hint}")
            time.sleep(0.05)

    def _wait_hint(self, st: ClusterStatus) -> str:
        """What a wait_for_workers time-out adds to its message."""
        if self.processes and self.worker_kind == "python":
            return (
                f" (workers run as: {sys.executable} -m taskgrid.worker; "
                "their errors are printed above)"
            )
        return ""

    def scale(self, n: int) -> None:
        """Set the number of workers (extras are drained, then stopped)."""
        self.n_workers = n
        if self.processes:
            scale_rpc(self._rpc_client(), workers=n)
            return
        while len(self._threads) < n:
            i = len(self._threads) + 1
            w = Worker(
                self.address,
                nthreads=self.threads_per_worker,
                name=f"inproc-{os.getpid()}-{i}",
                resources=self.resources,
                memory_limit=self.memory_limit or None,
                preload=self.preload if i == 1 else (),
                security=self.security,
            )
            self._threads.append(w.start())
        while len(self._threads) > n:
            self._threads.pop().stop(timeout=15)

    def adapt(self, minimum: int | None = 0, maximum: int | None = None, **kwargs: Any) -> None:
        """Adaptive scaling: the scheduler keeps between `minimum` and
        `maximum` workers (None: no bound, as in Dask) from the queued work,
        adding at once and retiring (drained) after a quiet spell. Other
        Dask adapt() options (interval, wait_count, ...) are accepted and
        ignored: the scheduler decides by itself.
        """
        if not self.processes:
            raise NotImplementedError("adaptive scaling needs processes=True")
        lo = int(minimum or 0)
        hi = _ADAPT_UNBOUNDED if maximum is None else int(maximum)
        if hi < 1 or lo > hi:
            raise ValueError(
                f"adapt: need 0 <= minimum <= maximum and maximum >= 1 "
                f"(got minimum={minimum}, maximum={maximum})"
            )
        scale_rpc(self._rpc_client(), minimum=lo, maximum=hi)

    # -- tear-down --------------------------------------------------------------

    def close(self, timeout: float = 15.0) -> None:
        """Stop workers and the scheduler (its launched workers with it)."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            self._client._close(timeout=5)
            self._client = None
        for w in self._threads:
            w.stop(timeout=0)
        for w in self._threads:
            w.stop(timeout=timeout)
        self._threads.clear()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it stops its workers first
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        shutil.rmtree(self._tmp, ignore_errors=True)
        # Folders made for this cluster elsewhere (its TLS files).
        for folder in getattr(self, "_made_dirs", ()):
            shutil.rmtree(folder, ignore_errors=True)
        _live.discard(self)

    def __del__(self) -> None:
        # Not contextlib.suppress: at interpreter exit, module globals may be gone.
        try:  # noqa: SIM105
            self.close(timeout=5)
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            pass


@atexit.register
def _close_all() -> None:
    for c in list(_live):
        with contextlib.suppress(Exception):  # at exit: close what can be closed
            c.close(timeout=5)
