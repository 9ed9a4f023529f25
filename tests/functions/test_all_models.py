"""Every model, end to end: discover its schema and example, then predict with the example."""

from __future__ import annotations

import jsonschema
import pytest
from flask.testing import FlaskClient

from common.api.routes import served_models
from tests.conftest import function_client
from tests.support.fixtures import Stack

MODELS = served_models()


def client(name: str) -> FlaskClient:
    return function_client(name)


@pytest.mark.parametrize("model_id", MODELS)
def test_example_from_discovery_predicts(installed: Stack, model_id: str) -> None:
    headers = installed.headers()
    detail = client("list_models").get(f"/v1/models/{model_id}", headers=headers)
    assert detail.status_code == 200, detail.get_data(as_text=True)
    production = detail.get_json()["production"]
    assert production["model_card"]["intended_use"]
    jsonschema.Draft202012Validator.check_schema(production["input_schema"])
    if model_id != "ensemble":  # the ensemble's parts are checked by each component's schema
        jsonschema.validate(production["example"], production["input_schema"])
    response = client(f"predict_{model_id}").post(
        f"/v1/predict/{model_id}", json={"instances": [production["example"]]}, headers=headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["model_id"] == model_id
    assert body["model_version"] == production["version"]
    assert len(body["predictions"]) == 1


@pytest.mark.parametrize("model_id", MODELS)
def test_golden_set_reproduces_through_http(installed: Stack, model_id: str) -> None:
    record = installed.registry.get_version(
        model_id, installed.registry.get_model(model_id).production_version or ""
    )
    golden = record.golden_set
    assert golden
    response = client(f"predict_{model_id}").post(
        f"/v1/predict/{model_id}",
        json={"instances": [g["instance"] for g in golden]},
        headers=installed.headers(),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["predictions"] == [g["expected"] for g in golden]


def test_ensemble_error_names_component_and_field(installed: Stack) -> None:
    record = installed.registry.get_version("ensemble", "1.0.0")
    bad = {**record.example, "dcf": {**record.example["dcf"], "revenue_musd": -5.0}}
    response = client("predict_ensemble").post(
        "/v1/predict/ensemble", json={"instances": [bad]}, headers=installed.headers()
    )
    assert response.status_code == 422
    (problem,) = response.get_json()["error"]["details"]
    assert problem["field"] == "instances[0].dcf.revenue_musd"
    assert problem["component"] == "dcf"


def test_sentiment_has_a_candidate_version(installed: Stack) -> None:
    model = installed.registry.get_model("sentiment")
    versions = [v.version for v in installed.registry.list_versions("sentiment")]
    assert versions == ["1.0.0", "1.1.0"]
    assert model.production_version == "1.0.0"


def test_words_that_look_like_injection_are_just_text(installed: Stack) -> None:
    """No blacklist: strict schemas decide, so 'Select Medical' and markup are ordinary text."""
    text = "Select Medical (NYSE: SEM) said DROP TABLE was a typo; <script>alert(1)</script> OR 1=1"
    response = client("predict_sentiment").post(
        "/v1/predict/sentiment", json={"instances": [{"text": text}]}, headers=installed.headers()
    )
    assert response.status_code == 200, response.get_data(as_text=True)
