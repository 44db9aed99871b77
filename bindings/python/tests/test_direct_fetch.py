# SPDX-License-Identifier: Apache-2.0
"""Client(direct_to_workers=True): held results fetched from a holder.

Real processes: the C scheduler, and C and Python workers started by hand
so their exit counters ("data: held ..., served ..., uploaded ...") can be
read. A holder's "served" counts what it sent with DataService.Fetch; its
"uploaded" counts what it sent up to the scheduler, which is the only way
a held result's bytes reach the scheduler (a relayed Gather). So served 1
and uploaded 0 on the only holder means the bytes went straight to the
client and none through the scheduler.

* A 30 MB result gathered directly: served 1, uploaded 0; the same
  cluster with a default (gateway) client relays it: uploaded 1.
* A holder advertising a data address nobody listens on: the direct fetch
  fails, one warning names the holder and why, and the result comes
  through the scheduler, whole.
* Over mutual TLS a client certificate is refused by default (the result
  comes through the scheduler, the warning says PERMISSION_DENIED), and
  admitted by a worker started with --data-clients; an admin certificate
  is refused even then.
"""
from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
from typing import Iterator

import grpc
import pytest

import taskgrid
from taskgrid._rpc import peer_channel
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc

from test_data_plane_e2e import (  # noqa: F401 - fixtures
    Workers,
    _free_port,
    _security,
    certs,
    make,
    tls_scheduler,
    worker_tls,
)
from test_large_results import big_plugin  # noqa: F401 - a fixture

MIB = 1 << 20
BIG = 30 * MIB
TIMEOUT = 60


def _produce(client: taskgrid.Client, kind: str, n: int, where: str) -> taskgrid.Future:
    """A held result of about n bytes made on worker `where` (never sent
    from the client: the bytes start on the worker)."""
    if kind == "c":
        return client.submit("big.bytes", n, pure=False, workers=[where])
    return client.submit(make, n, pure=False, workers=[where])


def _expected(kind: str, n: int) -> bytes:
    return b"x" * n if kind == "c" else make(n)


def _direct_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "direct_to_workers" in r.getMessage()]


@pytest.fixture()
def sched(binaries: tuple[str, str]) -> Iterator[taskgrid.LocalCluster]:
    """A plaintext scheduler with no workers of its own."""
    with taskgrid.LocalCluster(n_workers=0) as cl:
        yield cl


@pytest.fixture()
def workers(sched: taskgrid.LocalCluster, binaries: tuple[str, str],
            big_plugin: str, tmp_path: pathlib.Path) -> Iterator[Workers]:  # noqa: F811
    w = Workers(sched.address, tmp_path, binaries[1], big_plugin)
    try:
        yield w
    finally:
        w.close()


@pytest.mark.parametrize("kind", ["python", "c"])
def test_direct_gather_moves_no_bytes_through_the_scheduler(
    kind: str, sched: taskgrid.LocalCluster, workers: Workers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers.start(kind, "holder")
    with taskgrid.Client(sched, direct_to_workers=True, set_as_default=False) as direct, \
            taskgrid.Client(sched, set_as_default=False) as gateway:
        assert direct.direct_to_workers and not gateway.direct_to_workers
        direct.wait_for_workers(1, timeout=30)
        caplog.set_level(logging.WARNING, logger="taskgrid.client")
        f = _produce(direct, kind, BIG, "holder")
        assert f.result(timeout=TIMEOUT) == _expected(kind, BIG)
        assert _direct_warnings(caplog) == []
        # The control: a default client's result comes through the
        # scheduler, which the holder's upload counter shows.
        g = _produce(gateway, kind, 2 * MIB, "holder")
        assert g.result(timeout=TIMEOUT) == _expected(kind, 2 * MIB)
    c = workers.stop("holder")
    assert c.held == 2, c
    assert c.served == 1 and c.served_bytes >= BIG, c
    assert c.uploaded == 1 and c.uploaded_bytes < BIG, c


def test_unreachable_holder_falls_back_to_the_scheduler(
    sched: taskgrid.LocalCluster, workers: Workers, caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = f"127.0.0.1:{_free_port()}"
    workers.start("python", "holder", "--data-address", nobody)
    with taskgrid.Client(sched, direct_to_workers=True, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=30)
        caplog.set_level(logging.WARNING, logger="taskgrid.client")
        f = _produce(client, "python", 3 * MIB, "holder")
        assert f.result(timeout=TIMEOUT) == make(3 * MIB)
        # Once decoded, the value is kept: no second fetch, no second warning.
        assert f.result(timeout=TIMEOUT) == make(3 * MIB)
    warned = _direct_warnings(caplog)
    assert len(warned) == 1, warned
    assert f"holder {nobody}: UNAVAILABLE" in warned[0], warned
    assert f"'{f.key}'" in warned[0] and "through the scheduler" in warned[0], warned
    c = workers.stop("holder")
    assert (c.served, c.uploaded) == (0, 1), c


@pytest.mark.parametrize("kind", ["c", "python"])
def test_tls_client_certificate_needs_data_clients(
    kind: str, binaries: tuple[str, str], big_plugin: str,  # noqa: F811
    certs: pathlib.Path, tls_scheduler: str, tmp_path: pathlib.Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers = Workers(tls_scheduler, tmp_path, binaries[1], big_plugin, worker_tls(certs))
    open_data = f"127.0.0.1:{_free_port()}"
    try:
        workers.start(kind, "closed")
        workers.start(kind, "open", "--data-clients", "--data-listen", open_data)
        caplog.set_level(logging.WARNING, logger="taskgrid.client")
        with taskgrid.Client(tls_scheduler, security=_security(certs, "client"),
                             direct_to_workers=True, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=30)
            refused = _produce(client, kind, 3 * MIB, "closed")
            admitted = _produce(client, kind, 3 * MIB, "open")
            assert refused.result(timeout=TIMEOUT) == _expected(kind, 3 * MIB)
            warned = _direct_warnings(caplog)
            assert len(warned) == 1, warned
            assert "PERMISSION_DENIED" in warned[0] and "--data-clients" in warned[0], warned
            assert admitted.result(timeout=TIMEOUT) == _expected(kind, 3 * MIB)
            assert len(_direct_warnings(caplog)) == 1, _direct_warnings(caplog)

            # --data-clients admits clients, never the admin role.
            with peer_channel(open_data, _security(certs, "admin")) as ch:
                chunks = pb_grpc.DataServiceStub(ch).Fetch(
                    pb.FetchRequest(key=admitted.key), timeout=30)
                with pytest.raises(grpc.RpcError) as info:
                    b"".join(c.data for c in chunks)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value
            assert "role 'admin'" in (info.value.details() or ""), info.value.details()
        closed, opened = workers.stop("closed"), workers.stop("open")
        assert (closed.served, closed.uploaded) == (0, 1), closed
        assert (opened.served, opened.uploaded) == (1, 0), opened
    finally:
        workers.close()


def test_data_clients_needs_a_data_service() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "taskgrid.worker", "tcp://127.0.0.1:1", "--data-listen", "none",
         "--data-clients"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 2, proc
    assert "--data-clients needs a data service" in proc.stderr, proc.stderr
