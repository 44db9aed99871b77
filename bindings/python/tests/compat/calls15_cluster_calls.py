"""Cluster-wide calls: who_has, scheduler_info, run, futures_of."""
import json

from distributed import Client, LocalCluster, futures_of


def inc(x: int) -> int:
    return x + 1


def answer() -> int:
    return 42


def boom() -> None:
    raise ValueError("boom")


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2)
            a = client.submit(inc, 1, key="inc-a")
            b = client.submit(inc, a, key="inc-b")
            client.gather([a, b])
            wh = client.who_has([a, b])
            info = client.scheduler_info()
            workers = list(info["workers"].values())
            ran = client.run(answer)
            errs = client.run(boom, on_error="return")
            nested = futures_of({"x": [a, (b, a)], "y": 3})
            print(json.dumps({
                "who_has_keys": sorted(wh),
                "who_has_each_held": all(len(v) >= 1 for v in wh.values()),
                "info_type": info["type"],
                "info_fields": {k: k in info for k in ("id", "address", "services", "workers")},
                "nworkers": len(workers),
                "worker_fields": [sorted(k for k in ("name", "nthreads", "memory_limit") if k in w)
                                  for w in workers],
                "nthreads": [w["nthreads"] for w in workers],
                "run": sorted(ran.values()),
                "run_errors": sorted(type(e).__name__ for e in errs.values()),
                "futures_of": [f.key for f in nested],
            }))
