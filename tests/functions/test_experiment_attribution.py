"""Experiments over HTTP: outcomes join the arm that served them, whatever the caller's
X-Request-Id, and stops and starts count from their recorded instant on every instance."""

from __future__ import annotations

from typing import Any

from common.experiments.core import EXPOSURES, Experiment, ExperimentDesign, Experiments
from tests.conftest import function_client
from tests.functions.test_experiments_api import DESIGN, predict_as, start
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built


def other_instance(stack: Stack) -> Experiments:
    """The experiment service of another instance: its writes leave this one's snapshot."""
    return Experiments(stack.services.backends.documents, stack.registry)


def user_in(experiment: Experiment, variant: str) -> str:
    return next(f"u{i}" for i in range(1000) if experiment.assign(f"u{i}") == variant)


def exposures(stack: Stack, experiment_id: str) -> int:
    docs = stack.services.backends.documents.query(EXPOSURES)
    return sum(int(d.data["count"]) for d in docs if d.data["experiment_id"] == experiment_id)


def test_a_reused_request_id_never_joins_an_outcome_to_another_arm(stack: Stack) -> None:
    created = start(stack)
    experiment = other_instance(stack).get(created["experiment_id"])
    example = stack.registry.get_version("risk", "1.0.0").example
    answers: dict[str, Any] = {}
    for variant in ("control", "candidate"):
        response = function_client("predict_risk").post(
            "/v1/predict/risk",
            json={"instances": [example]},
            headers={
                **stack.headers(("model:risk:predict",), subject=user_in(experiment, variant)),
                "X-Request-Id": "client-chosen-1",
            },
        )
        assert response.status_code == 200
        assert response.headers["X-Request-Id"] == "client-chosen-1"
        answers[variant] = response.get_json()
    assert answers["candidate"]["variant"] == "candidate"
    assert answers["control"]["exposure_id"] != answers["candidate"]["exposure_id"]
    url = f"/v1/experiments/{experiment.experiment_id}/outcomes"
    body = {"exposure_id": answers["candidate"]["exposure_id"], "values": {"first_day_return": 1}}
    recorded = function_client("record_outcome").post(
        url, json=body, headers=stack.headers(("experiment:write",))
    )
    assert recorded.status_code == 200
    assert recorded.get_json()["variant"] == "candidate"


def test_a_stop_counts_from_its_instant_whatever_a_snapshot_says(stack: Stack) -> None:
    created = start(stack)
    old = created["experiment_id"]
    assert predict_as(stack, "user-1")["experiment_id"] == old  # this instance's snapshot
    counted = exposures(stack, old)
    elsewhere = other_instance(stack)
    elsewhere.finish(elsewhere.get(old), "stopped")

    after_stop = predict_as(stack, "user-2")
    assert (after_stop["experiment_id"], after_stop["variant"]) == (None, "production")
    assert after_stop["exposure_id"] is None
    assert exposures(stack, old) == counted


def test_a_new_experiment_counts_from_its_start_not_the_old_ones(stack: Stack) -> None:
    created = start(stack)
    old = created["experiment_id"]
    assert predict_as(stack, "user-1")["experiment_id"] == old
    counted = exposures(stack, old)
    elsewhere = other_instance(stack)
    elsewhere.finish(elsewhere.get(old), "stopped")
    new = elsewhere.create(ExperimentDesign.model_validate({**DESIGN, "salt": "new"}), actor="t")
    answer = predict_as(stack, "user-3")
    assert answer["experiment_id"] == new.experiment_id
    assert exposures(stack, old) == counted
    assert exposures(stack, new.experiment_id) == 1


def test_outcomes_of_predictions_after_a_stop_are_refused(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    service = other_instance(stack)
    experiment = service.create(ExperimentDesign.model_validate(DESIGN), actor="t")
    stopped = service.finish(experiment, "stopped")
    service.expose(experiment, "late-1", "candidate", "u1", at=stopped.stopped_at)
    url = f"/v1/experiments/{experiment.experiment_id}/outcomes"
    body = {"exposure_id": "late-1", "values": {"first_day_return": 0.1}}
    refused = function_client("record_outcome").post(
        url, json=body, headers=stack.headers(("experiment:write",))
    )
    assert refused.status_code == 409
    assert "outside the running time" in refused.get_json()["error"]["message"]


def test_an_outcome_after_the_window_is_409_naming_it(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    past = {**DESIGN, "start": "2020-01-01T00:00:00Z", "end": "2020-01-31T00:00:00Z"}
    then = "2020-01-01T00:00:00.000000Z"  # created when it was still to come
    service = Experiments(stack.services.backends.documents, stack.registry, lambda: then)
    experiment = service.create(
        ExperimentDesign.model_validate({**past, "outcome_window_days": 7}), actor="t"
    )
    service.expose(experiment, "x1", "candidate", "u1", at="2020-01-15T00:00:00.000000Z")
    response = function_client("record_outcome").post(
        f"/v1/experiments/{experiment.experiment_id}/outcomes",
        json={"exposure_id": "x1", "values": {"first_day_return": 0.1}},
        headers=stack.headers(("experiment:write",)),
    )
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "conflict"
    assert "outcome window" in error["message"]
    assert error["details"] == [
        {"outcome_window_days": 7, "closes_at": "2020-02-07T00:00:00.000000Z"}
    ]
    shown = function_client("experiment_results").get(
        f"/v1/experiments/{experiment.experiment_id}", headers=stack.headers(("experiment:read",))
    )
    assert shown.get_json()["status"] == "completed"
