"""Times at the edges of the calendar are refused with the field named, never a 500:
an experiment's start and end, and a shadow evaluation's until."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import function_client
from tests.functions.test_experiments_api import DESIGN
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built


@pytest.mark.parametrize(
    ("times", "field"),
    [
        ({"end": "9999-12-31T00:00:00Z"}, "end"),  # its outcome window would close in 10000
        ({"start": "9999-12-20T00:00:00Z"}, "start"),  # its default end would be in 10000
        ({"start": "0001-01-01T00:00:00+14:00"}, "start"),  # before year 1 in UTC
        ({"end": "9999-12-31T23:00:00-14:00"}, "end"),  # after year 9999 in UTC
        ({"start": "1969-12-31T23:59:59Z"}, "start"),
        ({"end": "9000-01-01T00:00:00Z"}, "end"),
    ],
)
def test_an_experiment_time_out_of_range_is_422_naming_it(
    stack: Stack, times: dict[str, str], field: str
) -> None:
    response = function_client("create_experiment").post(
        "/v1/experiments", json={**DESIGN, **times}, headers=stack.headers(("experiment:write",))
    )
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert [d["field"] for d in details] == [field]
    assert "1970-01-01T00:00:00Z" in details[0]["message"]


def test_the_last_time_in_range_is_accepted(stack: Stack) -> None:
    """8999-12-31: its window closes a year later, still a time every store can hold."""
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    response = function_client("create_experiment").post(
        "/v1/experiments",
        json={**DESIGN, "end": "8999-12-31T23:59:59Z"},
        headers=stack.headers(("experiment:write",)),
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert (body["end"], body["closes_at"]) == (
        "8999-12-31T23:59:59.000000Z",
        "9000-01-28T23:59:59.000000Z",
    )


@pytest.mark.parametrize("until", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"])
def test_a_shadow_until_out_of_range_is_422_naming_it(stack: Stack, until: str) -> None:
    response = function_client("promote_model").post(
        "/v1/models/risk/shadow",
        json={"version": "1.0.0", "until": until},
        headers=stack.headers(("admin",)),
    )
    details = assert_error(response, 422, "invalid_values")["error"]["details"]
    assert [d["field"] for d in details] == ["until"]
