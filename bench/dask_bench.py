# SPDX-License-Identifier: Apache-2.0
"""Dask distributed's side of the benchmarks (bench/README.md).

Runs the same cases as bench/tg_bench.c on LocalCluster(n_workers=2,
threads_per_worker=1) and prints lines in the same format:

    case=noop n=10000 run=1 seconds=15.2 rate=657.0

`--no-queuing` sets distributed.scheduler.worker-saturation to inf (Dask's
"queuing off" mode). Functions are module-level so they pickle by name.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def noop(*_args) -> None:
    return None


def inc(x: int) -> int:
    return x + 1


def dec(x: int) -> int:
    return x - 1


def add(x: int, y: int) -> int:
    return x + y


def total(xs) -> int:
    return sum(xs)


def wait_forever(seconds: float) -> None:
    time.sleep(seconds)


def nested_parent(n: int) -> int:
    from distributed import get_client, rejoin, secede

    client = get_client()
    futures = client.map(inc, range(n), pure=False)
    secede()
    results = client.gather(futures)
    rejoin()
    return sum(results)


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def run(args: argparse.Namespace) -> int:
    import dask
    from distributed import Client, LocalCluster

    if args.no_queuing:
        dask.config.set({"distributed.scheduler.worker-saturation": float("inf")})
    if args.case == "startup":
        for r in range(1, args.repeat + 1):
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=2, threads_per_worker=1,
                                   dashboard_address=None)
            client = Client(cluster)
            client.wait_for_workers(2)
            t1 = time.perf_counter()
            client.close()
            cluster.close()
            t2 = time.perf_counter()
            print(f"case=startup workers=2 run={r} start_ms={(t1 - t0) * 1e3:.1f} "
                  f"stop_ms={(t2 - t1) * 1e3:.1f}", flush=True)
        return 0

    with LocalCluster(n_workers=2, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        n = args.n
        for r in range(1, args.repeat + 1):
            if args.case == "noop":
                t0 = time.perf_counter()
                fs = client.map(noop, range(n), pure=False)
                client.gather(fs)
                dt = time.perf_counter() - t0
                del fs
                print(f"case=noop n={n} run={r} seconds={dt:.6f} rate={n / dt:.1f}",
                      flush=True)
            elif args.case == "roundtrip":
                lat = []
                for i in range(n):
                    t0 = time.perf_counter()
                    client.submit(noop, i, pure=False).result()
                    lat.append((time.perf_counter() - t0) * 1e6)
                lat.sort()
                p99 = lat[min(len(lat) - 1, (len(lat) * 99) // 100)]
                print(f"case=roundtrip n={n} run={r} p50_us={statistics.median(lat):.1f} "
                      f"p99_us={p99:.1f}", flush=True)
            elif args.case == "diamond":
                t0 = time.perf_counter()
                incs = client.map(inc, range(n), pure=False)
                decs = client.map(dec, range(n), pure=False)
                adds = client.map(add, incs, decs, pure=False)
                result = client.submit(total, adds, pure=False).result()
                dt = time.perf_counter() - t0
                del incs, decs, adds
                print(f"case=diamond m={n} run={r} seconds={dt:.6f} result={result}",
                      flush=True)
            elif args.case == "nested":
                t0 = time.perf_counter()
                parents = client.map(nested_parent, [args.children] * n, pure=False)
                result = sum(client.gather(parents))
                dt = time.perf_counter() - t0
                print(f"case=nested parents={n} children={args.children} run={r} "
                      f"seconds={dt:.6f} result={result}", flush=True)
            elif args.case == "mapreduce":
                import dask.bag as db

                # The same graph as tg_bench's: n partitions of 100 numbers,
                # summed each, then a tree reduction of fan-in 8.
                bag = db.from_sequence(range(n * 100), npartitions=n)
                t0 = time.perf_counter()
                result = bag.sum(split_every=8).compute(scheduler=client)
                dt = time.perf_counter() - t0
                print(f"case=mapreduce n={n} run={r} seconds={dt:.6f} result={result}",
                      flush=True)
            elif args.case == "pending":
                base = client.run_on_scheduler(_ntasks)
                before = client.run_on_scheduler(rss_bytes)
                root = client.submit(wait_forever, 3600, pure=False)
                t0 = time.perf_counter()
                fs = client.map(noop, [root] * n, pure=False)
                # Wait until the scheduler knows every task.
                while client.run_on_scheduler(_ntasks) < base + n + 1:
                    time.sleep(0.05)
                dt = time.perf_counter() - t0
                after = client.run_on_scheduler(rss_bytes)
                print(f"case=pending n={n} run={r} seconds={dt:.6f} "
                      f"bytes_per_task={(after - before) / n:.1f}", flush=True)
                client.cancel(fs + [root])
                del fs, root
            else:
                print(f"unknown case {args.case}", file=sys.stderr)
                return 2
    return 0


def _ntasks(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--case", required=True,
                   choices=["noop", "roundtrip", "diamond", "nested", "pending",
                            "mapreduce", "startup"])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--children", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-queuing", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "error")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
