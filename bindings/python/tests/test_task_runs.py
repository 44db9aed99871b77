# SPDX-License-Identifier: Apache-2.0
"""Which worker ran a task, and for how long (KeyStatus.worker and run_us),
with C workers and with Python workers."""
from __future__ import annotations

import time

import pytest

import taskgrid


def _ran_pinned(client: taskgrid.Client, submit_sleep) -> None:
    workers = sorted(w.name for w in client.status().workers)
    assert len(workers) >= 2
    for name in workers:
        fut = submit_sleep(name)
        fut.result(30)
        st = client.status([fut.key])
        assert st.keys[fut.key][0] == "memory"
        worker, seconds = st.ran[fut.key]
        assert worker == name
        # The worker times the call itself: at least the sleep, and far
        # below the test's own bounds.
        assert 0.05 <= seconds < 10


def test_c_worker_reports_who_ran_a_task_and_how_long(c_client: taskgrid.Client) -> None:
    _ran_pinned(
        c_client,
        lambda name: c_client.submit("tg.sleep", 0.05, workers=[name], pure=False),
    )


def test_python_worker_reports_who_ran_a_task_and_how_long(py_client: taskgrid.Client) -> None:
    _ran_pinned(
        py_client,
        lambda name: py_client.submit(time.sleep, 0.05, workers=[name], pure=False),
    )


def test_error_names_its_worker_and_dependents_and_unknown_keys_do_not(
    c_client: taskgrid.Client,
) -> None:
    bad = c_client.submit("tg.fail", "boom", pure=False)
    child = c_client.submit("tg.inc", bad, pure=False)
    with pytest.raises(taskgrid.TaskError):
        child.result(10)
    st = c_client.status([bad.key, child.key, "never-submitted"])
    assert st.keys[bad.key][0] == "erred"
    worker, seconds = st.ran[bad.key]
    assert worker in {w.name for w in st.workers}
    assert 0 <= seconds < 10
    # The dependent inherited the error without running; the unknown key
    # never ran.
    assert child.key not in st.ran
    assert "never-submitted" not in st.ran


def test_scattered_value_names_the_worker_that_took_it(c_client: taskgrid.Client) -> None:
    # scatter runs the built-in tg.echo on a worker.
    name = sorted(w.name for w in c_client.status().workers)[-1]
    [f] = c_client.scatter([41], workers=[name])
    assert f.result(10) == 41
    st = c_client.status([f.key])
    assert st.keys[f.key][0] == "memory"
    assert st.ran[f.key][0] == name
