"""The asynchronous client: await Client(...), awaitable futures, awaited
gather/scatter/wait/close, errors raised by await."""
import asyncio
import json

from distributed import Client, LocalCluster, wait


def inc(x: int) -> int:
    return x + 1


def fail(message: str) -> None:
    raise ValueError(message)


async def main(address: str) -> dict:
    client = await Client(address, asynchronous=True)
    a = client.submit(inc, 1)
    many = client.map(inc, range(5))
    out = {"a": await a, "a_result": await a.result(), "many": await client.gather(many)}
    out["nested"] = await client.gather({"x": [a, many[4]], "y": 3})
    data = await client.scatter([10, 20])
    out["scattered_sum"] = await client.submit(sum, data)
    done, not_done = await wait(many)
    out["waited"] = [len(done), len(not_done)]
    try:
        await client.submit(fail, "boom")
    except ValueError as e:
        out["error"] = str(e)
    out["without_errors"] = await client.gather([a, client.submit(fail, "x")], errors="skip")
    out["asynchronous"] = client.asynchronous
    await client.close()
    return out


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        print(json.dumps(asyncio.run(main(cluster.scheduler_address))))
