# SPDX-License-Identifier: Apache-2.0
"""TLS settings for talking to a taskgrid scheduler.

One object, :class:`Security`, carries the cluster CA and this party's
certificate and key (file paths or PEM text). The client, the worker and the
Prefect task runner (``client_kwargs={"security": ...}``) all take it, and
it is used only for ``tls://`` addresses. Objects from other libraries that
name the same files (Dask's ``Security``: ``tls_ca_file``,
``tls_client_cert``, ``tls_client_key``; dask-gateway's: ``tls_cert``,
``tls_key``) are accepted too, so existing ``client_kwargs`` keep working.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Union

import grpc

PemOrPath = Union[str, bytes, "os.PathLike[str]", None]


def _read(value: PemOrPath) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if "-----BEGIN" in text:
        return text.encode()
    with open(text, "rb") as f:
        return f.read()


@dataclasses.dataclass(frozen=True)
class Security:
    """Mutual-TLS material: CA, certificate and key, as paths or PEM.

    ``server_name`` overrides the name checked in the scheduler's
    certificate (useful when connecting by IP to a certificate issued for a
    host name).
    """

    ca: PemOrPath = None
    cert: PemOrPath = None
    key: PemOrPath = None
    server_name: str | None = None

    @classmethod
    def coerce(cls, obj: Any) -> Security | None:
        """Return `obj` as a Security (None, Security, dict or duck-typed)."""
        if obj is None or isinstance(obj, Security):
            return obj
        if isinstance(obj, dict):
            return cls(**obj)

        def get(*names: str) -> Any:
            return next((getattr(obj, n) for n in names if getattr(obj, n, None)), None)

        sec = cls(
            ca=get("ca", "tls_ca_file", "tls_ca"),
            cert=get("cert", "tls_client_cert", "tls_cert"),
            key=get("key", "tls_client_key", "tls_key"),
        )
        if sec.ca is None and sec.cert is None and sec.key is None:
            raise TypeError(
                f"cannot use {type(obj).__name__} as taskgrid security: "
                "expected taskgrid.Security(ca=, cert=, key=)"
            )
        return sec

    def pem(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(ca, cert, key) as PEM bytes (files are read now)."""
        return _read(self.ca), _read(self.cert), _read(self.key)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.pem()
        if (cert is None) != (key is None):
            raise ValueError("taskgrid.Security needs both cert and key, or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
