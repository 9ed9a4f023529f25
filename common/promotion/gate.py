"""The promotion gate: per-model criteria on a version's recorded metrics.

Criteria live on the model's registry record (``gate``), set from the builder's declaration
at first registration. A classifier that declares none gets the platform's defaults;
regressions and analytic models declare their own. A criterion whose metric the version
did not record fails: missing evidence is not a pass. ``max_fresh_sample_gap`` also bounds
how far each named metric on the test split may be from the same metric on a fresh sample
(``metrics_fresh_sample``): a split that is not like the population fails there.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Op = Literal[">=", "<="]
MetricName = Annotated[str, Field(min_length=1, max_length=100)]
Tolerance = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
FRESH_GAP = "fresh_sample_gap."
"""Prefix of a gap criterion's name in the results, e.g. ``fresh_sample_gap.accuracy``."""
_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1, max_length=100)
    op: Op
    threshold: float


class ShadowCriterion(BaseModel):
    """What a shadow evaluation of the candidate must show (common/shadow/): enough
    instances compared, numeric outputs close to production's, classes in agreement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_n: int = Field(ge=1, le=10_000_000)
    max_mean_abs_rel_diff: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    """Bound on the largest mean |relative difference| over the numeric outputs."""
    min_agreement: float | None = Field(None, ge=0.0, le=1.0)
    """Bound on the lowest agreement over the class outputs."""


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    criteria: tuple[Criterion, ...] = Field(min_length=1, max_length=50)
    """At least one: a gate with no criteria would let anything through."""
    require_experiment: bool = False
    """Also require a completed experiment in which this version showed no significant
    regression on its success metrics."""
    max_fresh_sample_gap: dict[MetricName, Tolerance] = Field(default_factory=dict, max_length=50)
    """Metric -> largest allowed |test split - fresh sample|; both must be recorded."""
    shadow: ShadowCriterion | None = None
    """Also require a shadow evaluation of the candidate that meets these bounds."""


CLASSIFIER_DEFAULTS = GateSpec(
    criteria=(
        Criterion(metric="accuracy", op=">=", threshold=0.85),
        Criterion(metric="latency_p95_ms", op="<=", threshold=500.0),
        Criterion(metric="precision", op=">=", threshold=0.80),
        Criterion(metric="recall", op=">=", threshold=0.75),
    )
)
CLASSIFIER_KINDS = frozenset({"risk"})


def spec_for(kind: str, declared: Mapping[str, Any] | None) -> GateSpec:
    if declared:
        return GateSpec.model_validate(declared)
    if kind in CLASSIFIER_KINDS:
        return CLASSIFIER_DEFAULTS
    return GateSpec(criteria=(Criterion(metric="latency_p95_ms", op="<=", threshold=500.0),))


__all__ = [
    "CLASSIFIER_DEFAULTS",
    "FRESH_GAP",
    "Criterion",
    "GateSpec",
    "ShadowCriterion",
    "evaluate",
    "evaluate_shadow",
    "spec_for",
]


def evaluate(
    spec: GateSpec,
    metrics: Mapping[str, float],
    fresh_sample: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One result per criterion, passed or not, for the record and for a 422."""
    results = []
    for criterion in spec.criteria:
        value = metrics.get(criterion.metric)
        passed = (
            value is not None
            and math.isfinite(value)
            and _OPS[criterion.op](value, criterion.threshold)
        )
        results.append(
            {
                "criterion": criterion.metric,
                "op": criterion.op,
                "threshold": criterion.threshold,
                "value": value,
                "passed": passed,
                **({} if value is not None else {"message": "metric not recorded"}),
            }
        )
    for metric, tolerance in sorted(spec.max_fresh_sample_gap.items()):
        results.append(_fresh_gap(metric, tolerance, metrics, fresh_sample or {}))
    return results


def _fresh_gap(
    metric: str, tolerance: float, metrics: Mapping[str, float], fresh: Mapping[str, float]
) -> dict[str, Any]:
    """Whether the test split's ``metric`` holds on the fresh sample, within ``tolerance``."""
    result: dict[str, Any] = {
        "criterion": FRESH_GAP + metric,
        "op": "<=",
        "threshold": tolerance,
    }
    recorded, again = metrics.get(metric), fresh.get(metric)
    if recorded is None or again is None:
        where = "on the test split" if recorded is None else "on a fresh sample"
        return {
            **result,
            "value": None,
            "passed": False,
            "message": f"{metric} not recorded {where}",
        }
    gap = abs(recorded - again)
    passed = math.isfinite(gap) and gap <= tolerance
    n, seed = fresh.get("n"), fresh.get("seed")
    sample = f"n={n:.0f}, seed={seed:.0f}" if n is not None and seed is not None else "size unknown"
    return {
        **result,
        "value": round(gap, 6) if math.isfinite(gap) else gap,
        "passed": passed,
        **(
            {}
            if passed
            else {
                "message": f"{metric} is {recorded:g} on the test split but {again:g} on a "
                f"fresh sample ({sample}): a gap of {gap:.4g}, more than {tolerance:g}"
            }
        ),
    }


def evaluate_shadow(
    criterion: ShadowCriterion, summary: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """One result per bound of the shadow criterion; no shadow evaluation fails them all."""
    bounds: list[tuple[str, Op, float]] = [("n", ">=", float(criterion.min_n))]
    if criterion.max_mean_abs_rel_diff is not None:
        bounds.append(("max_mean_abs_rel_diff", "<=", criterion.max_mean_abs_rel_diff))
    if criterion.min_agreement is not None:
        bounds.append(("min_agreement", ">=", criterion.min_agreement))
    results = []
    for name, op, threshold in bounds:
        value = None if summary is None else summary.get(name)
        passed = (
            isinstance(value, int | float) and math.isfinite(value) and _OPS[op](value, threshold)
        )
        result: dict[str, Any] = {
            "criterion": f"shadow.{name}",
            "op": op,
            "threshold": threshold,
            "value": value,
            "passed": passed,
        }
        if summary is None:
            result["message"] = "no shadow evaluation of this version"
        elif value is None:
            result["message"] = f"the shadow evaluation has no {name} (no such outputs compared)"
        else:
            result["shadow_id"] = summary.get("shadow_id")
        results.append(result)
    return results
