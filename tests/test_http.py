"""The one adapter: log lines, request ids and errors no handler planned for."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from common import api
from common.http import Operation
from common.logs import JsonFormatter
from tests.conftest import function_client
from tests.fixtures import Stack


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("ipo")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def test_one_structured_line_per_request(stack: Stack, log_lines: Lines) -> None:
    client = function_client("predict_risk")
    example = stack.registry.get_version("risk", "1.0.0").example
    client.post(
        "/v1/predict/risk",
        json={"instances": [example]},
        headers={**stack.headers(subject="analyst-9"), "X-Request-Id": "req-42"},
    )
    requests_logged = [line for line in log_lines.lines if line["logger"] == "ipo.request"]
    assert len(requests_logged) == 1
    (line,) = requests_logged
    assert line["severity"] == "INFO"
    assert line["request_id"] == "req-42"
    assert line["principal"] == "analyst-9"
    assert line["function"] == "predict_risk"
    assert line["httpRequest"]["status"] == 200  # type: ignore[index]
    assert line["labels"] == {  # type: ignore[comparison-overlap]
        "operation": "predictRisk",
        "model_id": "risk",
        "model_version": "1.0.0",
        "variant": "production",
        "instances": 1,
    }
    assert isinstance(line["latency_ms"], float)


def test_client_errors_log_a_warning_with_their_code(stack: Stack, log_lines: Lines) -> None:
    function_client("predict_risk").post("/v1/predict/risk", json={"instances": []})
    (line,) = [ln for ln in log_lines.lines if ln["logger"] == "ipo.request"]
    assert line["severity"] == "WARNING"
    assert line["labels"]["error_code"] == "unauthenticated"  # type: ignore[index]


def test_an_unplanned_failure_is_500_without_a_traceback(
    stack: Stack, log_lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_call: object) -> object:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setitem(api.OPERATIONS, "listModels", Operation(broken))
    response = function_client("list_models").get("/v1/models", headers=stack.headers())
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert "secret internals" not in text
    logged = [ln for ln in log_lines.lines if ln.get("stack_trace")]
    assert logged
    assert "RuntimeError" in str(logged[0]["stack_trace"])
    assert logged[0]["request_id"] == body["request_id"]


@pytest.mark.parametrize("given", ["", "x" * 129, "has space", "semi;colon"])
def test_unusable_request_ids_are_replaced(stack: Stack, given: str) -> None:
    response = function_client("list_models").get(
        "/v1/models", headers={**stack.headers(), "X-Request-Id": given}
    )
    assert response.headers["X-Request-Id"] != given
    assert len(response.headers["X-Request-Id"]) == 32
