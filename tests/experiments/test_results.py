"""Intervals that agree with the Holm-adjusted verdicts."""

from __future__ import annotations

from typing import Any

import numpy as np

from common.experiments.results import results
from common.experiments.sketch import ArmAggregate
from common.experiments.stats import Metric


def _arm(values: np.ndarray, binary: bool) -> ArmAggregate:
    arm = ArmAggregate.binary() if binary else ArmAggregate.continuous()
    for v in values.tolist():
        arm.add(float(v))
    return arm


def _excludes_zero(interval: dict[str, float]) -> bool:
    return interval["low"] > 0.0 or interval["high"] < 0.0


def _run(rng: np.random.Generator, effects: list[float]) -> dict[str, Any]:
    metrics = [
        Metric(
            name=f"m{i}",
            type="binary" if i % 2 else "continuous",
            direction="increase",
            unit="request",
        )
        for i in range(len(effects))
    ]
    arms: dict[str, dict[str, ArmAggregate]] = {"control": {}, "b": {}, "c": {}}
    for metric, effect in zip(metrics, effects, strict=True):
        binary = metric.type == "binary"
        for name, shift in (("control", 0.0), ("b", effect), ("c", effect / 2)):
            if binary:
                values = (rng.random(400) < 0.4 + shift).astype(float)
            else:
                values = rng.normal(shift, 1.0, 400)
            arms[name][metric.name] = _arm(values, binary)
    return results(arms, metrics, {"control": 0.4, "b": 0.3, "c": 0.3}, {})


def test_the_holm_interval_excludes_zero_exactly_when_the_verdict_is_significant() -> None:
    rng = np.random.default_rng(12)
    disagreeing_raw = 0
    for _ in range(60):
        effects = [float(e) for e in rng.choice([0.0, 0.05, 0.1, 0.2], size=4)]
        out = _run(rng, effects)
        for per_metric in out["comparisons"].values():
            for cmp in per_metric.values():
                significant = cmp["verdict"] in ("better", "worse")
                assert _excludes_zero(cmp["ci_holm"]) == significant
                assert cmp["ci_holm_level"] >= 1 - cmp["alpha"]
                disagreeing_raw += _excludes_zero(cmp["ci"]) and not significant
    assert disagreeing_raw > 0  # the raw interval alone would have contradicted a verdict
