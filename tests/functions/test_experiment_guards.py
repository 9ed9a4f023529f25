"""Experiments over HTTP, against what an analyst might get wrong: retiring a version an
experiment serves, backdated designs, stopping after the end, the old outcome body."""

from __future__ import annotations

from typing import Any

from common.training.base import register_built
from tests.conftest import function_client
from tests.fixtures import Stack, trained_risk
from tests.functions.test_experiments_api import DESIGN, predict_as, start
from tests.functions.test_predict_risk import assert_error


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


def test_an_experiment_cannot_name_a_retired_version(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    assert move(stack, "1.1.0", "retired").status_code == 200
    response = function_client("create_experiment").post(
        "/v1/experiments", json=DESIGN, headers=stack.headers(("experiment:write",))
    )
    error = assert_error(response, 422, "invalid_values")["error"]
    assert "retired" in error["message"]
    assert error["details"][0]["field"] == "variants.candidate"
    assert predict_as(stack, "user-1")["experiment_id"] is None


def test_a_design_that_has_already_ended_is_422_naming_end(stack: Stack) -> None:
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    past = {**DESIGN, "start": "2020-01-01T00:00:00Z", "end": "2020-02-01T00:00:00Z"}
    response = function_client("create_experiment").post(
        "/v1/experiments", json=past, headers=stack.headers(("experiment:write",))
    )
    error = assert_error(response, 422, "invalid_values")["error"]
    assert "end must be in the future" in error["message"]
    assert error["details"][0]["field"] == "end"
    listed = stack.services.backends.documents.query("experiments")
    assert listed == []
