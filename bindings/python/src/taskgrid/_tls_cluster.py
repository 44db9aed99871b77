# SPDX-License-Identifier: Apache-2.0
"""Temporary mutual TLS for clusters that start their own scheduler on
other hosts' behalf (``SSHCluster(security=True)``, as Dask's
``security=True``): a new cluster CA and certificates made with
taskgrid-certs for this cluster only, the scheduler's naming every address
its workers and clients dial. The cluster's own client holds the admin
certificate (it scales), workers the worker one.

The files are written to a folder the workers' hosts must read at the
same path (a shared filesystem, or the same machine): the workers are
given their paths. Keys are mode 0600, in a folder of mode 0700.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from .security import Security


@dataclass(frozen=True)
class ClusterCerts:
    """The files of a temporary cluster CA (see the module docstring)."""

    folder: str

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def scheduler_args(self) -> list[str]:
        """taskgrid-scheduler's TLS options, for itself and its workers."""
        return [
            "--tls-ca",
            self.path("ca.pem"),
            "--tls-cert",
            self.path("scheduler.pem"),
            "--tls-key",
            self.path("scheduler-key.pem"),
            "--worker-tls-cert",
            self.path("worker.pem"),
            "--worker-tls-key",
            self.path("worker-key.pem"),
        ]

    def admin(self) -> Security:
        """What the cluster's own client presents (role admin)."""
        return Security(
            ca=self.path("ca.pem"), cert=self.path("admin.pem"), key=self.path("admin-key.pem")
        )


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


def make_cluster_certs(certs_program: str, folder: str, names: Iterable[str]) -> ClusterCerts:
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
    return ClusterCerts(folder)
