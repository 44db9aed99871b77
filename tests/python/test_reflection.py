# SPDX-License-Identifier: Apache-2.0
"""Server reflection and health per service, with the real grpcurl over
mutual TLS, on the C scheduler and on a C worker's data service: grpcurl
lists and describes the services with no .proto files, calls Health and a
Scheduler method through reflection, and a hostile or unknown request on a
reflection stream gets an error_response while the stream goes on.

grpcurl comes from the Go module proxy (tests/setup.sh installs it); the
test is skipped, saying so, only when no grpcurl can be found."""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from conftest import BIN, ROOT, run_scheduler, stop_process

GRPCURL_VERSION = "v1.9.3"  # as tests/setup.sh installs it
WORKER_TLS_NAME = "taskgrid-worker"  # what worker certificates name
SCHEDULER_SERVICES = {
    "taskgrid.v1.Scheduler",
    "taskgrid.v1.WorkerLink",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
WORKER_SERVICES = {
    "taskgrid.v1.DataService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
REFLECTION_V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def _find_grpcurl() -> str | None:
    exe = os.environ.get("GRPCURL") or shutil.which("grpcurl")
    if exe:
        return exe
    go = shutil.which("go")
    if go is None:
        return None
    for var in ("GOBIN", "GOPATH"):
        d = subprocess.run([go, "env", var], capture_output=True, text=True,
                           check=False).stdout.strip()
        if d:
            p = pathlib.Path(d) / ("grpcurl" if var == "GOBIN" else "bin/grpcurl")
            if p.is_file():
                return str(p)
    return None


@pytest.fixture(scope="module")
def grpcurl() -> str:
    exe = _find_grpcurl()
    if exe is None:
        pytest.skip("grpcurl is not installed and could not be: tests/setup.sh "
                    "installs it with 'go install github.com/fullstorydev/"
                    f"grpcurl/cmd/grpcurl@{GRPCURL_VERSION}' (needs the Go "
                    "module proxy); or set GRPCURL=/path/to/grpcurl")
    return exe


@pytest.fixture(scope="module")
def cluster(certs: pathlib.Path) -> Iterator[tuple[str, str]]:
    """A TLS scheduler and one C worker joined to it; yields their
    addresses: (scheduler host:port, the worker's data service
    host:port)."""
    tls = ["--tls-ca", str(certs / "ca.pem")]
    with run_scheduler(["--listen", "tls://127.0.0.1:0", "--launcher", "none",
                        "--log-level", "error", *tls,
                        "--tls-cert", str(certs / "scheduler.pem"),
                        "--tls-key", str(certs / "scheduler-key.pem")]) as addr:
        worker = subprocess.Popen(
            [str(BIN / "worker" / "taskgrid-worker"), f"tls://{addr}",
             "--nthreads", "1", "--log-level", "info", *tls,
             "--tls-cert", str(certs / "worker.pem"),
             "--tls-key", str(certs / "worker-key.pem")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            data = _data_address(worker)
            # Keep reading its log, so a chatty worker never blocks on a
            # full pipe.
            assert worker.stderr is not None
            threading.Thread(target=worker.stderr.read, daemon=True).start()
            yield addr, data
        finally:
            stop_process(worker)


def _data_address(worker: subprocess.Popen[str]) -> str:
    """The advertised address from the worker's log line "data service on
    ... (advertised as HOST:PORT)", within 10 s."""
    assert worker.stderr is not None
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([worker.stderr], [], [], 0.5)
        if not ready:
            continue
        line = worker.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"data service on \S+ \(advertised as (\S+)\)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"the worker logged no data service address: {seen}")


def _run(grpcurl: str, certs: pathlib.Path, addr: str, *args: str,
         role: str = "client", server_name: str | None = None,
         data: str | None = None) -> subprocess.CompletedProcess[str]:
    """grpcurl with the cluster CA and ROLE's certificate against addr:
    flags, then addr, then args (list / describe SYMBOL / METHOD)."""
    cmd = [grpcurl, "-cacert", str(certs / "ca.pem"),
           "-cert", str(certs / f"{role}.pem"),
           "-key", str(certs / f"{role}-key.pem"), "-max-time", "20"]
    if server_name:
        cmd += ["-servername", server_name]
    if data is not None:
        cmd += ["-d", data]
    return subprocess.run([*cmd, addr, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, f"grpcurl failed ({p.returncode}): {p.stderr}"
    return p.stdout


def _rpcs(service: str) -> set[str]:
    """The rpc names of `service` in proto/taskgrid/v1/taskgrid.proto."""
    text = (ROOT / "proto" / "taskgrid" / "v1" / "taskgrid.proto").read_text()
    body = re.search(r"^service " + service + r" \{(.*?)^\}", text,
                     re.DOTALL | re.MULTILINE)
    assert body, service
    return set(re.findall(r"^\s*rpc (\w+)\(", body.group(1), re.MULTILINE))


def test_list_on_the_scheduler(grpcurl, certs, cluster):
    out = _ok(_run(grpcurl, certs, cluster[0], "list"))
    assert set(out.split()) == SCHEDULER_SERVICES


def test_describe_a_service_lists_its_methods(grpcurl, certs, cluster):
    out = _ok(_run(grpcurl, certs, cluster[0], "describe",
                   "taskgrid.v1.Scheduler"))
    assert "taskgrid.v1.Scheduler is a service:" in out
    listed = set(re.findall(r"rpc (\w+) \(", out))
    assert listed == _rpcs("Scheduler")
    assert ("rpc Submit ( .taskgrid.v1.SubmitRequest ) returns "
            "( .taskgrid.v1.SubmitResponse );") in out
    assert ("rpc Gather ( .taskgrid.v1.GatherRequest ) returns "
            "( stream .taskgrid.v1.GatherResponse );") in out


def test_describe_a_message_shows_its_fields(pb, grpcurl, certs, cluster):
    out = _ok(_run(grpcurl, certs, cluster[0], "describe",
                   "taskgrid.v1.SubmitRequest"))
    assert "taskgrid.v1.SubmitRequest is a message:" in out
    fields = pb.tg.SubmitRequest.DESCRIPTOR.fields
    assert fields
    for f in fields:
        assert re.search(rf"\b{f.name} = {f.number};", out), (f.name, out)
    assert "repeated .taskgrid.v1.TaskSpec tasks = 1;" in out
    # The .proto comments come along (the descriptors carry them).
    assert "validated as a" in out


def test_health_over_mtls(grpcurl, certs, cluster):
    for service in ["", *sorted(SCHEDULER_SERVICES)]:
        out = _ok(_run(grpcurl, certs, cluster[0], "grpc.health.v1.Health/Check",
                       data=json.dumps({"service": service})))
        assert json.loads(out) == {"status": "SERVING"}, service
    p = _run(grpcurl, certs, cluster[0], "grpc.health.v1.Health/Check",
             data='{"service": "taskgrid.v1.DataService"}')
    assert p.returncode != 0
    assert "NotFound" in p.stderr and "unknown service" in p.stderr


def test_any_cluster_certificate_may_reflect(grpcurl, certs, cluster):
    # Like Health: the scheduler's own certificate, which may call
    # nothing else, lists the services too.
    for role in ("scheduler", "admin", "worker"):
        out = _ok(_run(grpcurl, certs, cluster[0], "list", role=role))
        assert set(out.split()) == SCHEDULER_SERVICES, role


def test_a_method_called_through_reflection(grpcurl, certs, cluster):
    # grpcurl learns the message types from reflection to encode JSON.
    deadline = time.monotonic() + 10
    while True:
        out = json.loads(_ok(_run(grpcurl, certs, cluster[0],
                                  "taskgrid.v1.Scheduler/Status", data="{}")))
        if len(out.get("workers", [])) == 1:
            break
        assert time.monotonic() < deadline, f"no worker in Status: {out}"
        time.sleep(0.1)


def test_the_worker_data_service(grpcurl, certs, cluster):
    data = cluster[1]
    out = _ok(_run(grpcurl, certs, data, "list", server_name=WORKER_TLS_NAME))
    assert set(out.split()) == WORKER_SERVICES
    out = _ok(_run(grpcurl, certs, data, "describe", "taskgrid.v1.DataService",
                   server_name=WORKER_TLS_NAME))
    assert ("rpc Fetch ( .taskgrid.v1.FetchRequest ) returns "
            "( stream .taskgrid.v1.DataChunk );") in out
    for service in ("", "taskgrid.v1.DataService"):
        out = _ok(_run(grpcurl, certs, data, "grpc.health.v1.Health/Check",
                       server_name=WORKER_TLS_NAME,
                       data=json.dumps({"service": service})))
        assert json.loads(out) == {"status": "SERVING"}, service
    p = _run(grpcurl, certs, data, "grpc.health.v1.Health/Check",
             server_name=WORKER_TLS_NAME,
             data='{"service": "taskgrid.v1.Scheduler"}')
    assert p.returncode != 0 and "NotFound" in p.stderr
    # A client certificate reflects, but still may not fetch (the data
    # service's roles are unchanged).
    p = _run(grpcurl, certs, data, "taskgrid.v1.DataService/Fetch",
             server_name=WORKER_TLS_NAME, data='{"key": "x"}')
    assert p.returncode != 0 and "PermissionDenied" in p.stderr


def _json_stream(text: str) -> list[dict[str, Any]]:
    """The JSON objects grpcurl prints one after another."""
    dec, i = json.JSONDecoder(), 0
    out: list[dict[str, Any]] = []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def test_unknown_symbol_on_a_stream_that_goes_on(grpcurl, certs, cluster):
    # grpcurl drives the reflection stream itself: three requests on one
    # stream, the middle one for a symbol that does not exist.
    requests = [{"list_services": ""},
                {"file_containing_symbol": "taskgrid.v1.NoSuchMessage"},
                {"file_containing_symbol": "taskgrid.v1.SubmitRequest"}]
    out = _ok(_run(grpcurl, certs, cluster[0],
                   "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                   data="".join(json.dumps(r) for r in requests)))
    answers = _json_stream(out)
    assert len(answers) == 3
    assert {s["name"] for s in answers[0]["listServicesResponse"]["service"]} \
        == SCHEDULER_SERVICES
    err = answers[1]["errorResponse"]
    assert err["errorCode"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no symbol 'taskgrid.v1.NoSuchMessage'" in err["errorMessage"]
    assert answers[1]["originalRequest"]["fileContainingSymbol"] == \
        "taskgrid.v1.NoSuchMessage"
    assert len(answers[2]["fileDescriptorResponse"]["fileDescriptorProto"]) == 1


@pytest.fixture(scope="module")
def refl_pb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """grpc.reflection.v1 message classes generated from proto/ (the
    vendored .proto), to read answers to raw requests."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("refl_stubs")
    proto = ROOT / "proto" / "grpc" / "reflection" / "v1" / "reflection.proto"
    assert protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
                        str(proto)]) == 0
    # Loaded by path: the module name grpc.reflection... is the grpc
    # package's.
    path = out / "grpc" / "reflection" / "v1" / "reflection_pb2.py"
    spec = importlib.util.spec_from_file_location("tg_reflection_v1_pb2", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hostile_bytes_get_error_responses(refl_pb, certs, cluster):
    """Raw bytes no stock client would send, on one stream (v1, then the
    same on v1alpha): each gets an error_response naming the problem,
    and a good request after them is still answered."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "client-key.pem").read_bytes(),
        certificate_chain=(certs / "client.pem").read_bytes())
    hostile = [
        (b"\x22\xff", grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
        (b"\x20\x01", grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
        (b"\x22\x02\xc3\x28", grpc.StatusCode.INVALID_ARGUMENT, "UTF-8"),
        (b"", grpc.StatusCode.INVALID_ARGUMENT, "asks nothing"),
        (b"\x3a\x00\x22\x01x", grpc.StatusCode.INVALID_ARGUMENT, "more than one"),
        (b"\x22\x80\x80\x05" + b"a" * 81920, grpc.StatusCode.RESOURCE_EXHAUSTED,
         "over the limit"),
        (b"\x22\x0b\x01\x02bad\x1b[0m..", grpc.StatusCode.NOT_FOUND,
         "no symbol '??bad?[0m..'"),
        (b"\x2a\x05\x0a\x03x.Y", grpc.StatusCode.NOT_FOUND, "no extension"),
    ]
    good = b"\x3a\x00"
    with grpc.secure_channel(cluster[0], creds) as ch:
        for method in (REFLECTION, REFLECTION_V1ALPHA):
            call = ch.stream_stream(method)(
                iter([h[0] for h in hostile] + [good]), timeout=20)
            answers = [refl_pb.ServerReflectionResponse.FromString(b)
                       for b in call]
            assert len(answers) == len(hostile) + 1, method
            for (_, code, part), a in zip(hostile, answers):
                assert a.WhichOneof("message_response") == "error_response"
                assert a.error_response.error_code == code.value[0], part
                assert part in a.error_response.error_message, \
                    a.error_response.error_message
            last = answers[-1]
            assert {s.name for s in last.list_services_response.service} == \
                SCHEDULER_SERVICES
            assert call.code() == grpc.StatusCode.OK
