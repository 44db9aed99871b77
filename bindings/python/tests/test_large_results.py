# SPDX-License-Identifier: Apache-2.0
"""Results over the message limit, and failed tasks' exception objects.

* On a worker without a data service (--data-listen none), which sends
  every result inline, a result larger than one message (64 MiB) fails its
  task at once with taskgrid.ResultTooLarge naming the size and the limit;
  the worker (Python or C) survives and keeps working (before: the stream
  broke, the worker was lost three times and the task failed with
  KilledWorker). Several large results that together pass the limit still
  arrive (a batch is cut before a result that would make its message too
  large). A worker with a data service keeps such results in its store
  instead (test_data_plane.py).
* A Python worker sends the pickled exception with an error, and the client
  raises the original object (type and attributes).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Iterator

import pytest

import taskgrid
from taskgrid.errors import restore
from taskgrid.v1 import taskgrid_pb2 as pb

from test_worker_protocol import ScriptedScheduler, py_call, start_worker, stop  # noqa: F401
from test_worker_protocol import scheduler  # noqa: F401 - a fixture

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
MIB = 1024 * 1024
TIMEOUT = 60


def big(n: int) -> bytes:
    return b"x" * n


def pid() -> int:
    return os.getpid()


class QuotaExceeded(Exception):
    """A custom exception with attributes beyond its message."""

    def __init__(self, user: str, used: int, limit: int) -> None:
        super().__init__(f"{user} used {used} of {limit}")
        self.user, self.used, self.limit = user, used, limit


def over_quota(user: str) -> None:
    raise QuotaExceeded(user, 12, 10)


def plus_one(x: int) -> int:
    return x + 1


# ---------------------------------------------------------------------------
# Results over the message limit
# ---------------------------------------------------------------------------


def no_data_service(cluster: taskgrid.LocalCluster, program: list, options: list
                    ) -> Iterator[taskgrid.Client]:
    """A client of `cluster` once `program` (a worker, with `options` that
    leave it no data service, so every result is inline) has joined it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    worker = subprocess.Popen([*program, cluster.address, "--log-level", "warn", *options],
                              env=env)
    try:
        with taskgrid.Client(cluster, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=30)
            yield c
    finally:
        worker.terminate()
        worker.wait(30)


@pytest.fixture(scope="module")
def py_small(binaries: tuple[str, str]) -> Iterator[taskgrid.Client]:
    with taskgrid.LocalCluster(n_workers=0) as cl:
        yield from no_data_service(cl, [sys.executable, "-m", "taskgrid.worker"],
                                   ["--nthreads", "2", "--data-listen", "none"])


def check_too_large(e: BaseException, size: str) -> None:
    assert isinstance(e, taskgrid.ResultTooLarge), repr(e)
    text = str(e).replace(",", "")
    assert size in text and "67043328-byte limit" in text, text


def test_python_result_over_the_limit_fails_at_once(py_small: taskgrid.Client) -> None:
    before = py_small.submit(pid, pure=False).result(timeout=TIMEOUT)
    t0 = time.monotonic()
    f = py_small.submit(big, 80 * MIB, pure=False)
    with pytest.raises(taskgrid.ResultTooLarge) as info:
        f.result(timeout=TIMEOUT)
    check_too_large(info.value, "838860")  # 83,886,080 bytes and pickle framing
    assert time.monotonic() - t0 < 30  # no worker restarts behind it
    # The same worker process goes on working.
    assert py_small.submit(pid, pure=False).result(timeout=TIMEOUT) == before
    assert py_small.submit(plus_one, 1, pure=False).result(timeout=TIMEOUT) == 2


def test_python_large_results_that_together_pass_the_limit(py_small: taskgrid.Client) -> None:
    fs = py_small.map(big, [20 * MIB] * 5, pure=False)
    assert [len(x) for x in py_small.gather(fs, timeout=TIMEOUT)] == [20 * MIB] * 5


@pytest.fixture(scope="module")
def big_plugin(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no C compiler to build the test plug-in")
    out = tmp_path_factory.mktemp("plugin") / "libbig.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-I", str(REPO / "sdk" / "include"),
         str(HERE / "big_result_plugin.c"), "-o", str(out)],
        check=True,
    )
    return str(out)


@pytest.fixture(scope="module")
def c_small(binaries: tuple[str, str], big_plugin: str) -> Iterator[taskgrid.Client]:
    options = ["--nthreads", "4", "--preload", big_plugin]
    help_text = subprocess.run([binaries[1], "--help"], capture_output=True, text=True)
    if "--data-listen" in help_text.stdout + help_text.stderr:
        options += ["--data-listen", "none"]
    with taskgrid.LocalCluster(n_workers=0, worker="c") as cl:
        yield from no_data_service(cl, [binaries[1]], options)


def test_c_result_over_the_limit_fails_at_once(c_small: taskgrid.Client) -> None:
    before = c_small.submit("big.pid", pure=False).result(timeout=TIMEOUT)
    t0 = time.monotonic()
    f = c_small.submit("big.bytes", str(80 * MIB), pure=False)
    with pytest.raises(taskgrid.ResultTooLarge) as info:
        f.result(timeout=TIMEOUT)
    check_too_large(info.value, "83886080 bytes")
    assert time.monotonic() - t0 < 30
    assert c_small.submit("big.pid", pure=False).result(timeout=TIMEOUT) == before


def test_c_large_results_that_together_pass_the_limit(c_small: taskgrid.Client) -> None:
    # Small results first, so the batch the large ones join is not empty:
    # 3.9 MiB of them and then a 62 MiB result made a 66 MiB message.
    before = c_small.submit("big.pid", pure=False).result(timeout=TIMEOUT)
    for _ in range(3):
        sizes = [MIB - 4096] * 3 + [int(3.5 * MIB)] + [62 * MIB, 30 * MIB, 30 * MIB]
        fs = [c_small.submit("big.bytes", str(n), pure=False) for n in sizes]
        got = c_small.gather(fs, timeout=TIMEOUT)
        assert [len(x) for x in got] == sizes
    assert c_small.submit("big.pid", pure=False).result(timeout=TIMEOUT) == before


# ---------------------------------------------------------------------------
# The original exception object
# ---------------------------------------------------------------------------


def test_worker_sends_the_pickled_exception(scheduler) -> None:  # noqa: F811
    fake, address = scheduler
    proc = start_worker(address, "--name", "w1")
    try:
        fake.next_message()  # registration
        fake.send(worker_name="w1", heartbeat_ms=1000)
        fake.send(assign=[py_call("bad", over_quota, "ann")])
        bad = fake.results(1)["bad"]
        assert bad.state == pb.TASK_STATE_ERRED
        assert bad.error.type.endswith("QuotaExceeded")
        assert bad.codec == "pickle"
        exc = restore(bad.data, bad.error.type, bad.error.message)
        assert isinstance(exc, QuotaExceeded) and (exc.user, exc.used, exc.limit) == ("ann", 12, 10)
        assert str(exc) == "ann used 12 of 10"
    finally:
        stop(proc)


def test_restore_gives_the_original_object_or_falls_back() -> None:
    from taskgrid.worker.core import _pickled_error

    data = _pickled_error(QuotaExceeded("bob", 3, 2))
    exc = restore(data, "test_large_results.QuotaExceeded", "bob used 3 of 2", "Traceback...", "k")
    assert isinstance(exc, QuotaExceeded) and (exc.user, exc.used, exc.limit) == ("bob", 3, 2)
    assert isinstance(exc.__cause__, taskgrid.RemoteTraceback)
    assert any("'k'" in n for n in getattr(exc, "__notes__", []))
    # Not unpicklable here: the type, message and traceback, as before.
    bad = restore(b"not a pickle", "ValueError", "boom", "", "k")
    assert type(bad) is ValueError and str(bad) == "boom"
    gone = restore(b"\x80\x04cno_such_module\nThing\n.", "no_such_module.Thing", "m", "", "k")
    assert isinstance(gone, taskgrid.TaskError) and gone.type == "no_such_module.Thing"


def test_custom_exception_with_attributes_crosses_the_cluster(py_small: taskgrid.Client) -> None:
    f = py_small.submit(over_quota, "cy", pure=False)
    dep = py_small.submit(plus_one, f, pure=False)
    for fut in (f, dep):  # a dependent inherits the same error
        with pytest.raises(QuotaExceeded) as info:
            fut.result(timeout=TIMEOUT)
        assert (info.value.user, info.value.used, info.value.limit) == ("cy", 12, 10)
