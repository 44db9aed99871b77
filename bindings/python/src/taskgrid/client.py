# SPDX-License-Identifier: Apache-2.0
"""taskgrid.Client and Future: a Dask-style client over the gRPC protocol.

How work flows (all RPCs run on the shared I/O loop, see _loop.py):

* submit/map build TaskSpecs in the caller's thread and append them to the
  client's *outbox*; one pump coroutine drains the outbox in order, merging
  everything queued into as few Submit calls as the message limits allow
  (one for a whole map). Releases and cancels go through the same outbox,
  so they can never overtake the submit they refer to.
* After each Submit, one Gather stream is opened for that batch's keys;
  results stream back as tasks finish and are filed under their key. No
  per-task RPC is ever made, and results are decoded lazily, on result().
* A Future is a handle on a per-key state shared by every Future of that
  key. When the last handle is garbage-collected the key is released
  (batched, like everything else), so the scheduler can forget the result.
* Futures among the arguments become the task's dependencies: the
  scheduler passes their results to the worker; they never come back
  through the client.

Waiting threads sleep on one condition variable notified once per batch of
results. Done callbacks run on a separate thread so they may block or call
the client; the I/O loop never runs user code.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import logging
import os
import queue
import re
import threading
import time
import uuid
import weakref
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Union)

import grpc

from . import _annotate, _codec, _context
from ._loop import IOLoop
from ._rpc import normalize_address, pb, pb_grpc
from .errors import CancelledError, SchedulerError, rebuild
from .security import Security

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

PENDING, FINISHED, ERROR, CANCELLED, LOST = (
    "pending", "finished", "error", "cancelled", "lost")


# ---------------------------------------------------------------------------
# Per-key state and the Future handle
# ---------------------------------------------------------------------------


class _State:
    """What the client knows of one key; shared by all its Futures."""

    __slots__ = ("key", "status", "refs", "held", "data", "codec", "error",
                 "value", "has_value", "exc", "callbacks")

    def __init__(self, key: str, held: bool) -> None:
        self.key = key
        self.status = PENDING
        self.refs = 0
        self.held = held  # this client submitted it (holds it on the scheduler)
        self.data = b""
        self.codec = ""
        self.error: Optional[tuple[str, str, str, str]] = None
        self.value: Any = None
        self.has_value = False
        self.exc: Optional[BaseException] = None
        self.callbacks: Optional[list] = None


class Future:
    """A handle on the eventual result of a task (like dask's Future).

    ``result(timeout)`` waits and returns the value or raises the task's
    error (as its original exception type, with the remote traceback
    chained); ``done()``, ``exception()``, ``traceback()``,
    ``add_done_callback(fn)`` and ``cancel()`` behave as in
    concurrent.futures. Dropping the last Future of a key lets the
    scheduler forget the result.
    """

    __slots__ = ("key", "client", "_state", "_released", "__weakref__")

    def __init__(self, key: str, client: "Client", state: _State) -> None:
        # The caller has counted this handle in state.refs.
        self.key = key
        self.client = client
        self._state = state
        self._released = False

    @property
    def status(self) -> str:
        """'pending', 'finished', 'error', 'cancelled' or 'lost'."""
        return self._state.status

    def done(self) -> bool:
        return self._state.status != PENDING

    def cancelled(self) -> bool:
        return self._state.status == CANCELLED

    def result(self, timeout: Optional[float] = None) -> Any:
        """The task's result; waits at most `timeout` seconds."""
        st = self._state
        if st.status is not FINISHED:
            if st.status is PENDING:
                self.client._wait((st,), timeout)
            if st.status is not FINISHED:
                raise self.client._exception_of(st)
        if st.has_value:
            return st.value
        return self.client._value_of(st)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The task's error, or None if it succeeded; waits like result()."""
        st = self._state
        if st.status is PENDING:
            self.client._wait((st,), timeout)
        return None if st.status is FINISHED else self.client._exception_of(st)

    def traceback(self, timeout: Optional[float] = None) -> Optional[str]:
        """The remote traceback text of a failed task (None otherwise)."""
        st = self._state
        if st.status is PENDING:
            self.client._wait((st,), timeout)
        return st.error[2] or None if st.error else None

    def add_done_callback(self, fn: Callable[["Future"], Any]) -> None:
        """Call fn(self) once the task is final (at once if it is already).

        Callbacks run on taskgrid's callback thread, in order; they may
        block or use the client.
        """
        self.client._add_callback(self, fn)

    def cancel(self) -> bool:
        """Cancel the task (and what depends on it); True if it was pending."""
        if self.done():
            return False
        self.client.cancel([self])
        return True

    def release(self) -> None:
        """Drop this handle's claim on the result now (also done on GC)."""
        if not self._released:
            self._released = True
            self.client._decref(self._state)

    def __del__(self) -> None:
        try:
            if not self._released:
                self._released = True
                self.client._decref(self._state)
        except Exception:  # interpreter shutdown
            pass

    def __reduce__(self) -> tuple[Any, ...]:
        # A Future that travels (inside some object) is rebound on arrival to
        # the default client there (in a task: the worker's client).
        return (_future_from_key, (self.key,))

    def __repr__(self) -> str:
        return f"<taskgrid.Future: {self._state.status}, key: {self.key}>"


def _future_from_key(key: str) -> Future:
    return get_client().future(key)


def _is_future(obj: Any) -> bool:
    return type(obj) is Future


# ---------------------------------------------------------------------------
# Done callbacks: one thread, in order.
# ---------------------------------------------------------------------------


class _CallbackThread:
    _lock = threading.Lock()
    _queue: Optional["queue.SimpleQueue[tuple[Callable[..., Any], Any]]"] = None
    _pid = 0

    @classmethod
    def put(cls, fn: Callable[..., Any], arg: Any) -> None:
        q = cls._queue
        if q is None or cls._pid != os.getpid():
            with cls._lock:
                if cls._queue is None or cls._pid != os.getpid():
                    cls._queue = queue.SimpleQueue()
                    cls._pid = os.getpid()
                    threading.Thread(target=cls._main, args=(cls._queue,),
                                     name="taskgrid-callbacks", daemon=True).start()
                q = cls._queue
        q.put((fn, arg))

    @staticmethod
    def _main(q: "queue.SimpleQueue[tuple[Callable[..., Any], Any]]") -> None:
        while True:
            fn, arg = q.get()
            try:
                fn(arg)
            except Exception:
                logger.exception("error in a taskgrid done callback %r", fn)


# ---------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    name: str
    nthreads: int
    processing: int
    draining: bool


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    """What Client.status() reports (Status RPC)."""

    workers: List[WorkerInfo]
    waiting: int
    ready: int
    processing: int
    memory: int
    erred: int
    cancelled: int
    unplaceable: int
    version: str
    keys: Dict[str, tuple[str, str]]  # key -> (state name, reason)


_STATE_NAMES = {v: k[len("TASK_STATE_"):].lower()
                for k, v in pb.TaskState.items()}


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()
_default: Optional["weakref.ReferenceType[Client]"] = None
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.]+")


def _name_of(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return _KEY_CHARS.sub("_", name).strip("_")[:80] or "task"


class Client:
    """Connect to a taskgrid scheduler and run tasks on its workers.

    ``Client()`` starts a temporary :class:`~taskgrid.LocalCluster` (extra
    keyword arguments go to it) and closes it with the client;
    ``Client("tcp://host:port")`` or ``Client(cluster)`` connects to an
    existing one. ``security`` (a :class:`~taskgrid.Security`) is needed for
    ``tls://`` addresses. Use it as a context manager, or call close().

    >>> with taskgrid.Client() as client:
    ...     total = client.submit(sum, client.map(inc, range(10)))
    ...     total.result()
    55
    """

    def __init__(self, address: Any = None, *, security: Any = None,
                 timeout: float = 30.0, name: Optional[str] = None,
                 set_as_default: bool = True, **cluster_kwargs: Any) -> None:
        self.cluster: Any = None
        self._owns_cluster = False
        self._shared = False  # a worker's client: closed with the worker
        self._closed = True
        if address is None:
            from .cluster import LocalCluster

            self.cluster = LocalCluster(**cluster_kwargs)
            self._owns_cluster = True
            address = self.cluster.address
            security = security if security is not None else self.cluster.security
        elif not isinstance(address, str):
            self.cluster = address
            security = security if security is not None else getattr(address, "security", None)
            address = address.address
        if cluster_kwargs and not self._owns_cluster:
            raise TypeError(
                f"unexpected arguments {sorted(cluster_kwargs)}: cluster options "
                "apply only when the client starts its own LocalCluster"
            )
        self.address = normalize_address(address)
        self.security = Security.coerce(security)
        self.id = f"{name or 'client'}-{uuid.uuid4().hex[:12]}"
        self._io = IOLoop.get()
        self._cond = threading.Condition(threading.RLock())
        self._states: Dict[str, _State] = {}
        self._outbox: "collections.deque[tuple[str, Any]]" = collections.deque()
        self._pumping = False
        self._decrefs: "collections.deque[_State]" = collections.deque()
        self._decref_scheduled = False
        self._calls: set = set()
        self._seq = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        try:
            self._io.run(self._connect(timeout))
        except BaseException:
            if self._owns_cluster:
                self.cluster.close()
            raise
        self._closed = False
        _clients.add(self)
        if set_as_default:
            global _default
            _default = weakref.ref(self)

    # -- connection ---------------------------------------------------------

    async def _connect(self, timeout: float) -> None:
        from ._rpc import aio_channel

        self._channel = aio_channel(self.address, self.security)
        self._stub = pb_grpc.SchedulerStub(self._channel)
        try:
            await self._stub.Status(pb.StatusRequest(), timeout=timeout,
                                    wait_for_ready=True)
        except grpc.aio.AioRpcError as e:
            await self._channel.close()
            raise SchedulerError(
                f"cannot reach the taskgrid scheduler at {self.address} "
                f"({e.code().name}: {e.details()})"
            ) from None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected"
        return f"<taskgrid.Client: {self.address} ({state})>"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- building tasks -----------------------------------------------------

    @staticmethod
    def _annotations(priority: Optional[int], resources: Optional[Mapping[str, float]],
                     retries: Optional[int], workers: Optional[Sequence[str]]) -> dict:
        """TaskSpec fields from explicit arguments, else taskgrid.annotate."""
        ctx = _annotate.current()
        if priority is None:
            priority = ctx.get("priority")
        if resources is None:
            resources = ctx.get("resources")
        if retries is None:
            retries = ctx.get("retries")
        if workers is None:
            workers = ctx.get("workers")
        extra: dict = {}
        if priority:
            extra["priority"] = int(priority)
        if resources:
            extra["resources"] = [pb.Resource(name=str(k), amount=float(v))
                                  for k, v in resources.items()]
        if retries:
            extra["retries"] = int(retries)
        if workers:
            extra["workers"] = [workers] if isinstance(workers, str) else list(workers)
        return extra

    def _specs(self, func: Any, calls: Iterable[tuple[tuple, dict]],
               keys: Optional[Sequence[str]], prefix: Optional[str],
               pure: Optional[bool], extra: dict) -> tuple[list, list]:
        """TaskSpecs for calls of `func`; returns (specs, keys)."""
        specs: list = []
        out_keys: list = []
        TaskSpec = pb.TaskSpec
        if isinstance(func, str):
            if "." not in func:
                raise ValueError(
                    f"named functions are 'namespace.name' (e.g. 'tg.inc'), got {func!r}")
            name = prefix or func
            for i, (args, kwargs) in enumerate(calls):
                if kwargs:
                    raise TypeError(
                        f"named function {func!r} takes positional arguments only "
                        f"(got keyword arguments {sorted(kwargs)})")
                literal: list = []
                deps: list = []
                for a in args:
                    if _is_future(a):
                        deps.append(a.key)
                    elif deps:
                        raise TypeError(
                            f"{func!r}: dependency results are passed after the "
                            "literal arguments, so futures must come last "
                            f"(got {a!r} after a future)")
                    else:
                        literal.append(a)
                data = _codec.encode_json(literal) if literal else b""
                if data is None:
                    raise TypeError(
                        f"arguments of named function {func!r} must be JSON "
                        f"(plus trailing futures); got {literal!r}")
                key = keys[i] if keys is not None else self._key(name, pure, data, deps)
                specs.append(TaskSpec(key=key, func=func, input=data,
                                      codec=_codec.JSON, deps=deps, **extra))
                out_keys.append(key)
            return specs, out_keys
        if not callable(func):
            raise TypeError(f"cannot submit {func!r}: not callable and not a function name")
        fbytes = _codec.dumps_function(func)
        name = prefix or _name_of(func)
        scalars = _codec._SCALARS
        dumps = _codec.dumps
        for i, (args, kwargs) in enumerate(calls):
            deps = []
            if any(type(a) not in scalars for a in args) or kwargs:
                found: dict = {}
                hold: list = []
                args = _codec.extract(args, _is_future, found, deps, hold)
                if kwargs:
                    kwargs = _codec.extract(kwargs, _is_future, found, deps, hold)
            data = dumps((fbytes, args, kwargs))
            key = keys[i] if keys is not None else self._key(name, pure, data, deps)
            if deps:
                specs.append(TaskSpec(key=key, func=_codec.PY_CALL, input=data,
                                      codec=_codec.PICKLE, deps=deps, **extra))
            else:
                specs.append(TaskSpec(key=key, func=_codec.PY_CALL, input=data,
                                      codec=_codec.PICKLE, **extra))
            out_keys.append(key)
        return specs, out_keys

    def _key(self, name: str, pure: Optional[bool], data: bytes, deps: list) -> str:
        if pure is False:
            return f"{name}-{self._prefix}{next(self._seq):x}"
        h = hashlib.blake2b(data, digest_size=16)
        for d in deps:
            h.update(b"\0")
            h.update(d.encode())
        return f"{name}-{h.hexdigest()}"

    # -- submitting ---------------------------------------------------------

    def submit(self, func: Union[Callable[..., Any], str], *args: Any,
               key: Optional[str] = None, priority: Optional[int] = None,
               resources: Optional[Mapping[str, float]] = None,
               retries: Optional[int] = None,
               workers: Optional[Sequence[str]] = None,
               pure: Optional[bool] = None, **kwargs: Any) -> Future:
        """Run ``func(*args, **kwargs)`` on a worker; returns a Future.

        `func` is a Python callable (sent with cloudpickle) or the name of a
        function a worker provides, such as ``"tg.inc"`` (arguments are then
        JSON, futures last). Futures among the arguments become dependencies:
        the task runs when they are done, with their results in their place.
        ``key`` names the task (same key = same task); otherwise it is
        derived from the function and arguments (``pure``, the default, as in
        Dask) or unique (``pure=False``). ``priority``, ``resources``,
        ``retries`` and ``workers`` override :func:`taskgrid.annotate`.
        """
        self._check_open()
        extra = self._annotations(priority, resources, retries, workers)
        specs, keys = self._specs(func, [(args, kwargs)],
                                  None if key is None else [key], None, pure, extra)
        return self._submit(specs, keys)[0]

    def map(self, func: Union[Callable[..., Any], str], *iterables: Iterable[Any],
            key: Union[str, Sequence[str], None] = None,
            priority: Optional[int] = None,
            resources: Optional[Mapping[str, float]] = None,
            retries: Optional[int] = None,
            workers: Optional[Sequence[str]] = None,
            pure: Optional[bool] = None, **kwargs: Any) -> List[Future]:
        """Submit ``func`` over the zipped iterables in one batch.

        ``key`` may be a list of keys (one per call) or a key prefix.
        Everything else is as in submit; ``kwargs`` go to every call.
        """
        self._check_open()
        if not iterables:
            raise TypeError("map needs at least one iterable")
        extra = self._annotations(priority, resources, retries, workers)
        calls = [(args, kwargs) for args in zip(*iterables)]
        keys = None
        prefix = None
        if isinstance(key, str):
            prefix = key
        elif key is not None:
            keys = list(key)
            if len(keys) != len(calls):
                raise ValueError(f"map got {len(keys)} keys for {len(calls)} calls")
        specs, out_keys = self._specs(func, calls, keys, prefix, pure, extra)
        return self._submit(specs, out_keys)

    def _submit(self, specs: list, keys: list) -> List[Future]:
        futures = []
        new = []
        with self._cond:
            states = self._states
            for spec, key in zip(specs, keys):
                st = states.get(key)
                if st is None or not st.held:
                    if st is None:
                        st = states[key] = _State(key, True)
                    else:  # known from a rebound future: now ours to hold
                        st.held = True
                    new.append(spec)
                st.refs += 1
                futures.append(Future(key, self, st))
            if new:
                self._outbox.append(("submit", new))
                self._kick()
        return futures

    def future(self, key: str) -> Future:
        """A Future for a key submitted elsewhere (e.g. by another client)."""
        self._check_open()
        with self._cond:
            st = self._states.get(key)
            if st is None:
                st = self._states[key] = _State(key, False)
                self._outbox.append(("gather", [key]))
                self._kick()
            st.refs += 1
            return Future(key, self, st)

    # -- the pump (I/O loop) ------------------------------------------------

    def _kick(self) -> None:
        # Under self._cond.
        if not self._pumping:
            self._pumping = True
            self._io.call_soon(self._start_pump)

    def _start_pump(self) -> None:
        asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                release: list = []
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

    def _pop_merged(self) -> tuple[str, Any]:
        # Under self._cond: the next op, merged with following ops of its kind.
        kind, payload = self._outbox.popleft()
        if kind in ("submit", "release", "gather"):
            items = list(payload)
            while self._outbox and self._outbox[0][0] == kind:
                items.extend(self._outbox.popleft()[1])
            payload = items
        return kind, payload

    async def _send_submit(self, specs: list, release: list) -> None:
        if len(release) > _RELEASE_MAX_KEYS:
            await self._send_release(release)
            release = []
        chunk: list = []
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

    async def _submit_chunk(self, chunk: list, release: list) -> None:
        keys = [s.key for s in chunk]
        try:
            await self._stub.Submit(pb.SubmitRequest(tasks=chunk, client_id=self.id,
                                                     release=release))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                exc: BaseException = ValueError(f"the scheduler refused the tasks: {e.details()}")
            else:
                exc = SchedulerError(
                    f"submitting to {self.address} failed ({e.code().name}: {e.details()})")
            self._fail(keys, exc)
            return
        self._start_gather(keys)

    def _start_gather(self, keys: list) -> None:
        task = asyncio.ensure_future(self._gather(keys))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _gather(self, keys: list) -> None:
        call = self._stub.Gather(pb.GatherRequest(keys=keys))
        try:
            async for resp in call:
                self._on_results(resp.results)
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as e:
            if not self._closed:
                self._fail(keys, SchedulerError(
                    f"lost the results stream from {self.address} "
                    f"({e.code().name}: {e.details()})"))
            return
        # Every key has been answered; anything still pending was missed.
        with self._cond:
            missed = [k for k in keys
                      if (st := self._states.get(k)) is not None and st.status is PENDING]
        if missed and not self._closed:
            self._fail(missed, SchedulerError("the scheduler ended a gather without these keys"))

    def _on_results(self, results: Any) -> None:
        fired = []
        with self._cond:
            states = self._states
            for r in results:
                st = states.get(r.key)
                if st is None or st.status is not PENDING:
                    continue
                s = r.state
                if s == _MEMORY:
                    st.data = r.data
                    st.codec = r.codec
                    st.status = FINISHED
                else:
                    e = r.error
                    st.error = (e.type, e.message, e.traceback, e.origin_key)
                    if s == _ERRED:
                        st.status = ERROR
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
            if fn.__class__ is _Listener:
                fn(fut)  # internal, non-blocking (a queue put)
            else:
                _CallbackThread.put(fn, fut)

    # -- releasing ----------------------------------------------------------

    def _decref(self, st: _State) -> None:
        # May run in any thread, inside a garbage collection, even while this
        # thread holds self._cond: only append and schedule.
        self._decrefs.append(st)
        if not self._decref_scheduled and not self._closed:
            self._decref_scheduled = True
            try:
                self._io.call_soon(self._apply_decrefs)
            except RuntimeError:  # loop closed at interpreter exit
                pass

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

    async def _send_release(self, keys: list) -> None:
        for i in range(0, len(keys), _RELEASE_MAX_KEYS):
            try:
                await self._stub.Release(pb.ReleaseRequest(keys=keys[i:i + _RELEASE_MAX_KEYS]))
            except grpc.aio.AioRpcError as e:
                if not self._closed:
                    logger.debug("release failed: %s", e.details())

    # -- waiting and results ------------------------------------------------

    def _wait(self, states: Iterable[_State], timeout: Optional[float]) -> None:
        if self._io.in_loop():
            raise RuntimeError("cannot wait for a taskgrid future on taskgrid's I/O thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        with _context.blocking(), self._cond:
            for st in states:
                while st.status is PENDING:
                    if self._closed:
                        raise CancelledError("the client was closed")
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError(
                                f"task {st.key!r} did not finish within {timeout} s")
                    self._cond.wait(remaining)

    def _value_of(self, st: _State) -> Any:
        value = _codec.decode(st.data, st.codec)
        st.value = value
        st.has_value = True
        st.data = b""
        return value

    def _exception_of(self, st: _State) -> BaseException:
        if st.exc is None:
            if st.error is None:
                st.exc = CancelledError(f"task {st.key!r} was {st.status}")
            else:
                type_, message, tb, origin = st.error
                if st.status is CANCELLED and not type_:
                    type_ = "tg.Cancelled"
                if st.status is LOST and not type_:
                    type_ = "tg.UnknownKey"
                st.exc = rebuild(type_, message, tb, st.key, origin)
        return st.exc

    def _add_callback(self, fut: Future, fn: Callable[[Future], Any]) -> None:
        st = fut._state
        with self._cond:
            if st.status is PENDING:
                if st.callbacks is None:
                    st.callbacks = []
                st.callbacks.append((fut, fn))
                return
        if fn.__class__ is _Listener:
            fn(fut)
        else:
            _CallbackThread.put(fn, fut)

    def gather(self, futures: Any, errors: str = "raise",
               timeout: Optional[float] = None) -> Any:
        """Results of futures, in the same structure (list, dict, nested).

        ``errors="raise"`` raises the first error (in order); ``"skip"``
        leaves failed futures out of lists and dicts.
        """
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        if isinstance(futures, Future):
            return futures.result(timeout)
        if type(futures) is list and all(type(f) is Future for f in futures):
            self._wait([f._state for f in futures], timeout)  # the common case
            if errors == "raise":
                return [f.result() for f in futures]
        flat: list = []
        _collect(futures, flat)
        self._wait([f._state for f in flat], timeout)
        return _pack(futures, errors)

    # -- other calls --------------------------------------------------------

    def _ordered_call(self, fn: Callable[[], Any], timeout: Optional[float] = 30.0) -> Any:
        """Run an RPC after everything already queued (e.g. submits)."""
        self._check_open()
        cf: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._outbox.append(("call", (fn, cf)))
            self._kick()
        with _context.blocking():
            return cf.result(timeout)

    def cancel(self, futures: Union[Future, Iterable[Future]]) -> int:
        """Cancel tasks and everything depending on them; returns the count."""
        if isinstance(futures, Future):
            futures = [futures]
        keys = [f.key for f in futures]

        async def call() -> int:
            resp = await self._stub.Cancel(pb.CancelRequest(keys=keys))
            return resp.cancelled

        return self._ordered_call(call)

    def status(self, keys: Sequence[str] = ()) -> ClusterStatus:
        """Workers, task counts, and (for `keys`) each key's state and why."""
        async def call() -> Any:
            return await self._stub.Status(pb.StatusRequest(keys=list(keys)), timeout=30)

        r = self._ordered_call(call)
        return ClusterStatus(
            workers=[WorkerInfo(w.name, w.nthreads, w.processing, w.draining)
                     for w in r.workers],
            waiting=r.waiting, ready=r.ready, processing=r.processing,
            memory=r.memory, erred=r.erred, cancelled=r.cancelled,
            unplaceable=r.unplaceable, version=r.version,
            keys={k.key: (_STATE_NAMES.get(k.state, "unspecified"), k.reason)
                  for k in r.keys},
        )

    def wait_for_workers(self, n: int = 1, timeout: float = 30.0) -> None:
        """Block until at least `n` workers are connected."""
        deadline = time.monotonic() + timeout
        while True:
            got = len(self.status().workers)
            if got >= n:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {got} of {n} workers connected after {timeout} s")
            time.sleep(0.05)

    def scale(self, n: int) -> None:
        """Set the number of workers (through the cluster object if known)."""
        if self.cluster is not None and hasattr(self.cluster, "scale"):
            self.cluster.scale(n)
            return
        scale_rpc(self, workers=n)

    def adapt(self, minimum: int = 0, maximum: int = 0) -> None:
        """Adaptive scaling between minimum and maximum workers."""
        scale_rpc(self, minimum=minimum, maximum=maximum)

    # -- closing ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def close(self, timeout: float = 10.0) -> None:
        """Release held results, stop streams, close the channel (and the
        cluster this client started)."""
        if self._closed or self._shared:
            return
        self._close(timeout)

    def _close(self, timeout: float) -> None:
        if self._closed:
            return
        try:
            self._io.run(self._aclose(), timeout)
        except Exception as e:  # noqa: BLE001 - closing must not fail
            logger.debug("closing %r: %s", self, e)
        with self._cond:
            self._closed = True
            for st in self._states.values():
                if st.status is PENDING:
                    st.status = CANCELLED
                    st.exc = CancelledError("the client was closed")
            self._cond.notify_all()
        _clients.discard(self)
        global _default
        if _default is not None and _default() is self:
            _default = None
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close()

    async def _aclose(self) -> None:
        # Let queued submits/releases go out, then hand back every hold.
        for _ in range(100):
            with self._cond:
                if not self._outbox and not self._pumping:
                    break
            await asyncio.sleep(0.01)
        self._closed = True
        with self._cond:
            held = [k for k, st in self._states.items() if st.held]
        if held:
            await self._send_release(held)
        for task in list(self._calls):
            task.cancel()
        await self._channel.close()


class _Listener:
    """Marks an internal callback that is safe to run on the I/O thread."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Future], None]) -> None:
        self.fn = fn

    def __call__(self, fut: Future) -> None:
        self.fn(fut)


def scale_rpc(client: Client, workers: int = 0, minimum: int = 0, maximum: int = 0) -> Any:
    """Scale RPC with clear errors for what the scheduler cannot do."""
    async def call() -> Any:
        return await client._stub.Scale(
            pb.ScaleRequest(workers=workers, minimum=minimum, maximum=maximum), timeout=30)

    try:
        return client._ordered_call(call)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise NotImplementedError(f"the scheduler cannot do this: {e.details()}") from None
        if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise RuntimeError(e.details()) from None
        raise SchedulerError(f"Scale failed ({e.code().name}: {e.details()})") from None


def _collect(obj: Any, out: list) -> None:
    t = type(obj)
    if t is Future:
        out.append(obj)
    elif t in (list, tuple, set, frozenset):
        for x in obj:
            _collect(x, out)
    elif t is dict:
        for x in obj.values():
            _collect(x, out)
    elif isinstance(obj, Iterator):
        raise TypeError("gather a list of futures, not an iterator")


_SKIP = object()


def _pack(obj: Any, errors: str) -> Any:
    t = type(obj)
    if t is Future:
        if errors == "skip" and obj.status is not FINISHED:
            return _SKIP
        return obj.result()
    if t in (list, tuple, set, frozenset):
        vals = [_pack(x, errors) for x in obj]
        vals = [v for v in vals if v is not _SKIP]
        return vals if t is list else t(vals)
    if t is dict:
        d = {k: _pack(v, errors) for k, v in obj.items()}
        return {k: v for k, v in d.items() if v is not _SKIP}
    return obj


# ---------------------------------------------------------------------------
# Module-level helpers
# ---------------------------------------------------------------------------


class as_completed:
    """Iterate over futures as they finish (like dask's as_completed).

    ``with_results=True`` yields ``(future, result)`` pairs; more futures
    can be added while iterating with ``add``.
    """

    def __init__(self, futures: Iterable[Future] = (), with_results: bool = False,
                 raise_errors: bool = True) -> None:
        self._queue: "queue.SimpleQueue[Future]" = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self.with_results = with_results
        self.raise_errors = raise_errors
        for f in futures:
            self.add(f)

    def add(self, future: Future) -> None:
        with self._lock:
            self._pending += 1
        future.client._add_callback(future, _Listener(self._queue.put))

    def count(self) -> int:
        return self._pending

    def __iter__(self) -> "as_completed":
        return self

    def __next__(self) -> Any:
        with self._lock:
            if self._pending == 0:
                raise StopIteration
            self._pending -= 1
        with _context.blocking():
            fut = self._queue.get()
        if not self.with_results:
            return fut
        try:
            return fut, fut.result()
        except BaseException as e:
            if self.raise_errors:
                raise
            return fut, e


DoneAndNotDone = collections.namedtuple("DoneAndNotDone", "done not_done")


def wait(futures: Iterable[Future], timeout: Optional[float] = None,
         return_when: str = "ALL_COMPLETED") -> DoneAndNotDone:
    """Wait for futures (ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION)."""
    futures = list(futures)
    if return_when == "ALL_COMPLETED":
        try:
            for c in {f.client for f in futures}:
                c._wait([f._state for f in futures if f.client is c], timeout)
        except TimeoutError:
            pass
    else:
        deadline = None if timeout is None else time.monotonic() + timeout
        ac = as_completed(futures)
        for f in ac:
            if return_when == "FIRST_COMPLETED" or f.status is not FINISHED:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, set(futures) - done)


def get_client(address: Optional[str] = None, timeout: float = 30.0) -> Client:
    """The client to use here.

    Inside a task on a Python worker: a client bound to the worker's
    scheduler and credentials (shared by the worker's tasks; while a task
    waits on its futures it gives its slot back, so nested work cannot
    deadlock). Elsewhere: the default client (the last one created), or a
    new client to `address`.
    """
    worker = _context.current_worker() or _context.process_worker
    if worker is not None:
        return worker.client
    if _default is not None:
        c = _default()
        if c is not None and not c._closed:
            return c
    if address is not None:
        return Client(address, timeout=timeout)
    raise ValueError("no taskgrid client: create one with taskgrid.Client(...)")


@atexit.register
def _close_all() -> None:
    for c in list(_clients):
        try:
            c._close(timeout=5)
        except Exception:  # noqa: BLE001
            pass
