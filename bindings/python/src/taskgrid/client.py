# SPDX-License-Identifier: Apache-2.0
"""taskgrid.Client: a Dask-style client over the gRPC protocol.

How work flows (all RPCs run on the shared I/O loop, see _loop.py):

* submit/map build TaskSpecs in the caller's thread (_taskspec.py) and
  append them to the client's outbox, which the pump drains into as few
  Submit calls as the message limits allow; one Gather stream per batch
  brings the results back (_pump.py). No per-task RPC is ever made, and
  results are decoded lazily, on result().
* A Future (_future.py) is a handle on a per-key state shared by every
  Future of that key; dropping the last one releases the key.
* Futures among the arguments become the task's dependencies: the
  scheduler passes their results to the worker; they never come back
  through the client.
* A result held on a worker comes through the scheduler when result()
  asks for it (gateway-style, the default), or, with
  ``direct_to_workers=True``, from one of its holders directly
  (_direct.py), falling back to the scheduler when no holder delivers.

Waiting threads sleep on one condition variable notified once per batch of
results. Done callbacks run on a separate thread so they may block or call
the client; the I/O loop never runs user code.

This module keeps every name it had before the client was split into those
modules (Future, as_completed, wait, ...), so ``from taskgrid.client import
X`` goes on working. It reaches cluster.py (for ``Client()``'s temporary
LocalCluster) at that one call site only: cluster.py imports this module.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import hashlib
import itertools
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from . import _codec, _context, _options, _taskspec
from ._calls import CallsMixin
from ._direct import DirectFetch
from ._future import (
    CANCELLED,
    ERROR,
    FINISHED,
    LOST,
    PENDING,
    Future,
    _State,
    clear_default,
    current_client,
    run_callback,
    set_default,
)

# Kept importable from here: prefect.py uses _Listener, and pickled
# Futures made before the split name taskgrid.client._future_from_key.
from ._future import _CallbackThread as _CallbackThread
from ._future import _future_from_key as _future_from_key
from ._future import _is_future as _is_future
from ._future import _Listener as _Listener
from ._loop import IOLoop
from ._pump import ClientIO
from ._rpc import MAX_SEND, normalize_address, pb, pb_grpc
from ._status import ClusterStatus, WorkerInfo, launcher_status, state_name, worker_info
from ._waiting import DoneAndNotDone, as_completed, collect, pack, wait
from ._watch import WatchMixin
from .coordination import DatasetsMixin
from .errors import (
    CancelledError,
    NotInTaskError,
    ReplicateError,
    SchedulerError,
    UnknownKeyError,
    rebuild,
    restore,
)
from .security import Security

__all__ = [
    "CANCELLED",
    "ERROR",
    "FINISHED",
    "LOST",
    "PENDING",
    "Client",
    "ClusterStatus",
    "DoneAndNotDone",
    "Future",
    "WorkerInfo",
    "as_completed",
    "get_client",
    "scale_rpc",
    "wait",
]

logger = logging.getLogger("taskgrid.client")

T = TypeVar("T")


# scatter: the built-in every worker kind provides that returns its input
# unchanged, with its codec.
SCATTER_FUNC = "tg.echo"
# The largest encoded object scatter sends: one Submit message (the
# scheduler's default --max-message) less room for its other fields.
SCATTER_MAX_BYTES = MAX_SEND - 64 * 1024


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client(ClientIO, WatchMixin, DatasetsMixin, CallsMixin, _options.DaskAttributes):
    """Connect to a taskgrid scheduler and run tasks on its workers.

    ``Client()`` starts a temporary :class:`~taskgrid.LocalCluster` (extra
    keyword arguments go to it) and closes it with the client;
    ``Client("tcp://host:port")`` or ``Client(cluster)`` connects to an
    existing one. ``security`` (a :class:`~taskgrid.Security`) is needed for
    ``tls://`` addresses. Use it as a context manager, or call close().

    Results larger than the scheduler's inline limit stay on the worker
    that made them. By default result() gets their bytes through the
    scheduler, so the client never needs a route to a worker (as behind a
    gateway). ``direct_to_workers=True`` (Dask's option of that name)
    fetches them from a worker holding them instead, sparing the
    scheduler the bytes: the client must reach the workers' data
    addresses, and over TLS the workers must admit client certificates
    (``--data-clients``). When no holder delivers (unreachable, refused,
    gone, a corrupt chunk) the result comes through the scheduler after
    all, with one warning naming each holder and why.

    ``asynchronous=True`` gives a client for asyncio code, as Dask's
    (``client = await Client(address, asynchronous=True)`` or ``async
    with``): its waiting calls are coroutines; see taskgrid._async.

    >>> with taskgrid.Client() as client:
    ...     total = client.submit(sum, client.map(inc, range(10)))
    ...     total.result()
    55
    """

    def __new__(cls, *args: Any, asynchronous: bool = False, **kwargs: Any) -> Client:
        # Client(..., asynchronous=True) is an AsyncClient (_async.py), as
        # Dask's asynchronous mode: to be awaited, its waiting calls too.
        if asynchronous and not cls.asynchronous:
            from ._async import AsyncClient

            cls = AsyncClient
        return super().__new__(cls)

    def __init__(
        self,
        address: Any = None,
        *,
        security: Any = None,
        timeout: float | str = 30.0,
        name: str | None = None,
        set_as_default: bool = True,
        direct_to_workers: bool = False,
        asynchronous: bool = False,
        **cluster_kwargs: Any,
    ) -> None:
        self.cluster: Any = None
        self._owns_cluster = False
        self._shared = False  # a worker's client: closed with the worker
        self._closed = True
        address = _options.client_options(address, cluster_kwargs)  # Dask's Client options
        timeout = _options.seconds(timeout, "Client(timeout=...)")
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
            raise _options.unexpected_client_kwargs(cluster_kwargs)
        self.address = normalize_address(address)
        self.security = Security.coerce(security)
        self.direct_to_workers = bool(direct_to_workers)
        self._direct = DirectFetch(self.address, self.security) if direct_to_workers else None
        self.id = f"{name or 'client'}-{uuid.uuid4().hex[:12]}"
        self._io = IOLoop.get()
        self._cond = threading.Condition(threading.RLock())
        self._states = {}
        self._outbox = collections.deque()
        self._pumping = False
        self._pump_task = None
        self._decrefs = collections.deque()
        self._decref_scheduled = False
        self._calls = set()
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
        self._set_as_default = bool(set_as_default)
        if set_as_default:
            set_default(self)
            _dask_default(True)

    # -- connection ---------------------------------------------------------

    async def _connect(self, timeout: float) -> None:
        from ._rpc import aio_channel

        self._channel = aio_channel(self.address, self.security)
        self._stub = pb_grpc.SchedulerStub(self._channel)
        try:
            await self._stub.Status(pb.StatusRequest(), timeout=timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as e:
            await self._channel.close()
            raise SchedulerError(
                f"cannot reach the taskgrid scheduler at {self.address} "
                f"({e.code().name}: {e.details()})"
            ) from None

    @property
    def dashboard_link(self) -> str | None:
        """The URL of the scheduler's dashboard, as Dask's
        ``Client.dashboard_link``: known for a LocalCluster this client
        started or was given (None when it has none, or for a scheduler
        reached by address only)."""
        link = getattr(self.cluster, "dashboard_link", None)
        return link if isinstance(link, str) else None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected"
        return f"<taskgrid.Client: {self.address} ({state})>"

    def __enter__(self) -> Client:
        if self._set_as_default:
            # Dask's `with Client():`: the block's default, dask's too.
            set_default(self)
            _dask_default(True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------

    @staticmethod
    def _annotations(
        priority: int | None,
        resources: Mapping[str, float] | None,
        retries: int | None,
        workers: Sequence[str] | None,
    ) -> dict[str, Any]:
        """TaskSpec fields from explicit arguments, else taskgrid.annotate."""
        return _taskspec.options(priority, resources, retries, workers)

    def _key(self, name: str, pure: bool | None, data: bytes, deps: list[str]) -> str:
        if pure is False:
            return f"{name}-{self._prefix}{next(self._seq):x}"
        h = hashlib.blake2b(data, digest_size=16)
        for d in deps:
            h.update(b"\0")
            h.update(d.encode())
        return f"{name}-{h.hexdigest()}"

    def submit(
        self,
        func: Callable[..., Any] | str,
        *args: Any,
        key: str | None = None,
        priority: int | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int | None = None,
        workers: Sequence[str] | None = None,
        pure: bool | None = None,
        allow_other_workers: bool = False,
        fifo_timeout: Any = "100 ms",
        actor: bool = False,
        actors: bool = False,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on a worker; returns a Future.

        `func` is a Python callable (sent with cloudpickle) or the name of a
        function a worker provides, such as ``"tg.inc"`` (arguments are then
        JSON, futures last). Futures among the arguments become dependencies:
        the task runs when they are done, with their results in their place.
        ``key`` names the task (same key = same task); otherwise it is
        derived from the function and arguments (``pure``, the default, as in
        Dask) or unique (``pure=False``). ``priority``, ``resources``,
        ``retries`` and ``workers`` override :func:`taskgrid.annotate` and
        ``dask.annotate``. Dask's ``allow_other_workers``, ``fifo_timeout``
        and ``actor(s)`` are as in the README's option table (_options.py).
        """
        self._check_open()
        _options.refuse_actors("submit", actor, actors)
        extra = _options.task_options(
            self, "submit", priority, resources, retries, workers, allow_other_workers, fifo_timeout
        )
        specs, keys = _taskspec.build(
            func,
            [(args, kwargs)],
            None if key is None else [key],
            None,
            pure,
            _options.strip(extra),
            self._key,
        )
        _options.per_key("submit", extra, specs)
        return self._submit(specs, keys)[0]

    def map(
        self,
        func: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        key: str | Sequence[str] | None = None,
        priority: int | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int | None = None,
        workers: Sequence[str] | None = None,
        pure: bool | None = None,
        allow_other_workers: bool = False,
        fifo_timeout: Any = "100 ms",
        actor: bool = False,
        actors: bool = False,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """Submit ``func`` over the zipped iterables in one batch.

        ``key`` may be a list of keys (one per call) or a key prefix.
        Everything else is as in submit; ``kwargs`` go to every call.
        ``batch_size`` (Dask's): submit the calls in batches of that many.
        """
        self._check_open()
        if not iterables:
            raise TypeError("map needs at least one iterable")
        _options.refuse_actors("map", actor, actors)
        extra = _options.task_options(
            self, "map", priority, resources, retries, workers, allow_other_workers, fifo_timeout
        )
        calls = [(args, kwargs) for args in zip(*iterables)]
        keys = None
        prefix = None
        if isinstance(key, str):
            prefix = key
        elif key is not None:
            keys = list(key)
            if len(keys) != len(calls):
                raise ValueError(f"map got {len(keys)} keys for {len(calls)} calls")
        out: list[Future] = []
        for part in _options.batches(len(calls), batch_size):
            some = None if keys is None else keys[part.start : part.stop]
            specs, out_keys = _taskspec.build(
                func,
                calls[part.start : part.stop],
                some,
                prefix,
                pure,
                _options.strip(extra),
                self._key,
            )
            _options.per_key("map", extra, specs)
            out += self._submit(specs, out_keys)  # on its way while the next is built
        return out

    def map_partitions(
        self, fn: Callable[..., Any] | str, parts: Iterable[Any], *args: Any, **kwargs: Any
    ) -> list[Future]:
        """Submit ``fn`` over each partition (a Future or a value) in one
        batch; one Future each. See :func:`taskgrid.collections.map_partitions`."""
        from .collections import map_partitions

        return map_partitions(self, fn, parts, *args, **kwargs)

    def tree_reduce(
        self, fn: Callable[..., Any] | str, futures: Iterable[Any], fan_in: int = 8, **kwargs: Any
    ) -> Future:
        """Combine ``futures`` with ``fn(*results)``, ``fan_in`` at a time, in
        a tree; the root's Future. See :func:`taskgrid.collections.tree_reduce`."""
        from .collections import tree_reduce

        return tree_reduce(self, fn, futures, fan_in, **kwargs)

    def scatter(
        self,
        data: Any,
        workers: Sequence[str] | str | None = None,
        broadcast: bool = False,
        hash: bool = True,
    ) -> Any:
        """Put data into the cluster once; returns Futures to use as inputs.

        As Dask's ``Client.scatter``: one object gives one Future, a list,
        tuple or set gives the same container of Futures, and a dict gives a
        dict of Futures whose task keys are the dict's keys. Each object is
        sent in one Submit, as the input of a task running the built-in
        ``tg.echo`` (every worker kind has it), whose result is the object:
        a small one travels inline, a larger one is held by the worker that
        ran it and fetched from there by the tasks that use it. ``bytes``
        go as codec ``raw`` (a C or Go function reads them as they are),
        everything else pickled. ``workers`` restricts where it is held.
        ``hash=True`` names each key by content (``"<type>-<32 hex>"``), so
        scattering equal data again gives the same key and stores it once;
        ``hash=False`` gives a new key each time.

        The data crosses the scheduler once, so each encoded object is at
        most SCATTER_MAX_BYTES (64 MiB less 64 KiB; a scheduler started
        with a smaller ``--max-message`` refuses less): larger raises
        ValueError naming the size and the limit, and nothing is sent.
        ``broadcast=True`` raises NotImplementedError: a result has one
        holder, and copies fetched by other workers are not kept.
        """
        self._check_open()
        if broadcast:
            raise NotImplementedError(
                "scatter(broadcast=True): a result is held by one worker and copies "
                "fetched by others are not kept, so data cannot be replicated yet; "
                "use broadcast=False (tasks on other workers fetch it from its holder)"
            )
        extra = self._annotations(None, None, None, workers)
        if isinstance(data, dict):
            names: list[str | None] = [str(k) for k in data]
            values = list(data.values())
        elif isinstance(data, (list, tuple, set, frozenset)):
            values = list(data)
            names = [None] * len(values)
        else:
            values, names = [data], [None]
        specs = [self._scatter_spec(v, k, hash, extra) for v, k in zip(values, names)]
        futures = self._submit(specs, [s.key for s in specs])
        if isinstance(data, dict):
            return dict(zip(data, futures))
        if isinstance(data, (list, tuple, set, frozenset)):
            return type(data)(futures) if not isinstance(data, list) else futures
        return futures[0]

    def _scatter_spec(
        self, value: Any, key: str | None, by_content: bool, extra: dict[str, Any]
    ) -> pb.TaskSpec:
        if type(value) is bytes:
            blob, codec = value, _codec.RAW
        else:
            blob, codec = _codec.dumps(value), _codec.PICKLE
        if key is None:
            name = _taskspec.name_of(type(value))
            if by_content:
                h = hashlib.sha256(codec.encode())
                h.update(b"\0")
                h.update(blob)
                key = f"{name}-{h.hexdigest()[:32]}"
            else:
                key = f"{name}-{uuid.uuid4().hex}"
        if len(blob) > SCATTER_MAX_BYTES:
            raise ValueError(
                f"cannot scatter {key!r}: it is {len(blob)} bytes encoded, over the "
                f"{SCATTER_MAX_BYTES}-byte limit of one Submit message (scattered data "
                "crosses the scheduler once); build or load it in a task instead"
            )
        return pb.TaskSpec(key=key, func=SCATTER_FUNC, input=blob, codec=codec, **extra)

    def _submit(self, specs: list[pb.TaskSpec], keys: list[str]) -> list[Future]:
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

    # -- waiting and results ------------------------------------------------

    def _wait(self, states: Iterable[_State], timeout: float | None) -> None:
        if self._io.in_loop():
            raise RuntimeError("cannot wait for a taskgrid future on taskgrid's I/O thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        states = [st for st in states if st.status is PENDING]
        if not states:
            return  # nothing to wait for: no need to give the slot away
        with _context.blocking(), self._cond:
            for st in states:
                while st.status is PENDING:
                    if self._closed:
                        raise CancelledError("the client was closed")
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError(f"task {st.key!r} did not finish within {timeout} s")
                    self._cond.wait(remaining)

    def _value_of(self, st: _State) -> Any:
        if st.remote:
            # Done, with the bytes on a worker: fetch them now that they are
            # wanted, from a holder (direct_to_workers) or the scheduler.
            data = None
            if self._direct is not None:
                data = self._direct.fetch(st.key, st.remote, st.holders, lambda: self._closed)
            if data is None:
                data, st.codec = self._io.run(self.fetch_held(st.key))
            st.data = data
            st.remote = 0
            st.holders = ()
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
                if st.status is ERROR and st.data and st.codec == _codec.PICKLE:
                    # The original exception object (type and attributes).
                    st.exc = restore(st.data, type_, message, tb, st.key, origin)
                    st.data = b""
                else:
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
        run_callback(fut, fn)

    def gather(self, futures: Any, errors: str = "raise", timeout: float | None = None) -> Any:
        """Results of futures, in the same structure (list, dict, nested).

        ``errors="raise"`` raises the first error (in order); ``"skip"``
        leaves failed futures out of lists and dicts.
        """
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        if isinstance(futures, Future):
            return futures._result(timeout)
        if type(futures) is list and all(type(f) is Future for f in futures):
            self._wait([f._state for f in futures], timeout)  # the common case
            if errors == "raise":
                return [f._result() for f in futures]
        flat: list[Future] = []
        collect(futures, flat)
        self._wait([f._state for f in flat], timeout)
        return pack(futures, errors)

    # -- Dask collections (_dask.py) -------------------------------------------

    # Dask's get_scheduler() asks a client whether it is asynchronous.
    asynchronous = False

    def get(
        self,
        dsk: Any,
        keys: Any,
        workers: Sequence[str] | str | None = None,
        allow_other_workers: bool | None = None,
        resources: Mapping[str, float] | None = None,
        retries: int | None = None,
        priority: int | None = None,
        sync: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Compute a Dask graph on the cluster: Dask's scheduler interface.

        ``dask.compute(x, scheduler=client)``, ``dask.config.set(scheduler=
        client)`` and ``x.compute()`` under a default client call it with a
        graph (dict, HighLevelGraph or expression) and the keys wanted
        (nested lists); it returns their values in the same structure, or
        with ``sync=False`` their Futures. Each Dask task runs as one task
        on a Python worker (which needs dask and what the task imports);
        see "Dask collections" in the README for keys and annotations.
        Other keyword arguments (options of Dask's local schedulers) are
        ignored. Needs dask installed.
        """
        self._check_open()
        from . import _dask

        opts = {
            "workers": workers,
            "allow_other_workers": allow_other_workers,
            "resources": resources,
            "retries": retries,
            "priority": priority,
        }
        if sync:
            return _dask.get(self, dsk, keys, opts)
        return _dask.get_futures(self, dsk, keys, opts)

    def compute(self, collections: Any, sync: bool = False, **kwargs: Any) -> Any:
        """Compute Dask collections on the cluster, as Dask's Client.compute:
        a Future per collection (the same container as given; other items
        pass through), or their values with ``sync=True``. Keyword
        arguments: ``optimize_graph``, ``traverse``, ``workers``,
        ``allow_other_workers``, ``resources``, ``retries``, ``priority``;
        others go to Dask's graph optimization."""
        self._check_open()
        from . import _dask

        return _dask.compute(self, collections, sync, dict(kwargs))

    def persist(self, collections: Any, **kwargs: Any) -> Any:
        """Start computing Dask collections and return them rebuilt over
        the Futures of their partitions, as Dask's Client.persist (a list
        for a list); keyword arguments as in compute."""
        self._check_open()
        from . import _dask

        return _dask.persist(self, collections, dict(kwargs))

    def _knows_key(self, key: str) -> bool:
        with self._cond:
            return key in self._states

    def _submit_graph(self, specs: list[pb.TaskSpec], wanted: list[str]) -> list[Future]:
        """Submit a whole graph in order; Futures for the `wanted` keys. The
        other tasks run for their dependents only: never gathered, and
        released once submitted (the scheduler keeps them while needed).
        Tasks this client already holds are not sent again. From inside a
        running task the graph's tasks are that task's children."""
        want = set(wanted)
        parent = _context.current_task()
        if parent is not None:
            for spec in specs:
                if not spec.parent:
                    spec.parent = parent.key
        with self._cond:
            states = self._states
            new = []
            others = []
            for spec in specs:
                st = states.get(spec.key)
                if st is not None and st.held:
                    continue
                new.append(spec)
                if spec.key not in want:
                    others.append(spec.key)
            sent = {s.key for s in new}
            futures = []
            for key in wanted:
                st = states.get(key)
                if st is None:
                    st = states[key] = _State(key, True)
                elif key in sent:
                    st.held = True
                st.refs += 1
                futures.append(Future(key, self, st))
            if new:
                self._outbox.append(("submit", new))
                if others:
                    self._outbox.append(("release", others))
                self._kick()
        return futures

    # -- other calls --------------------------------------------------------

    def _ordered_call(self, fn: Callable[[], Awaitable[T]], timeout: float | None = 30.0) -> T:
        """Run an RPC after everything already queued (e.g. submits)."""
        self._check_open()
        cf: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            self._outbox.append(("call", (fn, cf)))
            self._kick()
        with _context.blocking():
            return cf.result(timeout)

    def cancel(self, futures: Future | Iterable[Future]) -> int:
        """Cancel tasks and everything depending on them, and the tasks
        they submitted from inside their run (nested work), recursively;
        returns the count."""
        if isinstance(futures, Future):
            futures = [futures]
        keys = [f.key for f in futures]

        async def call() -> int:
            resp: pb.CancelResponse = await self._stub.Cancel(pb.CancelRequest(keys=keys))
            return resp.cancelled

        return self._ordered_call(call)

    def replicate(
        self,
        futures: Future | Iterable[Future],
        n: int | None = None,
        workers: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, int]:
        """Copy results held on workers to more workers, as Dask's
        ``Client.replicate``: each result gets at least `n` holders (None:
        every worker), the copies going only to `workers` (names) if
        given. Waits for the futures to finish, then for the copies (at
        most `timeout` seconds for each). A copy counts toward its
        worker's memory like a result it made, and keeps the result when
        another holder is lost (nothing is recomputed); it is freed with
        the result. A small result lives in the scheduler: it is left as
        it is. Returns each key's number of holders (0 for those).

        Raises UnknownKeyError for a key the scheduler does not know, and
        ReplicateError (``errors``: key -> (type, message)) for keys that
        erred or could not be copied.
        """
        if isinstance(futures, Future):
            futures = [futures]
        futures = list(futures)
        if n is not None and n < 1:
            raise ValueError(f"n must be at least 1, or None for every worker (got {n})")
        self._wait([f._state for f in futures], timeout)
        keys = [f.key for f in futures]
        req = pb.ReplicateRequest(
            keys=keys,
            n=n or 0,
            workers=list(workers or ()),
            timeout_ms=int(timeout * 1000) if timeout else 0,
        )

        async def call() -> pb.ReplicateResponse:
            resp: pb.ReplicateResponse = await self._stub.Replicate(
                req, timeout=timeout + 5 if timeout else None
            )
            return resp

        r = self._ordered_call(call, timeout=None)
        errors = {k.key: (k.error.type, k.error.message) for k in r.keys if k.HasField("error")}
        for type_, message in errors.values():
            if type_ == "tg.UnknownKey":
                raise UnknownKeyError(message)
        if errors:
            first = next(iter(errors.values()))
            raise ReplicateError(f"{first[0]}: {first[1]}", errors)
        return {k.key: k.holders for k in r.keys}

    def status(self, keys: Sequence[str] = (), children: bool = False) -> ClusterStatus:
        """Workers, task counts, and (for `keys`) each key's state and why;
        with `children`, the tasks each key submitted (nested work)."""

        async def call() -> pb.StatusResponse:
            resp: pb.StatusResponse = await self._stub.Status(
                pb.StatusRequest(keys=list(keys), children=children), timeout=30
            )
            return resp

        r = self._ordered_call(call)
        return ClusterStatus(
            workers=[worker_info(w) for w in r.workers],
            waiting=r.waiting,
            ready=r.ready,
            processing=r.processing,
            memory=r.memory,
            erred=r.erred,
            cancelled=r.cancelled,
            unplaceable=r.unplaceable,
            version=r.version,
            keys={k.key: (state_name(k.state), k.reason) for k in r.keys},
            parents={k.key: k.parent for k in r.keys if k.parent},
            children={k.key: list(k.children) for k in r.keys if children},
            ran={k.key: (k.worker, k.run_us / 1e6) for k in r.keys if k.worker},
            launcher=launcher_status(r),
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
        fired = []
        with self._cond:
            self._closed = True
            for st in self._states.values():
                if st.status is PENDING:
                    st.status = CANCELLED
                    st.exc = CancelledError("the client was closed")
                    if st.callbacks:
                        fired.append(st)
            self._cond.notify_all()
        for st in fired:  # as_completed and awaiting coroutines end too
            self._fire(st)
        _clients.discard(self)
        clear_default(self)
        if current_client() is None:
            _dask_default(False)
        if self._direct is not None:
            self._direct.close()
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


def scale_rpc(
    client: Client, workers: int = 0, minimum: int = 0, maximum: int = 0
) -> pb.ScaleResponse:
    """Scale RPC with clear errors for what the scheduler cannot do."""

    async def call() -> pb.ScaleResponse:
        resp: pb.ScaleResponse = await client._stub.Scale(
            pb.ScaleRequest(workers=workers, minimum=minimum, maximum=maximum), timeout=30
        )
        return resp

    try:
        return client._ordered_call(call)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise NotImplementedError(f"the scheduler cannot do this: {e.details()}") from None
        if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise RuntimeError(e.details()) from None
        raise SchedulerError(f"Scale failed ({e.code().name}: {e.details()})") from None


# ---------------------------------------------------------------------------
# Module-level helpers
# ---------------------------------------------------------------------------


def get_client(address: str | None = None, timeout: float = 30.0) -> Client:
    """The client to use here.

    Inside a task on a Python worker: a client bound to the worker's
    scheduler and credentials (shared by the worker's tasks; while a task
    waits on its futures it gives its slot back, so nested work cannot
    deadlock). Elsewhere: the default client (the last one created), or a
    new client to `address`; with neither, :class:`NotInTaskError` (a
    ValueError).
    """
    client = current_client()
    if client is not None:
        if _context.current_worker() is not None:
            _dask_default(True)  # x.compute() in this task runs on the cluster
        return client
    if address is not None:
        return Client(address, timeout=timeout)
    raise NotInTaskError(
        "taskgrid.get_client() found no client: this thread is not running a "
        "task on a taskgrid worker, and no taskgrid.Client is open in this "
        "process; create one with taskgrid.Client(...) or pass an address"
    )


def _dask_default(on: bool) -> None:
    """Dask's default scheduler follows taskgrid's default client (see
    _dask.DefaultScheduler), if dask is in use (imported) by now."""
    if "dask" not in sys.modules:
        return
    from . import _dask

    if on:
        _dask.install_default()
    else:
        _dask.uninstall_default()


@atexit.register
def _close_all() -> None:
    for c in list(_clients):
        with contextlib.suppress(Exception):  # at exit: close what can be closed
            c._close(timeout=5)
