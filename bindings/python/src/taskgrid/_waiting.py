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
from ._future import FINISHED, Future, _Listener


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
        return obj.result()
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
    can be added while iterating with ``add``.
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

    def __iter__(self) -> as_completed:
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


class DoneAndNotDone(NamedTuple):
    """What wait() returns, as in concurrent.futures."""

    done: set[Future]
    not_done: set[Future]


def wait(
    futures: Iterable[Future],
    timeout: float | None = None,
    return_when: str = "ALL_COMPLETED",
) -> DoneAndNotDone:
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
