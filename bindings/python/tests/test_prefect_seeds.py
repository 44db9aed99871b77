# SPDX-License-Identifier: Apache-2.0
"""The prefect-dask examples of the seeds, run on taskgrid.

Each flow is the seed's code with the import switched:

    from prefect_dask import DaskTaskRunner, get_dask_client
    ->
    from taskgrid.prefect import TaskgridTaskRunner as DaskTaskRunner
    from taskgrid.prefect import get_taskgrid_client as get_dask_client

and ``dask.annotate`` spelled ``taskgrid.annotate``. Where a seed needs the
internet (the NOAA images) a slow local HTTP server stands in; where it
needs dask.dataframe, plain lists do; where it calls tasks directly inside
``annotate`` (which Prefect 3 runs in the flow, not on the runner) the
tasks are submitted, so the annotation has something to act on.
"""
from __future__ import annotations

import http.server
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from time import sleep
from typing import Iterator, List

import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client as get_prefect_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from prefect.states import State

import taskgrid
from taskgrid.prefect import TaskgridTaskRunner as DaskTaskRunner
from taskgrid.prefect import get_taskgrid_client as get_dask_client

HERE = Path(__file__).resolve().parent


def task_runs(flow_state, timeout: float = 30.0, expected: int = 1) -> list:
    """The flow run's task runs as recorded by the Prefect API."""
    flow_run_id = flow_state.state_details.flow_run_id
    deadline = time.monotonic() + timeout
    with get_prefect_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)
            done = [r for r in runs if r.state_type and r.state_type.value == "COMPLETED"
                    and r.start_time and r.end_time]
            if len(done) >= expected or time.monotonic() > deadline:
                return done
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# count_to (001: "this flow counts up to 10 in parallel")
# ---------------------------------------------------------------------------

@task
def shout(number):
    time.sleep(0.5)
    print(f"#{number}")


@flow(task_runner=DaskTaskRunner)
def count_to(highest_number):
    for number in range(highest_number):
        shout.submit(number)


def test_count_to_ten(binaries, capfd) -> None:
    state = count_to(10, return_state=True)
    assert state.is_completed()
    printed = capfd.readouterr().out.split()
    assert {f"#{n}" for n in range(10)} <= set(printed)  # every shout ran
    runs = task_runs(state, expected=10)
    assert len(runs) == 10
    # In parallel: some task runs overlapped in time.
    spans = sorted((r.start_time, r.end_time) for r in runs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans


# ---------------------------------------------------------------------------
# The image download (000 / 002): parallel beats sequential
# ---------------------------------------------------------------------------

DELAY = 0.4
URL_FORMAT = ""  # set by the fixture: the seed's URL, on a local slow server


class _SlowImages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        time.sleep(DELAY)
        body = b"\x89PNG\r\n\x1a\n" + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def image_server(tmp_path, monkeypatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowImages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(sys.modules[__name__], "URL_FORMAT", base + (
        "/products/NMME/archive/"
        "{year:04d}{month:02d}0800/current/images/nino34.rescaling.ENSMEAN.png"))
    monkeypatch.chdir(tmp_path)
    yield base
    server.shutdown()


@task
def download_image(year: int, month: int, directory: Path) -> Path:
    # download image from URL
    url = URL_FORMAT.format(year=year, month=month)
    resp = httpx.get(url)

    # save content to directory/YYYYMM.png
    file_path = (directory / url.split("/")[-1]).with_stem(f"{year:04d}{month:02d}")
    file_path.write_bytes(resp.content)
    return file_path


@flow
def download_nino_34_plumes_from_year(year: int) -> List[Path]:
    # create a directory to hold images
    directory = Path("data")
    directory.mkdir(exist_ok=True)

    # download all images
    file_paths = []
    for month in range(1, 12 + 1):
        file_path = download_image(year, month, directory)
        file_paths.append(file_path)
    return file_paths


@flow(task_runner=DaskTaskRunner(cluster_kwargs={"processes": False}))
def download_nino_34_plumes_from_year_in_parallel(year: int) -> List[Path]:
    # create a directory to hold images
    directory = Path("data")
    directory.mkdir(exist_ok=True)

    # download all images
    file_paths = []
    for month in range(1, 12 + 1):
        file_path = download_image.submit(year, month, directory)
        file_paths.append(file_path)
    return file_paths


def test_image_download_in_parallel_beats_sequential(binaries, image_server) -> None:
    start = time.monotonic()
    before = download_nino_34_plumes_from_year(2022)
    sequential = time.monotonic() - start
    start = time.monotonic()
    after = download_nino_34_plumes_from_year_in_parallel(2022)
    parallel = time.monotonic() - start
    # Prefect 3 returns the States of the futures a flow returns.
    after = [s.result() if isinstance(s, State) else s for s in after]
    assert [p.name for p in after] == [p.name for p in before] == \
        [f"2022{m:02d}.png" for m in range(1, 13)]
    assert Path("data/202203.png").read_bytes().endswith(b"/2022030800/current/images/"
                                                         b"nino34.rescaling.ENSMEAN.png")
    assert sequential >= 12 * DELAY
    assert parallel < sequential, (parallel, sequential)


# ---------------------------------------------------------------------------
# The diamond (004), on a cluster started like the seed's dask-scheduler and
# dask-worker commands: taskgrid-scheduler plus two `python -m taskgrid.worker`.
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scheduler_and_two_workers(binaries) -> Iterator[str]:
    scheduler = subprocess.Popen([binaries[0], "--listen", "tcp://127.0.0.1:0",
                                  "--launcher", "none", "--log-level", "warn"],
                                 stdout=subprocess.PIPE, text=True)
    workers: list = []
    try:
        line = scheduler.stdout.readline().strip()
        address = line.rsplit(" ", 1)[-1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE)] + sys.path))
        workers = [subprocess.Popen([sys.executable, "-m", "taskgrid.worker", address,
                                     "--nthreads", "2", "--log-level", "warn"], env=env)
                   for _ in range(2)]
        with taskgrid.Client(address, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=30)
        yield address
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(15)
        scheduler.terminate()
        scheduler.wait(15)


@task
def inc(x):
    sleep(random.random() / 10)
    return x + 1


@task
def dec(x):
    sleep(random.random() / 10)
    return x - 1


@task
def add(x, y):
    sleep(random.random() / 10)
    return x + y


@task(name="sum")
def list_sum(arr):
    return sum(arr)


@flow
def dask_example():
    incs = inc.map(x=range(100))
    decs = dec.map(x=range(100))
    adds = add.map(x=incs, y=decs)
    total = list_sum.submit(adds)
    return total


def test_diamond_flow_on_an_existing_cluster(scheduler_and_two_workers) -> None:
    executor = DaskTaskRunner(address=scheduler_and_two_workers)
    state = dask_example.with_options(task_runner=executor)(return_state=True)
    assert state.is_completed()
    total = state.result()
    if isinstance(total, State):  # Prefect 3: a returned future comes back as its State
        total = total.result()
    assert total == sum(2 * x for x in range(100))


# ---------------------------------------------------------------------------
# Annotations (001): priority and resources
# ---------------------------------------------------------------------------

@task
def show(x):
    print(x)
    return time.monotonic()


@task
def hold_the_worker(seconds):
    time.sleep(seconds)


@flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1}))
def priority_flow():
    busy = hold_the_worker.submit(1.0)
    # Both wait for `busy`, so they become ready together and only their
    # priority decides which runs first on the one thread.
    with taskgrid.annotate(priority=-10):
        low = show.submit(1, wait_for=[busy])  # low priority task

    with taskgrid.annotate(priority=10):
        high = show.submit(2, wait_for=[busy])  # high priority task
    return low.result(), high.result()


def test_priority_annotation(binaries) -> None:
    low_started, high_started = priority_flow()
    assert high_started < low_started


@task
def show_span(x):
    start = time.monotonic()
    time.sleep(0.3)
    print(x)
    return start, time.monotonic()


# Create a `LocalCluster` with some resource annotations
# Annotations are abstract in dask and not inferred from your system.
# Here, we claim that our system has 1 GPU and 1 process available per worker
@flow(
    task_runner=DaskTaskRunner(
        cluster_kwargs={"n_workers": 1, "resources": {"GPU": 1, "process": 1}}
    )
)
def resource_flow():
    with taskgrid.annotate(resources={'GPU': 1}):
        future = show.submit(0)  # this task requires 1 GPU resource on a worker
    gpu = future

    with taskgrid.annotate(resources={'process': 1}):
        # These tasks each require 1 process on a worker; because we've
        # specified that our cluster has 1 process per worker and 1 worker,
        # these tasks will run sequentially
        futures = [show_span.submit(1), show_span.submit(2), show_span.submit(3)]
    return gpu.result(), [f.result() for f in futures]


def test_resource_annotation(binaries) -> None:
    _, spans = resource_flow()
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"tasks needing process=1 overlapped: {spans}"


# ---------------------------------------------------------------------------
# Nested work with get_dask_client (000 / 002 / 003)
# ---------------------------------------------------------------------------

def year_mean(values):
    return sum(values) / len(values)


@task
def read_data(start: int, end: int) -> list:
    # stands in for dask.datasets.timeseries(start, end): one value per day
    return [(year, day % 7) for year in range(start, end) for day in range(365)]


@task
def process_data(df: list) -> dict:
    with get_dask_client() as client:
        years = sorted({year for year, _ in df})
        futures = client.map(year_mean, [[v for y, v in df if y == year] for year in years])
        return dict(zip(years, client.gather(futures)))


@pytest.fixture(scope="module")
def existing_client(binaries) -> Iterator[taskgrid.Client]:
    # seed: client = dask.distributed.Client()
    with taskgrid.Client(n_workers=2, threads_per_worker=1, set_as_default=False) as client:
        yield client


def test_nested_work_with_get_client_on_an_existing_cluster(existing_client) -> None:
    @flow(task_runner=DaskTaskRunner(address=existing_client.address))
    def dask_pipeline():
        df = read_data.submit(1988, 2022)
        df_yearly_average = process_data.submit(df)
        return df_yearly_average

    result = dask_pipeline()
    if isinstance(result, State):  # Prefect 3: a returned future comes back as its State
        result = result.result()
    assert sorted(result) == list(range(1988, 2022))
    assert result[1990] == pytest.approx(sum(d % 7 for d in range(365)) / 365)


@task
def compute_task():
    with get_dask_client() as client:
        futures = client.map(year_mean, [[1, 2, 3], [4, 5, 6]])
        summary_df = client.gather(futures)
    return summary_df


@flow(task_runner=DaskTaskRunner())
def dask_flow():
    prefect_future = compute_task.submit()
    return prefect_future.result()


def test_nested_work_on_a_temporary_cluster(binaries) -> None:
    assert dask_flow() == [2.0, 5.0]
