"""The control plane over HTTP: register, stage, promote, roll back, history."""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import function_client
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import (
    SEED,
    Stack,
    pickled_risk_artifact,
    register_risk,
    trained_risk,
)
from tools.training.base import BuiltModel
from tools.training.dcf_builder import build as build_dcf


@cache
def built_dcf() -> BuiltModel:
    return build_dcf(seed=SEED)[0]


def register_body(built: BuiltModel, version: str, **changes: Any) -> dict[str, Any]:
    body = {
        "version": version,
        "kind": built.kind,
        "artifact_base64": base64.b64encode(built.artifact).decode(),
        "description": built.description,
        "metrics": built.metrics,
        "model_card": built.model_card,
        "golden_set": built.golden_set,
        "drift_baseline": built.drift_baseline,
        "example": built.example,
    }
    return {**body, **changes}


def register(stack: Stack, model_id: str, body: dict[str, Any], perms: tuple[str, ...]) -> Any:
    return function_client("register_model").post(
        f"/v1/models/{model_id}/versions", json=body, headers=stack.headers(perms)
    )


def control(stack: Stack, name: str, path: str, body: dict[str, Any], perms=("admin",)) -> Any:  # type: ignore[no-untyped-def]
    return function_client(name).post(path, json=body, headers=stack.headers(perms))


def test_register_a_json_artifact_with_the_register_permission(empty_stack: Stack) -> None:
    response = register(
        empty_stack, "dcf", register_body(built_dcf(), "1.0.0"), ("model:dcf:register",)
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["version"], body["stage"], body["created_by"]) == (
        "1.0.0",
        "development",
        "tester",
    )
    assert "golden_set" not in body
    assert "artifact_uri" not in body
    again = register(empty_stack, "dcf", register_body(built_dcf(), "1.0.0"), ("admin",))
    assert_error(again, 409, "conflict")


def test_a_pickled_artifact_needs_admin(empty_stack: Stack) -> None:
    pickled = base64.b64encode(pickled_risk_artifact()).decode()
    body = register_body(trained_risk(), "1.0.0", artifact_base64=pickled)
    refused = register(empty_stack, "risk", body, ("model:risk:register",))
    assert_error(refused, 403, "forbidden")
    assert register(empty_stack, "risk", body, ("admin",)).status_code == 201


def test_the_risk_models_data_artifact_needs_only_the_register_permission(
    empty_stack: Stack,
) -> None:
    """The builder's risk artifact is JSON numbers: loading it runs no code."""
    body = register_body(trained_risk(), "1.0.0")
    response = register(empty_stack, "risk", body, ("model:risk:register",))
    assert response.status_code == 201, response.get_data(as_text=True)


def test_an_artifact_that_does_not_load_is_422_and_nothing_is_stored(empty_stack: Stack) -> None:
    bogus = base64.b64encode(json.dumps({"format": "ipo-dcf/1"}).encode()).decode()
    body = register_body(built_dcf(), "1.0.0", artifact_base64=bogus)
    response = register(empty_stack, "dcf", body, ("admin",))
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert details == [
        {
            "field": "artifact_base64",
            "path": ["artifact_base64"],
            "rule": "loads",
            "message": "artifact_base64 is invalid (loads)",
        }
    ]
    missing = function_client("list_models").get(
        "/v1/models/dcf/versions/1.0.0", headers=empty_stack.headers()
    )
    assert_error(missing, 404, "not_found")


def test_bad_base64_and_bad_examples_are_422(empty_stack: Stack) -> None:
    body = register_body(built_dcf(), "1.0.0", artifact_base64="not base64!!")
    assert_error(register(empty_stack, "dcf", body, ("admin",)), 422, "invalid_values")
    example = {**built_dcf().example, "revenue_musd": -1.0}
    response = register(
        empty_stack, "dcf", register_body(built_dcf(), "1.0.0", example=example), ("admin",)
    )
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert details[0]["field"] == "example.revenue_musd"


def test_the_whole_life_of_a_model_over_http(stack: Stack) -> None:
    weak = BuiltModel(
        **{**trained_risk().__dict__, "metrics": {**trained_risk().metrics, "accuracy": 0.8}}
    )
    assert register(stack, "risk", register_body(weak, "1.1.0"), ("admin",)).status_code == 201
    staged = control(
        stack, "promote_model", "/v1/models/risk/versions/1.1.0/stage", {"stage": "staging"}
    )
    assert staged.get_json()["stage"] == "staging"

    refused = control(stack, "promote_model", "/v1/models/risk/promote", {"version": "1.1.0"})
    details = assert_error(refused, 422, "invalid_values")["error"]["details"]
    assert details == [
        {"criterion": "accuracy", "op": ">=", "threshold": 0.85, "value": 0.8, "passed": False}
    ]

    assert (
        register(stack, "risk", register_body(trained_risk(), "1.2.0"), ("admin",)).status_code
        == 201
    )
    control(stack, "promote_model", "/v1/models/risk/versions/1.2.0/stage", {"stage": "staging"})
    canary = control(
        stack,
        "promote_model",
        "/v1/models/risk/promote",
        {"version": "1.2.0", "traffic_percentage": 10},
    )
    assert canary.status_code == 200, canary.get_data(as_text=True)
    assert canary.get_json()["model"]["canary_version"] == "1.2.0"
    assert canary.get_json()["deployment"]["to"]["canary_percentage"] == 10

    full = control(stack, "promote_model", "/v1/models/risk/promote", {"version": "1.2.0"})
    assert full.get_json()["model"]["production_version"] == "1.2.0"

    back = control(stack, "rollback_model", "/v1/models/risk/rollback", {})
    assert back.status_code == 200
    assert back.get_json()["model"]["production_version"] == "1.0.0"

    history = (
        function_client("list_models")
        .get("/v1/models/risk/deployments", headers=stack.headers(("model:read",)))
        .get_json()["deployments"]
    )
    assert [(d["kind"], d["status"], d["version"]) for d in history] == [
        ("rollback", "succeeded", None),
        ("promote", "succeeded", "1.2.0"),
        ("promote", "succeeded", "1.2.0"),
        ("promote", "failed", "1.1.0"),
        ("promote", "succeeded", "1.0.0"),
    ]


def test_permissions_are_per_model_and_per_action(stack: Stack) -> None:
    denied = control(
        stack,
        "promote_model",
        "/v1/models/risk/promote",
        {"version": "1.0.0"},
        ("model:dcf:promote",),
    )
    assert_error(denied, 403, "forbidden")
    denied = control(
        stack, "rollback_model", "/v1/models/risk/rollback", {}, ("model:risk:promote",)
    )
    assert_error(denied, 403, "forbidden")


def test_retired_versions_answer_410(stack: Stack) -> None:
    register(stack, "risk", register_body(trained_risk(), "1.1.0"), ("admin",))
    control(stack, "promote_model", "/v1/models/risk/versions/1.1.0/stage", {"stage": "retired"})
    response = function_client("list_models").get(
        "/v1/models/risk/versions/1.1.0", headers=stack.headers()
    )
    assert_error(response, 410, "gone")


def test_disallowed_transition_is_409(stack: Stack) -> None:
    response = control(
        stack, "promote_model", "/v1/models/risk/versions/1.0.0/stage", {"stage": "staging"}
    )
    assert_error(response, 409, "conflict")


def test_a_promotion_reaches_this_instance_at_once(
    stack: Stack, predict_risk_client: FlaskClient
) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    ask = lambda: predict_risk_client.post(  # noqa: E731
        "/v1/predict/risk", json={"instances": [example]}, headers=stack.headers()
    ).get_json()["model_version"]
    assert ask() == "1.0.0"
    register(stack, "risk", register_body(trained_risk(), "1.1.0"), ("admin",))
    control(stack, "promote_model", "/v1/models/risk/versions/1.1.0/stage", {"stage": "staging"})
    control(stack, "promote_model", "/v1/models/risk/promote", {"version": "1.1.0"})
    assert ask() == "1.1.0"


def test_golden_cases_need_instance_and_expected(empty_stack: Stack) -> None:
    cases = [{"instance": built_dcf().golden_set[0]["instance"]}]
    response = register(
        empty_stack, "dcf", register_body(built_dcf(), "1.0.0", golden_set=cases), ("admin",)
    )
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert details[0]["field"] == "golden_set[0].expected"


def test_deeply_nested_fields_are_422(empty_stack: Stack) -> None:
    card: dict[str, Any] = {}
    for _ in range(40):
        card = {"level": card}
    response = register(
        empty_stack, "dcf", register_body(built_dcf(), "1.0.0", model_card=card), ("admin",)
    )
    assert_error(response, 422, "invalid_values")


def test_only_admin_sets_a_gate_and_only_for_a_new_model(stack: Stack, empty_stack: Stack) -> None:
    gate = {"criteria": [{"metric": "latency_p95_ms", "op": "<=", "threshold": 100.0}]}
    body = register_body(built_dcf(), "1.0.0", gate=gate)
    assert_error(register(empty_stack, "dcf", body, ("model:dcf:register",)), 403, "forbidden")
    assert register(empty_stack, "dcf", body, ("admin",)).status_code == 201
    # a later version carrying the same gate (a builder's export does) changes nothing
    same = register_body(built_dcf(), "1.1.0", gate=gate)
    assert register(empty_stack, "dcf", same, ("model:dcf:register",)).status_code == 201
    other = {"criteria": [{"metric": "latency_p95_ms", "op": "<=", "threshold": 900.0}]}
    again = register(
        empty_stack, "dcf", register_body(built_dcf(), "1.2.0", gate=other), ("admin",)
    )
    assert "differs" in assert_error(again, 422, "invalid_values")["error"]["message"]
    assert empty_stack.registry.get_model("dcf").gate["criteria"][0]["threshold"] == 100.0
    empty = register_body(built_dcf(), "1.0.0", gate={"criteria": []})
    assert_error(register(stack, "dcf", empty, ("admin",)), 422, "invalid_values")


def test_history_keeps_mismatch_places_not_golden_values(stack: Stack) -> None:
    from common.registry.records import VERSIONS, version_doc_id

    register(stack, "risk", register_body(trained_risk(), "1.1.0"), ("admin",))
    control(stack, "promote_model", "/v1/models/risk/versions/1.1.0/stage", {"stage": "staging"})
    wrong = [dict(c) for c in stack.registry.get_version("risk", "1.1.0").golden_set]
    wrong[0] = {**wrong[0], "expected": {**wrong[0]["expected"], "risk_score": 1.5}}
    stack.services.backends.documents.update(
        VERSIONS, version_doc_id("risk", "1.1.0"), {"golden_set": wrong}
    )
    refused = control(stack, "promote_model", "/v1/models/risk/promote", {"version": "1.1.0"})
    assert "1.5" in json.dumps(refused.get_json())  # the promoter sees the values
    history = (
        function_client("list_models")
        .get("/v1/models/risk/deployments", headers=stack.headers(("model:read",)))
        .get_json()["deployments"]
    )
    assert history[0]["verification"]["golden_mismatches"] == ["case 0.risk_score"]


# --- rollback: precondition and retries ----------------------------------------------------


def rollback(stack: Stack, body: dict[str, Any]) -> Any:
    return control(stack, "rollback_model", "/v1/models/risk/rollback", body)


def deployments(stack: Stack) -> list[dict[str, Any]]:
    answer = function_client("list_models").get(
        "/v1/models/risk/deployments", headers=stack.headers(("model:read",))
    )
    history: list[dict[str, Any]] = answer.get_json()["deployments"]
    return history


def promoted_twice(stack: Stack) -> str:
    """1.0.0 then 1.1.0 in production (generation 2); the id of the 1.1.0 promotion."""
    register_risk(stack.lifecycle, "1.1.0")
    latest = deployments(stack)[0]
    assert (latest["version"], latest["to"]["generation"]) == ("1.1.0", 2)
    return str(latest["deployment_id"])


def test_a_rollback_at_another_generation_is_409_naming_both(stack: Stack) -> None:
    promoted_twice(stack)
    refused = rollback(stack, {"expected_generation": 1})
    body = assert_error(refused, 409, "precondition_failed")
    assert body["error"]["message"] == "risk is at generation 2, not 1"
    assert stack.registry.get_model("risk").production_version == "1.1.0"
    assert [d["kind"] for d in deployments(stack)] == ["promote", "promote"]
    done = rollback(stack, {"expected_generation": 2})
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json()["model"]["production_version"] == "1.0.0"


def test_a_retry_naming_the_same_deployment_answers_the_same_rollback(stack: Stack) -> None:
    promotion = promoted_twice(stack)
    first = rollback(stack, {"deployment_id": promotion})
    assert first.status_code == 200, first.get_data(as_text=True)
    example = stack.registry.get_version("risk", "1.0.0").example
    served = function_client("predict_risk").post(
        "/v1/predict/risk", json={"instances": [example]}, headers=stack.headers()
    )
    assert served.get_json()["model_version"] == "1.0.0"
    assert stack.services.cache is not None
    cached = stack.services.cache.stats()["l1_entries"]
    assert cached > 0

    again = rollback(stack, {"deployment_id": promotion})
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.get_json() == first.get_json()
    assert [d["kind"] for d in deployments(stack)] == ["rollback", "promote", "promote"]
    model = stack.registry.get_model("risk")
    assert (model.production_version, model.generation) == ("1.0.0", 3)
    assert stack.services.cache.stats()["l1_entries"] == cached  # nothing purged


def test_a_retry_with_the_same_expected_generation_answers_the_same_rollback(
    stack: Stack,
) -> None:
    promoted_twice(stack)
    first = rollback(stack, {"expected_generation": 2})
    assert first.status_code == 200, first.get_data(as_text=True)
    deployment = first.get_json()["deployment"]
    assert (deployment["kind"], deployment["from"]["generation"]) == ("rollback", 2)
    for _ in range(3):
        again = rollback(stack, {"expected_generation": 2})
        assert again.status_code == 200, again.get_data(as_text=True)
        assert again.get_json()["deployment"] == deployment
    assert [d["kind"] for d in deployments(stack)] == ["rollback", "promote", "promote"]
    assert stack.registry.get_model("risk").generation == 3


def test_a_retry_after_another_change_is_409_not_a_replay(stack: Stack) -> None:
    promotion = promoted_twice(stack)
    assert rollback(stack, {"expected_generation": 2}).status_code == 200  # 1.0.0, gen 3
    stack.lifecycle.promote("risk", "1.1.0", actor="someone-else")  # 1.1.0 again, gen 4
    for body in (
        {"expected_generation": 2},
        {"deployment_id": promotion, "expected_generation": 2},
    ):
        refused = rollback(stack, body)
        message = assert_error(refused, 409, "precondition_failed")["error"]["message"]
        assert message == "risk is at generation 4, not 2"
    model = stack.registry.get_model("risk")
    assert (model.production_version, model.generation) == ("1.1.0", 4)
    assert [d["kind"] for d in deployments(stack)][:2] == ["promote", "rollback"]


def test_a_rollback_precondition_is_a_whole_number(stack: Stack) -> None:
    for value in (-1, "2", 2.5, True):
        refused = rollback(stack, {"expected_generation": value})
        details = assert_error(refused, 422, "invalid_values")["error"]["details"]
        assert details[0]["field"] == "expected_generation"
