"""`async with LocalCluster(asynchronous=True)` and a client on it."""
import asyncio
import json

from distributed import Client, LocalCluster


def square(x: int) -> int:
    return x * x


async def main() -> dict:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, asynchronous=True)
    async with cluster, Client(cluster, asynchronous=True) as client:
        squares = await client.gather(client.map(square, range(6)))
        total = await client.submit(sum, client.map(square, range(6)))
        return {"squares": squares, "total": total}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
