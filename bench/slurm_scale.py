# SPDX-License-Identifier: Apache-2.0
"""Time to scale a Slurm cluster 0 -> N workers and back, taskgrid's
SLURMCluster beside dask-jobqueue's, on the same one-node Slurm
(tests/cluster/slurm.sh, started here under a temporary folder), in the
same run, alternating rounds.

    python3 bench/slurm_scale.py [--workers 3] [--rounds 5]

Needs root (the test Slurm runs as root), Debian's slurm-wlm and munge,
the taskgrid Python package with its programs (TASKGRID_BIN_DIR) and,
for the comparison, dask-jobqueue. Each round: scale to N one-core jobs
and time until N workers are connected; run N tasks; scale to 0 and time
until squeue lists none of the cluster's jobs. Medians are printed as a
Markdown table with the ratio (dask-jobqueue / taskgrid).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
SLURM_SH = ROOT / "tests" / "cluster" / "slurm.sh"


def _wait(what: str, cond: Callable[[], bool], timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - t0


def _jobs(name: str) -> int:
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    return len(out.split())


def _round(cluster: Any, client: Any, name: str, n: int) -> tuple[float, float]:
    """Scale `cluster` to `n` one-core jobs, time until `n` workers are
    connected; run n tasks; scale to 0, time until squeue lists none of
    the jobs named `name`."""
    with cluster, client:
        t0 = time.monotonic()
        cluster.scale(jobs=n)
        client.wait_for_workers(n, timeout=120)
        up = time.monotonic() - t0
        assert sum(client.gather(client.map(abs, range(-n, 0)))) == n * (n + 1) // 2
        t0 = time.monotonic()
        cluster.scale(0)
        _wait(f"the jobs {name} to leave squeue", lambda: _jobs(name) == 0)
        down = time.monotonic() - t0
    return up, down


def taskgrid_round(n: int, log_dir: str) -> tuple[float, float]:
    import taskgrid

    cluster = taskgrid.SLURMCluster(
        cores=1,
        processes=1,
        memory="1GB",
        host="127.0.0.1",
        job_name="tg-bench",
        log_directory=log_dir,
        dashboard_address=None,
    )
    return _round(cluster, taskgrid.Client(cluster), "tg-bench", n)


def dask_round(n: int, log_dir: str) -> tuple[float, float]:
    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        cores=1,
        processes=1,
        memory="1GB",
        job_name="dask-bench",
        log_directory=log_dir,
        scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
    )
    return _round(cluster, Client(cluster), "dask-bench", n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tg-slurm-bench-")
    started = subprocess.run(["bash", str(SLURM_SH), "start", tmp], capture_output=True, text=True)
    if started.returncode != 0:
        print(started.stdout + started.stderr, file=sys.stderr)
        return 77 if started.returncode == 77 else 1
    for line in started.stdout.splitlines():
        k, _, v = line.partition("=")
        os.environ[k] = v
    results: dict[str, list[tuple[float, float]]] = {"taskgrid": [], "dask-jobqueue": []}
    runners: dict[str, Any] = {"taskgrid": taskgrid_round}
    try:
        import dask_jobqueue  # noqa: F401

        runners["dask-jobqueue"] = dask_round
    except ImportError:
        print("dask-jobqueue not installed: taskgrid only", file=sys.stderr)
    try:
        for r in range(args.rounds):
            for name, run in runners.items():
                up, down = run(args.workers, tmp)
                results[name].append((up, down))
                print(f"round {r + 1} {name}: up {up:.2f} s, down {down:.2f} s", flush=True)
    finally:
        subprocess.run(["bash", str(SLURM_SH), "stop", tmp], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: (statistics.median(u for u, _ in v), statistics.median(d for _, d in v))
           for k, v in results.items() if v}
    print(f"\n| {args.workers} one-core jobs, median of {args.rounds} | 0 -> {args.workers} "
          f"workers connected | {args.workers} -> 0, jobs gone from squeue |")
    print("|---|---|---|")
    for k, (u, d) in med.items():
        print(f"| {k} | {u:.2f} s | {d:.2f} s |")
    if "dask-jobqueue" in med:
        tu, td = med["taskgrid"]
        du, dd = med["dask-jobqueue"]
        print(f"| ratio (dask-jobqueue / taskgrid) | {du / tu:.1f}x | {dd / td:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
