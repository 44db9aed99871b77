"""The prefect-dask seeds' examples, a few tasks each: count_to, an
existing client's address, get_dask_client in a task, dask.annotate."""
import json
import pathlib
import time

import dask
from dask import delayed
from prefect import flow, task

from distributed import Client, LocalCluster
from prefect_dask import DaskTaskRunner, get_dask_client


@task
def shout(number: int) -> None:
    time.sleep(0.1)
    pathlib.Path(f"shout-{number}").write_text(str(number))


@flow(task_runner=DaskTaskRunner(cluster_kwargs={"processes": False}))
def count_to(highest_number: int) -> None:
    for number in range(highest_number):
        shout.submit(number)


@task
def read_data(n: int) -> list:
    return list(range(n))


@task
def process_data(data: list) -> int:
    with get_dask_client():
        return delayed(sum)([delayed(lambda x: x * x)(x) for x in data]).compute()


@task
def show(x: int) -> int:
    return x


if __name__ == "__main__":
    out = {}
    count_to(5)
    # prefect-dask may cancel unawaited runs at tear-down (taskgrid runs them
    # all: tests/test_prefect_seeds.py), so only "it ran" is compared.
    out["count_to_ran"] = any(pathlib.Path(".").glob("shout-*"))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        client = Client(cluster)

        @flow(task_runner=DaskTaskRunner(address=client.scheduler.address))
        def dask_pipeline() -> int:
            df = read_data.submit(5)
            return process_data.submit(df).result()

        out["dask_pipeline"] = dask_pipeline()
        client.close()

    @flow(task_runner=DaskTaskRunner(
        cluster_kwargs={"n_workers": 1, "processes": False, "resources": {"GPU": 1, "process": 1}}))
    def my_flow() -> list:
        with dask.annotate(priority=-10):
            low = show.submit(1)
        with dask.annotate(resources={"GPU": 1}):
            gpu = show.submit(0)
        with dask.annotate(resources={"process": 1}):
            seq = [show.submit(i) for i in (1, 2, 3)]
        return [low.result(), gpu.result(), *[f.result() for f in seq]]

    out["annotated"] = my_flow()
    print(json.dumps(out))
