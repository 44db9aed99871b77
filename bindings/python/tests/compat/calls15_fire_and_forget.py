"""fire_and_forget: the task runs to its end after its client closed."""
import json
import os
import pathlib
import tempfile
import time

from distributed import Client, LocalCluster, fire_and_forget


def slow_write(path: str) -> str:
    time.sleep(1.0)
    pathlib.Path(path).write_text("done")
    return path


if __name__ == "__main__":
    target = os.path.join(tempfile.mkdtemp(), "ff.txt")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        with Client(cluster) as client:
            f = client.submit(slow_write, target, pure=False)
            fire_and_forget(f)
            del f
        before = os.path.exists(target)
        deadline = time.monotonic() + 30
        while not os.path.exists(target) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(json.dumps({"written_before_close": before, "written": os.path.exists(target)}))
