"""Train, evaluate and package the IPO risk classifier."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.models.base import joblib_dump
from common.models.risk import (
    ARTIFACT_FORMAT,
    FEATURES,
    RiskInstance,
    RiskRuntime,
    engineer_features,
)
from common.training.synthetic import RiskDataset


@dataclass(frozen=True)
class TrainedModel:
    artifact: bytes
    metrics: dict[str, float]
    example: dict[str, Any]
    description: str
    tags: dict[str, str] = field(default_factory=dict)


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


def _latency_p95_ms(runtime: RiskRuntime, example: dict[str, Any], repeats: int = 300) -> float:
    instance = [RiskInstance.model_validate(example)]
    runtime.predict(instance, None)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        runtime.predict(instance, None)
        timings.append((time.perf_counter() - started) * 1000.0)
    return float(np.percentile(timings, 95))


def _example(row: dict[str, object]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def train(data: RiskDataset, *, seed: int, test_share: float = 0.25) -> TrainedModel:
    from sklearn import __version__ as sklearn_version
    from sklearn.metrics import (
        accuracy_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test, _, rows_test = train_test_split(
        data.X, data.y, data.rows(), test_size=test_share, random_state=seed, stratify=data.y
    )
    pipeline = build_pipeline(seed).fit(X_train, y_train)
    proba = pipeline.predict_proba(X_test)
    predicted = pipeline.classes_[proba.argmax(axis=1)]
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "precision_macro": float(precision_score(y_test, predicted, average="macro")),
        "recall_macro": float(recall_score(y_test, predicted, average="macro")),
        "roc_auc_ovr": float(
            roc_auc_score(y_test, proba, multi_class="ovr", labels=pipeline.classes_)
        ),
        "log_loss": float(log_loss(y_test, proba, labels=pipeline.classes_)),
        "train_rows": float(len(y_train)),
        "test_rows": float(len(y_test)),
    }
    artifact = joblib_dump(
        {"format": ARTIFACT_FORMAT, "features": list(FEATURES), "pipeline": pipeline}
    )
    example = _example(rows_test[0])
    runtime = RiskRuntime.from_artifact(artifact)
    metrics["latency_p95_ms"] = _latency_p95_ms(runtime, example)
    return TrainedModel(
        artifact=artifact,
        metrics={k: round(v, 6) for k, v in metrics.items()},
        example=example,
        description=(
            "Multinomial logistic regression over scaled financial, offering and market "
            "features; classifies an IPO as low, medium or high risk."
        ),
        tags={"framework": "scikit-learn", "sklearn_version": sklearn_version},
    )
