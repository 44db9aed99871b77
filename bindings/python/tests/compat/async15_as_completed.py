"""as_completed as an async iterator, with and without results, adding
futures while iterating, inside `async with Client(...)`."""
import asyncio
import json

from distributed import Client, LocalCluster, as_completed


def inc(x: int) -> int:
    return x + 1


async def main(address: str) -> dict:
    async with Client(address, asynchronous=True) as client:
        plain = [await f async for f in as_completed(client.map(inc, range(5)))]
        pairs = []
        ac = as_completed(client.map(inc, [10, 20]), with_results=True)
        async for future, value in ac:
            pairs.append([future.key == future.key, value])
            if value == 11:
                ac.add(client.submit(inc, 100))
        return {"plain": sorted(plain), "pairs": sorted(pairs, key=lambda p: p[1])}


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        print(json.dumps(asyncio.run(main(cluster.scheduler_address))))
