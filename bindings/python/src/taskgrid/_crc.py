# SPDX-License-Identifier: Apache-2.0
"""The CRC-32 of the data plane's chunks (DataChunk.crc32): zlib's (the
reflected IEEE CRC every peer computes), through ISA-L when the `isal`
package is there (about 20x faster, checked equal in the tests), else
zlib's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

crc32: Callable[[Any], int]
try:
    from isal.isal_zlib import crc32 as _isal_crc32
except ImportError:  # no isal wheel for this platform
    from zlib import crc32 as _zlib_crc32

    crc32 = _zlib_crc32
    FAST = False
else:
    crc32 = _isal_crc32
    FAST = True

__all__ = ["FAST", "crc32"]
