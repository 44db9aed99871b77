# SPDX-License-Identifier: Apache-2.0
"""TLS settings for talking to a taskgrid scheduler.

One object, :class:`Security`, carries the cluster CA and this party's
certificate and key (file paths or PEM text). The client, the worker and the
Prefect task runner (``client_kwargs={"security": ...}``) all take it, and
it is used only for ``tls://`` addresses. Objects from other libraries that
name the same files (Dask's ``Security``: ``tls_ca_file``,
``tls_client_cert``, ``tls_client_key``; dask-gateway's: ``tls_cert``,
``tls_key``) are accepted too, so existing ``client_kwargs`` keep working.

:func:`certificate_role` reads the taskgrid role a certificate carries,
with the rules of the C code (util/role.h); a Python worker's data service
uses it to serve only peers with the worker role.
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

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with this certificate; require and verify a client
        certificate from this CA."""
        ca, cert, key = self.pem()
        if ca is None or cert is None or key is None:
            raise ValueError("serving over TLS needs the CA, a certificate and its key")
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.pem()
        if (cert is None) != (key is None):
            raise ValueError("taskgrid.Security needs both cert and key, or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


# ---------------------------------------------------------------------------
# Roles (the rules of util/role.h)
# ---------------------------------------------------------------------------

ROLE_URI = "taskgrid:role="
_ROLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
ROLE_MAX = 32


def _quote(value: str) -> str:
    """`value` for a message: printable ASCII as is, the rest as \\xNN,
    at most 48 characters."""
    out = []
    for ch in value[:48]:
        if " " <= ch < "\x7f" and ch not in "\\'":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "replace"))
    return "".join(out) + ("..." if len(value) > 48 else "")


def _take(value: str, what: str) -> tuple[str, str]:
    if 0 < len(value) <= ROLE_MAX and set(value) <= _ROLE_CHARS:
        return value, ""
    return "", f"{what} '{_quote(value)}' is not a role name (1 to 32 of a-z, 0-9, _ and -)"


def certificate_role(pem: bytes) -> tuple[str, str]:
    """The taskgrid role of the first certificate in `pem`: (role, "") or
    ("", why there is none).

    A role is read from X.509 structure only: the URI SAN
    ``taskgrid:role=NAME`` first, else the subject's OU attribute (one in a
    multi-valued RDN counts). Ambiguity is refused: two role URIs, or no
    role URI and two OUs, or a value that is not 1 to 32 of [a-z0-9_-] (a
    bad role URI does not fall back to the OU). The caller has verified the
    chain (gRPC did, in the handshake).
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return "", "the certificate does not parse"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except x509.DuplicateExtension:
        return "", "two subjectAltName extensions"
    except ValueError:
        return "", "an unparsable subjectAltName extension"
    if san is not None:
        uris = [
            u
            for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(ROLE_URI)
        ]
        if len(uris) > 1:
            return "", f"{len(uris)} URI SANs {ROLE_URI}...: refused as ambiguous"
        if uris:
            return _take(uris[0][len(ROLE_URI) :], f"the URI SAN {ROLE_URI}NAME value")
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not ous:
        return "", f"neither a URI SAN {ROLE_URI}NAME nor an OU"
    if len(ous) > 1:
        return "", f"several OU attributes and no URI SAN {ROLE_URI}NAME: refused as ambiguous"
    value = ous[0].value
    if not isinstance(value, str):
        return "", "an OU that is not a string"
    return _take(value, "the OU")
