# SPDX-License-Identifier: Apache-2.0
"""The data plane end to end: LocalCluster with the real C scheduler and
workers. Results over the inline limit stay on the worker that made them;
a dependent on another worker fetches them peer to peer, and the client
gathers them through the scheduler in chunks, at any size (far over the
64 MiB message limit).

Needs a scheduler with the data plane (its --help mentions --inline-limit)
and, for the mixed cluster, a C worker with a data service (--data-listen);
the tests are skipped with that reason otherwise.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
from typing import Callable, Iterator

import pytest

import taskgrid
from taskgrid import _codec

from test_large_results import big_plugin  # noqa: F401 - a fixture

HERE = pathlib.Path(__file__).resolve().parent
MB = 1_000_000
TIMEOUT = 300


def make(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def flip(x: bytes) -> bytes:
    return x[::-1]


def digest(x: bytes) -> str:
    return hashlib.sha256(x).hexdigest()


def _mentions(program: str, option: str) -> bool:
    out = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=30)
    return option in out.stdout + out.stderr


@pytest.fixture(scope="module")
def data_plane(binaries: tuple[str, str]) -> tuple[str, str]:
    if not _mentions(binaries[0], "--inline-limit"):
        pytest.skip("this taskgrid-scheduler has no data plane (no --inline-limit)")
    return binaries


@pytest.fixture(scope="module")
def py_pair(data_plane: tuple[str, str]) -> Iterator[tuple[taskgrid.Client, list[str]]]:
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1) as cl, taskgrid.Client(
        cl, set_as_default=False
    ) as c:
        names = sorted(w.name for w in c.status().workers)
        assert len(names) == 2
        yield c, names


def test_a_200_mb_result_is_gathered_by_the_client(py_pair) -> None:
    client, _ = py_pair
    f = client.submit(make, 200 * MB, pure=False)
    got = f.result(timeout=TIMEOUT)
    assert len(got) == 200 * MB
    assert got == make(200 * MB)


def test_a_chain_of_100_mb_results_between_python_workers(py_pair) -> None:
    client, (w0, w1) = py_pair
    a = client.submit(make, 100 * MB, pure=False, workers=[w0])
    b = client.submit(flip, a, pure=False, workers=[w1])  # fetched from w0
    c = client.submit(digest, b, pure=False, workers=[w0])  # fetched from w1
    d = client.submit(digest, a, pure=False, workers=[w0])  # w0's own copy
    expected = make(100 * MB)
    assert c.result(timeout=TIMEOUT) == digest(flip(expected))
    assert d.result(timeout=TIMEOUT) == digest(expected)
    assert b.result(timeout=TIMEOUT) == flip(expected)


@pytest.fixture()
def mixed(data_plane: tuple[str, str], big_plugin: str, tmp_path: pathlib.Path  # noqa: F811
          ) -> Iterator[tuple[taskgrid.Client, str, str, Callable[[], str]]]:
    """A C worker (LocalCluster) and a Python worker; the last item stops
    the Python worker and returns its log."""
    if not _mentions(data_plane[1], "--data-listen"):
        pytest.skip("this taskgrid-worker has no data service (no --data-listen)")
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=2, worker="c",
                               preload=[big_plugin]) as cl:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
        log = tmp_path / "py-1.log"
        with open(log, "w") as err:
            py = subprocess.Popen([sys.executable, "-m", "taskgrid.worker", cl.address,
                                   "--name", "py-1", "--nthreads", "2", "--log-level", "info"],
                                  env=env, stderr=err)

        def stop() -> str:
            if py.poll() is None:
                py.terminate()
                py.wait(30)
            return log.read_text()

        try:
            with taskgrid.Client(cl, set_as_default=False) as c:
                c.wait_for_workers(2, timeout=30)
                (cname,) = [w.name for w in c.status().workers if w.name != "py-1"]
                yield c, cname, "py-1", stop
        finally:
            stop()


def test_mixed_c_and_python_workers_fetch_from_each_other(mixed) -> None:
    client, cname, pyname, stop_python_worker = mixed
    n = 100 * MB
    from_c = client.submit("big.bytes", str(n), pure=False, workers=[cname])
    c_to_py = client.submit(len, from_c, pure=False, workers=[pyname])
    from_py = client.submit(make, n, pure=False, workers=[pyname])
    py_to_c = client.submit("big.len", from_py, pure=False, workers=[cname])
    assert c_to_py.result(timeout=TIMEOUT) == n
    pickled = len(_codec.dumps(make(n)))
    assert py_to_c.result(timeout=TIMEOUT) == pickled
    # Both gathered by the client too, through the scheduler.
    assert from_c.result(timeout=TIMEOUT) == b"x" * n
    assert from_py.result(timeout=TIMEOUT) == make(n)
    # Peer to peer: the Python worker fetched the C result and served its own.
    log = stop_python_worker()
    assert (f"data: held 1 ({pickled} bytes), served 1 ({pickled} bytes), fetched 1 ({n} bytes), "
            f"local 0 (0 bytes), uploaded 1 ({pickled} bytes)") in log, log


def counted(log: str, name: str, n: int) -> bytes:
    """`n` bytes, noting each run (name and this worker's pid) in `log`."""
    with open(log, "a", encoding="ascii") as f:
        f.write(f"{name} {os.getpid()}\n")
    return make(n)


def joined_size(*parts: bytes) -> int:
    return sum(len(p) for p in parts)


def test_a_killed_holder_costs_only_its_results(data_plane, tmp_path: pathlib.Path) -> None:
    """A worker SIGKILLed while holding the only copy of an input: that input
    is recomputed from the graph, the input held on the other worker is
    not, and the dependent gets the right bytes."""
    import signal

    log = str(tmp_path / "runs")
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=1) as cl, taskgrid.Client(
        cl, set_as_default=False
    ) as c:
        names = [w.name for w in c.status().workers]
        pids = {n: c.submit(os.getpid, pure=False, workers=[n]).result(timeout=TIMEOUT)
                for n in names}
        a = c.submit(counted, log, "a", 2 * MB, pure=False)
        a.result(timeout=TIMEOUT)
        (a_pid,) = [int(line.split()[1]) for line in open(log) if line.startswith("a ")]
        (other,) = [n for n, p in pids.items() if p != a_pid]
        b = c.submit(counted, log, "b", 2 * MB, pure=False, workers=[other])
        b.result(timeout=TIMEOUT)
        os.kill(a_pid, signal.SIGKILL)
        total = c.submit(joined_size, a, b, pure=False)
        assert total.result(timeout=TIMEOUT) == 4 * MB
        runs = [line.split()[0] for line in open(log)]
        assert runs.count("a") == 2, runs  # recomputed once, after the loss
        assert runs.count("b") == 1, runs  # held elsewhere: not recomputed
        assert a.result(timeout=TIMEOUT) == make(2 * MB)


def test_futures_follow_held_results_without_moving_their_bytes(data_plane, capfd) -> None:
    """A future of a held result is done as soon as the task is, without its
    bytes travelling (GatherRequest.defer_held); they move through the
    scheduler only when result() asks for them."""
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1, log_level="info") as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        f = c.submit(make, 5 * MB, pure=False)
        g = c.submit(len, f, pure=False)
        assert g.result(timeout=TIMEOUT) == 5 * MB
        taskgrid.wait([f], timeout=TIMEOUT)
        assert f.done()
    err = capfd.readouterr().err
    assert "uploaded 0 (0 bytes)" in err, err
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=1, log_level="info") as cl, \
            taskgrid.Client(cl, set_as_default=False) as c:
        f = c.submit(make, 5 * MB, pure=False)
        assert f.result(timeout=TIMEOUT) == make(5 * MB)
    err = capfd.readouterr().err
    assert "uploaded 1 (" in err, err
