"""Every 422 detail in the one documented shape (field, path, rule, message), whichever
check wrote it, and naming the field the client sent."""

from __future__ import annotations

from typing import Any

from tests.conftest import function_client
from tests.functions.test_experiments_api import predict_as, start
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack

SHAPE = {"field", "path", "rule", "message"}


def outcome_details(stack: Stack, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The details of a 422 to an outcome for an experiment whose one metric is
    ``first_day_return``."""
    url = f"/v1/experiments/{start(stack)['experiment_id']}/outcomes"
    body = {"exposure_id": predict_as(stack, "user-1")["exposure_id"], "values": values}
    write = stack.headers(("experiment:write",))
    response = function_client("record_outcome").post(url, json=body, headers=write)
    details: list[dict[str, Any]] = assert_error(response, 422, "invalid_values")["error"][
        "details"
    ]
    return details


def test_an_unknown_metric_is_a_detail_with_path_and_message(stack: Stack) -> None:
    (detail,) = outcome_details(stack, {"bogus": 1.0})
    assert detail.keys() >= SHAPE
    assert detail["field"] == "values.bogus"
    assert detail["path"] == ["values", "bogus"]
    assert detail["rule"] == "unknown_metric"
    assert "first_day_return" in detail["message"]


def test_a_value_of_neither_union_type_is_one_detail_on_the_field_sent(stack: Stack) -> None:
    (detail,) = outcome_details(stack, {"first_day_return": "yes"})
    assert detail.keys() >= SHAPE
    assert detail["field"] == "values.first_day_return"
    assert detail["path"] == ["values", "first_day_return"]
    assert detail["value"] == "yes"
    assert "number" in detail["message"]
    assert "boolean" in detail["message"]


def test_a_check_written_by_hand_answers_in_the_same_shape(empty_stack: Stack) -> None:
    from tests.functions.test_control import built_dcf, register, register_body

    body = register_body(built_dcf(), "1.0.0", artifact_base64="not base64!!")
    response = register(empty_stack, "dcf", body, ("admin",))
    (detail,) = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert detail == {
        "field": "artifact_base64",
        "path": ["artifact_base64"],
        "rule": "base64",
        "message": "artifact_base64 is invalid (base64)",
    }


def test_one_instance_sent_without_the_wrapper_is_one_error_saying_how_to_wrap_it(
    stack: Stack,
) -> None:
    from tests.functions.test_predict_risk import URL, example

    response = function_client("predict_risk").post(
        URL, json=example(stack), headers=stack.headers()
    )
    error = assert_error(response, 422, "invalid_values")["error"]
    assert '{"instances": [...]}' in error["message"]
    (detail,) = error["details"]
    assert detail["field"] == "instances"
    assert detail["rule"] == "wrap_in_instances"
    assert detail["message"] == 'send {"instances": [<this object>]}'


def test_a_body_with_instances_is_still_checked_field_by_field(stack: Stack) -> None:
    from tests.functions.test_predict_risk import URL

    response = function_client("predict_risk").post(
        URL, json={"instances": [], "extra": 1}, headers=stack.headers()
    )
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert {d["field"] for d in details} == {"instances", "extra"}
