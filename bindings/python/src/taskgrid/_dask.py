# SPDX-License-Identifier: Apache-2.0
"""Dask collections on taskgrid: the scheduler interface Dask calls.

``dask.compute(x, scheduler=client)``, ``dask.config.set(scheduler=client)``
and ``x.compute()`` under a default client call :meth:`Client.get` with a
Dask graph (a dict, a HighLevelGraph or an expression) and the keys wanted;
:meth:`Client.compute` and :meth:`Client.persist` do the same for whole
collections and hand back taskgrid futures. The graph becomes taskgrid
tasks in one batch:

* Every Dask task (``dask._task_spec.Task`` and its containers, legacy
  tuples converted first) becomes one ``py.call`` task on a Python worker
  running :func:`run_task`, whose input is the pickled task (cloudpickle
  where plain pickle cannot, as for any Python callable) and whose
  dependencies are the taskgrid keys of the Dask keys it reads. The worker
  resolves them (large partitions through the data plane) and calls the
  task with its values.
* An ``Alias`` is no task: its key stands for its target's. A literal
  ``DataNode`` is no task either while it is small (pickled at most
  EMBED_MAX_BYTES): it is copied into each task that reads it, and a wanted
  literal comes back without a round trip; a larger one is sent once, as a
  ``tg.echo`` task, and fetched from its holder by its readers. A taskgrid
  Future inside a graph (a persisted collection) is a dependency on its key.
* Dask keys (str, int, float, bytes, tuples of them) map to taskgrid keys
  one to one and deterministically, within the scheduler's key rules
  (:func:`tg_key`), so the same graph computed twice names the same tasks,
  as in Dask.
* Annotations travel per key: ``priority``, ``resources``, ``retries``,
  ``workers`` and ``allow_other_workers`` from the graph's layers (what
  ``dask.annotate`` records), else the call's keyword arguments, else the
  annotation blocks in force at the call (``dask.annotate`` and
  :func:`taskgrid.annotate`, the innermost winning per name), as Dask
  ranks them. ``allow_other_workers=True`` lifts ``workers`` only when
  none of them is connected (Dask's loose restriction). Other
  annotations are ignored, as in Dask.
* Bad input fails before anything is sent: a cycle, a key of another type,
  a dependency neither in the graph nor a future of this client, a literal
  too large for one message, an annotation of the wrong type.

Tasks are submitted in a topological order that follows ``dask.order``
where it can (taskgrid runs equal priorities first come, first served), so
partitions are reduced as they come, as on Dask.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import pickle
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle
import dask
import dask.config
from dask._task_spec import Alias, DataNode, GraphNode, convert_legacy_graph
from dask.base import collections_to_expr, is_dask_collection
from dask.core import flatten
from dask.delayed import delayed
from dask.highlevelgraph import HighLevelGraph

from . import _annotate, _codec, _context, _options
from ._future import Future, current_client
from ._rpc import pb

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger("taskgrid.dask")

# A literal (DataNode) pickled to at most this many bytes is copied into the
# input of each task that reads it; a larger one becomes one task.
EMBED_MAX_BYTES = 64 * 1024
# TaskSpec.key: at most this many bytes (TG_PROTO_KEY_MAX in proto/methods.h).
KEY_MAX_BYTES = 1024
# The function that returns its input (as Client.scatter uses).
ECHO_FUNC = "tg.echo"
# The largest pickled literal one task input can carry (one Submit message).
LITERAL_MAX_BYTES = 64 * 1024 * 1024 - 64 * 1024
FIELDS = _annotate.FIELDS


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


def tg_key(key: Any) -> str:
    """The taskgrid key of a Dask key, one to one and deterministic.

    A printable str that starts with neither ``(`` nor ``~`` stays as it is;
    a tuple is written ``("name",0)`` (strings quoted as JSON); any other
    str is ``~s:`` and its JSON escape, an int ``~i:N``, a float ``~f:R``,
    bytes ``~b:HEX``. A result longer than the scheduler's 1,024 bytes
    becomes ``~h:`` + its first 200 characters + ``:`` + its SHA-256.
    Other types raise TypeError naming the key.
    """
    if type(key) is str and key and key[0] not in "(~" and key.isprintable():
        text = key
    elif isinstance(key, str):
        text = "~s:" + json.dumps(key)[1:-1]
    elif isinstance(key, tuple):
        text = _element(key)
    elif isinstance(key, bytes):
        text = "~b:" + key.hex()
    elif isinstance(key, int):
        text = f"~i:{int(key)}"
    elif isinstance(key, float):
        text = f"~f:{key!r}"
    else:
        raise TypeError(
            f"Dask key {_show(key)} is a {type(key).__name__}: keys are str, int, "
            "float, bytes or tuples of them"
        )
    if len(text) <= KEY_MAX_BYTES // 4 or len(text.encode()) <= KEY_MAX_BYTES:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"~h:{text[:200]}:{digest}"


def _element(x: Any) -> str:
    """One element of a tuple key (tuples nest)."""
    if isinstance(x, str):
        return json.dumps(x)
    if isinstance(x, tuple):
        return "(" + ",".join(_element(e) for e in x) + ")"
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, bytes):
        return "b:" + x.hex()
    raise TypeError(
        f"Dask key element {_show(x)} is a {type(x).__name__}: keys are str, int, "
        "float, bytes or tuples of them"
    )


def _show(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 120 else text[:117] + "..."


# ---------------------------------------------------------------------------
# Annotations -> TaskSpec fields
# ---------------------------------------------------------------------------


class _Options:
    """TaskSpec fields of each key, from the sources in their order: the
    graph's layers, the call's keyword arguments, the annotation blocks
    in force (``dask.annotate`` and ``taskgrid.annotate``, innermost
    first; see _options.merged_annotations)."""

    def __init__(
        self,
        by_key: Mapping[str, Mapping[Any, Any]],
        kwargs: Mapping[str, Any],
        client: Client | None = None,
    ):
        self.by_key = {f: by_key[f] for f in FIELDS if by_key.get(f)}
        self.kwargs = {f: v for f, v in kwargs.items() if f in FIELDS and v is not None}
        self.scope = _options.merged_annotations()
        self._client = client
        self._connected: set[str] | None = None
        self._cache: dict[str, dict[str, Any]] = {}

    def _raw(self, key: Any, field: str) -> Any:
        per_key = self.by_key.get(field)
        if per_key is not None:
            value = per_key.get(key)
            if value is not None:
                return value
        if field in self.kwargs:
            return self.kwargs[field]
        value = self.scope.get(field)
        return value(key) if callable(value) else value

    def fields(self, key: Any) -> dict[str, Any]:
        raw = tuple(self._raw(key, f) for f in FIELDS)
        if not any(v is not None for v in raw):
            return {}
        try:
            memo = repr(raw)
        except Exception:  # noqa: BLE001 - a repr that fails only skips the memo
            memo = ""
        hit = self._cache.get(memo) if memo else None
        if hit is None:
            hit = _options.fields(f"Dask task {_show(key)}", dict(zip(FIELDS, raw)))
            if "workers" in hit and raw[-1] is True and not self._any_connected(hit["workers"]):
                # Dask's loose restriction: none of the workers is there.
                del hit["workers"]
            if memo:
                self._cache[memo] = hit
        return hit

    def _any_connected(self, names: list[str]) -> bool:
        if self._client is None:
            return False
        if self._connected is None:
            self._connected = {w.name for w in self._client.status().workers}
        return any(n in self._connected for n in names)


# ---------------------------------------------------------------------------
# Graph -> TaskSpecs
# ---------------------------------------------------------------------------


def materialize(dsk: Any) -> tuple[dict[Any, GraphNode], dict[str, dict[Any, Any]]]:
    """The graph's nodes (new-style task spec) and per-key annotations."""
    if isinstance(dsk, HighLevelGraph):
        from dask._expr import HLGExpr

        dsk = HLGExpr(dsk)
    if isinstance(dsk, Mapping):
        graph, annotations = dict(dsk), {}
    elif hasattr(dsk, "__dask_graph__"):
        graph = dict(dsk.__dask_graph__())
        get_annotations = getattr(dsk, "__dask_annotations__", None)
        annotations = dict(get_annotations()) if get_annotations else {}
    else:
        raise TypeError(
            f"not a Dask graph: {type(dsk).__name__} (expected a dict, a HighLevelGraph "
            "or a Dask expression)"
        )
    return convert_legacy_graph(graph), annotations


class _Literal:
    """A DataNode's value, pickled once; a task of its own only if needed."""

    __slots__ = ("blob", "key", "tg", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key = key
        self.value = value
        self.blob: bytes | None = None
        self.tg: str | None = None  # its taskgrid key once sent as a task

    def pickled(self) -> bytes:
        if self.blob is None:
            self.blob = _pickle_task(self.value)
        return self.blob


class Plan:
    """What one graph becomes: TaskSpecs in submission order, the taskgrid
    key standing for each Dask key (a str) or its literal (_Literal)."""

    def __init__(self) -> None:
        self.specs: list[pb.TaskSpec] = []
        self.where: dict[Any, str | _Literal] = {}
        self.held: list[Future] = []  # futures the graph refers to

    def key_of(self, key: Any, opts: _Options) -> str:
        """The taskgrid key of a wanted Dask key, sending its literal if need be."""
        where = self.where[key]
        return where if isinstance(where, str) else self._send(where, opts)

    def _send(self, lit: _Literal, opts: _Options) -> str:
        if lit.tg is None:
            blob = lit.pickled()
            if len(blob) > LITERAL_MAX_BYTES:
                raise ValueError(
                    f"Dask literal {_show(lit.key)} is {len(blob)} bytes pickled, over the "
                    f"{LITERAL_MAX_BYTES}-byte limit of one message; load it in a task "
                    "(e.g. dask.delayed) instead of embedding it in the graph"
                )
            tg = tg_key(lit.key)
            fields = opts.fields(lit.key)
            self.specs.append(
                pb.TaskSpec(key=tg, func=ECHO_FUNC, input=blob, codec=_codec.PICKLE, **fields)
            )
            lit.tg = tg
        return lit.tg


def _pickle_task(obj: Any) -> bytes:
    """Plain pickle where it can (fast), else cloudpickle; always cloudpickle
    while modules are registered to travel by value
    (cloudpickle.register_pickle_by_value), which plain pickle ignores."""
    if cloudpickle.list_registry_pickle_by_value():
        return _codec._cloudpickle(obj)
    return _codec.dumps(obj)


_RUN: bytes | None = None


def _run_bytes() -> bytes:
    global _RUN
    if _RUN is None:
        _RUN = _codec.dumps_function(run_task)
    return _RUN


def plan(client: Client, dsk: Any, wanted: Iterable[Any], kwargs: Mapping[str, Any]) -> Plan:
    """Turn a Dask graph into TaskSpecs for the keys wanted (and what they
    need); raises before anything is sent when the graph is bad."""
    nodes, annotations = materialize(dsk)
    wanted = list(dict.fromkeys(wanted))
    needed = _cull(client, nodes, wanted)
    order = _topological(nodes, needed)
    opts = _Options(annotations, kwargs, client)
    out = Plan()
    run = _run_bytes()
    for key in order:
        node = nodes.get(key)
        if node is None:  # a taskgrid future's key (checked by _cull)
            out.where[key] = key
        elif isinstance(node, Alias):
            out.where[key] = out.where[node.target]
        elif isinstance(node, DataNode):
            value = node.value
            if type(value) is Future:
                out.where[key] = value.key
                out.held.append(value)
            else:
                out.where[key] = _Literal(key, value)
        else:
            _task_spec(out, key, node, opts, run)
    return out


def _task_spec(out: Plan, key: Any, node: GraphNode, opts: _Options, run: bytes) -> None:
    embedded: dict[Any, Any] = {}
    dep_keys: list[Any] = []
    slots: list[_codec.Dep] = []
    deps: list[str] = []
    index: dict[str, int] = {}
    for d in node.dependencies:
        where = out.where[d]
        if isinstance(where, _Literal) and len(where.pickled()) <= EMBED_MAX_BYTES:
            embedded[d] = where.value
            continue
        tg = where if isinstance(where, str) else out._send(where, opts)
        i = index.get(tg)
        if i is None:
            i = index[tg] = len(deps)
            deps.append(tg)
        dep_keys.append(d)
        slots.append(_codec.Dep(i))
    blob = _pickle_task((node, embedded))
    data = pickle.dumps((run, (blob, tuple(dep_keys), *slots), {}), protocol=5)
    tg = tg_key(key)
    out.where[key] = tg
    out.specs.append(
        pb.TaskSpec(
            key=tg,
            func=_codec.PY_CALL,
            input=data,
            codec=_codec.PICKLE,
            deps=deps,
            **opts.fields(key),
        )
    )


def _cull(client: Client, nodes: Mapping[Any, GraphNode], wanted: list[Any]) -> set[Any]:
    """The keys the wanted ones need; checks every key and outside reference."""
    needed: set[Any] = set()
    work = list(wanted)
    while work:
        k = work.pop()
        if k in needed:
            continue
        node = nodes.get(k)
        if node is None:
            if not (isinstance(k, str) and client._knows_key(k)):
                what = "wanted" if k in wanted else "a dependency"
                raise KeyError(
                    f"Dask key {_show(k)} is {what} but is neither in the graph nor the "
                    "key of a taskgrid future of this client; nothing was submitted"
                )
            needed.add(k)
            continue
        tg_key(k)  # a key of a bad type fails here, naming it
        needed.add(k)
        work.extend(node.dependencies)
    return needed


def _topological(nodes: Mapping[Any, GraphNode], needed: set[Any]) -> list[Any]:
    """Dependencies first, in dask.order's order among the ready; a cycle
    raises ValueError naming it."""
    deps = {k: list(nodes[k].dependencies) if k in nodes else [] for k in needed}
    waiting = {k: len(set(v)) for k, v in deps.items()}
    dependents: dict[Any, list[Any]] = {}
    for k, v in deps.items():
        for d in set(v):
            dependents.setdefault(d, []).append(k)
    rank = _dask_order(nodes, needed)
    heap = [(rank.get(k, 0), i, k) for i, k in enumerate(k for k, n in waiting.items() if n == 0)]
    heapq.heapify(heap)
    seq = len(heap)
    out: list[Any] = []
    while heap:
        k = heapq.heappop(heap)[2]
        out.append(k)
        for r in dependents.get(k, ()):
            waiting[r] -= 1
            if waiting[r] == 0:
                seq += 1
                heapq.heappush(heap, (rank.get(r, 0), seq, r))
    if len(out) < len(needed):
        raise ValueError(
            "the Dask graph has a cycle: "
            + " -> ".join(_show(k) for k in _a_cycle(deps, set(needed) - set(out)))
            + "; nothing was submitted"
        )
    return out


def _a_cycle(deps: Mapping[Any, list[Any]], left: set[Any]) -> list[Any]:
    """One cycle among the keys left after a topological sort."""
    k = next(iter(left))
    path: list[Any] = []
    seen: dict[Any, int] = {}
    while k not in seen:
        seen[k] = len(path)
        path.append(k)
        k = next(d for d in deps[k] if d in left)
    return [*path[seen[k] :], k]


def _dask_order(nodes: Mapping[Any, GraphNode], needed: set[Any]) -> dict[Any, int]:
    from dask.order import order

    sub = {k: nodes[k] for k in needed if k in nodes}
    if len(sub) < 2:
        return {}
    try:
        ranks: dict[Any, int] = order(sub)
    except Exception as e:  # noqa: BLE001 - order is advice; without it, FIFO
        logger.debug("dask.order failed on the graph (%s); submitting in graph order", e)
        return {}
    return ranks


# ---------------------------------------------------------------------------
# What Client.get / compute / persist do
# ---------------------------------------------------------------------------


def futures_of(
    client: Client, dsk: Any, keys: Iterable[Any], kwargs: Mapping[str, Any]
) -> tuple[dict[Any, Future], Plan]:
    """Submit the graph; a Future for each wanted key (literals sent too)."""
    wanted = list(dict.fromkeys(keys))
    p = plan(client, dsk, wanted, kwargs)
    opts = _Options({}, kwargs, client)
    tg_keys = [p.key_of(k, opts) for k in wanted]
    futures = client._submit_graph(p.specs, tg_keys)
    p.held.clear()  # submitted: the new futures hold what the graph referred to
    return dict(zip(wanted, futures)), p


def get_futures(client: Client, dsk: Any, keys: Any, kwargs: Mapping[str, Any]) -> Any:
    """Client.get(sync=False): Futures of `keys` (nested lists as given)."""
    flat = list(flatten(keys)) if isinstance(keys, list) else [keys]
    futures, _ = futures_of(client, dsk, flat, kwargs)
    return _pack(keys, futures)


def get(client: Client, dsk: Any, keys: Any, kwargs: Mapping[str, Any]) -> Any:
    """Client.get: the values of `keys` (nested lists as given)."""
    flat = list(flatten(keys)) if isinstance(keys, list) else [keys]
    wanted = list(dict.fromkeys(flat))
    p = plan(client, dsk, wanted, kwargs)
    values: dict[Any, Any] = {}
    remote = []
    for k in wanted:
        where = p.where[k]
        if isinstance(where, _Literal):
            values[k] = where.value
        else:
            remote.append((k, where))
    futures = client._submit_graph(p.specs, [w for _, w in remote])
    p.held.clear()
    try:
        for (k, _), fut in zip(remote, futures):
            values[k] = fut.result()
    finally:
        # Released now, not when an error's traceback lets them go: computing
        # the graph again (after a fix) runs it again.
        for fut in futures:
            fut.release()
        client._apply_decrefs()  # the releases go before any later submit
    return _pack(keys, values)


def _pack(keys: Any, values: Mapping[Any, Any]) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def compute(client: Client, collections: Any, sync: bool, kwargs: dict[str, Any]) -> Any:
    """Client.compute: a Future per collection (values if sync)."""
    from dask._expr import FinalizeCompute

    single = not isinstance(collections, (list, tuple, set, frozenset))
    items = [collections] if single else list(collections)
    if kwargs.pop("traverse", True):
        items = [
            delayed(a) if isinstance(a, (list, set, tuple, dict, Iterator)) else a for a in items
        ]
    optimize_graph = kwargs.pop("optimize_graph", True)
    options = {f: kwargs.pop(f) for f in list(kwargs) if f in FIELDS}
    variables = [a for a in items if is_dask_collection(a)]
    futures: dict[Any, Future] = {}
    names: list[Any] = []
    if variables:
        expr = collections_to_expr(variables, optimize_graph, **kwargs)
        expr = FinalizeCompute(expr).optimize()
        names = list(flatten(expr.__dask_keys__()))
        futures, _ = futures_of(client, expr, names, options)
    out: list[Any] = []
    i = 0
    for a in items:
        if is_dask_collection(a):
            out.append(futures[names[i]])
            i += 1
        else:
            out.append(a)
    if sync:
        out = client.gather(out)
    return out[0] if single else out


def persist(client: Client, collections: Any, kwargs: dict[str, Any]) -> Any:
    """Client.persist: the collections rebuilt over futures."""
    single = not isinstance(collections, (list, tuple, set, frozenset))
    items = [collections] if single else list(collections)
    bad = [type(a).__name__ for a in items if not is_dask_collection(a)]
    if bad:
        raise TypeError(f"persist takes Dask collections, got {', '.join(bad)}")
    optimize_graph = kwargs.pop("optimize_graph", True)
    options = {f: kwargs.pop(f) for f in list(kwargs) if f in FIELDS}
    expr = collections_to_expr(items, optimize_graph, **kwargs).optimize()
    keys = expr.__dask_keys__()
    futures, _ = futures_of(client, expr, list(flatten(keys)), options)
    out = []
    for a, ks in zip(items, keys):
        rebuild, state = a.__dask_postpersist__()
        out.append(rebuild({k: futures[k] for k in flatten(ks)}, *state))
    return out[0] if single else out


# ---------------------------------------------------------------------------
# On the worker
# ---------------------------------------------------------------------------


def run_task(blob: bytes, keys: tuple[Any, ...], *values: Any) -> Any:
    """Run one Dask task on a worker: `blob` is the pickled (task, literals
    it reads), `keys` the Dask keys of the dependency `values`."""
    try:
        node, embedded = pickle.loads(blob)
    except ImportError as e:
        raise _cannot_import(e) from e
    if keys:
        embedded.update(zip(keys, values))
    return node(embedded)


def _cannot_import(e: ImportError) -> ImportError:
    task = _context.current_task()
    key = task.key if task is not None else "?"
    module = e.name or "?"
    msg = (
        f"cannot load Dask task {key!r} on this worker: {e}. The task uses module "
        f"{module!r}, which this worker cannot import: install it on the workers, or "
        "have the client send it by value (cloudpickle.register_pickle_by_value(module))"
    )
    cls = ModuleNotFoundError if isinstance(e, ModuleNotFoundError) else ImportError
    return cls(msg, name=e.name, path=e.path)


# ---------------------------------------------------------------------------
# Dask's default scheduler
# ---------------------------------------------------------------------------


class DefaultScheduler:
    """What dask's ``scheduler`` setting holds while a taskgrid client is the
    default: the current client (in a task, the worker's), looked up at
    each compute; without one, Dask's local threaded scheduler."""

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        client = current_client()
        if client is None:
            from dask.threaded import get as threaded_get

            return threaded_get(dsk, keys, **kwargs)
        if client.asynchronous:  # as Dask says of its own
            raise RuntimeError(
                "Attempting to use an asynchronous Client in a synchronous context of "
                "`dask.compute`: use `await client.compute(x)` (or client.gather) instead"
            )
        return client.get(dsk, keys, **kwargs)

    def persist(self, collections: Any, **kwargs: Any) -> Any:
        client = current_client()
        if client is None:
            raise RuntimeError("no taskgrid client to persist on: create one first")
        return client.persist(collections, **kwargs)

    def __repr__(self) -> str:
        return "<taskgrid default Dask scheduler>"


DEFAULT = DefaultScheduler()


# The shuffle dask.dataframe uses on taskgrid, unless the user chose one:
# with no distributed client in the process Dask would pick "disk", which
# writes partd files into a local folder and so works only when every
# worker shares that filesystem; "tasks" is a plain graph, right on any
# cluster ("p2p" needs distributed's workers).
SHUFFLE = "tasks"
_SHUFFLE_KEY = "dataframe.shuffle.method"


def install_default() -> None:
    """Make taskgrid's current client Dask's scheduler, unless the user set
    a scheduler of their own, and its shuffle one that works on any
    cluster, unless the user set one."""
    if dask.config.get("scheduler", None) is None:
        dask.config.set(scheduler=DEFAULT)
    if dask.config.get(_SHUFFLE_KEY, None) is None:
        dask.config.set({_SHUFFLE_KEY: SHUFFLE})
        _ours.add(_SHUFFLE_KEY)


def uninstall_default() -> None:
    """Undo install_default (when no taskgrid client is left)."""
    if dask.config.get("scheduler", None) is DEFAULT:
        dask.config.config.pop("scheduler", None)
    if _SHUFFLE_KEY in _ours and dask.config.get(_SHUFFLE_KEY, None) == SHUFFLE:
        dask.config.set({_SHUFFLE_KEY: None})
    _ours.discard(_SHUFFLE_KEY)


_ours: set[str] = set()  # settings install_default made (not the user)


if _context.process_worker is not None:
    # A Python worker: Dask code in its tasks computes on the cluster.
    install_default()
