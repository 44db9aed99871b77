# SPDX-License-Identifier: Apache-2.0
"""taskgrid._crc, the data plane's CRC-32, is zlib's to the bit (C workers
and Go peers check the same number): every length 0..300 at several
alignments of a memoryview, a whole 1 MiB chunk, and the catalogue's check
value; with isal installed (as the package requires on x86-64 and ARM64)
the fast one is in use."""
from __future__ import annotations

import os
import platform
import zlib

from taskgrid import _crc


def test_the_crc_is_zlibs() -> None:
    data = os.urandom(64 + 300)
    view = memoryview(data)
    for align in (0, 1, 7, 31, 63):
        for n in range(301):
            assert _crc.crc32(view[align:align + n]) == zlib.crc32(data[align:align + n])
    chunk = os.urandom(1 << 20)
    assert _crc.crc32(chunk) == zlib.crc32(chunk)
    assert _crc.crc32(b"123456789") == 0xCBF43926
    assert _crc.crc32(b"") == 0


def test_the_fast_crc_is_used_where_isal_has_wheels() -> None:
    if platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64"):
        assert _crc.FAST, "isal is a requirement on this platform but is not installed"
