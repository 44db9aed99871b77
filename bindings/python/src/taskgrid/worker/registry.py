# SPDX-License-Identifier: Apache-2.0
"""Named Python functions a worker provides (besides pickled callables).

A ``--preload`` module registers them at import time::

    # shout.py, run with: python -m taskgrid.worker ADDR --preload shout.py
    import taskgrid.worker

    @taskgrid.worker.register("demo.shout")
    def shout(number):
        return f"#{number}"

Any client can then call them by name, in any language
(``client.submit("demo.shout", 3)``): arguments arrive JSON-decoded,
followed by one argument per dependency result; results go back as JSON
when they are JSON-serializable (else pickle, which only Python reads).
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

_NAME = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)+$")
_lock = threading.Lock()
_functions: dict[str, Callable[..., Any]] = {}


@overload
def register(name: str) -> Callable[[F], F]: ...


@overload
def register(name: str, fn: F) -> F: ...


def register(name: str, fn: F | None = None) -> F | Callable[[F], F]:
    """Register `fn` under ``"namespace.name"`` (usable as a decorator)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"function names are 'namespace.name', got {name!r}")
    if name.startswith(("tg.", "py.")):
        raise ValueError(f"{name!r}: the 'tg' and 'py' namespaces are taskgrid's own")

    def add(f: F) -> F:
        if not callable(f):
            raise TypeError(f"cannot register {f!r}: not callable")
        with _lock:
            _functions[name] = f
        return f

    return add(fn) if fn is not None else add


def lookup(name: str) -> Callable[..., Any] | None:
    return _functions.get(name)


def names() -> list[str]:
    with _lock:
        return sorted(_functions)
