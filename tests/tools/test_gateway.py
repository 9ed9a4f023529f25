"""The running local gateway: gunicorn serving every function, as `make run` starts it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from common.backends.local_artifacts import LocalArtifactStore
from tests.conftest import ROOT
from tests.support.fixtures import SIGNING_KEY
from tests.support.gateway_process import IPOCTL, Gateway, running_gateway, script_token

pytestmark = pytest.mark.gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gateway"), models="risk") as started:
        yield started


def test_health(gateway: Gateway) -> None:
    response = requests.get(f"{gateway.base}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_printed_curl_works_as_printed(gateway: Gateway) -> None:
    (line,) = [ln for ln in gateway.banner().splitlines() if ln.startswith("curl ")]
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
    body = json.loads(result.stdout)
    assert body["model_id"] == "risk"
    assert body["model_version"] == "1.0.0"
    assert body["predictions"][0]["risk_class"] in {"low", "medium", "high"}


def test_token_script_prints_only_a_token(gateway: Gateway) -> None:
    token = script_token(gateway, "model:read")
    assert token.count(".") == 2
    assert "\n" not in token


def test_discover_then_predict(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {script_token(gateway)}"}
    detail = requests.get(f"{gateway.base}/v1/models/risk", headers=headers, timeout=5)
    assert detail.status_code == 200
    example = detail.json()["production"]["example"]
    predicted = requests.post(
        f"{gateway.base}/v1/predict/risk", json={"instances": [example]}, headers=headers, timeout=5
    )
    assert predicted.status_code == 200
    assert predicted.headers["X-Request-Id"] == predicted.json()["request_id"]
    listed = requests.get(f"{gateway.base}/v1/models", headers=headers, timeout=5)
    assert [m["model_id"] for m in listed.json()["models"]] == ["risk"]


def test_unknown_route_is_404_in_the_error_shape(gateway: Gateway) -> None:
    response = requests.get(f"{gateway.base}/v2/nothing", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["X-Request-Id"] == response.json()["request_id"]


def test_a_path_the_url_rules_cannot_match_is_404_in_the_error_shape(gateway: Gateway) -> None:
    response = requests.get(f"{gateway.base}/v1/models/risk%0Ax", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["X-Request-Id"] == response.json()["request_id"]


def test_no_token_is_401(gateway: Gateway) -> None:
    response = requests.post(f"{gateway.base}/v1/predict/risk", json={"instances": [{}]}, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_oversized_body_is_413(gateway: Gateway) -> None:
    headers = {
        "Authorization": f"Bearer {script_token(gateway)}",
        "Content-Type": "application/json",
    }
    response = requests.post(
        f"{gateway.base}/v1/predict/risk",
        data=b" " * (10 * 1024 * 1024 + 1),
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_the_signing_secret_was_created_privately(gateway: Gateway) -> None:
    env_file = Path(gateway.environ["IPO_ENV_FILE"])
    assert env_file.stat().st_mode & 0o077 == 0
    assert "IPO_SECRET_JWT_SIGNING_KEY=" in env_file.read_text()
    assert SIGNING_KEY not in env_file.read_text()


def test_health_carries_a_request_id(gateway: Gateway) -> None:
    assert requests.get(f"{gateway.base}/healthz", timeout=5).headers["X-Request-Id"]


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405_in_the_error_shape(gateway: Gateway, method: str) -> None:
    response = requests.request(method, f"{gateway.base}/v1/models", timeout=5)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.headers["X-Request-Id"] == response.json()["request_id"]


def test_head_is_get_without_a_body(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {script_token(gateway)}"}
    response = requests.head(f"{gateway.base}/v1/models/risk", headers=headers, timeout=5)
    assert response.status_code == 200
    assert response.content == b""


def test_ipoctl_against_the_running_gateway(gateway: Gateway) -> None:
    environ = {**gateway.environ, "IPOCTL_URL": gateway.base, "IPOCTL_TOKEN": script_token(gateway)}

    def ipoctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(IPOCTL), *args],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = ipoctl("--json", "models")
    assert listed.returncode == 0, listed.stderr
    assert [m["model_id"] for m in json.loads(listed.stdout)["models"]] == ["risk"]
    refused = ipoctl("promote", "risk", "1.0.0")
    assert refused.returncode == 1
    assert "already in production" in refused.stderr
    history = ipoctl("history", "risk")
    assert history.returncode == 0
    assert "promote" in history.stdout


def test_reports_follow_no_symbolic_link_out_of_the_reports_folder(
    gateway: Gateway, tmp_path: Path
) -> None:
    env_file = Path(gateway.environ["IPO_ENV_FILE"])
    outside = tmp_path / "outside.html"
    outside.write_text("<p>outside-the-artifact-folder</p>")
    artifacts = Path(gateway.environ["IPO_DATA_DIR"]) / "artifacts"
    LocalArtifactStore(artifacts).put("reports/drift/normal.html", b"<p>a real report</p>")
    drift = artifacts / "reports" / "drift"
    (drift / "env.html").symlink_to(env_file)
    (drift / "outside.html").symlink_to(outside)
    (drift / "loop.html").symlink_to(drift / "loop.html")
    secret_line = env_file.read_text().splitlines()[0]
    for name in ("env", "outside", "loop"):
        response = requests.get(f"{gateway.base}/reports/drift/{name}.html", timeout=5)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"
        assert secret_line.split("=", 1)[1] not in response.text
        assert "outside-the-artifact-folder" not in response.text
    served = requests.get(f"{gateway.base}/reports/drift/normal.html", timeout=5)
    assert served.status_code == 200
    assert served.text == "<p>a real report</p>"
