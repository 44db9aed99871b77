# SPDX-License-Identifier: Apache-2.0
"""Future, the per-key state it shares, and the done-callback thread.

A Future is a handle on a per-key :class:`_State` shared by every Future of
that key; the client (client.py, _pump.py) fills the state in and wakes the
waiters. When the last handle is garbage-collected the key is released, so
the scheduler can forget the result. Done callbacks run on one separate
thread, in order, so they may block or call the client; internal ones
marked :class:`_Listener` run at once instead.

Depends on _context only (to find the client a travelling Future is
rebound to); the Client type is imported for type checking alone.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Callable

from . import _context

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("taskgrid.client")

PENDING, FINISHED, ERROR, CANCELLED, LOST = ("pending", "finished", "error", "cancelled", "lost")


class _State:
    """What the client knows of one key; shared by all its Futures."""

    __slots__ = (
        "callbacks",
        "codec",
        "data",
        "error",
        "exc",
        "has_value",
        "held",
        "holders",
        "key",
        "refs",
        "remote",
        "status",
        "value",
    )

    def __init__(self, key: str, held: bool) -> None:
        self.key = key
        self.status = PENDING
        self.refs = 0
        self.held = held  # this client submitted it (holds it on the scheduler)
        self.data = b""
        self.remote = 0  # FINISHED with its bytes still on a worker: their size
        self.holders: tuple[str, ...] = ()  # and those workers' data addresses
        self.codec = ""
        self.error: tuple[str, str, str, str] | None = None
        self.value: Any = None
        self.has_value = False
        self.exc: BaseException | None = None
        self.callbacks: list[tuple[Future, Callable[[Future], Any]]] | None = None


class Future:
    """A handle on the eventual result of a task (like dask's Future).

    ``result(timeout)`` waits and returns the value or raises the task's
    error (as its original exception type, with the remote traceback
    chained); ``done()``, ``exception()``, ``traceback()``,
    ``add_done_callback(fn)`` and ``cancel()`` behave as in
    concurrent.futures. Dropping the last Future of a key lets the
    scheduler forget the result. ``await future`` gives its result
    without blocking the event loop; on an asynchronous client (see
    _async.py) result, exception, traceback and cancel are coroutines.
    """

    __slots__ = ("__weakref__", "_released", "_state", "client", "key")

    # Dask treats such an object inside a graph as a reference to the task
    # `key` (as its own futures), so persisted collections compute on.
    __dask_future__ = True

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("taskgrid.Future", self.key)

    def __init__(self, key: str, client: Client, state: _State) -> None:
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

    def result(self, timeout: float | None = None) -> Any:
        """The task's result; waits at most `timeout` seconds (a coroutine
        when the client is asynchronous, as in Dask)."""
        if self.client.asynchronous and not in_blocking_call():
            from . import _async

            return _async.result(self, timeout)
        return self._result(timeout)

    def _result(self, timeout: float | None = None) -> Any:
        st = self._state
        if st.status is not FINISHED:
            if st.status is PENDING:
                self.client._wait((st,), timeout)
            if st.status is not FINISHED:
                raise self.client._exception_of(st)
        if st.has_value:
            return st.value
        return self.client._value_of(st)

    def exception(self, timeout: float | None = None) -> Any:
        """The task's error, or None if it succeeded; waits like result()."""
        if self.client.asynchronous and not in_blocking_call():
            from . import _async

            return _async.exception(self, timeout)
        return self._exception(timeout)

    def _exception(self, timeout: float | None = None) -> BaseException | None:
        st = self._state
        if st.status is PENDING:
            self.client._wait((st,), timeout)
        return None if st.status is FINISHED else self.client._exception_of(st)

    def traceback(self, timeout: float | None = None) -> Any:
        """The remote traceback text of a failed task (None otherwise)."""
        if self.client.asynchronous and not in_blocking_call():
            from . import _async

            return _async.traceback(self, timeout)
        return self._traceback(timeout)

    def _traceback(self, timeout: float | None = None) -> str | None:
        st = self._state
        if st.status is PENDING:
            self.client._wait((st,), timeout)
        return st.error[2] or None if st.error else None

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future``: its result, without blocking the event loop
        (for a future of any client)."""
        from . import _async

        return _async.result(self).__await__()

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call fn(self) once the task is final (at once if it is already).

        Callbacks run on taskgrid's callback thread, in order; they may
        block or use the client.
        """
        self.client._add_callback(self, fn)

    def cancel(self) -> Any:
        """Cancel the task (and what depends on it); True if it was pending.
        On an asynchronous client, a coroutine (await it, as in Dask)."""
        if self.client.asynchronous and not in_blocking_call():
            return self.client.cancel([self])
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
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __reduce__(self) -> tuple[Any, ...]:
        # A Future that travels (inside some object) is rebound on arrival to
        # the default client there (in a task: the worker's client).
        return (_future_from_key, (self.key,))

    def __repr__(self) -> str:
        return f"<taskgrid.Future: {self._state.status}, key: {self.key}>"


# Threads running the blocking implementation of an asynchronous client's
# call (_async.py): there, its calls block as a synchronous client's do.
_blocking = threading.local()


def in_blocking_call() -> bool:
    """Whether this thread runs the blocking side of an asynchronous call."""
    return getattr(_blocking, "active", False)


def run_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn` with this thread marked as in_blocking_call()."""
    was = in_blocking_call()
    _blocking.active = True
    try:
        return fn(*args, **kwargs)
    finally:
        _blocking.active = was


def _future_from_key(key: str) -> Future:
    client = current_client()
    if client is None:
        raise ValueError("no taskgrid client: create one with taskgrid.Client(...)")
    return client.future(key)


def _is_future(obj: object) -> bool:
    return type(obj) is Future


# ---------------------------------------------------------------------------
# The client to use here: a worker's, else the default one.
# ---------------------------------------------------------------------------

_default: weakref.ReferenceType[Client] | None = None


def set_default(client: Client) -> None:
    """Make `client` the one get_client() and rebound Futures use."""
    global _default
    _default = weakref.ref(client)


def clear_default(client: Client) -> None:
    """Forget `client` as the default (when it closes)."""
    global _default
    if _default is not None and _default() is client:
        _default = None


def current_client() -> Client | None:
    """The worker's client inside a task, else the open default client."""
    worker = _context.current_worker() or _context.process_worker
    if worker is not None:
        client: Client = worker.client
        return client
    if _default is not None:
        c = _default()
        if c is not None and not c._closed:
            return c
    return None


# ---------------------------------------------------------------------------
# Done callbacks: one thread, in order.
# ---------------------------------------------------------------------------


class _Listener:
    """Marks an internal callback that is safe to run on the I/O thread."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Future], None]) -> None:
        self.fn = fn

    def __call__(self, fut: Future) -> None:
        self.fn(fut)


class _CallbackThread:
    _lock = threading.Lock()
    _queue: queue.SimpleQueue[tuple[Callable[..., Any], Any]] | None = None
    _pid = 0

    @classmethod
    def put(cls, fn: Callable[..., Any], arg: Any) -> None:
        q = cls._queue
        if q is None or cls._pid != os.getpid():
            with cls._lock:
                if cls._queue is None or cls._pid != os.getpid():
                    cls._queue = queue.SimpleQueue()
                    cls._pid = os.getpid()
                    threading.Thread(
                        target=cls._main,
                        args=(cls._queue,),
                        name="taskgrid-callbacks",
                        daemon=True,
                    ).start()
                q = cls._queue
        q.put((fn, arg))

    @staticmethod
    def _main(q: queue.SimpleQueue[tuple[Callable[..., Any], Any]]) -> None:
        while True:
            fn, arg = q.get()
            try:
                fn(arg)
            except Exception:
                logger.exception("error in a taskgrid done callback %r", fn)


def run_callback(fut: Future, fn: Callable[[Future], Any]) -> None:
    """Run a done callback: a _Listener at once, others on the callback thread."""
    if fn.__class__ is _Listener:
        fn(fut)  # internal, non-blocking (a queue put)
    else:
        _CallbackThread.put(fn, fut)
