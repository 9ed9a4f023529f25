"""The promotion gate: per-model criteria on a version's recorded metrics.

Criteria live on the model's registry record (``gate``), set from the builder's declaration
at first registration. A classifier that declares none gets the platform's defaults;
regressions and analytic models declare their own. A criterion whose metric the version
did not record fails: missing evidence is not a pass.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Op = Literal[">=", "<="]
_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1, max_length=100)
    op: Op
    threshold: float


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    criteria: tuple[Criterion, ...] = Field(min_length=1, max_length=50)
    """At least one: a gate with no criteria would let anything through."""
    require_experiment: bool = False
    """Also require a completed experiment in which this version showed no significant
    regression on its success metrics."""


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


__all__ = ["CLASSIFIER_DEFAULTS", "Criterion", "GateSpec", "evaluate", "spec_for"]


def evaluate(spec: GateSpec, metrics: Mapping[str, float]) -> list[dict[str, Any]]:
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
    return results
