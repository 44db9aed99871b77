# SPDX-License-Identifier: Apache-2.0
"""The scheduler's errors keep their meaning on the wire: a stock gRPC
client sees NOT_FOUND, FAILED_PRECONDITION, RESOURCE_EXHAUSTED and
INVALID_ARGUMENT where the scheduler means them (one mapping from the
project's status codes to gRPC's, in transport/), not a catch-all."""
from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from conftest import run_scheduler


@pytest.fixture(scope="module")
def bare_channel() -> Iterator[grpc.Channel]:
    """A scheduler with no launcher (it cannot start workers itself)."""
    with run_scheduler(["--listen", "tcp://127.0.0.1:0", "--launcher", "none",
                        "--max-message", "65536"]) as addr:
        with grpc.insecure_channel(addr) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            yield ch


def test_health_of_an_unknown_service_is_not_found(pb, bare_channel):
    stub = pb.health_grpc.HealthStub(bare_channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.Check(pb.health.HealthCheckRequest(service="no.such.Service"),
                   timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown service" in e.value.details()


def test_scale_without_a_launcher_is_failed_precondition(pb, bare_channel):
    stub = pb.tg_grpc.SchedulerStub(bare_channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.Scale(pb.tg.ScaleRequest(workers=2), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no launcher" in e.value.details()


def test_a_request_over_the_limit_is_resource_exhausted(pb, bare_channel):
    stub = pb.tg_grpc.SchedulerStub(bare_channel)
    big = pb.tg.TaskSpec(key="big", func="tg.echo", codec="raw",
                         input=b"x" * 100_000)
    with pytest.raises(grpc.RpcError) as e:
        stub.Submit(pb.tg.SubmitRequest(tasks=[big]), timeout=5)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_cycle_is_invalid_argument_and_names_the_key(pb, bare_channel):
    stub = pb.tg_grpc.SchedulerStub(bare_channel)
    a = pb.tg.TaskSpec(key="cyc-a", func="tg.noop", deps=["cyc-b"])
    b = pb.tg.TaskSpec(key="cyc-b", func="tg.noop", deps=["cyc-a"])
    with pytest.raises(grpc.RpcError) as e:
        stub.Submit(pb.tg.SubmitRequest(tasks=[a, b]), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cyc-" in e.value.details()
