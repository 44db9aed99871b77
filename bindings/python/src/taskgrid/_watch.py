# SPDX-License-Identifier: Apache-2.0
"""Following the cluster: Client.watch (Scheduler.Watch) and set_log_level.

The scheduler batches what happens into at most one update per interval
(the first at once, with the current state), so a watcher costs it a
bounded amount of work whatever the rate of tasks. Here each update
becomes a :class:`WatchUpdate` of plain dataclasses (states by name, times
in seconds), never a protobuf message.

* :func:`stream` reads one Watch call on the I/O loop and hands each
  update to a sink. When the connection breaks (UNAVAILABLE: the scheduler
  restarted, or the network failed) it reopens the stream for up to
  ``reconnect`` seconds; the first update after that is marked
  ``reconnected`` (task events in between were missed; counts are whole
  again). Other failures end it with an error naming the problem.
* :class:`Watch` is the iterator Client.watch returns: each ``next`` takes
  one update; at most a few wait unread, so a slow reader slows the stream
  (gRPC flow control), never the scheduler's memory or this process's.
  Closing it (or leaving its ``with`` block, or closing the client)
  cancels the call.

:class:`WatchMixin` gives Client its ``watch`` and ``set_log_level``. The
client has no asynchronous API, so neither does this. Depends on
_status, _rpc and errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc

from ._loop import IOLoop
from ._rpc import pb
from ._status import WorkerInfo, state_name, worker_info
from .errors import SchedulerError

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "LOG_LEVELS",
    "MAX_WATCH_KEYS",
    "TaskCounts",
    "TaskEvent",
    "Watch",
    "WatchMixin",
    "WatchUpdate",
    "WorkerEvent",
    "rpc_error",
    "stream",
]

logger = logging.getLogger("taskgrid.client")

#: The most keys one Watch stream may follow (the protocol's limit).
MAX_WATCH_KEYS = 65_535
#: The scheduler's log levels, least to most verbose.
LOG_LEVELS = ("error", "warn", "info", "debug")
# Updates read ahead of the reader: enough to smooth the reader's pauses,
# few enough that a reader that stops holds almost nothing.
_READ_AHEAD = 4
_WORKER_KINDS = {
    pb.WorkerEvent.KIND_JOINED: "joined",
    pb.WorkerEvent.KIND_LEFT: "left",
    pb.WorkerEvent.KIND_UPDATED: "updated",
}


# ---------------------------------------------------------------------------
# What an update carries
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskCounts:
    """Tasks per state. ``released`` counts forgotten tasks (in
    ``WatchUpdate.totals``: since the scheduler started), or, among the
    followed keys, keys the scheduler does not know."""

    waiting: int = 0
    ready: int = 0
    processing: int = 0
    memory: int = 0
    erred: int = 0
    cancelled: int = 0
    released: int = 0

    @classmethod
    def from_pb(cls, m: pb.TaskCounts) -> TaskCounts:
        return cls(m.waiting, m.ready, m.processing, m.memory, m.erred, m.cancelled, m.released)

    @property
    def total(self) -> int:
        """Every task counted, whatever its state."""
        return self.active + self.done

    @property
    def active(self) -> int:
        """Tasks still to finish: waiting, ready or processing."""
        return self.waiting + self.ready + self.processing

    @property
    def done(self) -> int:
        """Tasks in a final state: memory, erred, cancelled or released."""
        return self.memory + self.erred + self.cancelled + self.released

    def __add__(self, other: TaskCounts) -> TaskCounts:
        return TaskCounts(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )


@dataclasses.dataclass(frozen=True)
class TaskEvent:
    """One change of a followed task's state (``previous`` is
    "unspecified" for a new task; ``state`` "released": forgotten).
    ``worker``: where it was assigned (processing) or where it ran (memory,
    erred). ``time`` is when the scheduler saw the change (seconds since
    the epoch, its clock); ``run_time`` how long the function ran on the
    worker (seconds; memory or erred from a run); ``nbytes`` the result's
    size (memory); ``error_type`` the error's type (erred)."""

    key: str
    previous: str
    state: str
    function: str
    worker: str
    attempt: int
    time: float
    run_time: float
    nbytes: int
    error_type: str

    @classmethod
    def from_pb(cls, m: pb.TaskEvent) -> TaskEvent:
        return cls(
            key=m.key,
            previous=state_name(m.previous),
            state=state_name(m.state),
            function=m.function,
            worker=m.worker,
            attempt=m.attempt,
            time=m.time_us / 1e6,
            run_time=m.run_us / 1e6,
            nbytes=m.nbytes,
            error_type=m.error_type,
        )


@dataclasses.dataclass(frozen=True)
class WorkerEvent:
    """A worker ``kind`` "joined" (in the first update: every connected
    worker), "left" (``reason`` says why) or "updated" (its memory or its
    number of tasks changed); ``time`` in seconds since the epoch."""

    kind: str
    worker: WorkerInfo
    reason: str
    time: float

    @classmethod
    def from_pb(cls, m: pb.WorkerEvent) -> WorkerEvent:
        kind = _WORKER_KINDS.get(m.kind) or f"unknown({m.kind})"
        return cls(kind, worker_info(m.worker), m.reason, m.time_us / 1e6)


@dataclasses.dataclass(frozen=True)
class WatchUpdate:
    """One batch of what happened since the previous update.

    ``totals``: tasks per state over the whole cluster; ``keys_counts``:
    the followed ``keys`` per state (all zero without keys); ``tasks``:
    the state changes of followed tasks, in order (with ``task_events``),
    and ``dropped_events`` the ones beyond the per-update bound that were
    not sent; ``functions``: tasks per state of each function (all of them
    in the first update, then those that changed); ``workers``: worker
    events, ``nworkers`` connected and ``target_workers`` the scaling
    target (0: none), with ``workers=True``. ``reconnected``: the stream
    broke and was reopened before this update, so events between were
    missed (counts are current).
    """

    time: float
    totals: TaskCounts
    keys_counts: TaskCounts
    tasks: list[TaskEvent]
    dropped_events: int
    functions: dict[str, TaskCounts]
    workers: list[WorkerEvent]
    nworkers: int
    target_workers: int
    reconnected: bool = False

    @classmethod
    def from_pb(cls, m: pb.WatchUpdate, reconnected: bool = False) -> WatchUpdate:
        return cls(
            time=m.time_us / 1e6,
            totals=TaskCounts.from_pb(m.totals),
            keys_counts=TaskCounts.from_pb(m.keys_counts),
            tasks=[TaskEvent.from_pb(e) for e in m.tasks],
            dropped_events=m.dropped_events,
            functions={f.function: TaskCounts.from_pb(f.counts) for f in m.functions},
            workers=[WorkerEvent.from_pb(e) for e in m.workers],
            nworkers=m.nworkers,
            target_workers=m.target_workers,
            reconnected=reconnected,
        )


# ---------------------------------------------------------------------------
# Reading a stream
# ---------------------------------------------------------------------------


def rpc_error(what: str, address: str, e: grpc.aio.AioRpcError) -> Exception:
    """The error to raise for a failed call `what` ("watch", ...)."""
    code, details = e.code(), e.details()
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return NotImplementedError(
            f"{what}: the scheduler at {address} does not implement it (it is older than "
            f"this client): {details}"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionError(f"{what}: the scheduler at {address} refused it: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ValueError(f"{what}: the scheduler at {address} refused the request: {details}")
    return SchedulerError(f"{what}: the call to {address} failed ({code.name}: {details})")


async def stream(
    client: Client,
    request: pb.WatchRequest,
    reconnect: float,
    sink: Callable[[WatchUpdate], Awaitable[None]],
) -> None:
    """Read Watch calls of `request` into `sink` until the scheduler ends
    the stream; reopen a broken one for up to `reconnect` seconds (see the
    module's docstring). Raises what :func:`rpc_error` gives, or
    SchedulerError when the stream could not be reopened in time; the
    caller's cancellation cancels the call."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    delay = 0.05
    reconnected = False
    while True:
        call = client._stub.Watch(request)
        try:
            async for msg in call:
                deadline, delay = None, 0.05
                update = WatchUpdate.from_pb(msg, reconnected)
                reconnected = False
                await sink(update)
            return  # the scheduler ended it (it stops)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or reconnect <= 0:
                raise rpc_error("watch", client.address, e) from None
            now = loop.time()
            if deadline is None:
                deadline = now + reconnect
            elif now >= deadline:
                raise SchedulerError(
                    f"watch: lost the stream from {client.address} and could not reopen it "
                    f"within {reconnect:g} s ({e.code().name}: {e.details()})"
                ) from None
            logger.debug("watch stream from %s broke (%s); reopening", client.address, e.details())
        finally:
            # Whatever ended the reading (the caller's cancellation, a sink
            # that refused an update), the call ends with it.
            call.cancel()
        reconnected = True
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 1.0)


class _End:
    """The last item of a Watch's queue: the stream's error, or None."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Watch(Iterator[WatchUpdate]):
    """An open Scheduler.Watch stream: iterate over it for
    :class:`WatchUpdate` objects. It ends (StopIteration) when the
    scheduler ends the stream, or once closed; it raises what ended it
    otherwise (see Client.watch). Use it as a context manager, or call
    close(): both cancel the call."""

    def __init__(self, client: Client, request: pb.WatchRequest, reconnect: float) -> None:
        self._client = client
        self._io: IOLoop = client._io
        self._finished = False
        self._queue: asyncio.Queue[WatchUpdate | _End] | None = None
        self._task: asyncio.Task[None] | None = None
        self._io.run(self._start(request, reconnect))

    async def _start(self, request: pb.WatchRequest, reconnect: float) -> None:
        queue: asyncio.Queue[WatchUpdate | _End] = asyncio.Queue(_READ_AHEAD)
        self._queue = queue

        async def run() -> None:
            end = _End(None)
            try:
                await stream(self._client, request, reconnect, queue.put)
            except asyncio.CancelledError:
                pass
            except Exception as e:  # noqa: BLE001 - handed to the reader
                end = _End(e)
            # After the updates still queued, never instead of them; a
            # reader that went away without close() leaves this waiting
            # until the client closes (which cancels its calls).
            with contextlib.suppress(asyncio.CancelledError):
                await queue.put(end)

        self._task = asyncio.ensure_future(run())
        # The client's close cancels it with its other calls.
        self._client._calls.add(self._task)
        self._task.add_done_callback(self._client._calls.discard)

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchUpdate:
        return self.next()

    def next(self, timeout: float | None = None) -> WatchUpdate:
        """The next update; waits at most `timeout` seconds (TimeoutError
        after that; None: no limit). StopIteration once the stream ended."""
        if self._finished or self._queue is None:
            raise StopIteration
        cf: concurrent.futures.Future[WatchUpdate | _End] = self._io.spawn(self._queue.get())
        try:
            item = cf.result(timeout)
        except concurrent.futures.TimeoutError:
            cf.cancel()
            raise TimeoutError(f"no watch update within {timeout} s") from None
        except BaseException:
            cf.cancel()  # e.g. KeyboardInterrupt: the update stays queued
            raise
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Cancel the stream (idempotent); iteration then ends."""
        self._finished = True
        task = self._task
        if task is not None and not task.done():
            self._io.call_soon(task.cancel)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Never leave a stream open for an iterator nobody holds.
        task = getattr(self, "_task", None)
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is gone (at exit)
                self._io.call_soon(task.cancel)


# ---------------------------------------------------------------------------
# The Client's methods
# ---------------------------------------------------------------------------


def watch_keys(items: Iterable[Any]) -> list[str]:
    """Keys from keys and Futures, each once, in order."""
    out: dict[str, None] = {}
    for x in items:
        key = x if isinstance(x, str) else getattr(x, "key", None)
        if not isinstance(key, str):
            raise TypeError(f"expected a task key (str) or a Future, got {type(x).__name__}")
        out[key] = None
    return list(out)


def interval_ms(interval: float) -> int:
    """WatchRequest.interval_ms for `interval` seconds (> 0)."""
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds (got {interval!r})")
    return max(10, round(interval * 1000))


class WatchMixin:
    """Client.watch and Client.set_log_level (a base class of Client)."""

    def watch(
        self,
        keys: Iterable[Any] | None = None,
        key_prefixes: Iterable[str] | None = None,
        task_events: bool = False,
        functions: bool = False,
        workers: bool = False,
        interval: float = 0.1,
        max_events: int = 0,
        reconnect: float = 30.0,
    ) -> Watch:
        """Follow the cluster: an iterator of :class:`WatchUpdate` (a
        context manager that cancels the stream on exit).

        ``keys`` (keys or Futures, at most 65,535) are counted per state in
        every update (``keys_counts``); what this client submitted before
        the call is sent first, so they are known to the scheduler.
        ``key_prefixes`` follow every task whose key starts with one of
        them ("" matches all; on a TLS cluster only the admin role may).
        ``task_events`` adds each state change of followed tasks;
        ``functions`` the tasks per state of each function; ``workers``
        worker joins, leaves and changes. Updates come at most every
        ``interval`` seconds (at least 0.01), with at most ``max_events``
        task events each (0: the scheduler's 10,000). A broken stream is
        reopened for up to ``reconnect`` seconds (0: never).

        Raises NotImplementedError (a scheduler without Watch),
        PermissionError (refused for this certificate's role), ValueError
        (a request the scheduler refuses) or SchedulerError (the stream
        failed), from the call or from iterating.
        """
        client = cast("Client", self)
        client._check_open()
        names = watch_keys(keys or ())
        if len(names) > MAX_WATCH_KEYS:
            raise ValueError(
                f"watch follows at most {MAX_WATCH_KEYS} keys per stream, got {len(names)}: "
                "open several watches, or use taskgrid.progress (it splits them)"
            )
        if max_events < 0:
            raise ValueError(f"max_events must be 0 or more (got {max_events})")
        request = pb.WatchRequest(
            keys=names,
            key_prefixes=list(key_prefixes or ()),
            task_events=task_events,
            functions=functions,
            workers=workers,
            interval_ms=interval_ms(interval),
            max_events=max_events,
        )
        if names:
            self._flush()
        return Watch(client, request, reconnect)

    def _flush(self) -> None:
        """Wait until everything queued before (submits) has been sent."""

        async def nothing() -> None:
            return None

        cast("Client", self)._ordered_call(nothing)

    def set_log_level(self, level: str | None = None) -> str:
        """Set the scheduler's log level ("error", "warn", "info" or
        "debug": one structured line per change of a task's state); returns
        the level before the call. ``None`` changes nothing and returns the
        current level. A TLS cluster allows it to the admin role only
        (PermissionError otherwise)."""
        name = "" if level is None else str(level).lower()
        if name and name not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS)}")

        client = cast("Client", self)

        async def call() -> pb.SetLogLevelResponse:
            resp: pb.SetLogLevelResponse = await client._stub.SetLogLevel(
                pb.SetLogLevelRequest(level=name), timeout=30
            )
            return resp

        try:
            resp = client._ordered_call(call)
        except grpc.aio.AioRpcError as e:
            raise rpc_error("set_log_level", client.address, e) from None
        return resp.previous
