# SPDX-License-Identifier: Apache-2.0
"""The data address a Python worker advertises: for a wildcard
--data-listen host (0.0.0.0, ::) the local IP address of its route to the
scheduler, which peers on other hosts can dial, never a loopback or IPv6
link-local one; without such a route, this host's name; any other listen
host as it is; an explicit --data-address as given."""
from __future__ import annotations

import ipaddress
import socket

import pytest

from taskgrid.worker.data import DataPlane, advertised_host, route_ip


def _global_ipv4() -> str:
    """An IPv4 address of this machine's own that is not loopback, or skip:
    the local end of a route towards a public address, checked to be bound
    here."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            ip = s.getsockname()[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
    except OSError:
        pytest.skip("this machine has no route off loopback")
    if ipaddress.ip_address(ip).is_loopback:
        pytest.skip("this machine has no non-loopback IPv4 address")
    return ip


def test_the_route_to_a_scheduler_names_this_hosts_address() -> None:
    ip = _global_ipv4()
    for address in (f"tcp://{ip}:8786", f"tls://{ip}:8786", f"{ip}:8786"):
        assert route_ip(address) == ip, address


@pytest.mark.parametrize("address", [
    "tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786",
    "tcp://[::ffff:127.0.0.1]:8786", "tcp://[fe80::1%lo]:8786",
    "tcp://host.invalid:8786", "tcp://127.0.0.1:not-a-port", "no-port", "",
])
def test_no_usable_route_gives_none(address: str) -> None:
    assert route_ip(address) is None


def test_a_wildcard_listen_host_advertises_the_route_address() -> None:
    ip = _global_ipv4()
    for host in ("0.0.0.0", "::"):
        assert advertised_host(host, f"tcp://{ip}:8786") == ip
        # No route off this host: its name, as before.
        assert advertised_host(host, "tcp://127.0.0.1:8786") == socket.gethostname()
    for host in ("127.0.0.1", "::1", "data.example"):
        assert advertised_host(host, f"tcp://{ip}:8786") == host


def test_a_worker_listening_everywhere_registers_the_route_address() -> None:
    ip = _global_ipv4()
    plane = DataPlane(f"tcp://{ip}:8786", None, lambda: "w", "0.0.0.0:0")
    try:
        assert plane.server is not None
        host, _, port = plane.address.rpartition(":")
        assert host == ip and int(port) == plane.server.port > 0, plane.address
    finally:
        plane.stop()
    # An explicit address wins; port 0 there is the bound port.
    plane = DataPlane(f"tcp://{ip}:8786", None, lambda: "w", "0.0.0.0:0", "data.example:0")
    try:
        assert plane.server is not None
        assert plane.address == f"data.example:{plane.server.port}"
    finally:
        plane.stop()
