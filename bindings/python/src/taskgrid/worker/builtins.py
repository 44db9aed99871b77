# SPDX-License-Identifier: Apache-2.0
"""The tg.* built-ins, with the C worker's semantics, for Python workers.

So a graph written against the C built-ins (tg.inc, tg.sum, ...) also runs
on a cluster of Python workers, and mixed clusters may place them on
either. Arguments: the JSON input (an array is spread) followed by one
argument per dependency result; results are JSON (tg.noop: an empty raw
result, tg.echo: its input with its codec). Errors use the C worker's types
and messages (TypeError, ValueError, tg.Fail, tg.Cancelled).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable

from .. import _codec


class Fail(Exception):
    """tg.fail's error (reported with type 'tg.Fail')."""

    wire_type = "tg.Fail"


class Cancelled(Exception):
    wire_type = "tg.Cancelled"


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def args_of(fname: str, assignment: Any) -> list[Any]:
    """The JSON input (spread if an array) plus dependency results."""
    out: list[Any] = []
    if assignment.input:
        if assignment.codec != _codec.JSON:
            raise TypeError(
                f"{fname} takes JSON arguments, but the input has "
                f"codec '{assignment.codec or 'raw'}'"
            )
        try:
            v = json.loads(assignment.input)
        except ValueError as e:
            raise ValueError(f"{fname}: the input is not valid JSON: {e}") from None
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    for i, d in enumerate(assignment.deps):
        codec = d.codec or _codec.RAW
        if codec == _codec.RAW and not d.data:
            out.append(None)
            continue
        if codec != _codec.JSON:
            raise TypeError(
                f"{fname} takes JSON arguments, but dependency {i + 1} has codec '{codec}'"
            )
        out.append(json.loads(d.data))
    return out


def _json(v: Any) -> tuple[bytes, str]:
    return json.dumps(v, separators=(",", ":")).encode(), _codec.JSON


def _step(fname: str, delta: int) -> Callable[[Any, Any], tuple[bytes, str]]:
    def fn(task: Any, a: Any) -> tuple[bytes, str]:
        args = args_of(fname, a)
        if len(args) != 1:
            raise TypeError(
                f"{fname} expects one number, got {len(args)} argument{_plural(len(args))}"
            )
        if not _is_number(args[0]):
            raise TypeError(f"{fname} expects one number, got {_json_type(args[0])}")
        return _json(args[0] + delta)

    return fn


def _add(task: Any, a: Any) -> tuple[bytes, str]:
    args = args_of("tg.add", a)
    if len(args) < 2:
        raise TypeError(
            f"tg.add expects at least two numbers, got {len(args)} argument{_plural(len(args))}"
        )
    for i, v in enumerate(args):
        if not _is_number(v):
            raise TypeError(f"tg.add expects numbers, got {_json_type(v)} as argument {i + 1}")
    return _json(sum(args))


def _sum(task: Any, a: Any) -> tuple[bytes, str]:
    total: Any = 0
    for i, v in enumerate(args_of("tg.sum", a)):
        if isinstance(v, list):
            for x in v:
                if not _is_number(x):
                    raise TypeError(
                        "tg.sum expects numbers or arrays of numbers, "
                        f"got {_json_type(x)} in argument {i + 1}"
                    )
                total += x
        elif _is_number(v):
            total += v
        else:
            raise TypeError(f"tg.sum expects numbers, got {_json_type(v)} as argument {i + 1}")
    return _json(total)


def _noop(task: Any, a: Any) -> tuple[bytes, str]:
    return b"", _codec.RAW


def _echo(task: Any, a: Any) -> tuple[bytes, str]:
    return bytes(a.input), a.codec or _codec.RAW


def _sleep(task: Any, a: Any) -> tuple[bytes, str]:
    args = args_of("tg.sleep", a)
    if len(args) != 1:
        raise TypeError(
            f"tg.sleep expects one number of seconds, got {len(args)} argument{_plural(len(args))}"
        )
    secs = args[0]
    if not _is_number(secs) or not secs >= 0:
        what = "a negative number" if _is_number(secs) else _json_type(secs)
        raise TypeError(f"tg.sleep expects a non-negative number of seconds, got {what}")
    end = time.monotonic() + min(secs, 1e9)
    while True:
        if task.cancelled:
            raise Cancelled("tg.sleep was cancelled")
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.02))
    return _json(secs)


_print_lock = threading.Lock()


def _print(task: Any, a: Any) -> tuple[bytes, str]:
    args = args_of("tg.print", a)
    if len(args) != 1:
        raise TypeError(
            f"tg.print expects one argument, got {len(args)} argument{_plural(len(args))}"
        )
    line = json.dumps(args[0], separators=(",", ":"))
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return line.encode(), _codec.JSON


def _fail(task: Any, a: Any) -> tuple[bytes, str]:
    args = args_of("tg.fail", a)
    if len(args) == 1 and isinstance(args[0], str):
        raise Fail(args[0])
    if not args:
        raise Fail("tg.fail was called")
    raise Fail(" ".join(json.dumps(v, separators=(",", ":")) for v in args))


BUILTINS: dict[str, Callable[[Any, Any], tuple[bytes, str]]] = {
    "tg.noop": _noop,
    "tg.echo": _echo,
    "tg.sleep": _sleep,
    "tg.inc": _step("tg.inc", 1),
    "tg.dec": _step("tg.dec", -1),
    "tg.add": _add,
    "tg.sum": _sum,
    "tg.print": _print,
    "tg.fail": _fail,
}
