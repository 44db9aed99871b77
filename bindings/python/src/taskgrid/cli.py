# SPDX-License-Identifier: Apache-2.0
"""The ``taskgrid`` command: look at a running cluster from a shell.

* ``taskgrid status --scheduler ADDR``: the workers (threads, tasks,
  memory), the tasks per state and the launcher (its target, failures
  and units: processes, Slurm jobs), as tables (``--json`` for scripts).
* ``taskgrid watch --scheduler ADDR``: live totals and a progress bar per
  function until interrupted, or ``--until-idle``: until nothing is
  waiting, ready or processing.
* ``taskgrid log-level --scheduler ADDR [LEVEL]``: the scheduler's log
  level, read or changed (admin role on a TLS cluster).

TLS: ``--tls-ca``, ``--tls-cert`` and ``--tls-key``, as the Python worker
names them (``tls://`` addresses only). ``--scheduler`` defaults to
``$TASKGRID_SCHEDULER_ADDRESS``.

The display is tqdm's, the library taskgrid.progress draws with, so the
package needs one display library, not two; tables are plain aligned text
that greps and pipes well. On a terminal ``watch`` draws bars; into a pipe
or a file it prints one line per change instead (no carriage returns in
logs). Exit status: 0, 1 for an error (named on stderr), 2 for a bad
command line, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, TextIO

from ._status import ClusterStatus, LauncherStatus
from ._watch import LOG_LEVELS, TaskCounts, WatchUpdate
from .errors import SchedulerError

__all__ = ["BarDisplay", "LineDisplay", "main"]

ENV_ADDRESS = "TASKGRID_SCHEDULER_ADDRESS"


class UsageError(Exception):
    """A command line that cannot work (exit status 2)."""


# ---------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------


def _security(args: argparse.Namespace) -> Any:
    from .security import Security

    given = {n: getattr(args, f"tls_{n}") for n in ("ca", "cert", "key")}
    tls = args.scheduler.startswith("tls://")
    if not tls:
        if any(given.values()):
            raise UsageError(
                f"--tls-* options were given but {args.scheduler} is plaintext; use tls://HOST:PORT"
            )
        return None
    missing = [f"--tls-{n}" for n, v in given.items() if not v]
    if missing:
        raise UsageError(f"{args.scheduler} is a TLS address: give {', '.join(missing)} too")
    pems = {}
    for name, path in given.items():
        try:
            with open(path, "rb") as f:
                pems[name] = f.read()
        except OSError as e:
            raise UsageError(f"cannot read --tls-{name} {path}: {e.strerror}") from None
    return Security(ca=pems["ca"], cert=pems["cert"], key=pems["key"])


def _connect(args: argparse.Namespace) -> Any:
    from ._rpc import parse_address
    from .client import Client

    if not args.scheduler:
        raise UsageError(f"no scheduler address: give --scheduler ADDR or set ${ENV_ADDRESS}")
    try:
        parse_address(args.scheduler)
    except ValueError as e:
        raise UsageError(f"--scheduler: {e}") from None
    return Client(
        args.scheduler, security=_security(args), timeout=args.timeout, set_as_default=False
    )


# ---------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------


def _bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def format_status(address: str, st: ClusterStatus) -> str:
    """What ``taskgrid status`` prints."""
    lines = [f"scheduler {address} (version {st.version or 'unknown'})", ""]
    if st.workers:
        rows = [["WORKER", "THREADS", "TASKS", "MEMORY", "SPILLED", "LIMIT", "RSS", "STATE"]]
        for w in st.workers:
            state = "draining" if w.draining else "paused" if w.paused else "running"
            rows.append(
                [
                    w.name,
                    str(w.nthreads),
                    str(w.processing) + (f" ({w.seceded} seceded)" if w.seceded else ""),
                    _bytes(w.memory),
                    _bytes(w.spilled),
                    _bytes(w.memory_limit) if w.memory_limit else "none",
                    _bytes(w.rss) if w.rss else "-",
                    state,
                ]
            )
        lines.append(_table(rows))
    else:
        lines.append("no workers connected")
    lines.append("")
    counts = [
        ["TASKS", "WAITING", "READY", "PROCESSING", "MEMORY", "ERRED", "CANCELLED", "UNPLACEABLE"],
        ["tasks"]
        + [
            str(v)
            for v in (
                st.waiting,
                st.ready,
                st.processing,
                st.memory,
                st.erred,
                st.cancelled,
                st.unplaceable,
            )
        ],
    ]
    lines.append(_table(counts))
    if st.launcher is not None:
        lines += ["", *format_launcher(st.launcher)]
    return "\n".join(lines)


def format_launcher(ln: LauncherStatus) -> list[str]:
    """The launcher's line and its units' table."""
    line = (
        f"launcher {ln.kind}: target {ln.target}, active {ln.active} "
        f"({ln.starting} starting), failures {ln.failures}"
    )
    out = [line]
    if ln.last_error:
        out.append(f"last error: {ln.last_error}")
    if ln.units:
        rows = [["UNIT", "STATE", "WHERE", "WORKERS", "CONNECTED"]]
        rows += [[u.id, u.state, u.where, str(u.workers), str(u.connected)] for u in ln.units]
        out.append(_table(rows))
    return out


def _status(args: argparse.Namespace, out: TextIO) -> int:
    with _connect(args) as client:
        st = client.status()
    if args.json:
        doc = dataclasses.asdict(st)
        for k in ("keys", "parents", "children", "ran"):
            doc.pop(k)
        doc["address"] = client.address
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(format_status(client.address, st) + "\n")
    return 0


# ---------------------------------------------------------------------------
# watch
# ---------------------------------------------------------------------------


def _totals_line(u: WatchUpdate) -> str:
    t = u.totals
    workers = f"workers {u.nworkers}" + (f"/{u.target_workers}" if u.target_workers else "")
    return (
        f"{workers} | waiting {t.waiting}  ready {t.ready}  processing {t.processing} | "
        f"memory {t.memory}  erred {t.erred}  cancelled {t.cancelled}  released {t.released}"
    )


def _function_note(c: TaskCounts) -> str:
    parts = [f"{c.processing} processing"] if c.processing else []
    parts += [f"{n} {what}" for n, what in ((c.erred, "erred"), (c.cancelled, "cancelled")) if n]
    return ", ".join(parts)


class LineDisplay:
    """One line per change (for pipes and files): the totals, then each
    function whose counts changed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._last = ""

    def update(self, u: WatchUpdate) -> None:
        line = _totals_line(u)
        stamp = time.strftime("%H:%M:%S", time.localtime(u.time or time.time()))
        if line != self._last:
            self.out.write(f"{stamp} {line}\n")
            self._last = line
        for name in sorted(u.functions):
            c = u.functions[name]
            note = _function_note(c)
            self.out.write(
                f"{stamp}   {name}: {c.done}/{c.total} done" + (f" ({note})" if note else "") + "\n"
            )
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class BarDisplay:
    """tqdm on a terminal: a live totals line, then one bar per function
    (in the order they appeared), each done/total with what runs or
    failed beside it."""

    def __init__(self, out: TextIO) -> None:
        from tqdm.std import tqdm

        self._tqdm = tqdm
        self.out = out
        self._line = tqdm(file=out, bar_format="{desc}", position=0, leave=True)
        self._bars: dict[str, Any] = {}

    def update(self, u: WatchUpdate) -> None:
        self._line.set_description_str(_totals_line(u), refresh=True)
        for name in sorted(u.functions):
            c = u.functions[name]
            bar = self._bars.get(name)
            if bar is None:
                bar = self._bars[name] = self._tqdm(
                    file=self.out,
                    desc=name,
                    unit="task",
                    position=len(self._bars) + 1,
                    leave=True,
                    dynamic_ncols=True,
                )
            bar.total = c.total
            bar.n = c.done
            bar.set_postfix_str(_function_note(c), refresh=False)
            bar.colour = "red" if c.erred else None
            bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._line.close()


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    bars = args.bars if args.bars is not None else out.isatty()
    display: LineDisplay | BarDisplay = BarDisplay(out) if bars else LineDisplay(out)
    try:
        with (
            _connect(args) as client,
            client.watch(functions=True, workers=True, interval=args.interval) as w,
        ):
            for update in w:
                display.update(update)
                if args.until_idle and update.totals.active == 0:
                    return 0
    finally:
        display.close()
    if args.until_idle:
        raise SchedulerError("the scheduler ended the watch before the cluster was idle")
    return 0


# ---------------------------------------------------------------------------
# log-level
# ---------------------------------------------------------------------------


def _log_level(args: argparse.Namespace, out: TextIO) -> int:
    with _connect(args) as client:
        previous = client.set_log_level(args.level)
    if args.level:
        out.write(f"log level: {previous} -> {args.level.lower()}\n")
    else:
        out.write(f"{previous}\n")
    return 0


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--scheduler",
        metavar="ADDR",
        default=os.environ.get(ENV_ADDRESS, ""),
        help=f"tcp://host:port or tls://host:port (default: ${ENV_ADDRESS})",
    )
    common.add_argument("--tls-ca", help="CA certificate (PEM) of the cluster")
    common.add_argument("--tls-cert", help="this client's certificate (PEM)")
    common.add_argument("--tls-key", help="this client's private key (PEM)")
    common.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the scheduler to answer (default 10)",
    )
    p = argparse.ArgumentParser(prog="taskgrid", description="Look at a running taskgrid cluster.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", parents=[common], help="workers and tasks per state")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    w = sub.add_parser("watch", parents=[common], help="live totals and progress per function")
    w.add_argument("--interval", type=float, default=0.5, help="seconds between updates (0.5)")
    w.add_argument(
        "--until-idle",
        action="store_true",
        help="exit once nothing is waiting, ready or processing",
    )
    w.add_argument(
        "--bars",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: when the output is a terminal) or lines",
    )
    ll = sub.add_parser("log-level", parents=[common], help="read or set the log level")
    ll.add_argument(
        "level", nargs="?", metavar="LEVEL", help=f"one of {', '.join(LOG_LEVELS)}; none: read"
    )
    return p


_COMMANDS = {"status": _status, "watch": _watch, "log-level": _log_level}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    out = out or sys.stdout
    err = sys.stderr
    if args.command == "log-level" and args.level and args.level.lower() not in LOG_LEVELS:
        err.write(
            f"taskgrid log-level: unknown level {args.level!r}: use one of "
            f"{', '.join(LOG_LEVELS)}\n"
        )
        return 2
    try:
        return _COMMANDS[args.command](args, out)
    except UsageError as e:
        err.write(f"taskgrid {args.command}: {e}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except PermissionError as e:
        err.write(f"taskgrid {args.command}: permission denied: {e}\n")
        return 1
    except (SchedulerError, NotImplementedError, ValueError, OSError) as e:
        err.write(f"taskgrid {args.command}: {e}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
