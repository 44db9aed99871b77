# SPDX-License-Identifier: Apache-2.0
"""The taskgrid Python worker.

Run it with ``python -m taskgrid.worker ADDRESS --nthreads N --resources
GPU=1 --preload my_functions`` (the flags of the C worker), or in-process
with ``Worker(address).start()``. Inside a task, :func:`get_task` gives the
running task (key, attempt, cancelled flag) and ``taskgrid.get_client()`` a
client to the same scheduler. :func:`register` names Python functions so
any client, in any language, can call them.
"""

from __future__ import annotations

from .. import _context
from .core import Worker, load_preload, parse_resources
from .executor import Task
from .registry import register

__all__ = ["Task", "Worker", "get_task", "load_preload", "parse_resources", "register"]


def get_task() -> Task | None:
    """The task this thread is running on a Python worker, or None."""
    return _context.current_task()
