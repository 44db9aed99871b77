# SPDX-License-Identifier: Apache-2.0
"""The Prefect runner's progress option: a bar on a terminal, rate-limited
log lines through Prefect's logger elsewhere, counting failed task runs
(which finish as taskgrid tasks with a Failed state)."""
from __future__ import annotations

import threading
from typing import Iterator

import pytest
from prefect import flow, task

import taskgrid
from taskgrid import _runprogress
from taskgrid._runprogress import RunProgress, resolve_mode
from taskgrid.prefect import TaskgridTaskRunner


class Lines:
    """A logger that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def info(self, msg: str) -> None:
        with self.lock:
            self.lines.append(msg)


class Done:
    """A stand-in for a finished taskgrid Future."""

    def __init__(self, status: str = "finished", value: object = None) -> None:
        self.status = status
        self.value = value

        class St:
            remote = 0

        self._state = St()

    def result(self) -> object:
        return self.value


@pytest.fixture(scope="module")
def cluster(binaries) -> Iterator[taskgrid.LocalCluster]:
    with taskgrid.LocalCluster(n_workers=1, threads_per_worker=2) as cl:
        yield cl


@task
def ok(x):
    return x


@task
def boom():
    raise ValueError("boom")


def test_modes_follow_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runprogress, "_stderr_is_terminal", lambda: True)
    assert resolve_mode("auto") == resolve_mode(True) == "bar"
    monkeypatch.setattr(_runprogress, "_stderr_is_terminal", lambda: False)
    assert resolve_mode("auto") == "log"
    assert resolve_mode(False) == resolve_mode("off") == resolve_mode(None) == "off"
    assert resolve_mode("bar") == "bar"
    with pytest.raises(ValueError, match="progress must be one of auto, bar, log, off"):
        resolve_mode("loud")
    with pytest.raises(ValueError, match="progress must be one of"):
        TaskgridTaskRunner(progress="loud")
    with pytest.raises(ValueError, match="progress_interval must be positive"):
        TaskgridTaskRunner(progress_interval=0)
    r = TaskgridTaskRunner(progress="log", progress_interval=2)
    assert r.duplicate() == r and r != TaskgridTaskRunner()


def test_log_lines_are_rate_limited() -> None:
    log = Lines()
    p = RunProgress("log", 3600.0, log)
    for _ in range(3):
        p.add()
    p.finish(Done())  # type: ignore[arg-type]
    p.finish(Done("error"))  # type: ignore[arg-type]
    assert log.lines == []  # within the interval: nothing yet
    p.finish(Done())  # type: ignore[arg-type]
    p.close()
    assert log.lines == ["taskgrid: 3/3 tasks done, 1 failed"]
    p.close()
    assert len(log.lines) == 1  # nothing new, no new line

    log = Lines()
    p = RunProgress("log", 1e-9, log)
    p.add()
    p.add()
    p.finish(Done())  # type: ignore[arg-type]
    p.close()
    assert log.lines == ["taskgrid: 0/1 tasks done, 0 failed", "taskgrid: 0/2 tasks done, 0 failed",
                         "taskgrid: 1/2 tasks done, 0 failed"]


def test_failed_prefect_states_count_as_failed() -> None:
    from prefect.states import Completed, Crashed, Failed

    f = _runprogress.run_failed
    assert not f(Done(value=Completed()))  # type: ignore[arg-type]
    assert f(Done(value=Failed()))  # type: ignore[arg-type]
    assert f(Done(value=Crashed()))  # type: ignore[arg-type]
    assert f(Done("cancelled"))  # type: ignore[arg-type]
    big = Done(value=Failed())
    big._state.remote = 10 << 20  # left on its worker: not fetched to look
    assert not f(big)  # type: ignore[arg-type]


def test_a_flow_logs_its_progress(cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    log = Lines()
    seen: dict[str, object] = {}
    real = TaskgridTaskRunner._run_logger

    def recording(self):
        seen["logger"] = real(self)  # Prefect's run logger, in the flow's context
        return log

    monkeypatch.setattr(TaskgridTaskRunner, "_run_logger", recording)

    @flow(task_runner=TaskgridTaskRunner(address=cluster.address, progress="log"))
    def pipeline():
        futures = [ok.submit(i) for i in range(4)]
        bad = boom.submit()
        bad.wait()
        return [f.result() for f in futures], bad.state.is_failed()

    assert pipeline() == ([0, 1, 2, 3], True)
    # The last line is written when the runner closes, with every run counted.
    assert log.lines[-1] == "taskgrid: 5/5 tasks done, 1 failed"
    assert type(seen["logger"]).__name__ == "PrefectLogAdapter"


def test_a_flow_draws_a_bar(cluster, capsys: pytest.CaptureFixture[str]) -> None:
    @flow(task_runner=TaskgridTaskRunner(address=cluster.address, progress="bar"))
    def pipeline():
        return [f.result() for f in [ok.submit(i) for i in range(3)]]

    assert pipeline() == [0, 1, 2]
    err = capsys.readouterr().err
    assert "taskgrid: 100%" in err and "3/3" in err


def test_progress_off_shows_nothing(cluster, capsys: pytest.CaptureFixture[str]) -> None:
    @flow(task_runner=TaskgridTaskRunner(address=cluster.address, progress="off"))
    def pipeline():
        return ok.submit(1).result()

    assert pipeline() == 1
    assert "taskgrid:" not in capsys.readouterr().err
