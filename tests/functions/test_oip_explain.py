"""The Open Inference Protocol's ``explain`` extension: tensors in, the predictions as
output tensors and each instance's attributions out, the numbers /v1/explain gives."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import function_client
from tests.functions.test_oip import _risk_request
from tests.support.fixtures import Stack


def explain_v2(stack: Stack, body: dict[str, Any], perms: tuple[str, ...]) -> Any:
    return function_client("predict_risk").post(
        "/v2/models/risk/explain", json=body, headers=stack.headers(perms)
    )


def test_v2_explain_gives_the_numbers_of_v1_explain(stack: Stack) -> None:
    body = _risk_request(stack, 2)
    response = explain_v2(stack, body, ("model:risk:explain",))
    assert response.status_code == 200, response.get_data(as_text=True)
    found = response.get_json()
    assert (found["model_name"], found["model_version"]) == ("risk", "1.0.0")
    assert found["parameters"]["variant"] == "production"
    assert {o["name"] for o in found["outputs"]} >= {"risk_class", "risk_score"}
    example = stack.registry.get_version("risk", "1.0.0").example
    v1 = (
        function_client("predict_risk")
        .post(
            "/v1/explain/risk",
            json={"instances": [example, example]},
            headers=stack.headers(("model:risk:explain",)),
        )
        .get_json()
    )
    assert found["explanations"] == v1["explanations"]
    assert found["explanation_metadata"] == v1["explanation_metadata"]
    inference = (
        function_client("predict_risk")
        .post("/v2/models/risk/infer", json=body, headers=stack.headers(("model:risk:predict",)))
        .get_json()
    )
    assert found["outputs"] == inference["outputs"]


def test_v2_explain_takes_its_options_as_parameters(stack: Stack) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    baseline = {**example, "revenue_growth": 0.0}
    body = {
        **_risk_request(stack, 1),
        "parameters": {"explanation_baseline": json.dumps(baseline)},
    }
    found = explain_v2(stack, body, ("model:risk:explain",)).get_json()
    assert found["explanation_metadata"]["baseline"] == "request"
    assert found["explanation_metadata"]["baseline_instance"] == baseline
    bad = {**body, "parameters": {"explanation_baseline": "not json"}}
    refused = explain_v2(stack, bad, ("model:risk:explain",))
    assert refused.status_code == 400
    assert "explanation_baseline" in refused.get_json()["error"]


def test_v2_explain_needs_the_explain_permission_and_is_listed(stack: Stack) -> None:
    refused = explain_v2(stack, _risk_request(stack, 1), ("model:risk:predict",))
    assert refused.status_code == 403
    assert isinstance(refused.get_json()["error"], str)  # the protocol's error shape
    server = function_client("list_models").get("/v2", headers=stack.headers(("model:read",)))
    assert server.get_json()["extensions"] == ["explain"]


def test_a_baseline_nested_past_the_parser_s_depth_is_400(stack: Stack) -> None:
    deep = "[" * 3000 + "]" * 3000
    body = {**_risk_request(stack, 1), "parameters": {"explanation_baseline": deep}}
    refused = explain_v2(stack, body, ("model:risk:explain",))
    assert refused.status_code == 400, refused.get_data(as_text=True)
    answer = refused.get_json()
    assert answer["code"] == "malformed_request"
    assert answer["error"].startswith("parameter explanation_baseline must be a JSON object")


def test_a_wrong_option_is_named_as_the_parameter_sent(stack: Stack) -> None:
    example = stack.registry.get_version("risk", "1.0.0").example
    parameters = {
        "explanation_paths": -1,
        "explanation_seed": "x",
        "explanation_baseline": json.dumps({**example, "revenue_musd": -5.0}),
    }
    for name, value in parameters.items():
        body = {**_risk_request(stack, 1), "parameters": {name: value}}
        refused = explain_v2(stack, body, ("model:risk:explain",))
        assert refused.status_code == 422, refused.get_data(as_text=True)
        answer = refused.get_json()
        (detail,) = answer["details"]
        assert detail["field"].startswith(f"parameters.{name}"), detail
        assert detail["path"][:2] == ["parameters", name]
        assert f"parameters.{name}" in answer["error"]
        assert "parameters.explanation." not in refused.get_data(as_text=True)
