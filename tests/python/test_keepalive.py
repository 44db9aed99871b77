# SPDX-License-Identifier: Apache-2.0
"""An idle client that keeps its connection alive with pings (as the
Python binding does, every 30 s) is not cut off by the scheduler: gRPC's
server default allows one ping per 5 minutes without data and answers
more with GOAWAY "too_many_pings". Here the client pings every 11 s (the
scheduler accepts one per 10 s) and stays idle past the point where the
default would have closed the connection (the third ping)."""
from __future__ import annotations

import time

import grpc

from conftest import run_scheduler


def test_idle_call_with_keepalive_pings_stays_open(pb) -> None:
    options = [
        ("grpc.keepalive_time_ms", 11_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with run_scheduler(["--listen", "tcp://127.0.0.1:0", "--workers", "0"]) as addr, \
            grpc.insecure_channel(addr, options=options) as ch:
        stub = pb.tg_grpc.SchedulerStub(ch)
        # A stream that stays silent while nothing changes, as a Gather of
        # a long task or a Watch of an idle cluster does.
        call = stub.Watch(pb.tg.WatchRequest(), timeout=120)
        updates = iter(call)
        next(updates)  # the first update comes at once
        time.sleep(36)  # silent on purpose: three pings go out meanwhile
        stub.Submit(pb.tg.SubmitRequest(
            tasks=[pb.tg.TaskSpec(key="keepalive-1", func="tg.noop")]), timeout=10)
        u = next(updates)  # the same stream, still open
        assert u.totals.waiting + u.totals.ready == 1
        call.cancel()
