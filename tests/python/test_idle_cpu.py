# SPDX-License-Identifier: Apache-2.0
"""An idle cluster costs (almost) no CPU: a scheduler with 2 C workers,
registered and waiting for work, spends a small fraction of a core. A
thread that spins (a timed wait that returns at once, a poll loop with no
sleep) shows here as a whole core; a worker that did so once halved the
speed of every result moved between workers on a 2-core machine."""
from __future__ import annotations

import os
import pathlib
import time

import grpc

from conftest import BIN, run_scheduler, wait_for_workers

# CPU seconds the whole idle cluster may spend in WINDOW wall seconds.
WINDOW = 2.0
BUDGET = 0.25


def _children(pid: int) -> list[int]:
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        out.extend(int(k) for k in kids)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_cluster_uses_almost_no_cpu(pb) -> None:
    with run_scheduler(["--listen", "tcp://127.0.0.1:0", "--workers", "2",
                        "--nthreads", "1", "--worker-bin",
                        str(BIN / "worker" / "taskgrid-worker")],
                       return_pid=True) as (addr, spid):
        with grpc.insecure_channel(addr) as ch:
            wait_for_workers(pb, ch, 2)
        workers = _children(spid)
        assert len(workers) == 2, workers
        pids = [spid, *workers]
        before = {p: _cpu_seconds(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(WINDOW)  # the measurement window itself, not a wait for a state
        wall = time.monotonic() - t0
        used = {p: _cpu_seconds(p) - before[p] for p in pids}
        assert sum(used.values()) < BUDGET * wall / WINDOW, (
            f"idle for {wall:.1f} s the cluster used {used} CPU seconds "
            f"(scheduler pid {spid}, workers {workers})")
