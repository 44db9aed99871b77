# SPDX-License-Identifier: Apache-2.0
"""The process-wide I/O thread that runs every client's gRPC calls.

All clients of a process share one asyncio event loop on one daemon thread.
This is deliberate: grpc.aio with several event loops in one process (one
per client) is an order of magnitude slower than many channels on a single
loop (measured: 30k no-op tasks through 3 clients took ~40 s on 3 loops,
0.5 s on one). Callers on other threads hand work to it with
``call_soon``/``run``; the loop never runs user code (done callbacks go to
a separate thread, see _future.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class IOLoop:
    _instance: IOLoop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._pid = os.getpid()
        self.thread = threading.Thread(target=self._main, name="taskgrid-io", daemon=True)
        self.thread.start()
        self._ready.wait()

    @classmethod
    def get(cls) -> IOLoop:
        """The shared loop, started on first use (and anew after a fork)."""
        inst = cls._instance
        if inst is not None and inst._pid == os.getpid() and inst.thread.is_alive():
            return inst
        with cls._lock:
            inst = cls._instance
            if inst is None or inst._pid != os.getpid() or not inst.thread.is_alive():
                inst = cls()
                cls._instance = inst
            return inst

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def in_loop(self) -> bool:
        return threading.current_thread() is self.thread

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the loop thread (thread-safe, non-blocking)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `coro` on the loop from any thread; returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result (not from the loop)."""
        if self.in_loop():
            raise RuntimeError(
                "a blocking taskgrid call was made on taskgrid's I/O thread "
                "(from a done callback?); it would wait for itself"
            )
        return self.spawn(coro).result(timeout)
