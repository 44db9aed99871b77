# SPDX-License-Identifier: Apache-2.0
"""The Python worker's data plane: held results, DataService, inputs.

* The store (memory.py) holds the results of this session that are larger
  than the scheduler's inline limit (the first SchedulerMessage's
  ``inline_limit``; 0 means every result is inline). They stay until the
  scheduler frees them or the session ends: a reconnect is a new worker,
  and the scheduler has already counted the old session's results as lost.
  Its memory manager spills them to disk past the memory target; spilled
  results are read back from their files, a chunk at a time.
* :class:`DataServer` is the grpcio server of ``DataService.Fetch``: the
  bytes of a held result in chunks of at most 1 MiB, each with its CRC-32
  (zlib's). Over TLS it serves with the worker's own certificate, requires
  a client certificate from the cluster CA and answers only the worker
  role (``security.certificate_role``), and the client role too when the
  operator lets clients fetch directly (``--data-clients``); never admin.
* :class:`Fetcher` gets a task's input from the workers holding it, in
  order, checking every chunk (offset, size, CRC-32); when none delivers,
  the task fails with ``tg.FetchFailed`` naming the key, each holder and
  why.
* :class:`UploadQueue` cuts the answers to ``SchedulerMessage.upload``
  (for a client's Gather through the scheduler) into the chunks the
  request generator sends, at most ~4 MiB per WorkerMessage, so results
  and heartbeats keep flowing between them.
* :class:`DataPlane` ties them together for one Worker, and
  :class:`Counters` counts what moved, for the exit log line.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from typing import Any, NamedTuple

import grpc

from .. import _chunks
from .._crc import crc32
from .._rpc import MAX_SEND, parse_address, pb, peer_channel
from ..errors import FetchFailed
from ..security import Security, certificate_role
from .memory import Held, MemoryManager, Store

logger = logging.getLogger("taskgrid.worker")

# proto/methods.h: TG_PROTO_CHUNK_MAX.
CHUNK_MAX = 1 << 20
# Upload chunks per WorkerMessage, in bytes.
UPLOAD_MESSAGE_BYTES = 4 << 20
FETCH_METHOD = "/taskgrid.v1.DataService/Fetch"
# A Fetch may take this long plus one second per MiB before it is given up.
FETCH_TIMEOUT_BASE_S = 60.0
FETCH_TIMEOUT_PER_MIB_S = 1.0
# Channels to peers kept open for later fetches.
PEER_CHANNELS_MAX = 32
SERVER_THREADS = 8


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------


def split_host_port(spec: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port); ValueError naming `what`."""
    host, sep, port = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not host or not 0 <= number <= 65535:
        raise ValueError(f"{what}: {spec!r} is not HOST:PORT (e.g. 127.0.0.1:0)")
    return host, number


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --data-listen hosts meaning every interface of this host.
WILDCARD_HOSTS = ("0.0.0.0", "::")


def route_ip(scheduler_address: str) -> str | None:
    """The local IP address of the route to the scheduler at
    `scheduler_address`, as Dask's get_ip finds it: connect() a UDP socket
    to the scheduler, which sends nothing and only picks the route, then
    getsockname(). None when the address does not resolve, there is no
    route, or the answer is of no use to peers on other hosts (loopback,
    IPv6 link-local, IPv4-mapped)."""
    try:
        target, _tls = parse_address(scheduler_address)
        host, _, port = target.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICSERV)
        family, _type, _proto, _name, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(sockaddr)
            local = ipaddress.ip_address(s.getsockname()[0].split("%", 1)[0])
    except (ValueError, OSError, IndexError):
        return None
    if local.is_loopback or local.is_unspecified:
        return None
    if isinstance(local, ipaddress.IPv6Address) and (
        local.is_link_local or local.ipv4_mapped is not None
    ):
        return None
    return str(local)


def advertised_host(listen_host: str, scheduler_address: str) -> str:
    """The data service's host as peers dial it, for --data-listen host
    `listen_host`: that host itself, or for a wildcard one the IP address
    of the route to the scheduler (route_ip), else this host's name."""
    if listen_host not in WILDCARD_HOSTS:
        return listen_host
    return route_ip(scheduler_address) or socket.gethostname()


def default_listen(scheduler_address: str) -> str:
    """127.0.0.1:0 when the scheduler is on a loopback address, else 0.0.0.0:0."""
    target, _tls = parse_address(scheduler_address)
    host = target.rpartition(":")[0]
    return "127.0.0.1:0" if is_loopback(host) else "0.0.0.0:0"


# ---------------------------------------------------------------------------
# Counters and the store
# ---------------------------------------------------------------------------

COUNTERS = ("held", "served", "fetched", "local", "uploaded")


class Counters:
    """What moved through the data plane: (count, bytes) per kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, (0, 0))

    def add(self, kind: str, nbytes: int, count: int = 1) -> None:
        with self._lock:
            n, b = self._counts[kind]
            self._counts[kind] = (n + count, b + nbytes)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._counts)

    def line(self) -> str:
        c = self.snapshot()
        return "data: " + ", ".join(f"{k} {c[k][0]} ({c[k][1]} bytes)" for k in COUNTERS)


def chunks_of(h: Held) -> Iterator[bytes]:
    """`h` as serialized DataChunks of at most CHUNK_MAX bytes (one empty
    chunk for an empty result), read a piece at a time (from its file when
    spilled), each copied once into its message (taskgrid._chunks)."""
    for offset in range(0, max(h.size, 1), CHUNK_MAX):
        yield _chunks.encode(h.key, offset, h.size, h.codec, h.view(offset, CHUNK_MAX))


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class DataServer:
    """DataService on `listen` ("HOST:PORT"), serving `store`; it
    advertises `advertise` ("HOST:PORT", port 0 for the bound one), else
    advertised_host's choice for the worker of `scheduler_address`."""

    def __init__(
        self,
        listen: str,
        advertise: str | None,
        store: Store,
        counters: Counters,
        name: Callable[[], str],
        security: Security | None,
        clients: bool = False,
        scheduler_address: str = "",
    ) -> None:
        self._store = store
        self._counters = counters
        self._name = name
        self._tls = security is not None
        self._roles = ("worker", "client") if clients else ("worker",)
        host, port = split_host_port(listen, "--data-listen")
        adv_host, adv_port = host, 0
        if advertise:
            adv_host, adv_port = split_host_port(advertise, "--data-address")
        else:
            adv_host = advertised_host(host, scheduler_address)
        handler = grpc.method_handlers_generic_handler(
            "taskgrid.v1.DataService",
            {
                "Fetch": grpc.unary_stream_rpc_method_handler(
                    self._fetch,
                    request_deserializer=pb.FetchRequest.FromString,
                    # chunks_of serializes, with one copy of the bytes.
                    response_serializer=None,
                )
            },
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(SERVER_THREADS, thread_name_prefix="taskgrid-data"),
            handlers=[handler],
            options=[("grpc.max_send_message_length", MAX_SEND)],
        )
        bind = join_host_port(host, port)
        try:
            if security is not None:
                bound = self._server.add_secure_port(bind, security.server_credentials())
            else:
                bound = self._server.add_insecure_port(bind)
        except RuntimeError as e:
            raise OSError(f"--data-listen {listen}: cannot listen there ({e})") from None
        if bound == 0:
            raise OSError(f"--data-listen {listen}: cannot listen there")
        self.listen_host = host
        self.port = bound
        # The address workers fetch from; port 0 in --data-address means
        # the port bound here.
        self.address = join_host_port(adv_host, adv_port or bound)
        self.advertised_host = adv_host
        self._server.start()

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait(5)

    def _fetch(self, request: pb.FetchRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        if self._tls:
            self._check_role(context, self._roles)
        key = request.key
        item = self._store.get(key)
        if item is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no result '{key}' on worker {self._name()}")
        yield from chunks_of(item)
        self._counters.add("served", item.size)

    @staticmethod
    def _check_role(context: grpc.ServicerContext, roles: tuple[str, ...]) -> None:
        auth: Any = context.auth_context()
        pems = auth.get("x509_pem_cert") or []
        if pems:
            role, why = certificate_role(pems[0])
        else:
            role, why = "", "no client certificate"
        if role not in roles:
            need = " or ".join(roles)
            has = f"role '{role}'" if role else f"no role ({why})"
            hint = ""
            if role == "client":
                hint = " (the worker's operator can admit clients with --data-clients)"
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"DataService.Fetch needs the {need} role; this certificate has {has}{hint}",
            )


# ---------------------------------------------------------------------------
# Fetching inputs
# ---------------------------------------------------------------------------


class _Refused(Exception):
    """One holder did not deliver (the message says why)."""


class Fetcher:
    """Fetches results from their holders, over the cluster's TLS mode."""

    def __init__(self, security: Security | None) -> None:
        self._security = security
        self._lock = threading.Lock()
        self._peers: collections.OrderedDict[str, tuple[grpc.Channel, Any]] = (
            collections.OrderedDict()
        )

    def _call(self, holder: str) -> Any:
        with self._lock:
            peer = self._peers.get(holder)
            if peer is not None:
                self._peers.move_to_end(holder)
                return peer[1]
            channel = peer_channel(holder, self._security)
            call: Any = channel.unary_stream(
                FETCH_METHOD,
                request_serializer=pb.FetchRequest.SerializeToString,
                # Raw messages, decoded around the payload (_chunks).
                response_deserializer=None,
            )
            self._peers[holder] = (channel, call)
            old = None
            if len(self._peers) > PEER_CHANNELS_MAX:
                old = self._peers.popitem(last=False)[1][0]
        if old is not None:
            old.close()
        return call

    def close(self) -> None:
        with self._lock:
            peers, self._peers = self._peers, collections.OrderedDict()
        for channel, _ in peers.values():
            channel.close()

    def fetch(
        self,
        key: str,
        size: int,
        holders: Sequence[str],
        cancelled: Callable[[], bool],
        reasons: Sequence[str] = (),
        what: str = "input",
    ) -> bytes:
        """The bytes of `key` from the first holder that delivers them
        whole; FetchFailed naming `what` it is, every holder tried and why
        (after `reasons`, what was already found)."""
        reasons = list(reasons)
        for holder in holders:
            try:
                return self._fetch_one(holder, key, size, cancelled)
            except _Refused as e:
                reasons.append(f"holder {holder}: {e}")
            if cancelled():
                break
        tried = "; ".join(reasons) if reasons else "no holder"
        raise FetchFailed(f"{what} '{key}' ({size} bytes): {tried}")

    def _fetch_one(self, holder: str, key: str, size: int, cancelled: Callable[[], bool]) -> bytes:
        timeout = FETCH_TIMEOUT_BASE_S + FETCH_TIMEOUT_PER_MIB_S * size / (1 << 20)
        parts: list[memoryview] = []
        got = 0
        expect = size
        try:
            stream = self._call(holder)(pb.FetchRequest(key=key), timeout=timeout)
            for raw in stream:
                if cancelled():
                    stream.cancel()
                    raise _Refused("the fetch was cancelled")
                try:
                    c = _chunks.decode(raw)
                except _chunks.MalformedChunk as e:
                    stream.cancel()
                    raise _Refused(f"sent a malformed chunk ({e}): discarded") from None
                if not expect and not got:
                    expect = c.size
                piece = c.data
                if c.offset != got:
                    why = f"a chunk at offset {c.offset}, expected {got}"
                elif c.size != expect:
                    why = f"a chunk says the size is {c.size}, expected {expect}"
                elif got + len(piece) > expect:
                    why = f"more than {expect} bytes"
                elif c.key != key:
                    why = "a chunk of another key"
                elif crc32(piece) != c.crc32:
                    why = f"a chunk at offset {c.offset} that fails its CRC-32"
                else:
                    parts.append(piece)
                    got += len(piece)
                    continue
                stream.cancel()
                raise _Refused(f"sent {why}: discarded")
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            raise _Refused(f"{code.name if code else 'error'}: {details}") from None
        except ValueError as e:  # a bad address
            raise _Refused(str(e)) from None
        if got != expect:
            raise _Refused(f"the stream ended after {got} of {expect} bytes")
        return b"".join(parts)  # the one copy out of the received messages


# ---------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------


class Piece(NamedTuple):
    """One chunk of an upload, as the request generator sends it."""

    upload: int
    key: str
    offset: int
    data: bytes
    size: int
    codec: str


@dataclasses.dataclass
class _Upload:
    id: int
    held: Held
    offset: int  # the next byte to send
    end: int  # the end of the range asked


class UploadQueue:
    """Uploads not yet sent, in order; the caller locks (the outbox does)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._items: collections.deque[_Upload] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._items)

    def clear(self) -> None:
        self._items.clear()

    def add(self, upload: int, held: Held, offset: int = 0, length: int = 0) -> None:
        """Queue bytes [offset, offset + length) of `held` (Upload.offset
        and .length: length 0, or past the end, means to the end; an offset
        at or past the end of a non-empty result queues nothing)."""
        size = held.size
        if offset > size or (offset == size and size > 0):
            return
        end = size if length == 0 or length > size - offset else offset + length
        self._items.append(_Upload(upload, held, offset, end))

    def take(self, budget: int = UPLOAD_MESSAGE_BYTES) -> list[Piece]:
        """The next chunks, about `budget` bytes of them (at least one).
        A result counts as uploaded once, at its last byte."""
        out: list[Piece] = []
        used = 0
        while self._items and (not out or used + CHUNK_MAX <= budget):
            u = self._items[0]
            h = u.held
            size = h.size
            piece = h.read(u.offset, min(CHUNK_MAX, u.end - u.offset))
            out.append(Piece(u.id, h.key, u.offset, piece, size, h.codec))
            used += len(piece)
            u.offset += len(piece)
            self._counters.add("uploaded", len(piece), count=int(u.offset >= size))
            if u.offset >= u.end or not piece:
                self._items.popleft()
        return out


def add_pieces(message: Any, pieces: Iterable[Piece]) -> None:
    """Append `pieces` to a WorkerMessage's chunks."""
    add = message.chunks.add
    for p in pieces:
        add(
            key=p.key,
            offset=p.offset,
            data=p.data,
            size=p.size,
            codec=p.codec,
            crc32=crc32(p.data),
            upload=p.upload,
        )


# ---------------------------------------------------------------------------
# One worker's data plane
# ---------------------------------------------------------------------------


class _Input:
    """A dependency's bytes as a task sees them (like a TaskResult)."""

    __slots__ = ("codec", "data")

    def __init__(self, data: bytes, codec: str) -> None:
        self.data = data
        self.codec = codec


class _Resolved:
    """An Assignment whose dependencies' bytes are all here."""

    __slots__ = ("attempt", "codec", "deps", "func", "input", "key", "priority")

    def __init__(self, a: Any, deps: list[_Input]) -> None:
        self.key = a.key
        self.func = a.func
        self.input = a.input
        self.codec = a.codec
        self.attempt = a.attempt
        self.priority = a.priority
        self.deps = deps


class DataPlane:
    """A worker's store, data service (unless disabled) and fetcher.

    `listen` is "HOST:PORT", None for the default (see default_listen) or
    "none" for no data service: the worker then registers no data address
    and sends every result inline.
    """

    def __init__(
        self,
        scheduler_address: str,
        security: Security | None,
        name: Callable[[], str],
        listen: str | None = None,
        advertise: str | None = None,
        memory: dict[str, Any] | None = None,
        data_clients: bool = False,
    ) -> None:
        tls = parse_address(scheduler_address)[1]
        #: Whether client certificates may fetch too (--data-clients).
        self.clients = data_clients
        peer_security = security if tls else None
        self.counters = Counters()
        self.store = Store()
        # Memory management (memory.py): MemoryManager's keyword arguments.
        self.memory = MemoryManager(self.store, **(memory or {"limit": 0}))
        self.fetcher = Fetcher(peer_security)
        self.inline_limit = 0
        self.server: DataServer | None = None
        if listen is None:
            listen = default_listen(scheduler_address)
        if listen == "none" and data_clients:
            raise ValueError(
                "--data-clients needs a data service (it was turned off with --data-listen none)"
            )
        if listen != "none":
            self.server = DataServer(
                listen,
                advertise,
                self.store,
                self.counters,
                name,
                peer_security,
                data_clients,
                scheduler_address,
            )
        self.address = self.server.address if self.server is not None else ""

    def begin_session(self, session: int) -> None:
        self.inline_limit = 0
        self.store.reset(session)

    def end_session(self) -> None:
        self.inline_limit = 0
        self.store.reset(0)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.fetcher.close()
        self.store.reset(-1)
        self.memory.close()

    def holds(self, size: int) -> bool:
        """Whether a result of `size` bytes would be held (over the inline limit)."""
        limit = self.inline_limit
        return self.server is not None and limit > 0 and size > limit

    def hold(self, session: int, key: str, data: bytes, codec: str) -> bool:
        """Keep a successful result here if it is over the inline limit."""
        if not self.holds(len(data)):
            return False
        if not self.store.put(session, key, data, codec):
            return False
        self.counters.add("held", len(data))
        return True

    def copy(self, session: int, c: Any, cancelled: Callable[[], bool]) -> str | None:
        """Copy a held result here (SchedulerMessage.copy `c`): fetched
        from its holders as a task's input is, then kept in the store like
        a result this worker made (it counts toward the memory limit and
        may spill). None when it is held here; else why not."""
        if self.store.get(c.key) is not None:
            return None
        why = self.memory.too_large(c.size)
        if why is not None:
            return why
        try:
            data = self.fetcher.fetch(c.key, c.size, list(c.holders), cancelled)
        except FetchFailed as e:
            return str(e)
        self.counters.add("fetched", len(data))
        if not self.store.put(session, c.key, data, c.codec or "raw"):
            return "the session ended"
        self.counters.add("held", len(data))
        return None

    def inputs(self, task: Any, a: Any, missing: Callable[[str], None]) -> Any:
        """`a`, or a copy whose held dependencies carry their bytes: from
        this worker's store when it has them, else fetched from a holder.
        `missing(key)` is told of a key the scheduler thinks is here but
        is not."""
        deps = a.deps
        if not any(not d.data and d.holders for d in deps):
            return a
        out = []
        for d in deps:
            if d.data or not d.holders:
                out.append(_Input(d.data, d.codec))
                continue
            holders = list(d.holders)
            item = self.store.get(d.key)
            if item is not None:
                self.counters.add("local", item.size)
                out.append(_Input(item.whole(), d.codec or item.codec))
                continue
            why = []
            if self.address and self.address in holders:
                missing(d.key)
                holders.remove(self.address)
                why.append(f"holder {self.address}: this worker, which does not hold it")
            data = self.fetcher.fetch(d.key, d.size, holders, lambda: bool(task.cancelled), why)
            self.counters.add("fetched", len(data))
            out.append(_Input(data, d.codec))
        return _Resolved(a, out)
