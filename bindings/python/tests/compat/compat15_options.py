"""Dask's submit/map options: where tasks run, retries, batches, errors."""
import json
import time

from distributed import Client, LocalCluster, get_worker

def where(x: int = 0) -> object:
    return get_worker().name


def held(x: int) -> int:
    time.sleep(0.01)
    return x


def flaky(path: str) -> str:
    import pathlib

    marker = pathlib.Path(path)
    attempts = len(marker.read_text()) if marker.exists() else 0
    marker.write_text("x" * (attempts + 1))
    if attempts == 0:
        raise RuntimeError("first attempt fails")
    return "retried"


def kw(**kwargs: object) -> list:
    return sorted(kwargs)


if __name__ == "__main__":
    out = {}
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                      resources={"slot": 1}, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            first = client.submit(where, pure=False).result()
            pinned = client.map(where, range(8), workers=[first], pure=False)
            out["pinned_to_one"] = set(client.gather(pinned)) == {first}
            loose = client.submit(where, 99, workers=[first], allow_other_workers=True)
            out["loose_on_it"] = loose.result() == first
            slots = client.map(held, range(12), resources={"slot": 1}, batch_size=5)
            out["slots"] = client.gather(slots)
            out["retried"] = client.submit(flaky, "marker", retries=2).result()
            out["options_not_passed"] = client.submit(
                kw, fifo_timeout="1s", allow_other_workers=False, actor=False, a=1).result()
            batched = client.map(lambda x: x * 2, range(7), batch_size=3)
            out["batched"] = client.gather(batched)
    print(json.dumps(out))
