# SPDX-License-Identifier: Apache-2.0
"""performance_report: a self-contained HTML report of what ran in a block.

As Dask's ``performance_report(filename=...)``: a context manager that
records the task stream while the block runs (see _stream.py) and then
writes one HTML file: a summary per function (tasks, errors, total and
mean run time), the task stream drawn as inline SVG (a row per worker, a
bar per run, coloured by function, its key as tooltip), and the workers.
Plain HTML and SVG: no script, no CDN, nothing fetched when it is opened,
so the file can be mailed or archived as it is.
"""

from __future__ import annotations

import html
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client

_WIDTH = 1000
_ROW = 22
_HEX_TAIL = re.compile(r"-[0-9a-f]{6,}$")


def key_prefix(key: str) -> str:
    """The function part of a key, as Dask's key_split: "inc-1f3a..." is
    "inc"; a tuple key "('x-ab12', 0)" is "x"."""
    k = key
    if k.startswith("(") and "," in k:
        k = k[1:].split(",", 1)[0].strip("'\" ")
    k = _HEX_TAIL.sub("", k)
    parts = [p for p in k.split("-") if p and not p.isdigit()]
    return "-".join(parts) or key


def _colour(name: str) -> str:
    return f"hsl({zlib.crc32(name.encode()) % 360}, 60%, 55%)"


def summary(entries: Sequence[dict[str, Any]]) -> list[tuple[str, int, int, float]]:
    """(function, tasks, errors, total run seconds) per function."""
    acc: dict[str, list[float]] = {}
    for e in entries:
        ss = e["startstops"][0]
        a = acc.setdefault(key_prefix(e["key"]), [0, 0, 0.0])
        a[0] += 1
        a[1] += e["status"] != "OK"
        a[2] += ss["stop"] - ss["start"]
    return [(f, int(a[0]), int(a[1]), a[2]) for f, a in sorted(acc.items())]


def _svg(entries: Sequence[dict[str, Any]], t0: float, t1: float) -> str:
    workers = sorted({e["worker"] for e in entries})
    span = max(t1 - t0, 1e-6)
    rows = {w: i for i, w in enumerate(workers)}
    label = 160
    scale = (_WIDTH - label) / span
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{_ROW * max(len(workers), 1) + 24}" role="img" aria-label="task stream">'
    ]
    for w, i in rows.items():
        out.append(f'<text x="0" y="{i * _ROW + 15}" font-size="12">{html.escape(w)}</text>')
    for e in entries:
        ss = e["startstops"][0]
        x = label + (ss["start"] - t0) * scale
        width = max((ss["stop"] - ss["start"]) * scale, 1.0)
        fn = key_prefix(e["key"])
        fill = "#d33" if e["status"] != "OK" else _colour(fn)
        tip = html.escape(f"{e['key']} ({fn}) on {e['worker']}: {ss['stop'] - ss['start']:.4f} s")
        out.append(
            f'<rect x="{x:.1f}" y="{rows[e["worker"]] * _ROW + 2}" width="{width:.1f}" '
            f'height="{_ROW - 4}" fill="{fill}"><title>{tip}</title></rect>'
        )
    y = _ROW * max(len(workers), 1) + 18
    out.append(f'<text x="{label}" y="{y}" font-size="11">0 s</text>')
    out.append(f'<text x="{_WIDTH - 60}" y="{y}" font-size="11">{span:.3f} s</text>')
    out.append("</svg>")
    return "".join(out)


def render(entries: Sequence[dict[str, Any]], began: float, ended: float, title: str) -> str:
    """The report's HTML."""
    rows = "".join(
        f"<tr><td>{html.escape(f)}</td><td>{n}</td><td>{err}</td><td>{tot:.4f}</td>"
        f"<td>{tot / n:.6f}</td></tr>"
        for f, n, err, tot in summary(entries)
    )
    workers = sorted({e["worker"] for e in entries})
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(began))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Started {started}, ran {ended - began:.3f} s: {len(entries)} tasks on "
        f"{len(workers)} workers.</p>"
        "<h2>Functions</h2><table><tr><th>function</th><th>tasks</th><th>errors</th>"
        f"<th>total run s</th><th>mean run s</th></tr>{rows}</table>"
        f"<h2>Task stream</h2>{_svg(entries, began, ended)}"
        "<h2>Workers</h2><ul>"
        + "".join(f"<li>{html.escape(w)}</li>" for w in workers)
        + "</ul></body></html>\n"
    )


@contextmanager
def performance_report(
    filename: str = "dask-report.html",
    stacklevel: int = 1,
    mode: str | None = None,
    storage_options: Any = None,
) -> Iterator[None]:
    """Write an HTML report of the tasks run in the block to `filename`,
    as Dask's ``performance_report`` (for the current client). ``mode``
    and ``storage_options`` (Bokeh and fsspec options) are refused."""
    from ._future import current_client

    if mode is not None or storage_options is not None:
        raise NotImplementedError("performance_report: mode and storage_options are not supported")
    client: Client | None = current_client()
    if client is None:
        raise ValueError("performance_report needs a client: none is open")
    rec = client._task_stream()
    rec.acquire()
    began = time.time()
    try:
        yield
    finally:
        rec.flush()
        ended = time.time()
        entries = rec.entries(began, None, None)
        rec.release()
        with open(filename, "w", encoding="utf-8") as f:
            f.write(render(entries, began, ended, "taskgrid performance report"))
