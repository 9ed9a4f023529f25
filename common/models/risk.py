"""IPO risk: a fitted linear pipeline that classifies an offering as low, medium or high risk.

The output per instance is the class, the class probabilities and a 0-100 risk score,
the expected risk on a scale where low = 0, medium = 50 and high = 100:
``score = 100 * (0.5 * P(medium) + 1.0 * P(high))``. ``predict_proba`` runs once per
batch and the class is derived from it, so the label always agrees with the
probabilities.

Two artifact forms are served. The builder writes ``ipo-risk-linear/1``, the fitted
numbers as JSON (common/models/risk_schema.py), evaluated here with numpy: loading it
imports neither scikit-learn nor joblib. A user's own pickled pipeline (``ipo-risk/1``,
joblib) is still served; only that path imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from common.core.errors import IntegrityError
from common.core.validation import StrictModel
from common.models.artifacts import json_or_joblib, validated
from common.models.base import ModelRuntime
from common.models.risk_schema import LINEAR_FORMAT, TRANSFORM, RiskLinearArtifact

PIPELINE_FORMAT = "ipo-risk/1"
"""A joblib file holding ``{"format", "features", "pipeline"}``: a user's fitted pipeline."""
SECTORS = ("technology", "healthcare", "finance", "retail", "manufacturing")
CLASSES = ("low", "medium", "high")
CLASS_WEIGHTS = np.array([0.0, 0.5, 1.0])
TOP_FEATURES = 3

Sector = Literal["technology", "healthcare", "finance", "retail", "manufacturing"]


class RiskInstance(StrictModel):
    """One company going public, described at the time of its filing."""

    sector: Sector = Field(description="Industry sector of the issuer.")
    revenue_musd: float = Field(ge=0, le=1_000_000, description="Last fiscal year revenue, USD m.")
    revenue_growth: float = Field(
        ge=-1, le=10, description="Year-over-year revenue growth, 0.25 = 25%."
    )
    operating_margin: float = Field(ge=-5, le=1, description="Operating income / revenue.")
    debt_to_equity: float = Field(ge=0, le=50, description="Total debt / shareholders' equity.")
    company_age_years: float = Field(ge=0, le=300, description="Years since founding.")
    offering_size_musd: float = Field(gt=0, le=100_000, description="Gross proceeds sought, USD m.")
    underwriter_rank: float = Field(ge=0, le=9, description="Lead underwriter prestige, 0-9.")
    market_volatility: float = Field(ge=0, le=150, description="VIX level on the filing date.")
    insider_ownership: float = Field(
        ge=0, le=1, description="Share held by insiders after the offering."
    )


FEATURES: tuple[str, ...] = tuple(RiskInstance.model_fields)
LOG1P = ("revenue_musd", "debt_to_equity", "offering_size_musd")
_SKEWED = np.array([FEATURES.index(n) for n in LOG1P])
_SECTOR_CODES = np.arange(len(SECTORS), dtype=np.float64)


def engineer_features(X: np.ndarray) -> np.ndarray:
    """One-hot sector, log1p of the heavy-tailed amounts, the rest as given.

    One numpy function instead of a ColumnTransformer: the same features at a tenth of
    the per-call overhead, which dominates single-row latency. Pickled artifacts refer to
    it by name, so it must keep its name and meaning for as long as they are served.
    """
    numeric = X[:, 1:].copy()
    numeric[:, _SKEWED - 1] = np.log1p(numeric[:, _SKEWED - 1])
    one_hot = (X[:, :1] == _SECTOR_CODES).astype(np.float64)
    return np.hstack([one_hot, numeric])


def to_matrix(instances: Sequence[RiskInstance]) -> np.ndarray:
    """Rows of floats in FEATURES order; the sector becomes its index in SECTORS."""
    sector_index = {name: float(i) for i, name in enumerate(SECTORS)}
    return np.array(
        [
            [
                sector_index[x.sector],
                x.revenue_musd,
                x.revenue_growth,
                x.operating_margin,
                x.debt_to_equity,
                x.company_age_years,
                x.offering_size_musd,
                x.underwriter_rank,
                x.market_volatility,
                x.insider_ownership,
            ]
            for x in instances
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class LinearModel:
    """The fitted numbers of feature step -> StandardScaler -> multinomial logistic
    regression, evaluated with plain numpy: the same probabilities without scikit-learn's
    per-call checks, which cost ten times the arithmetic for one row. Read from a data
    artifact (``from_document``) or off a user's fitted pipeline (``of``)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def of(cls, pipeline: Any) -> LinearModel | None:
        """The pipeline's numbers, if it has exactly the shape this class evaluates."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        steps = [step for _, step in pipeline.steps]
        if not (
            len(steps) == 3
            and isinstance(steps[0], FunctionTransformer)
            and steps[0].func is engineer_features
            and steps[0].inverse_func is None
            and isinstance(steps[1], StandardScaler)
            and isinstance(steps[2], LogisticRegression)
            and steps[2].coef_.shape[0] == len(CLASSES)
        ):
            return None
        scaler, estimator = steps[1], steps[2]
        return cls(
            mean=np.asarray(scaler.mean_ if scaler.with_mean else 0.0, dtype=np.float64),
            scale=np.asarray(scaler.scale_ if scaler.with_std else 1.0, dtype=np.float64),
            coef=np.asarray(estimator.coef_, dtype=np.float64),
            intercept=np.asarray(estimator.intercept_, dtype=np.float64),
        )

    @classmethod
    def from_document(cls, document: RiskLinearArtifact) -> LinearModel:
        """The numbers of a validated data artifact, as float64 arrays."""
        return cls(
            mean=np.asarray(document.scaler.mean, dtype=np.float64),
            scale=np.asarray(document.scaler.scale, dtype=np.float64),
            coef=np.asarray(document.coef, dtype=np.float64),
            intercept=np.asarray(document.intercept, dtype=np.float64),
        )

    def document(self, classes: Sequence[str]) -> dict[str, Any]:
        """The ``ipo-risk-linear/1`` document of these numbers (``classes``: coef row order).

        Python floats are written by ``repr``, so the document reads back to these exact
        doubles.
        """
        width = self.coef.shape[1]
        return {
            "format": LINEAR_FORMAT,
            "features": list(FEATURES),
            "transform": {
                "name": TRANSFORM,
                "one_hot": FEATURES[0],
                "categories": list(SECTORS),
                "log1p": list(LOG1P),
            },
            "scaler": {
                "mean": np.broadcast_to(self.mean, (width,)).tolist(),
                "scale": np.broadcast_to(self.scale, (width,)).tolist(),
            },
            "classes": [str(c) for c in classes],
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    def scaled(self, X: np.ndarray) -> np.ndarray:
        result: np.ndarray = (engineer_features(X) - self.mean) / self.scale
        return result

    def proba(self, scaled: np.ndarray) -> np.ndarray:
        # Elementwise products summed per row (not a BLAS product, whose summation order
        # can change with the batch size): a row's answer never depends on its batch.
        logits = (scaled[:, None, :] * self.coef[None, :, :]).sum(axis=2) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        result: np.ndarray = odds / odds.sum(axis=1, keepdims=True)
        return result


def probe_rows(n: int = 64, seed: int = 0) -> np.ndarray:
    """Inputs spread over every field's range, to check a fast path against the pipeline."""
    rng = np.random.default_rng(seed)
    columns = [rng.integers(0, len(SECTORS), n).astype(np.float64)]
    for name in FEATURES[1:]:
        low, high = _bounds(name)
        columns.append(rng.uniform(low, high, n))
    return np.column_stack(columns)


def _bounds(name: str) -> tuple[float, float]:
    schema = RiskInstance.model_json_schema()["properties"][name]
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0.0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 1.0))
    return float(low) + 1e-6, float(high)


class RiskRuntime(ModelRuntime):
    kind: ClassVar[str] = "risk"
    classifier: ClassVar[bool] = True
    instance_schema: ClassVar[type[StrictModel]] = RiskInstance

    def __init__(
        self, classes: Sequence[str], linear: LinearModel | None, pipeline: Any = None
    ) -> None:
        if linear is None and pipeline is None:
            raise TypeError("a risk runtime needs the linear numbers or a pipeline")
        self._pipeline = pipeline
        # Column order of the probabilities follows the fitted classes.
        self._classes = list(classes)
        self._order = np.array([self._classes.index(c) for c in CLASSES])
        self._linear = linear
        self._weights: np.ndarray | None = None
        if linear is not None:
            # Centred per class: what moves class k against the average class, in CLASSES order.
            coef = linear.coef
            self._weights = (coef - coef.mean(axis=0, keepdims=True))[self._order]

    @classmethod
    def from_artifact(cls, data: bytes) -> RiskRuntime:
        payload, is_json = json_or_joblib(data)
        if is_json:
            return cls._from_document(payload)
        return cls._from_pipeline(payload)

    @classmethod
    def _from_document(cls, payload: Any) -> RiskRuntime:
        if not isinstance(payload, dict) or payload.get("format") != LINEAR_FORMAT:
            raise IntegrityError(f"JSON artifact is not a {LINEAR_FORMAT} risk model")
        document = validated(RiskLinearArtifact, payload, f"{LINEAR_FORMAT} risk model")
        if tuple(document.features) != FEATURES:
            raise IntegrityError("risk artifact was trained on a different feature list")
        transform = document.transform
        if (transform.one_hot, tuple(transform.categories), tuple(transform.log1p)) != (
            FEATURES[0],
            SECTORS,
            LOG1P,
        ):
            raise IntegrityError(
                f"risk artifact's feature transform is not this code's {TRANSFORM}: "
                f"one-hot {transform.one_hot} over {transform.categories}, log1p {transform.log1p}"
            )
        _check_classes(document.classes)
        return cls(document.classes, LinearModel.from_document(document))

    @classmethod
    def _from_pipeline(cls, payload: Any) -> RiskRuntime:
        if not isinstance(payload, dict) or payload.get("format") != PIPELINE_FORMAT:
            raise IntegrityError(f"artifact is not a {PIPELINE_FORMAT} risk model")
        if tuple(payload.get("features", ())) != FEATURES:
            raise IntegrityError("risk artifact was trained on a different feature list")
        pipeline = payload["pipeline"]
        classes = [str(c) for c in pipeline.classes_]
        _check_classes(classes)
        linear = LinearModel.of(pipeline)
        if linear is not None:
            expected = pipeline.predict_proba(probe_rows())
            if not np.allclose(
                linear.proba(linear.scaled(probe_rows())), expected, rtol=0, atol=1e-9
            ):
                raise IntegrityError("risk artifact's fast path disagrees with its pipeline")
        return cls(classes, linear, pipeline)

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities in CLASSES order for rows in FEATURES order (``to_matrix``)."""
        return self._scaled_and_proba(X)[1]

    def _scaled_and_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._linear is not None:
            scaled = self._linear.scaled(X)
            return scaled, self._linear.proba(scaled)[:, self._order]
        # Another estimator (a user's pipeline): scikit-learn's own path, no explanations.
        return X, self._pipeline.predict_proba(X)[:, self._order]

    def log_odds_terms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Each class's centred log-odds, ``log p_k`` minus the mean log probability of the
        classes, as one term per input (rows x CLASSES x FEATURES; the sector's one-hot
        columns summed) plus a constant per class; None for a pipeline without the linear
        numbers. The terms are what ``top_features`` ranks, and the log-odds are additive
        in them, which makes their differences exact attributions."""
        if self._linear is None or self._weights is None:
            return None
        parts = self._linear.scaled(X)[:, None, :] * self._weights[None, :, :]
        terms = np.concatenate(
            [parts[:, :, : len(SECTORS)].sum(axis=2, keepdims=True), parts[:, :, len(SECTORS) :]],
            axis=2,
        )
        intercept = self._linear.intercept
        return terms, (intercept - intercept.mean())[self._order]

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        X = to_matrix(instances)
        scaled, proba = self._scaled_and_proba(X)
        scores = 100.0 * (proba @ CLASS_WEIGHTS)
        labels = proba.argmax(axis=1)
        top = self._top_features(scaled, labels)
        return [
            {
                "risk_class": CLASSES[label],
                "risk_score": round(float(score), 4),
                "probabilities": {
                    CLASSES[0]: round(float(row[0]), 6),
                    CLASSES[1]: round(float(row[1]), 6),
                    CLASSES[2]: round(float(row[2]), 6),
                },
                "top_features": features,
            }
            for label, score, row, features in zip(
                labels.tolist(), scores.tolist(), proba.tolist(), top, strict=True
            )
        ]

    def _top_features(self, scaled: np.ndarray, labels: np.ndarray) -> list[Any]:
        """Per row, the inputs that moved the predicted class's log-odds most.

        A contribution is centred coefficient x standardised value: how far this input,
        compared with an average training company, pushed the predicted class against the
        average class. Computed elementwise, so a row's answer does not depend on its batch.
        """
        if self._weights is None:
            return [None] * len(labels)
        parts = scaled * self._weights[labels]
        per_input = np.column_stack(
            [parts[:, : len(SECTORS)].sum(axis=1), parts[:, len(SECTORS) :]]
        )
        order = np.argsort(-np.abs(per_input), axis=1, kind="stable")[:, :TOP_FEATURES]
        return [
            [{"feature": FEATURES[j], "contribution": round(float(row[j]), 4)} for j in picks]
            for row, picks in zip(per_input, order.tolist(), strict=True)
        ]


def _check_classes(classes: Sequence[str]) -> None:
    if sorted(classes) != sorted(CLASSES) or len(classes) != len(CLASSES):
        raise IntegrityError(f"risk artifact predicts {list(classes)}, expected {list(CLASSES)}")
