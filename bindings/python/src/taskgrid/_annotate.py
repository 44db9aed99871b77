# SPDX-License-Identifier: Apache-2.0
"""taskgrid.annotate: scoped task annotations, like dask.annotate.

Annotations live in a ContextVar, so they follow the code that set them
across threads started with copied contexts and across asyncio tasks, and
never leak between threads. Nested scopes merge, the inner one winning per
field; explicit keyword arguments to submit/map win over any scope.

``dask.annotate`` blocks count too, when dask is in use: the innermost
block that sets a name wins, whichever kind it is (see
_options.merged_annotations). So each taskgrid block also records Dask's
annotations as they were when it was entered.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

_current: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "taskgrid_annotations", default=types.MappingProxyType({})
)
# Per name: Dask's annotations when the innermost block setting it began.
_dask_then: contextvars.ContextVar[Mapping[str, Mapping[str, Any]]] = contextvars.ContextVar(
    "taskgrid_annotations_dask", default=types.MappingProxyType({})
)

FIELDS = ("priority", "resources", "retries", "workers", "allow_other_workers")


@contextlib.contextmanager
def annotate(
    priority: int | None = None,
    resources: Mapping[str, float] | None = None,
    retries: int | None = None,
    workers: Sequence[str] | None = None,
    allow_other_workers: bool | None = None,
) -> Iterator[None]:
    """Annotate every task submitted inside the block.

    ``priority``: higher runs first (FIFO among equals); ``resources``:
    amounts the task holds while it runs, e.g. ``{"GPU": 1}`` (a worker
    declares capacities with ``--resources``); ``retries``: reruns after an
    error or a lost worker; ``workers``: names of workers allowed to run it;
    ``allow_other_workers=True``: as Dask's, ``workers`` binds only while
    one of them is connected (checked at submission).

    Blocks nest with each other and with ``dask.annotate`` blocks: for each
    name the innermost block setting it wins; explicit submit/map
    arguments win over every block.

    >>> with taskgrid.annotate(priority=10, resources={"GPU": 1}):
    ...     fut = client.submit(train, data)
    """
    new = dict(_current.get())
    then = dict(_dask_then.get())
    dask_now = _dask_annotations()
    for name, value in (
        ("priority", priority),
        ("resources", resources),
        ("retries", retries),
        ("workers", workers),
        ("allow_other_workers", allow_other_workers),
    ):
        if value is not None:
            new[name] = value
            then[name] = dask_now
    token = _current.set(new)
    token_then = _dask_then.set(then)
    try:
        yield
    finally:
        _dask_then.reset(token_then)
        _current.reset(token)


def _dask_annotations() -> Mapping[str, Any]:
    base = sys.modules.get("dask.base")
    got = base.get_annotations() if base is not None else None
    return got if isinstance(got, Mapping) else {}


def current() -> Mapping[str, Any]:
    """The taskgrid.annotate annotations in force here (read-only mapping)."""
    return _current.get()


def scopes() -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """Per name set by a taskgrid block in force: (its value, Dask's
    annotations when that block was entered)."""
    then = _dask_then.get()
    return {k: (v, then.get(k, {})) for k, v in _current.get().items()}
