# SPDX-License-Identifier: Apache-2.0
"""The asynchronous API, as Dask's: Client(asynchronous=True), awaitable
futures, awaited gather/scatter/cancel/close, `async with`, `async for`
over as_completed, `await wait(...)`, LocalCluster(asynchronous=True),
and Prefect async tasks and flows with get_async_taskgrid_client.

Plain tests running asyncio.run (no pytest plugin); every wait is bounded
by asyncio.wait_for.
"""
from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

import taskgrid
from taskgrid import Client, LocalCluster, as_completed, wait
from taskgrid._async import METHODS, AsyncClient

BOUND = 60  # seconds any single await may take here


def inc(x: int) -> int:
    return x + 1


def slow(x: Any, seconds: float = 0.5) -> Any:
    time.sleep(seconds)
    return x


def fail(message: str) -> None:
    raise ValueError(message)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def test_await_client_submit_gather_close(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        client = await Client(py_cluster.address, asynchronous=True, set_as_default=False)
        assert isinstance(client, AsyncClient) and client.asynchronous
        f = client.submit(inc, 1)
        assert isinstance(f, taskgrid.Future)  # submit is not awaited, as in Dask
        assert await f == 2
        assert await f.result() == 2
        futures = client.map(inc, range(5))
        assert await client.gather(futures) == [1, 2, 3, 4, 5]
        nested = {"a": [f, futures[4]], "b": (futures[0],), "c": 7}
        assert await client.gather(nested) == {"a": [2, 5], "b": (1,), "c": 7}
        assert await client.gather(f) == 2
        assert await client  # awaiting again gives the client
        await client.close()
        assert client._closed
        with pytest.raises(RuntimeError, match="closed"):
            client.submit(inc, 1)
        await client.close()  # closing twice is fine

    run(main())


def test_async_with_is_the_default_client_and_closes(py_cluster: LocalCluster) -> None:
    async def main() -> AsyncClient:
        async with Client(py_cluster.address, asynchronous=True) as client:
            assert taskgrid.get_client() is client
            assert await client.submit(inc, 41) == 42
        return client

    client = run(main())
    assert client._closed
    with pytest.raises(ValueError, match="no client"):
        taskgrid.get_client()


def test_waiting_does_not_block_the_event_loop(py_cluster: LocalCluster) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            t = asyncio.ensure_future(ticker())
            start = time.monotonic()
            assert await c.submit(slow, "x", 0.8, pure=False) == "x"
            assert await c.gather(c.map(slow, [1, 2], [0.5, 0.5], pure=False)) == [1, 2]
            elapsed = time.monotonic() - start
            t.cancel()
            # A blocked loop would not have ticked while the tasks ran.
            assert ticks >= int(elapsed / 0.01) // 4, (ticks, elapsed)

    run(main())


def test_errors_and_timeouts(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            bad = c.submit(fail, "boom")
            with pytest.raises(ValueError, match="boom"):
                await bad
            with pytest.raises(ValueError, match="boom"):
                await c.gather([c.submit(inc, 1), bad])
            assert await c.gather([c.submit(inc, 1), bad], errors="skip") == [2]
            exc = await bad.exception()
            assert isinstance(exc, ValueError) and "boom" in str(exc)
            assert "boom" in (await bad.traceback() or "")
            assert await c.submit(inc, 1).exception() is None
            long = c.submit(slow, 1, 2.0, pure=False)
            with pytest.raises(TimeoutError, match=long.key):
                await long.result(timeout=0.1)
            with pytest.raises(TimeoutError, match=long.key):
                await c.gather([long], timeout=0.1)
            assert await c.cancel([long]) == 1
            with pytest.raises(ValueError, match="errors must be"):
                await c.gather([long], errors="ignore")

    run(main())


def test_scatter_cancel_and_other_awaited_calls(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            data = await c.scatter([10, 20])
            assert all(isinstance(f, taskgrid.Future) for f in data)
            assert await c.gather(data) == [10, 20]
            one = await c.scatter({"scattered-x": 5})
            assert await c.submit(inc, one["scattered-x"]) == 6
            long = c.submit(slow, 1, 2.0, pure=False)
            assert await long.cancel() == 1  # awaited, as in Dask
            with pytest.raises(taskgrid.CancelledError):
                await asyncio.wait_for(long, 10)
            await c.wait_for_workers(2, timeout=10)
            status = await c.status()
            assert len(status.workers) >= 2

    run(main())


def test_as_completed_async_for(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            fast = c.submit(inc, -1)
            assert await fast == 0
            late = c.submit(slow, "late", 0.5, pure=False)
            seen = [f async for f in as_completed([late, fast])]
            assert seen == [fast, late]  # in the order they finish
            assert late.done()
            ac = as_completed(c.map(inc, range(3)), with_results=True)
            got = []
            async for _, value in ac:
                got.append(value)
                if value == 1:
                    ac.add(c.submit(inc, 100))
            assert sorted(got) == [1, 2, 3, 101]
            errs = [
                pair
                async for pair in as_completed(
                    [c.submit(fail, "bad"), c.submit(inc, 0)],
                    with_results=True,
                    raise_errors=False,
                )
            ]
            values = sorted(str(v) for _, v in errs)
            assert values == ["1", "bad"]
            with pytest.raises(ValueError, match="bad"):
                async for _ in as_completed([c.submit(fail, "bad")], with_results=True):
                    pass

    run(main())


def test_await_wait(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            fs = c.map(inc, range(4))
            done, not_done = await wait(fs)
            assert done == set(fs) and not not_done
            long = c.submit(slow, 1, 2.0, pure=False)
            quick = c.submit(inc, 7)
            done, not_done = await wait([long, quick], return_when="FIRST_COMPLETED")
            assert quick in done and long in not_done
            done, not_done = await wait([long, quick], return_when="FIRST_COMPLETED")
            assert done == {quick}  # one was done already: no wait
            bad = c.submit(fail, "bad")
            with pytest.raises(ValueError):
                await bad
            done, not_done = await wait([long, bad], return_when="FIRST_EXCEPTION")
            assert done == {bad} and not_done == {long}
            done, not_done = await wait([long], timeout=0.1)
            assert not done and not_done == {long}
            with pytest.raises(ValueError, match="return_when"):
                await wait([long], return_when="SOMETIMES")
            await c.cancel([long])

    run(main())


def test_held_results_come_without_blocking(py_cluster: LocalCluster) -> None:
    # Larger than the scheduler's inline limit: held by its worker, fetched
    # when awaited.
    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            big = c.submit(lambda n: b"x" * n, 300_000)
            assert await big == b"x" * 300_000
            many = c.map(lambda i: bytes([i]) * 200_000, range(3))
            assert [len(v) for v in await c.gather(many)] == [200_000] * 3

    run(main())


def test_closing_wakes_waiters(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        c = await Client(py_cluster.address, asynchronous=True, set_as_default=False)
        long = c.submit(slow, 1, 2.0, pure=False)
        waiter = asyncio.ensure_future(long.result())
        iterating = asyncio.ensure_future(as_completed([long]).__anext__())
        await asyncio.sleep(0.1)
        await c.close()
        with pytest.raises(taskgrid.CancelledError, match="closed"):
            await asyncio.wait_for(waiter, 10)
        assert await asyncio.wait_for(iterating, 10) is long

    run(main())


def test_blocking_only_uses_are_refused(py_cluster: LocalCluster) -> None:
    async def main() -> None:
        client = Client(py_cluster.address, asynchronous=True, set_as_default=False)
        with pytest.raises(RuntimeError, match="await it first"):
            client.submit(inc, 1)
        assert "not started" in repr(client)
        with pytest.raises(TypeError, match="async with"), client:
            pass
        await client
        try:
            f = client.submit(inc, 1)
            with pytest.raises(TypeError, match="async for"):
                next(iter(as_completed([f])))
            with pytest.raises(TypeError, match="watch"):
                client.watch()
            assert await f == 2
        finally:
            await client.close()

    run(main())


def test_failed_connection_is_raised_on_await() -> None:
    async def main() -> None:
        client = Client("tcp://127.0.0.1:1", asynchronous=True, timeout=0.5)
        with pytest.raises(taskgrid.SchedulerError, match="cannot reach"):
            await client
        with pytest.raises(taskgrid.SchedulerError):
            await client  # the same error, again
        await client.close()  # nothing to close

    run(main())


def test_await_a_synchronous_clients_future(py_client: Client) -> None:
    f = py_client.submit(inc, 9)

    async def main() -> Any:
        return await f

    assert run(main()) == 10
    assert f.result() == 10  # still a blocking client


def test_every_client_method_is_classified() -> None:
    public = {n for n, _ in inspect.getmembers(Client, inspect.isfunction) if n[0] != "_"}
    assert set(METHODS) == public
    for name in ("submit", "map", "persist", "future", "map_partitions", "tree_reduce"):
        assert METHODS[name] == "immediate"
    for name in ("gather", "scatter", "replicate", "close", "get", "compute"):
        assert METHODS[name] == "native"
    for name in ("cancel", "status", "wait_for_workers", "scale", "adapt", "set_log_level"):
        assert METHODS[name] == "awaited"
    assert METHODS["watch"] == "refused"
    assert METHODS["fetch_held"] == "immediate"  # a coroutine already


def test_dask_get_and_compute(py_cluster: LocalCluster) -> None:
    dask = pytest.importorskip("dask")

    async def main() -> None:
        async with Client(py_cluster.address, asynchronous=True, set_as_default=False) as c:
            assert await c.get({"a": (inc, 1), "b": (inc, "a")}, "b") == 3
            futures = c.get({"x": (inc, 10)}, ["x"], sync=False)
            assert await c.gather(futures) == [11]
            total = dask.delayed(sum)([dask.delayed(inc)(i) for i in range(4)])
            fut = c.compute(total)
            assert isinstance(fut, taskgrid.Future)
            assert await fut == 10
            assert await c.compute(total, sync=True) == 10

    run(main())


def test_async_local_cluster(binaries: tuple[str, str]) -> None:
    async def main() -> None:
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, asynchronous=True
        )
        assert "not started" in repr(cluster)
        with pytest.raises(AttributeError, match="async with"):
            _ = cluster.address
        with pytest.raises(TypeError, match="async with"), cluster:
            pass
        async with cluster, Client(cluster, asynchronous=True, set_as_default=False) as client:
            assert await client.submit(inc, 1) == 2
            await cluster.scale(2)
            await cluster.wait_for_workers(2, timeout=10)
            assert len((await cluster.status()).workers) == 2
            assert await client.gather(client.map(inc, range(4))) == [1, 2, 3, 4]
        assert cluster._closed

    run(main())


def test_prefect_async_flow_and_tasks(py_cluster: LocalCluster) -> None:
    from prefect import flow, task

    from taskgrid.prefect import TaskgridTaskRunner, get_async_taskgrid_client

    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    @task
    async def nested(n: int) -> tuple[int, bool]:
        async with get_async_taskgrid_client(timeout="30s") as client:
            total = sum(await client.gather(client.map(inc, range(n))))
            return total, client.asynchronous

    @task
    def plain(x: int) -> int:
        return x - 1

    @flow(task_runner=TaskgridTaskRunner(address=py_cluster.address))
    async def pipeline() -> dict[str, Any]:
        a = double.submit(3)
        b = nested.submit(5)
        c = plain.submit(a)  # an async task's future feeds a sync task
        async with get_async_taskgrid_client() as client:
            from_flow = await client.submit(inc, 99)
            flow_async = client.asynchronous
        return {
            "double": a.result(),
            "nested": b.result(),
            "plain": c.result(),
            "from_flow": from_flow,
            "flow_async": flow_async,
        }

    got = asyncio.run(pipeline())  # type: ignore[arg-type]
    assert got == {
        "double": 6,
        "nested": (15, True),
        "plain": 5,
        "from_flow": 100,
        "flow_async": True,
    }
