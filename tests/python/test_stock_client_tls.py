# SPDX-License-Identifier: Apache-2.0
"""A stock gRPC client (grpcio, stubs generated from proto/) over mutual TLS
against the C scheduler and a C worker, with certificates made by
taskgrid-certs: submit and gather with a client certificate, the roles the
scheduler enforces (Scale needs admin, WorkerLink needs worker), health
checks with any cluster certificate, and a client without a certificate
refused at the handshake."""
from __future__ import annotations

import json
import pathlib
import uuid
from typing import Iterator

import grpc
import pytest

from conftest import BIN, run_scheduler, wait_for_workers


@pytest.fixture(scope="module")
def tls_scheduler(certs: pathlib.Path) -> Iterator[str]:
    """A TLS scheduler with one local worker; yields host:port."""
    with run_scheduler(
        ["--listen", "tls://127.0.0.1:0",
         "--workers", "1", "--nthreads", "1", "--log-level", "error",
         "--worker-bin", str(BIN / "worker" / "taskgrid-worker"),
         "--tls-ca", str(certs / "ca.pem"),
         "--tls-cert", str(certs / "scheduler.pem"),
         "--tls-key", str(certs / "scheduler-key.pem"),
         "--worker-tls-cert", str(certs / "worker.pem"),
         "--worker-tls-key", str(certs / "worker-key.pem")]) as addr:
        yield addr


def _channel(certs: pathlib.Path, target: str, role: str | None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / f"{role}-key.pem").read_bytes() if role else None,
        certificate_chain=(certs / f"{role}.pem").read_bytes() if role else None)
    return grpc.secure_channel(target, creds)


def test_submit_and_gather_over_mtls(pb, certs, tls_scheduler):
    with _channel(certs, tls_scheduler, "client") as ch:
        stub = pb.tg_grpc.SchedulerStub(ch)
        wait_for_workers(pb, ch, 1)
        key = f"inc-{uuid.uuid4().hex[:8]}"
        stub.Submit(pb.tg.SubmitRequest(tasks=[pb.tg.TaskSpec(
            key=key, func="tg.inc", input=b"41", codec="json")]), timeout=10)
        results = [r for resp in stub.Gather(
            pb.tg.GatherRequest(keys=[key], timeout_ms=10000), timeout=30)
            for r in resp.results]
        assert len(results) == 1
        assert results[0].state == pb.tg.TASK_STATE_MEMORY
        assert json.loads(results[0].data) == 42


def test_roles_are_enforced(pb, certs, tls_scheduler):
    with _channel(certs, tls_scheduler, "client") as ch:
        with pytest.raises(grpc.RpcError) as e:
            pb.tg_grpc.SchedulerStub(ch).Scale(pb.tg.ScaleRequest(workers=2),
                                               timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs role 'admin'" in e.value.details()
        assert "has role 'client'" in e.value.details()

        link = pb.tg_grpc.WorkerLinkStub(ch).Connect(iter(()), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            next(link)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs role 'worker'" in e.value.details()

    with _channel(certs, tls_scheduler, "admin") as ch:
        resp = pb.tg_grpc.SchedulerStub(ch).Scale(pb.tg.ScaleRequest(workers=1),
                                                  timeout=10)
        assert resp.target == 1


def test_health_with_any_cluster_certificate(pb, certs, tls_scheduler):
    for role in ("client", "worker", "admin", "scheduler"):
        with _channel(certs, tls_scheduler, role) as ch:
            resp = pb.health_grpc.HealthStub(ch).Check(
                pb.health.HealthCheckRequest(service=""), timeout=10)
            assert resp.status == pb.health.HealthCheckResponse.SERVING


def test_client_without_certificate_is_refused(pb, certs, tls_scheduler):
    with _channel(certs, tls_scheduler, None) as ch:
        with pytest.raises(grpc.RpcError) as e:
            pb.tg_grpc.SchedulerStub(ch).Status(pb.tg.StatusRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
