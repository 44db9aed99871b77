# SPDX-License-Identifier: Apache-2.0
"""A stock client refused at the TLS handshake sees only "UNAVAILABLE:
Socket closed", so the scheduler logs one clear line per refused
handshake: what it means (no certificate, a certificate the cluster CA did
not sign or that expired, a client that does not speak TLS) and OpenSSL's
reason."""
from __future__ import annotations

import pathlib
import subprocess
import time

import grpc
import pytest

from conftest import BIN, run_scheduler


def _certs(d: pathlib.Path) -> pathlib.Path:
    d.mkdir()
    subprocess.run([str(BIN / "scheduler" / "taskgrid-certs"), str(d)], check=True,
                   stdout=subprocess.DEVNULL)
    return d


def _status(target: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
    with ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/taskgrid.v1.Scheduler/Status")(b"", timeout=5)
    return e.value.code()


def _wait_for(log: pathlib.Path, needles: list[str], timeout: float = 10.0) -> list[str]:
    """The log's refused-handshake lines, once each needle is in one."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in log.read_text().splitlines() if "refused a TLS handshake" in ln]
        if all(any(n in ln for ln in lines) for n in needles) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_each_refused_handshake_is_one_clear_log_line(tmp_path: pathlib.Path) -> None:
    ours = _certs(tmp_path / "ours")
    other = _certs(tmp_path / "other")
    log = tmp_path / "scheduler.log"
    with log.open("w") as err, run_scheduler(
            ["--listen", "tls://127.0.0.1:0", "--launcher", "none",
             "--tls-ca", str(ours / "ca.pem"),
             "--tls-cert", str(ours / "scheduler.pem"),
             "--tls-key", str(ours / "scheduler-key.pem")], stderr=err) as addr:
        ca = (ours / "ca.pem").read_bytes()
        assert _status(addr, grpc.ssl_channel_credentials(ca)) == grpc.StatusCode.UNAVAILABLE
        assert _status(addr, grpc.ssl_channel_credentials(
            ca, (other / "client-key.pem").read_bytes(),
            (other / "client.pem").read_bytes())) == grpc.StatusCode.UNAVAILABLE
        assert _status(addr, None) == grpc.StatusCode.UNAVAILABLE
        wanted = ["presented no certificate (peer did not return a certificate)",
                  "not signed by the cluster CA",
                  "does not speak TLS"]
        lines = _wait_for(log, wanted)
    for w in wanted:
        assert any(w in ln for ln in lines), log.read_text()
    # One line per refused attempt (a client may retry), each a warning.
    assert lines and all(" WARN  scheduler: refused a TLS handshake: " in ln for ln in lines)
    # gRPC's own unformatted line is not printed beside ours.
    assert "ssl_transport_security" not in log.read_text()
