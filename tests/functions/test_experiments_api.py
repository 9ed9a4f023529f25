"""Experiments over HTTP: create, routed predictions, outcomes days later, results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import function_client
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built

DESIGN = {
    "model_id": "risk",
    "variants": {"control": "1.0.0", "candidate": "1.1.0"},
    "split": {"control": 0.5, "candidate": 0.5},
    "metrics": [{"name": "first_day_return", "type": "continuous", "direction": "increase"}],
}


def start(stack: Stack) -> dict[str, Any]:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    response = function_client("create_experiment").post(
        "/v1/experiments", json=DESIGN, headers=stack.headers(("experiment:write",))
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert "salt" not in body
    return body


def predict_as(stack: Stack, subject: str) -> dict[str, Any]:
    example = stack.registry.get_version("risk", "1.0.0").example
    response = function_client("predict_risk").post(
        "/v1/predict/risk",
        json={"instances": [example]},
        headers=stack.headers(("model:risk:predict",), subject=subject),
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_predictions_follow_the_experiment_and_outcomes_join_later(stack: Stack) -> None:
    experiment = start(stack)
    served = {f"user-{i}": predict_as(stack, f"user-{i}") for i in range(40)}
    assert {b["experiment_id"] for b in served.values()} == {experiment["experiment_id"]}
    assert {b["variant"] for b in served.values()} == {"control", "candidate"}
    for body in served.values():
        expected = DESIGN["variants"][body["variant"]]  # type: ignore[index]
        assert body["model_version"] == expected
    again = predict_as(stack, "user-3")
    assert again["variant"] == served["user-3"]["variant"]

    assigned = function_client("assign_variant").post(
        f"/v1/experiments/{experiment['experiment_id']}/assign",
        json={},
        headers=stack.headers(("experiment:read",), subject="user-3"),
    )
    assert assigned.get_json()["variant"] == served["user-3"]["variant"]

    url = f"/v1/experiments/{experiment['experiment_id']}/outcomes"
    write = stack.headers(("experiment:write",))
    exposure_id = served["user-1"]["exposure_id"]
    body = {"exposure_id": exposure_id, "values": {"first_day_return": 0.21}}
    first = function_client("record_outcome").post(url, json=body, headers=write)
    second = function_client("record_outcome").post(url, json=body, headers=write)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    changed = {"exposure_id": exposure_id, "values": {"first_day_return": 0.5}}
    assert_error(
        function_client("record_outcome").post(url, json=changed, headers=write), 409, "conflict"
    )
    unknown = {"exposure_id": "nope", "values": {"first_day_return": 0.1}}
    assert_error(
        function_client("record_outcome").post(url, json=unknown, headers=write), 404, "not_found"
    )
    bad = {"exposure_id": exposure_id, "values": {"other": 0.1}}
    assert_error(
        function_client("record_outcome").post(url, json=bad, headers=write), 422, "invalid_values"
    )

    results = (
        function_client("experiment_results")
        .get(
            f"/v1/experiments/{experiment['experiment_id']}/results",
            headers=stack.headers(("experiment:read",)),
        )
        .get_json()["results"]
    )
    # 41 predictions of 40 users: the split is checked on users, requests are also counted
    assert (results["srm"]["unit"], sum(results["srm"]["observed"].values())) == ("user", 40)
    assert sum(results["srm"]["requests"].values()) == 41
    comparison = results["comparisons"]["candidate"]["first_day_return"]
    assert comparison["verdict"] == "not enough data"


def test_stopping_returns_traffic_to_production(stack: Stack) -> None:
    experiment = start(stack)
    stopped = function_client("create_experiment").post(
        f"/v1/experiments/{experiment['experiment_id']}/stop",
        json={},
        headers=stack.headers(("experiment:write",)),
    )
    assert stopped.get_json()["status"] == "stopped"
    body = predict_as(stack, "user-9")
    assert (body["variant"], body["experiment_id"]) == ("production", None)


def test_experiment_permissions(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    denied = function_client("create_experiment").post(
        "/v1/experiments", json=DESIGN, headers=stack.headers(("experiment:read",))
    )
    assert_error(denied, 403, "forbidden")
    experiment = start_again(stack)
    other = function_client("assign_variant").post(
        f"/v1/experiments/{experiment}/assign",
        json={"user_id": "someone-else"},
        headers=stack.headers(("experiment:read",)),
    )
    assert_error(other, 403, "forbidden")


def start_again(stack: Stack) -> str:
    response = function_client("create_experiment").post(
        "/v1/experiments", json=DESIGN, headers=stack.headers(("experiment:write",))
    )
    return str(response.get_json()["experiment_id"])


def test_bad_designs_are_422(stack: Stack) -> None:
    bad = {**DESIGN, "split": {"control": 0.7, "candidate": 0.7}}
    response = function_client("create_experiment").post(
        "/v1/experiments", json=bad, headers=stack.headers(("experiment:write",))
    )
    assert_error(response, 422, "invalid_values")


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        (
            {
                "variants": {"a": "1.0.0", "candidate": "1.1.0"},
                "split": {"a": 0.5, "candidate": 0.5},
            },
            "variants",
            "control",
        ),
        ({"split": {"control": 0.5, "other": 0.5}}, "split", "split_names"),
        ({"split": {"control": 0.7, "candidate": 0.7}}, "split", "split_sum"),
        ({"split": {"control": 1.0, "candidate": 0.0}}, "split", "split_positive"),
        ({"metrics": [DESIGN["metrics"][0]] * 2}, "metrics", "unique_names"),  # type: ignore[index]
    ],
)
def test_an_incoherent_design_names_the_field_at_fault(
    stack: Stack, changes: dict[str, Any], field: str, rule: str
) -> None:
    response = function_client("create_experiment").post(
        "/v1/experiments", json={**DESIGN, **changes}, headers=stack.headers(("experiment:write",))
    )
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert [(d["field"], d["rule"]) for d in details] == [(field, rule)]


def test_binary_outcomes_take_true_false_or_zero_one(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    design = {**DESIGN, "metrics": [{"name": "hit", "type": "binary", "direction": "increase"}]}
    created = (
        function_client("create_experiment")
        .post("/v1/experiments", json=design, headers=stack.headers(("experiment:write",)))
        .get_json()
    )
    url = f"/v1/experiments/{created['experiment_id']}/outcomes"
    write = stack.headers(("experiment:write",))
    for i, value in enumerate([True, 1, 0]):
        exposure_id = predict_as(stack, f"user-{i}")["exposure_id"]
        body = {"exposure_id": exposure_id, "values": {"hit": value}}
        assert (
            function_client("record_outcome").post(url, json=body, headers=write).status_code == 200
        )
    exposure_id = predict_as(stack, "user-9")["exposure_id"]
    half = {"exposure_id": exposure_id, "values": {"hit": 0.5}}
    assert_error(
        function_client("record_outcome").post(url, json=half, headers=write), 422, "invalid_values"
    )


def test_a_zero_weight_is_422_and_a_stored_one_still_reads(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    write = stack.headers(("experiment:write",))
    zero = {**DESIGN, "split": {"control": 1.0, "candidate": 0.0}}
    refused = function_client("create_experiment").post("/v1/experiments", json=zero, headers=write)
    assert_error(refused, 422, "invalid_values")
    # one stored before weights had to be positive, already past its end
    experiment_id = start_again(stack)
    stack.services.backends.documents.update(
        "experiments",
        experiment_id,
        {
            "split": {"control": 1.0, "candidate": 0.0},
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-02T00:00:00Z",
        },
    )
    read = stack.headers(("experiment:read",))
    results = function_client("experiment_results").get(
        f"/v1/experiments/{experiment_id}/results", headers=read
    )
    assert results.status_code == 200, results.get_data(as_text=True)
    assert results.get_json()["results"]["srm"]["mismatch"] is False
    stopped = function_client("create_experiment").post(
        f"/v1/experiments/{experiment_id}/stop", json={}, headers=write
    )
    assert stopped.status_code == 200


def test_an_outcome_resent_as_one_after_true_is_the_same_outcome(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    design = {**DESIGN, "metrics": [{"name": "hit", "type": "binary", "direction": "increase"}]}
    write = stack.headers(("experiment:write",))
    created = (
        function_client("create_experiment")
        .post("/v1/experiments", json=design, headers=write)
        .get_json()
    )
    url = f"/v1/experiments/{created['experiment_id']}/outcomes"
    exposure_id = predict_as(stack, "user-1")["exposure_id"]
    first = function_client("record_outcome").post(
        url, json={"exposure_id": exposure_id, "values": {"hit": True}}, headers=write
    )
    again = function_client("record_outcome").post(
        url, json={"exposure_id": exposure_id, "values": {"hit": 1}}, headers=write
    )
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    other = function_client("record_outcome").post(
        url, json={"exposure_id": exposure_id, "values": {"hit": 0}}, headers=write
    )
    assert_error(other, 409, "conflict")


def test_an_experiment_is_scheduled_until_its_start_and_blocks_an_overlapping_one(
    stack: Stack,
) -> None:
    """Before its start an experiment shows ``scheduled``, an assignment says it is not
    active yet, predictions are production's; an experiment overlapping it is 409."""
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    write = stack.headers(("experiment:write",))
    soon = datetime.now(UTC) + timedelta(days=10)
    later = {**DESIGN, "start": soon.isoformat(), "end": (soon + timedelta(days=10)).isoformat()}
    created = function_client("create_experiment").post(
        "/v1/experiments", json=later, headers=write
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    experiment_id = created.get_json()["experiment_id"]
    assert created.get_json()["status"] == "scheduled"
    shown = function_client("experiment_results").get(
        f"/v1/experiments/{experiment_id}", headers=stack.headers(("experiment:read",))
    )
    assert shown.get_json()["status"] == "scheduled"
    assigned = function_client("assign_variant").post(
        f"/v1/experiments/{experiment_id}/assign",
        json={},
        headers=stack.headers(("experiment:read",)),
    )
    assert assigned.status_code == 200, assigned.get_data(as_text=True)
    assert assigned.get_json()["active"] is False
    assert predict_as(stack, "user-1")["experiment_id"] is None

    now = function_client("create_experiment").post("/v1/experiments", json=DESIGN, headers=write)
    error = assert_error(now, 409, "conflict")["error"]
    assert error["details"][0]["experiment_id"] == experiment_id


def test_a_continuous_outcome_beyond_its_bound_is_422_and_writes_nothing(stack: Stack) -> None:
    """1e308 is finite, but its square is not: refused, naming the value, not a 500."""
    experiment = start(stack)
    served = [predict_as(stack, f"user-{i}") for i in range(2)]
    url = f"/v1/experiments/{experiment['experiment_id']}/outcomes"
    write = stack.headers(("experiment:write",))
    for value in (1e308, -1e13):
        body = {"exposure_id": served[0]["exposure_id"], "values": {"first_day_return": value}}
        refused = function_client("record_outcome").post(url, json=body, headers=write)
        (detail,) = assert_error(refused, 422, "invalid_values")["error"]["details"]
        assert (detail["field"], detail["rule"], detail["value"]) == (
            "values.first_day_return",
            "range",
            value,
        )
    edge = {"exposure_id": served[1]["exposure_id"], "values": {"first_day_return": -1e12}}
    assert function_client("record_outcome").post(url, json=edge, headers=write).status_code == 200
    shown = function_client("experiment_results").get(
        f"{url.removesuffix('/outcomes')}/results", headers=stack.headers(("experiment:read",))
    )
    compared = shown.get_json()["results"]["comparisons"]["candidate"]["first_day_return"]
    assert compared["control"]["count"] + compared["variant"]["count"] == 1
