# SPDX-License-Identifier: Apache-2.0
"""LocalCluster's dashboard as in Dask: on by default at 127.0.0.1:8787 or,
when that port is taken, a free one; ``dashboard_link`` on the cluster and
its client; ``dashboard_address=None`` for none."""
from __future__ import annotations

import socket
import urllib.request

import pytest

import taskgrid


def _metrics(link: str) -> str:
    with urllib.request.urlopen(link + "metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def test_dashboard_on_by_default_with_links():
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1) as cluster:
        link = cluster.dashboard_link
        assert link is not None and link.startswith("http://127.0.0.1:") and link.endswith("/")
        assert "taskgrid_scheduler_workers 1" in _metrics(link)
        with taskgrid.Client(cluster) as client:
            assert client.dashboard_link == link
            assert client.submit(lambda x: x + 1, 1).result(timeout=30) == 2


def test_a_taken_port_falls_back_to_a_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1,
                                   dashboard_address=f"127.0.0.1:{port}") as cluster:
            link = cluster.dashboard_link
            assert link is not None and not link.endswith(f":{port}/")
            assert "taskgrid_scheduler_tasks" in _metrics(link)


@pytest.mark.parametrize("off", [None, False])
def test_no_dashboard(off):
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1,
                               dashboard_address=off) as cluster:
        assert cluster.dashboard_link is None
        with taskgrid.Client(cluster) as client:
            assert client.dashboard_link is None


def test_client_by_address_has_no_link():
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        assert c.dashboard_link is not None
        with taskgrid.Client(c.scheduler_address) as client:
            assert client.dashboard_link is None
