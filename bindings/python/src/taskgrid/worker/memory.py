# SPDX-License-Identifier: Apache-2.0
"""The Python worker's held results and their memory management.

* :class:`Store` holds the results of this session that are larger than
  the scheduler's inline limit, as :class:`Held` entries in least recently
  used order. A key stored again (a rerun) replaces the old entry.
* :class:`MemoryManager` follows Dask's
  ``distributed.worker.memory.{target,pause,terminate}``: past the target
  fraction of the memory limit it spills the least recently used results
  to files in the spill directory (a spilled entry reads its bytes back
  from the file, a piece at a time for Fetch and uploads); past the pause
  fraction the worker reports itself paused (the scheduler assigns it
  nothing new); past the terminate fraction (spilling could not keep up)
  it calls ``on_terminate`` (the process exits with status 3). What it
  measures is the bytes of held results in memory, not the process RSS:
  the RSS also counts the interpreter, gRPC and transient task objects,
  and freed memory goes back to the system late, so a small limit would
  pause or kill a worker for memory it does not manage, and a pause might
  never clear. The RSS is reported beside it, for information.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from .._rpc import pb

logger = logging.getLogger("taskgrid.worker")

DEFAULT_TARGET = 0.6
DEFAULT_PAUSE = 0.8
DEFAULT_TERMINATE = 0.95
EXIT_MEMORY = 3
TICK_S = 0.5

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


def total_memory() -> int:
    """This machine's memory in bytes (its cgroup's limit if lower); 0 if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 0
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                cg = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if cg > 0 and (total == 0 or cg < total):
            total = cg
        break
    return total


def parse_memory_limit(value: int | float | str | None, what: str = "memory_limit") -> int:
    """Bytes from 4GiB, 500MB, 1e9, an int, "auto" (total_memory()) or
    "none"/None/0 (no limit: 0). ValueError naming `what` otherwise."""
    if value is None:
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{what} must not be negative, got {value!r}")
        return int(value)
    text = str(value).strip().lower()
    if text in ("none", "0", ""):
        return 0
    if text == "auto":
        return total_memory()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", text)
    if m is None or m.group(2) not in _UNITS:
        raise ValueError(
            f"{what} must be bytes (e.g. 4GiB, 500MB, 1000000), 'auto' or 'none', got {value!r}"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_fraction(value: float | str | None, what: str) -> float:
    """A fraction from 0 to 1 of the limit; None/False/"none" turn the step off (0)."""
    if value is None or value is False or str(value).lower() in ("none", "false"):
        return 0.0
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = -1.0
    if not 0.0 <= f <= 1.0:
        raise ValueError(
            f"{what} must be a fraction from 0 to 1 (of the memory limit) or 'none', got {value!r}"
        )
    return f


def rss_bytes() -> int:
    """The process's resident set size; 0 when unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Held:
    """One held result: its bytes in memory, or in a spill file."""

    __slots__ = ("__weakref__", "_data", "_fd", "codec", "key", "path", "size")

    def __init__(self, key: str, data: bytes | None, codec: str, size: int) -> None:
        self.key = key
        self._data = data
        self.codec = codec
        self.size = size
        self._fd = -1
        self.path = ""

    @property
    def spilled(self) -> bool:
        return self._data is None

    def read(self, offset: int, n: int) -> bytes:
        """`n` bytes from `offset` (fewer at the end)."""
        if self._data is not None:
            return self._data[offset : offset + n]
        return os.pread(self._fd, min(n, max(self.size - offset, 0)), offset)

    def view(self, offset: int, n: int) -> Any:
        """`n` bytes from `offset` (fewer at the end): a view of the bytes
        in memory, not a copy; read from the file when spilled."""
        if self._data is not None:
            return memoryview(self._data)[offset : offset + n]
        return self.read(offset, n)

    def whole(self) -> bytes:
        """All the bytes (read back from the file when spilled)."""
        if self._data is not None:
            return self._data
        return self.read(0, self.size)

    @classmethod
    def spill(cls, h: Held, directory: str, seq: int) -> Held:
        """A spilled copy of `h` (its file written in `directory`); the
        file goes when the copy is garbage: readers keep it open."""
        assert h._data is not None
        path = os.path.join(directory, f"spill-{os.getpid()}-{seq}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(h._data)
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        sp = cls(h.key, None, h.codec, h.size)
        sp._fd = fd
        sp.path = path
        weakref.finalize(sp, _drop_file, fd, path)
        return sp


def _drop_file(fd: int, path: str) -> None:
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)


class Store:
    """The held results of one session: key -> Held, thread-safe, in least
    recently used order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[str, Held] = collections.OrderedDict()
        self._session = 0
        self._memory = 0
        self._spilled = 0
        self._watch: Callable[[], None] | None = None

    def watch(self, fn: Callable[[], None] | None) -> None:
        """Call `fn()` after every put, free and reset (outside the lock)."""
        self._watch = fn

    def _changed(self) -> None:
        if self._watch is not None:
            self._watch()

    def _unlink(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            if old.spilled:
                self._spilled -= old.size
            else:
                self._memory -= old.size

    def reset(self, session: int) -> None:
        """Drop everything; from now on only `session` may store."""
        with self._lock:
            self._session = session
            self._items = collections.OrderedDict()
            self._memory = self._spilled = 0
        self._changed()

    def put(self, session: int, key: str, data: bytes, codec: str) -> bool:
        with self._lock:
            if session != self._session:
                return False
            self._unlink(key)
            self._items[key] = Held(key, data, codec, len(data))
            self._memory += len(data)
        self._changed()
        return True

    def get(self, key: str) -> Held | None:
        with self._lock:
            h = self._items.get(key)
            if h is not None:
                self._items.move_to_end(key)
            return h

    def free(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._unlink(k)
        self._changed()

    def usage(self) -> tuple[int, int]:
        """(bytes in memory, bytes spilled)."""
        with self._lock:
            return self._memory, self._spilled

    def lru(self) -> Held | None:
        """The least recently used entry still in memory."""
        with self._lock:
            return next((h for h in self._items.values() if not h.spilled), None)

    def replace(self, old: Held, new: Held) -> bool:
        """Put spilled `new` in place of `old` if `old` is still there."""
        with self._lock:
            if self._items.get(old.key) is not old:
                return False
            self._items[old.key] = new  # keeps its place in the LRU order
            self._memory -= old.size
            self._spilled += new.size
            return True


class MemoryManager:
    """Spills, pauses and terminates by the bytes of `store` in memory
    (see the module doc). `limit` 0: nothing spills, never pauses.
    `on_pause()` is called on every pause change and after a check that
    spilled (from its thread), so a report goes out at once."""

    def __init__(
        self,
        store: Store,
        limit: int,
        target: float = DEFAULT_TARGET,
        pause: float = DEFAULT_PAUSE,
        terminate: float = DEFAULT_TERMINATE,
        spill_dir: str | None = None,
        on_pause: Callable[[], None] | None = None,
        on_terminate: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.limit = limit
        self.target = target
        self.pause = pause
        self.terminate = terminate
        self._want_dir = spill_dir
        self._dir = ""
        self._own_dir = False
        self.on_pause = on_pause
        self.on_terminate = on_terminate
        # (bytes in memory, bytes spilled) when a report was last asked for
        self._reported = (0, 0)
        self.paused = False
        self._seq = 0
        self._warned = False
        self._check_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        store.watch(self._wake.set)
        if limit > 0:
            logger.info(
                "memory: limit %d bytes, target %.2f, pause %.2f, terminate %.2f",
                limit,
                target,
                pause,
                terminate,
            )
            self._thread = threading.Thread(target=self._main, name="taskgrid-memory", daemon=True)
            self._thread.start()

    @property
    def spill_dir(self) -> str:
        """The spill directory, made on first use: the given one (created if
        missing) or a private temporary one, removed by close()."""
        if not self._dir:
            if self._want_dir:
                os.makedirs(self._want_dir, mode=0o700, exist_ok=True)
                self._dir = self._want_dir
            else:
                self._dir = tempfile.mkdtemp(prefix="taskgrid-spill-")
                self._own_dir = True
        return self._dir

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.store.watch(None)
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _main(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # the thread must go on
                logger.exception("memory: check failed")

    def _share(self, frac: float) -> int:
        return int(self.limit * frac)

    def _spill(self) -> int:
        """Spill least recently used results down to the target; the bytes
        in memory when it stopped (a later put is the next check's)."""
        mem = self.store.usage()[0]
        if self.limit <= 0 or self.target <= 0:
            return mem
        while mem > self._share(self.target):
            h = self.store.lru()
            if h is None:
                break
            self._seq += 1
            try:
                sp = Held.spill(h, self.spill_dir, self._seq)
            except OSError as e:
                if not self._warned:
                    logger.warning("memory: cannot spill '%s' (%d bytes): %s", h.key, h.size, e)
                    self._warned = True
                break
            self._warned = False
            if self.store.replace(h, sp):
                logger.debug("memory: spilled '%s' (%d bytes)", h.key, h.size)
            mem = self.store.usage()[0]
        return mem

    def check(self) -> None:
        """Spill, then compare with the pause and terminate fractions."""
        with self._check_lock:
            mem = self._spill()
            if self.limit > 0 and self.terminate > 0 and mem > self._share(self.terminate):
                msg = (
                    f"memory: held results use {mem} bytes in memory, over the terminate "
                    f"fraction {self.terminate:.2f} of the memory limit {self.limit} bytes"
                )
                if self.on_terminate is not None:
                    self.on_terminate(msg)
                return
            paused = self.limit > 0 and self.pause > 0 and mem > self._share(self.pause)
            # Both numbers: a spill and a new result may leave the bytes in
            # memory as they were.
            usage = (mem, self.store.usage()[1])
            if paused == self.paused:
                if usage != self._reported and self.on_pause is not None:
                    self._reported = usage  # Status should see it now
                    self.on_pause()
                return
            self._reported = usage
            self.paused = paused
            if paused:
                logger.info(
                    "memory: paused (held results use %d bytes in memory, over the pause "
                    "fraction %.2f of the memory limit %d bytes): the scheduler assigns "
                    "no new task",
                    mem,
                    self.pause,
                    self.limit,
                )
            else:
                logger.info("memory: unpaused (held results use %d bytes in memory)", mem)
        if self.on_pause is not None:
            self.on_pause()

    def report(self) -> Any:
        """The current pb.MemoryReport."""
        mem, spilled = self.store.usage()
        return pb.MemoryReport(
            memory=mem, spilled=spilled, limit=self.limit, paused=self.paused, rss=rss_bytes()
        )

    def too_large(self, size: int) -> str | None:
        """Why a result of `size` bytes cannot be held (larger than the
        limit plus the spill directory's free space), or None."""
        if self.limit <= 0 or size <= self.limit:
            return None
        if self.target <= 0:
            return (
                f"the result is {size} bytes, more than this worker can hold: its memory "
                f"limit {self.limit} bytes (spilling is off)"
            )
        try:
            disk = shutil.disk_usage(self.spill_dir).free
        except OSError:
            disk = 0
        if size <= self.limit + disk:
            return None
        return (
            f"the result is {size} bytes, more than this worker can hold: its memory limit "
            f"{self.limit} bytes plus {disk} bytes free for spilling in {self.spill_dir}"
        )
