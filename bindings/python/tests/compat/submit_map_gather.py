"""submit, map and gather with common options."""
import json

from distributed import Client, LocalCluster


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int = 0) -> int:
    return x + y


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster) as client:
            a = client.submit(inc, 1, key="inc-a")
            b = client.submit(add, a, y=10, pure=False, priority=5)
            many = client.map(inc, range(10))
            total = client.submit(sum, many)
            got = client.gather([a, b, total])
            errs = client.gather(client.map(add, [1, 2], [3, 4]))
            print(json.dumps({"a": got[0], "b": got[1], "total": got[2],
                              "pairs": errs, "key": a.key}))
