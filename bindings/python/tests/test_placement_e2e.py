# SPDX-License-Identifier: Apache-2.0
"""Placement weighs moving held inputs against waiting, over real processes:
a scheduler with `--transfer-bandwidth 10e6` (50 MB take 5 s to move) and
two C workers of 2 threads started by hand, so their exit counter lines
("data: ... fetched N (B bytes), local N (B bytes) ...") can be read.

A 50 MB result is held on worker "a", which is then given four short
sleeps (its threads busy and its prefetch queue full: about 1 s of work
by the scheduler's estimate); worker "b" is idle. The dependent of the
50 MB result still runs on "a", after the sleeps: waiting there is
estimated cheaper than moving the bytes to "b". So "a" reads its input
in place and "b" fetches nothing.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

import taskgrid
from test_data_plane_e2e import Workers, make
from test_large_results import big_plugin  # noqa: F401 - a fixture

SIZE = 50 * 1000 * 1000
SLEEPS = 4
TIMEOUT = 60


@pytest.fixture()
def slow_links(binaries: tuple[str, str]) -> Iterator[str]:
    """A scheduler without workers of its own that assumes 10 MB/s between
    workers; its address."""
    cmd = [
        binaries[0],
        "--listen",
        "tcp://127.0.0.1:0",
        "--launcher",
        "none",
        "--log-level",
        "warn",
        "--transfer-bandwidth",
        "10e6",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        try:
            first = proc.stdout.readline().decode() if proc.stdout else ""
            said = re.match(r"taskgrid-scheduler listening on (\S+)", first)
            assert said, f"the scheduler said {first!r}"
            yield said.group(1)
        finally:
            proc.terminate()


def _wait_processing(client: taskgrid.Client, name: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        on = {w.name: w.processing for w in client.status().workers}
        if on.get(name) == n:
            return
        assert time.monotonic() < deadline, f"{name} never had {n} tasks: {on}"
        time.sleep(0.01)


def test_a_dependent_waits_for_the_busy_holder_of_a_big_input(
    slow_links: str,
    binaries: tuple[str, str],
    big_plugin: str,  # noqa: F811
    tmp_path: pathlib.Path,
) -> None:
    workers = Workers(slow_links, tmp_path, binaries[1], big_plugin)
    try:
        workers.start("c", "a")
        workers.start("c", "b")
        with taskgrid.Client(slow_links, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=30)
            src = client.scatter(make(SIZE), workers=["a"], hash=False)
            src.result(timeout=TIMEOUT)
            sleeps = [
                client.submit("tg.sleep", 0.3, pure=False, workers=["a"]) for _ in range(SLEEPS)
            ]
            _wait_processing(client, "a", SLEEPS)
            dependent = client.submit("big.len", src, pure=False)
            assert dependent.result(timeout=TIMEOUT) == SIZE
            for s in sleeps:
                s.result(timeout=TIMEOUT)
        a, b = workers.stop("a"), workers.stop("b")
    finally:
        workers.close()
    assert (a.held, a.held_bytes) == (1, SIZE), a
    assert (a.local, a.local_bytes) == (1, SIZE), a
    assert (a.served, b.fetched, b.fetched_bytes) == (0, 0, 0), (a, b)
