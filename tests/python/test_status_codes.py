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


def test_key_limit_is_the_protos_1024_bytes(pb, bare_channel):
    """TaskSpec.key is at most 1,024 bytes (the proto says so): a key of
    exactly 1,024 bytes is accepted, one byte more is INVALID_ARGUMENT
    naming the limit."""
    stub = pb.tg_grpc.SchedulerStub(bare_channel)
    ok = "k" * 1024
    r = stub.Submit(pb.tg.SubmitRequest(tasks=[pb.tg.TaskSpec(key=ok, func="tg.noop")]),
                    timeout=5)
    assert r.accepted == 1
    with pytest.raises(grpc.RpcError) as e:
        stub.Submit(pb.tg.SubmitRequest(tasks=[pb.tg.TaskSpec(key="k" * 1025, func="tg.noop")]),
                    timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1025 bytes" in e.value.details()
    assert "1024" in e.value.details()


def test_gather_timeout_answers_pending_keys_with_their_state(pb, bare_channel):
    """GatherRequest.timeout_ms: keys still pending when it passes are
    answered with their current state and no data, then the stream ends
    with DEADLINE_EXCEEDED (the proto's promise)."""
    stub = pb.tg_grpc.SchedulerStub(bare_channel)
    # No worker exists, so the task stays READY; its dependent WAITING.
    a = pb.tg.TaskSpec(key="pending-a", func="tg.noop")
    b = pb.tg.TaskSpec(key="pending-b", func="tg.noop", deps=["pending-a"])
    stub.Submit(pb.tg.SubmitRequest(tasks=[a, b]), timeout=5)
    seen = {}
    with pytest.raises(grpc.RpcError) as e:
        for resp in stub.Gather(pb.tg.GatherRequest(keys=["pending-a", "pending-b"],
                                                    timeout_ms=300), timeout=10):
            for r in resp.results:
                seen[r.key] = r
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert seen["pending-a"].state == pb.tg.TASK_STATE_READY
    assert seen["pending-b"].state == pb.tg.TASK_STATE_WAITING
    assert not seen["pending-a"].data and not seen["pending-b"].data
