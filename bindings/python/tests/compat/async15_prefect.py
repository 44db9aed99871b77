"""An async Prefect flow of async tasks on the Dask task runner; a task
uses get_async_dask_client for nested work."""
import asyncio
import json

from prefect import flow, task
from prefect_dask import DaskTaskRunner, get_async_dask_client


def inc(x: int) -> int:
    return x + 1


@task
async def double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


@task
async def nested(n: int) -> int:
    async with get_async_dask_client() as client:
        return sum(await client.gather(client.map(inc, range(n))))


@task
def minus_one(x: int) -> int:
    return x - 1


@flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 2}))
async def pipeline() -> dict:
    a = double.submit(3)
    b = nested.submit(5)
    c = minus_one.submit(a)
    return {"double": a.result(), "nested": b.result(), "minus_one": c.result()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(pipeline())))
