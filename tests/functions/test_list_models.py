"""list_models through functions-framework: discovery of models and how to call them."""

from __future__ import annotations

import jsonschema
from flask.testing import FlaskClient

from tests.conftest import function_client
from tests.functions.test_predict_risk import assert_error
from tests.support.fixtures import Stack, register_risk


def test_lists_models_with_production_version(
    list_models_client: FlaskClient, stack: Stack
) -> None:
    response = list_models_client.get("/v1/models", headers=stack.headers(("model:read",)))
    assert response.status_code == 200
    (model,) = response.get_json()["models"]
    assert model["model_id"] == "risk"
    assert model["kind"] == "risk"
    assert model["production_version"] == "1.0.0"
    assert model["generation"] == 1


def test_model_detail_gives_a_schema_and_an_example_that_predicts(
    list_models_client: FlaskClient, stack: Stack
) -> None:
    response = list_models_client.get("/v1/models/risk", headers=stack.headers(("model:read",)))
    assert response.status_code == 200
    body = response.get_json()
    production = body["production"]
    assert production["version"] == "1.0.0"
    assert len(production["artifact_sha256"]) == 64
    assert production["metrics"]["accuracy"] > 0.5
    jsonschema.Draft202012Validator.check_schema(production["input_schema"])
    jsonschema.validate(production["example"], production["input_schema"])
    assert [v["version"] for v in body["versions"]] == ["1.0.0"]
    assert "input_schema" not in body["versions"][0]

    predicted = function_client("predict_risk").post(
        "/v1/predict/risk",
        json={"instances": [production["example"]]},
        headers=stack.headers(("model:risk:predict",)),
    )
    assert predicted.status_code == 200


def test_schema_refuses_what_the_api_refuses(list_models_client: FlaskClient, stack: Stack) -> None:
    body = list_models_client.get("/v1/models/risk", headers=stack.headers()).get_json()
    schema, example = body["production"]["input_schema"], body["production"]["example"]
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({**example, "revenue_musd": -1})
    assert not validator.is_valid({**example, "sector": "mining"})
    assert not validator.is_valid({**example, "unknown": 1})


def test_versions_are_listed_in_semantic_order(
    list_models_client: FlaskClient, stack: Stack
) -> None:
    for version in ("1.10.0", "1.2.0", "1.0.1"):
        register_risk(stack.lifecycle, version, promote=False)
    body = list_models_client.get("/v1/models/risk", headers=stack.headers()).get_json()
    assert [v["version"] for v in body["versions"]] == ["1.0.0", "1.0.1", "1.2.0", "1.10.0"]
    assert body["production_version"] == "1.0.0"


def test_unknown_model_is_404(list_models_client: FlaskClient, stack: Stack) -> None:
    response = list_models_client.get("/v1/models/nope", headers=stack.headers())
    assert_error(response, 404, "not_found")


def test_invalid_model_id_is_404(list_models_client: FlaskClient, stack: Stack) -> None:
    response = list_models_client.get("/v1/models/UPPER", headers=stack.headers())
    assert_error(response, 404, "not_found")


def test_read_needs_model_read(list_models_client: FlaskClient, stack: Stack) -> None:
    response = list_models_client.get("/v1/models", headers=stack.headers(("model:risk:predict",)))
    assert_error(response, 403, "forbidden")


def test_post_is_405(list_models_client: FlaskClient, stack: Stack) -> None:
    response = list_models_client.post("/v1/models", json={}, headers=stack.headers())
    assert_error(response, 405, "method_not_allowed")


def test_empty_registry_lists_nothing(empty_stack: Stack) -> None:
    response = function_client("list_models").get("/v1/models", headers=empty_stack.headers())
    assert response.status_code == 200
    assert response.get_json() == {"models": []}
