# SPDX-License-Identifier: Apache-2.0
"""The dask.dataframe benchmark (bench/README.md): one Dask collection
computed on taskgrid and on Dask distributed, each on 2 Python workers x 1
thread with the scheduler in its own process, in the same run; lines in the
format bench/report.py reads:

    who=taskgrid case=dataframe part=groupby run=1 seconds=9.81 sched_cpu_s=0.42 ...

The workload: ``dask.datasets.timeseries(start, end, freq, partition_freq,
seed)`` (the same seed on both systems, so the same data), then
``groupby("name").x.mean()`` (part=groupby) and ``describe()``
(part=describe), each computed with ``dask.compute(x, scheduler=client)``,
the same call on both. Per run and part: the wall time of the compute,
the scheduler process's CPU seconds during it (user + system, from
/proc/PID/stat), its peak RSS (sampled every 20 ms), the benchmark
process's own CPU seconds (the client: graph conversion and submission)
and the 1-minute load average when the run started (other work on the
machine).

Runs alternate between the systems (taskgrid then Dask, Dask then
taskgrid, ...), each run on a fresh cluster, so that other work on the
machine weighs on both alike.

Every answer is checked against a reference: the first system's first run
of that part, or, when only one system runs, Dask's synchronous scheduler
in this process. Floats are compared with a relative tolerance (sums over
partitions may be added in another order). Before timing, each cluster
computes the same workload over its first partitions, so imports on the
workers are not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import data_bench

PARTS = ("groupby", "describe")
# The groupby over 52 partitions shuffles; Dask picks "p2p" (a Dask
# distributed worker extension) under a distributed client and "disk" (a
# shared local folder) otherwise, so the method is fixed to "tasks" (a
# shuffle made of ordinary tasks) for both: the same graph on both systems.
SHUFFLE = {"dataframe.shuffle.method": "tasks"}
RTOL = 1e-9


def rusage_cpu() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def workload(args: argparse.Namespace, end: str | None = None) -> dict[str, Any]:
    """The collections of each part, built fresh (no cached results), and
    the number of input partitions."""
    import dask.datasets

    df = dask.datasets.timeseries(
        start=args.start,
        end=end or args.end,
        freq=args.freq,
        partition_freq=args.partition_freq,
        seed=args.seed,
    )
    return {
        "groupby": df.groupby("name").x.mean(),
        "describe": df.describe(),
        "partitions": df.npartitions,
    }


def check(part: str, got: Any, want: Any) -> None:
    """Raise AssertionError naming the part if `got` is not `want`."""
    import pandas as pd

    try:
        if part == "groupby":
            pd.testing.assert_series_equal(
                got.sort_index(), want.sort_index(), check_exact=False, rtol=RTOL
            )
        else:
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=RTOL)
    except AssertionError as e:
        raise AssertionError(f"part={part}: the answers differ from the reference: {e}") from e


@contextlib.contextmanager
def cluster(system: str) -> Iterator[tuple[Any, int]]:
    """A client of a 2 x 1 cluster of `system` and its scheduler's pid."""
    make = data_bench.taskgrid_cluster if system == "taskgrid" else data_bench.dask_cluster
    with make() as (client, _names, pid, _workers):
        yield client, pid


def measure(
    system: str, run: int, args: argparse.Namespace, answer: Callable[[str, Any], None]
) -> None:
    """Run `run` of every part on a fresh cluster of `system`, one line each."""
    import dask

    with cluster(system) as (client, pid), dask.config.set(SHUFFLE):
        warm = workload(args, end=_warm_end(args))
        dask.compute(*(warm[p] for p in PARTS), scheduler=client)
        for part in PARTS:
            w = workload(args)
            x = w[part]
            tasks = len(x.optimize().__dask_graph__())
            load1 = os.getloadavg()[0]
            s0, c0 = data_bench.cpu_seconds([pid]), rusage_cpu()
            with data_bench.PeakRSS(pid) as rss:
                t0 = time.perf_counter()
                (got,) = dask.compute(x, scheduler=client)
                seconds = time.perf_counter() - t0
            sched_cpu = data_bench.cpu_seconds([pid]) - s0
            client_cpu = rusage_cpu() - c0
            answer(part, got)
            rows = f" rows={int(got.loc['count', 'x'])}" if part == "describe" else ""
            print(
                f"who={system} case=dataframe part={part} start={args.start} end={args.end} "
                f"freq={args.freq} partition_freq={args.partition_freq} "
                f"partitions={w['partitions']}{rows} tasks={tasks} run={run} "
                f"seconds={seconds:.3f} sched_cpu_s={sched_cpu:.3f} "
                f"sched_rss_mb={rss.peak / data_bench.MIB:.1f} "
                f"client_cpu_s={client_cpu:.3f} load1={load1:.2f}",
                flush=True,
            )


def _warm_end(args: argparse.Namespace) -> str:
    """The end of a short workload: a few partitions from the start."""
    import pandas as pd

    step = pd.tseries.frequencies.to_offset(args.partition_freq)
    return str(min(pd.Timestamp(args.start) + 3 * step, pd.Timestamp(args.end)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--systems",
        default="taskgrid,dask",
        help="comma-separated, run in this order: taskgrid, dask (default both)",
    )
    ap.add_argument("--start", default="2000-01-01")
    ap.add_argument("--end", default="2001-01-01")
    ap.add_argument("--freq", default="1s")
    ap.add_argument("--partition-freq", default="1W")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    systems = [s for s in a.systems.split(",") if s]
    bad = [s for s in systems if s not in ("taskgrid", "dask")]
    if bad or not systems or len(set(systems)) != len(systems):
        ap.error(f"--systems {a.systems!r}: give taskgrid and/or dask, each once")
    if a.repeat <= 0:
        ap.error("--repeat must be positive")
    try:
        import pandas as pd

        if pd.Timestamp(a.end) <= pd.Timestamp(a.start):
            ap.error(f"--end {a.end} is not after --start {a.start}")
        pd.tseries.frequencies.to_offset(a.freq)
        pd.tseries.frequencies.to_offset(a.partition_freq)
    except ValueError as e:
        ap.error(f"bad date or frequency: {e}")

    reference: dict[str, Any] = {}
    if len(systems) == 1:
        import dask

        with dask.config.set(SHUFFLE):
            local = workload(a)
            values = dask.compute(*(local[p] for p in PARTS), scheduler="sync")
        reference.update(zip(PARTS, values))

    def answer(part: str, got: Any) -> None:
        if part in reference:
            check(part, got, reference[part])
        else:
            reference[part] = got

    # Runs alternate between the systems (A B, B A, A B, ...), each on a
    # fresh cluster, so both see the same load from other work.
    for run in range(1, a.repeat + 1):
        for system in systems if run % 2 else systems[::-1]:
            measure(system, run, a, answer)
    what = "each other" if len(systems) > 1 else "Dask's synchronous scheduler"
    print(f"dataframe: answers of {', '.join(systems)} equal to {what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
