# SPDX-License-Identifier: Apache-2.0
"""The data-plane benchmarks (bench/README.md), the same Python code on
taskgrid and on Dask distributed, each on a local cluster of 2 Python
workers x 1 thread; lines in the format bench/report.py reads:

    case=transfer mb=1024 run=1 seconds=0.71 gbps=1.51

Cases:
  transfer  one result of `--mb` MiB made on worker A, consumed (its
            length taken) on worker B: the time from the consumer's submit
            to its result, minus the same for a tiny input, so it is the
            move of the bytes between two workers; worker_cpu_s is the
            CPU the workers spent on it (user + system, all processes:
            what a busy machine cannot hide).
  floor     the same bytes sent once over a loopback TCP socket between
            two processes: what a transfer cannot beat on this machine.
  pipeline  `--parts` partitions of `--mb` MiB each through 4 stages (make,
            transform, transform, reduce to a length): the wall time and
            the scheduler's peak RSS while it runs (sampled every 20 ms).
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

MIB = 1 << 20


def make(n: int, seed: int = 1) -> bytes:
    return bytes([seed % 251]) * n


def size_of(b: bytes) -> int:
    return len(b)


def transform(b: bytes) -> bytes:
    # A new object of the same size: a real stage produces new data.
    return b[1:] + b[:1]


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (workers, and a Dask nanny's worker)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for t in tasks:
        with contextlib.suppress(FileNotFoundError):
            with open(f"/proc/{pid}/task/{t}/children", encoding="ascii") as f:
                for k in f.read().split():
                    out += [int(k), *descendants(int(k))]
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids` (stat(5) 14, 15)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    """The peak RSS of process `pid`, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_of(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._t.join()


# ---- the two systems, behind one small interface ----


PLUGIN = ""  # --plugin: C workers with bench/data_plugin.c's functions


@contextlib.contextmanager
def taskgrid_cluster() -> Iterator[tuple[Any, list[str], int]]:
    import taskgrid

    kind = {"worker": "c", "preload": [PLUGIN]} if PLUGIN else {}
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1, **kind) as cluster:
        with taskgrid.Client(cluster) as client:
            client.wait_for_workers(2)
            names = sorted(w.name for w in client.status().workers)
            pid = cluster._proc.pid  # the scheduler process
            yield client, names, pid, descendants(pid)


@contextlib.contextmanager
def dask_cluster() -> Iterator[tuple[Any, list[str], int]]:
    """A Dask scheduler and 2 workers as separate processes (as taskgrid's
    are), so the scheduler's RSS is its own."""
    import subprocess
    import tempfile

    from distributed import Client

    with tempfile.TemporaryDirectory() as d:
        sfile = os.path.join(d, "scheduler.json")
        procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0",
             "--no-dashboard", "--scheduler-file", sfile],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(sfile):
                if time.monotonic() > deadline:
                    raise TimeoutError("dask scheduler did not start")
                time.sleep(0.05)
            for i in range(2):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                     sfile, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                     "--name", f"w{i}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            with Client(scheduler_file=sfile) as client:
                client.wait_for_workers(2)
                yield client, ["w0", "w1"], procs[0].pid, [
                    q for p in procs[1:] for q in (p.pid, *descendants(p.pid))]
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                p.wait(30)


def wait(system: str, futures: list[Any]) -> None:
    if system == "dask":
        import distributed

        distributed.wait(futures)
    else:
        import taskgrid

        taskgrid.wait(futures)


def submit(system: str, client: Any, fn: Any, *args: Any, worker: str) -> Any:
    if PLUGIN:  # C workers: the plug-in's functions, by name
        if fn is make:
            return client.submit("bench.make", str(args[0]), workers=[worker], pure=False)
        return client.submit("bench.size", *args, workers=[worker], pure=False)
    if system == "dask":
        return client.submit(fn, *args, workers=[worker], allow_other_workers=False, pure=False)
    return client.submit(fn, *args, workers=[worker])


# ---- cases ----


def case_transfer(system: str, mb: int, repeat: int) -> None:
    cluster = taskgrid_cluster if system == "taskgrid" else dask_cluster
    with cluster() as (client, (a, b), _pid, workers):
        for run in range(1, repeat + 1):
            small = submit(system, client, make, 1, run, worker=a)
            big = submit(system, client, make, mb * MIB, run, worker=a)
            wait(system, [small, big])  # made, not gathered: the bytes stay on A
            t0 = time.perf_counter()
            assert client.gather(submit(system, client, size_of, small, worker=b)) == 1
            base = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), cpu_seconds(workers)
            got = client.gather(submit(system, client, size_of, big, worker=b))
            seconds = time.perf_counter() - t0 - base
            cpu = cpu_seconds(workers) - c0
            assert got == mb * MIB, got
            del small, big
            case = "transfer_c" if PLUGIN else "transfer"
            print(f"case={case} mb={mb} run={run} seconds={seconds:.4f} "
                  f"gbps={mb * MIB / seconds / 1e9:.3f} worker_cpu_s={cpu:.3f}", flush=True)


def _sink(port_q: Any, n: int) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port_q.put(srv.getsockname()[1])
    conn, _ = srv.accept()
    buf = bytearray(4 * MIB)
    got = 0
    while got < n:
        k = conn.recv_into(buf)
        if k == 0:
            break
        got += k
    conn.sendall(b"k")


def case_floor(mb: int, repeat: int) -> None:
    n = mb * MIB
    data = make(n)
    for run in range(1, repeat + 1):
        q: Any = multiprocessing.Queue()
        p = multiprocessing.Process(target=_sink, args=(q, n))
        p.start()
        with socket.create_connection(("127.0.0.1", q.get())) as s:
            t0 = time.perf_counter()
            s.sendall(data)
            s.recv(1)
            seconds = time.perf_counter() - t0
        p.join()
        print(f"case=floor mb={mb} run={run} seconds={seconds:.4f} "
              f"gbps={n / seconds / 1e9:.3f}", flush=True)


def case_pipeline(system: str, mb: int, parts: int, repeat: int) -> None:
    cluster = taskgrid_cluster if system == "taskgrid" else dask_cluster
    with cluster() as (client, _names, pid, _workers):
        for run in range(1, repeat + 1):
            with PeakRSS(pid) as rss:
                t0 = time.perf_counter()
                if system == "dask":
                    opts: dict[str, Any] = {"pure": False}
                else:
                    opts = {}
                s1 = [client.submit(make, mb * MIB, run * 100 + i, **opts) for i in range(parts)]
                s2 = [client.submit(transform, f, **opts) for f in s1]
                s3 = [client.submit(transform, f, **opts) for f in s2]
                s4 = [client.submit(size_of, f, **opts) for f in s3]
                del s1, s2, s3
                sizes = client.gather(s4)
                seconds = time.perf_counter() - t0
            assert sizes == [mb * MIB] * parts, sizes
            total_gb = 4 * parts * mb * MIB / 1e9
            print(f"case=pipeline parts={parts} mb={mb} run={run} seconds={seconds:.3f} "
                  f"total_gb={total_gb:.2f} sched_rss_mb={rss.peak / MIB:.1f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", choices=("taskgrid", "dask"), default="taskgrid")
    ap.add_argument("--case", choices=("transfer", "floor", "pipeline"), required=True)
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plugin", default="",
                    help="taskgrid only: C workers with this bench/data_plugin.c build "
                         "(transfer only), instead of Python workers")
    a = ap.parse_args()
    global PLUGIN
    PLUGIN = a.plugin
    if PLUGIN and (a.system != "taskgrid" or a.case != "transfer"):
        ap.error("--plugin is for --system taskgrid --case transfer")
    if a.mb <= 0 or a.parts <= 0 or a.repeat <= 0:
        ap.error("--mb, --parts and --repeat must be positive")
    if a.case == "floor":
        case_floor(a.mb, a.repeat)
    elif a.case == "transfer":
        case_transfer(a.system, a.mb, a.repeat)
    else:
        case_pipeline(a.system, a.mb, a.parts, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
