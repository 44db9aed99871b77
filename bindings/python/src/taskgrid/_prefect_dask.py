# SPDX-License-Identifier: Apache-2.0
"""prefect-dask's names on taskgrid: what ``taskgrid.prefect`` adds so that
``from prefect_dask import ...`` becomes ``from taskgrid.prefect import ...``
and nothing else changes.

* :func:`resolve_cluster_class`: ``cluster_class`` as prefect-dask takes it
  (a class, a factory, or a qualified name), for taskgrid's cluster
  classes and any object with the cluster interface (``scheduler_address``,
  ``close``, ``scale``, ``adapt``); a Dask cluster class is refused with
  the taskgrid class to use instead.
* :func:`get_dask_client` / :func:`get_async_dask_client`: prefect-dask's
  context managers, with its signatures (``timeout=None, **client_kwargs``).
* :func:`performance_report_for`: prefect-dask's ``performance_report_path``,
  through ``taskgrid.performance_report`` when this installation has it.

Depends on client.py and cluster.py; Prefect only for its run contexts.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from . import _context, _future
from ._future import set_default
from .client import Client, get_client
from .cluster import LocalCluster

# Top-level modules of Dask's cluster managers, and what to use instead.
_DASK_MODULES = {
    "distributed": "taskgrid.LocalCluster (the same options: n_workers, threads_per_worker, "
    "processes, resources, memory_limit, ...), or address= of a running taskgrid-scheduler",
    "dask": "taskgrid.LocalCluster",
    "dask_jobqueue": "taskgrid.SLURMCluster for Slurm (dask-jobqueue's options: cores, memory, "
    "processes, queue, account, walltime, job_extra_directives, ...); for other batch "
    "systems start taskgrid-worker processes in their jobs and pass address='tcp://host:port'",
}
_ENGINES = (
    "dask_kubernetes",
    "dask_cloudprovider",
    "dask_gateway",
    "dask_yarn",
    "dask_mpi",
    "coiled",
)
_ELSEWHERE = (
    "taskgrid has no cluster class for {engine} yet: start taskgrid-scheduler and "
    "taskgrid-worker processes there and pass address='tcp://host:port' (with "
    "client_kwargs={{'security': ...}}), or pass a cluster object of your own with "
    "scheduler_address, close, scale and adapt"
)
INTERFACE = ("scheduler_address", "close", "scale", "adapt")


def _dask_origin(obj: Any) -> str | None:
    """The Dask package a cluster class or its name comes from, if any."""
    if isinstance(obj, str):
        module = obj
    else:
        module = getattr(obj, "__module__", "") or ""
        deploy = sys.modules.get("distributed.deploy.cluster")
        base = getattr(deploy, "Cluster", None)
        if isinstance(obj, type) and base is not None and issubclass(obj, base):
            return "distributed"
    top = module.split(".", 1)[0]
    return top if top in _DASK_MODULES or top in _ENGINES else None


def _refuse_dask(cluster_class: Any, origin: str) -> ValueError:
    name = cluster_class if isinstance(cluster_class, str) else _qualified(cluster_class)
    use = _DASK_MODULES.get(origin) or _ELSEWHERE.format(engine=origin)
    if name.endswith("SSHCluster"):
        use = "taskgrid.SSHCluster (the same hosts, connect_options, worker_options, ...)"
    return ValueError(
        f"cluster_class {name} is a Dask cluster class: taskgrid runs its own scheduler "
        f"and workers, so it cannot use Dask's; use {use}"
    )


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def resolve_cluster_class(cluster_class: Any) -> Callable[..., Any] | None:
    """What ``cluster_class`` names: None, taskgrid's cluster classes (or
    their names, e.g. ``"taskgrid.LocalCluster"``), any class with the
    cluster interface, or a factory (its product is checked when made).
    A Dask cluster class, or its name, raises ValueError saying which
    taskgrid class to use; a name that does not import raises naming it."""
    if cluster_class is None:
        return None
    origin = _dask_origin(cluster_class)
    if origin is not None:
        raise _refuse_dask(cluster_class, origin)
    if isinstance(cluster_class, str):
        from prefect.utilities.importtools import from_qualified_name

        try:
            resolved = from_qualified_name(cluster_class)
        except (ImportError, AttributeError, ValueError) as e:
            raise ValueError(f"cluster_class {cluster_class!r} cannot be imported: {e}") from e
        origin = _dask_origin(resolved)
        if origin is not None:
            raise _refuse_dask(cluster_class, origin)
    else:
        resolved = cluster_class
    if not callable(resolved):
        raise TypeError(
            f"cluster_class must be a cluster class, a function making a cluster, or "
            f"the qualified name of one, not {resolved!r}"
        )
    if isinstance(resolved, type):
        missing = [a for a in INTERFACE if not hasattr(resolved, a)]
        if missing:
            raise TypeError(
                f"cluster_class {_qualified(resolved)} lacks {', '.join(missing)}: a cluster "
                "class needs scheduler_address, close, scale and adapt "
                "(e.g. taskgrid.LocalCluster)"
            )
    made: Callable[..., Any] = resolved
    return made


def check_cluster(cluster: Any, made_by: Any) -> Any:
    """The object a cluster_class factory made, checked for the interface."""
    origin = _dask_origin(type(cluster))
    if origin is not None:
        raise _refuse_dask(type(cluster), origin)
    missing = [a for a in ("scheduler_address", "close") if not hasattr(cluster, a)]
    if missing:
        with contextlib.suppress(Exception):  # do not leak what it started
            getattr(cluster, "close", lambda: None)()
        raise TypeError(
            f"cluster_class {_qualified(made_by)} made {type(cluster).__name__!r} object, "
            f"which lacks {', '.join(missing)}: a cluster needs scheduler_address, close, "
            "scale and adapt (e.g. taskgrid.LocalCluster)"
        )
    return cluster


def client_target(cluster: Any) -> tuple[Any, Any]:
    """What Client() takes for a cluster object, and its security."""
    security = getattr(cluster, "security", None)
    if isinstance(cluster, LocalCluster) or isinstance(getattr(cluster, "address", None), str):
        return cluster, security
    return cluster.scheduler_address, security


# ---------------------------------------------------------------------------
# performance_report_path
# ---------------------------------------------------------------------------


def performance_report_function() -> Callable[..., Any] | None:
    """``taskgrid.performance_report``, if this installation has it."""
    import taskgrid

    fn: Callable[..., Any] | None = getattr(taskgrid, "performance_report", None)
    return fn if callable(fn) else None


def check_performance_report(path: Any) -> None:
    """Refuse ``performance_report_path`` early where it cannot be honoured."""
    if path is None:
        return
    if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
        raise TypeError(f"performance_report_path must be a file path, not {path!r}")
    if performance_report_function() is None:
        raise NotImplementedError(
            "performance_report_path is not supported by this taskgrid installation: "
            "it has no taskgrid.performance_report to write the report"
        )


@contextlib.contextmanager
def performance_report_for(path: Any, client: Client) -> Iterator[None]:
    """The report to keep open while the flow's tasks run: of the runner's
    client, which is not the default one (``set_as_default=False``), so it
    is made the default while the report starts, as prefect-dask makes it
    the current one."""
    fn = performance_report_function()
    if fn is None:
        check_performance_report(path)  # raises
    assert fn is not None
    try:
        takes_client = "client" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_client = False
    report: contextlib.AbstractContextManager[Any] = (
        fn(filename=path, client=client) if takes_client else fn(filename=path)
    )
    with contextlib.ExitStack() as stack:
        before = _future._default
        set_default(client)
        try:
            stack.enter_context(report)
        finally:
            _future._default = before
        yield


# ---------------------------------------------------------------------------
# get_dask_client / get_async_dask_client
# ---------------------------------------------------------------------------


def _runner_client() -> Client | None:
    """In a flow run on a taskgrid runner, outside a task: its client."""
    from prefect.context import FlowRunContext, TaskRunContext

    if TaskRunContext.get() is not None:
        return None
    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None) if ctx else None
    client = getattr(runner, "client", None) if runner is not None else None
    return client if isinstance(client, Client) else None


@contextlib.contextmanager
def get_dask_client(timeout: Any = None, **client_kwargs: Any) -> Iterator[Client]:
    """prefect-dask's ``get_dask_client``: a client for Dask collections
    and futures from inside a task (or a flow).

    In a task on a taskgrid worker: the worker's client (while the task
    waits on what it submits it gives its slot back, so nested work
    cannot deadlock), and Dask collections computed in the block run on
    the cluster. In a flow run using the taskgrid runner: the runner's
    client. Elsewhere: a new :class:`taskgrid.Client` (a temporary local
    cluster unless ``address`` is given), closed at the end of the block.
    With ``client_kwargs`` a new client to the same scheduler is made
    with them, as prefect-dask does; ``timeout`` is its connection
    timeout (prefect-dask's: it has no effect on a client that is already
    connected).
    """
    shared = _shared_client()
    if shared is not None and not client_kwargs:
        yield shared
        return
    with _new_client(shared, timeout, client_kwargs) as client:
        yield client


def _new_client(shared: Client | None, timeout: Any, client_kwargs: dict[str, Any]) -> Client:
    """A client made with `client_kwargs`, to the scheduler of `shared` if any."""
    kwargs = dict(client_kwargs)
    kwargs.setdefault("set_as_default", False)
    if timeout is not None:
        kwargs["timeout"] = timeout
    address = kwargs.pop("address", None)
    if shared is not None and address is None:
        address = shared.address
        kwargs.setdefault("security", shared.security)
    return Client(address, **kwargs)


def _shared_client() -> Client | None:
    """The worker's client in a task, else the runner's in a flow run."""
    if _context.current_worker() is not None:
        return get_client()
    return _runner_client()


@contextlib.asynccontextmanager
async def get_async_dask_client(timeout: Any = None, **client_kwargs: Any) -> AsyncIterator[Any]:
    """prefect-dask's ``get_async_dask_client``: taskgrid's asynchronous
    client for ``async def`` tasks and flows, with prefect-dask's rules
    (:func:`taskgrid.prefect.get_async_taskgrid_client`)."""
    from ._prefect_async import get_async_taskgrid_client

    async with get_async_taskgrid_client(timeout=timeout, **client_kwargs) as client:
        yield client
