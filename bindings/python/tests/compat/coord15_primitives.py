"""Variable, Queue, Event, Lock and Semaphore shared by two clients and a task."""

import json

from distributed import Client, Event, LocalCluster, Lock, Queue, Semaphore, Variable


def inc(x: int) -> int:
    return x + 1


def producer(n: int) -> int:
    q = Queue("work")
    for i in range(n):
        q.put(i)
    return n


def timed_out(fn) -> bool:
    try:
        fn()
    except TimeoutError:
        return True
    return False


if __name__ == "__main__":
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster,
        Client(cluster) as a,
        Client(cluster, set_as_default=False) as b,
    ):
        out = {}
        v = Variable("v", client=a)
        v.set({"x": 1})
        out["var"] = Variable("v", client=b).get(timeout=10)
        v.set(a.submit(inc, 41))
        out["var_future"] = Variable("v", client=b).get(timeout=10).result()
        out["var_timeout"] = timed_out(lambda: Variable("unset", client=b).get(timeout=0.2))

        q = Queue("q", client=a)
        for item in (1, "two", [3]):
            q.put(item)
        qb = Queue("q", client=b)
        out["qsize"] = qb.qsize()
        out["q1"] = qb.get(timeout=10)
        out["qrest"] = qb.get(batch=True)
        out["q_timeout"] = timed_out(lambda: qb.get(timeout=0.2))
        a.submit(producer, 3).result()
        out["work"] = sorted(Queue("work", client=b).get(batch=3))

        e = Event("e", client=a)
        out["e_before"] = [e.is_set(), e.wait(0.2)]
        Event("e", client=b).set()
        out["e_after"] = [e.wait(10), Event("e", client=b).is_set()]

        lock = Lock("l")
        out["lock"] = [lock.acquire(), Lock("l").acquire(blocking=False), lock.locked()]
        lock.release()
        out["unlocked"] = lock.locked()

        sem = Semaphore(max_leases=2, name="s")
        out["sem"] = [sem.acquire(), sem.acquire(), sem.acquire(timeout=0.2), sem.get_value()]
        sem.release()
        sem.release()
        out["sem_after"] = sem.get_value()
        print(json.dumps(out))
