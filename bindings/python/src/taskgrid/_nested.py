# SPDX-License-Identifier: Apache-2.0
"""Dask's nested-work API inside a task: worker_client, secede, rejoin,
get_worker.

A task running on a Python worker holds one of the worker's slots
(threads). Waiting on futures through the worker-side client secedes
automatically (``_context.blocking``); these functions do it explicitly,
as ``distributed`` has them, for code written for Dask:

* :func:`secede` — the task stops counting against its worker's slots: a
  queued task runs in its place, and the scheduler hears of it
  (``WorkerMessage.secessions``) and may send one more task there.
* :func:`rejoin` — the task counts again: the scheduler is told at once,
  and the call blocks until a slot is free here (ahead of queued tasks).
* :func:`worker_client` — a client to the same scheduler for the length of
  a ``with`` block, seceded inside it.
* :func:`get_worker` — the worker running this task.

Seceding twice, or rejoining a task that did not secede, does nothing
(Dask raises or misbehaves there; a no-op composes with the automatic
secession of waits). A task may return while seceded: its result is
reported as usual, and it stops counting as seceded. Each of them outside
a task raises :class:`NotInTaskError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _context
from .client import Client, get_client
from .errors import NotInTaskError

if TYPE_CHECKING:
    from .worker.core import Worker


def _running(fn: str) -> tuple[Worker, Any]:
    worker = _context.current_worker()
    task = _context.current_task()
    if worker is None or task is None:
        raise NotInTaskError(
            f"taskgrid.{fn}() must be called from inside a task running on a "
            "taskgrid worker (this thread is not running one); outside a task, "
            "use a taskgrid.Client"
        )
    return worker, task


def get_worker() -> Worker:
    """The :class:`taskgrid.worker.Worker` running the current task.

    Its ``name``, ``nthreads``, ``resources``, ``address`` (the scheduler it
    is connected to) and ``data_address`` (where peers fetch the results it
    holds; None without a data service). Raises :class:`NotInTaskError`
    outside a task, as Dask's ``get_worker`` raises ``ValueError("No worker
    found")`` (NotInTaskError is a ValueError too).
    """
    return _running("get_worker")[0]


def secede() -> None:
    """Stop counting the current task against its worker's slots.

    Use it before waiting on something other than taskgrid futures (waits
    on those secede by themselves), or for a long-running task that should
    not hold a slot. The worker starts a queued task in its place, and the
    scheduler may send one more task to this worker. Does nothing if the
    task already seceded. Raises :class:`NotInTaskError` outside a task.
    """
    worker, task = _running("secede")
    worker.secede(task)


def rejoin() -> None:
    """Count the current task against its worker's slots again.

    Blocks until a slot is free on this worker (a rejoining task goes
    before queued ones). Does nothing if the task did not secede. Raises
    :class:`NotInTaskError` outside a task.
    """
    worker, task = _running("rejoin")
    worker.rejoin(task)


@contextlib.contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True) -> Iterator[Client]:
    """A client to the current task's scheduler, as Dask's worker_client.

    >>> def fib(n):
    ...     if n < 2:
    ...         return n
    ...     with taskgrid.worker_client() as c:
    ...         a, b = c.submit(fib, n - 1), c.submit(fib, n - 2)
    ...         return sum(c.gather([a, b]))

    The client is the worker's own (its scheduler and credentials, shared
    by its tasks; not closed on exit), and the tasks it submits are this
    task's children (cancelling it cancels them). With ``separate_thread``
    (the default) the task secedes for the block and rejoins on the way
    out, even when the block raises; without it, only waits on futures
    secede. ``timeout`` is accepted for compatibility with Dask, where it
    bounds connecting: the worker's client is already connected or
    connects on first use. Raises :class:`NotInTaskError` outside a task.
    """
    del timeout  # see the docstring
    worker, task = _running("worker_client")
    client = get_client()  # the worker's; Dask collections compute on it
    seceded = worker.secede(task) if separate_thread else False
    try:
        yield client
    finally:
        if seceded:
            worker.rejoin(task)
