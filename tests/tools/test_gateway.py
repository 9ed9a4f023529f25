"""The running local gateway: gunicorn serving every function, as `make run` starts it."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from common.backends.local_artifacts import LocalArtifactStore
from tests.conftest import ROOT
from tests.support.fixtures import SIGNING_KEY
from tests.support.gateway_process import IPOCTL, Gateway, running_gateway, script_token
from tools.gateway_worker import errors_of_request_line

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


def test_printed_export_line_points_ipoctl_at_the_gateway(gateway: Gateway) -> None:
    """The gateway listens on a port other than ipoctl's default; the banner says where."""
    (line,) = [ln for ln in gateway.banner().splitlines() if "export " in ln]
    export = line[line.index("export ") :]
    assert export == f"export IPOCTL_URL={gateway.base}"
    environ = {**gateway.environ, "IPOCTL_TOKEN": script_token(gateway, "model:read")}
    environ.pop("IPOCTL_URL", None)
    result = subprocess.run(
        ["bash", "-c", f"{export}; {IPOCTL} models"],
        capture_output=True,
        text=True,
        timeout=30,
        env=environ,
    )
    assert result.returncode == 0, result.stderr
    assert "risk" in result.stdout


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
    response = requests.get(f"{gateway.base}/v3/nothing", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["X-Request-Id"] == response.json()["request_id"]
    protocol = requests.get(f"{gateway.base}/v2/nothing", timeout=5)  # the v2 error shape
    assert (protocol.status_code, protocol.json()["code"]) == (404, "not_found")
    assert protocol.json()["error"] == "no operation at GET /v2/nothing"


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


def raw_exchange(gateway: Gateway, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes and read the answer until the server closes."""
    host, port = gateway.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        # refused before everything was sent: the answer is waiting all the same
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(request)
        received = b""
        # closing with unread bytes resets the connection after the answer was sent
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


HUGE_TOKEN = "Bearer " + "a" * 100_000


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(
            f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: {HUGE_TOKEN}\r\n\r\n".encode(),
            431,
            "header_fields_too_large",
            id="100 KB token",
        ),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n",
            431,
            "header_fields_too_large",
            id="64 KiB header",
        ),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
            + b"\r\n",
            431,
            "header_fields_too_large",
            id="300 headers",
        ),
        pytest.param(
            b"GET /v1/models?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
            id="long request line",
        ),
        pytest.param(
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
            400,
            "malformed_request",
            id="malformed header name",
        ),
    ],
)
def test_what_gunicorn_refuses_is_answered_in_the_error_shape(
    gateway: Gateway, request_bytes: bytes, status: int, code: str
) -> None:
    got, headers, body = raw_exchange(gateway, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    payload = json.loads(body)
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    assert payload["request_id"] == headers["x-request-id"]
    assert "<html" not in body.decode()
    assert "a" * 64 not in body.decode()  # the token is not echoed (a request id may hold "aaaa")


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(
            b"POST /v2/models/risk/infer?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
            id="long request line",
        ),
        pytest.param(
            f"GET /v2 HTTP/1.1\r\nHost: x\r\nAuthorization: {HUGE_TOKEN}\r\n\r\n".encode(),
            431,
            "header_fields_too_large",
            id="100 KB token",
        ),
        pytest.param(
            b"GET /v2/models/risk HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
            + b"\r\n",
            431,
            "header_fields_too_large",
            id="300 headers",
        ),
    ],
)
def test_what_gunicorn_refuses_on_a_v2_path_has_the_protocol_s_error_shape(
    gateway: Gateway, request_bytes: bytes, status: int, code: str
) -> None:
    got, headers, body = raw_exchange(gateway, request_bytes)
    assert got == status
    payload = json.loads(body)
    assert isinstance(payload["error"], str)  # the protocol's shape: the message itself
    assert (payload["code"], payload["request_id"]) == (code, headers["x-request-id"])
    assert "a" * 64 not in body.decode()


@pytest.mark.parametrize(
    ("head", "errors"),
    [
        (b"GET /v2/models/risk HTTP/1.1", "oip"),
        (b"GET /v2?x=1", "oip"),
        (b"\r\nPOST http://127.0.0.1/v2/models/risk/infer HTTP/1.1", "oip"),
        (b"GET /%762/models HTTP/1.1", "oip"),  # Flask decodes it to /v2/models
        (b"GET /v1/models HTTP/1.1", "platform"),
        (b"GET /v2x HTTP/1.1", "platform"),
        (b"GET /v2", "platform"),  # cut short: /v2 or /v2x...
        (b"GET", "platform"),
    ],
)
def test_a_refusal_s_error_shape_is_read_from_its_request_line(head: bytes, errors: str) -> None:
    assert errors_of_request_line(head) == errors


def test_after_a_refusal_the_gateway_still_serves(gateway: Gateway) -> None:
    raw_exchange(gateway, b"GET /" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert requests.get(f"{gateway.base}/healthz", timeout=5).status_code == 200
    assert "a" * 64 not in gateway.banner()  # the log names no request bytes
