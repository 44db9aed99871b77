# SPDX-License-Identifier: Apache-2.0
"""No-op throughput from Python: client.map + gather of N tasks.

Cases (each on a fresh local cluster of 2 workers x 1 thread, timed from
the map call to the last result, after one warm-up round):

  tg-c       taskgrid, C workers, named function tg.noop
  tg-python  taskgrid, Python workers, a Python no-op callable
  dask       Dask distributed LocalCluster(n_workers=2, threads_per_worker=1)
  dask-noqueue  the same with worker-saturation = inf (Dask's queuing off)

    python bindings/python/bench/throughput.py                 # tg-c, tg-python
    bench/.venv/bin/python bindings/python/bench/throughput.py --case dask

Timings on small shared VMs swing run to run: compare within one run and
quote medians. Not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List


def noop(x):
    return None


def _measure(run: Callable[[], None], repeat: int) -> List[float]:
    run()  # warm-up: imports, function caches, first connections
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def bench_taskgrid(kind: str, n: int, repeat: int) -> List[float]:
    import taskgrid

    worker = "c" if kind == "tg-c" else "python"
    func = "tg.noop" if worker == "c" else noop
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1, worker=worker) as cl, \
            taskgrid.Client(cl) as client:

        def run() -> None:
            futures = client.map(func, range(n), pure=False)
            client.gather(futures)

        return _measure(run, repeat)


def bench_dask(n: int, repeat: int, no_queuing: bool) -> List[float]:
    import logging

    import dask
    from distributed import Client, LocalCluster

    if no_queuing:
        dask.config.set({"distributed.scheduler.worker-saturation": float("inf")})

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cl, \
            Client(cl) as client:

        def run() -> None:
            futures = client.map(noop, range(n), pure=False)
            client.gather(futures)

        return _measure(run, repeat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", action="append", choices=["tg-c", "tg-python", "dask", "dask-noqueue"])
    p.add_argument("-n", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    for case in args.case or ["tg-c", "tg-python"]:
        if case.startswith("dask"):
            times = bench_dask(args.n, args.repeat, case == "dask-noqueue")
        else:
            times = bench_taskgrid(case, args.n, args.repeat)
        med = statistics.median(times)
        print(f"{case:10s} n={args.n}  median {med:.3f} s  ({args.n / med:,.0f} tasks/s)  "
              f"min {min(times):.3f} s  max {max(times):.3f} s", flush=True)


if __name__ == "__main__":
    main()
