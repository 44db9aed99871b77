# SPDX-License-Identifier: Apache-2.0
"""``LocalCluster(asynchronous=True)``: a LocalCluster for asyncio code.

As Dask's: ``async with LocalCluster(asynchronous=True) as cluster:`` (or
``cluster = await LocalCluster(asynchronous=True)``) starts it without
blocking the event loop, and ``await cluster.close()`` stops it. Its
``scale``, ``adapt``, ``wait_for_workers`` and ``status`` start at once and
return an awaitable (Dask's ``scale`` and ``adapt`` act whether awaited or
not; awaiting them waits until they are done). Starting, stopping and
those calls run the blocking LocalCluster code in a thread (see
_async.Eager): a cluster starts processes and waits for workers, which no
event loop should wait on. ``with`` is refused (TypeError naming ``async
with``), and so is reading its attributes before it has started.

Depends on cluster.py (the LocalCluster it extends) and _async.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from ._async import Eager, StartsOnAwait
from ._future import in_blocking_call
from .cluster import LocalCluster


class AsyncLocalCluster(StartsOnAwait, LocalCluster):
    """What ``LocalCluster(..., asynchronous=True)`` makes (see the
    module's docstring); the arguments are those of LocalCluster."""

    _noun = "LocalCluster"

    def __init__(self, *args: Any, asynchronous: bool = True, **kwargs: Any) -> None:
        self._start_args = (args, kwargs)
        self._start_lock = threading.Lock()
        self._starting = None

    def __getattr__(self, name: str) -> Any:
        # Only for attributes not set (yet): LocalCluster sets them as it starts.
        if name.startswith("__") or "_starting" not in self.__dict__:
            raise AttributeError(name)
        raise AttributeError(
            f"LocalCluster(asynchronous=True) has no {name!r} before it has started: "
            "`await` it (cluster = await LocalCluster(..., asynchronous=True)) or use "
            "`async with LocalCluster(..., asynchronous=True) as cluster:`"
        )

    def _begin(self) -> Eager:
        args, kwargs = self._start_args
        return Eager(LocalCluster.__init__, self, *args, **kwargs)

    async def __aenter__(self) -> AsyncLocalCluster:
        return await self

    def _now_or_eager(self, blocking: Any, *args: Any, **kwargs: Any) -> Any:
        # LocalCluster's own code (starting, stopping, a client's call in
        # its thread) calls these and needs their results: it runs them as
        # they are.
        if in_blocking_call():
            return blocking(self, *args, **kwargs)
        if not self._started():
            self.__getattr__(blocking.__name__)  # raises: not started
        return Eager(blocking, self, *args, **kwargs)

    def scale(self, n: int) -> Any:
        """Set the number of workers; awaitable (done when they are)."""
        return self._now_or_eager(LocalCluster.scale, n)

    def adapt(self, minimum: int | None = 0, maximum: int | None = None, **kwargs: Any) -> Any:
        """Adaptive scaling, as LocalCluster.adapt; awaitable."""
        return self._now_or_eager(LocalCluster.adapt, minimum, maximum, **kwargs)

    def wait_for_workers(self, n: int | None = None, timeout: float | None = None) -> Any:
        """Awaitable: done once `n` (default: all) workers are connected."""
        return self._now_or_eager(LocalCluster.wait_for_workers, n, timeout)

    def status(self) -> Any:
        """Awaitable: the cluster's workers and task counts."""
        return self._now_or_eager(LocalCluster.status)

    def close(self, timeout: float = 15.0) -> Any:
        """Stop workers and the scheduler; awaitable (a cluster still
        starting is stopped once started). Without an event loop running
        in this thread (at exit, on collection), it stops at once."""
        if in_blocking_call():
            return LocalCluster.close(self, timeout)
        starting = self._starting

        def stop() -> None:
            if starting is None:
                return
            try:
                starting.wait()
            except Exception:  # noqa: BLE001 - it never started: nothing to stop
                return
            LocalCluster.close(self, timeout)

        return Eager(stop, here=not _loop_running())

    def __del__(self) -> None:
        starting = self.__dict__.get("_starting")
        if starting is not None and starting.succeeded():
            with contextlib.suppress(Exception):  # a finalizer must not raise
                LocalCluster.close(self, timeout=5)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
