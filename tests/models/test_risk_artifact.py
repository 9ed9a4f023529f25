"""The risk data artifact: canonical bytes, strict loading, and the build-time check."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from common.core.errors import IntegrityError
from common.models.risk import CLASSES, RiskRuntime
from tests.support.fixtures import SEED, risk_pipeline, trained_risk
from tools.training import risk_builder, synthetic
from tools.training.artifact_check import TOLERANCE, ArtifactMismatchError
from tools.training.risk_builder import check_artifact, data_artifact

Document = dict[str, Any]


def document() -> Document:
    payload: Document = json.loads(trained_risk().artifact)
    return payload


def encoded(change: Callable[[Document], object]) -> bytes:
    doc = document()
    change(doc)
    return json.dumps(doc).encode()


def test_the_document_holds_the_fitted_numbers_exactly() -> None:
    fitted = risk_pipeline()
    artifact, _ = data_artifact(fitted, synthetic.generate(100, SEED + 1).X)
    doc = json.loads(artifact)
    assert doc["format"] == "ipo-risk-linear/1"
    assert doc["classes"] == [str(c) for c in fitted.classes_]
    assert doc["transform"]["name"] == "engineer_features"
    assert np.array_equal(doc["coef"], fitted[-1].coef_)
    assert np.array_equal(doc["intercept"], fitted[-1].intercept_)
    assert np.array_equal(doc["scaler"]["mean"], fitted[1].mean_)
    assert np.array_equal(doc["scaler"]["scale"], fitted[1].scale_)
    # canonical: sorted keys, no whitespace, so one fit gives one SHA-256
    assert artifact == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_the_build_records_how_close_the_artifact_is() -> None:
    check = trained_risk().reports["artifact_check"]
    assert check["tolerance"] == TOLERANCE
    assert check["rows"] == {"test_split": trained_risk().metrics["test_rows"], "probe_rows": 64}
    assert all(0.0 <= d <= TOLERANCE for d in check["max_abs_diff"].values())


def _perturbed(doc: Document) -> None:
    doc["intercept"][0] += 1e-6


def test_a_perturbed_coefficient_is_refused_by_the_check() -> None:
    fitted = risk_pipeline()
    X = synthetic.generate(200, SEED + 1).X
    artifact, report = data_artifact(fitted, X)
    assert check_artifact(artifact, fitted, X) == report
    doc = json.loads(artifact)
    doc["coef"][1][3] *= 1.0 + 1e-6
    with pytest.raises(ArtifactMismatchError, match="disagrees with its fitted pipeline"):
        check_artifact(json.dumps(doc).encode(), fitted, X)


def test_the_builder_refuses_to_build_an_artifact_that_disagrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = risk_builder.canonical_json

    def perturbing(doc: Document) -> bytes:
        _perturbed(doc)
        return real(doc)

    monkeypatch.setattr(risk_builder, "canonical_json", perturbing)
    with pytest.raises(ArtifactMismatchError, match=r"test_split|probe_rows"):
        risk_builder.train(synthetic.generate(600, SEED), seed=SEED)


def test_a_pipeline_of_another_shape_has_no_data_artifact() -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    data = synthetic.generate(300, SEED)
    tree = Pipeline([("classifier", DecisionTreeClassifier(max_depth=3))]).fit(data.X, data.y)
    with pytest.raises(ArtifactMismatchError, match="no data artifact form"):
        data_artifact(tree, data.X)


def _set(path: str, value: object) -> Callable[[Document], object]:
    def change(doc: Document) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("extra", 1), "extra: Extra inputs are not permitted"),
        (lambda d: d.pop("intercept"), "intercept: Field required"),
        (_set("coef.0.0", "0.5"), "coef[0][0]: Input should be a valid number"),
        (_set("scaler.scale.2", 0.0), "scaler.scale[2]: Input should be greater than 0"),
        (lambda d: d["coef"][2].pop(), "coef[2]: expected 14 values, one per engineered feature"),
        (lambda d: d["scaler"]["mean"].append(0.0), "scaler.mean: expected 14"),
        (lambda d: d["intercept"].pop(), "3 classes, 3 coefficient rows and 2 intercepts"),
        (_set("classes", ["high", "high", "low"]), "classes lists a name twice"),
        (_set("classes", ["high", "low", "severe"]), "predicts"),
        (_set("format", "ipo-risk-linear/2"), "not a ipo-risk-linear/1"),
        (_set("features.2", "revenue_musd"), "document: Value error, features lists a name twice"),
        (lambda d: d["features"].reverse(), "different feature list"),
        (_set("transform.log1p", ["revenue_musd"]), "feature transform"),
        (_set("transform.categories", ["technology", "other"]), "engineered feature"),
        (_set("transform.name", "pca"), "transform.name"),
    ],
)
def test_malformed_documents_are_integrity_errors(
    change: Callable[[Document], object], message: str
) -> None:
    with pytest.raises(IntegrityError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RiskRuntime.from_artifact(encoded(change))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_numbers_must_be_finite(value: float) -> None:
    """Python's json reads NaN and Infinity; the schema refuses them."""
    doc = document()
    doc["intercept"][0] = value
    with pytest.raises(IntegrityError, match=r"intercept\[0\]: Input should be a finite number"):
        RiskRuntime.from_artifact(json.dumps(doc).encode())


def test_the_loaded_numbers_give_the_pipelines_classes_in_order() -> None:
    runtime = RiskRuntime.from_artifact(trained_risk().artifact)
    proba = runtime.probabilities(synthetic.generate(50, SEED + 4).X)
    assert proba.shape == (50, len(CLASSES))
    assert np.allclose(proba.sum(axis=1), 1.0)
