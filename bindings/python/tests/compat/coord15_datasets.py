"""publish_dataset / get_dataset / unpublish_dataset / list_datasets across clients."""

import json

from distributed import Client, LocalCluster


def inc(x: int) -> int:
    return x + 1


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        out = {}
        with Client(cluster) as a, Client(cluster, set_as_default=False) as b:
            a.publish_dataset(a.submit(inc, 1, key="inc-1"), name="fut")
            a.publish_dataset(x=[1, 2], y={"k": "v"})
            out["names"] = b.list_datasets()
            out["fut"] = b.get_dataset("fut").result()
            out["xy"] = b.get_dataset(["x", "y"])
            out["default"] = b.get_dataset("missing", default="d")
            try:
                b.get_dataset("missing")
            except KeyError:
                out["missing"] = "KeyError"
            try:
                b.publish_dataset(1, name="x")
            except KeyError:
                out["exists"] = "KeyError"
            b.publish_dataset(3, name="x", override=True)
            out["x"] = a.get_dataset("x")
            b.unpublish_dataset("x")
            out["after"] = a.list_datasets()
            out["mapping"] = sorted(b.datasets)
            b.datasets["z"] = 5
            out["z"] = a.get_dataset("z")
            print(json.dumps(out))
