# SPDX-License-Identifier: Apache-2.0
"""The asynchronous client: ``Client(address, asynchronous=True)``, as Dask's.

``client = await Client(address, asynchronous=True)`` (or ``async with``)
gives an :class:`AsyncClient`, a Client whose waiting calls are
coroutines, following Dask's asynchronous mode: ``submit``, ``map``,
``compute``, ``persist`` (and taskgrid's ``future``, ``map_partitions``,
``tree_reduce``) return Futures at once; ``gather``, ``scatter``,
``cancel``, ``replicate``, ``close`` and every other call that waits on
the cluster are awaited; a Future is awaitable (``await future`` is its
result) and its ``result``/``exception``/``traceback`` are coroutines.
Calls that only block (``with``, ``watch``) raise TypeError naming what
to use instead.

How it bridges, and why: the client keeps its gRPC I/O on taskgrid's one
I/O loop (_loop.py: one loop for every client of the process is what makes
many clients fast), and the caller's event loop never blocks on it:

* waiting for futures registers a done callback per pending future (an
  internal listener, run on the I/O thread when results arrive) that wakes
  the caller's loop with ``call_soon_threadsafe``: no thread per wait, one
  wake-up per batch waited for;
* a result whose bytes are still on a worker, the connection itself
  (which may start a LocalCluster) and the other blocking calls (RPCs
  queued behind earlier submits) run the synchronous implementation in a
  worker thread (``asyncio.to_thread``), so they behave exactly as the
  blocking client's do.

Inside a task on a Python worker, awaiting futures gives the task's slot
back as the blocking calls do (secede), so nested work cannot deadlock.

Depends on client.py (the Client it extends), _future and _waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import queue
import threading
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _context
from ._future import FINISHED, PENDING, Future, _Listener, in_blocking_call, run_blocking
from ._waiting import DoneAndNotDone, collect, pack
from .client import Client

if TYPE_CHECKING:
    from ._waiting import as_completed

T = TypeVar("T")

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"


# ---------------------------------------------------------------------------
# Waking the caller's loop from the I/O thread
# ---------------------------------------------------------------------------


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def wake(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
    """Resolve `waiter` on its loop, from any thread (never raises: it runs
    on the I/O thread, and a loop that has closed has nobody waiting)."""
    with contextlib.suppress(RuntimeError):  # the awaiting loop is closed
        loop.call_soon_threadsafe(_settle, waiter)


class _Waiter:
    """Counts completions of the futures waited for; wakes the caller's
    loop once the wait is over (as `return_when` says)."""

    __slots__ = ("left", "lock", "loop", "mode", "waiter")

    def __init__(self, n: int, mode: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.waiter: asyncio.Future[None] = self.loop.create_future()
        self.left = n
        self.mode = mode
        self.lock = threading.Lock()

    def __call__(self, fut: Future) -> None:
        with self.lock:
            self.left -= 1
            over = (
                self.left <= 0
                or self.mode == FIRST_COMPLETED
                or (self.mode == FIRST_EXCEPTION and fut.status != FINISHED)
            )
        if over:
            wake(self.loop, self.waiter)


async def wait_futures(
    futures: Iterable[Future], timeout: float | None = None, mode: str = ALL_COMPLETED
) -> bool:
    """Wait, without blocking the loop, until the futures are done (or the
    first one, or the first failure, as `mode` says); False on timeout."""
    futures = list(futures)
    pending = [f for f in futures if f._state.status is PENDING]
    if len(pending) < len(futures) and mode != ALL_COMPLETED:
        done = [f for f in futures if f._state.status is not PENDING]
        if mode == FIRST_COMPLETED or any(f._state.status is not FINISHED for f in done):
            return True
    if not pending:
        return True
    w = _Waiter(len(pending), mode)
    for f in pending:
        f.client._add_callback(f, _Listener(w))
    with _context.blocking():
        finished, _ = await asyncio.wait([w.waiter], timeout=timeout)
    return bool(finished)


def _timed_out(futures: Iterable[Future], timeout: float | None) -> TimeoutError:
    key = next((f.key for f in futures if not f.done()), "?")
    return TimeoutError(f"task {key!r} did not finish within {timeout} s")


def _needs_fetch(futures: Iterable[Future]) -> bool:
    # Done with the bytes on a worker: reading them is a blocking fetch.
    return any(f._state.remote and not f._state.has_value for f in futures)


async def values(obj: Any, errors: str, flat: list[Future]) -> Any:
    """`obj` with each (done) Future replaced by its result, as gather."""
    if _needs_fetch(flat):
        return await in_thread(pack, obj, errors)
    return pack(obj, errors)


async def result(fut: Future, timeout: float | None = None) -> Any:
    """Future.result() of an asynchronous client, and ``await future``."""
    if not await wait_futures((fut,), timeout):
        raise _timed_out((fut,), timeout)
    return await values(fut, "raise", [fut])


async def exception(fut: Future, timeout: float | None = None) -> BaseException | None:
    """Future.exception() of an asynchronous client."""
    if not await wait_futures((fut,), timeout):
        raise _timed_out((fut,), timeout)
    return fut._exception()


async def traceback(fut: Future, timeout: float | None = None) -> str | None:
    """Future.traceback() of an asynchronous client."""
    if not await wait_futures((fut,), timeout):
        raise _timed_out((fut,), timeout)
    return fut._traceback()


async def wait(
    futures: Iterable[Future], timeout: float | None = None, return_when: str = ALL_COMPLETED
) -> DoneAndNotDone:
    """taskgrid.wait() on an asynchronous client's futures: as the
    blocking one (after `timeout` it returns what is done), awaited."""
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(
            f"return_when must be {ALL_COMPLETED!r}, {FIRST_COMPLETED!r} or "
            f"{FIRST_EXCEPTION!r}, not {return_when!r}"
        )
    futures = list(futures)
    await wait_futures(futures, timeout, return_when)
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, set(futures) - done)


async def anext_completed(ac: as_completed) -> Any:
    """``async for`` over :class:`taskgrid.as_completed`: the next future
    to finish (or ``(future, result)`` with ``with_results``)."""
    with ac._lock:
        if ac._pending == 0:
            raise StopAsyncIteration
        ac._pending -= 1
    try:
        fut = await _next_done(ac)
    except BaseException:
        with ac._lock:  # cancelled while waiting: that future is still to come
            ac._pending += 1
        raise
    if not ac.with_results:
        return fut
    try:
        return fut, await values(fut, "raise", [fut])
    except Exception as e:
        if ac.raise_errors:
            raise
        return fut, e


async def _next_done(ac: as_completed) -> Future:
    loop = asyncio.get_running_loop()
    while True:
        with ac._lock:
            try:
                return ac._queue.get_nowait()
            except queue.Empty:
                waiter: asyncio.Future[None] = loop.create_future()
                ac._waker = (loop, waiter)  # ac._put wakes it
        with _context.blocking():
            await waiter


def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Coroutine[Any, Any, T]:
    """Run a blocking call in a worker thread (marked in_blocking_call, so
    what it calls blocks too); awaitable from any loop."""
    return asyncio.to_thread(run_blocking, fn, *args, **kwargs)


class Eager:
    """An awaitable for blocking work started at once in a thread: done
    whether it is awaited or not (as Dask's calls that act at once and
    return an awaitable), and awaitable from any loop, any number of times."""

    __slots__ = ("_cf",)

    def __init__(
        self, fn: Callable[..., Any], *args: Any, here: bool = False, **kwargs: Any
    ) -> None:
        # here=True: run it in this thread now (no event loop to spare).
        self._cf: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                self._cf.set_result(run_blocking(fn, *args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting caller
                self._cf.set_exception(e)

        if here:
            run()
        else:
            threading.Thread(target=run, name="taskgrid-async", daemon=True).start()

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self._cf).__await__()

    def done(self) -> bool:
        return self._cf.done()

    def wait(self) -> Any:
        """Block until done; its result (or raise its error)."""
        return self._cf.result()

    def succeeded(self) -> bool:
        return self._cf.done() and self._cf.exception() is None


def dual(blocking: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make an `async def` method the asynchronous form of `blocking`:
    called from the blocking side of another call (in a thread, see
    in_thread), it is `blocking` itself."""

    def decorate(coro_fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(coro_fn)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if in_blocking_call():
                return blocking(self, *args, **kwargs)
            return coro_fn(self, *args, **kwargs)

        return method

    return decorate


class StartsOnAwait:
    """Started by ``await obj`` or ``async with obj`` (once, in a thread:
    see Eager), as Dask's asynchronous Client and clusters; ``with`` is
    refused. A subclass sets ``_noun``, ``_starting = None`` and
    ``_start_lock``, and gives ``_begin`` (what starts it)."""

    _noun = ""
    _starting: Eager | None
    _start_lock: threading.Lock

    def _begin(self) -> Eager:
        raise NotImplementedError

    def _start(self) -> Eager:
        with self._start_lock:
            if self._starting is None:
                self._starting = self._begin()
            return self._starting

    def _started(self) -> bool:
        return self._starting is not None and self._starting.succeeded()

    def __await__(self: T) -> Generator[Any, None, T]:
        async def started() -> T:
            await cast(StartsOnAwait, self)._start()
            return self

        return started().__await__()

    async def __aexit__(self, *exc: object) -> None:
        await cast(Any, self).close()

    def __enter__(self) -> Any:
        noun = self._noun
        raise TypeError(
            f"this taskgrid {noun} is asynchronous: use `async with {noun}(..., "
            f"asynchronous=True) as x:` (or `x = await {noun}(...)`), not `with`"
        )

    def __repr__(self) -> str:
        if not self._started():
            return f"<taskgrid.{self._noun}: not started (asynchronous)>"
        return super().__repr__()


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

# Calls that return at once in Dask's asynchronous mode too (and taskgrid's
# own submitting calls, which must run in the caller's thread: in a task,
# that thread names the parent of what is submitted): kept as they are.
IMMEDIATE = frozenset({"submit", "map", "persist", "future", "map_partitions", "tree_reduce"})
# Blocking-only calls: refused, saying what to use instead.
REFUSED = {
    "watch": (
        "Client.watch is a blocking iterator; follow the cluster with a synchronous "
        "taskgrid.Client (e.g. iterate it in a thread with asyncio.to_thread)"
    ),
}


class AsyncClient(StartsOnAwait, Client):
    """What ``Client(..., asynchronous=True)`` makes: see the module's
    docstring. Nothing connects until it is awaited (``client = await
    Client(..., asynchronous=True)``) or entered (``async with``); the
    arguments are those of :class:`Client`."""

    asynchronous = True
    _noun = "Client"

    def __init__(self, address: Any = None, *, asynchronous: bool = True, **kwargs: Any) -> None:
        self.cluster = None
        self._owns_cluster = False
        self._shared = False
        self._closed = True
        self._set_as_default = bool(kwargs.get("set_as_default", True))
        self._start_args = (address, kwargs)
        self._start_lock = threading.Lock()
        self._starting = None

    def _begin(self) -> Eager:
        address, kwargs = self._start_args
        return Eager(Client.__init__, self, address, **kwargs)

    async def __aenter__(self) -> AsyncClient:
        await self
        if self._set_as_default:
            Client.__enter__(self)
        return self

    def _check_open(self) -> None:
        if not self._started():
            raise RuntimeError(
                "this asynchronous taskgrid Client is not connected: await it first "
                "(`client = await Client(address, asynchronous=True)`) or use `async with`"
            )
        super()._check_open()

    # -- awaited calls --------------------------------------------------------

    @dual(Client.gather)
    async def gather(
        self, futures: Any, errors: str = "raise", timeout: float | None = None
    ) -> Any:
        """Results of futures, in the same structure, awaited: as
        :meth:`Client.gather`."""
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        flat: list[Future] = []
        collect(futures, flat)
        if not await wait_futures(flat, timeout):
            raise _timed_out(flat, timeout)
        return await values(futures, errors, flat)

    @dual(Client.scatter)
    async def scatter(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Put data into the cluster, awaited: as :meth:`Client.scatter`."""
        return Client.scatter(self, data, *args, **kwargs)

    @dual(Client.replicate)
    async def replicate(
        self, futures: Future | Iterable[Future], *args: Any, **kwargs: Any
    ) -> dict[str, int]:
        """Copy held results to more workers, awaited: as
        :meth:`Client.replicate` (the futures are awaited here first)."""
        futures = [futures] if isinstance(futures, Future) else list(futures)
        await wait_futures(futures, kwargs.get("timeout"))
        return await in_thread(Client.replicate, self, futures, *args, **kwargs)

    @dual(Client.close)
    async def close(self, timeout: float = 10.0) -> None:
        """Release held results, close the channel (and the cluster this
        client started), awaited."""
        starting = self._starting
        if starting is None:
            return  # never connected
        try:
            await starting
        except Exception:  # noqa: BLE001 - it never connected: nothing to close
            return
        await in_thread(Client.close, self, timeout)

    def get(self, dsk: Any, keys: Any, sync: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        """Dask's scheduler interface: with ``sync`` (the default) a
        coroutine giving the values, else the Futures (as Dask's
        asynchronous Client.get)."""
        if in_blocking_call():
            return Client.get(self, dsk, keys, sync=sync, **kwargs)
        futures = Client.get(self, dsk, keys, sync=False, **kwargs)
        return self.gather(futures) if sync else futures

    def compute(self, collections: Any, sync: bool = False, **kwargs: Any) -> Any:
        """Futures of Dask collections (as :meth:`Client.compute`); with
        ``sync=True`` a coroutine giving their values."""
        if in_blocking_call():
            return Client.compute(self, collections, sync=sync, **kwargs)
        futures = Client.compute(self, collections, sync=False, **kwargs)
        return self.gather(futures) if sync else futures


def _awaited(name: str) -> Callable[..., Any]:
    blocking = getattr(Client, name)

    async def call(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return await in_thread(blocking, self, *args, **kwargs)

    method = dual(blocking)(call)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Awaited form of :meth:`Client.{name}`.\n\n{blocking.__doc__ or ''}"
    return method


def _refused(name: str, why: str) -> Callable[..., Any]:
    blocking = getattr(Client, name)

    def refuse(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{why} (this Client is asynchronous)")

    method = dual(blocking)(refuse)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Not available on an asynchronous client: {why}."
    return method


def _classify() -> dict[str, str]:
    """Every public method of Client: "immediate" (as it is), "native"
    (defined above), "refused", or "awaited" (the blocking method run in a
    thread). Dask's asynchronous mode makes every call that waits on the
    cluster a coroutine, hence the default for a method not named here."""
    kinds = {}
    for name, _ in inspect.getmembers(Client, inspect.isfunction):
        if name.startswith("_"):
            continue
        if name in IMMEDIATE or inspect.iscoroutinefunction(getattr(Client, name)):
            kinds[name] = "immediate"  # or a coroutine already
        elif name in REFUSED:
            kinds[name] = "refused"
            setattr(AsyncClient, name, _refused(name, REFUSED[name]))
        elif name in AsyncClient.__dict__:
            kinds[name] = "native"
        else:
            kinds[name] = "awaited"
            setattr(AsyncClient, name, _awaited(name))
    return kinds


METHODS = _classify()
