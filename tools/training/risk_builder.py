"""Train, evaluate and package the IPO risk classifier.

The fitted scikit-learn pipeline is packaged as its numbers (``ipo-risk-linear/1``, JSON),
which serving evaluates with numpy alone; the build stops unless that artifact, loaded
as serving loads it, gives the pipeline's probabilities (tools/training/artifact_check.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from common.models.artifacts import canonical_json
from common.models.risk import (
    CLASSES,
    SECTORS,
    LinearModel,
    RiskRuntime,
    engineer_features,
    probe_rows,
)
from common.models.risk_schema import LINEAR_FORMAT
from common.promotion.gate import CLASSIFIER_DEFAULTS
from tools.training import synthetic
from tools.training.artifact_check import ArtifactMismatchError, same_probabilities
from tools.training.base import (
    BuiltModel,
    finish,
    fresh_sample_record,
    fresh_seed,
    median_instance,
    model_card,
)
from tools.training.synthetic import RiskDataset

FAIRNESS_MAX_GAP = 0.25
"""Largest allowed gap between sectors in the share of offerings flagged high risk."""

FRESH_SAMPLE_GAP = {"accuracy": 0.03, "calibration_ece": 0.02}
"""How far the test split's metrics may be from a fresh sample's (docs/models/risk.md)."""


def gate(fresh_sample: bool) -> dict[str, Any]:
    """With a fresh sample, the classifier defaults plus a bound on its gap to the split;
    without one, nothing declared (the defaults apply)."""
    if not fresh_sample:
        return {}
    spec = CLASSIFIER_DEFAULTS.model_copy(update={"max_fresh_sample_gap": FRESH_SAMPLE_GAP})
    return spec.model_dump(mode="json")


def build_pipeline(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("features", FunctionTransformer(engineer_features)),
            ("scale", StandardScaler()),
            ("classifier", LogisticRegression(C=3.0, max_iter=5000, random_state=seed)),
        ]
    )


def data_artifact(pipeline: Any, X_test: np.ndarray) -> tuple[bytes, dict[str, object]]:
    """The fitted pipeline as an ``ipo-risk-linear/1`` artifact, and the evidence that it
    reproduces the pipeline on the test split and the probe rows (else ArtifactMismatchError).
    """
    linear = LinearModel.of(pipeline)
    if linear is None:
        raise ArtifactMismatchError(
            "the fitted risk pipeline is not engineer_features -> StandardScaler -> "
            "LogisticRegression; it has no data artifact form"
        )
    artifact = canonical_json(linear.document([str(c) for c in pipeline.classes_]))
    return artifact, check_artifact(artifact, pipeline, X_test)


def check_artifact(artifact: bytes, pipeline: Any, X_test: np.ndarray) -> dict[str, object]:
    """Load the artifact from its bytes as serving does and compare probabilities."""
    runtime = RiskRuntime.from_artifact(artifact)
    order = [[str(c) for c in pipeline.classes_].index(c) for c in CLASSES]
    return same_probabilities(
        "risk",
        {
            name: (pipeline.predict_proba(X)[:, order], runtime.probabilities(X))
            for name, X in (("test_split", X_test), ("probe_rows", probe_rows()))
        },
    )


def calibration(
    proba: np.ndarray, predicted: np.ndarray, y_true: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """How far stated probabilities are from observed frequencies, on held-out rows.

    ``calibration_ece``: expected calibration error of the top class over ten confidence
    bins; ``brier``: the multi-class Brier score. Logistic regression is fitted on log
    loss, a proper scoring rule, so it is calibrated by construction; these numbers are
    the evidence.
    """
    confidence = proba.max(axis=1)
    correct = predicted == y_true
    edges = np.linspace(0.0, 1.0, 11)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    onehot = (y_true[:, None] == classes[None, :]).astype(float)
    brier = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    return {"calibration_ece": float(ece), "brier": brier}


def fairness_report(sectors: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Per sector: how often an offering is flagged high risk, against how often it is.

    A gap in flag rates that the true rates do not explain is a sign of bias; the report
    keeps both so a reviewer can tell the two apart.
    """
    groups = {}
    for index, name in enumerate(SECTORS):
        mask = sectors == index
        if not mask.any():
            continue
        groups[name] = {
            "count": int(mask.sum()),
            "flagged_high_rate": round(float(np.mean(y_pred[mask] == "high")), 6),
            "true_high_rate": round(float(np.mean(y_true[mask] == "high")), 6),
            "accuracy": round(float(np.mean(y_pred[mask] == y_true[mask])), 6),
        }
    rates = [g["flagged_high_rate"] for g in groups.values()]
    gap = round(max(rates) - min(rates), 6)
    return {
        "attribute": "sector",
        "metric": "flagged_high_rate",
        "groups": groups,
        "max_gap": gap,
        "threshold": FAIRNESS_MAX_GAP,
        "within_threshold": gap <= FAIRNESS_MAX_GAP,
    }


def scores(pipeline: Any, X: np.ndarray, y: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The recorded metrics of a fitted pipeline on labelled rows, and its predictions."""
    from sklearn.metrics import (
        accuracy_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    proba = pipeline.predict_proba(X)
    predicted = pipeline.classes_[proba.argmax(axis=1)]
    metrics = {
        **calibration(proba, predicted, y, pipeline.classes_),
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, average="macro")),
        "recall": float(recall_score(y, predicted, average="macro")),
        "roc_auc": float(roc_auc_score(y, proba, multi_class="ovr", labels=pipeline.classes_)),
        "log_loss": float(log_loss(y, proba, labels=pipeline.classes_)),
    }
    return metrics, predicted


def train(
    data: RiskDataset,
    *,
    seed: int,
    test_share: float = 0.25,
    fresh_seed_value: int | None = None,
) -> BuiltModel:
    """Fit on a stratified split and record the held-out metrics; with
    ``fresh_seed_value``, also the same metrics on a fresh synthetic sample of the same
    size drawn with that seed (``metrics_fresh_sample``), and a gate bounding their gap."""
    from sklearn import __version__ as sklearn_version
    from sklearn.model_selection import train_test_split

    rows = data.rows()
    X_train, X_test, y_train, y_test, rows_train, rows_test = train_test_split(
        data.X, data.y, rows, test_size=test_share, random_state=seed, stratify=data.y
    )
    pipeline = build_pipeline(seed).fit(X_train, y_train)
    metrics, predicted = scores(pipeline, X_test, y_test)
    metrics.update(train_rows=len(y_train), test_rows=len(y_test))
    fresh: dict[str, float] = {}
    if fresh_seed_value is not None:
        again = synthetic.generate(len(data.y), fresh_seed_value)
        fresh = fresh_sample_record(
            scores(pipeline, again.X, again.y)[0], n=len(again.y), seed=fresh_seed_value
        )
    artifact, equivalence = data_artifact(pipeline, X_test)
    card = model_card(
        intended_use=(
            "First screen of IPO risk at filing, to rank offerings for analyst review. "
            "Not an investment recommendation."
        ),
        training_data=(
            f"{len(rows)} synthetic IPOs (seeded generator documented in docs/models/risk.md); "
            f"{len(y_train)} for training, {len(y_test)} held out, stratified by class."
            + (
                f" Metrics checked on a fresh sample of {fresh['n']:.0f} companies drawn "
                f"with seed {fresh['seed']:.0f}: accuracy {fresh['accuracy']:.3f} "
                f"(held out {metrics['accuracy']:.3f}), calibration error "
                f"{fresh['calibration_ece']:.3f} ({metrics['calibration_ece']:.3f})."
                if fresh
                else ""
            )
        ),
        limitations=(
            "Trained on synthetic data: says nothing about real markets until retrained on "
            "real filings. Linear in its engineered features."
        ),
        risk_tier="high",
    )
    return finish(
        model_id="risk",
        runtime_class=RiskRuntime,
        artifact=artifact,
        description=(
            "Multinomial logistic regression over scaled financial, offering and market "
            "features; classifies an IPO as low, medium or high risk."
        ),
        metrics=metrics,
        card=card,
        training_rows=rows_train,
        held_out_rows=rows_test,
        reports={
            "fairness": fairness_report(X_test[:, 0], y_test, predicted),
            "artifact_check": equivalence,
        },
        tags={
            "framework": "scikit-learn",
            "sklearn_version": sklearn_version,
            "artifact_format": LINEAR_FORMAT,
        },
        gate=gate(bool(fresh)),
        metrics_fresh_sample=fresh,
        explanation_baseline=median_instance(rows_train, RiskRuntime),
    )


def build(seed: int, data: Path | None = None, samples: int = 8000) -> list[BuiltModel]:
    """The risk model from the synthetic dataset, or from the user's CSV (``data``)."""
    if data is not None:
        return [train(synthetic.from_csv(data), seed=seed)]
    dataset = synthetic.generate(samples, seed)
    return [train(dataset, seed=seed, fresh_seed_value=fresh_seed(seed))]


__all__ = [
    "CLASSES",
    "build",
    "build_pipeline",
    "check_artifact",
    "data_artifact",
    "fairness_report",
    "gate",
    "scores",
    "train",
]
