# SPDX-License-Identifier: Apache-2.0
"""Waiting on many futures: as_completed, wait, and gather's packing.

``as_completed`` takes each future's completion through an internal done
callback (a queue put, run at once on the I/O thread); ``wait`` and
``Client.gather`` sleep on the client's condition variable. ``gather``
returns results in the structure it was given (lists, tuples, sets, dicts,
nested), which :func:`collect` and :func:`pack` walk.

Depends on _context (to secede while blocked in a task) and _future.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from . import _context
from ._future import FINISHED, Future, _Listener, in_blocking_call


def collect(obj: Any, out: list[Future]) -> None:
    """Append every Future found in `obj` (lists, tuples, sets, dicts)."""
    t = type(obj)
    if t is Future:
        out.append(obj)
    elif t in (list, tuple, set, frozenset):
        for x in obj:
            collect(x, out)
    elif t is dict:
        for x in obj.values():
            collect(x, out)
    elif isinstance(obj, Iterator):
        raise TypeError("gather a list of futures, not an iterator")


_SKIP = object()


def pack(obj: Any, errors: str) -> Any:
    """`obj` with each Future replaced by its result (all are done)."""
    t = type(obj)
    if t is Future:
        if errors == "skip" and obj.status is not FINISHED:
            return _SKIP
        return obj._result()
    if t in (list, tuple, set, frozenset):
        vals = [pack(x, errors) for x in obj]
        vals = [v for v in vals if v is not _SKIP]
        return vals if t is list else t(vals)
    if t is dict:
        d = {k: pack(v, errors) for k, v in obj.items()}
        return {k: v for k, v in d.items() if v is not _SKIP}
    return obj


class as_completed:
    """Iterate over futures as they finish (like dask's as_completed).

    ``with_results=True`` yields ``(future, result)`` pairs; more futures
    can be added while iterating with ``add``. ``async for`` iterates
    without blocking the event loop; the futures of an asynchronous
    client are iterated that way only.
    """

    def __init__(
        self,
        futures: Iterable[Future] = (),
        with_results: bool = False,
        raise_errors: bool = True,
    ) -> None:
        self._queue: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._waker: tuple[Any, Any] | None = None  # an `async for` waiting
        self._asynchronous = False
        self.with_results = with_results
        self.raise_errors = raise_errors
        for f in futures:
            self.add(f)

    def add(self, future: Future) -> None:
        with self._lock:
            self._pending += 1
            self._asynchronous |= future.client.asynchronous
        future.client._add_callback(future, _Listener(self._put))

    def _put(self, future: Future) -> None:
        # On the I/O thread (or at once): never blocks.
        with self._lock:
            self._queue.put(future)
            waker, self._waker = self._waker, None
        if waker is not None:
            from ._async import wake

            wake(*waker)

    def count(self) -> int:
        return self._pending

    def __iter__(self) -> as_completed:
        return self

    def __next__(self) -> Any:
        if self._asynchronous and not in_blocking_call():
            raise TypeError(
                "as_completed over an asynchronous client's futures: iterate with "
                "`async for future in as_completed(...)`, not `for`"
            )
        with self._lock:
            if self._pending == 0:
                raise StopIteration
            self._pending -= 1
        with _context.blocking():
            fut = self._queue.get()
        if not self.with_results:
            return fut
        try:
            return fut, fut._result()
        except BaseException as e:
            if self.raise_errors:
                raise
            return fut, e

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        from ._async import anext_completed

        return await anext_completed(self)


class DoneAndNotDone(NamedTuple):
    """What wait() returns, as in concurrent.futures."""

    done: set[Future]
    not_done: set[Future]


def wait(
    futures: Iterable[Future],
    timeout: float | None = None,
    return_when: str = "ALL_COMPLETED",
) -> DoneAndNotDone:
    """Wait for futures (ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION).

    For an asynchronous client's futures, a coroutine (``await wait(fs)``).
    """
    futures = list(futures)
    if not in_blocking_call() and any(f.client.asynchronous for f in futures):
        from ._async import wait as async_wait

        return async_wait(futures, timeout, return_when)  # type: ignore[return-value]
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
