# SPDX-License-Identifier: Apache-2.0
"""Exceptions of taskgrid, and how a remote task error becomes one.

A task error crosses the wire as (type, message, traceback text, origin
key) — language neutral, so C and Go errors fit too. The client turns it
back into the original exception type when it can: builtins by name
(``ValueError``), other Python types by ``module.QualName`` (imported if
needed), taskgrid's own ``tg.*`` types into the classes below, anything else
into :class:`TaskError`. The remote traceback is chained as ``__cause__``
(a :class:`RemoteTraceback`, as concurrent.futures.ProcessPoolExecutor
does), so printing the exception shows where it was raised on the worker.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import importlib
import sys


class TaskgridError(Exception):
    """Base of taskgrid's own errors."""


class TaskError(TaskgridError):
    """A task failed with an error type Python cannot import.

    ``type`` is the remote type name (e.g. ``tg.Fail`` from the C worker),
    ``key`` the task's key, ``origin_key`` the key of the task that failed
    first when this one inherited the error from a dependency.
    """

    def __init__(
        self,
        message: str = "",
        type: str = "",
        key: str = "",
        origin_key: str = "",
        traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.type = type
        self.key = key
        self.origin_key = origin_key
        self.remote_traceback = traceback

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{self.type}: {msg}" if self.type else msg


class CancelledError(TaskgridError, concurrent.futures.CancelledError):
    """The task was cancelled (by a client, or a dependency was)."""


class UnknownKeyError(TaskgridError, KeyError):
    """The scheduler does not know the key (never submitted, or released)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KilledWorker(TaskError):
    """The task was running on too many workers that died."""


class NoWorkerError(TaskError):
    """No connected worker provides the task's function or resources."""


class ResultTooLarge(TaskError):
    """The task's result is larger than one message can carry (64 MiB).

    Raised for a worker without a data service (or a scheduler that sends
    every result inline): a worker with one keeps a large result in its
    store instead, and it may have any size.
    """

    wire_type = "tg.ResultTooLarge"


class FetchFailed(TaskError):
    """A worker could not fetch a task's input from any holder (the message
    names the key, each holder tried and why)."""

    wire_type = "tg.FetchFailed"


class DataCorrupt(TaskError):
    """A result streamed to the client arrived corrupt or incomplete (a
    chunk's CRC-32, offset or size did not match; the message names the
    key). The same type as the Go and C clients report."""

    wire_type = "tg.DataCorrupt"


class DataLost(TaskError):
    """A result held only on a worker was lost with that worker."""

    wire_type = "tg.DataLost"


class NestingTooDeep(TaskError):
    """A task was submitted from inside tasks nested deeper than the
    scheduler allows (its ``--max-nesting-depth``, 100 by default): a
    recursion through the worker-side client that went too far. The
    message names the task, its depth, its parent and the limit; the task
    never ran."""

    wire_type = "tg.NestingTooDeep"


class NotInTaskError(TaskgridError, ValueError):
    """A function that only works inside a task running on a taskgrid worker
    (worker_client, secede, rejoin, get_worker) was called elsewhere. A
    ValueError, as Dask's get_worker raises outside a worker."""


class ReplicateError(TaskgridError):
    """Client.replicate could not copy some results. ``errors`` maps each
    such key to its (error type, message): "tg.NotFinished", "tg.Erred",
    "tg.CopyFailed" (which worker, and why) or "tg.Timeout"."""

    def __init__(self, message: str, errors: dict[str, tuple[str, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class SchedulerError(TaskgridError, ConnectionError):
    """The connection to the scheduler failed."""


class RemoteTraceback(Exception):
    """Carries the traceback text of a remote error (as __cause__)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


_TG_TYPES = {
    "tg.Cancelled": CancelledError,
    "tg.UnknownKey": UnknownKeyError,
    "tg.KilledWorker": KilledWorker,
    "tg.WorkerLost": KilledWorker,
    "tg.NoWorker": NoWorkerError,
    "tg.ResultTooLarge": ResultTooLarge,
    "tg.FetchFailed": FetchFailed,
    "tg.DataLost": DataLost,
    "tg.NestingTooDeep": NestingTooDeep,
}


def type_name(exc: BaseException) -> str:
    """How a Python exception type is named on the wire."""
    t = type(exc)
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def _resolve(name: str) -> type[BaseException] | None:
    if "." not in name:
        t = getattr(builtins, name, None)
    else:
        if name.startswith("tg."):
            return None
        module, _, qual = name.rpartition(".")
        t = None
        # The module part may itself contain a class (Outer.Inner).
        while module:
            mod = sys.modules.get(module)
            if mod is None:
                try:
                    mod = importlib.import_module(module)
                except Exception:  # noqa: BLE001 - any import error: not resolvable here
                    mod = None
            if mod is not None:
                t = mod
                for part in qual.split("."):
                    t = getattr(t, part, None)
                    if t is None:
                        break
                break
            module, _, head = module.rpartition(".")
            qual = f"{head}.{qual}"
    if isinstance(t, type) and issubclass(t, BaseException):
        return t
    return None


def rebuild(
    type_: str, message: str, traceback: str = "", key: str = "", origin_key: str = ""
) -> BaseException:
    """The exception for a remote error, with its traceback chained."""
    cls = _TG_TYPES.get(type_)
    exc: BaseException
    if cls is CancelledError or cls is UnknownKeyError:
        exc = cls(message or type_)
    elif cls is not None:
        exc = cls(message, type=type_, key=key, origin_key=origin_key, traceback=traceback)
    else:
        cls = _resolve(type_) if type_ else None
        if cls is None:
            exc = TaskError(
                message, type=type_, key=key, origin_key=origin_key, traceback=traceback
            )
        else:
            try:
                exc = cls(message)
            except Exception:  # noqa: BLE001 - a foreign constructor may raise anything
                # Constructors with other signatures: build it without
                # __init__ and give it the message as its only argument.
                exc = cls.__new__(cls)
                exc.args = (message,)
    return _decorate(exc, traceback, key, origin_key)


# How a Python worker sends an exception object in an error's data (codec
# pickle): (EXC_FORMAT, type, args, attributes).
EXC_FORMAT = "taskgrid.exception/1"


def restore(
    pickled: bytes,
    type_: str,
    message: str,
    traceback: str = "",
    key: str = "",
    origin_key: str = "",
) -> BaseException:
    """The original exception object a Python worker pickled (its type and
    attributes), with its traceback chained; `rebuild` when it cannot be
    unpickled here (e.g. its class is not importable)."""
    import pickle

    exc: object = None
    try:
        obj = pickle.loads(pickled)
        if isinstance(obj, tuple) and len(obj) == 4 and obj[0] == EXC_FORMAT:
            _, cls, args, state = obj
            if isinstance(cls, type) and issubclass(cls, BaseException):
                # Without __init__ (its signature may differ from args).
                exc = cls.__new__(cls, *args)
                exc.args = tuple(args)
                if state:
                    exc.__dict__.update(state)
        elif isinstance(obj, BaseException):
            exc = obj
    except Exception:  # noqa: BLE001 - any failure to unpickle: fall back
        exc = None
    if not isinstance(exc, BaseException):
        return rebuild(type_, message, traceback, key, origin_key)
    return _decorate(exc, traceback, key, origin_key)


def _decorate(exc: BaseException, traceback: str, key: str, origin_key: str) -> BaseException:
    if traceback:
        exc.__cause__ = RemoteTraceback(traceback)
    where = origin_key or key
    if where and hasattr(exc, "add_note"):
        note = f"raised by taskgrid task {where!r}"
        if origin_key and origin_key != key:
            note += f" (a dependency of {key!r})"
        exc.add_note(note)
    return exc
