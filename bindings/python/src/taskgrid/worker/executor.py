# SPDX-License-Identifier: Apache-2.0
"""The Python worker's task pool: slots, a priority queue, secede/rejoin.

Mirrors the C worker's executor: ``nslots`` tasks run at once; queued tasks
wait in a heap (higher priority first, FIFO among equals); a thread that
finishes a task takes the next one itself, without a wake-up. A task that
blocks on nested futures *secedes* (gives its slot back, and a thread is
started if needed to use it) and *rejoins* after, ahead of queued tasks.
Cancelling a queued task drops it; a running one only sees its
``cancelled`` flag (Python threads cannot be interrupted) and its result is
not reported.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable
from typing import Any, Callable


class Task:
    """One assignment on this worker; ``get_task()`` returns it in a task.

    Attributes: ``key``, ``attempt`` (1 for the first run), ``priority``,
    ``cancelled`` (True once the scheduler cancelled it: long tasks may
    check it and return early).
    """

    __slots__ = (
        "assignment",
        "attempt",
        "cancelled",
        "dropped",
        "holds_slot",
        "key",
        "priority",
        "session",
    )

    def __init__(self, assignment: Any, session: int) -> None:
        self.assignment = assignment
        self.key: str = assignment.key
        self.priority: int = assignment.priority
        self.attempt: int = assignment.attempt
        self.session = session
        self.cancelled = False
        self.dropped = False
        self.holds_slot = False

    def __repr__(self) -> str:
        return f"<taskgrid task {self.key!r} attempt {self.attempt}>"


class Executor:
    def __init__(
        self, nslots: int, run: Callable[[Task], None], name: str = "taskgrid-task"
    ) -> None:
        if nslots < 1:
            raise ValueError("a worker needs at least one thread")
        self.nslots = nslots
        self._run = run
        self._name = name
        self._mu = threading.Lock()
        self._work = threading.Condition(self._mu)
        self._slot = threading.Condition(self._mu)
        self._idle_cv = threading.Condition(self._mu)
        self._heap: list[tuple[int, int, Task]] = []
        self._seq = itertools.count()
        self._queued: dict[str, Task] = {}
        self._running: set[Task] = set()
        self._active = 0  # tasks holding a slot
        self._nrejoin = 0
        self._idle = 0
        self._starting = 0
        self._nthreads = 0
        self._stop = False

    # -- queue --------------------------------------------------------------

    def submit(self, tasks: Iterable[Task]) -> None:
        with self._mu:
            for t in tasks:
                old = self._queued.get(t.key)
                if old is not None:  # re-assigned after a cancel: newest wins
                    old.dropped = True
                self._queued[t.key] = t
                heapq.heappush(self._heap, (-t.priority, next(self._seq), t))
            self._dispatch()

    def _free(self) -> int:
        return self.nslots - self._active - self._nrejoin

    def _dispatch(self) -> None:
        # Under the lock: wake or start enough threads for the free slots.
        want = min(len(self._queued), self._free())
        if want <= 0:
            return
        if self._idle:
            self._work.notify(min(want, self._idle))
        missing = want - self._idle - self._starting
        for _ in range(max(0, missing)):
            self._starting += 1
            self._nthreads += 1
            threading.Thread(
                target=self._main, name=f"{self._name}-{self._nthreads}", daemon=True
            ).start()

    def _main(self) -> None:
        mu = self._mu
        with mu:
            self._starting -= 1
        while True:
            with mu:
                while True:
                    if self._stop:
                        self._nthreads -= 1
                        return
                    if self._heap and self._free() > 0:
                        t = heapq.heappop(self._heap)[2]
                        if t.dropped:
                            continue
                        del self._queued[t.key]
                        self._active += 1
                        t.holds_slot = True
                        self._running.add(t)
                        break
                    self._idle += 1
                    self._work.wait()
                    self._idle -= 1
            try:
                self._run(t)
            finally:
                with mu:
                    self._running.discard(t)
                    if t.holds_slot:
                        t.holds_slot = False
                        self._active -= 1
                        if self._nrejoin:
                            self._slot.notify()
                    if not self._running and not self._queued:
                        self._idle_cv.notify_all()

    # -- secede / rejoin ----------------------------------------------------

    def secede(self, t: Task) -> bool:
        with self._mu:
            if not t.holds_slot:
                return False
            t.holds_slot = False
            self._active -= 1
            if self._nrejoin:
                self._slot.notify()
            else:
                self._dispatch()
            return True

    def rejoin(self, t: Task) -> None:
        with self._mu:
            if t.holds_slot:  # did not secede: it has its slot
                return
            self._nrejoin += 1
            while self._active >= self.nslots and not self._stop:
                self._slot.wait()
            self._nrejoin -= 1
            self._active += 1
            t.holds_slot = True

    # -- cancel / stop ------------------------------------------------------

    def cancel(self, key: str) -> int:
        """Drop a queued task or flag a running one; returns how many."""
        n = 0
        with self._mu:
            t = self._queued.pop(key, None)
            if t is not None:
                t.dropped = t.cancelled = True
                n += 1
            for t in self._running:
                if t.key == key and not t.cancelled:
                    t.cancelled = True
                    n += 1
            if not self._running and not self._queued:
                self._idle_cv.notify_all()
        return n

    def steal(self, key: str) -> bool:
        """Remove `key` if it is still queued (work stealing); True if so."""
        with self._mu:
            t = self._queued.pop(key, None)
            if t is None:
                return False
            t.dropped = True
            if not self._running and not self._queued:
                self._idle_cv.notify_all()
            return True

    def take_queued(self) -> list[Task]:
        """Remove and return every queued task (to hand back unstarted)."""
        with self._mu:
            tasks = [t for t in self._queued.values() if not t.dropped]
            for t in tasks:
                t.dropped = True
            self._queued.clear()
            self._heap.clear()
            if not self._running:
                self._idle_cv.notify_all()
            return tasks

    def cancel_all(self) -> None:
        with self._mu:
            for t in self._queued.values():
                t.dropped = t.cancelled = True
            self._queued.clear()
            self._heap.clear()
            for t in self._running:
                t.cancelled = True
            if not self._running:
                self._idle_cv.notify_all()

    def counts(self) -> tuple[int, int]:
        """(queued, running)."""
        with self._mu:
            return len(self._queued), len(self._running)

    def idle(self) -> bool:
        with self._mu:
            return not self._queued and not self._running

    def wait_idle(self, timeout: float | None) -> bool:
        with self._mu:
            return self._idle_cv.wait_for(lambda: not self._queued and not self._running, timeout)

    def stop(self) -> None:
        with self._mu:
            self._stop = True
            self._work.notify_all()
            self._slot.notify_all()
