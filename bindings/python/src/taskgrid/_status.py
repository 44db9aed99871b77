# SPDX-License-Identifier: Apache-2.0
"""What the scheduler reports about its workers and tasks, as plain data.

:class:`WorkerInfo` and :class:`ClusterStatus` (Client.status) and the
lowercase task state names ("waiting", ..., "memory", "released") are
shared by the status call and the watch stream (_watch.py), so a worker
or a state reads the same in both. Depends on the generated stubs only.
"""

from __future__ import annotations

import dataclasses

from ._rpc import pb

__all__ = [
    "STATE_NAMES",
    "ClusterStatus",
    "LauncherStatus",
    "LauncherUnit",
    "WorkerInfo",
    "launcher_status",
    "state_name",
    "worker_info",
]

#: TaskState value -> its lowercase name ("waiting", "memory", ...).
STATE_NAMES = {v: k[len("TASK_STATE_") :].lower() for k, v in pb.TaskState.items()}


def state_name(value: int) -> str:
    """The name of a TaskState value; "unknown(N)" for one this client
    does not know (a newer scheduler), so nothing is hidden or guessed."""
    return STATE_NAMES.get(value) or f"unknown({value})"


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """One worker in Client.status(). The memory fields come from the
    worker's last memory report (0/False for a worker that sends none,
    e.g. a Go worker): bytes of held results in its memory and spilled to
    its disk, its memory limit (0: none), whether it is paused (assigned
    nothing new) and its process RSS (0: unknown)."""

    name: str
    nthreads: int
    processing: int
    draining: bool
    memory: int = 0
    spilled: int = 0
    memory_limit: int = 0
    paused: bool = False
    rss: int = 0
    # Of `processing`, tasks waiting on nested work (seceded): they do not
    # count against `nthreads`.
    seceded: int = 0


def worker_info(w: pb.WorkerInfo) -> WorkerInfo:
    """A WorkerInfo message as a :class:`WorkerInfo`."""
    return WorkerInfo(
        w.name,
        w.nthreads,
        w.processing,
        w.draining,
        memory=w.memory,
        spilled=w.spilled,
        memory_limit=w.memory_limit,
        paused=w.paused,
        rss=w.rss,
        seceded=w.seceded,
    )


@dataclasses.dataclass(frozen=True)
class LauncherUnit:
    """One unit of the scheduler's launcher: what one start made (a local
    worker process, a Slurm job running ``workers`` workers, a process on
    an SSH host). ``state`` is "starting", "pending" (queued by the batch
    system), "running" or "stopping"; ``where`` says where it runs
    ("pid 123", "slurm job 42", a host); ``connected`` of its ``workers``
    are connected now."""

    id: str
    state: str
    where: str
    workers: int
    connected: int


@dataclasses.dataclass(frozen=True)
class LauncherStatus:
    """The scheduler's launcher (``--launcher local``, ``slurm`` or
    ``ssh``): the scaling ``target`` in workers, the workers ``active``
    (started and not retired, pending batch jobs included) and, of those,
    ``starting`` (not connected yet); ``failures`` counts starts that
    failed (a job the batch system refused, a unit that ended before any
    worker connected), ``last_error`` is the latest one in the launcher's
    words ("" if none); ``units`` are the live units, oldest first."""

    kind: str
    target: int
    active: int
    starting: int
    failures: int
    last_error: str
    units: list[LauncherUnit] = dataclasses.field(default_factory=list)


def launcher_status(r: pb.StatusResponse) -> LauncherStatus | None:
    """A StatusResponse's launcher as a :class:`LauncherStatus` (None when
    the scheduler has none: ``--launcher none``, or an older scheduler)."""
    if not r.HasField("launcher"):
        return None
    m = r.launcher
    return LauncherStatus(
        kind=m.kind,
        target=m.target,
        active=m.active,
        starting=m.starting,
        failures=m.failures,
        last_error=m.last_error,
        units=[LauncherUnit(u.id, u.state, u.where, u.workers, u.connected) for u in m.units],
    )


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    """What Client.status() reports (Status RPC)."""

    workers: list[WorkerInfo]
    waiting: int
    ready: int
    processing: int
    memory: int
    erred: int
    cancelled: int
    unplaceable: int
    version: str
    keys: dict[str, tuple[str, str]]  # key -> (state name, reason)
    # Nested work, for the keys asked about: the parent of each key whose
    # parent was asked about too, and (status(keys, children=True)) the
    # keys each one submitted from inside its run.
    parents: dict[str, str] = dataclasses.field(default_factory=dict)
    children: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # For the keys asked about that finished from a run of their own
    # (finished or error): the worker that ran the last attempt, and how
    # long the function ran there, in seconds (as the worker measured it).
    ran: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    # What starts workers for Scale and adaptive scaling (None: the
    # scheduler has no launcher).
    launcher: LauncherStatus | None = None
