# SPDX-License-Identifier: Apache-2.0
"""TaskSpecs from submit/map calls: options, arguments, dependencies, keys.

Runs in the caller's thread, before anything is queued. A Python callable
becomes a ``py.call`` task whose input is the pickled (function, args,
kwargs), with the Futures among the arguments lifted out as dependencies;
a function name (``"tg.inc"``) becomes a task of that name with JSON
arguments and trailing Futures as dependencies. Task options come from the
explicit arguments, else from the annotation blocks in force; a submission made
from inside a running task names that task as its parent (TaskSpec.parent),
so cancelling the task cancels it too.

Depends on _options (task options and the parent task), _codec, _future
(to spot Futures) and the stubs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

from . import _codec, _options
from ._future import _is_future
from ._rpc import pb

# A call: (positional arguments, keyword arguments).
Call = tuple[tuple[Any, ...], dict[str, Any]]
# Client._key: (name, pure, input bytes, dependency keys) -> task key.
KeyOf = Callable[[str, "bool | None", bytes, list[str]], str]

_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.]+")


def name_of(fn: Any) -> str:
    """The readable part of a derived key: the function's name, key-safe."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return _KEY_CHARS.sub("_", name).strip("_")[:80] or "task"


def options(
    priority: int | None,
    resources: Mapping[str, float] | None,
    retries: int | None,
    workers: Sequence[str] | None,
) -> dict[str, Any]:
    """TaskSpec fields from explicit arguments, else the annotation blocks
    in force (see _options.task_options)."""
    return _options.strip(
        _options.task_options(None, "scatter", priority, resources, retries, workers)
    )


def build(
    func: Any,
    calls: Iterable[Call],
    keys: Sequence[str] | None,
    prefix: str | None,
    pure: bool | None,
    extra: dict[str, Any],
    key_of: KeyOf,
) -> tuple[list[pb.TaskSpec], list[str]]:
    """TaskSpecs for calls of `func`; returns (specs, keys)."""
    if isinstance(func, str):
        return _named(func, calls, keys, prefix, pure, extra, key_of)
    if not callable(func):
        raise TypeError(f"cannot submit {func!r}: not callable and not a function name")
    specs: list[pb.TaskSpec] = []
    out_keys: list[str] = []
    TaskSpec = pb.TaskSpec
    fbytes = _codec.dumps_function(func)
    name = prefix or name_of(func)
    scalars = _codec._SCALARS
    dumps = _codec.dumps
    for i, (args, kwargs) in enumerate(calls):
        deps: list[str] = []
        if any(type(a) not in scalars for a in args) or kwargs:
            found: dict[str, int] = {}
            hold: list[Any] = []
            args = _codec.extract(args, _is_future, found, deps, hold)
            if kwargs:
                kwargs = _codec.extract(kwargs, _is_future, found, deps, hold)
        data = dumps((fbytes, args, kwargs))
        key = keys[i] if keys is not None else key_of(name, pure, data, deps)
        if deps:
            specs.append(
                TaskSpec(
                    key=key,
                    func=_codec.PY_CALL,
                    input=data,
                    codec=_codec.PICKLE,
                    deps=deps,
                    **extra,
                )
            )
        else:
            specs.append(
                TaskSpec(key=key, func=_codec.PY_CALL, input=data, codec=_codec.PICKLE, **extra)
            )
        out_keys.append(key)
    return specs, out_keys


def _named(
    func: str,
    calls: Iterable[Call],
    keys: Sequence[str] | None,
    prefix: str | None,
    pure: bool | None,
    extra: dict[str, Any],
    key_of: KeyOf,
) -> tuple[list[pb.TaskSpec], list[str]]:
    """TaskSpecs for calls of a worker's named function (JSON arguments)."""
    if "." not in func:
        raise ValueError(f"named functions are 'namespace.name' (e.g. 'tg.inc'), got {func!r}")
    specs: list[pb.TaskSpec] = []
    out_keys: list[str] = []
    name = prefix or func
    for i, (args, kwargs) in enumerate(calls):
        if kwargs:
            raise TypeError(
                f"named function {func!r} takes positional arguments only "
                f"(got keyword arguments {sorted(kwargs)})"
            )
        literal: list[Any] = []
        deps: list[str] = []
        for a in args:
            if _is_future(a):
                deps.append(a.key)
            elif deps:
                raise TypeError(
                    f"{func!r}: dependency results are passed after the "
                    "literal arguments, so futures must come last "
                    f"(got {a!r} after a future)"
                )
            else:
                literal.append(a)
        data = _codec.encode_json(literal) if literal else b""
        if data is None:
            raise TypeError(
                f"arguments of named function {func!r} must be JSON "
                f"(plus trailing futures); got {literal!r}"
            )
        key = keys[i] if keys is not None else key_of(name, pure, data, deps)
        specs.append(
            pb.TaskSpec(key=key, func=func, input=data, codec=_codec.JSON, deps=deps, **extra)
        )
        out_keys.append(key)
    return specs, out_keys
