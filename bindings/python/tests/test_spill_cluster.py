# SPDX-License-Identifier: Apache-2.0
"""Memory management end to end: LocalCluster with the real C scheduler
and C or Python workers with a 64 MiB memory limit each, holding five
times the cluster's limit in results (20 of 32 MiB, consumed later, some
on the other worker, which fetches them from the holder's spill files).
Every result is correct and Status shows the spilled bytes.

Skipped when the scheduler has no --worker-memory-limit.
"""
from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

import taskgrid

from test_large_results import big_plugin  # noqa: F401 - a fixture

MIB = 1 << 20
N = 20
SIZE = 32 * MIB
LIMIT = 64 * MIB
TIMEOUT = 300


def make(i: int) -> bytes:
    return bytes([i]) * SIZE


def check(x: bytes) -> str:
    return hashlib.sha256(x).hexdigest()


@pytest.fixture(scope="module")
def memory_scheduler(binaries: tuple[str, str]) -> tuple[str, str]:
    out = subprocess.run([binaries[0], "--help"], capture_output=True, text=True, timeout=30)
    if "--worker-memory-limit" not in out.stdout + out.stderr:
        pytest.skip("this taskgrid-scheduler has no --worker-memory-limit")
    return binaries


def _spilled_while_held(client: taskgrid.Client) -> int:
    """The bytes spilled once every worker is back under its limit. Spilling
    runs beside the tasks, so a result just stored may stand over the
    target until the next check (a fraction of a second): the workers must
    settle under the limit, within a bounded wait."""
    deadline = time.monotonic() + 30
    while True:
        workers = client.status().workers
        spilled = sum(w.spilled for w in workers)
        assert all(w.memory_limit == LIMIT for w in workers), workers
        settled = all(w.memory <= LIMIT for w in workers)
        if (spilled > 0 and settled) or time.monotonic() > deadline:
            assert settled, workers
            return spilled
        time.sleep(0.1)


def test_python_workers_hold_five_times_their_limit(memory_scheduler) -> None:
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2, memory_limit="64MiB") as cl, \
            taskgrid.Client(cl, set_as_default=False) as client:
        names = sorted(w.name for w in client.status().workers)
        made = [client.submit(make, i, pure=False, workers=[names[i % 2]]) for i in range(N)]
        taskgrid.wait(made, timeout=TIMEOUT)
        assert all(f.status == "finished" for f in made)
        assert _spilled_while_held(client) > 0
        # Consumed later, half of them on the other worker.
        sums = [client.submit(check, f, pure=False, workers=[names[(i + i // 2) % 2]])
                for i, f in enumerate(made)]
        want = [hashlib.sha256(make(i)).hexdigest() for i in range(N)]
        assert [s.result(timeout=TIMEOUT) for s in sums] == want
        assert made[0].result(timeout=TIMEOUT) == make(0)
        assert made[N - 1].result(timeout=TIMEOUT) == make(N - 1)


def test_c_workers_hold_five_times_their_limit(memory_scheduler, big_plugin) -> None:  # noqa: F811
    with taskgrid.LocalCluster(n_workers=2, threads_per_worker=2, worker="c",
                               preload=[big_plugin], memory_limit=LIMIT) as cl, \
            taskgrid.Client(cl, set_as_default=False) as client:
        names = sorted(w.name for w in client.status().workers)
        made = [client.submit("big.bytes", str(SIZE + i), pure=False, workers=[names[i % 2]])
                for i in range(N)]
        taskgrid.wait(made, timeout=TIMEOUT)
        assert all(f.status == "finished" for f in made)
        assert _spilled_while_held(client) > 0
        lens = [client.submit("big.len", f, pure=False, workers=[names[(i + i // 2) % 2]])
                for i, f in enumerate(made)]
        assert [f.result(timeout=TIMEOUT) for f in lens] == [SIZE + i for i in range(N)]
        assert made[0].result(timeout=TIMEOUT) == b"x" * SIZE
        assert made[N - 1].result(timeout=TIMEOUT) == b"x" * (SIZE + N - 1)
