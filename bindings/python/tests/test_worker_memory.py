# SPDX-License-Identifier: Apache-2.0
"""The Python worker's memory management, against a scripted scheduler
(the harness of test_data_service.py): held results past the target
spill to files and are still served, uploaded and used whole; pause is
reported over the pause fraction and cleared when results are freed; a
result larger than the limit plus the spill space fails with
tg.ResultTooLarge and the worker goes on; past the terminate fraction the
process exits with status 3; the limits parse as Dask's do.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Callable

import pytest

from taskgrid import _codec
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.worker.memory import parse_fraction, parse_memory_limit, total_memory

from test_data_service import (  # noqa: F401 - the fixture
    HERE,
    MEMORY,
    MIB,
    TIMEOUT,
    cluster,
    fetch,
    held,
    joined,
    length,
    make,
)
from test_worker_protocol import py_call


def report(link: Any, ok: Callable[[Any], bool], what: str) -> Any:
    """The first memory report `ok` accepts."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        m = link.get(lambda m: m.HasField("memory"))
        assert m is not None, "the stream ended"
        if ok(m.memory):
            return m.memory
    raise AssertionError(f"never reported {what}")


def test_held_results_spill_and_read_back(cluster, tmp_path) -> None:
    fake, address = cluster()
    spill = tmp_path / "spill"
    w = cluster.worker(address, name="m1", memory_limit="8MiB", memory_target=0.5,
                       spill_dir=str(spill))
    link, reg = fake.connect("m1")
    n = 2 * MIB
    keys = ["r0", "r1", "r2", "r3"]
    sizes = {}
    for k in keys:
        link.send(assign=[py_call(k, make, n)])
        r = link.results(1)[k]
        assert r.held
        sizes[k] = r.size
    # About 8 MiB held, 4 MiB allowed in memory: the three oldest spill.
    rep = report(link, lambda r: r.spilled >= 3 * n and r.memory <= 4 * MIB, "a spill")
    assert rep.limit == 8 * MIB and not rep.paused
    assert rep.spilled == sizes["r0"] + sizes["r1"] + sizes["r2"]
    assert rep.memory == sizes["r3"]
    assert len(os.listdir(spill)) == 3
    assert w._data.store.get("r0").spilled  # type: ignore[union-attr]

    expected = _codec.dumps(make(n))
    for k in keys:
        assert joined(fetch(reg.data_address, k), k) == expected
    link.send(upload=[pb.Upload(id=9, key="r1")])
    pieces: list = []
    while sum(len(c.data) for c in pieces) < len(expected):
        m = link.get(lambda m: bool(m.chunks))
        assert m is not None
        pieces += list(m.chunks)
    assert joined(pieces, "r1") == expected
    dep = held(reg.data_address, "r0")
    dep.size = sizes["r0"]
    link.send(assign=[py_call("len", length, _codec.Dep(0), deps=(dep,))])
    r = link.results(1)["len"]
    assert r.state == MEMORY and _codec.loads(r.data) == n

    # Freed: the files go too.
    link.send(free=keys)
    report(link, lambda r: r.memory == 0 and r.spilled == 0, "an empty store")
    deadline = time.monotonic() + TIMEOUT
    while os.listdir(spill) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.listdir(spill) == []


def test_pause_is_reported_and_cleared(cluster) -> None:
    fake, address = cluster()
    cluster.worker(address, name="p1", memory_limit=4 * MIB, memory_target=None,
                   memory_pause=0.5)
    link, _reg = fake.connect("p1")
    link.send(assign=[py_call("a", make, 3 * MIB)])
    assert link.results(1)["a"].held
    rep = report(link, lambda r: r.paused, "paused")
    assert rep.memory > 3 * MIB and rep.spilled == 0 and rep.limit == 4 * MIB
    link.send(free=["a"])
    report(link, lambda r: not r.paused and r.memory == 0, "unpaused")


def test_a_result_too_large_fails_and_the_worker_goes_on(cluster) -> None:
    fake, address = cluster()
    cluster.worker(address, name="t1", memory_limit="1MiB", memory_target="none")
    link, _reg = fake.connect("t1")
    link.send(assign=[py_call("huge", make, 2 * MIB)])
    r = link.results(1)["huge"]
    assert r.state == pb.TASK_STATE_ERRED
    assert r.error.type == "tg.ResultTooLarge"
    assert "memory limit 1048576 bytes" in r.error.message
    assert f"{2 * MIB}" in r.error.message or "bytes, more than" in r.error.message
    link.send(assign=[py_call("next", make, 500_000)])
    r = link.results(1)["next"]
    assert r.state == MEMORY and r.held


def test_past_the_terminate_fraction_the_process_exits_3(cluster) -> None:
    fake, address = cluster()
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskgrid.worker", address, "--name", "x1",
         "--memory-limit", "2MiB", "--memory-target", "none", "--memory-terminate", "0.5"],
        stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path])))
    try:
        link, _reg = fake.connect("x1")
        link.send(assign=[py_call("big", make, 1_500_000)])
        err = proc.communicate(timeout=TIMEOUT)[1]
        assert proc.returncode == 3, err
        assert "over the terminate fraction 0.50 of the memory limit 2097152 bytes" in err
        assert "exiting with status 3" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("value, want", [
    ("4GiB", 4 << 30), ("500MB", 500_000_000), ("1.5kib", 1536), ("1e6", 1_000_000),
    (123, 123), ("none", 0), (None, 0), ("0", 0),
])
def test_memory_limits_parse(value: Any, want: int) -> None:
    assert parse_memory_limit(value) == want


def test_memory_limit_auto_and_errors() -> None:
    assert parse_memory_limit("auto") == total_memory() > 0
    with pytest.raises(ValueError, match="memory_limit must be bytes"):
        parse_memory_limit("4XB")
    assert parse_fraction("none", "memory_pause") == 0.0
    assert parse_fraction(0.7, "memory_pause") == 0.7
    with pytest.raises(ValueError, match="memory_target must be a fraction"):
        parse_fraction(1.5, "memory_target")
    proc = subprocess.run([sys.executable, "-m", "taskgrid.worker", "tcp://127.0.0.1:1",
                           "--memory-limit", "lots"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2 and "memory_limit must be bytes" in proc.stderr
