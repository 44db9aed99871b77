# SPDX-License-Identifier: Apache-2.0
"""A stock gRPC client (grpcio, stubs generated from proto/) drives the C
scheduler and C workers: Submit and Gather a graph, health checks, and the
errors users get for bad input."""
from __future__ import annotations

import json
import uuid

import grpc
import pytest

from conftest import wait_for_workers


def _key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _gather(pb, stub, keys, timeout_ms=10000):
    out = {}
    for resp in stub.Gather(pb.tg.GatherRequest(keys=keys, timeout_ms=timeout_ms),
                            timeout=30):
        for r in resp.results:
            out[r.key] = r
    return out


def test_submit_and_gather_a_diamond(pb, channel):
    stub = pb.tg_grpc.SchedulerStub(channel)
    wait_for_workers(pb, channel, 2)
    T = pb.tg.TaskSpec
    tasks, adds = [], []
    for i in range(10):
        inc, dec, add = _key(f"inc-{i}"), _key(f"dec-{i}"), _key(f"add-{i}")
        tasks += [
            T(key=inc, func="tg.inc", input=json.dumps(i).encode(), codec="json"),
            T(key=dec, func="tg.dec", input=json.dumps(i).encode(), codec="json"),
            T(key=add, func="tg.add", deps=[inc, dec], codec="json"),
        ]
        adds.append(add)
    total = _key("sum")
    tasks.append(T(key=total, func="tg.sum", deps=adds, codec="json"))
    resp = stub.Submit(pb.tg.SubmitRequest(tasks=tasks), timeout=10)
    assert resp.accepted == len(tasks)

    res = _gather(pb, stub, [total] + adds)
    assert res[total].state == pb.tg.TASK_STATE_MEMORY
    assert json.loads(res[total].data) == sum(2 * i for i in range(10))
    assert json.loads(res[adds[3]].data) == 6

    # The same key submitted again is the same task, not run twice.
    again = stub.Submit(pb.tg.SubmitRequest(tasks=tasks[:3]), timeout=10)
    assert again.accepted == 0 and again.existing == 3


def test_error_propagates_to_dependents(pb, channel):
    stub = pb.tg_grpc.SchedulerStub(channel)
    bad, child = _key("bad"), _key("child")
    T = pb.tg.TaskSpec
    stub.Submit(pb.tg.SubmitRequest(tasks=[
        T(key=bad, func="tg.fail", input=b'"boom"', codec="json"),
        T(key=child, func="tg.inc", deps=[bad], codec="json"),
    ]), timeout=10)
    res = _gather(pb, stub, [bad, child])
    assert res[bad].state == pb.tg.TASK_STATE_ERRED
    assert "boom" in res[bad].error.message
    assert res[child].state == pb.tg.TASK_STATE_ERRED
    assert res[child].error.origin_key == bad
    assert "boom" in res[child].error.message


@pytest.mark.parametrize("case", ["unknown_dep", "cycle", "no_func"])
def test_bad_graphs_are_refused_with_the_key_named(pb, channel, case):
    stub = pb.tg_grpc.SchedulerStub(channel)
    T = pb.tg.TaskSpec
    a, b = _key("a"), _key("b")
    if case == "unknown_dep":
        tasks, named = [T(key=a, func="tg.inc", deps=["nowhere"])], "nowhere"
    elif case == "cycle":
        tasks = [T(key=a, func="tg.inc", deps=[b]), T(key=b, func="tg.inc", deps=[a])]
        named = None
    else:
        tasks, named = [T(key=a)], a
    with pytest.raises(grpc.RpcError) as e:
        stub.Submit(pb.tg.SubmitRequest(tasks=tasks), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    if named:
        assert named in e.value.details()
    else:
        assert a in e.value.details() or b in e.value.details()
    # Nothing of the refused batch was kept.
    st = stub.Status(pb.tg.StatusRequest(keys=[a]), timeout=5)
    assert st.keys[0].state == pb.tg.TASK_STATE_RELEASED


def test_malformed_message_is_invalid_argument_and_channel_survives(pb, channel):
    submit = channel.unary_unary("/taskgrid.v1.Scheduler/Submit",
                                 request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        submit(b"\x0a\xff\xff\xff\xff\x0f", timeout=5)  # truncated field
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in e.value.details()
    # The same connection keeps working.
    stub = pb.tg_grpc.SchedulerStub(channel)
    assert stub.Status(pb.tg.StatusRequest(), timeout=5).version


def test_oversized_message_names_the_limit(pb, channel):
    stub = pb.tg_grpc.SchedulerStub(channel)
    big = pb.tg.TaskSpec(key=_key("big"), func="tg.echo", input=b"x" * 2_000_000)
    with pytest.raises(grpc.RpcError) as e:
        stub.Submit(pb.tg.SubmitRequest(tasks=[big]), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1048576" in e.value.details()


def test_unknown_function_waits_and_status_says_why(pb, channel):
    stub = pb.tg_grpc.SchedulerStub(channel)
    k = _key("nofunc")
    stub.Submit(pb.tg.SubmitRequest(tasks=[pb.tg.TaskSpec(key=k, func="nobody.has")]),
                timeout=10)
    st = stub.Status(pb.tg.StatusRequest(keys=[k]), timeout=5)
    assert st.keys[0].state == pb.tg.TASK_STATE_READY
    assert "nobody.has" in st.keys[0].reason
    assert st.unplaceable >= 1
    stub.Cancel(pb.tg.CancelRequest(keys=[k]), timeout=5)
    res = _gather(pb, stub, [k])
    assert res[k].state == pb.tg.TASK_STATE_CANCELLED


def test_gather_of_unknown_key_says_so(pb, channel):
    stub = pb.tg_grpc.SchedulerStub(channel)
    res = _gather(pb, stub, ["never-submitted"])
    assert res["never-submitted"].error.type == "tg.UnknownKey"


def test_health_check_serving(pb, channel):
    stub = pb.health_grpc.HealthStub(channel)
    r = stub.Check(pb.health.HealthCheckRequest(service=""), timeout=5)
    assert r.status == pb.health.HealthCheckResponse.SERVING


def test_unknown_method_is_unimplemented(channel):
    m = channel.unary_unary("/taskgrid.v1.Scheduler/Nope",
                            request_serializer=lambda b: b,
                            response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        m(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
