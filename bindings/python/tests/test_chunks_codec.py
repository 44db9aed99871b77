# SPDX-License-Identifier: Apache-2.0
"""taskgrid._chunks: the hand encoder writes what protobuf reads, the hand
decoder reads what protobuf writes (and any valid encoding: fields in any
order, unknown fields), and malformed bytes raise MalformedChunk naming
the problem."""

from __future__ import annotations

import os
import zlib

import pytest

from taskgrid import _chunks
from taskgrid._rpc import pb


def test_encode_is_read_by_protobuf() -> None:
    data = os.urandom(1 << 20)
    raw = _chunks.encode("k", 3 << 20, 9 << 20, "pickle", memoryview(data), upload=7)
    m = pb.DataChunk.FromString(raw)
    assert (m.key, m.offset, m.size, m.codec, m.upload) == ("k", 3 << 20, 9 << 20, "pickle", 7)
    assert m.data == data and m.crc32 == zlib.crc32(data)
    empty = pb.DataChunk.FromString(_chunks.encode("e", 0, 0, "raw", b""))
    assert empty.data == b"" and empty.key == "e"


def test_decode_reads_protobuf_and_any_field_order() -> None:
    data = os.urandom(5000)
    m = pb.DataChunk(
        key="ключ", offset=10, data=data, size=6000, codec="raw", crc32=zlib.crc32(data), upload=2
    )
    c = _chunks.decode(m.SerializeToString())
    assert (c.key, c.offset, c.size, c.codec, c.crc32, c.upload) == (
        "ключ",
        10,
        6000,
        "raw",
        zlib.crc32(data),
        2,
    )
    assert bytes(c.data) == data
    # Reversed fields, with unknown ones (varint, fixed64, string) between.
    parts = [
        b"\x78" + _chunks._varint(99),  # 15: varint
        bytes([6 << 3 | 5]) + zlib.crc32(data).to_bytes(4, "little"),
        b"\x81\x01" + b"\xee" * 8,  # 16: fixed64
        bytes([4 << 3]) + _chunks._varint(6000),
        bytes([3 << 3 | 2]) + _chunks._varint(len(data)) + data,
        bytes([2 << 3]) + _chunks._varint(10),
        bytes([1 << 3 | 2, 1]) + b"k",
    ]
    c = _chunks.decode(b"".join(parts))
    assert (c.key, c.offset, c.size, c.crc32) == ("k", 10, 6000, zlib.crc32(data))
    assert bytes(c.data) == data


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"\x1a\x05abc", "field 3 says 5 bytes, 3 are left"),
        (b"\x1a\x01a\x1a\x01b", "two data fields in one chunk"),
        (b"\x10\xff", "a varint runs past the end"),
        (b"\x10" + b"\xff" * 11, "a varint longer than 10 bytes"),
        (b"\x35\x01\x02", "a fixed-width field runs past the end"),
        (b"\x0b", "wire type 3 (field 1)"),
        (b"\x0a\x02\xff\xfe", "field 1 is not UTF-8"),
    ],
)
def test_malformed_chunks_name_the_problem(raw: bytes, why: str) -> None:
    with pytest.raises(_chunks.MalformedChunk, match=why.replace("(", r"\(").replace(")", r"\)")):
        _chunks.decode(raw)
