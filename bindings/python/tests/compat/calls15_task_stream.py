"""get_task_stream: one entry per task run, in Dask's shape."""
import json

from distributed import Client, LocalCluster, get_task_stream


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return 2 * x


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster) as client:
            with get_task_stream() as ts:
                incs = client.map(inc, range(4))
                got = client.gather(client.map(double, incs))
            entries = ts.data
            print(json.dumps({
                "result": got,
                "entries": len(entries),
                "entry_fields": sorted({k for e in entries for k in e
                                        if k in ("key", "worker", "startstops", "status")}),
                "actions": sorted({s["action"] for e in entries for s in e["startstops"]
                                   if s["action"] == "compute"}),
                "statuses": sorted({e["status"] for e in entries}),
            }))
