# SPDX-License-Identifier: Apache-2.0
"""The scheduler's HTTP port (--dashboard-address): Prometheus /metrics
read with prometheus_client's own parser and checked against Status after
a known run; the dashboard page in a real headless Chromium (no console
errors, the workers, the task stream of a run; a screenshot kept); HTTPS
with the cluster's certificates and roles; and hostile requests."""
from __future__ import annotations

import http.client
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Iterator

import grpc
import pytest

from conftest import BIN, ROOT, run_scheduler, wait_for_workers
from conftest import wait_until as _until

parser = pytest.importorskip("prometheus_client.parser")

WORKER = str(BIN / "worker" / "taskgrid-worker")


def _get(url: str, method: str = "GET", context: ssl.SSLContext | None = None,
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _families(url: str, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    status, headers, body = _get(url + "metrics", context=context)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in parser.text_string_to_metric_families(body.decode())}


def _value(fams: dict[str, Any], family: str, sample: str | None = None,
           **labels: str) -> float:
    total = 0.0
    for s in fams[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def _key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _run(pb, stub, n: int, failing: int, sleep: bool = False) -> list[str]:
    """Submit n tasks, `failing` of them raising, and wait for them all
    (with sleep, the others sleep 20-100 ms, so their runs show)."""
    T = pb.tg.TaskSpec
    ok = "sleep" if sleep else "inc"
    keys = [_key("fail" if i < failing else ok) for i in range(n)]
    tasks = [T(key=k, func="tg.fail" if i < failing else f"tg.{ok}",
               input=json.dumps(0.02 + (i % 5) * 0.02 if sleep else i).encode(),
               codec="json")
             for i, k in enumerate(keys)]
    assert stub.Submit(pb.tg.SubmitRequest(tasks=tasks), timeout=10).accepted == n
    done = 0
    for resp in stub.Gather(pb.tg.GatherRequest(keys=keys, timeout_ms=20000), timeout=30):
        done += len(resp.results)
    assert done == n
    return keys


@pytest.fixture(scope="module")
def dash() -> Iterator[tuple[str, str]]:
    """A plaintext scheduler with 2 workers and its dashboard."""
    with run_scheduler(["--listen", "tcp://127.0.0.1:0", "--workers", "2",
                        "--nthreads", "2", "--worker-bin", WORKER,
                        "--log-level", "warn",
                        "--dashboard-address", "127.0.0.1:0"], dashboard=True) as pair:
        yield pair


def test_metrics_match_status_after_a_known_run(pb, dash):
    addr, url = dash
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    with grpc.insecure_channel(addr) as ch:
        stub = pb.tg_grpc.SchedulerStub(ch)
        wait_for_workers(pb, ch, 2)
        before = _families(url)
        _run(pb, stub, 50, 3)
        st = stub.Status(pb.tg.StatusRequest(), timeout=5)
    assert (st.memory, st.erred) == (47, 3)

    def settled():
        f = _families(url)
        return f if _value(f, "taskgrid_scheduler_rpc", "taskgrid_scheduler_rpc_total",
                           method="Status", code="OK") > _value(
            before, "taskgrid_scheduler_rpc", "taskgrid_scheduler_rpc_total",
            method="Status", code="OK") else None

    f = _until(settled, "the last Status call in /metrics")
    for state, want in [("memory", st.memory), ("erred", st.erred), ("waiting", 0),
                        ("ready", 0), ("processing", 0), ("cancelled", 0)]:
        assert _value(f, "taskgrid_scheduler_tasks", state=state) == want, state
    assert _value(f, "taskgrid_scheduler_workers") == len(st.workers) == 2
    assert _value(f, "taskgrid_scheduler_unplaceable_tasks") == st.unplaceable == 0
    # The local launcher's two processes, both running, none failed.
    launcher = {"launcher": "local"}
    assert _value(f, "taskgrid_scheduler_launcher_target", **launcher) == 2
    assert _value(f, "taskgrid_scheduler_launcher_workers", **launcher) == 2
    assert _value(f, "taskgrid_scheduler_launcher_units", state="running", **launcher) == 2
    assert _value(f, "taskgrid_scheduler_launcher_units", state="pending", **launcher) == 0
    fails = "taskgrid_scheduler_launcher_failures"
    assert _value(f, fails, fails + "_total", **launcher) == 0
    completed = "taskgrid_scheduler_tasks_completed"
    assert _value(f, completed, completed + "_total", function="tg.inc", state="memory") == 47
    assert _value(f, completed, completed + "_total", function="tg.fail", state="erred") == 3
    dur = "taskgrid_scheduler_task_duration_seconds"
    assert _value(f, dur, dur + "_count") == 50
    assert _value(f, dur, dur + "_bucket", function="tg.inc", le="+Inf") == 47
    assert _value(f, dur, dur + "_sum") >= 0
    # The RPCs this test made: one Submit, one Gather; the Status calls
    # since the first scrape (at least the one above).
    rpc = "taskgrid_scheduler_rpc"
    for method in ("Submit", "Gather"):
        grew = _value(f, rpc, rpc + "_total", method=method, code="OK") - _value(
            before, rpc, rpc + "_total", method=method, code="OK")
        assert grew == 1, method
    lat = "taskgrid_scheduler_rpc_duration_seconds"
    assert _value(f, lat, lat + "_count", method="Submit") - _value(
        before, lat, lat + "_count", method="Submit") == 1
    assert _value(f, lat, lat + "_count", method="Gather") == 0  # a stream
    # Workers as the scheduler sees them, by name.
    names = {w.name for w in st.workers}
    for fam in ("taskgrid_worker_threads", "taskgrid_worker_tasks",
                "taskgrid_worker_memory_bytes", "taskgrid_worker_spilled_bytes",
                "taskgrid_worker_rss_bytes", "taskgrid_worker_paused"):
        assert {s.labels["worker"] for s in f[fam].samples} == names, fam
    assert all(_value(f, "taskgrid_worker_threads", worker=n) == 2 for n in names)
    assert all(_value(f, "taskgrid_worker_rss_bytes", worker=n) > 0 for n in names)
    # Every family says what it is: HELP and TYPE lines.
    text = _get(url + "metrics")[2].decode()
    for name, fam in f.items():
        assert fam.documentation, name
        assert f"# TYPE {fam.name}" in text, name
    # Counts and names only: no task key in the metrics.
    assert "inc-" not in text and "fail-" not in text


def test_dashboard_json_has_the_task_stream(pb, dash):
    addr, url = dash
    with grpc.insecure_channel(addr) as ch:
        keys = _run(pb, pb.tg_grpc.SchedulerStub(ch), 20, 1)
    _until(lambda: (d := json.loads(_get(url + "api/dashboard.json")[2]))
           and set(keys) <= {r[0] for r in d["stream"]}, "the run in the task stream")
    d = json.loads(_get(url + "api/dashboard.json")[2])
    runs = {r[0]: r for r in d["stream"]}
    workers = {w["name"] for w in d["workers"]}
    for k in keys:
        key, func, worker, start, stop, erred = runs[k]
        assert func == ("tg.fail" if k.startswith("fail") else "tg.inc")
        assert worker in workers
        assert start <= stop <= 0
        assert erred == (1 if k.startswith("fail") else 0)
    inc = next(f for f in d["functions"] if f["name"] == "tg.inc")
    assert inc["memory"] >= 19 and inc["waiting"] == inc["ready"] == 0
    assert d["counts"]["erred"] >= 1
    ln = d["launcher"]
    assert (ln["kind"], ln["target"], ln["active"], ln["failures"], ln["last_error"]) == (
        "local", 2, 2, 0, "")
    assert [(u["state"], u["workers"], u["connected"]) for u in ln["units"]] == [
        ("running", 1, 1), ("running", 1, 1)]
    assert all(u["where"].startswith("pid ") for u in ln["units"])


def test_hostile_requests(pb, dash):
    addr, url = dash
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, body = _get(url + "metrics", method=method)
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
        assert b"not allowed" in body
    status, _, body = _get(url + "no/such/page")
    assert status == 404 and b"not found" in body
    status, _, body = _get(url + "metrics?x=" + "a" * 100)  # query ignored
    assert status == 200
    status, headers, body = _get(url, method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Type"].startswith("text/html")
    # A request too large for the server is refused, and it goes on serving.
    host, port = url[len("http://"):].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/" + "x" * 100000)
    assert conn.getresponse().status in (404, 414, 431)
    conn.close()
    assert _get(url + "metrics")[0] == 200

    # A worker whose name has quotes, a backslash and a newline: escaped in
    # the metrics, which still parse, and the label reads back as the name.
    evil = 'evil "w"\\\nname'
    proc = subprocess.Popen([WORKER, f"tcp://{addr}", "--name", evil, "--nthreads", "1",
                             "--log-level", "error"])
    try:
        with grpc.insecure_channel(addr) as ch:
            wait_for_workers(pb, ch, 3)
        f = _until(lambda: (f := _families(url)) and
                   evil in {s.labels["worker"] for s in f["taskgrid_worker_threads"].samples}
                   and f, "the worker in /metrics")
        assert _value(f, "taskgrid_worker_threads", worker=evil) == 1
        _until(lambda: evil in {w["name"] for w in json.loads(
            _get(url + "api/dashboard.json")[2])["workers"]}, "the worker in the JSON")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- HTTPS with the cluster's certificates ----


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(BIN / "scheduler" / "taskgrid-certs"), str(d),
                    "--hosts", "localhost,127.0.0.1"], check=True, stdout=subprocess.DEVNULL)
    return d


def _ctx(certs: pathlib.Path, role: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if role:
        ctx.load_cert_chain(str(certs / f"{role}.pem"), str(certs / f"{role}-key.pem"))
    return ctx


def test_https_and_roles(pb, certs):
    with run_scheduler(["--listen", "tls://127.0.0.1:0", "--launcher", "none",
                        "--log-level", "error",
                        "--tls-ca", str(certs / "ca.pem"),
                        "--tls-cert", str(certs / "scheduler.pem"),
                        "--tls-key", str(certs / "scheduler-key.pem"),
                        "--dashboard-address", "127.0.0.1:0"], dashboard=True) as (_, url):
        assert url.startswith("https://127.0.0.1:")
        # Metrics: any certificate of the cluster.
        for role in ("client", "worker", "admin"):
            f = _families(url, context=_ctx(certs, role))
            assert _value(f, "taskgrid_scheduler_workers") == 0
        # The page and its JSON show task keys: role admin only.
        for path in ("", "api/dashboard.json"):
            status, _, body = _get(url + path, context=_ctx(certs, "client"))
            assert status == 403, path
            assert b"needs role 'admin'" in body and b"role 'client'" in body
            status, _, body = _get(url + path, context=_ctx(certs, "admin"))
            assert status == 200, path
        # No certificate: refused, saying what is missing.
        status, _, body = _get(url + "metrics", context=_ctx(certs, None))
        assert status == 403 and b"client certificate" in body
        # Plain HTTP to the HTTPS port gets nothing.
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
            status, _, body = _get("http" + url[len("https"):] + "metrics")
            assert status != 200


def test_dashboard_is_off_by_default(pb):
    with run_scheduler(["--listen", "tcp://127.0.0.1:0", "--launcher", "none"],
                       return_pid=True) as (_, pid):
        out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        if not out:
            pytest.skip("ss cannot list listening sockets here")
        mine = [line for line in out.splitlines() if f"pid={pid}," in line]
        assert len(mine) == 1, mine  # the gRPC port only


def test_bad_dashboard_address_is_refused():
    r = subprocess.run([str(BIN / "scheduler" / "taskgrid-scheduler"), "--listen",
                        "tcp://127.0.0.1:0", "--dashboard-address", "localhost:http"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "--dashboard-address expects HOST:PORT" in r.stderr


# ---- the page in a real browser ----


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1280,1100"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service
    try:
        return webdriver.Chrome(options=opts, service=Service(driver))
    except Exception as e:  # noqa: BLE001 - any failure to start is a skip
        pytest.skip(f"headless chromium cannot start here: {e}")


def _artifacts() -> pathlib.Path:
    d = pathlib.Path(os.environ.get("TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_dashboard_page_in_chromium(pb, dash):
    addr, url = dash
    b = _browser()
    try:
        b.get(url)
        js = "return window.tgDashboard && window.tgDashboard.polls"
        _until(lambda: b.execute_script(js), "the page's first poll")
        with grpc.insecure_channel(addr) as ch:
            keys = _run(pb, pb.tg_grpc.SchedulerStub(ch), 40, 2, sleep=True)
        shown = ("const d = window.tgDashboard.last;"
                 "return d ? d.stream.map((r) => r[0]) : [];")
        _until(lambda: set(keys) <= set(b.execute_script(shown)), "the run on the page")
        rows = b.find_elements("css selector", "#workers tbody tr")
        names = [r.find_element("css selector", "td").text for r in rows]
        assert len(names) == 2 and all(n.startswith("local-") for n in names)
        # The launcher's panel: the local launcher's two running units.
        assert b.find_element("id", "launcher-section").is_displayed()
        assert "local: 2 of 2 workers, 0 failed starts" in b.find_element(
            "id", "launcher-summary").text
        units = b.find_elements("css selector", "#units tbody tr")
        assert [u.find_elements("css selector", "td")[1].text for u in units] == [
            "running", "running"]
        assert not b.find_element("id", "launcher-error").is_displayed()
        # The task stream is drawn: a chart with a bar per run shown.
        bars = b.execute_script(
            "const c = window.tgDashboard.chart; if (!c) return 0;"
            "return c.data.datasets.reduce((n, d) => n + d.data.length, 0);")
        assert bars >= len(keys)
        assert "runs" in b.find_element("id", "stream-count").text
        assert b.find_elements("css selector", "#progress .progress-row")
        assert b.find_element("id", "status").get_attribute("class") == "status"
        time.sleep(1.5)  # one more poll and redraw, for the screenshot
        shot = _artifacts() / "dashboard.png"
        b.save_screenshot(str(shot))
        assert shot.stat().st_size > 10000
        if os.environ.get("TASKGRID_UPDATE_DOCS"):  # the README's picture
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copy(shot, ROOT / "docs" / "dashboard.png")
        errors = [e for e in b.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
    finally:
        b.quit()
