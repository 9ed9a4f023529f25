"""An experiment's arm serves traffic, so it may name only a version allowed to serve:
production, or staging that passes the model's gate and verification as a canary must."""

from __future__ import annotations

from typing import Any

from common.registry.records import MODELS
from tests.conftest import function_client
from tests.functions.test_experiments_api import DESIGN, predict_as
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built


def create(stack: Stack, design: dict[str, Any] = DESIGN) -> Any:
    return function_client("create_experiment").post(
        "/v1/experiments", json=design, headers=stack.headers(("experiment:write",))
    )


def candidate(stack: Stack, *stages: str) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    for stage in stages:
        stack.lifecycle.set_stage("risk", "1.1.0", stage)  # type: ignore[arg-type]


def refused(stack: Stack) -> list[dict[str, Any]]:
    error = assert_error(create(stack), 422, "invalid_values")["error"]
    assert stack.services.backends.documents.query("experiments") == []
    assert predict_as(stack, "user-1")["experiment_id"] is None
    details: list[dict[str, Any]] = error["details"]
    for detail in details:
        assert f"variant {detail['variant']!r}: {detail['message']}" in error["message"]
    return details


def test_a_development_arm_is_422_naming_its_stage(stack: Stack) -> None:
    candidate(stack)
    (detail,) = refused(stack)
    assert detail["field"] == "variants.candidate"
    assert detail["rule"] == "stage"
    assert detail["version"] == "1.1.0"
    assert "development" in detail["message"]
    assert "staging" in detail["message"]


def test_a_retired_arm_is_422_naming_its_stage(stack: Stack) -> None:
    candidate(stack, "retired")
    (detail,) = refused(stack)
    assert (detail["field"], detail["rule"]) == ("variants.candidate", "stage")
    assert "retired" in detail["message"]


def test_a_staging_arm_that_fails_its_gate_is_422_naming_each_criterion(stack: Stack) -> None:
    gate = {
        "criteria": [
            {"metric": "accuracy", "op": ">=", "threshold": 0.999},
            {"metric": "calibration_gap", "op": "<=", "threshold": 0.01},
            {"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0},
        ]
    }
    stack.services.backends.documents.update(MODELS, "risk", {"gate": gate})
    candidate(stack, "staging")
    details = refused(stack)
    assert [(d["field"], d["rule"]) for d in details] == [
        ("variants.candidate", "accuracy"),
        ("variants.candidate", "calibration_gap"),
    ]
    accuracy, missing = details
    assert accuracy["threshold"] == 0.999
    assert ">= 0.999" in accuracy["message"]
    assert missing["message"] == "metric not recorded"


def test_a_staging_arm_that_fails_verification_is_422(stack: Stack) -> None:
    candidate(stack, "staging")
    record = stack.registry.get_version("risk", "1.1.0")
    wrong = [{**case, "expected": {"risk_score": -1.0}} for case in record.golden_set]
    stack.services.backends.documents.update("model_versions", "risk@1.1.0", {"golden_set": wrong})
    (detail,) = refused(stack)
    assert (detail["field"], detail["rule"]) == ("variants.candidate", "verification")
    assert "golden" in detail["message"]


def test_a_staging_arm_that_passes_is_201_and_serves(stack: Stack) -> None:
    candidate(stack, "staging")
    response = create(stack)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["variants"] == {"control": "1.0.0", "candidate": "1.1.0"}
    assert predict_as(stack, "user-1")["experiment_id"] == body["experiment_id"]
