# SPDX-License-Identifier: Apache-2.0
"""Dask's cluster-wide Client calls, with Dask's names and signatures:
``who_has``, ``has_what``, ``scheduler_info``, ``run``, ``upload_file``,
``restart``, ``retire_workers``, ``shutdown``, ``get_task_stream``, and
the module functions ``fire_and_forget`` and ``futures_of``.

Where taskgrid differs from Dask, and why:

* Workers are named by their registered names (``WorkerInfo.name``), which
  is what taskgrid's ``workers=`` restrictions take; Dask uses addresses.
* A small result (below the scheduler's inline limit) lives in the
  scheduler, not on a worker: ``who_has`` answers ``("scheduler",)`` for
  it (:data:`INLINE_HOLDER`).
* ``run`` runs the function as a task pinned to each worker (one per
  worker, ``pure=False``), in a worker thread, not in an event loop as
  Dask's does; a function name (``"tg.echo"``) runs on C and Go workers
  too, a Python callable on the Python workers.
* ``restart`` and ``retire_workers`` use the scheduler's ``Retire`` RPC
  (admin role on a TLS cluster); retiring moves the results a worker
  alone holds to another worker first, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc

from ._future import CANCELLED, FINISHED, PENDING, Future
from ._rpc import pb
from ._stream import TaskStreamRecorder
from .errors import CancelledError, SchedulerError

if TYPE_CHECKING:
    from .client import Client

# who_has's answer for a result whose bytes live in the scheduler.
INLINE_HOLDER = "scheduler"
_ON_ERROR = ("raise", "return", "ignore")


def futures_of(o: Any, client: Client | None = None) -> list[Future]:
    """The futures in `o`, as Dask's ``futures_of`` (same order): in
    nested lists, tuples, sets and dicts, and in the graphs of Dask
    collections (a persisted collection's futures), each once. With
    `client`, a cancelled one raises CancelledError."""
    stack = [o]
    seen: set[str] = set()
    futures: list[Future] = []
    while stack:
        x = stack.pop()
        if type(x) in (tuple, set, list):
            stack.extend(x)
        elif type(x) is dict:
            stack.extend(x.values())
        elif isinstance(x, Future):
            if x.key not in seen:
                seen.add(x.key)
                futures.append(x)
        elif hasattr(x, "__dask_graph__") and callable(x.__dask_graph__):
            graph = x.__dask_graph__()
            if graph is not None:
                stack.extend(dict(graph).values())
        elif type(x).__module__.startswith("dask") and hasattr(x, "args") and hasattr(x, "kwargs"):
            # dask's Task objects (dask >= 2024.12) carry their arguments.
            stack.extend([*x.args, *dict(x.kwargs).values()])
    if client is not None:
        gone = [f.key for f in futures if f.status == CANCELLED]
        if gone:
            raise CancelledError(f"cancelled futures: {gone}")
    return futures[::-1]


def fire_and_forget(obj: Any) -> None:
    """Run the tasks of the futures in `obj` to completion even if every
    client releases them or goes away, as Dask's ``fire_and_forget``: the
    scheduler drops the client's hold only once each task is final
    (``ReleaseRequest.when_done``)."""
    by_client: dict[int, tuple[Client, list[Future]]] = {}
    for f in futures_of(obj):
        by_client.setdefault(id(f.client), (f.client, []))[1].append(f)
    for client, futs in by_client.values():
        client._fire_and_forget(futs)


def _worker_name(w: Any) -> str:
    if not isinstance(w, str):
        raise TypeError(f"worker names must be strings, got {type(w).__name__}")
    return w


def _upload_install(name: str, data: bytes, load: bool) -> str:
    """On a worker: keep an uploaded file and make it importable."""
    folder = pathlib.Path(tempfile.gettempdir()) / f"taskgrid-uploads-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / name
    tmp = path.with_name(f".{name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    tmp.replace(path)
    entry = str(path) if path.suffix in (".zip", ".egg") else str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    importlib.invalidate_caches()
    if load and path.suffix == ".py":
        mod = path.stem
        if mod in sys.modules:
            importlib.reload(sys.modules[mod])
        else:
            importlib.import_module(mod)
    return str(path)


class CallsMixin:
    """Dask's cluster-wide calls (a base class of Client)."""

    _stream_rec: TaskStreamRecorder | None = None

    # -- fire and forget ------------------------------------------------------

    def _fire_and_forget(self, futures: Sequence[Future]) -> None:
        c = cast("Client", self)
        keys = list(dict.fromkeys(f.key for f in futures))
        if not keys:
            return
        # One more hold for each key (a Submit of a known key only adds a
        # hold; the function named is never run for it), which the
        # scheduler drops once the task is final: the task outlives this
        # client, whose own hold is unchanged (released as usual).
        specs = [pb.TaskSpec(key=k, func="tg.echo") for k in keys]

        async def call() -> None:
            await c._stub.Submit(pb.SubmitRequest(tasks=specs, client_id=c.id), timeout=30)
            await c._stub.Release(pb.ReleaseRequest(keys=keys, when_done=True), timeout=30)

        c._ordered_call(call)

    # -- where results are ----------------------------------------------------

    def _key_status(self, keys: Sequence[str]) -> pb.StatusResponse:
        c = cast("Client", self)

        async def call() -> pb.StatusResponse:
            resp: pb.StatusResponse = await c._stub.Status(
                pb.StatusRequest(keys=list(keys)), timeout=30
            )
            return resp

        return c._ordered_call(call)

    def _own_keys(self, futures: Any) -> list[str]:
        c = cast("Client", self)
        if futures is None:
            with c._cond:
                return list(c._states)
        if isinstance(futures, (Future, str)):
            futures = [futures]
        out = []
        for f in futures:
            out.append(f if isinstance(f, str) else f.key)
        return out

    def who_has(self, futures: Any = None, **kwargs: Any) -> dict[str, tuple[str, ...]]:
        """Which workers hold each result (names), as Dask's ``who_has``
        (whose values are addresses): for `futures` (Futures or keys), or
        every key this client knows. A result in the scheduler (small,
        inline) is answered ``("scheduler",)``; a key not in memory ``()``."""
        c = cast("Client", self)
        _refuse(kwargs, "who_has")
        r = c._key_status(c._own_keys(futures))
        out: dict[str, tuple[str, ...]] = {}
        for k in r.keys:
            if k.state != pb.TASK_STATE_MEMORY:
                out[k.key] = ()
            elif k.inline_result:
                out[k.key] = (INLINE_HOLDER,)
            else:
                out[k.key] = tuple(sorted(k.holders))
        return out

    def has_what(
        self, workers: Iterable[str] | None = None, **kwargs: Any
    ) -> dict[str, tuple[str, ...]]:
        """The keys of this client each worker holds, as Dask's
        ``has_what`` (by worker name; results in the scheduler are listed
        under ``"scheduler"`` when any)."""
        c = cast("Client", self)
        _refuse(kwargs, "has_what")
        names = [w.name for w in c.status().workers]
        wanted = None if workers is None else {_worker_name(w) for w in workers}
        out: dict[str, list[str]] = {n: [] for n in names if wanted is None or n in wanted}
        for key, holders in c.who_has().items():
            for h in holders:
                if wanted is None or h in wanted:
                    out.setdefault(h, []).append(key)
        return {w: tuple(sorted(v)) for w, v in out.items()}

    def scheduler_info(self, n_workers: int = -1, **kwargs: Any) -> dict[str, Any]:
        """The cluster as Dask's ``scheduler_info`` shapes it:
        ``{"type": "Scheduler", "id", "address", "services": {"dashboard":
        port}, "started", "workers": {name: {"name", "nthreads",
        "memory_limit", "metrics", ...}}}``, from Status. Workers are keyed
        by name (their data address is not part of Status)."""
        c = cast("Client", self)
        _refuse(kwargs, "scheduler_info")
        st = c.status()
        services: dict[str, int] = {}
        link = c.dashboard_link
        if link:
            with contextlib.suppress(ValueError, IndexError):
                services["dashboard"] = int(
                    link.split("://", 1)[-1].split("/")[0].rsplit(":", 1)[1]
                )
        workers: dict[str, dict[str, Any]] = {}
        for w in st.workers if n_workers < 0 else st.workers[:n_workers]:
            workers[w.name] = {
                "type": "Worker",
                "id": w.name,
                "name": w.name,
                "host": c.address.split("://", 1)[-1].rsplit(":", 1)[0],
                "nthreads": w.nthreads,
                "memory_limit": w.memory_limit,
                "status": "closing_gracefully"
                if w.draining
                else ("paused" if w.paused else "running"),
                "metrics": {
                    "executing": w.processing,
                    "in_memory": w.memory,
                    "spilled_bytes": {"memory": w.memory, "disk": w.spilled},
                    "memory": w.rss,
                },
            }
        return {
            "type": "Scheduler",
            "id": f"taskgrid-{c.address}",
            "address": c.address,
            "version": st.version,
            "services": services,
            "workers": workers,
        }

    # -- code on every worker -------------------------------------------------

    def _run_targets(self, func: Any, workers: Iterable[str] | None) -> list[str]:
        c = cast("Client", self)
        from ._codec import PY_CALL

        infos = c._key_status([]).workers
        need = func if isinstance(func, str) else PY_CALL
        able = [
            w.name for w in infos if not w.draining and (not w.functions or need in w.functions)
        ]
        if workers is None:
            return able
        names = [_worker_name(w) for w in workers]
        known = {w.name for w in infos}
        for n in names:
            if n not in known:
                raise ValueError(f"no connected worker is named {n!r} (connected: {sorted(known)})")
            if n not in able:
                raise ValueError(f"worker {n!r} cannot run {need!r}")
        return list(dict.fromkeys(names))

    def run(
        self,
        function: Callable[..., Any] | str,
        *args: Any,
        workers: Iterable[str] | None = None,
        wait: bool = True,
        nanny: bool = False,
        on_error: str = "raise",
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Run ``function(*args, **kwargs)`` once on every worker (or on
        `workers`, by name) and return ``{worker: result}``, as Dask's
        ``run``. Each run is a task pinned to its worker, run in a worker
        thread (not an event loop). ``on_error``: "raise" the first error,
        "return" it as that worker's result, or "ignore" that worker.
        ``wait=False`` starts the runs and returns None (they run to
        their end, as with fire_and_forget). ``nanny=True`` is refused:
        taskgrid workers have no nanny process."""
        c = cast("Client", self)
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        if nanny:
            raise NotImplementedError("run(nanny=True): taskgrid workers have no nanny process")
        names = c._run_targets(function, workers)
        futs = {
            n: c.submit(function, *args, workers=[n], pure=False, retries=0, **kwargs)
            for n in names
        }
        if not wait:
            fire_and_forget(list(futs.values()))
            return None
        out: dict[str, Any] = {}
        for n, f in futs.items():
            try:
                out[n] = f.result()
            except Exception as e:  # per on_error
                if on_error == "raise":
                    raise
                if on_error == "return":
                    out[n] = e
        return out

    def upload_file(self, filename: str | os.PathLike[str], load: bool = True) -> dict[str, str]:
        """Send a .py, .zip or .egg file to every Python worker and make it
        importable there (imported at once for a .py with `load`), as
        Dask's ``upload_file``; workers that join later do not get it.
        Returns ``{worker: path on that worker}``."""
        c = cast("Client", self)
        path = pathlib.Path(filename)
        if path.suffix not in (".py", ".zip", ".egg"):
            raise ValueError(f"upload_file takes a .py, .zip or .egg file, not {str(path)!r}")
        data = path.read_bytes()
        res = c.run(_upload_install, path.name, data, load)
        assert res is not None
        return res

    # -- workers --------------------------------------------------------------

    def _retire_rpc(self, names: list[str], restart: bool) -> list[str]:
        c = cast("Client", self)

        async def call() -> pb.RetireResponse:
            resp: pb.RetireResponse = await c._stub.Retire(
                pb.RetireRequest(workers=names, restart=restart), timeout=30
            )
            return resp

        try:
            return list(c._ordered_call(call).workers)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise ValueError(e.details()) from None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise NotImplementedError(
                    f"this scheduler cannot retire workers: {e.details()}"
                ) from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionError(e.details()) from None
            raise SchedulerError(f"Retire failed ({code.name}: {e.details()})") from None

    def _wait_gone(self, names: Iterable[str], timeout: float, what: str) -> None:
        c = cast("Client", self)
        left = set(names)
        deadline = time.monotonic() + timeout
        while left:
            left &= {w.name for w in c.status().workers}
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what}: workers {sorted(left)} still connected after {timeout} s (a worker "
                    "stays while it holds a result no other worker can take)"
                )
            time.sleep(0.05)

    def retire_workers(
        self,
        workers: Iterable[str] | None = None,
        n: int | None = None,
        close_workers: bool = True,
        timeout: float = 60.0,
        **kwargs: Any,
    ) -> dict[str, dict[str, Any]]:
        """Retire workers gracefully, as Dask's ``retire_workers``: `workers`
        by name, else `n` of them (those holding the least first), else
        all. Each drains; the results it alone holds are copied to another
        worker first, so nothing is lost; then it stops. Workers the
        cluster's launcher started are not replaced. Waits (at most
        `timeout` s) until they are gone; returns ``{name: info}``.
        Unknown names raise ValueError and retire nothing.
        ``close_workers=False`` is refused: a retired taskgrid worker
        always stops."""
        c = cast("Client", self)
        _refuse(kwargs, "retire_workers")
        if not close_workers:
            raise NotImplementedError(
                "retire_workers(close_workers=False): a retired taskgrid worker always stops"
            )
        infos = c.status().workers
        if workers is not None:
            if isinstance(workers, str):
                workers = [workers]
            names = [_worker_name(w) for w in workers]
        elif n is not None:
            if n < 0:
                raise ValueError(f"n must be at least 0 (got {n})")
            by_load = sorted(infos, key=lambda w: (w.memory + w.spilled, w.processing))
            names = [w.name for w in by_load[:n]]
        else:
            names = [w.name for w in infos]
        if not names:
            return {}
        info = c.scheduler_info()["workers"]
        done = c._retire_rpc(names, restart=False)
        c._wait_gone(done, timeout, "retire_workers")
        return {name: info.get(name, {"name": name}) for name in done}

    def restart(self, timeout: float = 60.0, wait_for_workers: bool = True) -> None:
        """Restart every worker, as Dask's ``restart``: this client's tasks
        are cancelled and its results forgotten (its futures become
        cancelled), each worker stops once nothing runs there, and the
        cluster's launcher starts a new one for each it had started.
        With `wait_for_workers`, waits (at most `timeout` s) until as many
        workers are connected as before. Workers started by hand are not
        replaced."""
        c = cast("Client", self)
        with c._cond:
            keys = list(c._states)
            held = [k for k, st in c._states.items() if st.held]
            for st in c._states.values():
                if st.status in (PENDING, FINISHED):
                    st.status = CANCELLED
                    st.exc = CancelledError("the cluster was restarted")
                    st.data = b""
                    st.value = None
                    st.has_value = False
                st.held = False
            c._cond.notify_all()

        async def forget() -> None:
            if keys:
                await c._stub.Cancel(pb.CancelRequest(keys=keys), timeout=30)
            if held:
                await c._stub.Release(pb.ReleaseRequest(keys=held), timeout=30)

        c._ordered_call(forget)
        before = [w.name for w in c.status().workers]
        gone = c._retire_rpc([], restart=True)
        c._wait_gone(gone, timeout, "restart")
        if not wait_for_workers:
            return
        deadline = time.monotonic() + timeout
        while len(c.status().workers) < len(before):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"restart: {len(c.status().workers)} of {len(before)} workers back after "
                    f"{timeout} s (workers started by hand are not restarted)"
                )
            time.sleep(0.05)

    def shutdown(self) -> None:
        """Close the cluster and this client, as Dask's ``shutdown``: the
        LocalCluster this client started or was given is closed (its
        scheduler and workers stop). A scheduler reached by address only
        cannot be stopped from a client: RuntimeError, and nothing
        changes."""
        c = cast("Client", self)
        cluster = c.cluster
        if cluster is None or not hasattr(cluster, "close"):
            raise RuntimeError(
                f"cannot shut down the scheduler at {c.address}: this client did not start it "
                "and was not given its cluster object; stop it where it was started"
            )
        c.close()
        cluster.close()

    # -- task stream ----------------------------------------------------------

    def _task_stream(self) -> TaskStreamRecorder:
        c = cast("Client", self)
        rec: TaskStreamRecorder | None = getattr(self, "_stream_rec", None)
        if rec is None:
            rec = TaskStreamRecorder(c)
            c._stream_rec = rec
        return rec

    def get_task_stream(
        self,
        start: float | str | None = None,
        stop: float | str | None = None,
        count: int | None = None,
        plot: bool = False,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """The tasks that ran, as Dask's ``get_task_stream``: dicts with
        ``key``, ``worker``, ``status`` ("OK" or "error"), ``nbytes`` and
        ``startstops`` (``[{"action": "compute", "start", "stop"}]``,
        seconds since the epoch), from the scheduler's Watch stream.
        Recording starts with the first call on this client (or a
        :func:`taskgrid.get_task_stream` / :func:`taskgrid.performance_report`
        block), so the first call returns what ran since then: nothing.
        `start`/`stop` bound the entries' stop times (seconds since the
        epoch, or "10s"/"5m" ago); `count` keeps the last ones.
        ``plot=True`` is refused (see performance_report)."""
        c = cast("Client", self)
        _refuse(kwargs, "get_task_stream")
        if plot:
            raise NotImplementedError(
                "get_task_stream(plot=True): use taskgrid.performance_report for a chart"
            )
        rec = c._task_stream()
        rec.acquire()
        return rec.entries(start, stop, count)


def _refuse(kwargs: dict[str, Any], call: str) -> None:
    if kwargs:
        raise TypeError(f"{call}() does not support {sorted(kwargs)} (taskgrid has no such option)")


@contextlib.contextmanager
def get_task_stream(
    client: Client | None = None, plot: bool = False, filename: str = "task-stream.html"
) -> Iterator[Any]:
    """Record the tasks that run while the block runs, as Dask's
    ``get_task_stream`` context manager: ``ts.data`` is the list of entries
    (see Client.get_task_stream). ``plot`` is refused."""
    from ._future import current_client

    if plot:
        raise NotImplementedError(
            "get_task_stream(plot=True): use taskgrid.performance_report for a chart"
        )
    c = client if client is not None else current_client()
    if c is None:
        raise ValueError("get_task_stream needs a client: none is open")
    rec = c._task_stream()
    rec.acquire()
    began = time.time()
    holder = _StreamData()
    try:
        yield holder
    finally:
        rec.flush()
        holder.data = rec.entries(began, None, None)
        rec.release()


class _StreamData:
    """What the get_task_stream block yields: ``data`` once it ends."""

    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []
