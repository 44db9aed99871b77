# SPDX-License-Identifier: Apache-2.0
"""The Python worker: one WorkerLink stream, with the C worker's semantics.

Threads: ``run()``'s thread owns the session (connect, receive and
dispatch, reconnect with back-off); gRPC's request-consumer thread runs the
request generator, which batches finished results and handed-back keys
into WorkerMessages, sends a heartbeat when nothing else went out for a
heartbeat interval, and carries out stop and drain (it half-closes the
stream once the work is done); executor threads run tasks.

Semantics shared with the C worker (worker/link.c):

* The first message registers: name, threads, functions (``py.call`` for
  pickled callables, the tg.* built-ins, registered named functions),
  resources, agent, pid, host and ``TASKGRID_LAUNCH_ID``.
* ``cancel`` drops queued tasks and flags running ones; no result is sent
  for them. ``steal`` hands still-queued tasks back (``released``) so an
  idle worker can take them; running ones finish as usual. ``drain``: take
  no new work (assignments are handed back as ``released``), finish what
  is assigned, then disconnect.
* SIGTERM / stop(): hand queued tasks back, let running ones finish (up to
  10 s), send their results, exit 0.
* A session does not outlive its stream: when it breaks, the scheduler has
  already given this worker's tasks to others, so queued tasks are dropped,
  running ones flagged and unsent results discarded before reconnecting.
* Errors go back as (type, message, traceback); retries are the
  scheduler's (the assignment's ``attempt`` says which run this is).

The data plane (data.py): the worker runs a DataService server unless
``data_listen="none"`` and registers its address. A successful result
larger than the scheduler's ``inline_limit`` stays in the worker's store
and is reported ``held`` (size and codec, no bytes) until the scheduler
frees it or the session ends; inputs held elsewhere are fetched from their
holders before the task runs (a key in the store is used as is), and
``upload`` requests are answered with chunks between results and
heartbeats. Without a data service every result is inline, and one over
the message limit fails with ``tg.ResultTooLarge``.

Memory (memory.py): past the memory target held results spill to disk;
every WorkerMessage carries the memory report, and a pause change sends
one at once (the scheduler assigns a paused worker nothing new); a result
larger than the limit plus the free spill space fails with
``tg.ResultTooLarge``; past the terminate fraction the process exits 3.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import pathlib
import platform
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from .. import _codec, _context
from .._rpc import MAX_SEND, normalize_address, pb, pb_grpc, sync_channel
from ..errors import EXC_FORMAT, type_name
from ..security import Security
from . import registry
from .builtins import BUILTINS
from .data import DataPlane, Piece, UploadQueue, add_pieces
from .executor import Executor, Task
from .memory import (
    DEFAULT_PAUSE,
    DEFAULT_TARGET,
    DEFAULT_TERMINATE,
    EXIT_MEMORY,
    Held,
    parse_fraction,
    parse_memory_limit,
)

logger = logging.getLogger("taskgrid.worker")

AGENT = f"taskgrid-worker/0.1 (Python {platform.python_version()})"
STOP_GRACE_S = 10.0
BATCH_MAX_ITEMS = 4096
BATCH_MAX_BYTES = 4 * 1024 * 1024
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 2.0
POLL_S = 0.2  # how often the request generator looks at stop/drain flags
# The largest result one WorkerMessage can carry: the protocol's 64 MiB
# message limit (the scheduler's default --max-message) less room for the
# message's other fields. Larger results fail with tg.ResultTooLarge.
RESULT_MAX_BYTES = MAX_SEND - 64 * 1024

_MEMORY = pb.TASK_STATE_MEMORY
_ERRED = pb.TASK_STATE_ERRED
_OWN_MODULES = ("taskgrid.worker.core", "taskgrid.worker.builtins")

# A task's outcome: (key, state, data, codec, (error type, message,
# traceback) or None, attempt, size, held).
_Outcome = tuple[str, int, bytes, str, "tuple[str, str, str] | None", int, int, bool]
# A finished task as the outbox holds it: its outcome, then how long its
# function ran in microseconds (TaskResult.run_us).
_Result = tuple[str, int, bytes, str, "tuple[str, str, str] | None", int, int, bool, int]


def parse_resources(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """'GPU=1,process=1' (or a mapping) -> {'GPU': 1.0, 'process': 1.0}."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): float(v) for k, v in spec.items()}
    out: dict[str, float] = {}
    for item in spec.split(","):
        name, eq, amount = item.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if not eq or not name.strip() or value < 0:
            raise ValueError(f"--resources: {item!r} is not NAME=AMOUNT (e.g. GPU=2)")
        out[name.strip()] = value
    return out


def format_resources(res: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in res.items())


def load_preload(spec: str) -> None:
    """Import a module by name or a .py file by path (it registers functions)."""
    if spec.endswith(".py") or os.sep in spec:
        path = pathlib.Path(spec).resolve()
        if not path.is_file():
            raise ImportError(f"--preload {spec}: no such file")
        name = f"taskgrid_preload_{path.stem}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"--preload {spec}: cannot load it")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        mod_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


# A pickled exception larger than this is not sent (the error's type,
# message and traceback still are).
ERROR_DATA_MAX_BYTES = 1024 * 1024
ERROR_TEXT_MAX_CHARS = 1024 * 1024


def _pickled_error(e: BaseException) -> bytes:
    """The exception object, pickled, so the client can raise it with its
    attributes (b"" when it does not pickle, or is too large)."""
    # Not the object itself: exceptions whose __init__ takes other arguments
    # than their args do not unpickle (a classic pickle pitfall). Its type,
    # args and attributes (errors.restore builds it without __init__); not
    # its traceback, cause or context (the traceback travels as text).
    state = dict(getattr(e, "__dict__", {}))
    try:
        data = _codec.dumps((EXC_FORMAT, type(e), e.args, state))
    except BaseException:  # noqa: BLE001 - some attribute does not pickle: drop those
        for name, value in list(state.items()):
            try:
                _codec.dumps(value)
            except BaseException:  # noqa: BLE001
                del state[name]
        try:
            data = _codec.dumps((EXC_FORMAT, type(e), e.args, state))
        except BaseException:  # noqa: BLE001 - the type or args do not pickle
            return b""
    return data if len(data) <= ERROR_DATA_MAX_BYTES else b""


def _too_large(t: Task, data: bytes, codec: str) -> tuple[str, str, str]:
    # Sending it would break the stream, and the scheduler would blame the
    # task for a lost worker: fail it at once instead, and keep working.
    msg = (
        f"the result of task {t.key!r} is {len(data):,} bytes (codec {codec}), over the "
        f"{RESULT_MAX_BYTES:,}-byte limit of one message ({RESULT_MAX_BYTES / 2**20:.1f} MiB); "
        "results travel inside messages: return a smaller value (or store large data "
        "elsewhere and return a reference)"
    )
    logger.warning("%s", msg)
    return "tg.ResultTooLarge", msg, ""


class _Outbox:
    """Finished results, handed-back keys, upload chunks and missing keys
    waiting to be sent."""

    def __init__(self, uploads: UploadQueue) -> None:
        self._cv = threading.Condition()
        self._results: list[_Result] = []
        self._released: list[str] = []
        self._uploads = uploads
        self._missing: list[str] = []
        self._copied: list[tuple[str, str | None]] = []
        self._secessions: list[tuple[str, bool]] = []  # (key, rejoined), in order
        self.session = 0

    def reset(self, session: int) -> None:
        with self._cv:
            self.session = session
            self._results = []
            self._released = []
            self._uploads.clear()
            self._missing = []
            self._copied = []
            self._secessions = []
            self._cv.notify_all()

    def push(self, session: int, result: _Result) -> None:
        with self._cv:
            if session != self.session:
                return  # from a session that is gone: the task runs elsewhere
            self._results.append(result)
            if len(self._results) == 1:
                self._cv.notify()

    def push_released(self, session: int, key: str) -> None:
        with self._cv:
            if session == self.session:
                self._released.append(key)
                self._cv.notify()

    def push_upload(
        self, session: int, upload: int, held: Held, offset: int = 0, length: int = 0
    ) -> None:
        with self._cv:
            if session == self.session:
                self._uploads.add(upload, held, offset, length)
                self._cv.notify()

    def push_missing(self, session: int, key: str) -> None:
        with self._cv:
            if session == self.session:
                self._missing.append(key)
                self._cv.notify()

    def push_copied(self, session: int, key: str, error: str | None) -> None:
        """How a copy asked by the scheduler ended (error None: held)."""
        with self._cv:
            if session == self.session:
                self._copied.append((key, error))
                self._cv.notify()

    def push_secession(self, session: int, key: str, rejoined: bool) -> None:
        """A running task seceded (waits on nested work) or rejoined."""
        with self._cv:
            if session == self.session:
                self._secessions.append((key, rejoined))
                self._cv.notify()

    def take_secessions(self) -> list[tuple[str, bool]]:
        with self._cv:
            secessions, self._secessions = self._secessions, []
            return secessions

    def take_copied(self) -> list[tuple[str, str | None]]:
        with self._cv:
            copied, self._copied = self._copied, []
            return copied

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def _empty(self) -> bool:
        return not (
            self._results
            or self._released
            or self._uploads
            or self._missing
            or self._copied
            or self._secessions
        )

    def empty(self) -> bool:
        with self._cv:
            return self._empty()

    def take(self, timeout: float) -> tuple[list[_Result], list[str], list[Piece], list[str]]:
        """What to send next: results (a batch), released keys, upload
        chunks (about 4 MiB of them) and missing keys."""
        with self._cv:
            if self._empty() and timeout > 0:
                self._cv.wait(timeout)
            pieces = self._uploads.take() if self._uploads else []
            missing, self._missing = self._missing, []
            results, released = self._results, self._released
            if len(results) > BATCH_MAX_ITEMS:
                results, self._results = results[:BATCH_MAX_ITEMS], results[BATCH_MAX_ITEMS:]
            else:
                size = 0
                for i, r in enumerate(results):
                    size += len(r[2]) + 64
                    if size > BATCH_MAX_BYTES and i > 0:
                        results, self._results = results[:i], results[i:]
                        break
                else:
                    self._results = []
            self._released = []
            return results, released, pieces, missing


class Worker:
    """A taskgrid worker running Python tasks in this process.

    ``Worker(address, nthreads=2).run()`` blocks until stopped or drained;
    ``start()`` runs it on a background thread (how LocalCluster's
    in-process workers run), ``stop()`` ends it cleanly. ``data_listen``
    ("HOST:PORT", or "none" for no data service), ``data_address`` (the
    address registered for it) and ``data_clients`` (over TLS, let client
    certificates fetch held results too) are the command line's
    --data-listen, --data-address and --data-clients; the data service is
    listening once the constructor returns. ``memory_limit`` (bytes,
    "4GiB", "auto": this machine's memory, None/"none": no limit),
    ``memory_target``/``memory_pause``/
    ``memory_terminate`` (fractions of it, None: that step off) and
    ``spill_dir`` are the memory management of --memory-limit and the
    rest (memory.py).
    """

    def __init__(
        self,
        address: str,
        *,
        nthreads: int = 1,
        name: str | None = None,
        resources: str | Mapping[str, float] | None = None,
        preload: Sequence[str] = (),
        security: Any = None,
        heartbeat_ms: int = 1000,
        launch_id: str | None = None,
        data_listen: str | None = None,
        data_address: str | None = None,
        data_clients: bool = False,
        memory_limit: int | str | None = "auto",
        memory_target: float | str | None = DEFAULT_TARGET,
        memory_pause: float | str | None = DEFAULT_PAUSE,
        memory_terminate: float | str | None = DEFAULT_TERMINATE,
        spill_dir: str | None = None,
        death_timeout: float | None = None,
    ) -> None:
        self.address = normalize_address(address)
        if death_timeout is not None and not 0 <= float(death_timeout) <= 86400 * 365:
            raise ValueError(f"death_timeout must be 0 or more seconds, not {death_timeout!r}")
        # Give up (gave_up) once no scheduler was reached this long; 0/None: never.
        self.death_timeout = float(death_timeout or 0)
        self.gave_up = False
        memory = {
            "limit": parse_memory_limit(memory_limit),
            "target": parse_fraction(memory_target, "memory_target"),
            "pause": parse_fraction(memory_pause, "memory_pause"),
            "terminate": parse_fraction(memory_terminate, "memory_terminate"),
            "spill_dir": spill_dir,
            "on_pause": self._memory_paused,
            "on_terminate": self._memory_terminate,
        }
        self._memory_due = False
        self.security = Security.coerce(security)
        self.nthreads = int(nthreads)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.resources = parse_resources(resources)
        if launch_id is None:
            launch_id = os.environ.get("TASKGRID_LAUNCH_ID", "")
        self.launch_id = launch_id
        for spec in preload:
            load_preload(spec)
        self._heartbeat_s = max(heartbeat_ms, 10) / 1000
        self._fns = _codec.FunctionCache()
        self._executor = Executor(self.nthreads, self._run_task, name=f"taskgrid-task-{self.name}")
        self._data = DataPlane(
            self.address,
            self.security,
            lambda: self.name,
            data_listen,
            data_address,
            memory,
            data_clients=data_clients,
        )
        self._outbox = _Outbox(UploadQueue(self._data.counters))
        self._stop = threading.Event()
        self._done = threading.Event()
        self._session = 0
        self._dead_session = 0
        self._registered = False
        self._draining = False
        self._closing = False
        self._close_deadline = 0.0
        self._start_time = time.monotonic()
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._why = ""
        self._call: Any = None
        self._said_goodbye = False

    def __repr__(self) -> str:
        return f"<taskgrid.Worker {self.name!r} {self.address} nthreads={self.nthreads}>"

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Worker:
        """Run on a background thread; returns once the thread started."""
        self._thread = threading.Thread(
            target=self.run, name=f"taskgrid-worker-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop cleanly: hand queued work back, finish running tasks."""
        self._stop.set()
        self._outbox.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._done.is_set()

    def run(self) -> None:
        """Connect and run tasks until stopped or drained (reconnecting)."""
        backoff = BACKOFF_MIN_S
        last_warn = 0.0
        failures = 0
        unreached = time.monotonic()  # since when no scheduler
        try:
            while not self._stop.is_set():
                if self._run_session():
                    break
                if self._stop.is_set():
                    break
                if self._registered:
                    backoff, failures = BACKOFF_MIN_S, 0
                    unreached = time.monotonic()
                    logger.info("connection to the scheduler lost (%s); reconnecting", self._why)
                elif failures == 0 or time.monotonic() - last_warn >= 5:
                    last_warn = time.monotonic()
                    logger.warning(
                        "cannot reach the scheduler at %s (%s); retrying", self.address, self._why
                    )
                failures += 1
                wait = backoff
                if self.death_timeout > 0:
                    left = unreached + self.death_timeout - time.monotonic()
                    if left <= 0:
                        logger.error(
                            "no scheduler at %s for %g s (--death-timeout; last: %s); exiting",
                            self.address,
                            self.death_timeout,
                            self._why,
                        )
                        self.gave_up = True
                        break
                    wait = min(wait, left)
                self._stop.wait(wait)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            # Tasks may still run (abandoned at a deadline, or from a lost
            # session): give them what is left of the grace period.
            grace = self._close_deadline - time.monotonic() if self._closing else STOP_GRACE_S
            if not self._executor.wait_idle(max(grace, 0.5)):
                logger.warning("tasks did not stop; exiting without waiting for them")
        finally:
            self._executor.stop()
            with self._client_lock:
                client, self._client = self._client, None
            if client is not None:
                client._close(timeout=5)
            self._data.stop()
            logger.info("%s", self._data.counters.line())
            self._done.set()
            logger.info("exiting")

    # -- memory ---------------------------------------------------------------

    def _memory_paused(self) -> None:
        # A report goes out at once (the scheduler stops or resumes
        # assigning), not at the next heartbeat.
        self._memory_due = True
        self._outbox.wake()

    def _memory_terminate(self, msg: str) -> None:
        if _context.process_worker is self:
            logger.error("%s; exiting with status %d", msg, EXIT_MEMORY)
            self._data.memory.close()  # its private spill directory
            logging.shutdown()
            os._exit(EXIT_MEMORY)
        # A worker thread in someone else's process: stop it instead.
        logger.error("%s; stopping this worker", msg)
        threading.Thread(target=self.stop, daemon=True).start()

    # -- the session ----------------------------------------------------------

    def _registration(self) -> Any:
        functions = [_codec.PY_CALL, *sorted(BUILTINS), *registry.names()]
        return pb.WorkerMessage(
            registration=pb.Register(
                name=self.name,
                nthreads=self.nthreads,
                functions=functions,
                resources=[pb.Resource(name=k, amount=v) for k, v in self.resources.items()],
                agent=AGENT,
                pid=os.getpid(),
                host=socket.gethostname(),
                launch_id=self.launch_id,
                data_address=self._data.address,
            )
        )

    def _run_session(self) -> bool:
        """One stream; True when the worker should exit (stopped/drained)."""
        self._session += 1
        sid = self._session
        self._registered = False
        self._outbox.reset(sid)
        self._data.begin_session(sid)
        channel = sync_channel(self.address, self.security)
        ended_cleanly = False
        try:
            stub = pb_grpc.WorkerLinkStub(channel)
            self._said_goodbye = False
            responses = self._call = stub.Connect(self._requests(sid))
            for msg in responses:
                self._handle(sid, msg)
            ended_cleanly = True
            self._why = "the scheduler ended the stream"
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            self._why = f"{code.name if code else 'error'}: {details}"
        finally:
            self._dead_session = sid
            # Held results do not outlive the session.
            self._data.end_session()
            self._outbox.wake()
            channel.close()
        if self._closing or self._draining:
            if not ended_cleanly and not self._said_goodbye:
                logger.warning(
                    "lost the scheduler while %s: %s",
                    "stopping" if self._closing else "draining",
                    self._why,
                )
            return True
        # The stream is gone: the scheduler reschedules our tasks elsewhere.
        self._executor.cancel_all()
        self._outbox.reset(0)
        return False

    def _requests(self, sid: int) -> Iterator[Any]:
        yield self._registration()
        last = time.monotonic()
        while True:
            if self._dead_session == sid:
                return
            if self._stop.is_set() and not self._closing:
                self._begin_close(sid)
            if (self._closing or self._draining) and self._executor.idle() and self._outbox.empty():
                logger.info(
                    "%s: all work done, disconnecting", "stopping" if self._closing else "drained"
                )
                self._goodbye()
                return  # half-close: the scheduler ends the call
            if self._closing and time.monotonic() > self._close_deadline:
                _queued, running = self._executor.counts()
                logger.warning(
                    "%d tasks still running after %.0f s: abandoning them", running, STOP_GRACE_S
                )
                self._executor.cancel_all()
                self._goodbye()
                return
            wait = min(POLL_S, max(0.0, last + self._heartbeat_s - time.monotonic()))
            results, released, pieces, missing = self._outbox.take(wait)
            copied = self._outbox.take_copied()
            secessions = self._outbox.take_secessions()
            if self._dead_session == sid:
                return
            if (
                results
                or released
                or pieces
                or missing
                or copied
                or secessions
                or self._memory_due
                or time.monotonic() - last >= self._heartbeat_s
            ):
                self._memory_due = False
                yield self._message(results, released, pieces, missing, copied, secessions)
                last = time.monotonic()

    def _goodbye(self) -> None:
        # After the half-close the scheduler ends the call; if it does not
        # within a second, end it ourselves so exiting cannot hang.
        self._said_goodbye = True
        call = self._call
        if call is not None:
            timer = threading.Timer(1.0, call.cancel)
            timer.daemon = True
            timer.start()

    def _message(
        self,
        results: list[_Result],
        released: list[str],
        pieces: list[Piece],
        missing: list[str],
        copied: Sequence[tuple[str, str | None]] = (),
        secessions: Sequence[tuple[str, bool]] = (),
    ) -> Any:
        m = pb.WorkerMessage(uptime_ms=int((time.monotonic() - self._start_time) * 1000))
        for key, rejoined in secessions:
            m.secessions.add(key=key, rejoined=rejoined)
        add = m.results.add
        for key, state, data, codec, error, attempt, size, held, run_us in results:
            if state == _MEMORY:
                add(
                    key=key,
                    state=state,
                    data=data,
                    codec=codec,
                    attempt=attempt,
                    size=size,
                    held=held,
                    run_us=run_us,
                )
            else:
                assert error is not None  # _run_task pairs every error state with one
                add(
                    key=key,
                    state=state,
                    attempt=attempt,
                    run_us=run_us,
                    data=data,  # the pickled exception, if any
                    codec=codec if data else "",
                    error=pb.TaskError(type=error[0], message=error[1], traceback=error[2]),
                )
        if released:
            m.released.extend(released)
        if pieces:
            add_pieces(m, pieces)
        if missing:
            m.missing.extend(missing)
        for key, why in copied:
            m.copied.add(key=key, ok=why is None, error=why or "")
        m.memory.CopyFrom(self._data.memory.report())
        return m

    def _handle(self, sid: int, msg: Any) -> None:
        if msg.worker_name and not self._registered:
            self._registered = True
            if msg.worker_name != self.name:
                logger.info("registered as %s", msg.worker_name)
            self.name = msg.worker_name
            logger.info(
                "connected to %s as %s (%d threads, %d functions)",
                self.address,
                self.name,
                self.nthreads,
                1 + len(BUILTINS) + len(registry.names()),
            )
        if msg.heartbeat_ms:
            self._heartbeat_s = min(max(msg.heartbeat_ms, 10), 3_600_000) / 1000
        if msg.inline_limit:
            self._data.inline_limit = msg.inline_limit
        if msg.free:
            self._data.store.free(msg.free)
        if msg.copy:
            self._start_copies(sid, list(msg.copy))
        for u in msg.upload:
            item = self._data.store.get(u.key)
            if item is None:
                self._outbox.push_missing(sid, u.key)
            else:
                self._outbox.push_upload(sid, u.id, item, u.offset, u.length)
        # Cancels first: they refer to earlier assignments; a key cancelled
        # and assigned anew in one message must run.
        for key in msg.cancel:
            self._executor.cancel(key)
        # Work stealing: hand back what has not started; a running task
        # finishes and reports as usual.
        for key in msg.steal:
            if self._executor.steal(key):
                self._outbox.push_released(sid, key)
        if msg.assign:
            if self._closing or self._draining:
                for a in msg.assign:
                    self._outbox.push_released(sid, a.key)
            else:
                self._executor.submit([Task(a, sid) for a in msg.assign])
        if msg.drain and not self._draining:
            self._draining = True
            queued, running = self._executor.counts()
            logger.info(
                "draining: finishing %d queued and %d running tasks, then exiting", queued, running
            )
            self._outbox.wake()

    def _start_copies(self, sid: int, copies: list[Any]) -> None:
        """Copy held results here (Replicate) on a thread of their own,
        one after the other; each answer goes out with the next message."""

        def run() -> None:
            for c in copies:
                error = self._data.copy(sid, c, lambda: self._dead_session == sid)
                if error is not None:
                    logger.warning("copy of '%s' (%d bytes): %s", c.key, c.size, error)
                self._outbox.push_copied(sid, c.key, error)

        threading.Thread(target=run, name="taskgrid-copy", daemon=True).start()

    def _begin_close(self, sid: int) -> None:
        self._closing = True
        self._close_deadline = time.monotonic() + STOP_GRACE_S
        queued = self._executor.take_queued()
        for t in queued:
            self._outbox.push_released(sid, t.key)
        _, running = self._executor.counts()
        logger.info(
            "stopping: handed %d queued tasks back, waiting for %d running (up to %.0f s)",
            len(queued),
            running,
            STOP_GRACE_S,
        )

    # -- running tasks --------------------------------------------------------

    def _run_task(self, t: Task) -> None:
        if t.cancelled:
            return
        _context.set_current(self, t)
        sid = t.session
        run_ns = 0
        try:
            a = self._data.inputs(t, t.assignment, lambda k: self._outbox.push_missing(sid, k))
            start = time.monotonic_ns()
            try:
                data, codec = self._execute(t, a)
            finally:
                run_ns = time.monotonic_ns() - start
            del a
            n = len(data)
            out: _Outcome = (t.key, _MEMORY, data, codec, None, t.attempt, n, False)
            too_large = self._data.memory.too_large(n) if self._data.holds(n) else None
            if too_large is not None:
                msg = f"task {t.key!r}: {too_large}"
                logger.warning("%s", msg)
                error = ("tg.ResultTooLarge", msg, "")
                out = (t.key, _ERRED, b"", "", error, t.attempt, 0, False)
            elif self._data.hold(sid, t.key, data, codec):
                out = (t.key, _MEMORY, b"", codec, None, t.attempt, n, True)
            elif n + len(t.key) + 64 > RESULT_MAX_BYTES:
                out = (t.key, _ERRED, b"", "", _too_large(t, data, codec), t.attempt, 0, False)
        except BaseException as e:  # noqa: BLE001 - reported to the scheduler
            out = (
                t.key,
                _ERRED,
                _pickled_error(e),
                _codec.PICKLE,
                self._error(e),
                t.attempt,
                0,
                False,
            )
        finally:
            _context.clear_current()
            t.assignment = None  # let the input and dependency data go
        if not t.cancelled:
            self._outbox.push(t.session, (*out, run_ns // 1000))

    def _execute(self, t: Task, a: Any) -> tuple[bytes, str]:
        func = a.func
        if func == _codec.PY_CALL:
            if a.codec != _codec.PICKLE:
                raise TypeError(f"py.call takes a pickled call, got codec {a.codec!r}")
            fbytes, args, kwargs = _codec.loads(a.input)
            fn = self._fns.load(fbytes)
            if a.deps:
                values = [_codec.decode(d.data, d.codec) for d in a.deps]
                args = _codec.substitute(args, values)
                if kwargs:
                    kwargs = _codec.substitute(kwargs, values)
            return _codec.dumps(fn(*args, **kwargs)), _codec.PICKLE
        builtin = BUILTINS.get(func)
        if builtin is not None:
            return builtin(t, a)
        named = registry.lookup(func)
        if named is None:
            raise LookupError(f"worker {self.name} does not provide function {func!r}")
        args = []
        if a.input:
            v = _codec.decode(a.input, a.codec)
            if a.codec == _codec.JSON and isinstance(v, list):
                args.extend(v)
            else:
                args.append(v)
        args.extend(_codec.decode(d.data, d.codec) for d in a.deps)
        return _codec.encode_named_result(named(*args))

    @staticmethod
    def _error(e: BaseException) -> tuple[str, str, str]:
        tb = e.__traceback__
        # Start the traceback at the user's code, not the worker's frames.
        while tb is not None and tb.tb_frame.f_globals.get("__name__") in _OWN_MODULES:
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(e), e, tb or e.__traceback__))
        wire = getattr(type(e), "wire_type", None) or type_name(e)
        return wire, str(e)[:ERROR_TEXT_MAX_CHARS], text[-ERROR_TEXT_MAX_CHARS:]

    # -- nested work ----------------------------------------------------------

    # A task that waits on nested futures secedes: it gives its executor slot
    # back, so this worker's queued tasks can run, and the scheduler is told
    # (WorkerMessage.secessions) so that it stops counting the task against
    # this worker's threads and may send another task for the free slot.
    # When the wait ends the task rejoins: the scheduler counts it again at
    # once (sending nothing new while this worker is over its threads), and
    # the task waits for a slot here, ahead of queued tasks. So a waiting
    # task always frees a thread's worth of capacity, at any depth, and no
    # more than nthreads tasks that have not seceded ever run at once.

    # Explicit secede()/rejoin() (taskgrid.secede, worker_client) and the
    # automatic ones around waits meet here: seceding a task that already
    # seceded, or rejoining one that did not, does nothing (and says so),
    # so they nest in any order.

    def secede(self, t: Task) -> bool:
        """Task `t` (running) gives its slot back; False if it had none."""
        if not self._executor.secede(t):
            return False
        self._outbox.push_secession(t.session, t.key, False)
        return True

    def rejoin(self, t: Task) -> bool:
        """Seceded task `t` takes a slot again, waiting for one; False
        (at once) if it had not seceded."""
        # Only t's own thread changes t.holds_slot while it runs.
        if t.holds_slot:
            return False
        self._outbox.push_secession(t.session, t.key, True)
        self._executor.rejoin(t)
        return True

    @property
    def data_address(self) -> str | None:
        """Where peers fetch the results this worker holds (None without a
        data service)."""
        return self._data.address or None

    @property
    def client(self) -> Any:
        """A client to this worker's scheduler with its credentials (shared)."""
        with self._client_lock:
            if self._client is None:
                # The one use of the client layer, which sits above this one
                # (cluster.py imports both): imported when first needed.
                from ..client import Client

                c = Client(
                    self.address,
                    security=self.security,
                    set_as_default=False,
                    name=f"worker-{self.name}",
                )
                c._shared = True
                self._client = c
            return self._client
