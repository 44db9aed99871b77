# SPDX-License-Identifier: Apache-2.0
"""The Python worker's data plane, against scripted schedulers.

Each test drives real Workers (in this process, so their counters can be
read, or as `python -m taskgrid.worker`) through a scripted scheduler (a
grpcio server from the generated stubs), and talks to their DataService
over gRPC like a peer worker would: results over the inline limit are held
and served in checked chunks, uploads answer with chunks, free and the end
of a session drop them, inputs come from the worker's own store or are
fetched from holders (or fail with tg.FetchFailed), and over mutual TLS
only the worker role may fetch.
"""
from __future__ import annotations

import os
import pathlib
import queue
import subprocess
import sys
import threading
import time
import zlib
from concurrent import futures
from typing import Any, Callable, Iterator, Optional

import grpc
import pytest

from taskgrid import _codec
from taskgrid._rpc import peer_channel
from taskgrid.security import Security, certificate_role
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc
from taskgrid.worker import Worker

from test_worker_protocol import py_call

HERE = pathlib.Path(__file__).resolve().parent
TIMEOUT = 20.0
MIB = 1 << 20
LIMIT = 64 * 1024
MEMORY = pb.TASK_STATE_MEMORY


def make(n: int) -> bytes:
    """n bytes that are not all alike."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def length(x: bytes) -> int:
    return len(x)


def total_length(*xs: bytes) -> int:
    return sum(len(x) for x in xs)


# ---------------------------------------------------------------------------
# A scripted scheduler: one Link per WorkerLink stream
# ---------------------------------------------------------------------------


class Link:
    """One worker stream: what it sent (inbox), what to send it (outbox)."""

    def __init__(self) -> None:
        self.inbox: "queue.Queue[Optional[Any]]" = queue.Queue()
        self.outbox: "queue.Queue[Optional[Any]]" = queue.Queue()

    def send(self, **fields: Any) -> None:
        self.outbox.put(pb.SchedulerMessage(**fields))

    def end(self) -> None:
        self.outbox.put(None)

    def get(self, want: Callable[[Any], bool]) -> Any:
        """The next message `want` accepts (None: the stream ended)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            if m is None or want(m):
                return m

    def results(self, n: int) -> dict:
        out: dict = {}
        while len(out) < n:
            m = self.get(lambda m: bool(m.results))
            assert m is not None, f"stream ended with {len(out)} of {n} results"
            out.update({r.key: r for r in m.results})
        return out


class FakeScheduler(pb_grpc.WorkerLinkServicer):
    def __init__(self) -> None:
        self.links: "queue.Queue[Link]" = queue.Queue()

    def Connect(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        link = Link()
        self.links.put(link)

        def pump() -> None:
            try:
                for m in request_iterator:
                    link.inbox.put(m)
            except Exception:  # noqa: BLE001 - the stream broke
                pass
            link.inbox.put(None)
            link.outbox.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            m = link.outbox.get()
            if m is None:
                return
            yield m

    def connect(self, name: str, inline_limit: int = LIMIT) -> tuple[Link, Any]:
        """The next stream, registered: (link, its Register)."""
        link = self.links.get(timeout=TIMEOUT)
        reg = link.get(lambda m: m.HasField("registration")).registration
        link.send(worker_name=name, heartbeat_ms=1000, inline_limit=inline_limit)
        return link, reg


@pytest.fixture()
def cluster(request) -> Iterator[Callable[..., Any]]:
    """cluster(tls=None) -> (FakeScheduler, address); cluster.worker(...)
    starts an in-process Worker that is stopped after the test."""
    servers: list = []
    workers: list = []

    def scheduler(certs: Optional[dict] = None) -> tuple[FakeScheduler, str]:
        fake = FakeScheduler()
        # The scheduler's default --max-message.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                             options=[("grpc.max_receive_message_length", 64 * MIB)])
        pb_grpc.add_WorkerLinkServicer_to_server(fake, server)
        if certs is None:
            port = server.add_insecure_port("127.0.0.1:0")
            address = f"tcp://127.0.0.1:{port}"
        else:
            creds = grpc.ssl_server_credentials(
                [(read(certs["scheduler"][1]), read(certs["scheduler"][0]))],
                root_certificates=read(certs["ca"]), require_client_auth=True)
            port = server.add_secure_port("127.0.0.1:0", creds)
            address = f"tls://127.0.0.1:{port}"
        server.start()
        servers.append(server)
        return fake, address

    def worker(address: str, **kwargs: Any) -> Worker:
        w = Worker(address, **kwargs)
        workers.append(w)
        return w.start()

    scheduler.worker = worker  # type: ignore[attr-defined]
    yield scheduler
    for w in workers:
        w.stop(timeout=0)
    for w in workers:
        w.stop(timeout=15)
    for s in servers:
        s.stop(grace=0)


def read(path: str) -> bytes:
    return pathlib.Path(path).read_bytes()


def data_channel(address: str, security: Optional[Security] = None) -> grpc.Channel:
    """As a fetching worker connects (over TLS: the workers' fixed name)."""
    return peer_channel(address, security)


def fetch(address: str, key: str, security: Optional[Security] = None) -> list:
    with data_channel(address, security) as ch:
        stub = pb_grpc.DataServiceStub(ch)
        return list(stub.Fetch(pb.FetchRequest(key=key), timeout=TIMEOUT))


def joined(chunks: list, key: str) -> bytes:
    """Check chunks the way a receiver must, and join them."""
    assert chunks
    size = chunks[0].size
    offset = 0
    for c in chunks:
        assert (c.key, c.offset, c.size) == (key, offset, size)
        assert len(c.data) <= MIB
        assert c.crc32 == zlib.crc32(c.data)
        offset += len(c.data)
    assert offset == size
    return b"".join(c.data for c in chunks)


def held(address: str, key: str) -> Any:
    return pb.TaskResult(key=key, state=MEMORY, codec="pickle", holders=[address],
                         size=0)


def counters(w: Worker) -> dict:
    return w._data.counters.snapshot()


# ---------------------------------------------------------------------------
# Held results, Fetch, upload, free
# ---------------------------------------------------------------------------


def test_large_result_is_held_fetched_uploaded_and_freed(cluster) -> None:
    fake, address = cluster()
    w = cluster.worker(address, nthreads=2, name="w1")
    link, reg = fake.connect("w1")
    assert reg.data_address.startswith("127.0.0.1:")  # loopback scheduler: loopback data
    n = 5_000_000
    link.send(assign=[py_call("big", make, n), py_call("small", make, 10)])
    got = link.results(2)
    big = got["big"]
    expected = _codec.dumps(make(n))
    assert (big.state, big.held, big.data, big.codec) == (MEMORY, True, b"", "pickle")
    assert big.size == len(expected)
    small = got["small"]
    assert not small.held and small.size == len(small.data) and small.data

    # Fetch: chunks of at most 1 MiB with their CRC-32.
    chunks = fetch(reg.data_address, "big")
    assert len(chunks) == (len(expected) + MIB - 1) // MIB
    assert all(c.codec == "pickle" for c in chunks)
    assert joined(chunks, "big") == expected
    with pytest.raises(grpc.RpcError) as e:
        fetch(reg.data_address, "nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no result 'nope' on worker w1"

    # Upload: WorkerMessage.chunks carrying the upload id, <= ~4 MiB per message.
    link.send(upload=[pb.Upload(id=7, key="big"), pb.Upload(id=8, key="gone")])
    pieces: list = []
    missing: list = []
    while sum(len(c.data) for c in pieces) < len(expected) or not missing:
        m = link.get(lambda m: bool(m.chunks or m.missing))
        assert m is not None
        assert sum(len(c.data) for c in m.chunks) <= 4 * MIB
        pieces += list(m.chunks)
        missing += list(m.missing)
    assert missing == ["gone"]
    assert {c.upload for c in pieces} == {7}
    assert joined(pieces, "big") == expected

    # Upload.offset and .length: exactly the bytes asked, ranges of one id
    # in the order asked; a range past the end is answered with nothing.
    a, span = MIB + 3, 5 * MIB // 2
    link.send(upload=[pb.Upload(id=9, key="big", offset=a, length=span),
                      pb.Upload(id=10, key="big", offset=len(expected), length=5),
                      pb.Upload(id=9, key="big", offset=a + span)])
    ranged: list = []
    while sum(len(c.data) for c in ranged) < len(expected) - a:
        m = link.get(lambda m: bool(m.chunks))
        assert m is not None
        ranged += list(m.chunks)
    assert {c.upload for c in ranged} == {9}
    assert [c.offset for c in ranged][0] == a
    got = b""
    for c in ranged:
        assert c.offset == a + len(got) and c.size == len(expected)
        got += c.data
    assert got == expected[a:]

    # Free: dropped from the store.
    link.send(free=["big", "unknown"])
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            fetch(reg.data_address, "big")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c = counters(w)
    assert c["held"] == (1, len(expected))
    assert c["served"] == (1, len(expected))
    assert c["uploaded"] == (2, 2 * len(expected) - a)  # each result's end counts once
    assert c["fetched"] == c["local"] == (0, 0)


def test_without_an_inline_limit_or_a_data_service_results_are_inline(cluster) -> None:
    fake, address = cluster()
    cluster.worker(address, name="old")
    link, reg = fake.connect("old", inline_limit=0)  # a scheduler that predates it
    assert reg.data_address
    link.send(assign=[py_call("a", make, 200_000)])
    a = link.results(1)["a"]
    assert not a.held and a.size == len(a.data) > 200_000

    fake2, address2 = cluster()
    cluster.worker(address2, name="plain", data_listen="none")
    link2, reg2 = fake2.connect("plain")
    assert reg2.data_address == ""
    link2.send(assign=[py_call("b", make, 200_000)])
    b = link2.results(1)["b"]
    assert not b.held and len(b.data) > 200_000


def test_the_store_does_not_outlive_the_session(cluster) -> None:
    fake, address = cluster()
    cluster.worker(address, name="w1")
    link, reg = fake.connect("w1")
    link.send(assign=[py_call("big", make, 300_000)])
    assert link.results(1)["big"].held
    assert joined(fetch(reg.data_address, "big"), "big")
    link.end()  # the stream breaks: the worker reconnects as a new worker
    link2, reg2 = fake.connect("w1")
    assert reg2.data_address == reg.data_address
    with pytest.raises(grpc.RpcError) as e:
        fetch(reg.data_address, "big")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # A rerun stores the key again; the new bytes are served.
    link2.send(assign=[py_call("big", make, 300_001)])
    assert link2.results(1)["big"].size > 300_001
    assert len(joined(fetch(reg.data_address, "big"), "big")) > 300_001


# ---------------------------------------------------------------------------
# Inputs: local, fetched, failed
# ---------------------------------------------------------------------------


def test_an_input_held_here_runs_without_a_transfer(cluster) -> None:
    fake, address = cluster()
    w = cluster.worker(address, name="w1")
    link, reg = fake.connect("w1")
    link.send(assign=[py_call("big", make, 2 * MIB)])
    size = link.results(1)["big"].size
    dep = held(reg.data_address, "big")
    dep.size = size
    link.send(assign=[py_call("len", length, _codec.Dep(0), deps=(dep,))])
    r = link.results(1)["len"]
    assert r.state == MEMORY and _codec.loads(r.data) == 2 * MIB
    c = counters(w)
    assert c["local"] == (1, size) and c["fetched"] == (0, 0) and c["served"] == (0, 0)


def test_an_input_held_on_another_worker_is_fetched(cluster) -> None:
    fa, aa = cluster()
    fb, ab = cluster()
    a = cluster.worker(aa, name="a")
    b = cluster.worker(ab, name="b")
    la, ra = fa.connect("a")
    lb, rb = fb.connect("b")
    la.send(assign=[py_call("x", make, 3 * MIB + 5), py_call("y", make, 100_000)])
    got = la.results(2)
    dx = pb.TaskResult(key="x", state=MEMORY, codec="pickle", size=got["x"].size,
                       holders=["127.0.0.1:1", ra.data_address])  # the first is down
    dy = pb.TaskResult(key="y", state=MEMORY, codec="pickle", size=got["y"].size,
                       holders=[ra.data_address])
    inline = pb.TaskResult(key="z", state=MEMORY, codec="pickle",
                           data=_codec.dumps(b"12"), size=0)
    lb.send(assign=[py_call("sum", total_length, _codec.Dep(0), _codec.Dep(1), _codec.Dep(2),
                            deps=(dx, dy, inline))])
    r = lb.results(1)["sum"]
    assert r.state == MEMORY, r.error
    assert _codec.loads(r.data) == 3 * MIB + 5 + 100_000 + 2
    cb, ca = counters(b), counters(a)
    assert cb["fetched"] == (2, got["x"].size + got["y"].size)
    assert cb["local"] == (0, 0)
    assert ca["served"] == cb["fetched"]


def corrupt_holder(mode: str) -> tuple[grpc.Server, str]:
    """A DataService that serves 'x' wrongly: a bad CRC, a gap, or too few bytes."""
    data = _codec.dumps(make(3 * MIB))

    def serve(request: Any, context: Any) -> Iterator[Any]:
        for off in range(0, len(data), MIB):
            piece = data[off:off + MIB]
            crc = zlib.crc32(piece)
            if off == MIB and mode == "crc":
                crc ^= 1
            if off == MIB and mode == "gap":
                continue
            if off == 2 * MIB and mode == "short":
                return
            yield pb.DataChunk(key=request.key, offset=off, data=piece, size=len(data),
                               codec="pickle", crc32=crc)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "taskgrid.v1.DataService",
        {"Fetch": grpc.unary_stream_rpc_method_handler(
            serve, request_deserializer=pb.FetchRequest.FromString,
            response_serializer=pb.DataChunk.SerializeToString)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_a_holder_that_fails_or_lies_is_skipped_or_the_task_fails(cluster) -> None:
    fa, aa = cluster()
    fb, ab = cluster()
    cluster.worker(aa, name="a")
    b = cluster.worker(ab, name="b")
    la, ra = fa.connect("a")
    lb, _ = fb.connect("b")
    la.send(assign=[py_call("x", make, 3 * MIB)])
    size = la.results(1)["x"].size
    bad = {mode: corrupt_holder(mode) for mode in ("crc", "gap", "short")}
    try:
        addrs = [bad[m][1] for m in ("crc", "gap", "short")]

        def dep(*holders: str) -> Any:
            return pb.TaskResult(key="x", state=MEMORY, codec="pickle", size=size,
                                 holders=list(holders))

        # The liars first, then the real holder: the input comes from it.
        lb.send(assign=[py_call("ok", length, _codec.Dep(0), deps=(dep(*addrs, ra.data_address),)),
                        py_call("fails", length, _codec.Dep(0),
                                deps=(dep(*addrs, "127.0.0.1:1"),))])
        got = lb.results(2)
        assert got["ok"].state == MEMORY and _codec.loads(got["ok"].data) == 3 * MIB
        f = got["fails"]
        assert f.state == pb.TASK_STATE_ERRED
        assert f.error.type == "tg.FetchFailed"
        msg = f.error.message
        assert msg.startswith(f"input 'x' ({size} bytes): holder {addrs[0]}: ")
        assert "fails its CRC-32" in msg
        assert f"holder {addrs[1]}: sent a chunk at offset {2 * MIB}, expected {MIB}" in msg
        assert f"holder {addrs[2]}: the stream ended after {2 * MIB} of {size} bytes" in msg
        assert "holder 127.0.0.1:1: UNAVAILABLE" in msg
        assert counters(b)["fetched"] == (1, size)
        # A holder that does not have it (freed): NOT_FOUND, named.
        la.send(free=["x"])
        time.sleep(0.2)
        lb.send(assign=[py_call("nf", length, _codec.Dep(0), deps=(dep(ra.data_address),))])
        nf = lb.results(1)["nf"]
        assert nf.error.type == "tg.FetchFailed"
        assert f"holder {ra.data_address}: NOT_FOUND: no result 'x' on worker a" in nf.error.message
    finally:
        for server, _ in bad.values():
            server.stop(grace=0)


def test_a_holder_list_naming_this_worker_without_the_key_reports_it_missing(cluster) -> None:
    fake, address = cluster()
    cluster.worker(address, name="w1")
    link, reg = fake.connect("w1")
    dep = pb.TaskResult(key="lost", state=MEMORY, codec="pickle", size=10,
                        holders=[reg.data_address])
    link.send(assign=[py_call("t", length, _codec.Dep(0), deps=(dep,))])
    missing: list = []
    results: dict = {}
    while not (missing and results):  # in one message or two
        m = link.get(lambda m: bool(m.missing or m.results))
        assert m is not None
        missing += list(m.missing)
        results.update({r.key: r for r in m.results})
    assert missing == ["lost"]
    r = results["t"]
    assert r.error.type == "tg.FetchFailed"
    assert r.error.message == (f"input 'lost' (10 bytes): holder {reg.data_address}: this "
                               "worker, which does not hold it")


# ---------------------------------------------------------------------------
# The command line and the exit line
# ---------------------------------------------------------------------------


def test_command_line_options_and_the_exit_counters(cluster) -> None:
    fake, address = cluster()
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskgrid.worker", address, "--name", "cli", "--log-level",
         "info", "--data-listen", "127.0.0.1:0", "--data-address", "localhost:0"],
        stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path])))
    try:
        link, reg = fake.connect("cli")
        host, _, port = reg.data_address.rpartition(":")
        assert host == "localhost" and int(port) > 0
        link.send(assign=[py_call("big", make, 100_000)])
        size = link.results(1)["big"].size
        assert joined(fetch(f"127.0.0.1:{port}", "big"), "big")
        proc.terminate()
        err = proc.communicate(timeout=TIMEOUT)[1]
        assert proc.returncode == 0, err
        assert (f"data: held 1 ({size} bytes), served 1 ({size} bytes), fetched 0 (0 bytes), "
                "local 0 (0 bytes), uploaded 0 (0 bytes)") in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("args, message", [
    (["--data-listen", "nowhere"], "--data-listen: 'nowhere' is not HOST:PORT"),
    (["--data-address", "x:y"], "--data-address: 'x:y' is not HOST:PORT"),
    (["--data-listen", "203.0.113.7:0"], "--data-listen 203.0.113.7:0: cannot listen there"),
])
def test_bad_data_options_exit_2(args: list, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "taskgrid.worker", "tcp://127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


# ---------------------------------------------------------------------------
# Mutual TLS: only the worker role may fetch
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict:
    from test_security import _certificates

    return _certificates(tmp_path_factory.mktemp("data-certs"))


def test_over_tls_only_the_worker_role_may_fetch(cluster, certs) -> None:
    fake, address = cluster(certs)
    assert address.startswith("tls://")
    worker_sec = Security(ca=certs["ca"], cert=certs["worker"][0], key=certs["worker"][1])
    cluster.worker(address, name="w1", security=worker_sec)
    link, reg = fake.connect("w1")
    link.send(assign=[py_call("big", make, 2 * MIB)])
    assert link.results(1)["big"].held
    expected = _codec.dumps(make(2 * MIB))
    assert joined(fetch(reg.data_address, "big", worker_sec), "big") == expected

    client_sec = Security(ca=certs["ca"], cert=certs["client"][0], key=certs["client"][1])
    with pytest.raises(grpc.RpcError) as e:
        fetch(reg.data_address, "big", client_sec)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == (
        "DataService.Fetch needs the worker role; this certificate has role 'client' "
        "(the worker's operator can admit clients with --data-clients)")
    for who in ("stranger", None):  # another CA's certificate, or none: no handshake
        sec = (Security(ca=certs["ca"], cert=certs[who][0], key=certs[who][1]) if who
               else Security(ca=certs["ca"]))
        with pytest.raises(grpc.RpcError) as e:
            fetch(reg.data_address, "big", sec)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE

    # A second TLS worker fetches the input with its worker certificate.
    fake2, address2 = cluster(certs)
    w2 = cluster.worker(address2, name="w2", security=worker_sec)
    link2, _ = fake2.connect("w2")
    dep = pb.TaskResult(key="big", state=MEMORY, codec="pickle", size=len(expected),
                        holders=[reg.data_address])
    link2.send(assign=[py_call("len", length, _codec.Dep(0), deps=(dep,))])
    r = link2.results(1)["len"]
    assert r.state == MEMORY, r.error
    assert _codec.loads(r.data) == 2 * MIB
    assert counters(w2)["fetched"] == (1, len(expected))


def test_certificates_from_taskgrid_certs(cluster, binaries, tmp_path) -> None:
    """The cluster's own tool: its worker certificate must serve the data
    service to other workers (serverAuth and the name taskgrid-worker)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    tool = pathlib.Path(binaries[0]).with_name("taskgrid-certs")
    if not tool.exists():
        pytest.skip(f"no {tool}")
    subprocess.run([str(tool), str(tmp_path)], check=True, capture_output=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "worker.pem").read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "taskgrid-worker" in san.get_values_for_type(x509.DNSName)
    certs = {"ca": str(tmp_path / "ca.pem"),
             "scheduler": (str(tmp_path / "scheduler.pem"), str(tmp_path / "scheduler-key.pem"))}
    fake, address = cluster(certs)
    sec = Security(ca=certs["ca"], cert=str(tmp_path / "worker.pem"),
                   key=str(tmp_path / "worker-key.pem"))
    cluster.worker(address, name="w1", security=sec)
    link, reg = fake.connect("w1")
    link.send(assign=[py_call("big", make, 200_000)])
    assert link.results(1)["big"].held
    assert joined(fetch(reg.data_address, "big", sec), "big")
    client = Security(ca=certs["ca"], cert=str(tmp_path / "client.pem"),
                      key=str(tmp_path / "client-key.pem"))
    with pytest.raises(grpc.RpcError) as e:
        fetch(reg.data_address, "big", client)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------------------
# certificate_role: the rules of util/role.h
# ---------------------------------------------------------------------------


def _cert(uris: tuple = (), ous: tuple = (), multi_rdn_ou: bool = False) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "x,OU=admin")
    rdns = [x509.RelativeDistinguishedName([cn])]
    if multi_rdn_ou:
        rdns = [x509.RelativeDistinguishedName(
            [cn, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ous[0])])]
    else:
        rdns += [x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)]) for ou in ous]
    name = x509.Name(rdns)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(1)
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    sans = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName("taskgrid:role=x")]
    b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("uris, ous, multi, role, why", [
    (("taskgrid:role=worker",), (), False, "worker", ""),
    (("taskgrid:role=worker",), ("client",), False, "worker", ""),  # the URI wins
    ((), ("worker",), False, "worker", ""),
    ((), ("worker",), True, "worker", ""),  # an OU in a multi-valued RDN counts
    (("taskgrid:role=a", "taskgrid:role=b"), (), False, "", "2 URI SANs"),
    ((), ("a", "b"), False, "", "several OU attributes"),
    (("taskgrid:role=Worker",), ("worker",), False, "", "is not a role name"),  # no fallback
    ((), ("x" * 33,), False, "", "is not a role name"),
    (("https://example.com",), (), False, "", "neither a URI SAN"),
])
def test_certificate_role_rules(uris, ous, multi, role, why) -> None:
    got, reason = certificate_role(_cert(uris, ous, multi))
    assert got == role
    assert why in reason
    if role:
        assert reason == ""


def test_certificate_role_of_garbage() -> None:
    assert certificate_role(b"not a certificate") == ("", "the certificate does not parse")
