# SPDX-License-Identifier: Apache-2.0
"""Dask's Client, submit/map and LocalCluster options, on taskgrid.

Every option of Dask distributed's ``Client(...)``, ``Client.submit``,
``Client.map`` and ``LocalCluster(...)`` is either given Dask's meaning here
or refused at the call with a TypeError/NotImplementedError naming it; none
reaches the user's function and none is silently dropped. The table is in
the binding's README ("Dask options"). What lives here:

* :func:`task_options`: the TaskSpec fields of a submit/map call, from its
  explicit arguments, else the annotation blocks in force
  (:func:`merged_annotations`: ``taskgrid.annotate`` and ``dask.annotate``,
  the innermost block winning per name), with Dask's ``fifo_timeout``,
  ``allow_other_workers``, ``actor``/``actors`` checked or applied.
* :func:`client_options` / :func:`cluster_options`: the Dask options of
  ``Client(...)`` and ``LocalCluster(...)`` that taskgrid accepts, maps or
  refuses.
* :class:`DaskAttributes`: Dask's ``client.scheduler.address``.

Depends on _annotate, _context and the stubs; dask only when it is
imported already (dask.annotate cannot be in force otherwise).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _annotate, _context
from ._rpc import pb

if TYPE_CHECKING:
    from .client import Client

FIELDS = _annotate.FIELDS

_INT32 = (-(2**31), 2**31 - 1)
_UINT32_MAX = 2**32 - 1


# ---------------------------------------------------------------------------
# Annotation blocks: taskgrid.annotate and dask.annotate
# ---------------------------------------------------------------------------


def dask_annotations() -> Mapping[str, Any]:
    """The ``dask.annotate`` blocks in force here ({} without dask)."""
    base = sys.modules.get("dask.base")
    if base is None:
        return {}
    got = base.get_annotations()
    return got if isinstance(got, Mapping) else {}


def merged_annotations() -> dict[str, Any]:
    """The annotations in force here, ``taskgrid.annotate`` and
    ``dask.annotate`` blocks together: the innermost block that sets a
    name wins, as nested ``dask.annotate`` blocks do. A taskgrid block
    remembers Dask's annotations as they were when it was entered: a name
    whose Dask value is another object now was set by a Dask block
    entered inside it. (Known limit: a Dask block inside that sets a name
    to the very object an outer Dask block gave it is taken for the outer
    one.)"""
    dask_now = dask_annotations()
    out = {f: v for f, v in dask_now.items() if f in FIELDS}
    for f, (value, then) in _annotate.scopes().items():
        if f not in dask_now or dask_now is then or dask_now.get(f) is then.get(f):
            out[f] = value
    return out


# ---------------------------------------------------------------------------
# submit / map
# ---------------------------------------------------------------------------


def seconds(value: Any, what: str) -> float:
    """A duration as Dask writes them (seconds, "100 ms", "2s", "1 minute",
    a timedelta) in seconds; bad input raises ValueError naming `what`."""
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        unit = _UNITS.get(m.group(2).lower()) if m else None
        if m and unit is not None:
            return float(m.group(1)) * unit
    raise ValueError(
        f"{what} must be a duration >= 0 (seconds, or text like '100 ms' or '2s'), not {value!r}"
    )


_UNITS = {
    "": 1.0,
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 1e-3),
    **dict.fromkeys(("us", "microsecond", "microseconds"), 1e-6),
    **dict.fromkeys(("ns", "nanosecond", "nanoseconds"), 1e-9),
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "wk", "week", "weeks"), 604800.0),
}


def refuse_actors(call: str, actor: Any, actors: Any) -> None:
    """Dask's actors (stateful objects living on one worker) do not exist
    in taskgrid: a true ``actor``/``actors`` is refused."""
    for name, value in (("actor", actor), ("actors", actors)):
        if value:
            raise NotImplementedError(
                f"{call}({name}={value!r}) is not supported: taskgrid has no actors "
                "(stateful objects on one worker); submit plain functions instead"
            )


def task_options(
    client: Client | None,
    call: str,
    priority: Any,
    resources: Any,
    retries: Any,
    workers: Any,
    allow_other_workers: Any = None,
    fifo_timeout: Any = 0,
) -> dict[str, Any]:
    """TaskSpec fields of a submit/map call.

    Each explicit argument wins; the others come from the annotation
    blocks in force (:func:`merged_annotations`). ``fifo_timeout`` is
    checked and has no further effect: taskgrid runs equal priorities
    strictly in submission order, which is what any ``fifo_timeout``
    keeps across calls (see the README's option table).
    ``allow_other_workers=True`` with ``workers`` is Dask's loose
    restriction: the task stays on those workers if one of them is
    connected, else it may run anywhere (decided at submission, from
    the scheduler's current workers). Errors name the call and option.
    """
    seconds(fifo_timeout, f"{call}(fifo_timeout=...)")
    if allow_other_workers not in (True, False, None):
        raise TypeError(
            f"{call}: allow_other_workers must be True, False or None, not {allow_other_workers!r}"
        )
    ctx = merged_annotations()
    raw = {
        "priority": priority or ctx.get("priority"),
        "resources": resources if resources is not None else ctx.get("resources"),
        "retries": retries if retries is not None else ctx.get("retries"),
        "workers": workers if workers is not None else ctx.get("workers"),
        "allow_other_workers": (
            allow_other_workers if allow_other_workers else ctx.get("allow_other_workers")
        ),
    }
    # Dask calls an annotation that is a function with each task's key;
    # callables are resolved per key by per_key().
    extra = fields(call, {f: v for f, v in raw.items() if not callable(v)})
    per = {f: v for f, v in raw.items() if callable(v)}
    if per:
        extra["_per_key"] = per
    if "workers" in extra and raw["allow_other_workers"] is True and client is not None:
        extra.update(_loose(client, extra.pop("workers")))
    task = _context.current_task()
    if task is not None:
        extra["parent"] = task.key  # nested work: its parent
    return extra


def per_key(call: str, extra: dict[str, Any], specs: Sequence[pb.TaskSpec]) -> None:
    """Apply annotations given as functions of the key to built specs."""
    per = extra.get("_per_key")
    if not per:
        return
    for spec in specs:
        got = fields(f"{call} (task {spec.key!r})", {f: fn(spec.key) for f, fn in per.items()})
        for name, value in got.items():
            if name in ("resources", "workers"):
                del getattr(spec, name)[:]
                getattr(spec, name).extend(value)
            else:
                setattr(spec, name, value)


def strip(extra: dict[str, Any]) -> dict[str, Any]:
    """TaskSpec keyword arguments (without the per-key callables)."""
    return {k: v for k, v in extra.items() if k != "_per_key"}


def fields(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Checked TaskSpec fields; bad values raise naming `where` and the option."""
    out: dict[str, Any] = {}
    priority = raw.get("priority")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise TypeError(f"{where}: priority must be a number, not {priority!r}")
        if priority != int(priority) or not _INT32[0] <= priority <= _INT32[1]:
            raise ValueError(
                f"{where}: priority {priority!r} is not a whole number in the 32-bit range"
            )
        if priority:
            out["priority"] = int(priority)
    resources = raw.get("resources")
    if resources:
        if not isinstance(resources, Mapping):
            raise TypeError(
                f"{where}: resources must be a mapping like {{'GPU': 1}}, not {resources!r}"
            )
        res = []
        for name, amount in resources.items():
            if (
                not isinstance(name, str)
                or isinstance(amount, bool)
                or not isinstance(amount, (int, float))
                or not amount >= 0
            ):
                raise ValueError(
                    f"{where}: resource {name!r}: {amount!r} is not a name with an amount >= 0"
                )
            res.append(pb.Resource(name=name, amount=float(amount)))
        out["resources"] = res
    retries = raw.get("retries")
    if retries:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"{where}: retries must be a count >= 0, not {retries!r}")
        out["retries"] = min(retries, _UINT32_MAX)
    workers = raw.get("workers")
    if workers:
        names = [workers] if isinstance(workers, str) else list(workers)
        if not all(isinstance(w, str) for w in names):
            raise TypeError(f"{where}: workers must be worker names, not {workers!r}")
        out["workers"] = names
    return out


def _loose(client: Client, names: list[str]) -> dict[str, list[str]]:
    """Dask's loose restriction: the workers while one of them is connected."""
    connected = {w.name for w in client.status().workers}
    return {"workers": names} if any(n in connected for n in names) else {}


def batches(n: int, batch_size: Any) -> list[range]:
    """Dask's ``map(batch_size=...)``: the calls in submissions of at
    most `batch_size` (None: one)."""
    if batch_size is None:
        return [range(n)]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"map: batch_size must be a whole number >= 1, not {batch_size!r}")
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


# ---------------------------------------------------------------------------
# Client(...)
# ---------------------------------------------------------------------------


def client_options(address: Any, kwargs: MutableMapping[str, Any]) -> Any:
    """Take Dask's Client options out of `kwargs` (what is left goes to the
    LocalCluster a Client without an address starts); returns the address,
    read from ``scheduler_file`` when one is given. Refuses the options
    taskgrid cannot honour, naming them."""
    for name in ("loop", "serializers", "deserializers"):
        value = kwargs.pop(name, None)
        if value is not None:
            raise NotImplementedError(
                f"Client({name}=...) is not supported: "
                + {
                    "loop": "the client runs its own I/O loop in a background thread",
                    "serializers": "taskgrid encodes Python objects with pickle/cloudpickle",
                    "deserializers": "taskgrid encodes Python objects with pickle/cloudpickle",
                }[name]
            )
    extensions = kwargs.pop("extensions", None)
    if extensions:
        raise NotImplementedError(
            "Client(extensions=...) is not supported: Dask client extensions hook "
            "into Dask's own scheduler protocol"
        )
    # Meaningless here (see the README's option table): the client has one
    # gRPC channel (no heartbeat of its own: gRPC keeps it alive), and
    # direct fetches reuse one channel per worker.
    for name in ("heartbeat_interval", "connection_limit"):
        if name in kwargs:
            value = kwargs.pop(name)
            if name == "heartbeat_interval" and value is not None:
                seconds(value, "Client(heartbeat_interval=...)")
            elif name == "connection_limit" and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"Client(connection_limit=...) must be >= 1, not {value!r}")
    scheduler_file = kwargs.pop("scheduler_file", None)
    if scheduler_file is not None:
        if address is not None:
            raise ValueError("Client: give an address or a scheduler_file, not both")
        address = _address_from_file(scheduler_file)
    return address


def _address_from_file(path: Any) -> str:
    """The ``"address"`` of a Dask-style scheduler file (JSON)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Client(scheduler_file={str(path)!r}): cannot read it: {e}") from None
    address = doc.get("address") if isinstance(doc, dict) else None
    if not isinstance(address, str) or not address:
        raise ValueError(
            f'Client(scheduler_file={str(path)!r}): no "address" string in it '
            '(expected JSON like {"address": "tcp://host:8786"})'
        )
    return address


def unexpected_client_kwargs(kwargs: Mapping[str, Any]) -> TypeError:
    """The error for options left over when the client starts no cluster."""
    return TypeError(
        f"Client() got unexpected arguments {sorted(kwargs)}: beside the client's own "
        "options, Client() takes LocalCluster options (n_workers, ...) only when it "
        "starts its own cluster, that is without an address"
    )


class DaskAttributes:
    """Attributes Dask's Client has that code ported from Dask reads."""

    address: str

    @property
    def scheduler(self) -> SchedulerRef:
        """Dask's ``client.scheduler``: here only its ``address`` (as in
        ``DaskTaskRunner(address=client.scheduler.address)``)."""
        return SchedulerRef(self.address)


class SchedulerRef:
    """What ``client.scheduler`` is on taskgrid: the scheduler's address."""

    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address

    def __repr__(self) -> str:
        return f"<taskgrid scheduler {self.address}>"


# ---------------------------------------------------------------------------
# LocalCluster(...)
# ---------------------------------------------------------------------------

# Dask options that LocalCluster refuses unless left at their default, and why.
_CLUSTER_REFUSED: dict[str, str] = {
    "loop": "the cluster is managed from a background thread, not an event loop of yours",
    "worker_dashboard_address": "workers serve no dashboard (the scheduler's has them all)",
    "services": "the scheduler serves only its gRPC port and dashboard_address",
    "worker_services": "workers serve only their data service",
    "service_kwargs": "the scheduler serves only its gRPC port and dashboard_address",
    "blocked_handlers": "the scheduler's RPCs are fixed by its contract (roles limit them)",
    "interface": "give the address to listen on with host=",
    "worker_class": "workers are taskgrid's own: choose worker='python' or worker='c'",
    "scheduler_kwargs": "the scheduler is the taskgrid-scheduler program",
    "security": "a temporary cluster listens on loopback without TLS; start "
    "taskgrid-scheduler with certificates (see Security) and connect by address",
    "local_directory": "workers spill to a temporary folder of their own",
    "death_timeout": "workers of a temporary cluster stop with its scheduler",
    "lifetime": "workers are not restarted on a schedule",
    "nanny": "the scheduler's launcher supervises and restarts worker processes",
    "plugins": "Dask worker plugins hook into Dask's worker",
    "extensions": "Dask worker extensions hook into Dask's worker",
    "data": "workers keep results in their own store (memory, then disk)",
}

_LOG_LEVELS = ((40, "error"), (30, "warn"), (20, "info"), (0, "debug"))


def cluster_options(kwargs: MutableMapping[str, Any]) -> dict[str, Any]:
    """Dask's LocalCluster options in `kwargs` (those taskgrid's signature
    does not name) mapped to taskgrid's: returns what they set
    (``host``, ``log_level``, ``name``, ``asynchronous``); refuses the
    rest, naming them."""
    out: dict[str, Any] = {}
    if "ip" in kwargs:
        out["host"] = kwargs.pop("ip")
    if "name" in kwargs:
        out["name"] = kwargs.pop("name")
    start = kwargs.pop("start", None)
    if start is False:
        raise NotImplementedError(
            "LocalCluster(start=False) is not supported: the cluster starts when made"
        )
    if "silence_logs" in kwargs:
        out["log_level"] = _silence(kwargs.pop("silence_logs"))
    protocol = kwargs.pop("protocol", None)
    if protocol not in (None, "tcp", "tcp://"):
        raise NotImplementedError(
            f"LocalCluster(protocol={protocol!r}) is not supported: a temporary cluster "
            "speaks tcp:// (gRPC) on loopback"
        )
    # Meaningless here: cluster status is asked of the scheduler at each call.
    sync = kwargs.pop("scheduler_sync_interval", 1)
    seconds(sync, "LocalCluster(scheduler_sync_interval=...)")
    out["asynchronous"] = bool(kwargs.pop("asynchronous", False))
    for name in list(kwargs):
        if name in _CLUSTER_REFUSED:
            value = kwargs.pop(name)
            if value not in (None, False, (), {}, []):
                raise NotImplementedError(
                    f"LocalCluster({name}=...) is not supported: {_CLUSTER_REFUSED[name]}"
                )
    if kwargs:
        name = sorted(kwargs)[0]
        raise TypeError(
            f"LocalCluster() got an unexpected argument {name!r}: it is neither a "
            "taskgrid LocalCluster option nor a Dask one taskgrid supports"
        )
    return out


def _silence(value: Any) -> str:
    """Dask's ``silence_logs`` (a logging level; False: not silenced) as
    the scheduler's and workers' --log-level."""
    if value is False or value is None:
        return "info"
    if value is True:
        return "warn"
    if isinstance(value, str):
        level = logging.getLevelName(value.upper())
        if isinstance(level, int):
            value = level
    if isinstance(value, int):
        return next(name for floor, name in _LOG_LEVELS if value >= floor)
    raise ValueError(
        f"LocalCluster(silence_logs=...) must be a logging level or False, not {value!r}"
    )
