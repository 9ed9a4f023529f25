"""predict_risk through functions-framework: what a caller sees, success and every error."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import function_client
from tests.support.fixtures import Stack

URL = "/v1/predict/risk"


def example(stack: Stack) -> dict[str, Any]:
    return dict(stack.registry.get_version("risk", "1.0.0").example)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_prediction_has_the_contract_shape(predict_risk_client: FlaskClient, stack: Stack) -> None:
    response = predict_risk_client.post(
        URL, json={"instances": [example(stack)]}, headers=stack.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {
        "predictions",
        "model_id",
        "model_version",
        "variant",
        "experiment_id",
        "exposure_id",
        "request_id",
    }
    assert body["model_id"] == "risk"
    assert body["model_version"] == "1.0.0"
    assert body["variant"] == "production"
    assert body["experiment_id"] is None
    assert body["request_id"] == response.headers["X-Request-Id"]
    (prediction,) = body["predictions"]
    probabilities = prediction["probabilities"]
    assert set(probabilities) == {"low", "medium", "high"}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction["risk_class"] == max(probabilities, key=probabilities.get)
    assert 0 <= prediction["risk_score"] <= 100


def test_request_id_is_echoed(predict_risk_client: FlaskClient, stack: Stack) -> None:
    headers = {**stack.headers(), "X-Request-Id": "abc-123"}
    response = predict_risk_client.post(URL, json={"instances": [example(stack)]}, headers=headers)
    assert response.headers["X-Request-Id"] == "abc-123"
    assert response.get_json()["request_id"] == "abc-123"


def test_batch_of_a_thousand_equals_one_by_one(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    from tests.support.fixtures import SEED
    from tools.training import synthetic

    rows = synthetic.generate(1000, SEED + 1).rows()
    batch = predict_risk_client.post(URL, json={"instances": rows}, headers=stack.headers())
    assert batch.status_code == 200
    predictions = batch.get_json()["predictions"]
    assert len(predictions) == 1000
    for index in (0, 17, 999):
        single = predict_risk_client.post(
            URL, json={"instances": [rows[index]]}, headers=stack.headers()
        )
        assert single.get_json()["predictions"][0] == predictions[index]


def test_malformed_json_is_400(predict_risk_client: FlaskClient, stack: Stack) -> None:
    response = predict_risk_client.post(
        URL,
        data=b'{"instances": [',
        headers={**stack.headers(), "Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_request")


def test_integer_beyond_the_parser_limit_is_400(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    body = '{"instances": [{"revenue_musd": 1' + "0" * 5000 + "}]}"
    response = predict_risk_client.post(
        URL, data=body, headers={**stack.headers(), "Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_request")


def test_empty_body_is_400(predict_risk_client: FlaskClient, stack: Stack) -> None:
    assert_error(predict_risk_client.post(URL, headers=stack.headers()), 400, "malformed_request")


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"revenue_musd": -1.0}, "instances[0].revenue_musd", "greater_than_equal"),
        ({"revenue_musd": "100"}, "instances[0].revenue_musd", "float_type"),
        ({"sector": "mining"}, "instances[0].sector", "literal_error"),
        ({"surprise": 1}, "instances[0].surprise", "extra_forbidden"),
        ({"market_volatility": True}, "instances[0].market_volatility", "float_type"),
    ],
)
def test_bad_values_are_422_naming_the_field(
    predict_risk_client: FlaskClient, stack: Stack, change: dict[str, Any], field: str, rule: str
) -> None:
    instance = {**example(stack), **change}
    response = predict_risk_client.post(
        URL, json={"instances": [instance]}, headers=stack.headers()
    )
    body = assert_error(response, 422, "invalid_values")
    (problem,) = body["error"]["details"]
    assert problem["field"] == field
    assert problem["rule"] == rule
    assert problem["value"] == next(iter(change.values()))


def test_missing_field_is_422(predict_risk_client: FlaskClient, stack: Stack) -> None:
    instance = example(stack)
    del instance["sector"]
    response = predict_risk_client.post(
        URL, json={"instances": [instance]}, headers=stack.headers()
    )
    body = assert_error(response, 422, "invalid_values")
    assert body["error"]["details"][0]["field"] == "instances[0].sector"
    assert body["error"]["details"][0]["rule"] == "missing"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422(
    predict_risk_client: FlaskClient, stack: Stack, literal: str
) -> None:
    text = json.dumps({"instances": [example(stack)]}).replace(
        json.dumps(example(stack)["revenue_growth"]), literal, 1
    )
    response = predict_risk_client.post(
        URL, data=text, headers={**stack.headers(), "Content-Type": "application/json"}
    )
    body = assert_error(response, 422, "invalid_values")
    assert body["error"]["details"][0]["field"] == "instances[0].revenue_growth"
    assert body["error"]["details"][0]["rule"] == "finite_number"


def test_every_bad_field_of_every_instance_is_named(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    good = example(stack)
    instances = [good, {**good, "revenue_musd": -5.0, "insider_ownership": 2.0}, {**good, "x": 1}]
    response = predict_risk_client.post(URL, json={"instances": instances}, headers=stack.headers())
    body = assert_error(response, 422, "invalid_values")
    fields = {p["field"] for p in body["error"]["details"]}
    assert fields == {
        "instances[1].revenue_musd",
        "instances[1].insider_ownership",
        "instances[2].x",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "instances"),
        ({"instances": []}, "instances"),
        ({"instances": [{}], "extra": 1}, "extra"),
        ({"instances": "no"}, "instances"),
    ],
)
def test_bad_envelope_is_422(
    predict_risk_client: FlaskClient, stack: Stack, body: dict[str, Any], field: str
) -> None:
    response = predict_risk_client.post(URL, json=body, headers=stack.headers())
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert field in {d["field"] for d in details}


def test_more_than_a_thousand_instances_is_422(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    response = predict_risk_client.post(
        URL, json={"instances": [example(stack)] * 1001}, headers=stack.headers()
    )
    body = assert_error(response, 422, "invalid_values")
    assert body["error"]["details"][0]["rule"] == "too_long"


def test_unknown_parameters_are_422(predict_risk_client: FlaskClient, stack: Stack) -> None:
    response = predict_risk_client.post(
        URL,
        json={"instances": [example(stack)], "parameters": {"threshold": 0.5}},
        headers=stack.headers(),
    )
    body = assert_error(response, 422, "invalid_values")
    assert body["error"]["details"][0]["field"] == "parameters.threshold"


def test_body_over_ten_mib_is_413_before_parsing(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    huge = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    response = predict_risk_client.post(
        URL, data=huge, headers={**stack.headers(), "Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic abc", "Bearer", "Bearer not-a-jwt", "Bearer a.b.c"],
)
def test_missing_or_bad_token_is_401(
    predict_risk_client: FlaskClient, stack: Stack, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = predict_risk_client.post(URL, json={"instances": [example(stack)]}, headers=headers)
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_without_predict_permission_is_403(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    response = predict_risk_client.post(
        URL,
        json={"instances": [example(stack)]},
        headers=stack.headers(("model:read", "model:other:predict")),
    )
    body = assert_error(response, 403, "forbidden")
    assert body["error"]["details"] == [{"required_permission": "model:risk:predict"}]


def test_wildcard_predict_permission_is_enough(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    response = predict_risk_client.post(
        URL, json={"instances": [example(stack)]}, headers=stack.headers(("model:*:predict",))
    )
    assert response.status_code == 200


def test_wrong_method_is_405(predict_risk_client: FlaskClient, stack: Stack) -> None:
    response = predict_risk_client.get(URL, headers=stack.headers())
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


def test_unknown_path_is_404(predict_risk_client: FlaskClient, stack: Stack) -> None:
    assert_error(predict_risk_client.post("/v1/predict/nope", json={}), 404, "not_found")


def test_model_without_production_version_is_404(empty_stack: Stack) -> None:
    from tests.support.fixtures import register_risk

    register_risk(empty_stack.lifecycle, promote=False)
    client = function_client("predict_risk")
    response = client.post(
        URL,
        json={"instances": [empty_stack.registry.get_version("risk", "1.0.0").example]},
        headers=empty_stack.headers(),
    )
    assert_error(response, 404, "not_found")


def test_unregistered_model_is_404(empty_stack: Stack) -> None:
    response = function_client("predict_risk").post(
        URL, json={"instances": [{"sector": "technology"}]}, headers=empty_stack.headers()
    )
    assert_error(response, 404, "not_found")


def test_store_unreachable_is_503_with_retry_after(tmp_path: Any) -> None:
    from common.services import reset_services
    from tests.support.fixtures import AUDIT_KEY, SIGNING_KEY, embedded_stack

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data folder should be")
    stack = embedded_stack(tmp_path)
    token = stack.token()
    reset_services()
    os.environ.update(
        {
            "IPO_DATA_DIR": str(blocker),
            "IPO_SECRET_JWT_SIGNING_KEY": SIGNING_KEY,
            "IPO_SECRET_AUDIT_HMAC_KEY": AUDIT_KEY,
        }
    )
    try:
        response = function_client("predict_risk").post(
            URL,
            json={"instances": [{"sector": "technology"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        reset_services()
    body = assert_error(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert str(blocker) not in response.get_data(as_text=True)  # no paths or hosts leak
    assert body["error"]["details"] == []


def test_tampered_artifact_is_refused_without_loading(
    predict_risk_client: FlaskClient, stack: Stack, tmp_path: Any
) -> None:
    from tests.support.fixtures import malicious_artifact

    record = stack.registry.get_version("risk", "1.0.0")
    marker = tmp_path / "pwned"
    path = stack.settings.resolved_artifact_dir / record.artifact_key
    path.chmod(0o644)
    path.write_bytes(malicious_artifact(marker))
    response = predict_risk_client.post(
        URL, json={"instances": [record.example]}, headers=stack.headers()
    )
    assert_error(response, 500, "integrity_check_failed")
    assert not marker.exists()


def test_missing_artifact_is_an_integrity_failure_not_404(
    predict_risk_client: FlaskClient, stack: Stack
) -> None:
    record = stack.registry.get_version("risk", "1.0.0")
    (stack.settings.resolved_artifact_dir / record.artifact_key).unlink()
    response = predict_risk_client.post(
        URL, json={"instances": [record.example]}, headers=stack.headers()
    )
    body = assert_error(response, 500, "integrity_check_failed")
    assert record.artifact_sha256 not in response.get_data(as_text=True)
    assert body["error"]["details"] == []
