# SPDX-License-Identifier: Apache-2.0
"""Client.watch, Client.set_log_level and taskgrid.progress against a fake
scheduler (fake_scheduler.py): typed updates, request fields, ordering,
cancellation, reconnection, errors, progress that ends when every key is
final, shows errors and splits keys over several streams."""
from __future__ import annotations

import io
import threading
import time
from typing import Iterator

import grpc
import pytest
from fake_scheduler import FakeScheduler, S

import taskgrid
from taskgrid import _progress
from taskgrid.v1 import taskgrid_pb2 as pb


@pytest.fixture()
def fake() -> Iterator[FakeScheduler]:
    f = FakeScheduler()
    yield f
    f.stop()


@pytest.fixture()
def client(fake: FakeScheduler) -> Iterator[taskgrid.Client]:
    with taskgrid.Client(fake.address, timeout=10) as c:
        yield c


def _one_update(update: pb.WatchUpdate):
    def gen(request, context):
        yield update
        while context.is_active():
            time.sleep(0.01)
    return gen


# ---------------------------------------------------------------------------
# watch
# ---------------------------------------------------------------------------


def test_watch_yields_typed_updates(fake: FakeScheduler, client: taskgrid.Client) -> None:
    u = pb.WatchUpdate(
        time_us=1_700_000_000_500_000,
        totals=pb.TaskCounts(waiting=1, ready=2, processing=3, memory=4, erred=5,
                             cancelled=6, released=7),
        tasks=[
            pb.TaskEvent(key="a", previous=S.TASK_STATE_PROCESSING, state=S.TASK_STATE_MEMORY,
                         function="tg.inc", worker="w1", attempt=1,
                         time_us=1_700_000_000_250_000, run_us=1500, nbytes=12),
            pb.TaskEvent(key="b", previous=S.TASK_STATE_PROCESSING, state=42,
                         error_type="ValueError"),
        ],
        dropped_events=3,
        functions=[pb.FunctionCounts(function="tg.inc", counts=pb.TaskCounts(memory=4))],
        workers=[
            pb.WorkerEvent(kind=pb.WorkerEvent.KIND_JOINED,
                           worker=pb.WorkerInfo(name="w1", nthreads=2, memory=10),
                           time_us=1_000_000),
            pb.WorkerEvent(kind=9, reason="?"),
        ],
        nworkers=1, target_workers=3,
    )
    fake.watch = _one_update(u)
    with client.watch(task_events=True, functions=True, workers=True) as w:
        got = w.next(timeout=10)
    assert isinstance(got, taskgrid.WatchUpdate)
    assert got.time == pytest.approx(1_700_000_000.5)
    assert got.totals == taskgrid.TaskCounts(1, 2, 3, 4, 5, 6, 7)
    assert (got.totals.active, got.totals.done, got.totals.total) == (6, 22, 28)
    assert got.keys_counts == taskgrid.TaskCounts()
    a, b = got.tasks
    assert (a.key, a.previous, a.state, a.function, a.worker, a.attempt) == (
        "a", "processing", "memory", "tg.inc", "w1", 1)
    assert a.time == pytest.approx(1_700_000_000.25)
    assert a.run_time == pytest.approx(0.0015)
    assert a.nbytes == 12
    # A state this client does not know is named, not guessed.
    assert (b.state, b.error_type) == ("unknown(42)", "ValueError")
    assert got.dropped_events == 3
    assert got.functions == {"tg.inc": taskgrid.TaskCounts(memory=4)}
    joined, odd = got.workers
    assert (joined.kind, joined.worker.name, joined.worker.nthreads, joined.worker.memory,
            joined.time) == ("joined", "w1", 2, 10, 1.0)
    assert odd.kind == "unknown(9)"
    assert (got.nworkers, got.target_workers, got.reconnected) == (1, 3, False)


def test_watch_request_carries_the_options(fake: FakeScheduler,
                                           client: taskgrid.Client) -> None:
    fake.set(["k1", "k2"], S.TASK_STATE_WAITING)
    class Keyed:  # a Future names its key; so do plain keys
        key = "k1"

    fut = Keyed()
    with client.watch(keys=[fut, "k2", "k1"], key_prefixes=["p-"], task_events=True,
                      functions=True, workers=True, interval=0.25, max_events=7) as w:
        assert w.next(timeout=10).keys_counts == taskgrid.TaskCounts(waiting=2)
    r = fake.requests[0]
    assert list(r.keys) == ["k1", "k2"]  # each once, in order
    assert list(r.key_prefixes) == ["p-"]
    assert (r.task_events, r.functions, r.workers, r.interval_ms, r.max_events) == (
        True, True, True, 250, 7)
    with client.watch(interval=0.001):
        fake.wait_for(lambda: len(fake.requests) == 2)
    assert fake.requests[1].interval_ms == 10  # the contract's least interval


def test_watch_refuses_bad_arguments(client: taskgrid.Client) -> None:
    with pytest.raises(ValueError, match="at most 65535 keys"):
        client.watch(keys=[f"k{i}" for i in range(65_536)])
    with pytest.raises(ValueError, match="interval must be a positive"):
        client.watch(interval=0)
    with pytest.raises(TypeError, match="task key"):
        client.watch(keys=[3])


def test_events_keep_their_order_across_updates(fake: FakeScheduler,
                                                client: taskgrid.Client) -> None:
    order = [S.TASK_STATE_WAITING, S.TASK_STATE_READY, S.TASK_STATE_PROCESSING,
             S.TASK_STATE_MEMORY]

    def gen(request, context):
        prev = S.TASK_STATE_UNSPECIFIED
        for i, s in enumerate(order):
            yield pb.WatchUpdate(tasks=[pb.TaskEvent(key="x", previous=prev, state=s,
                                                     time_us=i)])
            prev = s

    fake.watch = gen
    with client.watch(keys=["x"], task_events=True) as w:
        got = [(e.previous, e.state) for u in w for e in u.tasks]
    assert got == [("unspecified", "waiting"), ("waiting", "ready"), ("ready", "processing"),
                   ("processing", "memory")]


def test_leaving_the_block_cancels_the_stream(fake: FakeScheduler,
                                              client: taskgrid.Client) -> None:
    fake.set("k", S.TASK_STATE_PROCESSING)
    with client.watch(keys=["k"]) as w:
        w.next(timeout=10)
        assert fake.ended_streams == 0
    fake.wait_for(lambda: fake.ended_streams == 1)
    with pytest.raises(StopIteration):
        next(w)


def test_closing_the_client_ends_its_watches(fake: FakeScheduler) -> None:
    c = taskgrid.Client(fake.address, timeout=10)
    fake.set("k", S.TASK_STATE_PROCESSING)
    w = c.watch(keys=["k"])
    w.next(timeout=10)
    c.close()
    fake.wait_for(lambda: fake.ended_streams == 1)
    assert list(w) == []


def test_next_times_out_without_updates(fake: FakeScheduler, client: taskgrid.Client) -> None:
    fake.set("k", S.TASK_STATE_PROCESSING)
    with client.watch(keys=["k"]) as w:
        w.next(timeout=10)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            w.next(timeout=0.2)
        assert time.monotonic() - t0 < 5
        fake.set("k", S.TASK_STATE_MEMORY)  # the stream still works after a timeout
        assert w.next(timeout=10).keys_counts.memory == 1


def test_a_broken_stream_is_reopened(fake: FakeScheduler, client: taskgrid.Client) -> None:
    calls = []

    def gen(request, context):
        calls.append(1)
        yield pb.WatchUpdate(totals=pb.TaskCounts(processing=len(calls)))
        if len(calls) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "scheduler restarting")
        while context.is_active():
            time.sleep(0.01)

    fake.watch = gen
    with client.watch() as w:
        first, second = w.next(timeout=10), w.next(timeout=10)
    assert (first.totals.processing, first.reconnected) == (1, False)
    # The update after the gap says events may have been missed.
    assert (second.totals.processing, second.reconnected) == (2, True)


def test_no_reconnect_raises_at_once(fake: FakeScheduler, client: taskgrid.Client) -> None:
    def gen(request, context):
        context.abort(grpc.StatusCode.UNAVAILABLE, "gone")
        yield  # pragma: no cover

    fake.watch = gen
    with client.watch(reconnect=0) as w, pytest.raises(taskgrid.SchedulerError,
                                                        match="UNAVAILABLE: gone"):
        w.next(timeout=10)
    with client.watch(reconnect=0.3) as w, pytest.raises(taskgrid.SchedulerError,
                                                          match="could not reopen it within"):
        w.next(timeout=10)


@pytest.mark.parametrize("code,exc,text", [
    (grpc.StatusCode.UNIMPLEMENTED, NotImplementedError, "does not implement it"),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionError, "refused it: admin only"),
    (grpc.StatusCode.INVALID_ARGUMENT, ValueError, "refused the request"),
    (grpc.StatusCode.INTERNAL, taskgrid.SchedulerError, "INTERNAL"),
])
def test_watch_errors_name_the_problem(fake: FakeScheduler, client: taskgrid.Client,
                                       code, exc, text) -> None:
    def gen(request, context):
        context.abort(code, "admin only")
        yield  # pragma: no cover

    fake.watch = gen
    with client.watch() as w, pytest.raises(exc, match=text):
        w.next(timeout=10)


def test_set_log_level(fake: FakeScheduler, client: taskgrid.Client) -> None:
    assert client.set_log_level() == "info"
    assert client.set_log_level("DEBUG") == "info"
    assert fake.log_level == "debug"
    assert client.set_log_level("warn") == "debug"
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        client.set_log_level("loud")
    assert fake.log_level == "warn"
    fake.deny["SetLogLevel"] = "role 'client' may not set the log level"
    with pytest.raises(PermissionError, match="role 'client'"):
        client.set_log_level("info")


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------


def _finish_later(fake: FakeScheduler, steps: list[tuple[list[str], int]],
                  streams: int = 1) -> threading.Thread:
    """Once `streams` streams are open, apply each (keys, state) step as
    soon as the watchers have seen the previous one."""
    def run() -> None:
        fake.wait_for(lambda: fake.open_streams >= streams)
        for keys, state in steps:
            time.sleep(0.05)
            fake.set(keys, state)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_progress_ends_when_every_key_is_final(fake: FakeScheduler,
                                               client: taskgrid.Client) -> None:
    keys = [f"inc-{i:08x}" for i in range(10)]
    fake.set(keys, S.TASK_STATE_WAITING)
    t = _finish_later(fake, [(keys[:4], S.TASK_STATE_PROCESSING), (keys[:4], S.TASK_STATE_MEMORY),
                             (keys[4:], S.TASK_STATE_MEMORY)])
    out = io.StringIO()
    assert taskgrid.progress(keys, file=out, notebook=False) is None
    t.join(10)
    text = out.getvalue()
    assert "10/10" in text
    assert "erred" not in text
    assert [list(r.keys) for r in fake.requests] == [keys]


def test_progress_shows_errors(fake: FakeScheduler, client: taskgrid.Client) -> None:
    keys = [f"f-{i}" for i in range(5)]
    fake.set(keys, S.TASK_STATE_READY)
    _finish_later(fake, [(keys[:3], S.TASK_STATE_MEMORY), (keys[3:], S.TASK_STATE_ERRED)])
    out = io.StringIO()
    taskgrid.progress(*keys, file=out, notebook=False)
    assert "5/5" in out.getvalue()
    assert "2 erred" in out.getvalue()


def test_progress_splits_keys_over_streams(fake: FakeScheduler, client: taskgrid.Client,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "_STREAM_KEYS", 4)
    keys = [f"k-{i}" for i in range(10)]
    fake.set(keys, S.TASK_STATE_PROCESSING)
    p = _progress.Progress(client, keys, file=io.StringIO())
    assert p.streams == 3
    done = threading.Event()
    t = threading.Thread(target=lambda: (p.run(), done.set()), daemon=True)
    t.start()
    fake.wait_for(lambda: fake.open_streams == 3)
    assert sorted(len(r.keys) for r in fake.requests) == [2, 4, 4]
    assert sorted(k for r in fake.requests for k in r.keys) == sorted(keys)
    fake.set(keys[:8], S.TASK_STATE_MEMORY)  # two streams' keys final, not the third's
    fake.wait_for(lambda: p.counts.get("", taskgrid.TaskCounts()).memory == 8)
    assert not done.is_set()
    fake.set(keys[8:], S.TASK_STATE_CANCELLED)
    assert done.wait(10)
    assert p.counts[""] == taskgrid.TaskCounts(memory=8, cancelled=2)
    fake.wait_for(lambda: fake.ended_streams == 3)  # every stream closed at the end


def test_progress_multi_has_a_bar_per_prefix(fake: FakeScheduler,
                                             client: taskgrid.Client) -> None:
    keys = ["inc-1a2b", "inc-3c4d", "inc-5e6f", "load-csv-0", "load-csv-1"]
    fake.set(keys, S.TASK_STATE_MEMORY)
    out = io.StringIO()
    taskgrid.progress(keys, multi=True, file=out, notebook=False)
    text = out.getvalue()
    assert "inc: " in text and "3/3" in text
    assert "load-csv: " in text and "2/2" in text
    assert sorted(len(r.keys) for r in fake.requests) == [2, 3]


def test_key_split_groups_like_dask() -> None:
    ks = _progress.key_split
    assert ks("inc-9f86d081884c7d659a2feaa0c55ad015") == "inc"
    assert ks("load-csv-3") == "load-csv"
    assert ks("say_hello-0a1b2c3d-abcdefab-1") == "say_hello"
    assert ks('("from-pandas-1a2b",3)') == "from-pandas"
    assert ks("plain") == "plain"


def test_progress_complete_false_counts_only_unfinished(fake: FakeScheduler,
                                                        client: taskgrid.Client) -> None:
    keys = [f"k-{i}" for i in range(6)]
    fake.set(keys[:4], S.TASK_STATE_MEMORY)
    fake.set(keys[4:], S.TASK_STATE_PROCESSING)
    _finish_later(fake, [(keys[4:], S.TASK_STATE_MEMORY)])
    out = io.StringIO()
    taskgrid.progress(keys, complete=False, file=out, notebook=False)
    assert "2/2" in out.getvalue()
    assert "/6" not in out.getvalue()


def test_progress_refuses_counts_that_do_not_add_up(fake: FakeScheduler,
                                                    client: taskgrid.Client) -> None:
    fake.watch = _one_update(pb.WatchUpdate(keys_counts=pb.TaskCounts(memory=5)))
    with pytest.raises(taskgrid.SchedulerError, match="counted 5 keys where 2 were asked for"):
        taskgrid.progress(["a", "b"], file=io.StringIO(), notebook=False)
    fake.wait_for(lambda: fake.ended_streams == 1)


def test_progress_fails_when_the_stream_ends_early(fake: FakeScheduler,
                                                   client: taskgrid.Client) -> None:
    def gen(request, context):
        yield pb.WatchUpdate(keys_counts=pb.TaskCounts(processing=2))

    fake.watch = gen
    with pytest.raises(taskgrid.SchedulerError, match="ended the watch before every key"):
        taskgrid.progress(["a", "b"], file=io.StringIO(), notebook=False)


def test_progress_without_watch_says_so(fake: FakeScheduler, client: taskgrid.Client) -> None:
    def gen(request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        yield  # pragma: no cover

    fake.watch = gen
    with pytest.raises(NotImplementedError, match="does not implement"):
        taskgrid.progress(["a"], file=io.StringIO(), notebook=False)


def test_progress_in_a_notebook_returns_at_once(fake: FakeScheduler,
                                                client: taskgrid.Client) -> None:
    keys = ["a", "b"]
    fake.set(keys, S.TASK_STATE_PROCESSING)
    p = taskgrid.progress(keys, notebook=True, file=io.StringIO())
    assert isinstance(p, taskgrid.Progress)
    fake.wait_for(lambda: fake.open_streams == 1)
    with pytest.raises(TimeoutError):
        p.wait(0.2)
    fake.set(keys, S.TASK_STATE_MEMORY)
    p.wait(10)
    # close() of a running one stops it and its streams.
    fake.set(keys, S.TASK_STATE_PROCESSING)
    p2 = taskgrid.progress(keys, notebook=True, file=io.StringIO())
    assert p2 is not None
    fake.wait_for(lambda: fake.open_streams == 2)
    p2.close()
    p2.wait(10)
    fake.wait_for(lambda: fake.ended_streams == 2)


def test_progress_of_nothing_returns(client: taskgrid.Client) -> None:
    assert taskgrid.progress([], notebook=False) is None
