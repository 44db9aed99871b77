# SPDX-License-Identifier: Apache-2.0
"""taskgrid: a distributed task runner with a C scheduler, from Python.

>>> import taskgrid
>>> with taskgrid.Client() as client:          # a temporary local cluster
...     futures = client.map(lambda x: x + 1, range(10))
...     sum(client.gather(futures))
55

* :class:`Client` / :class:`Future` — submit, map, gather, as_completed,
  cancel, scale; futures passed as arguments become graph dependencies.
  ``Client(..., asynchronous=True)`` is for asyncio code, as Dask's
  (``await``, ``async with``, ``async for f in as_completed(...)``);
  so is ``LocalCluster(..., asynchronous=True)``.
* :func:`annotate` — priority/resources/retries for a block of submissions.
* ``Client.get`` / ``compute`` / ``persist`` — Dask's scheduler interface:
  dask.dataframe/array/bag graphs run as taskgrid tasks (needs dask).
* :class:`LocalCluster` — the C scheduler plus Python (or C) workers on
  loopback; :class:`SLURMCluster` — workers in Slurm batch jobs, with
  dask-jobqueue's options.
* :func:`get_client` — inside a task: a client to the same scheduler.
* :func:`worker_client`, :func:`secede`, :func:`rejoin`, :func:`get_worker`
  — Dask's nested-work API inside a task (a seceded task does not count
  against its worker's threads).
* :class:`Variable`, :class:`Queue`, :class:`Event`, :class:`Lock`,
  :class:`Semaphore` — Dask's coordination primitives, kept by the
  scheduler and shared by every client and task; ``Client.publish_dataset``
  and ``get_dataset`` — named values and futures for other clients.
* ``Client.who_has``/``has_what``/``scheduler_info``/``run``/``upload_file``
  /``restart``/``retire_workers``/``shutdown``/``get_task_stream``,
  :func:`fire_and_forget`, :func:`futures_of`, :func:`get_task_stream`,
  :func:`performance_report` — Dask's cluster-wide calls (taskgrid._calls).
* :func:`progress` — progress bars (tqdm) for futures, as Dask's;
  ``Client.watch`` — the scheduler's stream of task counts, task and
  worker events (:class:`WatchUpdate`); ``Client.set_log_level``.
* ``taskgrid status|watch|log-level`` — the command line (taskgrid.cli).
* ``python -m taskgrid.worker`` — the Python worker.
* ``taskgrid.prefect.TaskgridTaskRunner`` — a Prefect 3 task runner.
"""

from __future__ import annotations

import os as _os

# gRPC >= 1.6x logs INFO lines (fork handlers, GOAWAY at shutdown) to stderr
# unless told otherwise; keep its long-standing quiet default unless the
# user chose a level. Must happen before grpc is first imported.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ._annotate import annotate
from ._calls import fire_and_forget, futures_of, get_task_stream
from ._codec import PY_CALL
from ._nested import get_worker, rejoin, secede, worker_client
from ._progress import Progress, progress
from ._report import performance_report
from ._status import LauncherStatus, LauncherUnit
from ._watch import TaskCounts, TaskEvent, Watch, WatchUpdate, WorkerEvent
from .client import Client, ClusterStatus, Future, WorkerInfo, as_completed, get_client, wait
from .cluster import BinaryNotFound, LocalCluster, find_binary
from .coordination import Event, Lock, Queue, Semaphore, Variable
from .errors import (
    CancelledError,
    DataCorrupt,
    DataLost,
    FetchFailed,
    KilledWorker,
    NestingTooDeep,
    NotInTaskError,
    NoWorkerError,
    RemoteTraceback,
    ReplicateError,
    ResultTooLarge,
    SchedulerError,
    TaskError,
    TaskgridError,
    UnknownKeyError,
)
from .jobqueue import SLURMCluster
from .security import Security
from .ssh import SSHCluster

__version__ = "0.1.0"

__all__ = [
    "PY_CALL",
    "BinaryNotFound",
    "CancelledError",
    "Client",
    "ClusterStatus",
    "DataCorrupt",
    "DataLost",
    "Event",
    "FetchFailed",
    "Future",
    "KilledWorker",
    "LauncherStatus",
    "LauncherUnit",
    "LocalCluster",
    "Lock",
    "NestingTooDeep",
    "NoWorkerError",
    "NotInTaskError",
    "Progress",
    "Queue",
    "RemoteTraceback",
    "ReplicateError",
    "ResultTooLarge",
    "SLURMCluster",
    "SSHCluster",
    "SchedulerError",
    "Security",
    "Semaphore",
    "TaskCounts",
    "TaskError",
    "TaskEvent",
    "TaskgridError",
    "UnknownKeyError",
    "Variable",
    "Watch",
    "WatchUpdate",
    "WorkerEvent",
    "WorkerInfo",
    "annotate",
    "as_completed",
    "find_binary",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_stream",
    "get_worker",
    "performance_report",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "worker_client",
]
