# SPDX-License-Identifier: Apache-2.0
"""Turn bench/results.log (lines "who=X case=Y key=value ...") into the
markdown table of bench/RESULTS.md: median and min-max per system, and the
ratio of taskgrid to Dask (how many times better taskgrid is)."""
from __future__ import annotations

import collections
import platform
import statistics
import subprocess
import sys

# case -> (size key, [(metric, unit, higher_is_better)])
METRICS = {
    "floor_unary": ("n", [("p50_us", "µs", False), ("p99_us", "µs", False)]),
    "floor_stream": ("n", [("rate", "msg/s", True)]),
    "noop": ("n", [("rate", "tasks/s", True), ("seconds", "s", False)]),
    "roundtrip": ("n", [("p50_us", "µs", False), ("p99_us", "µs", False)]),
    "diamond": ("m", [("seconds", "s", False)]),
    "nested": ("parents", [("seconds", "s", False)]),
    # Per-task memory compares across N (Dask cannot hold 1M in time).
    "pending": (None, [("bytes_per_task", "B/task", False)]),
    # Map over partitions, then a tree reduction of fan-in 8.
    "mapreduce": ("n", [("seconds", "s", False)]),
    "startup": ("workers", [("start_ms", "ms", False), ("stop_ms", "ms", False)]),
    # The data plane (bench/data_bench.py).
    "floor": ("mb", [("gbps", "GB/s", True)]),
    "transfer": ("mb", [("gbps", "GB/s", True), ("seconds", "s", False)]),
    # The same with C workers (no pickling): taskgrid only.
    "transfer_c": ("mb", [("gbps", "GB/s", True), ("seconds", "s", False)]),
    "pipeline": ("mb", [("seconds", "s", False), ("sched_rss_mb", "MiB", False)]),
    # Dask collections (bench/dataframe_bench.py): its own section.
    "dataframe": ("part", [("seconds", "s", False), ("sched_cpu_s", "s", False),
                           ("sched_rss_mb", "MiB", False), ("client_cpu_s", "s", False)]),
}
# Cases reported in a section of their own, not in the main table.
SECTION_CASES = ("dataframe",)


def parse(path: str):
    data = collections.defaultdict(list)
    skipped = {}
    for line in open(path, encoding="utf-8"):
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "who" not in fields or "case" not in fields:
            continue
        case = fields["case"]
        if "skipped" in fields:
            skipped[(case, fields["who"])] = line.split("skipped=", 1)[1].strip()
            continue
        size_key, metrics = METRICS.get(case, (None, []))
        size = fields.get(size_key, "") if size_key else "per task"
        for metric, _, _ in metrics:
            if metric in fields:
                data[(case, size, metric, fields["who"])].append(float(fields[metric]))
    return data, skipped


def num(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def fmt(vals):
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return num(med)
    return f"{num(med)} ({num(min(vals))}–{num(max(vals))})"


def main(path: str) -> None:
    data, skipped = parse(path)
    rows = []
    seen = []
    for (case, size, metric, _who) in data:
        if case not in SECTION_CASES and (case, size, metric) not in seen:
            seen.append((case, size, metric))
    print("# Benchmark results\n")
    print("Produced by `bash bench/run.sh --full` (raw lines go to `bench/results.log`, a run output kept out of git).")
    print(f"Machine: {platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
          f"{platform.system()} {platform.release()}; Python {platform.python_version()}.")
    print("Dask: LocalCluster(n_workers=2, threads_per_worker=1), defaults, and again with "
          "`distributed.scheduler.worker-saturation: inf` (no queuing). taskgrid: a temporary "
          "local cluster of 2 workers x 1 thread (C workers, built-in functions).")
    print("Each cell: median (min–max) over the runs. Ratio: how many times better "
          "taskgrid is than Dask's default (and than Dask without queuing).\n")
    print("| case | size | metric | taskgrid | Dask | Dask, no queuing | ratio |")
    print("|---|---|---|---|---|---|---|")
    for case, size, metric in seen:
        unit, higher = next((u, h) for m, u, h in METRICS[case][1] if m == metric)
        tg = data.get((case, size, metric, "taskgrid"), [])
        dk = data.get((case, size, metric, "dask"), [])
        dq = data.get((case, size, metric, "dask-noqueue"), [])
        fl = data.get((case, size, metric, "floor"), [])
        ratio = ""
        if tg and dk:
            a, b = statistics.median(tg), statistics.median(dk)
            r = a / b if higher else b / a
            ratio = f"{r:,.1f}x"
            if dq:
                c = statistics.median(dq)
                ratio += f" ({(a / c if higher else c / a):,.1f}x)"
        if fl:
            what = "raw loopback TCP copy" if case == "floor" else "raw gRPC, no scheduling"
            rows.append(f"| {case} ({what}) | {size} | {metric} {unit} | {fmt(fl)} | | | |")
            continue
        rows.append(f"| {case} | {size} | {metric} {unit} | {fmt(tg)} | {fmt(dk)} | {fmt(dq)} | {ratio} |")
    print("\n".join(rows))
    def med(case, size, metric, who="taskgrid"):
        v = data.get((case, size, metric, who), [])
        return statistics.median(v) if v else None

    print("\n## Targets (2-core machine, same run)\n")
    checks = [
        ("no-op throughput, 100k tasks >= 100,000 tasks/s",
         med("noop", "100000", "rate"), lambda v: v >= 100000, "{:,.0f} tasks/s"),
        ("single round trip p50 <= 150 us",
         med("roundtrip", "1000", "p50_us"), lambda v: v <= 150, "{:.0f} us"),
        ("scheduler memory <= 300 B per pending task",
         med("pending", "per task", "bytes_per_task"), lambda v: v <= 300, "{:.0f} B"),
        ("local cluster ready < 200 ms",
         med("startup", "2", "start_ms"), lambda v: v < 200, "{:.0f} ms"),
        ("1M-task graph submitted and run < 10 s",
         med("noop", "1000000", "seconds"), lambda v: v < 10, "{:.2f} s"),
    ]
    for what, v, ok, f in checks:
        if v is None:
            print(f"- {what}: not measured in this run")
        else:
            print(f"- {what}: {f.format(v)} — {'met' if ok(v) else 'NOT met'}")
    rt, fl = med("roundtrip", "1000", "p50_us"), med("floor_unary", "1000", "p50_us", "floor")
    if rt and fl:
        print(f"- round trip vs raw gRPC unary echo (<= 3x): {rt / fl:.1f}x")
    cp = med("floor", "1024", "gbps", "floor")
    for case, who in (("transfer", "Python workers"), ("transfer_c", "C workers")):
        tr = med(case, "1024", "gbps")
        if tr and cp:
            print(f"- peer transfer of 1 GiB ({who}) vs a raw loopback copy (>= 50%): "
                  f"{100 * tr / cp:.0f}%")

    print("""
Where the round trip falls short: one task costs two RPCs from the client
(Submit, then a Gather stream) plus the scheduler-worker hop, and on two
cores the client, the scheduler and two workers compete for the CPUs, so
each hop pays thread wake-ups. Closing the gap: a long-lived client stream
carrying submits and results (no per-call setup), and waking the Gather
together with the Submit reply (a Gather that waits for keys not yet
submitted, sent ahead of the Submit).""")

    for (case, who), why in skipped.items():
        print(f"\n{case} ({who}): skipped: {why.replace('_', ' ')}")


DATA_CASES = ("floor", "transfer", "transfer_c", "pipeline")


def data_section(path: str) -> str:
    """The "Data plane" section of RESULTS.md from a bench/run.sh --data log."""
    data, _ = parse(path)
    out = ["## Data plane", "",
           "Produced by `bash bench/run.sh --data` (raw lines in `bench/results-data.log`). "
           "Both systems run the same Python functions on 2 Python workers x 1 thread, "
           "scheduler and workers in their own processes (`bench/data_bench.py`); "
           "`transfer_c` is taskgrid's C workers (no pickling). Median (min–max); ratio: "
           "how many times better taskgrid is.", "",
           "| case | size MiB | metric | taskgrid | Dask | ratio |", "|---|---|---|---|---|---|"]
    seen = []
    for (case, size, metric, _who) in data:
        if case in DATA_CASES and (case, size, metric) not in seen:
            seen.append((case, size, metric))
    for case, size, metric in seen:
        unit, higher = next((u, h) for m, u, h in METRICS[case][1] if m == metric)
        tg = data.get((case, size, metric, "taskgrid"), []) or data.get(
            (case, size, metric, "floor"), [])
        dk = data.get((case, size, metric, "dask"), [])
        ratio = ""
        if tg and dk:
            a, b = statistics.median(tg), statistics.median(dk)
            ratio = f"{(a / b if higher else b / a):,.2f}x"
        label = case + (" (raw loopback TCP copy)" if case == "floor" else "")
        out.append(f"| {label} | {size} | {metric} {unit} | {fmt(tg)} | {fmt(dk)} | {ratio} |")
    cp = data.get(("floor", "1024", "gbps", "floor"), [])
    for case in ("transfer", "transfer_c"):
        tr = data.get((case, "1024", "gbps", "taskgrid"), [])
        if tr and cp:
            out.append("")
            out.append(f"- {case} of 1 GiB vs the raw loopback copy (goal >= 50%): "
                       f"{100 * statistics.median(tr) / statistics.median(cp):.0f}%")
    return "\n".join(out) + "\n"


def dataframe_section(path: str) -> str:
    """The "Dask collections" section of RESULTS.md from the lines of
    bench/dataframe_bench.py."""
    data, _ = parse(path)
    meta: dict = {}
    loads = collections.defaultdict(list)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for line in lines:
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if fields.get("case") == "dataframe" and "who" in fields:
            meta.update((k, fields[k]) for k in (
                "start", "end", "freq", "partition_freq", "partitions", "rows") if k in fields)
            if "load1" in fields:
                loads[fields["who"]].append(float(fields["load1"]))
    workload = (f"`dask.datasets.timeseries` from {meta.get('start', '?')} to "
                f"{meta.get('end', '?')}, freq={meta.get('freq', '?')}, "
                f"partition_freq={meta.get('partition_freq', '?')}: "
                f"{meta.get('partitions', '?')} partitions"
                + (f", {int(meta['rows']):,} rows" if "rows" in meta else ""))
    out = ["## Dask collections", "",
           ("Produced by `bash bench/run.sh --dataframe` (raw lines in "
           "`bench/results-dataframe.log`; `bench/dataframe_bench.py`). One dask.dataframe "
           f"workload, {workload}, then `groupby(\"name\").x.mean()` (groupby) and "
           "`describe()` (describe), each `dask.compute(x, scheduler=client)` on taskgrid "
           "(the Python client as Dask's scheduler, each Dask task a taskgrid task) and on "
           "Dask distributed, both with 2 Python workers x 1 thread and the scheduler in its "
           "own process, the shuffle method fixed to `tasks` (the same graph on both); "
           "runs alternate between the systems, each on a fresh cluster; the answers "
           "are checked equal (floats to a relative 1e-9). "
           "sched_cpu_s: the scheduler process's user + system CPU during the compute; "
           "sched_rss_mb: its peak RSS; client_cpu_s: the submitting process's CPU (graph "
           "conversion and submission). Median (min–max); ratio: how many times better "
           "taskgrid is."), "",
           "| part | metric | taskgrid | Dask | ratio |", "|---|---|---|---|---|"]
    seen = []
    for (case, size, metric, _who) in data:
        if case == "dataframe" and (size, metric) not in seen:
            seen.append((size, metric))
    for size, metric in seen:
        unit, higher = next((u, h) for m, u, h in METRICS["dataframe"][1] if m == metric)
        tg = data.get(("dataframe", size, metric, "taskgrid"), [])
        dk = data.get(("dataframe", size, metric, "dask"), [])
        ratio = ""
        if tg and dk and min(statistics.median(tg), statistics.median(dk)) > 0:
            a, b = statistics.median(tg), statistics.median(dk)
            ratio = f"{(a / b if higher else b / a):,.2f}x"
        out.append(f"| {size} | {metric} {unit} | {fmt(tg)} | {fmt(dk)} | {ratio} |")
    if loads:
        out.append("")
        each = ", ".join(f"{who} {min(v):.1f}–{max(v):.1f}" for who, v in loads.items())
        out.append("Machine load (the 1-minute load average when each run started; the "
                   "benchmark alone keeps about 3 runnable on the 2 cores, more is other "
                   f"work sharing them): {each}.")
    return "\n".join(out) + "\n"


def splice(results: str, section: str, heading: str = "## Data plane") -> None:
    """Replace (or add) the section `heading` of the file `results`."""
    try:
        text = open(results, encoding="utf-8").read()
    except FileNotFoundError:
        text = ""
    head, sep, rest = text.partition(heading + "\n")
    if sep:
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
    else:
        tail = ""
    with open(results, "w", encoding="utf-8") as f:
        f.write(head.rstrip("\n") + "\n\n" + section + ("\n" + tail if tail else ""))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--data-section":
        splice(sys.argv[3], data_section(sys.argv[1]))
    elif len(sys.argv) == 4 and sys.argv[2] == "--dataframe-section":
        splice(sys.argv[3], dataframe_section(sys.argv[1]), "## Dask collections")
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "bench/results.log")
