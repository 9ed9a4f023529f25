"""The ensemble: DCF and CCA values blended, then adjusted for risk and sentiment.

For one company, with the components' values per share ``V_dcf`` and ``V_cca`` and the
artifact's weights ``w_dcf + w_cca = 1``:

    base      = w_dcf * V_dcf + w_cca * V_cca
    m_risk    = 1 - k_risk * (risk_score - 50) / 50        risk_score in [0, 100]
    m_sent    = 1 + k_sent * sentiment_score                score in [-1, 1]
    value     = base * m_risk * m_sent

so an average-risk company with neutral sentiment is valued at the blend, and the
adjustments are bounded by ``k_risk`` and ``k_sent``. The contributions add up to the
value exactly: ``w_dcf V_dcf + w_cca V_cca + base (m_risk - 1) + base m_risk (m_sent - 1)``.

The interval is a normal approximation. Each valuation's own spread becomes a standard
deviation (DCF: Monte Carlo p5..p95 over 2 x 1.645; CCA: peer quartiles p25..p75 over
2 x 0.6745), the two are taken as independent, and the disagreement between the two
methods is added as the weighted standard deviation of their point values,
``sqrt(w_dcf w_cca) |V_dcf - V_cca|``. The total is scaled by the adjustments and
``value +- z * sigma`` is reported at the artifact's confidence level.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.core.errors import IntegrityError
from common.core.validation import StrictModel, field_name, problems_from, raise_invalid
from common.models.base import Component, ModelRuntime

ARTIFACT_FORMAT = "ipo-ensemble/1"
ROLES = ("dcf", "cca", "risk", "sentiment")
_Z_QUARTILE = NormalDist().inv_cdf(0.75)
_Z_P95 = NormalDist().inv_cdf(0.95)


class EnsembleInstance(StrictModel):
    """The inputs of each component model, each checked by that model's own schema."""

    dcf: dict[str, Any] = Field(description="A DCF instance (see GET /v1/models/dcf).")
    cca: dict[str, Any] = Field(description="A CCA instance (see GET /v1/models/cca).")
    risk: dict[str, Any] = Field(description="A risk instance (see GET /v1/models/risk).")
    sentiment: dict[str, Any] = Field(
        description="A sentiment instance (see GET /v1/models/sentiment)."
    )


class _Weights(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    dcf: float = Field(ge=0, le=1)
    cca: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> _Weights:
        if abs(self.dcf + self.cca - 1.0) > 1e-9:
            raise ValueError("weights must sum to 1")
        return self


class EnsembleArtifact(BaseModel):
    """The versioned weights and adjustment strengths."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    format: str
    components: dict[str, str]
    weights: _Weights
    risk_strength: float = Field(ge=0, le=0.5)
    sentiment_strength: float = Field(ge=0, le=0.5)
    confidence: float = Field(gt=0.5, lt=1)

    @model_validator(mode="after")
    def _complete(self) -> EnsembleArtifact:
        if self.format != ARTIFACT_FORMAT:
            raise ValueError(f"format must be {ARTIFACT_FORMAT}")
        if set(self.components) != set(ROLES):
            raise ValueError(f"components must name exactly {list(ROLES)}")
        return self


def _adapted(
    role: str, component: Component, items: list[dict[str, Any]]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Validate one component's part of every instance; problems carry the role."""
    try:
        return component.runtime.instances_adapter().validate_python(items), []
    except ValidationError as exc:
        problems = problems_from(exc)
        for problem in problems:
            index, *rest = problem["path"]
            problem["path"] = ["instances", index, role, *rest]
            problem["field"] = field_name(problem["path"])
            problem["component"] = role
        return [], problems


class EnsembleRuntime(ModelRuntime):
    kind: ClassVar[str] = "ensemble"
    instance_schema: ClassVar[type[StrictModel]] = EnsembleInstance

    def __init__(self, artifact: EnsembleArtifact) -> None:
        self._artifact = artifact
        self._z = NormalDist().inv_cdf(0.5 + artifact.confidence / 2)

    @classmethod
    def from_artifact(cls, data: bytes) -> EnsembleRuntime:
        try:
            return cls(EnsembleArtifact.model_validate(json.loads(data)))
        except (ValueError, ValidationError) as exc:
            raise IntegrityError(
                f"artifact is not a valid {ARTIFACT_FORMAT} ensemble: {exc}"
            ) from None

    def components(self) -> Mapping[str, str]:
        return dict(self._artifact.components)

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        raise TypeError("the ensemble needs its component models: use predict_composite")

    def predict_composite(
        self,
        instances: Sequence[Any],
        parameters: Any,
        components: Mapping[str, Component],
    ) -> list[dict[str, Any]]:
        validated: dict[str, list[Any]] = {}
        problems: list[dict[str, Any]] = []
        for role in ROLES:
            items = [getattr(instance, role) for instance in instances]
            validated[role], found = _adapted(role, components[role], items)
            problems += found
        if problems:
            raise_invalid(problems, max_details=100, what="ensemble request")
        outputs = {
            role: components[role].runtime.predict(
                validated[role],
                components[role].runtime.parameters_adapter().validate_python({}),
            )
            for role in ROLES
        }
        versions = {role: components[role].version for role in ROLES}
        return [
            self._combine({role: outputs[role][i] for role in ROLES}, versions)
            for i in range(len(instances))
        ]

    def _combine(
        self, out: Mapping[str, dict[str, Any]], versions: Mapping[str, str]
    ) -> dict[str, Any]:
        art = self._artifact
        w_dcf, w_cca = art.weights.dcf, art.weights.cca
        v_dcf = float(out["dcf"]["value_per_share"])
        v_cca = float(out["cca"]["value_per_share"])
        risk_score = float(out["risk"]["risk_score"])
        sentiment = float(out["sentiment"]["score"])

        base = w_dcf * v_dcf + w_cca * v_cca
        m_risk = 1.0 - art.risk_strength * (risk_score - 50.0) / 50.0
        m_sent = 1.0 + art.sentiment_strength * sentiment
        value = base * m_risk * m_sent

        mc = out["dcf"]["monte_carlo"]
        quartiles = out["cca"]["blended_value_per_share"]
        sd_dcf = (float(mc["p95"]) - float(mc["p5"])) / (2 * _Z_P95)
        sd_cca = (float(quartiles["p75"]) - float(quartiles["p25"])) / (2 * _Z_QUARTILE)
        disagreement = math.sqrt(w_dcf * w_cca) * abs(v_dcf - v_cca)
        sigma = math.sqrt((w_dcf * sd_dcf) ** 2 + (w_cca * sd_cca) ** 2 + disagreement**2)
        sigma *= abs(m_risk * m_sent)
        half = self._z * sigma

        return {
            "value_per_share": round(value, 4),
            "interval": {
                "confidence": art.confidence,
                "low": round(value - half, 4),
                "high": round(value + half, 4),
                "sigma": round(sigma, 4),
            },
            "contributions": {
                "dcf": _part(versions["dcf"], weight=w_dcf, value=v_dcf, effect=w_dcf * v_dcf),
                "cca": _part(versions["cca"], weight=w_cca, value=v_cca, effect=w_cca * v_cca),
                "risk": {
                    "model_version": versions["risk"],
                    "risk_score": risk_score,
                    "risk_class": out["risk"]["risk_class"],
                    "multiplier": round(m_risk, 6),
                    "effect_per_share": round(base * (m_risk - 1.0), 4),
                },
                "sentiment": {
                    "model_version": versions["sentiment"],
                    "score": sentiment,
                    "label": out["sentiment"]["label"],
                    "multiplier": round(m_sent, 6),
                    "effect_per_share": round(base * m_risk * (m_sent - 1.0), 4),
                },
            },
        }


def _part(version: str, *, weight: float, value: float, effect: float) -> dict[str, Any]:
    return {
        "model_version": version,
        "weight": weight,
        "value_per_share": round(value, 4),
        "effect_per_share": round(effect, 4),
    }
