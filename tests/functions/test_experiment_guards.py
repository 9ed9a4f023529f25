"""Experiments over HTTP, against what an analyst might get wrong: retiring a version an
experiment serves, backdated designs, stopping after the end, the old outcome body."""

from __future__ import annotations

from typing import Any

from tests.conftest import function_client
from tests.functions.test_experiments_api import DESIGN, predict_as, start
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built


def move(stack: Stack, version: str, stage: str) -> Any:
    return function_client("promote_model").post(
        f"/v1/models/risk/versions/{version}/stage",
        json={"stage": stage},
        headers=stack.headers(("admin",)),
    )


def stop(stack: Stack, experiment_id: str) -> Any:
    return function_client("create_experiment").post(
        f"/v1/experiments/{experiment_id}/stop",
        json={},
        headers=stack.headers(("experiment:write",)),
    )


def test_a_version_an_active_experiment_serves_cannot_be_retired(stack: Stack) -> None:
    experiment_id = start(stack)["experiment_id"]
    refused = move(stack, "1.1.0", "retired")
    error = assert_error(refused, 409, "conflict")["error"]
    assert experiment_id in error["message"]
    assert error["details"] == [{"experiment_id": experiment_id, "variant": "candidate"}]
    shown = function_client("list_models").get(
        "/v1/models/risk/versions/1.1.0", headers=stack.headers()
    )
    assert shown.status_code == 200
    assert shown.get_json()["stage"] != "retired"

    assert stop(stack, experiment_id).status_code == 200
    retired = move(stack, "1.1.0", "retired")
    assert retired.status_code == 200, retired.get_data(as_text=True)
    assert retired.get_json()["stage"] == "retired"


def promote(stack: Stack, version: str, **extra: Any) -> Any:
    return function_client("promote_model").post(
        "/v1/models/risk/promote",
        json={"version": version, **extra},
        headers=stack.headers(("admin",)),
    )


def test_promotion_cannot_deprecate_the_control_arm_of_an_active_experiment(
    stack: Stack,
) -> None:
    experiment_id = start(stack)["experiment_id"]
    register_built(stack.lifecycle, trained_risk(), version="1.2.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.2.0", "staging")

    refused = promote(stack, "1.2.0")
    error = assert_error(refused, 409, "conflict")["error"]
    assert "1.0.0" in error["message"]
    assert experiment_id in error["message"]
    assert error["details"] == [{"experiment_id": experiment_id, "variant": "control"}]
    assert stack.registry.get_model("risk").production_version == "1.0.0"
    assert stack.registry.get_version("risk", "1.0.0").stage == "production"
    # the experiment's own candidate cannot take production from under it either
    assert promote(stack, "1.1.0").status_code == 409
    # a canary leaves production serving, so it does not touch the experiment's arm
    assert promote(stack, "1.2.0", traffic_percentage=10).status_code == 200

    assert stop(stack, experiment_id).status_code == 200
    done = promote(stack, "1.2.0", reason="the canary held for a week")
    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json()["deployment"]["reason"] == "the canary held for a week"


def test_a_replaced_version_keeps_why_it_was_deprecated(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    moved = function_client("promote_model").post(
        "/v1/models/risk/versions/1.1.0/stage",
        json={"stage": "staging", "reason": "fresh-sample metrics within the gate"},
        headers=stack.headers(("admin",), subject="validator-1"),
    )
    assert moved.status_code == 200, moved.get_data(as_text=True)
    assert moved.get_json()["stage_reason"] == "fresh-sample metrics within the gate"
    assert moved.get_json()["stage_changed_by"] == "validator-1"

    done = promote(stack, "1.1.0", reason="one debt-to-equity draw per company")
    assert done.status_code == 200, done.get_data(as_text=True)
    deployment_id = done.get_json()["deployment"]["deployment_id"]
    old = function_client("list_models").get(
        "/v1/models/risk/versions/1.0.0", headers=stack.headers()
    )
    shown = old.get_json()
    assert shown["stage"] == "deprecated"
    assert shown["stage_reason"] == (
        f"replaced in production by 1.1.0 (deployment {deployment_id}): "
        "one debt-to-equity draw per company"
    )
    assert shown["stage_changed_by"] == "tester"

    back = function_client("rollback_model").post(
        "/v1/models/risk/rollback", json={"reason": "complaints"}, headers=stack.headers(("admin",))
    )
    assert back.status_code == 200, back.get_data(as_text=True)
    newer = stack.registry.get_version("risk", "1.1.0")
    assert newer.stage == "deprecated"
    assert newer.stage_reason.startswith("rolled back; production restored to 1.0.0")
    assert newer.stage_reason.endswith(": complaints")
    assert stack.registry.get_version("risk", "1.0.0").stage_reason.startswith(
        "restored by rollback"
    )


def test_an_experiment_cannot_name_a_retired_version(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    assert move(stack, "1.1.0", "retired").status_code == 200
    response = function_client("create_experiment").post(
        "/v1/experiments", json=DESIGN, headers=stack.headers(("experiment:write",))
    )
    error = assert_error(response, 422, "invalid_values")["error"]
    assert "retired" in error["message"]
    assert error["details"][0]["field"] == "variants.candidate"
    assert error["details"][0]["rule"] == "stage"
    assert predict_as(stack, "user-1")["experiment_id"] is None


def test_a_design_that_has_already_ended_is_422_naming_end(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    past = {**DESIGN, "start": "2020-01-01T00:00:00Z", "end": "2020-02-01T00:00:00Z"}
    response = function_client("create_experiment").post(
        "/v1/experiments", json=past, headers=stack.headers(("experiment:write",))
    )
    error = assert_error(response, 422, "invalid_values")["error"]
    assert "end must be in the future" in error["message"]
    assert error["details"][0]["field"] == "end"
    listed = stack.services.backends.documents.query("experiments")
    assert listed == []


def created_in_the_past(stack: Stack, window_days: int) -> Any:
    """An experiment that ran through January 2026 and was created before it began."""
    from common.experiments.core import ExperimentDesign, Experiments

    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    then = ["2026-01-01T00:00:00.000000Z"]
    service = Experiments(stack.services.backends.documents, stack.registry, lambda: then[0])
    design = {
        **DESIGN,
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-02-01T00:00:00Z",
        "outcome_window_days": window_days,
    }
    experiment = service.create(ExperimentDesign.model_validate(design), actor="t")
    service.expose(experiment, "x1", "candidate", "u1", at="2026-01-15T00:00:00.000000Z")
    return experiment


def test_stop_while_collecting_withdraws_the_experiment(stack: Stack) -> None:
    experiment = created_in_the_past(stack, window_days=365)  # collecting until 2027-02-01
    experiment_id = experiment.experiment_id
    read = stack.headers(("experiment:read",))
    shown = function_client("experiment_results").get(
        f"/v1/experiments/{experiment_id}", headers=read
    )
    assert shown.get_json()["status"] == "collecting"

    stopped = stop(stack, experiment_id)
    assert stopped.status_code == 200, stopped.get_data(as_text=True)
    body = stopped.get_json()
    assert body["status"] == "stopped"
    assert body["stopped_at"] is not None
    assert body["closes_at"] == "2027-02-01T00:00:00.000000Z"  # the window is unchanged
    again = stop(stack, experiment_id)
    assert again.status_code == 200
    assert again.get_json() == body

    # an exposure served before the end may still have its outcome recorded in the window
    recorded = function_client("record_outcome").post(
        f"/v1/experiments/{experiment_id}/outcomes",
        json={"exposure_id": "x1", "values": {"first_day_return": 0.2}},
        headers=stack.headers(("experiment:write",)),
    )
    assert recorded.status_code == 200
    later = function_client("experiment_results").get(
        f"/v1/experiments/{experiment_id}", headers=read
    )
    assert (later.get_json()["status"], later.get_json()["conclusions"]) == ("stopped", {})


def test_stop_of_a_completed_experiment_is_409_and_its_conclusion_stands(stack: Stack) -> None:
    experiment = created_in_the_past(stack, window_days=7)  # closed on 2026-02-08
    experiment_id = experiment.experiment_id
    refused = stop(stack, experiment_id)
    error = assert_error(refused, 409, "conflict")["error"]
    assert "completed" in error["message"]
    assert "conclusion stands" in error["message"]
    shown = function_client("experiment_results").get(
        f"/v1/experiments/{experiment_id}", headers=stack.headers(("experiment:read",))
    )
    assert shown.get_json()["status"] == "completed"
    assert shown.get_json()["conclusions"] == {"1.1.0": "inconclusive"}
    assert shown.get_json()["stopped_at"] is None


def test_an_outcome_sent_by_request_id_says_to_use_the_exposure_id(stack: Stack) -> None:
    experiment_id = start(stack)["experiment_id"]
    served = predict_as(stack, "user-1")
    response = function_client("record_outcome").post(
        f"/v1/experiments/{experiment_id}/outcomes",
        json={"request_id": served["request_id"], "values": {"first_day_return": 0.1}},
        headers=stack.headers(("experiment:write",)),
    )
    error = assert_error(response, 422, "invalid_values")["error"]
    assert "exposure_id" in error["message"]
    assert "request id is not accepted" in error["message"]
    assert "Field required" not in error["message"]
    assert error["details"][0]["field"] == "request_id"


def test_after_the_window_a_resent_outcome_is_200_and_only_new_ones_are_409(
    stack: Stack,
) -> None:
    from common.experiments.core import Experiments

    experiment = created_in_the_past(stack, window_days=7)  # closed on 2026-02-08
    service = Experiments(
        stack.services.backends.documents, stack.registry, lambda: "2026-01-20T00:00:00.000000Z"
    )
    service.expose(experiment, "x2", "control", "u2", at="2026-01-16T00:00:00.000000Z")
    service.record_outcome(experiment, "x1", {"first_day_return": 0.2})
    url = f"/v1/experiments/{experiment.experiment_id}/outcomes"
    write = stack.headers(("experiment:write",))
    same = {"exposure_id": "x1", "values": {"first_day_return": 0.2}}
    resent = function_client("record_outcome").post(url, json=same, headers=write)
    assert resent.status_code == 200, resent.get_data(as_text=True)
    assert resent.get_json()["values"] == {"first_day_return": 0.2}
    changed = {"exposure_id": "x1", "values": {"first_day_return": 0.3}}
    assert_error(
        function_client("record_outcome").post(url, json=changed, headers=write), 409, "conflict"
    )
    new = {"exposure_id": "x2", "values": {"first_day_return": 0.2}}
    late = assert_error(
        function_client("record_outcome").post(url, json=new, headers=write), 409, "conflict"
    )
    assert "outcome window" in late["error"]["message"]


def test_a_metric_left_out_of_an_outcome_cannot_be_added_later(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    two = {
        **DESIGN,
        "metrics": [
            {"name": "first_day_return", "type": "continuous", "direction": "increase"},
            {"name": "priced_in_range", "type": "binary", "direction": "increase"},
        ],
    }
    write = stack.headers(("experiment:write",))
    created = function_client("create_experiment").post("/v1/experiments", json=two, headers=write)
    url = f"/v1/experiments/{created.get_json()['experiment_id']}/outcomes"
    exposure_id = predict_as(stack, "user-1")["exposure_id"]
    first = {"exposure_id": exposure_id, "values": {"first_day_return": 0.1}}
    assert function_client("record_outcome").post(url, json=first, headers=write).status_code == 200
    added = {
        "exposure_id": exposure_id,
        "values": {"first_day_return": 0.1, "priced_in_range": True},
    }
    assert_error(
        function_client("record_outcome").post(url, json=added, headers=write), 409, "conflict"
    )


def test_the_outcome_window_takes_whole_days(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    write = stack.headers(("experiment:write",))
    for days in (1.5, 400, -1):
        response = function_client("create_experiment").post(
            "/v1/experiments", json={**DESIGN, "outcome_window_days": days}, headers=write
        )
        error = assert_error(response, 422, "invalid_values")["error"]
        assert error["details"][0]["field"] == "outcome_window_days"
