# SPDX-License-Identifier: Apache-2.0
"""The progress of a Prefect flow's task runs on taskgrid (the runner's
``progress`` option, see prefect.py).

Two ways to show it, chosen as command-line tools choose (pip, cargo,
docker): a live bar when a person watches, lines when nobody does.

* ``"bar"``: a tqdm bar on stderr, redrawn in place: what a person at a
  terminal wants. It is the default when stderr is a terminal.
* ``"log"``: a line through Prefect's logger, ``taskgrid: 7/10 tasks done,
  0 failed``, at most every ``interval`` seconds (default 5) and only when
  the figures changed, and a last one when the flow's task runs are done.
  The default elsewhere (CI, deployments, a worker's log): a redrawn bar
  would fill a log file with carriage returns, and each log line of a
  flow run is a record in Prefect's database, hence the rate limit.

The figures come from the futures the runner already follows, not from
Scheduler.Watch: a Prefect task run that fails still *finishes* as a
taskgrid task (its result is the Failed state), so only the flow process,
which holds those states, can count failures. A run whose final state
stays on a worker (a result over the inline limit) is counted as done
without being fetched: pulling every large result into the flow process
to look at it would cost far more than the bar is worth, and a failed
state is small (it travels inline). Depends on tqdm and the Future API.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from ._future import CANCELLED, ERROR, FINISHED, LOST, Future

__all__ = ["MODES", "RunProgress", "resolve_mode"]

MODES = ("auto", "bar", "log", "off")


def resolve_mode(option: str | bool | None) -> str:
    """The runner's ``progress`` option -> "bar", "log" or "off"."""
    if option is True or option == "auto":
        return "bar" if _stderr_is_terminal() else "log"
    if option is False or option is None or option == "off":
        return "off"
    if option in ("bar", "log"):
        return str(option)
    raise ValueError(f"progress must be one of {', '.join(MODES)} or a bool, not {option!r}")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def run_failed(future: Future) -> bool:
    """Whether a finished future's task run failed: the taskgrid task
    erred, was cancelled or lost (the run crashed), or it finished with a
    Failed or Crashed Prefect state."""
    if future.status in (ERROR, CANCELLED, LOST):
        return True
    if future.status != FINISHED or future._state.remote:
        return False  # left on its worker: not fetched (see the module's docstring)
    try:
        state = future.result()
    except Exception:  # noqa: BLE001 - a result that cannot be read is a failed run
        return True
    is_failed = getattr(state, "is_failed", None)
    is_crashed = getattr(state, "is_crashed", None)
    return bool((is_failed and is_failed()) or (is_crashed and is_crashed()))


class RunProgress:
    """Counts submitted and finished task runs and shows them (a bar or
    rate-limited log lines). Thread-safe: submissions come from the flow's
    thread, completions from the client's callback thread."""

    def __init__(self, mode: str, interval: float, logger: Any) -> None:
        if mode not in ("bar", "log"):
            raise ValueError(f"RunProgress shows a 'bar' or a 'log', not {mode!r}")
        self.mode = mode
        self.interval = interval
        self.logger = logger
        self.submitted = 0
        self.done = 0
        self.failed = 0
        self._lock = threading.Condition()
        self._logged: tuple[int, int, int] = (0, 0, 0)
        self._last_log = time.monotonic()
        self._bar: Any = None
        if mode == "bar":
            from tqdm.std import tqdm

            self._bar = tqdm(total=0, desc="taskgrid", unit="task", file=sys.stderr, leave=True)

    def line(self) -> str:
        return f"taskgrid: {self.done}/{self.submitted} tasks done, {self.failed} failed"

    def add(self) -> None:
        """One more task run submitted."""
        with self._lock:
            self.submitted += 1
            self._show(final=False)

    def finish(self, future: Future) -> None:
        """A submitted task run ended (a done callback: may block)."""
        failed = run_failed(future)
        with self._lock:
            self.done += 1
            self.failed += failed
            self._show(final=False)
            self._lock.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """The last figures (a final line, or the bar closed), once the
        done callbacks of runs already over have run (at most `timeout`
        seconds: they run on the client's callback thread)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.done < self.submitted and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            self._show(final=True)
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _show(self, final: bool) -> None:
        if self._bar is not None:
            self._bar.total = self.submitted
            self._bar.n = self.done
            if self.failed:
                self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        figures = (self.submitted, self.done, self.failed)
        if figures == self._logged or not self.submitted:
            return
        if final or now - self._last_log >= self.interval:
            self.logger.info(self.line())
            self._logged = figures
            self._last_log = now
