"""dask.annotate around submit, map and Dask collections."""
import json

import dask
from dask import delayed

from distributed import Client, LocalCluster, get_worker

def flaky(path: str) -> str:
    import os

    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first attempt fails")
    return "retried"


def where(x: int = 0) -> object:
    return get_worker().name


if __name__ == "__main__":
    out = {}
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           resources={"GPU": 1}, dashboard_address=None)
    with cluster, Client(cluster) as client:
        first = client.submit(where, pure=False).result()
        with dask.annotate(workers=[first]):
            pinned = client.map(where, range(6), pure=False)
            lazy = [delayed(where)(i) for i in range(6, 12)]
        out["pinned_map"] = set(client.gather(pinned)) == {first}
        out["pinned_collection"] = set(dask.compute(*lazy)) == {first}
        with dask.annotate(workers=[first], allow_other_workers=True):
            out["loose"] = client.submit(where, 99).result() == first
        with dask.annotate(retries=2):
            out["retried"] = client.submit(flaky, "marker-submit").result()
        with dask.annotate(resources={"GPU": 1}):
            gpu = [delayed(where)(i) for i in range(4)]
            out["gpu_results"] = len(dask.compute(*gpu))
        with dask.annotate(retries=2):
            out["collection_retried"] = delayed(flaky)("marker-delayed").compute()
        with dask.annotate(resources={"GPU": 1}):
            futs = client.map(where, range(4))
        out["gpu_map"] = len(client.gather(futs))
    print(json.dumps(out))
