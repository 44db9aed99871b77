# SPDX-License-Identifier: Apache-2.0
"""taskgrid.SSHCluster's options, without hosts: Dask's connect_options
as ssh arguments, and the refusals that name the problem before anything
starts. (Workers over real ssh: tests/python/test_ssh_launcher.py.)"""

from __future__ import annotations

import socket

import pytest

import taskgrid
from taskgrid._tls_cluster import scheduler_names
from taskgrid.ssh import ssh_arguments


def test_connect_options_become_ssh_arguments():
    args = ssh_arguments(
        {
            "config": "/etc/cluster_ssh",
            "known_hosts": None,
            "client_keys": ["/k1", "/k2"],
            "username": "me",
            "port": 2222,
            "connect_timeout": 2.4,
            "options": {"ServerAliveInterval": 10},
        }
    )
    assert args == [
        "-F", "/etc/cluster_ssh",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-i", "/k1", "-i", "/k2",
        "-l", "me",
        "-p", "2222",
        "-o", "ConnectTimeout=2",
        "-o", "ServerAliveInterval=10",
    ]  # fmt: skip
    assert ssh_arguments({"known_hosts": "/kh"}) == ["-o", "UserKnownHostsFile=/kh"]
    with pytest.raises(ValueError, match="connect_options 'password' is not supported"):
        ssh_arguments({"password": "x"})


def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match="first host .* is the scheduler's"):
        taskgrid.SSHCluster(["nosuchhost.invalid", "h1"])
    with pytest.raises(ValueError, match="hosts must be a list"):
        taskgrid.SSHCluster("localhost")
    with pytest.raises(ValueError, match="worker_options 'threads' is not supported"):
        taskgrid.SSHCluster(["localhost", "h1"], worker_options={"threads": 2})
    with pytest.raises(ValueError, match="one dict for every host"):
        taskgrid.SSHCluster(["localhost", "h1"], connect_options=[{"port": 1}, {"port": 2}])
    with pytest.raises(ValueError, match="the ca file is '/nonexistent/ca.pem'"):
        taskgrid.SSHCluster(["localhost", "h1"], security="/nonexistent")
    with pytest.raises(TypeError, match="unexpected argument 'scheduler_port'"):
        taskgrid.SSHCluster(["localhost", "h1"], scheduler_port=1)


def test_scheduler_certificate_names_every_way_in():
    names = scheduler_names("0.0.0.0", ["root@127.0.0.1", "nosuchhost.invalid"])
    assert names[:3] == ["localhost", "127.0.0.1", "::1"]
    assert socket.gethostname() in names
    assert "0.0.0.0" not in names
    assert "10.1.2.3" in scheduler_names("10.1.2.3", [])
