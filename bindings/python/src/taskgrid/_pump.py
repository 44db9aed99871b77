# SPDX-License-Identifier: Apache-2.0
"""The I/O side of a Client: the outbox pump, Gather streams and releases.

Everything here runs on the shared I/O loop (see _loop.py), except the
callers' appends to the outbox:

* submit/map append TaskSpecs to the client's *outbox*; one pump coroutine
  drains it in order, merging everything queued into as few Submit calls
  as the message limits allow (one for a whole map). Releases and cancels
  go through the same outbox, so they can never overtake the submit they
  refer to.
* After each Submit, one Gather stream is opened for that batch's keys;
  results stream back as tasks finish and are filed under their key. No
  per-task RPC is ever made, and results are decoded lazily, on result().
* When the last Future of a key is garbage-collected the key is released
  (batched, like everything else), so the scheduler can forget the result.
* The batch Gather streams defer held results (GatherRequest.defer_held):
  a result held on a worker comes as its TaskResult only (done, its size,
  no bytes), so following what was submitted never moves large results;
  a future of one is done at once, and its bytes are fetched when
  result() asks for them (``fetch_held``: a Gather of that key, chunked;
  or, with ``direct_to_workers``, from a holder first: _direct.py).
* Chunked Gather streams carry a held result as its TaskResult (size and
  codec, no bytes) and then its chunks, which are checked (offsets
  contiguous, CRC-32, total size) and joined once when the last one
  arrives; a corrupt or incomplete result fails with DataCorrupt naming
  the key.

:class:`ClientIO` is the base class of :class:`taskgrid.Client`, which
creates every attribute declared here. Depends on _future and the stubs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

import grpc

from ._crc import crc32
from ._future import CANCELLED, ERROR, FINISHED, LOST, PENDING, _State, run_callback
from ._loop import IOLoop
from ._rpc import pb, pb_grpc
from .errors import DataCorrupt, SchedulerError, rebuild

logger = logging.getLogger("taskgrid.client")

# Limits of one Submit: the protocol's 65,535 entries per repeated field,
# and a byte budget far below the scheduler's 64 MiB default.
_SUBMIT_MAX_TASKS = 50_000
_SUBMIT_MAX_BYTES = 16 * 1024 * 1024
_RELEASE_MAX_KEYS = 50_000

_MEMORY = pb.TASK_STATE_MEMORY
_ERRED = pb.TASK_STATE_ERRED
_CANCELLED = pb.TASK_STATE_CANCELLED
_RELEASED = pb.TASK_STATE_RELEASED

# An outbox entry: ("submit", [TaskSpec]), ("release", [key]),
# ("gather", [key]) or ("call", (coroutine function, concurrent future)).
Op = tuple[str, Any]


class _Assembly:
    """The chunks of one held result received so far (one Gather stream)."""

    __slots__ = ("codec", "got", "parts", "size")

    def __init__(self, size: int, codec: str) -> None:
        self.size = size
        self.codec = codec
        self.got = 0
        self.parts: list[bytes] = []

    def add(self, c: pb.DataChunk) -> str | None:
        """Take chunk `c`; None, or why it cannot be part of this result."""
        data = c.data
        if c.offset != self.got:
            return f"a chunk at offset {c.offset} where {self.got} was expected"
        if c.size != self.size:
            return f"a chunk giving the size as {c.size}, not {self.size}"
        if self.got + len(data) > self.size:
            return f"more than its {self.size} bytes"
        if crc32(data) != c.crc32:
            return f"a chunk at offset {c.offset} that fails its CRC-32"
        self.parts.append(data)
        self.got += len(data)
        return None


class ClientIO:
    """The outbox pump and result streams of a Client (its base class)."""

    # Set by Client.__init__ (and _connect) before any of this runs.
    id: str
    address: str
    _io: IOLoop
    _channel: grpc.aio.Channel
    _stub: pb_grpc.SchedulerStub
    _cond: threading.Condition
    _closed: bool
    _states: dict[str, _State]
    _outbox: collections.deque[Op]
    _pumping: bool
    _pump_task: asyncio.Future[None] | None
    _decrefs: collections.deque[_State]
    _decref_scheduled: bool
    _calls: set[asyncio.Task[None]]

    # -- the pump -----------------------------------------------------------

    def _kick(self) -> None:
        # Under self._cond.
        if not self._pumping:
            self._pumping = True
            self._io.call_soon(self._start_pump)

    def _start_pump(self) -> None:
        # Held here: the loop keeps only a weak reference to its tasks.
        self._pump_task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                release: list[str] = []
                with self._cond:
                    if not self._outbox:
                        self._pumping = False
                        return
                    kind, payload = self._pop_merged()
                    if kind == "release" and self._outbox and self._outbox[0][0] == "submit":
                        # Releases ride on the next Submit (applied before its
                        # tasks, so only those queued before it may join).
                        release = payload
                        kind, payload = self._pop_merged()
                if kind == "submit":
                    await self._send_submit(payload, release)
                elif kind == "release":
                    await self._send_release(payload)
                elif kind == "gather":
                    self._start_gather(payload)
                else:  # "call": (coroutine function, concurrent future)
                    fn, cf = payload
                    try:
                        cf.set_result(await fn())
                    except BaseException as e:  # noqa: BLE001 - handed to caller
                        cf.set_exception(e)
        except BaseException:
            with self._cond:
                self._pumping = False
            if not self._closed:
                logger.exception("taskgrid client pump failed")
            raise

    def _pop_merged(self) -> Op:
        # Under self._cond: the next op, merged with following ops of its kind.
        kind, payload = self._outbox.popleft()
        if kind in ("submit", "release", "gather"):
            items = list(payload)
            while self._outbox and self._outbox[0][0] == kind:
                items.extend(self._outbox.popleft()[1])
            payload = items
        return kind, payload

    async def _send_submit(self, specs: list[pb.TaskSpec], release: list[str]) -> None:
        if len(release) > _RELEASE_MAX_KEYS:
            await self._send_release(release)
            release = []
        chunk: list[pb.TaskSpec] = []
        size = 0
        for spec in specs:
            n = len(spec.input) + len(spec.key) + 64
            if chunk and (len(chunk) >= _SUBMIT_MAX_TASKS or size + n > _SUBMIT_MAX_BYTES):
                await self._submit_chunk(chunk, release)
                chunk, size, release = [], 0, []
            chunk.append(spec)
            size += n
        if chunk:
            await self._submit_chunk(chunk, release)

    async def _submit_chunk(self, chunk: list[pb.TaskSpec], release: list[str]) -> None:
        keys = [s.key for s in chunk]
        try:
            await self._stub.Submit(
                pb.SubmitRequest(tasks=chunk, client_id=self.id, release=release)
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                exc: BaseException = ValueError(f"the scheduler refused the tasks: {e.details()}")
            else:
                exc = SchedulerError(
                    f"submitting to {self.address} failed ({e.code().name}: {e.details()})"
                )
            self._fail(keys, exc)
            return
        # Only keys someone awaits (a graph's inner tasks have no state).
        with self._cond:
            states = self._states
            awaited = [k for k in keys if k in states]
        if awaited:
            self._start_gather(awaited)

    # -- results ------------------------------------------------------------

    def _start_gather(self, keys: list[str]) -> None:
        task = asyncio.ensure_future(self._gather(keys))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _gather(self, keys: list[str]) -> None:
        call = self._stub.Gather(pb.GatherRequest(keys=keys, chunked=True, defer_held=True))
        assembling: dict[str, _Assembly] = {}
        try:
            async for resp in call:
                self._on_results(resp.results, assembling)
                if resp.chunks:
                    self._on_chunks(resp.chunks, assembling)
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as e:
            if not self._closed:
                self._fail(
                    keys,
                    SchedulerError(
                        f"lost the results stream from {self.address} "
                        f"({e.code().name}: {e.details()})"
                    ),
                )
            return
        for key, a in assembling.items():
            self._fail_key(
                key, f"the result of '{key}' ended incomplete: {a.got} of {a.size} bytes arrived"
            )
        # Every key has been answered; anything still pending was missed.
        with self._cond:
            missed = [
                k for k in keys if (st := self._states.get(k)) is not None and st.status is PENDING
            ]
        if missed and not self._closed:
            self._fail(missed, SchedulerError("the scheduler ended a gather without these keys"))

    def _on_results(
        self, results: Iterable[pb.TaskResult], assembling: dict[str, _Assembly]
    ) -> None:
        fired = []
        rec = getattr(self, "_stream_rec", None)
        if rec is not None:  # a task stream without Watch (_stream.py)
            rec.on_results(results)
        with self._cond:
            states = self._states
            for r in results:
                st = states.get(r.key)
                if st is None or st.status is not PENDING:
                    continue
                s = r.state
                assembling.pop(r.key, None)
                if s == _MEMORY and r.held and not r.data:
                    # Done; its bytes stay on the worker until result().
                    st.remote = r.size
                    st.holders = tuple(r.holders)
                    st.codec = r.codec
                    st.status = FINISHED
                elif s == _MEMORY and not r.data and r.size > 0:
                    # Held on a worker: its chunks follow.
                    assembling[r.key] = _Assembly(r.size, r.codec)
                    continue
                if s == _MEMORY:
                    st.data = r.data
                    st.codec = r.codec
                    st.status = FINISHED
                else:
                    e = r.error
                    st.error = (e.type, e.message, e.traceback, e.origin_key)
                    if s == _ERRED:
                        st.status = ERROR
                        # A Python worker's pickled exception (see
                        # Client._exception_of), when the scheduler kept it.
                        st.data = r.data
                        st.codec = r.codec
                    elif s == _CANCELLED:
                        st.status = CANCELLED
                    elif s == _RELEASED:
                        st.status = LOST
                    else:  # not final (a gather timeout): keep waiting
                        st.error = None
                        continue
                if st.callbacks:
                    fired.append(st)
            self._cond.notify_all()
        for st in fired:
            self._fire(st)

    def _on_chunks(self, chunks: Iterable[pb.DataChunk], assembling: dict[str, _Assembly]) -> None:
        for c in chunks:
            a = assembling.get(c.key)
            if a is None:
                continue  # not awaited here (already answered, or not ours)
            why = a.add(c)
            if why is None:
                if a.got == a.size:
                    del assembling[c.key]
                    self._on_assembled(c.key, a)
                continue
            del assembling[c.key]
            self._fail_key(c.key, f"the result of '{c.key}' arrived corrupt: {why}; discarded")

    async def fetch_held(self, key: str) -> tuple[bytes, str]:
        """The bytes and codec of `key`, a result held on a worker: one
        chunked Gather of it, through the scheduler. Raises the task's
        error (e.g. DataLost), DataCorrupt, or SchedulerError."""
        call = self._stub.Gather(pb.GatherRequest(keys=[key], chunked=True))
        a: _Assembly | None = None
        try:
            async for resp in call:
                for r in resp.results:
                    if r.key != key:
                        continue
                    if r.state == _MEMORY and (r.data or r.size == 0):
                        return r.data, r.codec
                    if r.state == _MEMORY:
                        a = _Assembly(r.size, r.codec)
                        continue
                    e = r.error
                    raise rebuild(
                        e.type or "tg.DataLost", e.message, e.traceback, key, e.origin_key
                    )
                for c in resp.chunks:
                    if a is None or c.key != key:
                        continue
                    why = a.add(c)
                    if why is not None:
                        raise DataCorrupt(
                            f"the result of '{key}' arrived corrupt: {why}; discarded",
                            type="tg.DataCorrupt",
                            key=key,
                        )
                    if a.got == a.size:
                        return (a.parts[0] if len(a.parts) == 1 else b"".join(a.parts)), a.codec
        except grpc.aio.AioRpcError as e:
            raise SchedulerError(
                f"lost the stream of '{key}' from {self.address} ({e.code().name}: {e.details()})"
            ) from None
        got = a.got if a is not None else 0
        size = a.size if a is not None else 0
        raise DataCorrupt(
            f"the result of '{key}' ended incomplete: {got} of {size} bytes arrived",
            type="tg.DataCorrupt",
            key=key,
        )

    def _on_assembled(self, key: str, a: _Assembly) -> None:
        data = a.parts[0] if len(a.parts) == 1 else b"".join(a.parts)
        a.parts = []
        with self._cond:
            st = self._states.get(key)
            if st is None or st.status is not PENDING:
                return
            st.data = data
            st.codec = a.codec
            st.status = FINISHED
            self._cond.notify_all()
            fire = bool(st.callbacks)
        if fire:
            self._fire(st)

    def _fail_key(self, key: str, message: str) -> None:
        self._fail([key], DataCorrupt(message, type="tg.DataCorrupt", key=key))

    def _fail(self, keys: Iterable[str], exc: BaseException) -> None:
        fired = []
        with self._cond:
            for k in keys:
                st = self._states.get(k)
                if st is not None and st.status is PENDING:
                    st.status = ERROR
                    st.exc = exc
                    if st.callbacks:
                        fired.append(st)
            self._cond.notify_all()
        for st in fired:
            self._fire(st)

    def _fire(self, st: _State) -> None:
        with self._cond:
            cbs, st.callbacks = st.callbacks, None
        for fut, fn in cbs or ():
            run_callback(fut, fn)

    # -- releasing ----------------------------------------------------------

    def _decref(self, st: _State) -> None:
        # May run in any thread, inside a garbage collection, even while this
        # thread holds self._cond: only append and schedule.
        self._decrefs.append(st)
        if not self._decref_scheduled and not self._closed:
            self._decref_scheduled = True
            with contextlib.suppress(RuntimeError):  # loop closed at interpreter exit
                self._io.call_soon(self._apply_decrefs)

    def _apply_decrefs(self) -> None:
        release = []
        with self._cond:
            self._decref_scheduled = False
            while self._decrefs:
                st = self._decrefs.popleft()
                st.refs -= 1
                if st.refs <= 0 and self._states.get(st.key) is st:
                    del self._states[st.key]
                    if st.held:
                        release.append(st.key)
            if release and not self._closed:
                self._outbox.append(("release", release))
                self._kick()

    async def _send_release(self, keys: list[str]) -> None:
        for i in range(0, len(keys), _RELEASE_MAX_KEYS):
            try:
                await self._stub.Release(pb.ReleaseRequest(keys=keys[i : i + _RELEASE_MAX_KEYS]))
            except grpc.aio.AioRpcError as e:
                if not self._closed:
                    logger.debug("release failed: %s", e.details())
