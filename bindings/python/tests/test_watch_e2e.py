# SPDX-License-Identifier: Apache-2.0
"""Watch, progress, SetLogLevel and the taskgrid command against the real
scheduler and C workers (LocalCluster).

Tests that need Scheduler.Watch or SetLogLevel are skipped, saying so,
while the scheduler answers UNIMPLEMENTED for them; they run (and must
pass) once it implements them. ``taskgrid status`` needs only Status and
always runs."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest

import taskgrid

TIMEOUT = 30.0


def watch_or_skip(client: taskgrid.Client, **kwargs) -> tuple[taskgrid.Watch, taskgrid.WatchUpdate]:
    """An open watch and its first update; skip if Watch is not there."""
    w = client.watch(**kwargs)
    try:
        return w, w.next(timeout=TIMEOUT)
    except NotImplementedError as e:
        w.close()
        pytest.skip(f"the scheduler does not implement Watch yet (UNIMPLEMENTED): {e}; "
                    "this test passes once it does")


def test_diamond_events_come_in_order(c_client: taskgrid.Client) -> None:
    tag = f"dia{time.monotonic_ns():x}"
    a = c_client.submit("tg.inc", 1, key=f"{tag}-a")
    b = c_client.submit("tg.inc", a, key=f"{tag}-b")
    c = c_client.submit("tg.dec", a, key=f"{tag}-c")
    d = c_client.submit("tg.add", b, c, key=f"{tag}-d")
    keys = [f.key for f in (a, b, c, d)]
    w, first = watch_or_skip(c_client, keys=keys, task_events=True)
    events: list[taskgrid.TaskEvent] = list(first.tasks)
    counts = first.keys_counts
    with w:
        deadline = time.monotonic() + TIMEOUT
        while counts.active or counts.total != 4:
            assert time.monotonic() < deadline, f"not final in time: {counts}"
            u = w.next(timeout=TIMEOUT)
            events += u.tasks
            counts = u.keys_counts
    assert counts.memory == 4
    assert d.result(TIMEOUT) == 4
    finished = {e.key: i for i, e in enumerate(events) if e.state == "memory"}
    # The watch opened after the submit, so early events may predate it;
    # those it saw keep the graph's order.
    if {a.key, d.key} <= finished.keys():
        assert finished[a.key] < finished[d.key]
    for e in events:
        if e.state == "memory":
            assert e.worker, e
            assert e.function in ("tg.inc", "tg.dec", "tg.add")
    per_key: dict[str, list[str]] = {}
    for e in events:
        per_key.setdefault(e.key, []).append(e.state)
    rank = {"unspecified": 0, "waiting": 1, "ready": 2, "processing": 3, "memory": 4}
    for key, states in per_key.items():
        assert states == sorted(states, key=rank.__getitem__), (key, states)


def test_totals_functions_and_workers(c_client: taskgrid.Client) -> None:
    w, first = watch_or_skip(c_client, functions=True, workers=True)
    with w:
        assert first.nworkers == 2
        joined = {e.worker.name for e in first.workers if e.kind == "joined"}
        assert len(joined) == 2
        futures = c_client.map("tg.inc", range(20), key="fn-inc")
        c_client.gather(futures, timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            u = w.next(timeout=TIMEOUT)
            inc = u.functions.get("tg.inc")
            if inc is not None and inc.memory >= 20:
                break
            assert time.monotonic() < deadline, "tg.inc's counts never reached 20"


def test_progress_of_real_futures_shows_errors(c_client: taskgrid.Client) -> None:
    tag = f"pg{time.monotonic_ns():x}"
    futures = c_client.map("tg.sleep", [0.05] * 12, key=f"{tag}-sleep", pure=False)
    futures.append(c_client.submit("tg.fail", "no", key=f"{tag}-fail"))
    out = io.StringIO()
    try:
        taskgrid.progress(futures, file=out, notebook=False)
    except NotImplementedError as e:
        pytest.skip(f"the scheduler does not implement Watch yet (UNIMPLEMENTED): {e}")
    text = out.getvalue()
    assert "13/13" in text and "1 erred" in text
    assert all(f.done() for f in futures)


def test_progress_splits_across_streams_for_real(c_client: taskgrid.Client,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from taskgrid import _progress

    monkeypatch.setattr(_progress, "_STREAM_KEYS", 7)
    futures = c_client.map("tg.inc", range(30), key=f"sp{time.monotonic_ns():x}")
    p = _progress.Progress(c_client, [f.key for f in futures], file=io.StringIO())
    assert p.streams == 5
    try:
        p.run()
    except NotImplementedError as e:
        pytest.skip(f"the scheduler does not implement Watch yet (UNIMPLEMENTED): {e}")
    assert p.counts[""].memory == 30


def test_set_log_level_for_real(c_client: taskgrid.Client) -> None:
    try:
        before = c_client.set_log_level()
    except NotImplementedError as e:
        pytest.skip(f"the scheduler does not implement SetLogLevel yet (UNIMPLEMENTED): {e}")
    assert before in taskgrid._watch.LOG_LEVELS
    assert c_client.set_log_level("debug") == before
    assert c_client.set_log_level(before) == "debug"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskgrid", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))


def test_cli_status_lists_the_workers(c_cluster: taskgrid.LocalCluster,
                                      c_client: taskgrid.Client) -> None:
    r = _cli("status", "--scheduler", c_cluster.address)
    assert r.returncode == 0, r.stderr
    names = {w.name for w in c_client.status().workers}
    lines = r.stdout.splitlines()
    assert {line.split()[0] for line in lines if line.split()[:1] and
            line.split()[0] in names} == names
    r = _cli("status", "--json", "--scheduler", c_cluster.address)
    assert {w["name"] for w in json.loads(r.stdout)["workers"]} == names


def test_cli_watch_until_idle(c_cluster: taskgrid.LocalCluster,
                              c_client: taskgrid.Client) -> None:
    futures = c_client.map("tg.sleep", [0.2] * 4, key=f"cw{time.monotonic_ns():x}")
    r = _cli("watch", "--scheduler", c_cluster.address, "--until-idle", "--interval", "0.05")
    if r.returncode == 1 and "does not implement it" in r.stderr:
        pytest.skip("the scheduler does not implement Watch yet (UNIMPLEMENTED)")
    assert r.returncode == 0, r.stderr
    assert "workers 2" in r.stdout
    assert all(f.done() for f in futures) or c_client.gather(futures, timeout=TIMEOUT)
