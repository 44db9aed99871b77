"""performance_report: an HTML file naming each function that ran."""
import importlib.util
import json
import os
import tempfile

from distributed import Client, LocalCluster, performance_report


def inc(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return 2 * x


if __name__ == "__main__":
    if Client.__module__.startswith("distributed") and importlib.util.find_spec("bokeh") is None:
        # Dask's report is drawn with Bokeh; without it Dask cannot run this.
        print(json.dumps({"skip": "Dask's performance_report needs bokeh, not installed"}))
        raise SystemExit(0)
    report = os.path.join(tempfile.mkdtemp(), "report.html")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster) as client:
            with performance_report(filename=report):
                got = client.gather(client.map(double, client.map(inc, range(4))))
            text = open(report, encoding="utf-8").read()
            print(json.dumps({
                "result": got,
                "report_exists": os.path.exists(report),
                "report_mentions": {f: f in text for f in ("inc", "double")},
            }))
