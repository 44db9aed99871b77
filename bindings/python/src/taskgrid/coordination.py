# SPDX-License-Identifier: Apache-2.0
"""Coordination primitives and published datasets, kept by the scheduler.

Dask's :class:`Variable`, :class:`Queue`, :class:`Event`, :class:`Lock` and
:class:`Semaphore`, with Dask's signatures and meaning, and the dataset
calls of :class:`~taskgrid.Client` (``publish_dataset``, ``get_dataset``,
``unpublish_dataset``, ``list_datasets``, ``datasets``). Their state lives
in the scheduler (``Scheduler/Coordinate`` in the contract), so every
client and task of the cluster shares them, in any language: a Go client
and a Python task can use one Queue.

* Values: a Future is stored as its key; plain JSON values (numbers,
  strings, lists, dicts with string keys, as they round-trip) as JSON,
  which every language reads; anything else pickled, with the keys of the
  Futures inside it. While the scheduler holds a value, it holds those
  results, so they outlive the client that stored them; a value read back
  gives the reader its own Futures.
* Waiting (``Variable.get``, ``Queue.get``/``put``, ``Event.wait``,
  ``Lock.acquire``, ``Semaphore.acquire``) happens in the scheduler,
  without blocking it; inside a task the wait gives the task's worker
  slot back, as waits on futures do.
* Leases: each acquire of a Lock or Semaphore takes a lease that this
  process refreshes in the background; if the process dies or is cut off
  the scheduler expires it after ``lease_timeout`` (Dask's
  ``distributed.scheduler.locks.lease-timeout``, 30 s by default) and
  gives it to the next caller waiting.

Inside a task these find the worker's client, as Dask's do, and pickled
primitives travel by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import pickle
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar

import cloudpickle
import grpc

from . import _codec, _context
from ._future import Future, _State, current_client
from ._rpc import pb
from .errors import SchedulerError

if TYPE_CHECKING:
    from .client import Client

__all__ = ["DatasetsMixin", "Event", "Lock", "Queue", "Semaphore", "Variable"]

logger = logging.getLogger("taskgrid.coordination")

_VARIABLE = pb.COORD_KIND_VARIABLE
_QUEUE = pb.COORD_KIND_QUEUE
_EVENT = pb.COORD_KIND_EVENT
_SEMAPHORE = pb.COORD_KIND_SEMAPHORE
_DATASET = pb.COORD_KIND_DATASET

_NO_DEFAULT = object()


# ---------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------


def _seconds(timeout: Any) -> float | None:
    """Dask's timeouts: None, a number of seconds, or "200ms", "30 s"..."""
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    if hasattr(timeout, "total_seconds"):
        return float(timeout.total_seconds())
    if isinstance(timeout, str):
        text = timeout.strip().replace(" ", "")
        for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if text.endswith(unit) and text[: -len(unit)]:
                with contextlib.suppress(ValueError):
                    return float(text[: -len(unit)]) * scale
        with contextlib.suppress(ValueError):
            return float(text)
    raise ValueError(f"not a timeout: {timeout!r} (seconds, or a string such as '200ms')")


def _timeout_ms(timeout: Any) -> int:
    s = _seconds(timeout)
    if s is None:
        return -1
    return max(0, int(s * 1000))


def _find_client(client: Client | None, what: str) -> Client:
    if client is not None:
        return client
    found = current_client()
    if found is None:
        raise RuntimeError(
            f"{what} needs a taskgrid client: create one with taskgrid.Client(...) "
            "(inside a task the worker's client is used)"
        )
    return found


def _call(client: Client, req: pb.CoordRequest) -> pb.CoordResponse:
    """One Coordinate call, sent after everything this client queued (so a
    Future stored was submitted first), waited for outside the client's
    pump (a long wait holds up nothing else)."""
    grpc_deadline = None if req.timeout_ms < 0 else req.timeout_ms / 1000 + 60

    async def start() -> asyncio.Future[pb.CoordResponse]:
        task: asyncio.Future[pb.CoordResponse] = asyncio.ensure_future(
            client._stub.Coordinate(req, timeout=grpc_deadline)
        )
        return task

    async def finish(task: asyncio.Future[pb.CoordResponse]) -> pb.CoordResponse:
        return await task

    try:
        task = client._ordered_call(start)
        with _context.blocking():
            return client._io.run(finish(task))
    except grpc.aio.AioRpcError as e:
        code = e.code()
        if code in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.FAILED_PRECONDITION,
        ):
            raise ValueError(e.details()) from None
        raise SchedulerError(f"Coordinate failed ({code.name}: {e.details()})") from None


def _request(kind: Any, name: str, op: Any, **fields: Any) -> pb.CoordRequest:
    return pb.CoordRequest(kind=kind, name=name, op=op, **fields)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


class _KeyFinder(cloudpickle.Pickler):  # type: ignore[misc]
    """Pickles to nowhere, noting the keys of the Futures met."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(io.BytesIO(), protocol=5)
        self._keys = keys

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Future:
            self._keys.append(obj.key)
            return (str, ())
        return super().reducer_override(obj)


def _plain_json(value: Any) -> bytes | None:
    data = _codec.encode_json(value)
    if data is None:
        return None
    try:
        same = json.loads(data) == value and type(json.loads(data)) is type(value)
    except (TypeError, ValueError):
        return None
    return data if same else None


def _encode(value: Any) -> pb.CoordValue:
    if type(value) is Future:
        return pb.CoordValue(key=value.key)
    data = _plain_json(value)
    if data is not None:
        return pb.CoordValue(data=data, codec=_codec.JSON)
    keys: list[str] = []
    _KeyFinder(keys).dump(value)
    return pb.CoordValue(data=_codec.dumps(value), codec=_codec.PICKLE, refs=sorted(set(keys)))


def _adopt(client: Client, keys: list[str]) -> list[_State]:
    """Take over the client holds an answer handed us (one per entry): each
    key's state is held by this client from now on (a second hold on a
    key already held goes back at once). Returns the states, each counted
    once in its refs until _release_temps."""
    states = []
    extra = []
    with client._cond:
        for key in keys:
            st = client._states.get(key)
            if st is None:
                st = client._states[key] = _State(key, True)
                client._outbox.append(("gather", [key]))
            elif st.held:
                extra.append(key)
            else:
                st.held = True
            st.refs += 1
            states.append(st)
        if extra:
            client._outbox.append(("release", extra))
        if states:
            client._kick()
    return states


class _Unpickler(pickle.Unpickler):
    """Unpickles the Futures inside a value onto `client` (the one that
    read it), not the process's default client."""

    def __init__(self, data: bytes, client: Client) -> None:
        super().__init__(io.BytesIO(data))
        self._client = client

    def find_class(self, module: str, name: str) -> Any:
        if name == "_future_from_key" and module in ("taskgrid._future", "taskgrid.client"):
            return self._client.future
        return super().find_class(module, name)


def _decode(client: Client, v: pb.CoordValue) -> Any:
    if v.key:
        (st,) = _adopt(client, [v.key])
        return Future(v.key, client, st)  # takes the adopted ref
    states = _adopt(client, list(v.refs))
    try:
        if v.codec == _codec.PICKLE:
            return _Unpickler(v.data, client).load()
        return _codec.decode(v.data, v.codec)
    finally:
        for st in states:
            client._decref(st)


# ---------------------------------------------------------------------------
# Variable, Queue, Event
# ---------------------------------------------------------------------------


class _Named:
    """A primitive by name, with the client it talks through."""

    _kind: Any = pb.COORD_KIND_UNSPECIFIED
    _prefix = ""

    def __init__(self, name: str | None = None, client: Client | None = None) -> None:
        self._client = client
        self.name = name or f"{self._prefix}-{uuid.uuid4().hex}"

    @property
    def client(self) -> Client:
        self._client = _find_client(self._client, type(self).__name__)
        return self._client

    def _do(self, op: Any, **fields: Any) -> pb.CoordResponse:
        return _call(self.client, _request(self._kind, self.name, op, **fields))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name,))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


class Variable(_Named):
    """A value shared by clients and tasks (Dask's Variable).

    ``set(value)`` stores a Future (its result is kept while it is the
    variable's value) or any value; ``get(timeout=None)`` waits until the
    variable has a value and returns it (TimeoutError after ``timeout``
    seconds); ``delete()`` clears it.
    """

    _kind = _VARIABLE
    _prefix = "variable"

    def set(self, value: Any, timeout: Any = "30 s", **kwargs: Any) -> None:
        del timeout, kwargs  # storing never waits
        self._do(pb.COORD_OP_SET, value=_encode(value))

    def get(self, timeout: Any = None, **kwargs: Any) -> Any:
        del kwargs
        r = self._do(pb.COORD_OP_GET, timeout_ms=_timeout_ms(timeout))
        if not r.ok:
            raise TimeoutError(f"Variable {self.name!r} got no value within {timeout} s")
        return _decode(self.client, r.values[0])

    def delete(self) -> None:
        self._do(pb.COORD_OP_DELETE)


class Queue(_Named):
    """A FIFO shared by clients and tasks (Dask's Queue).

    ``put(value, timeout=None)`` (waits while ``maxsize`` items are there),
    ``get(timeout=None, batch=False)`` (waits for an item; ``batch=True``:
    every item there now; ``batch=n``: waits for n items), ``qsize()``.
    Futures put in keep their results until they are taken out.
    """

    _kind = _QUEUE
    _prefix = "queue"

    def __init__(
        self, name: str | None = None, client: Client | None = None, maxsize: int = 0
    ) -> None:
        super().__init__(name, client)
        if maxsize < 0:
            raise ValueError(f"Queue maxsize must be 0 (no bound) or more, not {maxsize}")
        self.maxsize = int(maxsize)

    def put(self, value: Any, timeout: Any = None, **kwargs: Any) -> None:
        del kwargs
        r = self._do(
            pb.COORD_OP_PUT,
            value=_encode(value),
            limit=self.maxsize,
            timeout_ms=_timeout_ms(timeout),
        )
        if not r.ok:
            raise TimeoutError(f"Queue {self.name!r} stayed full for {timeout} s")

    def get(self, timeout: Any = None, batch: bool | int = False, **kwargs: Any) -> Any:
        del kwargs
        if batch is True:
            r = self._do(pb.COORD_OP_GET, all=True)
        else:
            n = 1 if batch is False else int(batch)
            if n < 1:
                raise ValueError(
                    f"Queue.get batch must be True, False or a count >= 1, not {batch!r}"
                )
            r = self._do(pb.COORD_OP_GET, count=n, timeout_ms=_timeout_ms(timeout))
            if not r.ok:
                raise TimeoutError(f"Queue {self.name!r} had no item within {timeout} s")
        items = [_decode(self.client, v) for v in r.values]
        return items if batch is not False else items[0]

    def qsize(self, **kwargs: Any) -> int:
        del kwargs
        return int(self._do(pb.COORD_OP_SIZE).size)

    def close(self) -> None:
        """Nothing to close: the queue lives in the scheduler."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, None, self.maxsize))


class Event(_Named):
    """A flag shared by clients and tasks (Dask's Event): ``set()``,
    ``clear()``, ``wait(timeout=None)`` (True once set, False at the
    timeout), ``is_set()``."""

    _kind = _EVENT
    _prefix = "event"

    def set(self) -> None:
        self._do(pb.COORD_OP_SET)

    def clear(self) -> None:
        self._do(pb.COORD_OP_CLEAR)

    def wait(self, timeout: Any = None) -> bool:
        return bool(self._do(pb.COORD_OP_WAIT, timeout_ms=_timeout_ms(timeout)).ok)

    def is_set(self) -> bool:
        return bool(self._do(pb.COORD_OP_WAIT, timeout_ms=0).ok)


# ---------------------------------------------------------------------------
# Semaphore and Lock: leases refreshed in the background
# ---------------------------------------------------------------------------


def _lease_timeout_default() -> float:
    try:
        import dask.config

        value = dask.config.get("distributed.scheduler.locks.lease-timeout", "30s")
    except ImportError:
        return 30.0
    if value in (None, "inf"):
        return 3600.0
    return _seconds(value) or 30.0


class _Refresher:
    """One thread per process refreshing every lease it holds, each at a
    fifth of its timeout, as Dask's semaphores do."""

    _lock = threading.Lock()
    _leases: ClassVar[dict[str, tuple[weakref.ReferenceType[Semaphore], float]]] = {}
    _thread: threading.Thread | None = None
    _wake = threading.Event()

    @classmethod
    def add(cls, lease: str, sem: Semaphore) -> None:
        with cls._lock:
            cls._leases[lease] = (weakref.ref(sem), time.monotonic())
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(
                    target=cls._main, name="taskgrid-leases", daemon=True
                )
                cls._thread.start()
        cls._wake.set()

    @classmethod
    def remove(cls, lease: str) -> None:
        with cls._lock:
            cls._leases.pop(lease, None)

    @classmethod
    def _main(cls) -> None:
        while True:
            now = time.monotonic()
            due = []
            with cls._lock:
                for lease, (ref, last) in list(cls._leases.items()):
                    sem = ref()
                    if sem is None:
                        del cls._leases[lease]
                    elif now - last >= sem.lease_timeout / 5:
                        due.append((lease, sem))
            for lease, sem in due:
                sem._refresh(lease)
                with cls._lock:
                    if lease in cls._leases:
                        cls._leases[lease] = (weakref.ref(sem), time.monotonic())
            cls._wake.wait(0.05)
            cls._wake.clear()


class Semaphore(_Named):
    """At most ``max_leases`` holders at a time, across the cluster (Dask's
    Semaphore): ``acquire(timeout=None)`` (True, or False at the timeout),
    ``release()``, ``get_value()`` (leases held now), and a context
    manager. Every Semaphore (and Lock) of one name must give the same
    ``max_leases``. ``lease_timeout`` (seconds) is how long the scheduler
    keeps a lease its holder stopped refreshing (by default Dask's
    ``distributed.scheduler.locks.lease-timeout``, else 30 s)."""

    _kind = _SEMAPHORE
    _prefix = "semaphore"

    def __init__(
        self,
        max_leases: int = 1,
        name: str | None = None,
        register: bool = True,
        scheduler_rpc: Any = None,
        loop: Any = None,
        *,
        client: Client | None = None,
        lease_timeout: float | None = None,
    ) -> None:
        del register, scheduler_rpc, loop  # Dask's plumbing: nothing to register here
        super().__init__(name, client)
        if not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive integer, not {max_leases!r}")
        self.max_leases = max_leases
        self.lease_timeout = float(lease_timeout) if lease_timeout else _lease_timeout_default()
        self._leases: list[str] = []
        self._held_lock = threading.Lock()

    def _lease_ms(self) -> int:
        return min(max(int(self.lease_timeout * 1000), 100), 3_600_000)

    def acquire(self, timeout: Any = None) -> bool:
        lease = uuid.uuid4().hex
        r = self._do(
            pb.COORD_OP_ACQUIRE,
            lease=lease,
            limit=self.max_leases,
            lease_timeout_ms=self._lease_ms(),
            timeout_ms=_timeout_ms(timeout),
        )
        if not r.ok:
            return False
        with self._held_lock:
            self._leases.append(lease)
        _Refresher.add(lease, self)
        return True

    def release(self) -> bool:
        with self._held_lock:
            if not self._leases:
                raise RuntimeError("Released too often")
            lease = self._leases.pop(0)
        _Refresher.remove(lease)
        r = self._do(pb.COORD_OP_RELEASE, lease=lease)
        if not r.ok:
            logger.warning(
                "%r: lease %s had expired before it was released (not refreshed within %s s)",
                self,
                lease,
                self.lease_timeout,
            )
        return bool(r.ok)

    def _refresh(self, lease: str) -> None:
        try:
            r = self._do(pb.COORD_OP_REFRESH, lease=lease, lease_timeout_ms=self._lease_ms())
        except Exception as e:  # noqa: BLE001 - the next turn tries again
            logger.debug("refreshing lease %s of %r: %s", lease, self, e)
            return
        if not r.ok:
            _Refresher.remove(lease)
            logger.warning("%r lost lease %s: it expired before it could be refreshed", self, lease)

    def get_value(self) -> int:
        return int(self._do(pb.COORD_OP_SIZE).size)

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.max_leases, self.name))


class Lock(Semaphore):
    """Mutual exclusion across the cluster (Dask's Lock: a Semaphore of one
    lease): ``acquire(blocking=True, timeout=None)``, ``release()``,
    ``locked()``, and a context manager."""

    _prefix = "lock"

    def __init__(
        self,
        name: str | None = None,
        scheduler_rpc: Any = None,
        loop: Any = None,
        *,
        client: Client | None = None,
        lease_timeout: float | None = None,
    ) -> None:
        super().__init__(
            max_leases=1,
            name=name or f"lock-{uuid.uuid4().hex}",
            scheduler_rpc=scheduler_rpc,
            loop=loop,
            client=client,
            lease_timeout=lease_timeout,
        )

    def acquire(self, blocking: bool = True, timeout: Any = None) -> bool:  # type: ignore[override]
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout=timeout)

    def locked(self) -> bool:
        return self.get_value() == 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name,))


# ---------------------------------------------------------------------------
# Datasets, on Client
# ---------------------------------------------------------------------------


class Datasets(MutableMapping[str, Any]):
    """``client.datasets``: the published datasets as a mapping (Dask's)."""

    def __init__(self, client: DatasetsMixin) -> None:
        self._client = client

    def __getitem__(self, name: str) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._client.publish_dataset(value, name=name)

    def __delitem__(self, name: str) -> None:
        self._client.unpublish_dataset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._client.list_datasets())

    def __len__(self) -> int:
        return len(self._client.list_datasets())


class DatasetsMixin:
    """Client methods for published datasets (Dask's): values, Futures or
    persisted collections kept by the scheduler under a name for other
    clients; the results of their Futures are kept while published."""

    def _coord_client(self) -> Client:
        return self  # type: ignore[return-value]

    def publish_dataset(
        self, *args: Any, name: str | None = None, override: bool = False, **kwargs: Any
    ) -> None:
        """Publish ``publish_dataset(x, name="n")``,
        ``publish_dataset(n=x, m=y)`` or ``publish_dataset({"n": x})``;
        KeyError if a name is published already, unless ``override``."""
        names: list[str] = list(kwargs)
        data: list[Any] = list(kwargs.values())
        if name:
            if not args:
                raise ValueError(
                    "If name is provided, expecting call signature like "
                    "publish_dataset(df, name='ds')"
                )
            names.append(name)
            data.append(args[0] if len(args) == 1 else args)
        elif args:
            if len(args) != 1 or not isinstance(args[0], Mapping):
                raise ValueError(
                    "If name is omitted, positional argument must be a {name: value} dict"
                )
            names.extend(args[0])
            data.extend(args[0].values())
        client = self._coord_client()
        for n, value in zip(names, data):
            r = _call(
                client,
                _request(_DATASET, n, pb.COORD_OP_SET, value=_encode(value), override=override),
            )
            if not r.ok:
                raise KeyError(f"Dataset {n} already exists")

    def get_dataset(self, name: str | list[str], default: Any = _NO_DEFAULT, **kwargs: Any) -> Any:
        """The dataset published as ``name`` (a list of names: a list);
        ``default`` if given and it is not published, else KeyError."""
        del kwargs
        client = self._coord_client()
        names = name if isinstance(name, list) else [name]
        outs = []
        for n in names:
            r = _call(client, _request(_DATASET, n, pb.COORD_OP_GET))
            if not r.ok:
                if default is _NO_DEFAULT:
                    raise KeyError(f"Dataset '{n}' not found")
                outs.append(default)
            else:
                outs.append(_decode(client, r.values[0]))
        return outs if isinstance(name, list) else outs[0]

    def unpublish_dataset(self, name: str | list[str], **kwargs: Any) -> None:
        """Remove the named datasets (a name not published is no error)."""
        del kwargs
        client = self._coord_client()
        for n in name if isinstance(name, list) else [name]:
            _call(client, _request(_DATASET, n, pb.COORD_OP_DELETE))

    def list_datasets(self, **kwargs: Any) -> list[str]:
        """The published names, sorted."""
        del kwargs
        r = _call(self._coord_client(), pb.CoordRequest(kind=_DATASET, op=pb.COORD_OP_LIST))
        return list(r.names)

    @property
    def datasets(self) -> Datasets:
        return Datasets(self)
