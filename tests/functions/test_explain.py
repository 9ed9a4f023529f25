"""``POST /v1/explain/<model>`` for every model, through its own prediction function:
attributions that add up, that are zero where nothing moves, that agree with the DCF's
sensitivity grid, reproducible, routed and audited like predictions, and bounded."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from flask.testing import FlaskClient

from common.api.routes import served_models
from common.audit.trail import ENTRIES
from tests.conftest import ROOT, function_client
from tests.support.fixtures import Stack

MODELS = served_models()
ROWS = 4


def production(stack: Stack, model_id: str) -> Any:
    version = stack.registry.get_model(model_id).production_version or ""
    return stack.registry.get_version(model_id, version)


def post(
    stack: Stack, model_id: str, body: dict[str, Any], permissions: tuple[str, ...] = ("admin",)
) -> Any:
    client: FlaskClient = function_client(f"predict_{model_id}")
    return client.post(f"/v1/explain/{model_id}", json=body, headers=stack.headers(permissions))


def explained(stack: Stack, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = post(stack, model_id, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer: dict[str, Any] = response.get_json()
    return answer


def rows(stack: Stack, model_id: str) -> list[dict[str, Any]]:
    return [g["instance"] for g in production(stack, model_id).golden_set[:ROWS]]


def predicted_outputs(model_id: str, prediction: dict[str, Any]) -> list[float]:
    """What each explained output is, read off the prediction a caller gets; risk's are
    compared as the probabilities they give (softmax of the centred log-odds)."""
    if model_id == "sentiment":
        return [prediction["score"]]
    if model_id == "risk":
        return list(prediction["probabilities"].values())
    return [prediction["value_per_share"]]


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v - max(values)) for v in values]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("model_id", MODELS)
def test_attributions_add_up_to_the_prediction(installed: Stack, model_id: str) -> None:
    answer = explained(installed, model_id, {"instances": rows(installed, model_id)})
    assert answer["model_version"] == production(installed, model_id).version
    assert answer["variant"] == "production"
    assert len(answer["explanations"]) == len(answer["predictions"]) == ROWS
    for prediction, explanation in zip(answer["predictions"], answer["explanations"], strict=True):
        outputs = predicted_outputs(model_id, prediction)
        explained_values = [a["instance_output_value"] for a in explanation["attributions"]]
        if model_id == "risk":  # the answer rounds its probabilities to 6 decimals
            explained_values = softmax(explained_values)
        assert explained_values == pytest.approx(outputs, abs=1e-6 if model_id == "risk" else 1e-9)
        for found in explanation["attributions"]:
            total = found["baseline_output_value"] + sum(found["feature_attributions"].values())
            assert abs(total - found["instance_output_value"]) <= (
                found["approximation_error"] + 1e-9
            )
            # the sum is exact on every sampled path, not only within the sampling error
            assert total == pytest.approx(found["instance_output_value"], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("model_id", MODELS)
def test_same_request_same_numbers(installed: Stack, model_id: str) -> None:
    body = {"instances": rows(installed, model_id)[:2], "parameters": {"explanation": {"seed": 5}}}
    first, again = explained(installed, model_id, body), explained(installed, model_id, body)
    assert first["explanations"] == again["explanations"]
    assert first["explanation_metadata"]["seed"] == (None if model_id == "risk" else 5)


CHANGES: dict[str, tuple[str, str, Any]] = {
    "cca": ("", "revenue_musd", 2.0),
    "dcf": ("", "operating_margin", 1.5),
    "risk": ("", "underwriter_rank", 0.5),
    "ensemble": ("risk", "underwriter_rank", 0.5),
}


@pytest.mark.parametrize("model_id", sorted(CHANGES))
def test_only_what_differs_from_the_baseline_is_attributed(installed: Stack, model_id: str) -> None:
    baseline = production(installed, model_id).explanation_baseline
    role, field, factor = CHANGES[model_id]
    instance = {k: dict(v) if isinstance(v, dict) else v for k, v in baseline.items()}
    target = instance[role] if role else instance
    target[field] = round(target[field] * factor, 6)
    answer = explained(installed, model_id, {"instances": [instance]})
    name = f"{role}.{field}" if role else field
    for found in answer["explanations"][0]["attributions"]:
        others = {k: v for k, v in found["feature_attributions"].items() if k != name}
        assert set(others.values()) == {0.0}
        moved = found["instance_output_value"] - found["baseline_output_value"]
        assert found["feature_attributions"][name] == pytest.approx(moved, abs=1e-12)
    assert answer["explanation_metadata"]["baseline"] == "version"


def test_a_sentence_without_tone_gets_zero(installed: Stack) -> None:
    text = "Revenue grew strongly and margins improved. The office is in Leeds. Losses widened."
    answer = explained(installed, "sentiment", {"instances": [{"text": text}]})
    [found] = answer["explanations"][0]["attributions"]
    assert found["baseline_output_value"] == 0.0
    assert found["feature_attributions"]["sentence_2"] == 0.0
    assert (
        found["feature_attributions"]["sentence_1"]
        > 0
        > found["feature_attributions"]["sentence_3"]
    )
    assert answer["explanations"][0]["feature_values"]["sentence_2"] == "The office is in Leeds. "
    assert answer["explanation_metadata"]["baseline"] == "absence"


def test_dcf_attributions_agree_in_sign_with_its_sensitivity_grid(installed: Stack) -> None:
    baseline = production(installed, "dcf").explanation_baseline
    instance = {
        **baseline,
        "wacc": round(baseline["wacc"] + 0.02, 6),
        "terminal_growth": round(baseline["terminal_growth"] - 0.005, 6),
    }
    answer = explained(installed, "dcf", {"instances": [instance]})
    [found] = answer["explanations"][0]["attributions"]
    grid = answer["predictions"][0]["sensitivity"]
    rates = [row["discount_rate"] for row in grid["rows"]]
    growths = grid["terminal_growths"]
    r = min(range(len(rates)), key=lambda i: abs(rates[i] - instance["wacc"]))
    g = min(range(len(growths)), key=lambda i: abs(growths[i] - instance["terminal_growth"]))
    values = [row["value_per_share"] for row in grid["rows"]]
    by_rate = values[r + 1][g] - values[r - 1][g]  # rates ascend
    by_growth = values[r][g + 1] - values[r][g - 1]
    attributions = found["feature_attributions"]
    assert math.copysign(1, attributions["wacc"]) == math.copysign(1, by_rate * 0.02)
    assert math.copysign(1, attributions["terminal_growth"]) == math.copysign(1, -by_growth)
    assert attributions["wacc"] != 0
    assert attributions["terminal_growth"] != 0


def test_a_baseline_in_the_request_overrides_the_versions(installed: Stack) -> None:
    [first, second] = rows(installed, "cca")[:2]
    body = {"instances": [first], "parameters": {"explanation": {"baseline": second}}}
    answer = explained(installed, "cca", body)
    [found] = answer["explanations"][0]["attributions"]
    assert answer["explanation_metadata"]["baseline"] == "request"
    assert answer["explanation_metadata"]["baseline_instance"] == second
    other = explained(installed, "cca", {"instances": [second]})
    assert found["baseline_output_value"] == other["predictions"][0]["value_per_share"]


def test_a_request_over_the_budget_is_a_422_naming_the_limit(installed: Stack) -> None:
    instances = rows(installed, "cca")[:1] * 6
    body = {"instances": instances, "parameters": {"explanation": {"paths": 200}}}
    response = post(installed, "cca", body)
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "6 instances x 200 paths = 1200" in message
    assert "budget of 500" in message


@pytest.mark.parametrize("paths", [1, 201])
def test_paths_outside_their_bounds_are_a_422(installed: Stack, paths: int) -> None:
    body = {
        "instances": rows(installed, "cca")[:1],
        "parameters": {"explanation": {"paths": paths}},
    }
    response = post(installed, "cca", body)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "parameters.explanation.paths"


def test_explaining_needs_the_explain_permission(installed: Stack) -> None:
    body = {"instances": rows(installed, "risk")[:1]}
    assert post(installed, "risk", body, ("model:*:predict",)).status_code == 403
    assert post(installed, "risk", body, ("model:risk:explain",)).status_code == 200


def test_an_explanation_is_audited_with_its_bodies_sealed(installed: Stack) -> None:
    body = {"instances": rows(installed, "risk")[:1]}
    response = post(installed, "risk", body)
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    stored = [
        d
        for d in installed.services.backends.documents.query(ENTRIES)
        if d.data.get("request_id") == request_id
    ]
    [entry] = stored
    assert entry.data["operation"] == "explainRisk"
    assert "financial_data" not in entry.data  # sealed, never stored in clear
    opened = installed.services.cipher.open(entry.id, entry.data["sealed"])
    assert json.loads(opened["financial_data"]) == body
    assert (
        json.loads(opened["proprietary_metrics"])["explanations"]
        == response.get_json()["explanations"]
    )


def test_the_benchmark_times_every_model(installed: Stack) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_explain

    rows = bench_explain.bench_explain(
        installed.settings, paths=2, batch=1, repeats=1, prepare=lambda inputs: inputs
    )
    assert sorted(r["model"] for r in rows) == sorted(MODELS)
    assert all(r["ms_per_instance"] > 0 for r in rows)
    table = bench_explain.markdown(rows, {"cpu": "test cpu", "cores": 2, "python": "3.11"})
    assert "| risk | 1.0.0 | exact_linear | - | 1 | 10 |" in table


def register(stack: Stack, model_id: str, version: str, **extra: Any) -> Any:
    record = production(stack, model_id)
    artifact = stack.registry.read_artifact(record)
    body = {
        "version": version,
        "kind": record.kind,
        "artifact_base64": base64.b64encode(artifact).decode(),
        **extra,
    }
    return function_client("register_model").post(
        f"/v1/models/{model_id}/versions", json=body, headers=stack.headers()
    )


def test_a_registered_baseline_is_kept_and_shown(installed: Stack) -> None:
    baseline = rows(installed, "cca")[1]
    response = register(installed, "cca", "9.0.0", explanation_baseline=baseline)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["explanation_baseline"] == baseline
    assert installed.registry.get_version("cca", "9.0.0").explanation_baseline == baseline
    bare = register(installed, "cca", "9.0.1")
    assert bare.status_code == 201
    assert bare.get_json()["explanation_baseline"] is None


def test_a_registered_baseline_must_be_an_instance(installed: Stack) -> None:
    baseline = {**rows(installed, "cca")[1], "sector": "mining"}
    response = register(installed, "cca", "9.0.2", explanation_baseline=baseline)
    assert response.status_code == 422
    fields = [d["field"] for d in response.get_json()["error"]["details"]]
    assert fields == ["explanation_baseline.sector"]
    text = register(installed, "sentiment", "9.0.0", explanation_baseline={"text": "Fine."})
    assert text.status_code == 422
    assert "takes no baseline" in text.get_json()["error"]["message"]


def test_the_ensembles_numbers_do_not_depend_on_key_order(installed: Stack) -> None:
    [instance] = rows(installed, "ensemble")[:1]
    reordered = {
        role: dict(reversed(list(part.items()))) for role, part in reversed(instance.items())
    }
    answers = []
    for sent in (instance, reordered):  # as written: the test client would sort the keys
        response = function_client("predict_ensemble").post(
            "/v1/explain/ensemble",
            data=json.dumps({"instances": [sent]}),
            content_type="application/json",
            headers=installed.headers(),
        )
        assert response.status_code == 200
        answers.append(response.get_json()["explanations"])
    assert answers[0] == answers[1]
