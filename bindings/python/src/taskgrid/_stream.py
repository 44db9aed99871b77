# SPDX-License-Identifier: Apache-2.0
"""The task stream of a client (Client.get_task_stream, performance_report).

A recorder follows the scheduler's Watch stream (every task, with task
events; on a TLS cluster that needs the admin role) in a thread and keeps,
for each run that ended (memory or erred, from a worker), one entry in
Dask's task-stream shape: ``key``, ``worker``, ``status``, ``nbytes``,
``startstops``. A run's stop is when the scheduler saw its end and its
start that less the run time the worker measured. At most MAX_ENTRIES are
kept (the oldest go first), as Dask's plugin keeps a bounded buffer.

Against a scheduler without Watch (UNIMPLEMENTED) it records, instead,
the runs of this client's own tasks as their results reach it (each
TaskResult names its worker and run time): a run's stop is then when the
client heard of it, and tasks of other clients are not seen.
"""

from __future__ import annotations

import collections
import contextlib
import re
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._rpc import pb

if TYPE_CHECKING:
    from .client import Client

MAX_ENTRIES = 100_000
_AGO = re.compile(r"^\s*([0-9.]+)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _when(t: float | str | None) -> float | None:
    """A bound as seconds since the epoch ("10s": ten seconds ago)."""
    if t is None or isinstance(t, (int, float)):
        return t
    m = _AGO.match(t)
    if m is None:
        raise ValueError(f"expected seconds since the epoch or a duration such as '10s', got {t!r}")
    return time.time() - float(m.group(1)) * _UNITS[m.group(2)]


def entry(
    key: str, worker: str, ok: bool, stop: float, run_time: float, nbytes: int
) -> dict[str, Any]:
    """One task-stream entry, in Dask's shape."""
    return {
        "key": key,
        "worker": worker,
        "status": "OK" if ok else "error",
        "nbytes": nbytes,
        "thread": None,
        "type": None,
        "typename": None,
        "metadata": {},
        "startstops": ({"action": "compute", "start": stop - run_time, "stop": stop},),
    }


class TaskStreamRecorder:
    """Records a client's task stream while at least one user holds it."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_ENTRIES)
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._watch: Any = None
        self._polling = False  # no Watch: the client's results instead
        self._last = 0.0  # when the stream last delivered an update

    # -- life -----------------------------------------------------------------

    def acquire(self) -> None:
        """One more user; the first starts recording."""
        with self._lock:
            self._users += 1
            if self._thread is not None:
                return
            self._stop.clear()
            try:
                self._watch = self._client.watch(
                    key_prefixes=[""], task_events=True, interval=0.05, reconnect=0
                )
            except (NotImplementedError, PermissionError):
                self._watch = None
            self._polling = self._watch is None
            self._last = 0.0
            self._thread = threading.Thread(
                target=self._run, name="taskgrid-task-stream", daemon=True
            )
            self._thread.start()

    def release(self) -> None:
        """One user fewer; the last stops recording (entries stay)."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
            if self._watch is not None:
                with contextlib.suppress(Exception):
                    self._watch.close()
        thread.join(timeout=5)

    def flush(self, timeout: float = 2.0) -> None:
        """Let what already happened arrive: an update of the stream newer
        than the call (at most `timeout` s). Without Watch, results are
        recorded before the client sees them: nothing to wait for."""
        asked = time.time()
        deadline = time.monotonic() + timeout
        while not self._polling and self._last < asked + 0.06 and time.monotonic() < deadline:
            if self._stop.is_set():
                return
            time.sleep(0.02)

    # -- recording ------------------------------------------------------------

    def _run(self) -> None:
        if self._watch is None:
            return
        try:
            for update in self._watch:
                self._last = time.time()
                for ev in update.tasks:
                    if (
                        ev.state in ("memory", "erred")
                        and ev.worker
                        and ev.previous == "processing"
                    ):
                        self._add(
                            entry(
                                ev.key,
                                ev.worker,
                                ev.state == "memory",
                                ev.time,
                                ev.run_time,
                                ev.nbytes,
                            )
                        )
                if self._stop.is_set():
                    return
        except NotImplementedError:
            self._polling = True
        except Exception:  # noqa: BLE001 - a closed client or stream ends recording
            if not self._stop.is_set():
                self._polling = True

    def on_results(self, results: Iterable[pb.TaskResult]) -> None:
        """The client's results as they arrive (used without Watch)."""
        if not self._polling or self._users <= 0:
            return
        now = time.time()
        for r in results:
            if r.worker and r.state in (pb.TASK_STATE_MEMORY, pb.TASK_STATE_ERRED):
                self._add(
                    entry(
                        r.key,
                        r.worker,
                        r.state == pb.TASK_STATE_MEMORY,
                        now,
                        r.run_us / 1e6,
                        r.size,
                    )
                )

    def _add(self, e: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(e)

    def entries(
        self, start: float | str | None, stop: float | str | None, count: int | None
    ) -> list[dict[str, Any]]:
        """The entries whose run ended within [start, stop], the last `count`."""
        lo, hi = _when(start), _when(stop)
        with self._lock:
            out = [
                e
                for e in self._entries
                if (lo is None or e["startstops"][0]["stop"] >= lo)
                and (hi is None or e["startstops"][0]["stop"] <= hi)
            ]
        return out[-count:] if count else out
