# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the taskgrid Python binding tests.

Everything runs for real: the C scheduler, C workers and Python workers as
processes on loopback (LocalCluster), torn down after use. Waits are
bounded (timeouts on every result); nothing sleeps and hopes.

Prefect runs without a server (each flow process starts its temporary
API), in an isolated PREFECT_HOME, without telemetry. These variables must
be set before Prefect is first imported, hence at the top of this file.
"""
from __future__ import annotations

import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="taskgrid-test-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "true"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"

import pathlib  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402

import taskgrid  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def binaries() -> tuple[str, str]:
    """The C programs; a clear failure (not a skip) when they are missing."""
    try:
        return (taskgrid.find_binary("taskgrid-scheduler"),
                taskgrid.find_binary("taskgrid-worker"))
    except taskgrid.BinaryNotFound as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def c_cluster(binaries: tuple[str, str]) -> Iterator[taskgrid.LocalCluster]:
    """2 C workers x 2 threads."""
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2, worker="c") as cl:
        yield cl


@pytest.fixture(scope="session")
def c_client(c_cluster: taskgrid.LocalCluster) -> Iterator[taskgrid.Client]:
    with taskgrid.Client(c_cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="session")
def py_cluster(binaries: tuple[str, str]) -> Iterator[taskgrid.LocalCluster]:
    """2 Python worker processes x 2 threads."""
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2) as cl:
        yield cl


@pytest.fixture(scope="session")
def py_client(py_cluster: taskgrid.LocalCluster) -> Iterator[taskgrid.Client]:
    with taskgrid.Client(py_cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_temporary_server() -> Iterator[None]:
    """Stop Prefect's temporary API server (if a flow started one) while
    pytest still captures output: its exit-time log line would otherwise
    hit a closed stream."""
    yield
    import sys

    if "prefect.server.api.server" not in sys.modules:
        return
    from prefect.server.api.server import SubprocessASGIServer

    # Send what Prefect's background log and event workers still hold
    # while the server is up, so nothing tries to reach it after it stops.
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception:  # noqa: BLE001 - best effort at the end of the run
        pass
    for server in list(SubprocessASGIServer._instances.values()):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at the end of the run
            pass
