"""The one adapter: log lines, request ids and errors no handler planned for."""

from __future__ import annotations

import json

import pytest

from common.api.calls import Operation
from common.api.handlers import models as model_handlers
from tests.conftest import function_client
from tests.support.fixtures import Stack
from tests.support.log_capture import Lines


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
        "cache": "miss",
        "cache_rows": {"l1": 0, "l2": 0, "miss": 1},
    }
    assert isinstance(line["latency_ms"], float)


def test_cache_statistics_are_logged_once_a_minute(
    stack: Stack, log_lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.core import logs

    monkeypatch.setattr(logs, "_next_cache_stats", 0.0)
    client = function_client("predict_risk")
    example = stack.registry.get_version("risk", "1.0.0").example
    for _ in range(3):
        client.post("/v1/predict/risk", json={"instances": [example]}, headers=stack.headers())
    (line,) = [ln for ln in log_lines.lines if ln["logger"] == "ipo.cache"]
    stats = line["cache_stats"]
    assert isinstance(stats, dict)
    assert {"l1_hit_ratio", "l2_hit_ratio", "l1_entries", "l1_bytes", "l1_evictions"} <= set(stats)


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

    monkeypatch.setitem(model_handlers.OPERATIONS, "listModels", Operation(broken))
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


@pytest.mark.parametrize(
    ("body", "echoed"),
    [
        (
            b'{"instances": [{}], "x": 123456789012345678901234567890}',
            123456789012345678901234567890,
        ),
        (b'{"instances": [{}], "\\ud800": 1}', "\ud800"),
    ],
    ids=["integer-beyond-64-bits", "lone-surrogate"],
)
def test_refused_values_orjson_cannot_write_still_get_their_422(
    stack: Stack, body: bytes, echoed: object
) -> None:
    response = function_client("predict_risk").post(
        "/v1/predict/risk",
        data=body,
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["error"]["code"] == "invalid_values"
    assert echoed in [detail.get("value") for detail in answer["error"]["details"]]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_body_not_in_utf8_is_400(stack: Stack, encoding: str) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    response = function_client("predict_risk").post(
        "/v1/predict/risk",
        data=json.dumps({"instances": [example]}).encode(encoding),
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_request"


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_key_given_twice_in_one_object_is_400(stack: Stack, protocol: str) -> None:
    """Last-one-wins is what this parser did; another in front of it may keep the first."""
    example = stack.registry.get_version("risk", "1.0.0").example
    fields = json.dumps(example)[1:-1]
    if protocol == "v1":
        path, body = "/v1/predict/risk", f'{{"instances": [{{{fields}, "sector": "finance"}}]}}'
    else:
        tensor = '{"name": "sector", "datatype": "BYTES", "shape": [1], "data": ["retail"]}'
        path, body = "/v2/models/risk/infer", f'{{"inputs": [{tensor}], "inputs": []}}'
    response = function_client("predict_risk").post(
        path, data=body, headers={**stack.headers(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    answer = response.get_json()
    error = answer["error"] if protocol == "v2" else answer["error"]["message"]
    assert "twice in one object" in error
    assert (answer["code"] if protocol == "v2" else answer["error"]["code"]) == (
        "malformed_request"
    )


@pytest.mark.parametrize(
    ("label", "status"),
    [
        ("application/x-www-form-urlencoded", 415),  # curl -d without -H
        ("text/plain", 415),
        ("application/json; charset=utf-8", 200),
        ("application/vnd.api+json", 200),
        (None, 200),
    ],
)
def test_a_body_labelled_as_anything_but_json_is_415(
    stack: Stack, label: str | None, status: int
) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    headers = stack.headers()
    if label is not None:
        headers["Content-Type"] = label
    response = function_client("predict_risk").post(
        "/v1/predict/risk", data=json.dumps({"instances": [example]}), headers=headers
    )
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 415:
        error = response.get_json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert "Content-Type: application/json" in error["message"]


def test_a_utf8_body_may_start_with_a_byte_order_mark(stack: Stack) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    response = function_client("predict_risk").post(
        "/v1/predict/risk",
        data=json.dumps({"instances": [example]}).encode("utf-8-sig"),
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 200


def test_request_lines_carry_the_cloud_trace(
    stack: Stack, log_lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.core import logs

    monkeypatch.setattr(logs, "_project", "my-project")
    function_client("list_models").get(
        "/v1/models",
        headers={
            **stack.headers(),
            "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1",
        },
    )
    (line,) = [ln for ln in log_lines.lines if ln["logger"] == "ipo.request"]
    assert line["logging.googleapis.com/trace"] == (
        "projects/my-project/traces/105445aa7843bc8bf206b12000100000"
    )
    assert line["logging.googleapis.com/spanId"] == "0000000000000001"
