# SPDX-License-Identifier: Apache-2.0
"""Which worker and task the current thread is running, if any.

The Python worker sets these around each task. The client uses them for
``get_client()`` (a client bound to the worker's scheduler and credentials)
and to *secede* while a task blocks on nested futures: the task gives its
executor slot back and takes it again after (rejoin), so nested work can
never deadlock a full pool. Kept free of imports from the rest of the
package so both sides can use it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_local = threading.local()
# The worker of this process when it runs as `python -m taskgrid.worker`
# (threads a task starts itself are not task threads, but get_client()
# should still find the worker's scheduler).
process_worker: Any | None = None


def set_current(worker: Any, task: Any) -> None:
    _local.worker = worker
    _local.task = task


def clear_current() -> None:
    _local.worker = None
    _local.task = None


def current_worker() -> Any | None:
    return getattr(_local, "worker", None)


def current_task() -> Any | None:
    return getattr(_local, "task", None)


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Around a blocking wait: secede from the worker's pool if in a task."""
    worker = getattr(_local, "worker", None)
    task = getattr(_local, "task", None)
    if worker is None or task is None:
        yield
        return
    seceded = worker.secede(task)
    try:
        yield
    finally:
        if seceded:
            worker.rejoin(task)
