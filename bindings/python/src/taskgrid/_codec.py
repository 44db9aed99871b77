# SPDX-License-Identifier: Apache-2.0
"""How Python values travel as task inputs and results.

The rule, shared by the client and the Python worker:

* A Python callable runs as function ``py.call`` with codec ``pickle``: its
  input is ``pickle((function_bytes, args, kwargs))`` where function_bytes
  is the cloudpickled callable (pickled once per callable and cached on both
  sides) and every Future among the arguments is replaced by a
  :class:`Dep` placeholder naming its position in ``TaskSpec.deps``. The
  worker swaps the dependency results in. Its result is pickled too, so
  Python types survive exactly (tuples stay tuples).
* A named function (``client.submit("tg.inc", 1)``) is language neutral:
  its input is a JSON array of the literal arguments (codec ``json``), and
  each dependency result is passed as one more argument after them, in
  order (the C worker's convention). Python named functions return JSON
  when the value is JSON-serializable, else pickle.
* Decoding is by codec tag: ``pickle`` -> pickle.loads, ``json`` ->
  json.loads, ``raw`` (or empty) -> bytes, where an empty raw result (e.g.
  of ``tg.noop``) is ``None``, as on the C side.

A C built-in fed a pickled result fails with a clear TypeError naming the
codec; that is by design (C cannot read pickle).

Plain pickle is tried first (fast, and the cache-friendly common case);
cloudpickle is used when that fails or when the payload refers to
``__main__``, which a worker process cannot import (the trick
distributed.protocol.pickle uses).
"""

from __future__ import annotations

import json
import pickle
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Callable

import cloudpickle

PY_CALL = "py.call"
PICKLE = "pickle"
JSON = "json"
RAW = "raw"
_PROTOCOL = 5


def dumps(obj: Any) -> bytes:
    """Pickle `obj` so that another Python process can load it."""
    try:
        data = pickle.dumps(obj, protocol=_PROTOCOL)
        if b"__main__" not in data:
            return data
    except Exception:  # noqa: BLE001 - anything pickle refuses goes to cloudpickle
        pass
    return _cloudpickle(obj)


def _cloudpickle(obj: Any) -> bytes:
    data: bytes = cloudpickle.dumps(obj, protocol=_PROTOCOL)  # cloudpickle is untyped
    return data


loads = pickle.loads


def decode(data: bytes, codec: str) -> Any:
    """Decode a result or dependency by its codec tag."""
    if codec == PICKLE:
        return pickle.loads(data)
    if codec == JSON:
        return json.loads(data) if data else None
    if codec in (RAW, ""):
        return bytes(data) if data else None
    if codec == "msgpack":
        try:
            import msgpack
        except ImportError as e:
            raise TypeError("a result has codec 'msgpack': pip install msgpack") from e
        return msgpack.unpackb(data, raw=False)
    raise TypeError(f"cannot decode a result with unknown codec {codec!r}")


# One encoder for all calls: json.dumps with options builds a new one each time.
_json_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def encode_json(value: Any) -> bytes | None:
    """JSON bytes of `value`, or None when it is not plain JSON."""
    try:
        return _json_encode(value).encode()
    except (TypeError, ValueError):
        return None


def encode_named_result(value: Any) -> tuple[bytes, str]:
    """Result of a named function: JSON when possible, else pickle."""
    if value is None:
        return b"null", JSON
    data = encode_json(value)
    if data is not None:
        return data, JSON
    return dumps(value), PICKLE


# ---------------------------------------------------------------------------
# Functions: pickled once per callable (client) and loaded once per distinct
# bytes (worker).
# ---------------------------------------------------------------------------

_fn_bytes: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_fn_lock = threading.Lock()


def dumps_function(fn: Callable[..., Any]) -> bytes:
    try:
        cached = _fn_bytes.get(fn)
    except TypeError:  # unhashable callable
        return _cloudpickle(fn)
    if cached is not None:
        return cached
    data = _cloudpickle(fn)
    try:
        with _fn_lock:
            _fn_bytes[fn] = data
    except TypeError:  # no weak references (e.g. some builtins)
        pass
    return data


class FunctionCache:
    """Worker side: bytes -> callable, bounded LRU."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._d: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, data: bytes) -> Callable[..., Any]:
        with self._lock:
            fn = self._d.get(data)
            if fn is not None:
                self._d.move_to_end(data)
                return fn
        loaded: Callable[..., Any] = pickle.loads(data)
        with self._lock:
            self._d[data] = loaded
            if len(self._d) > self._size:
                self._d.popitem(last=False)
        return loaded


# ---------------------------------------------------------------------------
# Dependencies: futures in arguments become placeholders.
# ---------------------------------------------------------------------------


class Dep:
    """Placeholder for the result of dependency number `index`."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (Dep, (self.index,))

    def __repr__(self) -> str:
        return f"Dep({self.index})"


_SCALARS = (int, float, str, bytes, bool, type(None))


def extract(
    obj: Any,
    is_future: Callable[[Any], bool],
    found: dict[str, int],
    keys: list[str],
    futures: list[Any],
) -> Any:
    """Replace futures in `obj` (lists, tuples, sets, dicts) with Deps.

    `found` maps a dependency key to its index in `keys`; `futures` collects
    the Future objects in the same order (kept alive until submitted).
    Containers without futures are returned as they are (no copy).
    """
    t = type(obj)
    if t in _SCALARS:
        return obj
    if is_future(obj):
        k = obj.key
        i = found.get(k)
        if i is None:
            i = found[k] = len(keys)
            keys.append(k)
            futures.append(obj)
        return Dep(i)
    if isinstance(obj, (list, tuple, set, frozenset)):
        out = [extract(x, is_future, found, keys, futures) for x in obj]
        if all(a is b for a, b in zip(out, obj)):
            return obj
        if t is list:
            return out
        if t is tuple or t is set or t is frozenset:
            return t(out)
        # Subclasses (e.g. Prefect's PrefectFutureList) become their base
        # type, which the worker rebuilds; namedtuples keep their type.
        if isinstance(obj, tuple) and hasattr(t, "_fields"):
            return t(*out)
        for base in (list, tuple, frozenset, set):
            if isinstance(obj, base):
                return base(out) if base is not list else out
    if isinstance(obj, dict):
        changed = False
        d = {}
        for k, v in obj.items():
            nv = extract(v, is_future, found, keys, futures)
            changed = changed or nv is not v
            d[k] = nv
        return d if changed else obj
    return obj


def substitute(obj: Any, values: list[Any]) -> Any:
    """Inverse of extract on the worker: Deps -> dependency values."""
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is Dep:
        return values[obj.index]
    if t is list:
        return [substitute(x, values) for x in obj]
    if t is tuple or t is set or t is frozenset:
        return t(substitute(x, values) for x in obj)
    if t is dict:
        return {k: substitute(v, values) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(t, "_fields"):  # a namedtuple
        return t(*(substitute(x, values) for x in obj))
    return obj


def has_futures(items: Iterable[Any], is_future: Callable[[Any], bool]) -> bool:
    return any(is_future(x) for x in items)
