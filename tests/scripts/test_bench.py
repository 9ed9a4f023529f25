"""scripts/bench.py http: its load generators against a tiny local server, its request
bodies, and one short run end to end against a real gateway."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT

FIELDS = {
    "requests",
    "duration_s",
    "requests_per_s",
    "errors",
    "errors_status",
    "errors_socket",
    "statuses",
    "latency_us",
    "client_cpu_s",
}


def _script_module(name: str) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


load = _script_module("bench_load")
scenarios = _script_module("bench_http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    bodies: list[bytes]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1; every third request is answered 500."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.bodies.append(body)
            status = 500 if len(self.server.bodies) % 3 == 0 else 200
        payload = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.bodies, httpd.lock = [], threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _target(server: _Server) -> Any:
    template = load.BodyTemplate(('{"instances":[{"x":', '},{"x":', "}]}"), ((2.5, 1e-6),) * 2)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/predict/risk"
    return load.Target(url=url, headers={"Authorization": "Bearer t"}, body=template)


def _check(result: dict[str, Any], server: _Server) -> None:
    assert set(result) == FIELDS
    # wrk stops with requests in flight: the server saw them, wrk does not count them
    assert 3 < result["requests"] <= len(server.bodies) <= result["requests"] + 2
    assert result["requests_per_s"] > 0
    assert result["errors_status"] == result["statuses"]["500"] > 0
    assert result["errors"] == result["errors_status"] + result["errors_socket"]
    assert result["statuses"]["200"] + result["statuses"]["500"] == result["requests"]
    latency = result["latency_us"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert len(set(server.bodies)) == len(server.bodies)  # every body differs
    for body in server.bodies:
        first, second = json.loads(body)["instances"]
        assert 2.5 <= first["x"] < 2.5 + 1e-6
        assert first["x"] != second["x"]


def test_python_generator_reports_requests_latency_and_errors(server: _Server) -> None:
    result = load.run_python(_target(server), concurrency=2, duration_s=0.5)
    _check(result, server)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_generator_reports_the_same_fields(server: _Server) -> None:
    result = load.run_wrk(_target(server), concurrency=2, duration_s=1)
    _check(result, server)


def test_python_generator_counts_a_refused_connection_as_an_error() -> None:
    target = load.Target(url="http://127.0.0.1:1/", headers={}, body=load.BodyTemplate(("{}",)))
    result = load.run_python(target, concurrency=1, duration_s=0.1)
    assert result["requests"] == 0
    assert result["errors"] == result["errors_socket"] > 0


def test_percentiles_are_nearest_rank() -> None:
    assert load.percentiles([float(i) for i in range(1, 101)]) == {
        "p50": 50.0,
        "p95": 95.0,
        "p99": 99.0,
    }
    assert load.percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0}


def test_uncached_bodies_perturb_the_first_float_inside_the_schema() -> None:
    examples = {
        "risk": {"sector": "retail", "age": 3, "share": 1.0, "size": 4.0},
        "ensemble": {"risk": {"sector": "retail", "age": 3, "share": 1.0, "size": 4.0}},
    }
    risk = {"properties": {"share": {"type": "number", "minimum": 0, "maximum": 1}}}
    schemas = {"risk": risk, "ensemble": {"properties": {"risk": {"type": "object"}}}}
    single = scenarios.body_template(scenarios.SCENARIOS["risk-1"], examples, schemas)
    assert single.slots == ((1.0, -1e-6),)  # at its maximum: perturbed downwards
    assert json.loads(single.parts[0] + "0.5" + single.parts[1]) == {
        "instances": [{"sector": "retail", "age": 3, "share": 0.5, "size": 4.0}]
    }
    assert len(scenarios.body_template(scenarios.SCENARIOS["risk-100"], examples, schemas).slots)
    hit = scenarios.body_template(scenarios.SCENARIOS["risk-hit"], examples, schemas)
    assert hit.slots == ()
    nested = scenarios.body_template(scenarios.SCENARIOS["ensemble-1"], examples, schemas)
    assert nested.slots == ((1.0, -1e-6),)
    assert '"risk":{"sector":"retail","age":3,"share":' in nested.parts[0]


@pytest.mark.gateway
def test_http_benchmark_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "b"
    done = subprocess.run(
        [
            sys.executable,
            "scripts/bench.py",
            "http",
            "--duration",
            "1",
            "--concurrency",
            "1",
            "--scenarios",
            "risk-1",
            "--generator",
            "python",
            "--cold-starts",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert out.with_suffix(".md").read_text() == done.stdout
    report = json.loads(out.with_suffix(".json").read_text())
    (run,) = report["runs"]
    assert (run["scenario"], run["concurrency"]) == ("risk-1", 1)
    assert run["requests"] > 0
    assert run["requests_per_s"] > 0
    assert run["errors"] == 0
    assert run["server_cpu_ms_per_request"] > 0
    assert report["cold_start_ms"] > 0
    assert report["function_cold_start_ms"] > 0
    assert report["generator"]["name"] == "python"
    assert [row["model"] for row in report["floor"]] == ["risk"]
    assert report["floor"][0]["batch_1_ms_per_instance"] > 0
    assert "| risk-1 | 1 |" in done.stdout


@pytest.mark.gateway
def test_cold_benchmark_end_to_end(tmp_path: Path) -> None:
    """predict_risk alone from its unpacked archive, the gateway, and the archives' sizes."""
    out = tmp_path / "c"
    done = subprocess.run(
        [sys.executable, "scripts/bench.py", "cold", "--cold-starts", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.with_suffix(".md").read_text() == done.stdout
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["function_cold_start_ms"] > 0
    assert report["cold_start_ms"] > 0
    sizes = {row["function"]: row for row in report["archives"]}
    whole = sizes.pop("(all of requirements.txt)")
    assert set(sizes) == {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}
    risk, scan = sizes["predict_risk"], sizes["drift_scan"]  # the scan also has matplotlib
    assert 0 < risk["installed_bytes"] < scan["installed_bytes"] < whole["installed_bytes"]
    assert risk["requirements"] < scan["requirements"] < whole["requirements"]
    assert "`predict_risk` alone" in done.stdout
