# SPDX-License-Identifier: Apache-2.0
"""Addresses, channels and the generated stubs, in one place.

Every gRPC channel of the package (client, worker) is made here, so address
parsing, TLS and message-size options cannot differ between them. The stubs
are the ones generated from proto/ at build time (taskgrid.v1); a clear
error says so when the package was not built.
"""

from __future__ import annotations

import grpc

from .security import Security

try:
    from .v1 import taskgrid_pb2 as pb
    from .v1 import taskgrid_pb2_grpc as pb_grpc
except ImportError as e:  # pragma: no cover - only when not built
    raise ImportError(
        "taskgrid's gRPC stubs (taskgrid.v1) are missing: they are generated "
        "from proto/ when the package is built. Install it with "
        "'pip install ./bindings/python' from the taskgrid repository."
    ) from e

__all__ = [
    "MAX_RECEIVE",
    "MAX_SEND",
    "aio_channel",
    "normalize_address",
    "parse_address",
    "pb",
    "pb_grpc",
    "peer_channel",
    "sync_channel",
]

# The scheduler refuses messages over its --max-message (64 MiB by default);
# clients keep what they send well under it, and accept any size back.
MAX_SEND = 64 * 1024 * 1024
MAX_RECEIVE = 2**31 - 1

_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_SEND),
    ("grpc.max_receive_message_length", MAX_RECEIVE),
    # Results are streamed as tasks finish, possibly after long silences.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def parse_address(address: str) -> tuple[str, bool]:
    """'tcp://h:p' | 'tls://h:p' | 'h:p' -> (gRPC target 'h:p', is_tls)."""
    if not isinstance(address, str) or not address:
        raise ValueError(f"not a taskgrid address: {address!r}")
    tls = False
    if address.startswith("tcp://"):
        target = address[6:]
    elif address.startswith("tls://"):
        target, tls = address[6:], True
    elif "://" in address:
        raise ValueError(f"unsupported address {address!r}: use tcp://HOST:PORT or tls://HOST:PORT")
    else:
        target = address
    if ":" not in target.rstrip("]"):
        raise ValueError(f"address {address!r} has no port (expected HOST:PORT)")
    return target, tls


def normalize_address(address: str) -> str:
    target, tls = parse_address(address)
    return ("tls://" if tls else "tcp://") + target


def _credentials(
    address: str, security: Security | None
) -> tuple[str, grpc.ChannelCredentials | None, list[tuple[str, int | str]]]:
    target, tls = parse_address(address)
    options = list(_OPTIONS)
    if not tls:
        if security is not None and security.cert is not None:
            raise ValueError(f"TLS security was given but {address!r} is plaintext; use tls://")
        return target, None, options
    if security is None:
        raise ValueError(
            f"{address!r} is a TLS address: pass security=taskgrid.Security("
            "ca=..., cert=..., key=...)"
        )
    if security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    return target, security.channel_credentials(), options


def sync_channel(address: str, security: Security | None = None) -> grpc.Channel:
    """A blocking-API channel (used by the worker)."""
    target, creds, options = _credentials(address, security)
    if creds is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, creds, options=options)


def aio_channel(address: str, security: Security | None = None) -> grpc.aio.Channel:
    """An asyncio channel; create it on the loop that will use it."""
    target, creds, options = _credentials(address, security)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, creds, options=options)


#: The DNS name every worker certificate carries (taskgrid-certs writes it);
#: a worker fetching from another verifies the holder's certificate for it
#: (the contract's DataService; TG_PROTO_WORKER_TLS_NAME in C).
WORKER_TLS_NAME = "taskgrid-worker"


def peer_channel(target: str, security: Security | None) -> grpc.Channel:
    """A blocking-API channel to another worker's data service ("host:port",
    as it advertised it): over TLS when `security` is given (the cluster's
    TLS mode), checking the peer's certificate against the cluster CA for
    the workers' fixed TLS name (WORKER_TLS_NAME), not the host it is
    reached by: workers' addresses are not known when certificates are
    made."""
    options = list(_OPTIONS)
    if security is None:
        return grpc.insecure_channel(target, options=options)
    options.append(("grpc.ssl_target_name_override", WORKER_TLS_NAME))
    return grpc.secure_channel(target, security.channel_credentials(), options=options)
