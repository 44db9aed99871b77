# SPDX-License-Identifier: Apache-2.0
"""A fake taskgrid scheduler (grpcio, in the test process) for the
client side of Watch, SetLogLevel and Status: the tests choose what it
answers, so batching, reconnection, ordering, cancellation and bad
updates can be driven exactly. Real-scheduler tests live beside it.

``FakeScheduler.states`` maps keys to TaskState values (a key it does not
hold counts as RELEASED, as the contract says); the default Watch answers
each stream with keys_counts of its keys, at once and then whenever they
change (at most every interval_ms), until the client cancels. A test may
replace ``watch`` with its own generator function.
"""
from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Callable, Iterator

import grpc

from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc

S = pb.TaskState
FINAL = (S.TASK_STATE_MEMORY, S.TASK_STATE_ERRED, S.TASK_STATE_CANCELLED,
         S.TASK_STATE_RELEASED)
_FIELDS = {S.TASK_STATE_WAITING: "waiting", S.TASK_STATE_READY: "ready",
           S.TASK_STATE_PROCESSING: "processing", S.TASK_STATE_MEMORY: "memory",
           S.TASK_STATE_ERRED: "erred", S.TASK_STATE_CANCELLED: "cancelled",
           S.TASK_STATE_RELEASED: "released"}


def counts(states: list[int]) -> pb.TaskCounts:
    c = pb.TaskCounts()
    for s in states:
        name = _FIELDS[s]
        setattr(c, name, getattr(c, name) + 1)
    return c


class FakeScheduler(pb_grpc.SchedulerServicer):
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.states: dict[str, int] = {}
        self.requests: list[pb.WatchRequest] = []
        self.open_streams = 0
        self.ended_streams = 0
        self.log_level = "info"
        self.status = pb.StatusResponse(version="fake-1", workers=[
            pb.WorkerInfo(name="w-one", nthreads=4, processing=2, memory=3 << 20,
                          memory_limit=8 << 30, rss=90 << 20),
            pb.WorkerInfo(name="w-two", nthreads=2, draining=True),
        ], waiting=1, ready=2, processing=2, memory=7, erred=1)
        # Tests may replace these.
        self.watch: Callable[[pb.WatchRequest, grpc.ServicerContext],
                             Iterator[pb.WatchUpdate]] = self.follow_keys
        self.deny: dict[str, str] = {}  # method -> PERMISSION_DENIED details
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        pb_grpc.add_SchedulerServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"tcp://127.0.0.1:{port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)

    # -- driving it -------------------------------------------------------

    def set(self, keys: list[str] | str, state: int) -> None:
        with self.lock:
            for k in [keys] if isinstance(keys, str) else keys:
                self.states[k] = state
            self.lock.notify_all()

    def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (bounded) until cond() holds, under the lock."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("fake scheduler: condition not met in time")
                self.lock.wait(left)

    # -- the service --------------------------------------------------------

    def _refuse(self, method: str, context: grpc.ServicerContext) -> None:
        if method in self.deny:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, self.deny[method])

    def Status(self, request, context):  # noqa: N802 - gRPC's name
        self._refuse("Status", context)
        return self.status

    def SetLogLevel(self, request, context):  # noqa: N802
        self._refuse("SetLogLevel", context)
        if request.level and request.level not in ("error", "warn", "info", "debug"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown level '{request.level}'")
        previous = self.log_level
        if request.level:
            self.log_level = request.level
        return pb.SetLogLevelResponse(previous=previous, level=self.log_level)

    def Watch(self, request, context):  # noqa: N802
        self._refuse("Watch", context)
        with self.lock:
            self.requests.append(request)
            self.open_streams += 1
            self.lock.notify_all()

        def ended() -> None:
            with self.lock:
                self.ended_streams += 1
                self.lock.notify_all()

        context.add_callback(ended)
        yield from self.watch(request, context)

    def follow_keys(self, request: pb.WatchRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.WatchUpdate]:
        interval = max(request.interval_ms or 100, 10) / 1000
        last = None
        while context.is_active():
            with self.lock:
                now = [self.states.get(k, S.TASK_STATE_RELEASED) for k in request.keys]
                if now == last:
                    self.lock.wait(interval)
                    continue
            last = now
            yield pb.WatchUpdate(time_us=int(time.time() * 1e6), keys_counts=counts(now),
                                 totals=counts(list(self.states.values())))
            time.sleep(interval)
