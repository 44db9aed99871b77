# SPDX-License-Identifier: Apache-2.0
"""taskgrid.progress: progress bars for futures, as Dask's ``progress``.

The bars are tqdm's (a text bar in a terminal, the Jupyter widget in a
notebook: tqdm.auto chooses). Their figures come from Scheduler.Watch with
``keys`` set to the futures' keys: the scheduler counts them per state in
every update, at most every ``interval`` seconds, so following a million
futures costs a handful of streams and no per-task message. One stream
follows at most 65,535 keys, so larger sets are split over several
streams, and the bars show the sum of their latest counts. With
``multi=True`` the keys are grouped by key prefix (as Dask groups by
``key_split``: ``inc-<hash>`` and ``inc-<hash2>`` are both "inc") and each
group gets its own bar and streams.

It ends when every key is final (finished, erred, cancelled, or unknown
to the scheduler); a bar closes with the number of those that erred,
were cancelled or were lost. Counts that do not add up to the keys asked
for are a broken answer and raise SchedulerError naming both numbers
rather than show a wrong bar or wait forever. Depends on _watch.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from ._future import Future, current_client
from ._rpc import pb
from ._watch import MAX_WATCH_KEYS, TaskCounts, WatchUpdate, interval_ms, stream, watch_keys
from .errors import SchedulerError

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Progress", "key_split", "progress"]

# Keys per stream; tests lower it to see the split.
_STREAM_KEYS = MAX_WATCH_KEYS
# How long a broken stream may take to come back before progress fails.
_RECONNECT = 30.0
_HEX8 = re.compile(r"[0-9a-f]{8}")


def key_split(key: str) -> str:
    """The group of a key, as Dask's ``key_split``: its leading words up
    to the first that is not alphabetic or looks like a hash, so
    ``"inc-1f3a..."`` and ``"load-csv-0"`` give "inc" and "load-csv"; the
    first element of a tuple key (``("x-1a2b",0)``) is used."""
    if key.startswith("("):
        key = key[1:].lstrip('"').split('"', 1)[0]
    words = key.split("-")
    out = [words[0]]
    for w in words[1:]:
        if not w.isalpha() or (len(w) == 8 and _HEX8.fullmatch(w)):
            break
        out.append(w)
    return "-".join(out) or key


def _collect(obj: Any, out: list[Any]) -> None:
    """Futures and keys in `obj`: lists, tuples, sets, dicts, or persisted
    Dask collections (whose graphs hold Futures)."""
    if isinstance(obj, (Future, str)):
        out.append(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            _collect(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _collect(x, out)
    elif hasattr(obj, "__dask_graph__"):
        out.extend(v for v in obj.__dask_graph__().values() if isinstance(v, Future))
    else:
        raise TypeError(f"progress takes Futures or task keys, not {type(obj).__name__}")


def _client_of(items: list[Any]) -> Client:
    clients = {id(f.client): f.client for f in items if isinstance(f, Future)}
    if len(clients) > 1:
        raise ValueError("progress takes futures of one client at a time")
    if clients:
        return next(iter(clients.values()))
    client = current_client()
    if client is None:
        raise ValueError("progress was given keys but no taskgrid.Client is open to follow them")
    return client


def _in_notebook() -> bool:
    """What tqdm.auto chose: the Jupyter widget (in a kernel with
    ipywidgets), not the text bar."""
    from tqdm.auto import tqdm as auto
    from tqdm.notebook import tqdm as widget

    return issubclass(auto, widget)


class Progress:
    """Bars over a set of keys (see :func:`progress`). ``run()`` draws
    until every key is final; ``start()`` does it on a thread (notebooks),
    then ``wait()`` joins it and ``close()`` stops it."""

    def __init__(
        self,
        client: Client,
        keys: list[str],
        multi: bool = False,
        complete: bool = True,
        interval: float = 0.1,
        notebook: bool = False,
        **tqdm_kwargs: Any,
    ) -> None:
        self.client = client
        self.interval = interval
        self.complete = complete
        self.notebook = notebook
        self._tqdm_kwargs = tqdm_kwargs
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(key_split(k) if multi else "", []).append(k)
        # Bars in order of size, largest first (as Dask's widget).
        self.groups = dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))
        self._chunks: list[tuple[str, list[str]]] = [
            (name, ks[i : i + _STREAM_KEYS])
            for name, ks in self.groups.items()
            for i in range(0, len(ks), _STREAM_KEYS)
        ]
        self._request_ms = interval_ms(interval)
        self._cond = threading.Condition()
        self._latest: list[TaskCounts | None] = [None] * len(self._chunks)
        self._error: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._stop = False
        self.counts: dict[str, TaskCounts] = {}  # the last drawn, per group
        self.elapsed = 0.0

    @property
    def streams(self) -> int:
        """How many Watch streams follow the keys."""
        return len(self._chunks)

    # -- streams ------------------------------------------------------------

    def _open(self) -> None:
        self.client._flush()  # what was submitted is known before it is counted
        self.client._io.run(self._open_streams())

    async def _open_streams(self) -> None:
        for i, (_, keys) in enumerate(self._chunks):
            req = pb.WatchRequest(keys=keys, interval_ms=self._request_ms)
            task = asyncio.ensure_future(self._follow(i, req, len(keys)))
            self._tasks.append(task)
            self.client._calls.add(task)
            task.add_done_callback(self.client._calls.discard)

    async def _follow(self, i: int, req: pb.WatchRequest, n: int) -> None:
        async def sink(update: WatchUpdate) -> None:
            c = update.keys_counts
            if c.total != n:
                raise SchedulerError(
                    f"progress: the scheduler at {self.client.address} counted {c.total} "
                    f"keys where {n} were asked for"
                )
            with self._cond:
                self._latest[i] = c
                self._cond.notify_all()

        try:
            await stream(self.client, req, _RECONNECT, sink)
            latest = self._latest[i]
            if latest is None or latest.active:
                raise SchedulerError(
                    f"progress: the scheduler at {self.client.address} ended the watch "
                    "before every key was final"
                )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - handed to the drawing thread
            with self._cond:
                if self._error is None:
                    self._error = e
                self._cond.notify_all()

    def _close_streams(self) -> None:
        tasks, self._tasks = self._tasks, []

        def cancel() -> None:
            for t in tasks:
                t.cancel()

        if tasks:
            self.client._io.call_soon(cancel)

    # -- drawing --------------------------------------------------------------

    def _group_counts(self) -> dict[str, TaskCounts] | None:
        """The sum of each group's latest counts; None until every stream
        has sent one. Under self._cond."""
        if any(c is None for c in self._latest):
            return None
        out: dict[str, TaskCounts] = {name: TaskCounts() for name in self.groups}
        for (name, _), c in zip(self._chunks, self._latest):
            assert c is not None
            out[name] = out[name] + c
        return out

    def _bars(self, first: dict[str, TaskCounts]) -> dict[str, Any]:
        import tqdm.auto
        import tqdm.std

        bar_class: type[tqdm.std.tqdm[Any]] = tqdm.auto.tqdm if self.notebook else tqdm.std.tqdm
        bars = {}
        for pos, (name, keys) in enumerate(self.groups.items()):
            skip = 0 if self.complete else first[name].done
            kwargs: dict[str, Any] = {
                "total": len(keys) - skip,
                "desc": name or None,
                "unit": "task",
                "position": pos,
                "leave": True,
                "dynamic_ncols": True,
            }
            kwargs.update(self._tqdm_kwargs)
            bars[name] = (bar_class(**kwargs), skip)
        return bars

    def run(self) -> None:
        """Draw until every key is final (or the watch fails: its error is
        raised). Interrupting it (Ctrl-C) closes the streams."""
        start = time.monotonic()
        bars: dict[str, Any] = {}
        try:
            self._open()
            while True:
                with self._cond:
                    self._cond.wait(self.interval)
                    error = self._error
                    counts = self._group_counts()
                if error is not None:
                    raise error
                if self._stop:
                    return
                if counts is None:
                    continue
                if not bars:
                    bars = self._bars(counts)
                self.counts = counts
                self._draw(bars, counts, final=False)
                if all(c.active == 0 for c in counts.values()):
                    self._draw(bars, counts, final=True)
                    return
        finally:
            self.elapsed = time.monotonic() - start
            self._close_streams()
            for bar, _ in bars.values():
                bar.close()

    @staticmethod
    def _draw(bars: dict[str, Any], counts: dict[str, TaskCounts], final: bool) -> None:
        for name, (bar, skip) in bars.items():
            c = counts[name]
            bar.n = max(0, c.done - skip)
            troubles = [
                f"{n} {what}"
                for n, what in (
                    (c.erred, "erred"),
                    (c.cancelled, "cancelled"),
                    (c.released, "lost"),
                )
                if n
            ]
            if troubles:
                bar.set_postfix_str(", ".join(troubles), refresh=False)
                if final:
                    bar.colour = "red"
            elif final:
                bar.colour = "green"
            bar.refresh()

    def start(self) -> Progress:
        """Run on a thread (returns at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_quietly, daemon=True)
            self._thread.name = "taskgrid-progress"
            self._thread.start()
        return self

    def _run_quietly(self) -> None:
        try:
            self.run()
        except Exception as e:  # noqa: BLE001 - kept for wait()
            with self._cond:
                self._error = e

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a started Progress to end; raises its error, or
        TimeoutError."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"progress still running after {timeout} s")
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop drawing (and close the streams)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._close_streams()


def progress(
    *futures: Any,
    notebook: bool | None = None,
    multi: bool = False,
    complete: bool = True,
    interval: float = 0.1,
    **tqdm_kwargs: Any,
) -> Progress | None:
    """Show the progress of futures, as Dask's ``distributed.progress``.

    In a terminal it blocks until every future is final, drawing a tqdm
    bar (on stderr); in a notebook (``notebook=None`` asks tqdm.auto) it
    shows the widget and returns at once: the returned :class:`Progress`
    goes on updating it, and its ``wait()`` blocks until the end.
    ``futures``: Futures or task keys, in lists, sets, dicts or persisted
    Dask collections. ``multi=True``: one bar per key prefix (the function
    name, for keys taskgrid made). ``complete=False``: count only the keys
    not yet final when it starts. ``interval``: seconds between updates.
    Other keyword arguments go to tqdm (``file=``, ``ncols=``, ``disable=``).
    A bar closes with the count of keys that erred, were cancelled or were
    lost. Raises what the watch raises (NotImplementedError for a scheduler
    without Watch, SchedulerError when it fails).
    """
    items: list[Any] = []
    _collect(list(futures), items)
    if not items:
        return None
    client = _client_of(items)
    keys = watch_keys(items)
    if notebook is None:
        notebook = _in_notebook()
    p = Progress(
        client,
        keys,
        multi=multi,
        complete=complete,
        interval=interval,
        notebook=notebook,
        **tqdm_kwargs,
    )
    if notebook:
        return p.start()
    p.run()
    return None
