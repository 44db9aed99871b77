# SPDX-License-Identifier: Apache-2.0
"""A stock client refused at the TLS handshake sees only "UNAVAILABLE:
Socket closed", so the scheduler logs one clear line per refused
handshake: which certificate and exactly why (no certificate, another CA,
expired, not yet valid, a signature that does not verify, a client that
does not speak TLS)."""
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


def _leaf(ours: pathlib.Path, out: pathlib.Path, *, days_from: float, days_to: float,
          ca: str = "ca", tamper: bool = False) -> tuple[bytes, bytes]:
    """A client certificate signed by `ours`/`ca`, valid from `days_from`
    to `days_to` days from now (negative: in the past). `tamper` flips a
    byte of the signature, so the chain names our CA but does not verify."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate((ours / f"{ca}.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ours / f"{ca}-key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, out.name),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                        "client")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days_from))
            .not_valid_after(now + datetime.timedelta(days=days_to))
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("taskgrid:role=client")]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    if tamper:
        der[-3] ^= 0x01  # inside the signature value
    pem = x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem, key_pem


def test_refused_certificates_say_exactly_why(tmp_path: pathlib.Path) -> None:
    """Expired, not yet valid, another CA, a forged signature: each refusal
    names the certificate and the reason, not just "verify failed"."""
    ours = _certs(tmp_path / "ours")
    other = _certs(tmp_path / "other")
    cases = {
        "expired": dict(days_from=-3, days_to=-1),
        "future": dict(days_from=1, days_to=3),
        "forged": dict(days_from=-1, days_to=1, tamper=True),
    }
    log = tmp_path / "scheduler.log"
    with log.open("w") as err, run_scheduler(
            ["--listen", "tls://127.0.0.1:0", "--launcher", "none",
             "--tls-ca", str(ours / "ca.pem"),
             "--tls-cert", str(ours / "scheduler.pem"),
             "--tls-key", str(ours / "scheduler-key.pem")], stderr=err) as addr:
        ca = (ours / "ca.pem").read_bytes()
        for name, kw in cases.items():
            cert, key = _leaf(ours, tmp_path / name, **kw)  # type: ignore[arg-type]
            assert _status(addr, grpc.ssl_channel_credentials(ca, key, cert)) == \
                grpc.StatusCode.UNAVAILABLE
        assert _status(addr, grpc.ssl_channel_credentials(
            ca, (other / "client-key.pem").read_bytes(),
            (other / "client.pem").read_bytes())) == grpc.StatusCode.UNAVAILABLE
        wanted = ["the certificate OU=client,CN=expired has expired (not after ",
                  "the certificate OU=client,CN=future is not valid yet (not before ",
                  "the certificate OU=client,CN=forged has a signature that does not verify",
                  "is not signed by the cluster CA (issuer "]
        lines = _wait_for(log, wanted)
        # The right certificates still work after the refusals.
        good = grpc.ssl_channel_credentials(ca, (ours / "client-key.pem").read_bytes(),
                                            (ours / "client.pem").read_bytes())
        with grpc.secure_channel(addr, good) as ch:
            ch.unary_unary("/taskgrid.v1.Scheduler/Status")(b"", timeout=10)
    for w in wanted:
        assert any(w in ln for ln in lines), log.read_text()
