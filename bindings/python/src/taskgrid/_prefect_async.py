# SPDX-License-Identifier: Apache-2.0
"""get_async_taskgrid_client: an asynchronous client inside Prefect code.

The counterpart of prefect-dask's ``get_async_dask_client``, with its
signature and rules:

* in a task run: a new client to the scheduler of the worker running it
  (with the worker's credentials), asynchronous if the task is an ``async
  def``; it is not made the process's default client (it belongs to the
  task);
* in a flow run: a new client to the flow's TaskgridTaskRunner cluster,
  with the runner's ``client_kwargs``, asynchronous if the flow is;
* elsewhere: ``Client(asynchronous=True)`` (a temporary local cluster),
  so the code can be tried without Prefect running it.

``timeout`` (seconds, a timedelta, or a Dask string such as ``"120s"``)
bounds the connection; other keyword arguments go to :class:`Client` and
win over the inherited ones. The client is closed when the block ends. A
synchronous client (a synchronous task or flow) is opened and closed in a
thread, so the caller's event loop never blocks on it.

Depends on client.py, _async.py and Prefect's contexts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any

from ._async import AsyncClient
from .client import Client, get_client


def parse_timeout(timeout: float | str | datetime.timedelta | None) -> float | None:
    """Seconds from a number, a timedelta or a Dask-style string ("120s",
    "2 minutes"); None stays None."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    if isinstance(timeout, str):
        try:
            return float(timeout)
        except ValueError:
            pass
        try:
            from dask.utils import parse_timedelta
        except ImportError:
            pass  # numbers only, then
        else:
            with contextlib.suppress(ValueError, KeyError):
                return float(parse_timedelta(timeout, default="s"))
    raise ValueError(
        f"timeout must be seconds, a timedelta or a string such as '120s', not {timeout!r}"
    )


def client_kwargs(async_client: bool, timeout: Any = None, **overrides: Any) -> dict[str, Any]:
    """The Client arguments for the current Prefect context (see above)."""
    from prefect.context import FlowRunContext, TaskRunContext

    flow_run = FlowRunContext.get()
    task_run = TaskRunContext.get()
    kwargs: dict[str, Any] = {}
    if task_run:
        worker_client = get_client()
        kwargs["address"] = worker_client.address
        kwargs["security"] = worker_client.security
        kwargs["set_as_default"] = False
        asynchronous = bool(task_run.task.isasync)
    elif flow_run:
        runner = flow_run.task_runner
        if not hasattr(runner, "client_kwargs") or not hasattr(runner, "client"):
            raise RuntimeError(
                f"get_async_taskgrid_client() in a flow run needs the flow's task runner "
                f"to be a TaskgridTaskRunner, not {type(runner).__name__}"
            )
        kwargs.update(runner.client_kwargs or {})
        runner_client = runner.client
        kwargs["address"] = runner_client.address
        kwargs.setdefault("security", runner_client.security)
        asynchronous = bool(flow_run.flow is not None and flow_run.flow.isasync)
    else:
        kwargs["address"] = None
        asynchronous = async_client
    kwargs["asynchronous"] = asynchronous
    seconds = parse_timeout(timeout)
    if seconds is not None:
        kwargs["timeout"] = seconds
    kwargs.update(overrides)
    return kwargs


@contextlib.asynccontextmanager
async def get_async_taskgrid_client(
    timeout: float | str | datetime.timedelta | None = None, **client_kwargs_: Any
) -> AsyncIterator[Client]:
    """An asynchronous client for the current task or flow run (like
    prefect-dask's ``get_async_dask_client``), closed when the block ends::

        @task
        async def total(n):
            async with get_async_taskgrid_client() as client:
                return sum(await client.gather(client.map(inc, range(n))))
    """
    kwargs = client_kwargs(True, timeout, **client_kwargs_)
    if kwargs.pop("asynchronous"):
        async with AsyncClient(**kwargs) as client:
            yield client
        return
    # A synchronous task or flow (as prefect-dask gives it): a blocking
    # client, opened and closed in a thread.
    sync_client = await asyncio.to_thread(Client, **kwargs)
    try:
        yield sync_client
    finally:
        await asyncio.to_thread(sync_client.close)
