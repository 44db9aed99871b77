# SPDX-License-Identifier: Apache-2.0
"""TaskgridTaskRunner: run Prefect 3 tasks on taskgrid.

A drop-in for prefect-dask's ``DaskTaskRunner`` — same parameters, same
behaviour. This module also exports prefect-dask's names with its
signatures (``DaskTaskRunner``, ``get_dask_client``,
``get_async_dask_client``; see _prefect_dask.py), so switching is one
import line::

    from prefect_dask import DaskTaskRunner, get_dask_client
    # becomes
    from taskgrid.prefect import DaskTaskRunner, get_dask_client

* By default a temporary :class:`taskgrid.LocalCluster` is started when the
  first task is submitted (the client is lazy) and torn down with the flow
  run; ``address`` connects to an existing scheduler instead;
  ``cluster_class``/``cluster_kwargs`` choose and configure the temporary
  cluster, ``adapt_kwargs`` ask it to scale adaptively, ``client_kwargs``
  go to :class:`taskgrid.Client` (e.g. ``{"security": ...}``).
* Each task run executes Prefect's own task engine on a worker, so states,
  logs, retries and results are Prefect's, visible in the UI/API. The
  runner passes the flow's API URL along when the flow uses a temporary
  (ephemeral) API server, so worker processes report to the same one.
* Futures passed between tasks (as parameters or ``wait_for``) become
  taskgrid dependencies: upstream results go from worker to worker through
  the scheduler, never through the flow process.
* ``taskgrid.annotate(...)`` and ``dask.annotate(...)`` blocks around
  ``.submit()`` apply to those task runs (priority, resources, retries,
  workers, allow_other_workers; the innermost block wins per name); the
  runner never overrides them.
* ``cluster_class`` takes taskgrid's cluster classes (or their names,
  ``"taskgrid.LocalCluster"``, ``"taskgrid.SSHCluster"``,
  ``"taskgrid.SLURMCluster"`` for workers in Slurm jobs) and any cluster
  object with
  ``scheduler_address``, ``close``, ``scale`` and ``adapt``; a Dask cluster
  class is refused with the taskgrid class to use.
* When the flow ends normally, tasks still running are waited for before
  the cluster is torn down (submitted work is not lost); when it fails they
  are cancelled.
* ``progress`` shows how many task runs are done and failed: a tqdm bar on
  a terminal, else a line through Prefect's logger at most every
  ``progress_interval`` seconds (see _runprogress.py for why).

Inside a task, :func:`get_taskgrid_client` (or ``taskgrid.get_client()``)
gives a client to the same cluster for nested work, like prefect-dask's
``get_dask_client``; ``async with get_async_taskgrid_client() as client``
an asynchronous one, like ``get_async_dask_client`` (_prefect_async.py).
``async def`` tasks run on the workers in an event loop of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    TypeVar,
    cast,
)

from prefect.client.schemas.objects import RunInput, State
from prefect.futures import PrefectFuture, PrefectFutureList, PrefectWrappedFuture
from prefect.task_runners import TaskRunner
from prefect.utilities.collections import visit_collection
from prefect.utilities.importtools import to_qualified_name

from . import _context
from ._future import _Listener
from ._prefect_async import get_async_taskgrid_client
from ._prefect_dask import (
    check_cluster,
    check_performance_report,
    client_target,
    get_async_dask_client,
    get_dask_client,
    performance_report_for,
    resolve_cluster_class,
)
from ._runprogress import RunProgress, resolve_mode
from .client import Client, Future, get_client
from .cluster import LocalCluster

if TYPE_CHECKING:
    from prefect.tasks import Task

R = TypeVar("R")

__all__ = [
    "DaskTaskRunner",
    "PrefectTaskgridFuture",
    "TaskgridTaskRunner",
    "get_async_dask_client",
    "get_async_taskgrid_client",
    "get_dask_client",
    "get_taskgrid_client",
]


class PrefectTaskgridFuture(PrefectWrappedFuture[R, Future]):
    """A Prefect future wrapping a :class:`taskgrid.Future` (whose result is
    the task run's final Prefect State)."""

    def wait(self, timeout: float | None = None) -> None:
        if self._final_state:
            return
        try:
            result = self._wrapped_future.result(timeout=timeout)
        except TimeoutError:
            return
        except BaseException as exc:  # noqa: BLE001 - becomes a Crashed state
            self._final_state = _crashed(exc)
            return
        if isinstance(result, State):
            self._final_state = result

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        if not self._final_state:
            try:
                result = self._wrapped_future.result(timeout=timeout)
            except TimeoutError as exc:
                raise TimeoutError(
                    f"Task run {self.task_run_id} did not complete within {timeout} seconds"
                ) from exc
            if not isinstance(result, State):
                return cast(R, result)
            self._final_state = result
        # `_sync` is consumed by Prefect's async_dispatch decorator, which the
        # overloads of State.result do not show (prefect's own futures pass it).
        value = self._final_state.result(  # type: ignore[call-overload]
            raise_on_failure=raise_on_failure, _sync=True
        )
        return cast(R, value)


def _crashed(exc: BaseException) -> State:
    from prefect.states import exception_to_crashed_state
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(exception_to_crashed_state(exc))


def _run_prefect_task(
    task: Task[Any, Any],
    task_run_id: Any,
    parameters: dict[str, Any],
    wait_for: Any,
    dependencies: Any,
    context: dict[str, Any],
    settings_token: str = "",
) -> Any:
    """What a taskgrid worker runs for one Prefect task run: Prefect's engine.

    Upstream taskgrid futures in `parameters`/`wait_for` have already been
    replaced by their results (final States), which the engine resolves.
    """
    from prefect.task_engine import run_task_async, run_task_sync

    _adopt_api_url(context)
    _reuse_settings(context, settings_token)
    kwargs = {
        "task": task,
        "task_run_id": task_run_id,
        "parameters": parameters,
        "wait_for": wait_for,
        "return_type": "state",
        "dependencies": dependencies,
        "context": context,
    }
    try:
        if task.isasync:
            return asyncio.run(run_task_async(**kwargs))
        return run_task_sync(**kwargs)
    finally:
        _flush_events()


_adopt_lock = threading.Lock()
_settings_cache: dict[str, dict[str, Any]] = {}


def _reuse_settings(context: dict[str, Any], token: str) -> None:
    """Hand Prefect ready-made settings instead of a dict to validate.

    Prefect rebuilds its Settings from the serialized dict for every task
    run, and pydantic-settings re-reads the environment and .env files to do
    so (~0.8 s on a small machine). The settings of a flow run do not change,
    and the runner names them with a token: build them once per process.
    """
    serialized = context.get("settings_context") if token else None
    if not serialized:
        return
    with _adopt_lock:
        ready = _settings_cache.get(token)
        if ready is None:
            from prefect.context import SettingsContext

            built = SettingsContext(**serialized)
            ready = {"profile": built.profile, "settings": built.settings}
            if len(_settings_cache) > 64:
                _settings_cache.clear()
            _settings_cache[token] = ready
    context["settings_context"] = ready
    _reuse_client(ready)


_thread = threading.local()


def _reuse_client(ready: dict[str, Any]) -> None:
    """One Prefect API client per worker thread instead of two per task run.

    Prefect's engine looks for a client in SyncClientContext and otherwise
    makes new ones (with a fresh SSL context, ~65 ms each). Task runs on one
    thread run one after another, so a context entered once per thread (per
    API URL) and left entered serves them all.
    """
    from prefect.context import SettingsContext, SyncClientContext

    url = str(ready["settings"].api.url or "")
    if not url:
        return
    current = getattr(_thread, "client_ctx", None)
    if current is not None and _thread.url == url and SyncClientContext.get() is current:
        return
    with SettingsContext(**ready):
        ctx = SyncClientContext()
        ctx.__enter__()  # stays entered: this thread's client from now on
    _thread.client_ctx, _thread.url = ctx, url


def _adopt_api_url(context: dict[str, Any]) -> None:
    """Point this worker process's Prefect at the flow's API, if it has none.

    The task engine itself uses the settings carried in `context`, but
    Prefect's background threads (events, logs) read the process-wide
    settings; without an API URL they would start a private temporary
    server and the task runs would not appear in the flow's API.
    """
    import os

    try:
        url = context["settings_context"]["settings"]["api"]["url"]
    except (KeyError, TypeError):
        return
    if not url or os.environ.get("PREFECT_API_URL") or _context.process_worker is None:
        return  # configured already, or an in-process worker (the flow's own process)
    with _adopt_lock:
        if os.environ.get("PREFECT_API_URL"):
            return
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = str(url)
        refresh_global_settings_context()


def _flush_events() -> None:
    # Events (task run state changes) are sent in the background; a worker
    # process may be stopped soon after its last task, so send them now.
    try:
        from prefect.events.worker import EventsWorker

        # Class-level state that Prefect annotates on its generic base class.
        with EventsWorker._instance_lock:
            active = bool(EventsWorker._instances)  # type: ignore[misc]
        if active:
            EventsWorker.instance().wait_until_empty()
    except Exception:  # noqa: BLE001 - best effort, as in Prefect's own runners
        pass


def _cached_settings_class() -> Any:
    from prefect.context import SettingsContext
    from pydantic import PrivateAttr

    class _CachedSettings(SettingsContext):
        """A SettingsContext whose serialized form is computed once."""

        _serialized: dict[str, Any] = PrivateAttr(default_factory=dict)

        def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
            return self._serialized

    return _CachedSettings


_CachedSettings = _cached_settings_class()

_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.]+")


class TaskgridTaskRunner(TaskRunner[PrefectTaskgridFuture[Any]]):
    """A Prefect task runner that submits task runs to a taskgrid cluster.

    Args:
        cluster: a running cluster object (with ``.address``) to use.
        address: address of a running taskgrid scheduler
            (``tcp://host:port`` or ``tls://host:port``).
        cluster_class: class (or its qualified name, or a function making
            one) of the temporary cluster; default
            :class:`taskgrid.LocalCluster`. Any class with
            ``scheduler_address``, ``close``, ``scale`` and ``adapt`` does;
            a Dask cluster class raises ValueError naming the taskgrid one.
        cluster_kwargs: keyword arguments for ``cluster_class`` (e.g.
            ``n_workers``, ``threads_per_worker``, ``processes``,
            ``resources``).
        adapt_kwargs: ``minimum``/``maximum`` workers for adaptive scaling
            of the temporary cluster.
        client_kwargs: keyword arguments for :class:`taskgrid.Client`
            (e.g. ``security``, ``direct_to_workers``).
        performance_report_path: write ``taskgrid.performance_report`` of
            the flow run's tasks to this file (NotImplementedError when
            this installation has no performance_report).
        progress: show the task runs' progress: ``"auto"`` (the default:
            a bar on stderr when it is a terminal, else log lines),
            ``"bar"``, ``"log"``, or ``"off"`` (``True``/``False`` mean
            ``"auto"``/``"off"``).
        progress_interval: least seconds between two log lines (5).
    """

    def __init__(
        self,
        cluster: Any = None,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        performance_report_path: str | None = None,
        progress: str | bool = "auto",
        progress_interval: float = 5.0,
    ) -> None:
        resolve_mode(progress)  # a bad value fails here, not at the first task
        if not progress_interval > 0:
            raise ValueError(f"progress_interval must be positive, not {progress_interval!r}")
        if address:
            if cluster or cluster_class or cluster_kwargs or adapt_kwargs:
                raise ValueError(
                    "Cannot specify `address` and "
                    "`cluster`/`cluster_class`/`cluster_kwargs`/`adapt_kwargs`"
                )
        elif cluster and (cluster_class or cluster_kwargs):
            raise ValueError("Cannot specify `cluster` and `cluster_class`/`cluster_kwargs`")
        resolved = resolve_cluster_class(cluster_class)
        check_performance_report(performance_report_path)
        cluster_kwargs = dict(cluster_kwargs or {})
        client_kwargs = dict(client_kwargs or {})
        client_kwargs.setdefault("set_as_default", False)
        for name, kw in (("client_kwargs", client_kwargs), ("cluster_kwargs", cluster_kwargs)):
            if "asynchronous" in kw:
                raise ValueError(
                    f"`{name}` cannot set `asynchronous`. This option is managed by Prefect."
                )
        self.address = address
        self.cluster_class = cluster_class
        self._cluster_class = resolved
        self.cluster_kwargs = cluster_kwargs
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.client_kwargs = client_kwargs
        self.performance_report_path = performance_report_path
        self.progress = progress
        self.progress_interval = float(progress_interval)
        self._cluster = cluster
        self._client: Client | None = None
        self._init_runtime()
        super().__init__()  # type: ignore[no-untyped-call]  # Prefect's has no annotations

    def _init_runtime(self) -> None:
        self._exit_stack = ExitStack()
        self._client_lock = threading.Lock()
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()
        self._context_settings: Any = None
        self._settings_token = ""
        self._progress: RunProgress | None = None
        self._progress_mode = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskgridTaskRunner):
            return False
        return (
            self.address == other.address
            and self.cluster_class == other.cluster_class
            and self.cluster_kwargs == other.cluster_kwargs
            and self.adapt_kwargs == other.adapt_kwargs
            and self.client_kwargs == other.client_kwargs
            and self.performance_report_path == other.performance_report_path
            and self.progress == other.progress
            and self.progress_interval == other.progress_interval
        )

    def duplicate(self) -> TaskgridTaskRunner:
        """A new runner with the same settings (Prefect makes one per run)."""
        return type(self)(
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=self.client_kwargs,
            performance_report_path=self.performance_report_path,
            progress=self.progress,
            progress_interval=self.progress_interval,
        )

    # -- the lazy client ------------------------------------------------------

    @property
    def client(self) -> Client:
        """The taskgrid client, created (with its cluster) on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Client:
        worker = _context.current_worker() or _context.process_worker
        if worker is not None and self._cluster is None and not self.address:
            # A task submitting tasks from a taskgrid worker: same cluster.
            client: Client = worker.client
            return client
        if self._cluster is not None:
            self.logger.info(f"Connecting to existing taskgrid cluster {self._cluster}")
            target: Any = self._cluster
            self._adapt()
        elif self.address:
            self.logger.info(f"Connecting to an existing taskgrid cluster at {self.address}")
            target = self.address
        else:
            cls = self._cluster_class or LocalCluster
            self.logger.info(f"Creating a new taskgrid cluster with `{to_qualified_name(cls)}`")
            kwargs = dict(self.cluster_kwargs)
            settings = self._worker_settings()
            if settings is not None and isinstance(cls, type) and issubclass(cls, LocalCluster):
                # Prefect's background event and log threads in worker
                # processes read the process-wide settings, not the task's
                # context: give them the flow's API through the environment.
                env = dict(kwargs.get("env") or {})
                env.setdefault("PREFECT_API_URL", str(settings.api.url))
                kwargs["env"] = env
            cluster = check_cluster(cls(**kwargs), cls)
            if hasattr(cluster, "__exit__"):
                cluster = self._exit_stack.enter_context(cluster)
            elif hasattr(cluster, "close"):
                self._exit_stack.callback(cluster.close)
            self._cluster = target = cluster
            self._adapt()
        kwargs = dict(self.client_kwargs)
        if target is not self.address:
            target, security = client_target(target)
            kwargs.setdefault("security", security)
        client = Client(target, **kwargs)
        self._exit_stack.callback(client.close)
        if self.performance_report_path:
            report = performance_report_for(self.performance_report_path, client)
            self._exit_stack.enter_context(report)
        return client

    def _adapt(self) -> None:
        if not self.adapt_kwargs:
            return
        try:
            self._cluster.adapt(**self.adapt_kwargs)
        except NotImplementedError as e:
            msg = (
                f"adaptive scaling ({self.adapt_kwargs}) is not available: {e}; "
                "the cluster keeps its fixed number of workers"
            )
            self.logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    # -- submitting -----------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[RunInput]] | None = None,
    ) -> PrefectTaskgridFuture[Any]:
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        from prefect._internal.uuid7 import uuid7
        from prefect.context import FlowRunContext

        client = self.client
        parameters = self._optimize_futures(parameters)
        wait_for = self._optimize_futures(list(wait_for)) if wait_for else None
        task_run_id = uuid7()
        flow_run_ctx = FlowRunContext.get()
        run_count = flow_run_ctx.flow_run.run_count if flow_run_ctx and flow_run_ctx.flow_run else 0
        name = _KEY_CHARS.sub("_", task.name)[:80]
        context = self._serialize_context(task, task_run_id, dependencies)
        future = client.submit(
            _run_prefect_task,
            task,
            task_run_id,
            parameters,
            wait_for,
            dependencies,
            context,
            self._settings_token,
            key=f"{name}-{task_run_id.hex}-{run_count}",
            pure=False,
        )
        with self._pending_lock:
            self._pending.add(future)
        future.client._add_callback(future, _Listener(self._done))
        shown = self._shown_progress()
        if shown is not None:
            shown.add()
            # On the callback thread (not a _Listener): it may read the state.
            future.client._add_callback(future, shown.finish)
        return PrefectTaskgridFuture(task_run_id=task_run_id, wrapped_future=future)

    def _shown_progress(self) -> RunProgress | None:
        """The progress display, made at the first submission (in the
        flow's context, so log lines go to the flow run); None: off."""
        if self._progress is None and self._progress_mode != "off":
            self._progress_mode = resolve_mode(self.progress)
            if self._progress_mode != "off":
                self._progress = RunProgress(
                    self._progress_mode, self.progress_interval, self._run_logger()
                )
        return self._progress

    def _run_logger(self) -> Any:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            return self.logger

    def _done(self, future: Future) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def map(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
    ) -> PrefectFutureList[PrefectTaskgridFuture[Any]]:
        return super().map(task, parameters, wait_for)

    def _optimize_futures(self, expr: Any) -> Any:
        def visit(x: Any) -> Any:
            if isinstance(x, PrefectTaskgridFuture):
                return x.wrapped_future
            return x

        return visit_collection(expr, visit_fn=visit, return_data=True)

    def _serialize_context(
        self, task: Task[Any, Any], task_run_id: Any, dependencies: Any
    ) -> dict[str, Any]:
        """Prefect's serialized context for one task run.

        Serializing Prefect's settings is ~100 ms (every field visited for
        secrets) and they do not change during a flow run, so they are
        serialized once per run and reused (see _CachedSettings).
        """
        from prefect.context import serialize_context

        kwargs = {
            "task": task,
            "task_run_id": task_run_id,
            "task_inputs": dependencies or {},
            "copy_to_child_ctx": True,
        }
        with self._settings_for_workers():
            return serialize_context(asset_ctx_kwargs=kwargs)

    def _settings_for_workers(self) -> Any:
        from prefect.context import FlowRunContext, SettingsContext
        from prefect.settings import PREFECT_API_URL

        if self._context_settings is None:
            current = SettingsContext.get()
            assert current is not None  # Prefect falls back to its global context
            settings = current.settings
            # A flow run without PREFECT_API_URL talks to a temporary API
            # server in this process; workers in other processes must use
            # it too (or each would start its own, and the task runs would
            # not show up here).
            ctx = FlowRunContext.get()
            url = getattr(getattr(ctx, "client", None), "api_url", None) if ctx else None
            if not settings.api.url and url and str(url).startswith("http"):
                settings = settings.copy_with_update(
                    updates={PREFECT_API_URL: str(url).rstrip("/")}
                )
            cached = _CachedSettings(profile=current.profile, settings=settings)
            self._settings_token = uuid.uuid4().hex
            cached._serialized = SettingsContext(
                profile=current.profile, settings=settings
            ).serialize()
            self._context_settings = cached
        return self._context_settings

    def _worker_settings(self) -> Any:
        """The settings workers get, if they differ from this process's."""
        from prefect.settings import get_current_settings

        settings = self._settings_for_workers().settings
        return settings if settings.api.url != get_current_settings().api.url else None

    # -- life cycle -------------------------------------------------------------

    def __enter__(self) -> TaskgridTaskRunner:
        super().__enter__()
        self._exit_stack.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            with self._pending_lock:
                pending = list(self._pending)
            if pending and self._client is not None:
                if exc_type is None:
                    # Submitted work is part of the flow run: let it finish.
                    self._client.gather(pending, errors="skip")
                else:
                    self._client.cancel(pending)
        except Exception as e:  # noqa: BLE001 - shutting down regardless
            self.logger.debug(f"while waiting for task runs: {e!r}")
        finally:
            if self._progress is not None:
                self._progress.close()
                self._progress, self._progress_mode = None, ""
            self._pending.clear()
            self._client = None
            self._exit_stack.__exit__(exc_type, exc_value, traceback)
            super().__exit__(exc_type, exc_value, traceback)

    def __getstate__(self) -> dict[str, Any]:
        # Travels inside the flow (Prefect's context) to workers: without
        # the live client, cluster or locks; a worker uses its own client.
        data = self.__dict__.copy()
        for k in (
            "_client",
            "_cluster",
            "_exit_stack",
            "_client_lock",
            "_pending",
            "_pending_lock",
            "_context_settings",
            "_settings_token",
            "_progress",
            "_progress_mode",
        ):
            data.pop(k, None)
        return data

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)
        self._client = None
        self._cluster = None
        self._init_runtime()


@contextlib.contextmanager
def get_taskgrid_client() -> Iterator[Client]:
    """A client to the cluster running the current task (like
    prefect-dask's ``get_dask_client``); outside a task, the default client.

    While a task waits on the futures it submitted, it gives its worker slot
    back, so nested work runs even on a full cluster.
    """
    yield get_client()


class DaskTaskRunner(TaskgridTaskRunner):
    """prefect-dask's name for :class:`TaskgridTaskRunner` (the same
    runner, with prefect-dask 0.3's parameters: ``cluster``, ``address``,
    ``cluster_class``, ``cluster_kwargs``, ``adapt_kwargs``,
    ``client_kwargs``, ``performance_report_path``), so that
    ``from prefect_dask import DaskTaskRunner`` becomes
    ``from taskgrid.prefect import DaskTaskRunner``."""
