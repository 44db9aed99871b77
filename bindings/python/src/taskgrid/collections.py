# SPDX-License-Identifier: Apache-2.0
"""Collections without Dask: map over partitions, then a tree reduction.

``client.map_partitions(fn, parts)`` submits ``fn`` over each partition
(a Future or a value) and returns one Future each;
``client.tree_reduce(fn, futures, fan_in=k)`` combines them ``k`` at a time
in a tree and returns the root's Future. The methods of
:class:`taskgrid.Client` call the functions of this module, which take the
client first, so they also serve any client (``get_client()`` inside a
task). The graph, keys included, is built here and queued as one
submission, so it goes out in one Submit (split only above the message
limits); partitions stay on the workers and move between them through the
data plane.

The rules are those of the C SDK's ``tg_client_map`` /
``tg_client_tree_reduce`` and Go's ``MapPartitions`` / ``TreeReduce``:

* Keys: with a prefix ``P`` (``key=``, else ``"<name>-<16 hex>"`` new per
  call) map task ``i`` is ``"P-<i>"`` and combine ``j`` of level ``L`` (1
  combines the inputs) is ``"P-r<L>-<j>"``, decimal from 0.
* Tree: level 1 splits the inputs, in order, into ``ceil(n / k)``
  consecutive groups whose sizes differ by at most one, each one combine
  task ``fn(*results)``; level ``L + 1`` does the same with level ``L``'s
  results until one remains (depth ``ceil(log_k n)``, 1 for one input). So
  ``fn`` takes 1 to ``k`` arguments and must be associative (order is
  kept; it need not be commutative).
* Priority: map tasks get ``priority`` (default 0), a combine of level
  ``L`` gets ``priority + L``, so a ready combine runs before more map
  tasks or lower combines and frees its inputs early.
* Only the root's Future is returned; the inner ones are dropped, so each
  inner result is forgotten once the combine above it used it.

Depends on _taskspec (TaskSpecs), _codec (the py.call name) and the stubs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

from . import _codec, _taskspec
from ._future import Future
from ._rpc import pb
from .errors import TaskgridError

if TYPE_CHECKING:
    from .client import Client

__all__ = ["MAX_FAN_IN", "UnknownFunctionError", "map_partitions", "tree_reduce"]

#: The largest fan-in (dependencies of one task).
MAX_FAN_IN = 65535
# The longest key prefix: room is left for the suffixes within 1,024 bytes.
_KEY_MAX = 1024 - 32


class UnknownFunctionError(TaskgridError, LookupError):
    """No connected worker provides the function a collection call needs
    (for a Python callable: ``py.call``, which only Python workers have)."""


Func = Callable[..., Any] | str


def map_partitions(
    client: Client,
    fn: Func,
    parts: Iterable[Any],
    *args: Any,
    key: str | None = None,
    priority: int | None = None,
    resources: Mapping[str, float] | None = None,
    retries: int | None = None,
    workers: Sequence[str] | None = None,
    check: bool = True,
    **kwargs: Any,
) -> list[Future]:
    """Submit ``fn`` over each partition; one Future per partition, in order.

    A partition is a Future (its result is passed) or a value. A callable
    is called ``fn(part, *args, **kwargs)``, as Dask's map_partitions does;
    a function name (``"tg.sum"``, a C or Go function) gets the JSON
    ``args`` first and then the partition, the order in which named
    functions take dependencies. ``check`` (default) first asks the
    scheduler whether a connected worker provides the function and raises
    UnknownFunctionError if none does (no check while no worker is
    connected). Raises ValueError for no partitions.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("map_partitions: no partitions to map over")
    if isinstance(fn, str) and kwargs:
        raise TypeError(
            f"map_partitions: named function {fn!r} takes positional "
            f"arguments only (got keyword arguments {sorted(kwargs)})"
        )
    prefix = _prefix(fn, key)
    extra = _taskspec.options(priority, resources, retries, workers)
    _check(client, "map_partitions", fn, check)
    if isinstance(fn, str):
        calls: list[_taskspec.Call] = [((*args, p), {}) for p in parts]
    else:
        calls = [((p, *args), kwargs) for p in parts]
    keys = [f"{prefix}-{i}" for i in range(len(parts))]
    specs, keys = _taskspec.build(fn, calls, keys, None, None, extra, _no_key)
    return client._submit(specs, keys)


def tree_reduce(
    client: Client,
    fn: Func,
    futures: Iterable[Any],
    fan_in: int = 8,
    *,
    key: str | None = None,
    priority: int | None = None,
    resources: Mapping[str, float] | None = None,
    retries: int | None = None,
    workers: Sequence[str] | None = None,
    check: bool = True,
) -> Future:
    """Combine ``futures`` with ``fn(*results)``, at most ``fan_in`` at a
    time, in a tree submitted at once; returns the root's Future.

    ``fn`` is a callable or a function name (``"tg.sum"``). Raises
    ValueError for no futures or ``fan_in`` outside 2..MAX_FAN_IN, and
    UnknownFunctionError as map_partitions does. The inputs stay held by
    their Futures: drop them after this call so that each goes once its
    combine used it.
    """
    if isinstance(fan_in, bool) or not isinstance(fan_in, int):
        raise TypeError(f"tree_reduce: fan_in must be an int, got {fan_in!r}")
    if not 2 <= fan_in <= MAX_FAN_IN:
        raise ValueError(f"tree_reduce: fan_in must be 2 to {MAX_FAN_IN} (got {fan_in})")
    level_in = list(futures)
    if not level_in:
        raise ValueError("tree_reduce: no futures to reduce")
    prefix = _prefix(fn, key)
    extra = _taskspec.options(priority, resources, retries, workers)
    _check(client, "tree_reduce", fn, check)
    base_priority = int(extra.pop("priority", 0))
    specs: list[pb.TaskSpec] = []
    keys: list[str] = []
    fbytes = None if isinstance(fn, str) else _codec.dumps_function(fn)
    level = 0
    while True:
        level += 1
        groups = -(-len(level_in) // fan_in)
        size, bigger = divmod(len(level_in), groups)
        bounds = [0]
        for j in range(groups):
            bounds.append(bounds[-1] + size + (1 if j < bigger else 0))
        lkeys = [f"{prefix}-r{level}-{j}" for j in range(groups)]
        lextra = dict(extra, priority=min(base_priority + level, 2**31 - 1))
        if level == 1:
            # The inputs: Futures (or values) as submit takes them.
            groups_in: list[_taskspec.Call] = [
                (tuple(level_in[a:b]), {}) for a, b in zip(bounds, bounds[1:])
            ]
            lspecs, lkeys = _taskspec.build(fn, groups_in, lkeys, None, None, lextra, _no_key)
        else:
            # Tasks of this same submission, named by key.
            lspecs = [
                _combine(fn, fbytes, k, level_in[a:b], lextra)
                for k, a, b in zip(lkeys, bounds, bounds[1:])
            ]
        specs += lspecs
        keys += lkeys
        if groups == 1:
            break
        level_in = lkeys
    return client._submit(specs, keys)[-1]


def _combine(
    fn: Func, fbytes: bytes | None, key: str, deps: list[str], extra: dict[str, Any]
) -> pb.TaskSpec:
    """The spec of one combine of the results of `deps`, as _taskspec.build
    makes it for fn(*futures)."""
    if isinstance(fn, str):
        return pb.TaskSpec(key=key, func=fn, codec=_codec.JSON, deps=deps, **extra)
    data = _codec.dumps((fbytes, tuple(_codec.Dep(i) for i in range(len(deps))), {}))
    return pb.TaskSpec(
        key=key, func=_codec.PY_CALL, input=data, codec=_codec.PICKLE, deps=deps, **extra
    )


def _no_key(name: str, pure: bool | None, data: bytes, deps: list[str]) -> str:
    raise AssertionError("collection tasks have explicit keys")


def _prefix(fn: Func, key: str | None) -> str:
    if key is not None:
        if not key or len(key) > _KEY_MAX:
            raise ValueError(f"key prefix must be 1 to {_KEY_MAX} characters (got {len(key)})")
        return key
    if isinstance(fn, str):
        if "." not in fn:
            raise ValueError(f"named functions are 'namespace.name' (e.g. 'tg.sum'), got {fn!r}")
        name = fn
    elif callable(fn):
        name = _taskspec.name_of(fn)
    else:
        raise TypeError(f"cannot submit {fn!r}: not callable and not a function name")
    return f"{name[: _KEY_MAX - 17]}-{uuid.uuid4().hex[:16]}"


def _check(client: Client, what: str, fn: Func, check: bool) -> None:
    """UnknownFunctionError unless some connected worker provides fn."""
    client._check_open()
    if not check:
        return
    name = fn if isinstance(fn, str) else _codec.PY_CALL

    async def call() -> pb.StatusResponse:
        resp: pb.StatusResponse = await client._stub.Status(pb.StatusRequest(), timeout=30)
        return resp

    workers = client._ordered_call(call).workers
    if not workers or any(name in w.functions for w in workers):
        return
    provided = sorted({f for w in workers for f in w.functions})
    hint = " (Python callables run on Python workers)" if name == _codec.PY_CALL else ""
    raise UnknownFunctionError(
        f"{what}: no connected worker provides function {name!r}{hint}; "
        f"{len(workers)} worker{'s' if len(workers) != 1 else ''} connected, "
        f"providing: {', '.join(provided) or 'nothing'}"
    )
