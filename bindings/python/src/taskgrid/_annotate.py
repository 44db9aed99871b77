# SPDX-License-Identifier: Apache-2.0
"""taskgrid.annotate: scoped task annotations, like dask.annotate.

Annotations live in a ContextVar, so they follow the code that set them
across threads started with copied contexts and across asyncio tasks, and
never leak between threads. Nested scopes merge, the inner one winning per
field; explicit keyword arguments to submit/map win over any scope.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

_current: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "taskgrid_annotations", default=types.MappingProxyType({})
)

FIELDS = ("priority", "resources", "retries", "workers")


@contextlib.contextmanager
def annotate(
    priority: int | None = None,
    resources: Mapping[str, float] | None = None,
    retries: int | None = None,
    workers: Sequence[str] | None = None,
) -> Iterator[None]:
    """Annotate every task submitted inside the block.

    ``priority``: higher runs first (FIFO among equals); ``resources``:
    amounts the task holds while it runs, e.g. ``{"GPU": 1}`` (a worker
    declares capacities with ``--resources``); ``retries``: reruns after an
    error or a lost worker; ``workers``: names of workers allowed to run it.

    >>> with taskgrid.annotate(priority=10, resources={"GPU": 1}):
    ...     fut = client.submit(train, data)
    """
    new = dict(_current.get())
    for name, value in (
        ("priority", priority),
        ("resources", resources),
        ("retries", retries),
        ("workers", workers),
    ):
        if value is not None:
            new[name] = value
    token = _current.set(new)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Mapping[str, Any]:
    """The annotations in force here (read-only mapping)."""
    return _current.get()
