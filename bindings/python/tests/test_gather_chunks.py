# SPDX-License-Identifier: Apache-2.0
"""The client reassembles chunked Gather results, against a scripted
scheduler (a grpcio server from the generated stubs): it asks for chunks
(GatherRequest.chunked), joins each key's chunks once they are all there,
and fails a key whose chunks are corrupt, out of order, too many or
missing, naming it, while other keys of the stream go on."""
from __future__ import annotations

import threading
import zlib
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
import pytest

import taskgrid
from taskgrid import _codec
from taskgrid.v1 import taskgrid_pb2 as pb
from taskgrid.v1 import taskgrid_pb2_grpc as pb_grpc

MIB = 1 << 20
TIMEOUT = 20
MEMORY = pb.TASK_STATE_MEMORY


def value(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def chunks(key: str, data: bytes, size: int = 0, step: int = MIB) -> list:
    out = []
    for off in range(0, len(data), step):
        piece = data[off:off + step]
        out.append(pb.DataChunk(key=key, offset=off, data=piece, size=size or len(data),
                                codec="pickle", crc32=zlib.crc32(piece)))
    return out


def header(key: str, data: bytes) -> Any:
    return pb.TaskResult(key=key, state=MEMORY, codec="pickle", size=len(data), attempt=1)


class FakeScheduler(pb_grpc.SchedulerServicer):
    """Accepts submits; answers each Gather with script(keys)."""

    def __init__(self, script: Callable[[list], Iterator[Any]]) -> None:
        self.script = script
        self.requests: list = []
        self.lock = threading.Lock()

    def Status(self, request: Any, context: Any) -> Any:
        return pb.StatusResponse(version="fake")

    def Submit(self, request: Any, context: Any) -> Any:
        return pb.SubmitResponse(accepted=len(request.tasks))

    def Release(self, request: Any, context: Any) -> Any:
        return pb.ReleaseResponse()

    def Gather(self, request: Any, context: Any) -> Iterator[Any]:
        with self.lock:
            self.requests.append(request)
        yield from self.script(list(request.keys))


@pytest.fixture()
def scripted() -> Iterator[Callable[..., Any]]:
    servers = []
    clients = []

    def start(script: Callable[[list], Iterator[Any]]) -> tuple[taskgrid.Client, FakeScheduler]:
        fake = FakeScheduler(script)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_SchedulerServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        client = taskgrid.Client(f"tcp://127.0.0.1:{port}", set_as_default=False)
        clients.append(client)
        return client, fake

    yield start
    for c in clients:
        c.close()
    for s in servers:
        s.stop(grace=0)


def submit(client: taskgrid.Client, *keys: str) -> list:
    """Futures for `keys`, in one Submit (so one Gather stream)."""
    return client.map(len, [b""] * len(keys), key=list(keys))


def test_chunks_are_reassembled_across_messages_and_keys(scripted) -> None:
    a = _codec.dumps(value(5 * MIB + 3))
    b = _codec.dumps(value(2 * MIB))
    small = _codec.dumps("inline")

    def script(keys: list) -> Iterator[Any]:
        ca, cb = chunks("a", a), chunks("b", b, step=MIB // 2)
        yield pb.GatherResponse(results=[header("a", a), header("b", b)], chunks=ca[:1])
        # Interleaved, several per message, an inline result among them.
        yield pb.GatherResponse(chunks=[cb[0], ca[1], cb[1]])
        yield pb.GatherResponse(
            results=[pb.TaskResult(key="s", state=MEMORY, codec="pickle", data=small,
                                   size=len(small))],
            chunks=ca[2:4] + cb[2:])
        yield pb.GatherResponse(chunks=ca[4:])

    client, fake = scripted(script)
    fa, fb, fs = submit(client, "a", "b", "s")
    assert fa.result(TIMEOUT) == value(5 * MIB + 3)
    assert fb.result(TIMEOUT) == value(2 * MIB)
    assert fs.result(TIMEOUT) == "inline"
    assert fake.requests and all(r.chunked for r in fake.requests)


@pytest.mark.parametrize("damage, why", [
    ("crc", "a chunk at offset 1048576 that fails its CRC-32"),
    ("gap", "a chunk at offset 2097152 where 1048576 was expected"),
    ("size", "a chunk giving the size as 9, not"),
    ("extra", "more than its"),
    ("short", "ended incomplete: 2097152 of"),
])
def test_a_corrupt_or_incomplete_result_fails_its_key_only(scripted, damage, why) -> None:
    bad = _codec.dumps(value(3 * MIB))
    good = _codec.dumps(value(MIB + 1))

    def script(keys: list) -> Iterator[Any]:
        cs = chunks("bad", bad)
        if damage == "crc":
            cs[1].crc32 ^= 0x5A
        elif damage == "gap":
            del cs[1]
        elif damage == "size":
            cs[1].size = 9
        elif damage == "extra":
            cs[-1].data += b"!"
            cs[-1].crc32 = zlib.crc32(cs[-1].data)
        elif damage == "short":
            del cs[2:]
        yield pb.GatherResponse(results=[header("bad", bad), header("good", good)])
        for c, g in zip(cs, chunks("good", good) + [None] * 3):
            yield pb.GatherResponse(chunks=[c] + ([g] if g is not None else []))

    client, _ = scripted(script)
    fbad, fgood = submit(client, "bad", "good")
    with pytest.raises(taskgrid.DataCorrupt) as e:
        fbad.result(TIMEOUT)
    assert "'bad'" in str(e.value) and why in str(e.value), str(e.value)
    assert e.value.key == "bad" and e.value.type == "tg.DataCorrupt"
    assert fgood.result(TIMEOUT) == value(MIB + 1)


def test_a_holder_lost_midway_ends_the_key_with_its_error(scripted) -> None:
    data = _codec.dumps(value(3 * MIB))

    def script(keys: list) -> Iterator[Any]:
        yield pb.GatherResponse(results=[header("k", data)], chunks=chunks("k", data)[:1])
        yield pb.GatherResponse(results=[pb.TaskResult(
            key="k", state=pb.TASK_STATE_ERRED,
            error=pb.TaskError(type="tg.DataLost",
                               message="the result was held only on worker w1, which was lost"))])

    client, _ = scripted(script)
    (f,) = submit(client, "k")
    with pytest.raises(taskgrid.DataLost, match="held only on worker w1"):
        f.result(TIMEOUT)


def test_a_zero_length_held_result_and_a_single_chunk(scripted) -> None:
    one = _codec.dumps(value(1000))

    def script(keys: list) -> Iterator[Any]:
        yield pb.GatherResponse(
            results=[header("one", one),
                     pb.TaskResult(key="empty", state=MEMORY, codec="raw", size=0)],
            chunks=chunks("one", one))

    client, _ = scripted(script)
    fone, fempty = submit(client, "one", "empty")
    assert fone.result(TIMEOUT) == value(1000)
    assert fempty.result(TIMEOUT) is None  # an empty raw result
