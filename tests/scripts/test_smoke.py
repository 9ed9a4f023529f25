"""scripts/smoke.py, run as Cloud Build runs it: a subprocess with the standard library only
(``-I -S``: no project, no site-packages), against the real local gateway."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest

from common.api.routes import all_routes, served_models
from common.backends.env_secrets import EnvSecretSource
from common.core.config import Settings
from common.security.auth import issue_token
from tests.conftest import ROOT
from tests.support.gateway_process import Gateway, free_port, running_gateway

SCRIPT = ROOT / "scripts" / "smoke.py"
MODELS = served_models()
CONTROL = f"deployments:{MODELS[0]}"
CHECKS = ["health", *(f"predict:{m}" for m in MODELS), CONTROL]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scripts_smoke", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Every model trained, registered and in production, as after `make run`."""
    environ = {
        "IPO_SECRET_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
        "IPO_SECRET_AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
    }
    with running_gateway(
        tmp_path_factory.mktemp("smoke"), models=None, extra_environ=environ
    ) as started:
        yield started


def token(gateway: Gateway, *permissions: str) -> str:
    return issue_token(
        Settings.from_environ(gateway.environ),
        EnvSecretSource(env_file=None, environ=gateway.environ),
        subject="smoke-test",
        permissions=permissions,
        ttl_s=600,
    )


def deploy_token(gateway: Gateway) -> str:
    return token(gateway, "model:read", "model:*:predict", "experiment:read")


def smoke(
    *args: str, environ: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The script in an isolated interpreter, from a folder outside the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IPO_", "PYTHON"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), *args],
        cwd="/",
        env={**env, **(environ or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lines(stdout: str, verdict: str) -> dict[str, str]:
    """Check name to its whole line, for the lines with that verdict."""
    return {ln.split()[1]: ln for ln in stdout.splitlines() if ln.startswith(f"{verdict}  ")}


@pytest.mark.gateway
def test_a_healthy_deployment_passes_every_check(gateway: Gateway) -> None:
    result = smoke("--url", gateway.base, environ={"SMOKE_TOKEN": deploy_token(gateway)})
    assert result.returncode == 0, result.stdout + result.stderr
    passed = lines(result.stdout, "PASS")
    assert list(passed) == CHECKS
    assert not lines(result.stdout, "FAIL")
    for line in passed.values():
        verdict, _check, status, ms, unit, *_ = line.split()
        assert (verdict, status, unit) == ("PASS", "200", "ms")
        assert float(ms) >= 0
    assert "ensemble 1.0.0" in passed["health"]
    assert "risk_class=" in passed["predict:risk"]
    assert "value_per_share=" in passed["predict:ensemble"]
    assert "newest succeeded: promote to 1.0.0" in passed[CONTROL]
    assert result.stdout.rstrip().endswith(
        f"all {len(CHECKS)} checks passed against {gateway.base}"
    )


@pytest.mark.gateway
def test_a_token_that_may_not_predict_fails_each_prediction_with_403(gateway: Gateway) -> None:
    result = smoke("--url", gateway.base, "--token", token(gateway, "model:read"))
    assert result.returncode == 1, result.stdout + result.stderr
    failed = lines(result.stdout, "FAIL")
    assert list(failed) == [f"predict:{m}" for m in MODELS]
    for model_id, line in zip(MODELS, failed.values(), strict=True):
        assert line.split()[2] == "403"
        assert f"forbidden: principal 'smoke-test' lacks permission 'model:{model_id}:predict'" in (
            line
        )
    assert list(lines(result.stdout, "PASS")) == ["health", CONTROL]
    assert f"{len(MODELS)} of {len(CHECKS)} checks failed" in result.stdout


@pytest.mark.gateway
def test_json_lists_every_check(gateway: Gateway, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(deploy_token(gateway) + "\n")
    result = smoke("--url", gateway.base + "/", "--token-file", str(token_file), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["passed"] is True
    assert summary["skipped"] == []
    assert [c["check"] for c in summary["checks"]] == CHECKS
    assert all(c["passed"] and c["status"] == 200 and c["error"] is None for c in summary["checks"])


@pytest.mark.gateway
def test_json_carries_the_error_body(gateway: Gateway) -> None:
    result = smoke("--url", gateway.base, "--token", token(gateway, "model:read"), "--json")
    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert list(checks) == CHECKS
    risk = checks["predict:risk"]
    assert (risk["passed"], risk["status"], risk["error"]["code"]) == (False, 403, "forbidden")
    assert risk["error"]["request_id"].startswith("smoke-")


@pytest.mark.gateway
def test_a_bad_token_stops_after_the_health_check(gateway: Gateway) -> None:
    result = smoke("--url", gateway.base, "--token", "not-a-token", "--retries", "3")
    assert result.returncode == 1
    assert list(lines(result.stdout, "FAIL")) == ["health"]
    assert "401" in result.stdout
    assert "unauthenticated" in result.stdout
    assert "attempt" not in result.stderr  # a 401 is not retried
    assert f"{len(CHECKS) - 1} other checks were not run" in result.stderr


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        ((), {}, "no token: pass --token or --token-file, or set $SMOKE_TOKEN"),
        ((), {"SMOKE_TOKEN": " "}, "$SMOKE_TOKEN is empty"),
        (("--token-file", "/nonexistent/token"), {}, "cannot read --token-file"),
        (("--token", "t", "--retries", "-1"), {}, "--retries"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], environ: dict[str, str], message: str) -> None:
    result = smoke("--url", "http://127.0.0.1:9", *args, environ=environ)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_no_url_or_a_wrong_scheme_exits_2() -> None:
    assert smoke("--token", "t").returncode == 2
    wrong = smoke("--url", "ftp://gateway", "--token", "t")
    assert wrong.returncode == 2
    assert "must start with https:// or http://" in wrong.stderr


def test_help_names_the_permissions_the_token_needs() -> None:
    result = smoke("--help")
    assert result.returncode == 0
    assert "model:read and model:*:predict" in " ".join(result.stdout.split())


@pytest.mark.parametrize("as_json", [False, True])
def test_nothing_listening_fails_quickly(as_json: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = smoke(
        "--url", url, "--token", "t", "--retries", "1", "--retry-wait", "0",
        *(["--json"] if as_json else []),
        timeout=30,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert f"cannot reach {url}: connection refused" in result.stderr
    assert "health attempt 1/2" in result.stderr
    if as_json:
        summary = json.loads(result.stdout)
        assert [c["check"] for c in summary["checks"]] == ["health"]
        assert summary["checks"][0]["status"] is None
        assert summary["skipped"] == CHECKS[1:]
    else:
        (line,) = lines(result.stdout, "FAIL").values()
        assert line.split()[1:3] == ["health", "-"]
        assert "after 2 attempts" in line
        assert "connection refused" in line
        assert not lines(result.stdout, "PASS")


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A gateway whose backend is still starting: 503 in the platform's error shape."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(
            {
                "error": {"code": "unavailable", "message": "still starting", "details": []},
                "request_id": self.headers["X-Request-Id"],
            }
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_health_is_retried_while_unavailable_and_shows_the_error_body() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = smoke("--url", url, "--token", "t", "--retries", "2", "--retry-wait", "0")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert _Unavailable.hits == 3
    (line,) = lines(result.stdout, "FAIL").values()
    assert line.split()[2] == "503"
    assert "after 3 attempts" in line
    assert "GET /v1/models: HTTP 503 unavailable: still starting (request id smoke-" in line


def test_the_script_follows_the_spec_and_the_model_list() -> None:
    """The script cannot parse common/api/openapi.yaml (no PyYAML in a bare image): it finds
    the prediction routes with a pattern, which must agree with the spec's own reading; its
    other routes and permissions are kept in step here."""
    script = load_script()
    assert script.MODELS == MODELS
    assert set(script.OUTPUTS) <= set(MODELS)
    routes = {(r.method, r.path): r.permission for r in all_routes()}
    assert routes[("GET", script.MODELS_PATH)] == "model:read"
    assert routes[("GET", script.model_path("{model_id}"))] == "model:read"
    assert routes[("GET", script.deployments_path("{model_id}"))] == "model:read"
    for model_id in MODELS:
        assert routes[("POST", script.predict_path(model_id))] == f"model:{model_id}:predict"


def test_a_model_without_checks_of_its_own_needs_a_non_empty_prediction() -> None:
    """A model added to the spec is smoke-tested before smoke_answers.py knows its fields."""
    script = load_script()
    assert script.any_output({"score": 0.5, "label": "x"}) == "fields label, score"
    with pytest.raises(script.CheckFailed, match="empty object"):
        script.any_output({})
