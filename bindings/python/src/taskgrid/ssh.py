# SPDX-License-Identifier: Apache-2.0
"""SSHCluster: a taskgrid cluster whose workers run on other hosts over ssh.

As Dask's ``SSHCluster(hosts, connect_options, worker_options,
scheduler_options, remote_python)``, the first host is the scheduler's and
the others run the workers. taskgrid's scheduler always runs here, as a
child of this process (as LocalCluster's does), so the first host must name
this machine ("localhost", its name, or one of its addresses; the
scheduler listens on that address, or on every address for a loopback
one). A first host elsewhere is a ValueError saying so: start
taskgrid-scheduler there with ``--launcher ssh`` instead. With a single
host, the workers run on it too.

The scheduler's own ssh launcher (``--launcher ssh --hosts``) starts the
workers: one ``ssh`` client per worker (OpenSSH, in ``PATH``), spread
evenly over the hosts, restarted if they die, backing off from a host that
cannot be reached, stopped when the cluster closes or scales down (or when
this process dies). Python workers run ``remote_python -m taskgrid.worker``
(taskgrid must be importable there); ``worker="c"`` runs the C worker at
the path of this machine's taskgrid-worker, which must exist there too.
Workers connect back to the scheduler on its address as the route to
their host finds it. Their traffic is plain TCP unless ``security`` is given:
then everything runs over mutual TLS (``True``: certificates of a new
cluster CA made for this cluster, in ``certs_dir`` or a private folder;
or a taskgrid-certs folder; or a Dask-style Security naming files: see
_tls_cluster.py). The hosts read the files at the same paths (a shared
filesystem).

Depends on cluster.py (the scheduler's start-up, status, scale, adapt,
close); the ssh client itself runs in the scheduler.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ._tls_cluster import cluster_tls, scheduler_names
from .cluster import C_WORKER, CERTS, SCHEDULER, LocalCluster, _live, find_binary
from .worker.core import format_resources
from .worker.memory import parse_memory_limit

# connect_options keys (Dask's asyncssh names) and the ssh arguments.
_CONNECT_KEYS = (
    "config",
    "known_hosts",
    "client_keys",
    "username",
    "port",
    "connect_timeout",
    "options",
)
_WORKER_KEYS = ("nthreads", "n_workers", "memory_limit", "resources", "preload")
_SCHEDULER_KEYS = ("host", "port", "dashboard_address")


def _local_addresses(host: str) -> list[str]:
    """The addresses `host` resolves to that this machine has (can bind)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    found = []
    for family, _, _, _, sa in infos:
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((sa[0], 0))
            found.append(str(sa[0]))
    return found


def ssh_arguments(connect_options: Mapping[str, Any] | None) -> list[str]:
    """Dask's connect_options as OpenSSH client arguments: ``config`` (-F),
    ``known_hosts`` (a file, or None: no host key checking), ``client_keys``
    (one or more -i), ``username`` (-l), ``port`` (-p),
    ``connect_timeout`` (seconds) and ``options`` ({name: value}: -o)."""
    opts = dict(connect_options or {})
    unknown = sorted(set(opts) - set(_CONNECT_KEYS))
    if unknown:
        raise ValueError(
            f"SSHCluster: connect_options {unknown[0]!r} is not supported "
            f"(supported: {', '.join(_CONNECT_KEYS)})"
        )
    args: list[str] = []
    if opts.get("config") is not None:
        args += ["-F", os.fspath(opts["config"])]
    if "known_hosts" in opts:
        known = opts["known_hosts"]
        if known is None:
            args += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        else:
            args += ["-o", f"UserKnownHostsFile={os.fspath(known)}"]
    keys = opts.get("client_keys")
    for key in [keys] if isinstance(keys, (str, os.PathLike)) else (keys or []):
        args += ["-i", os.fspath(key)]
    if opts.get("username") is not None:
        args += ["-l", str(opts["username"])]
    if opts.get("port") is not None:
        args += ["-p", str(int(opts["port"]))]
    if opts.get("connect_timeout") is not None:
        args += ["-o", f"ConnectTimeout={max(1, round(float(opts['connect_timeout'])))}"]
    for name, value in dict(opts.get("options") or {}).items():
        args += ["-o", f"{name}={value}"]
    return args


def _one(options: Any, what: str) -> dict[str, Any]:
    """Dask lets connect/worker options be one dict or one per host; a
    list is taken when all its entries are the same."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    entries = [dict(o) for o in options]
    if entries and all(o == entries[0] for o in entries):
        return entries[0]
    raise ValueError(f"SSHCluster: {what} must be one dict for every host (not one per host)")


class SSHCluster(LocalCluster):
    """A scheduler here, workers on ``hosts[1:]`` over ssh (see the module
    documentation). ``worker_options`` takes ``nthreads``, ``n_workers``
    (per host; default 1, as Dask), ``memory_limit``, ``resources`` and
    ``preload``; ``scheduler_options`` takes ``host`` (the listen address),
    ``port`` and ``dashboard_address`` (default none); ``n_workers`` is
    the total (default: ``n_workers`` per host times the hosts); ``env``
    is added to the workers' environment there. scale(), adapt(),
    status(), wait_for_workers() and close() are LocalCluster's."""

    def __init__(
        self,
        hosts: Sequence[str],
        connect_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        worker_options: Mapping[str, Any] | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
        remote_python: str | None = None,
        n_workers: int | None = None,
        worker: str = "python",
        env: Mapping[str, str] | None = None,
        log_level: str | None = None,
        timeout: float = 30.0,
        bin_dir: str | os.PathLike[str] | None = None,
        security: Any = None,
        certs_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("asynchronous", False):
            raise NotImplementedError("SSHCluster(asynchronous=True) is not supported")
        if kwargs:
            raise TypeError(f"SSHCluster() got an unexpected argument {sorted(kwargs)[0]!r}")
        if isinstance(hosts, str) or not hosts:
            raise ValueError(
                "SSHCluster: hosts must be a list of host names, the first the "
                "scheduler's (e.g. ['localhost', 'node1', 'node2'])"
            )
        hosts = [str(h) for h in hosts]
        here = _local_addresses(hosts[0])
        if not here:
            raise ValueError(
                f"SSHCluster: the first host ({hosts[0]!r}) is the scheduler's, and taskgrid "
                "runs the scheduler on this machine: make it 'localhost' or this machine's "
                "name or address, or run taskgrid-scheduler --launcher ssh --hosts ... "
                f"on {hosts[0]} and connect to it"
            )
        if worker not in ("python", "c"):
            raise ValueError("worker must be 'python' or 'c'")
        workers_at = hosts[1:] or hosts[:1]
        wopts = _one(worker_options, "worker_options")
        sopts = dict(scheduler_options or {})
        for opts, known, what in (
            (wopts, _WORKER_KEYS, "worker_options"),
            (sopts, _SCHEDULER_KEYS, "scheduler_options"),
        ):
            unknown = sorted(set(opts) - set(known))
            if unknown:
                raise ValueError(
                    f"SSHCluster: {what} {unknown[0]!r} is not supported "
                    f"(supported: {', '.join(known)})"
                )
        per_host = int(wopts.get("n_workers", 1))
        self.hosts = hosts
        self.processes = True
        self.worker_kind = worker
        self.name: Any = None
        self.n_workers = per_host * len(workers_at) if n_workers is None else int(n_workers)
        self.threads_per_worker = int(wopts.get("nthreads") or os.cpu_count() or 1)
        # "auto" (the default) is each worker's host's memory, found there.
        limit = wopts.get("memory_limit", "auto")
        auto = isinstance(limit, str) and limit.strip().lower() == "auto"
        self.memory_limit = 0 if auto else parse_memory_limit(limit)
        self.resources = dict(wopts.get("resources") or {})
        self.preload = list(wopts.get("preload") or ())
        listen = sopts.get("host") or here[0]
        if listen.startswith("127.") or listen == "::1":
            listen = "0.0.0.0"  # the launcher gives each host its route's address
        if ":" in listen and not listen.startswith("["):
            listen = f"[{listen}]"
        tls = cluster_tls(
            security,
            "SSHCluster",
            certs_dir,
            lambda: scheduler_names(listen, workers_at),
            lambda: find_binary(CERTS, bin_dir),
        )
        self._init_state(log_level or "warn", timeout)
        scheme, tls_args = ("tls", tls.args()) if tls is not None else ("tcp", [])
        if tls is not None:
            self.security = tls.client()
            self._made_dirs = [tls.made] if tls.made else []
        args = [
            find_binary(SCHEDULER, bin_dir),
            "--listen",
            f"{scheme}://{listen}:{int(sopts.get('port') or 0)}",
            *tls_args,
            "--log-level",
            self.log_level,
            "--launcher",
            "ssh",
            "--hosts",
            ",".join(workers_at),
            "--workers",
            str(self.n_workers),
            "--nthreads",
            str(self.threads_per_worker),
            "--worker-log-level",
            self.log_level,
            "--worker-memory-limit",
            "auto" if auto else str(self.memory_limit or "none"),
        ]
        for a in ssh_arguments(_one(connect_options, "connect_options")):
            args += ["--ssh-arg", a]
        command = ["env", *(f"{k}={v}" for k, v in (env or {}).items())]
        if worker == "c":
            command.append(find_binary(C_WORKER, bin_dir))
        else:
            command += [remote_python or sys.executable, "-m", "taskgrid.worker"]
        args += ["--worker-command", shlex.join(command)]
        if self.resources:
            args += ["--worker-resources", format_resources(self.resources)]
        for p in self.preload:
            args += ["--worker-preload", p]
        if sopts.get("dashboard_address"):
            args += ["--dashboard-address", str(sopts["dashboard_address"]), "--dashboard-fallback"]
        self._start_scheduler(args, None)
        _live.add(self)
        try:
            self.wait_for_workers(self.n_workers, timeout)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return (
            f"<taskgrid.SSHCluster {getattr(self, 'address', '?')} {self.n_workers} "
            f"{self.worker_kind} workers on {', '.join(self.hosts[1:] or self.hosts)} x "
            f"{self.threads_per_worker} threads>"
        )

    def __enter__(self) -> SSHCluster:
        return self
