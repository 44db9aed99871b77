# SPDX-License-Identifier: Apache-2.0
"""Mutual TLS: Security objects, a TLS scheduler, a Python worker and a
Prefect flow with client_kwargs={"security": ...} (the seeds' pattern)."""
from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
import subprocess
import sys
from typing import Iterator

import pytest
from prefect import flow, task

import taskgrid
from taskgrid.prefect import TaskgridTaskRunner

HERE = pathlib.Path(__file__).resolve().parent


def _certificates(d: pathlib.Path) -> dict:
    """A cluster CA and certificates for the scheduler, a worker, a client,
    plus a certificate from an unrelated CA. Roles ride in a URI SAN
    `taskgrid:role=NAME`, as the scheduler expects."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key, cert) -> tuple[str, str]:
        kp, cp = d / f"{stem}.key", d / f"{stem}.pem"
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(cp), str(kp)

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(ca_key, ca_cert, cn: str, role: str):
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.UniformResourceIdentifier(f"taskgrid:role={role}"),
               x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        if role == "worker":
            # The name other workers verify when they fetch from it.
            san.append(x509.DNSName("taskgrid-worker"))
        cert = (x509.CertificateBuilder().subject_name(name(cn))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("taskgrid test CA")
    out = {"ca": write("ca", ca_key, ca_cert)[0]}
    for role in ("scheduler", "worker", "client"):
        out[role] = write(role, *leaf(ca_key, ca_cert, f"taskgrid {role}", role))
    other_key, other_cert = ca("someone else's CA")
    out["stranger"] = write("stranger", *leaf(other_key, other_cert, "stranger", "client"))
    return out


@pytest.fixture(scope="module")
def tls_cluster(binaries, tmp_path_factory) -> Iterator[tuple[str, dict]]:
    certs = _certificates(tmp_path_factory.mktemp("certs"))
    scheduler = subprocess.Popen(
        [binaries[0], "--listen", "tls://127.0.0.1:0", "--launcher", "none",
         "--log-level", "warn", "--tls-ca", certs["ca"],
         "--tls-cert", certs["scheduler"][0], "--tls-key", certs["scheduler"][1]],
        stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        address = scheduler.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert address.startswith("tls://"), address
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE)] + sys.path))
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskgrid.worker", address, "--nthreads", "2",
             "--log-level", "warn", "--tls-ca", certs["ca"],
             "--tls-cert", certs["worker"][0], "--tls-key", certs["worker"][1]], env=env)
        security = taskgrid.Security(ca=certs["ca"], cert=certs["client"][0],
                                     key=certs["client"][1])
        with taskgrid.Client(address, security=security, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=30)
        yield address, certs
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(15)
        scheduler.terminate()
        scheduler.wait(15)


def nested_double(x):
    client = taskgrid.get_client()  # the worker's credentials
    return client.submit(lambda y: 2 * y, x).result(10)


def test_security_objects_from_other_libraries() -> None:
    class DaskLike:
        tls_ca_file, tls_client_cert, tls_client_key = "ca.pem", "c.pem", "k.pem"

    class GatewayLike:
        tls_cert, tls_key = "c.pem", "k.pem"

    assert taskgrid.Security.coerce(DaskLike()) == taskgrid.Security("ca.pem", "c.pem", "k.pem")
    assert taskgrid.Security.coerce(GatewayLike()) == taskgrid.Security(None, "c.pem", "k.pem")
    assert taskgrid.Security.coerce({"ca": "x"}) == taskgrid.Security(ca="x")
    with pytest.raises(TypeError, match="taskgrid.Security"):
        taskgrid.Security.coerce(object())


def test_mutual_tls_client_worker_and_nested_work(tls_cluster) -> None:
    address, certs = tls_cluster
    security = taskgrid.Security(ca=certs["ca"], cert=certs["client"][0], key=certs["client"][1])
    with taskgrid.Client(address, security=security, set_as_default=False) as c:
        assert c.submit(nested_double, 21, pure=False).result(20) == 42
        assert c.submit("tg.inc", 1).result(10) == 2


def test_tls_refusals_are_clear(tls_cluster) -> None:
    address, certs = tls_cluster
    with pytest.raises(ValueError, match="TLS address"):
        taskgrid.Client(address)
    stranger = taskgrid.Security(ca=certs["ca"], cert=certs["stranger"][0],
                                 key=certs["stranger"][1])
    with pytest.raises(taskgrid.SchedulerError, match="cannot reach"):
        taskgrid.Client(address, security=stranger, timeout=3)


@task
def double(x):
    return 2 * x


def test_prefect_flow_with_client_kwargs_security(tls_cluster) -> None:
    address, certs = tls_cluster
    security = taskgrid.Security(ca=certs["ca"], cert=certs["client"][0], key=certs["client"][1])

    @flow(task_runner=TaskgridTaskRunner(address=address, client_kwargs={"security": security}))
    def secure_flow():
        return double.submit(double.submit(5)).result()

    assert secure_flow() == 20
