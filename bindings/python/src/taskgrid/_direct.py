# SPDX-License-Identifier: Apache-2.0
"""Direct fetch of held results from the workers (``direct_to_workers``).

By default a client gets the bytes of a result held on a worker through
the scheduler (a chunked Gather, relayed), so it never needs a route to a
worker. A client made with ``direct_to_workers=True`` fetches them from
one of the result's holders instead (``TaskResult.holders``, from the
deferred Gather answer), with ``DataService.Fetch``: the same fetcher the
Python worker uses for its inputs (worker/data.py), so every chunk is
checked (offsets, size, CRC-32) and holders are tried in order. Over TLS
the holder's certificate is verified against the cluster CA for the
workers' fixed name ``taskgrid-worker``, and the holder must admit the
client's certificate (``--data-clients`` on the worker).

When no holder delivers (unreachable, PERMISSION_DENIED, NOT_FOUND, a bad
chunk) :meth:`DirectFetch.fetch` logs one warning naming each holder and
why and returns None; the caller then gets the result through the
scheduler, so nothing is lost.

Depends on _rpc and worker/data.py (imported when first needed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._rpc import parse_address
from .errors import FetchFailed
from .security import Security

if TYPE_CHECKING:
    from .worker.data import Fetcher

logger = logging.getLogger("taskgrid.client")

__all__ = ["DirectFetch"]


class DirectFetch:
    """A client's fetcher of held results from their holders."""

    def __init__(self, address: str, security: Security | None) -> None:
        # A data service speaks the scheduler address's TLS mode.
        self._security = security if parse_address(address)[1] else None
        self._lock = threading.Lock()
        self._fetcher: Fetcher | None = None
        self._closed = False

    def _get(self) -> Fetcher | None:
        with self._lock:
            if self._fetcher is None and not self._closed:
                from .worker.data import Fetcher

                self._fetcher = Fetcher(self._security)
            return self._fetcher

    def fetch(
        self, key: str, size: int, holders: Sequence[str], closed: Callable[[], bool]
    ) -> bytes | None:
        """The `size` bytes of `key` from the first of `holders` that
        delivers them whole, every chunk checked; None (after one warning
        naming each holder and why) when none does."""
        fetcher = self._get()
        if fetcher is None:
            return None
        try:
            return fetcher.fetch(key, size, holders, closed, what="result")
        except FetchFailed as e:
            if not closed():
                logger.warning("direct_to_workers: %s; getting it through the scheduler instead", e)
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            fetcher.close()
