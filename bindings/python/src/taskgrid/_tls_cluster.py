# SPDX-License-Identifier: Apache-2.0
"""Mutual TLS for the clusters that start a scheduler here and workers
elsewhere (SSHCluster, SLURMCluster). ``security=`` takes:

- ``True``: a new cluster CA and certificates made with taskgrid-certs for
  this cluster only (as Dask's ``security=True``), the scheduler's naming
  every address its workers and clients dial, in ``certs_dir`` (default: a
  new private folder, removed with the cluster); a ``certs_dir`` already
  holding taskgrid-certs files is used as it is;
- a folder made by ``taskgrid-certs DIR --hosts ...``;
- a Dask-style Security object naming files (``tls_ca_file``,
  ``tls_scheduler_cert``/``_key``, ``tls_worker_cert``/``_key``,
  ``tls_client_cert``/``_key``).

The cluster's own client presents the admin certificate when there is
one (scale and adapt need that role), else the client one; workers the
worker one. Workers read the files at the same paths where they run (a
shared filesystem, or the same machine). Keys are mode 0600, in a folder
of mode 0700.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from .security import Security

ROLES = ("scheduler", "worker", "client")


class ClusterTLS:
    """The cluster's TLS files, as absolute paths: ``ca``,
    ``ROLE_cert``/``ROLE_key`` for scheduler, worker and client (the
    cluster's own client). ``made`` is the folder made for this cluster
    (removed with it), or None."""

    def __init__(self, files: dict[str, str], made: str | None = None) -> None:
        self.files = {k: os.path.abspath(v) for k, v in files.items()}
        self.made = made

    @classmethod
    def from_security(cls, security: Any, who: str) -> ClusterTLS:
        """From a taskgrid-certs folder or a Dask-style Security object;
        a file that is not there is a ValueError naming it."""
        files: dict[str, Any] = {}
        if isinstance(security, (str, os.PathLike)):
            base = os.fspath(security)
            files["ca"] = os.path.join(base, "ca.pem")
            for role in ROLES:
                mine = "admin" if role == "client" and _has(base, "admin") else role
                files[f"{role}_cert"] = os.path.join(base, f"{mine}.pem")
                files[f"{role}_key"] = os.path.join(base, f"{mine}-key.pem")
        else:
            files["ca"] = getattr(security, "tls_ca_file", None)
            for role in ROLES:
                files[f"{role}_cert"] = getattr(security, f"tls_{role}_cert", None)
                files[f"{role}_key"] = getattr(security, f"tls_{role}_key", None)
        for what, path in files.items():
            if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
                raise ValueError(
                    f"{who}(security=...): the {what.replace('_', ' ')} file is "
                    f"{path!r}, which is not a file; give True, a taskgrid-certs folder or an "
                    "object with tls_ca_file, tls_scheduler_cert/_key, tls_worker_cert/_key "
                    "and tls_client_cert/_key naming files (workers read them where they run)"
                )
        return cls(files)

    def args(self) -> list[str]:
        """taskgrid-scheduler's TLS options, for itself and its workers."""
        f = self.files
        return [
            *("--tls-ca", f["ca"], "--tls-cert", f["scheduler_cert"]),
            *("--tls-key", f["scheduler_key"], "--worker-tls-cert", f["worker_cert"]),
            *("--worker-tls-key", f["worker_key"]),
        ]

    def client(self) -> Security:
        """What the cluster's own client presents."""
        f = self.files
        return Security(ca=f["ca"], cert=f["client_cert"], key=f["client_key"])


def _has(base: str, role: str) -> bool:
    return all(os.path.isfile(os.path.join(base, f)) for f in (f"{role}.pem", f"{role}-key.pem"))


def cluster_tls(
    security: Any,
    who: str,
    certs_dir: str | os.PathLike[str] | None,
    names: Callable[[], Iterable[str]],
    certs_program: Callable[[], str],
) -> ClusterTLS | None:
    """The TLS files `security` asks for (see the module docstring), or
    None for plain TCP (None or False)."""
    if security is None or security is False:
        return None
    if security is True:
        folder = os.fspath(certs_dir) if certs_dir else None
        if folder is not None and os.path.isfile(os.path.join(folder, "ca.pem")):
            return ClusterTLS.from_security(folder, who)
        made = folder is None
        if folder is None:
            folder = tempfile.mkdtemp(prefix="taskgrid-certs-")
        make_cluster_certs(certs_program(), folder, names())
        tls = ClusterTLS.from_security(folder, who)
        tls.made = folder if made else None
        return tls
    return ClusterTLS.from_security(security, who)


def scheduler_names(listen_host: str, worker_hosts: Iterable[str]) -> list[str]:
    """The names and addresses the scheduler is reached by: loopback, this
    machine's name, the listen host, and for each worker host the local end
    of the route to it (what the ssh launcher gives its workers)."""
    from .worker.data import route_ip

    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if listen_host not in ("", "0.0.0.0", "::"):
        names.append(listen_host.strip("[]"))
    for h in worker_hosts:
        bare = h.rsplit("@", 1)[-1].strip("[]")
        ip = route_ip(f"tcp://{bare}:22") if ":" not in bare else route_ip(f"tcp://[{bare}]:22")
        if ip:
            names.append(ip)
    return list(dict.fromkeys(names))


def make_cluster_certs(certs_program: str, folder: str, names: Iterable[str]) -> None:
    """A new CA and role certificates in `folder` (created, mode 0700),
    the scheduler's naming `names`."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    r = subprocess.run(
        [certs_program, folder, "--hosts", ",".join(names), "--days", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(
            f"cannot make the cluster's certificates with {certs_program}: "
            f"{(r.stderr or r.stdout).strip()}"
        )
