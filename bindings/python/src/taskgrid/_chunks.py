# SPDX-License-Identifier: Apache-2.0
"""DataChunk messages (the data plane's unit: up to 1 MiB of a held
result) encoded and decoded by hand around their payload, so that a
chunk's bytes are copied once on each side rather than three or four
times (into a message object, out of it, into the serialized bytes, then
joined): a sender joins the small encoded header, the data field's tag
and length, and a view of the held bytes; a receiver reads the fields
and takes `data` as a view of the received bytes. The wire format is
protobuf's own, so every peer (C, Go, a stock protobuf decoder) reads
what is written here and this reads any valid encoding: fields in any
order, unknown fields skipped. A repeated `data` field is refused (a
peer that sends one is broken or hostile)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._crc import crc32
from ._rpc import pb

# Field numbers of DataChunk (proto/taskgrid/v1/taskgrid.proto).
_KEY, _OFFSET, _DATA, _SIZE, _CODEC, _CRC32, _UPLOAD = 1, 2, 3, 4, 5, 6, 7


class MalformedChunk(ValueError):
    """The bytes are not a DataChunk message."""


@dataclass
class Chunk:
    key: str
    offset: int
    size: int
    codec: str
    crc32: int
    upload: int
    data: memoryview  # a view of the received message


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(key: str, offset: int, size: int, codec: str, data: Any, upload: int = 0) -> bytes:
    """A serialized DataChunk of `data` (bytes-like, not copied before the
    one join), with its CRC-32."""
    n = memoryview(data).nbytes
    head = pb.DataChunk(
        key=key, offset=offset, size=size, codec=codec, crc32=crc32(data), upload=upload
    ).SerializeToString()
    if n == 0:
        return head
    return b"".join((head, bytes((_DATA << 3 | 2,)), _varint(n), data))


def _read_varint(b: memoryview, i: int) -> tuple[int, int]:
    v = shift = 0
    while shift < 64:
        if i >= len(b):
            raise MalformedChunk("a varint runs past the end")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7
    raise MalformedChunk("a varint longer than 10 bytes")


def decode(raw: bytes) -> Chunk:
    """The fields of a serialized DataChunk; `data` is a view of `raw`."""
    b = memoryview(raw)
    if b.ndim != 1 or b.itemsize != 1:
        b = b.cast("B")
    fields: dict[int, Any] = {}
    data: memoryview | None = None
    i, end = 0, len(b)
    while i < end:
        tag, i = _read_varint(b, i)
        field, kind = tag >> 3, tag & 7
        if kind == 0:
            fields[field], i = _read_varint(b, i)
        elif kind == 1 or kind == 5:
            width = 8 if kind == 1 else 4
            if i + width > end:
                raise MalformedChunk("a fixed-width field runs past the end")
            fields[field] = int.from_bytes(b[i : i + width], "little")
            i += width
        elif kind == 2:
            n, i = _read_varint(b, i)
            if n > end - i:
                raise MalformedChunk(f"field {field} says {n} bytes, {end - i} are left")
            if field == _DATA:
                if data is not None:
                    raise MalformedChunk("two data fields in one chunk")
                data = b[i : i + n]
            elif field in (_KEY, _CODEC):
                try:
                    fields[field] = str(b[i : i + n], "utf-8")
                except UnicodeDecodeError:
                    raise MalformedChunk(f"field {field} is not UTF-8") from None
            i += n
        else:
            raise MalformedChunk(f"wire type {kind} (field {field})")
    return Chunk(
        key=fields.get(_KEY, ""),
        offset=fields.get(_OFFSET, 0),
        size=fields.get(_SIZE, 0),
        codec=fields.get(_CODEC, ""),
        crc32=fields.get(_CRC32, 0),
        upload=fields.get(_UPLOAD, 0),
        data=data if data is not None else memoryview(b""),
    )
