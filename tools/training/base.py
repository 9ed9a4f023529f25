"""What every model builder returns, and the records every version carries.

A builder (one per model kind) produces an artifact and its evidence: held-out metrics, a
model card, a golden set (inputs with the outputs the built artifact gives, for
deployment verification), a drift baseline per input feature and per numeric prediction
output, and one example instance.
``finish`` computes the parts that are the same for every kind from the built runtime.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from common.models import runtime_class as runtime_of
from common.models.base import Component, ModelRuntime, predict_rows
from common.monitoring.sampling import PREDICTION, prediction_leaves
from common.registry.records import MODEL_CARD_FIELDS, ModelVersion

if TYPE_CHECKING:
    from common.promotion.lifecycle import Lifecycle

GOLDEN_SET_SIZE = 20
FRESH_SEED_OFFSET = 1_000_003
"""The fresh sample's seed is the training seed plus this: another stream of the same
generator, so the same population drawn again, independently of the training rows."""
BASELINE_BINS = 10
PREDICTION_BASELINE_ROWS = 500


@dataclass(frozen=True)
class BuiltModel:
    model_id: str
    kind: str
    artifact: bytes
    description: str
    metrics: dict[str, float]
    example: dict[str, Any]
    model_card: dict[str, Any]
    golden_set: list[dict[str, Any]]
    drift_baseline: dict[str, Any]
    reports: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    promote: bool = True
    """Whether scripts/train_models.py moves production to this version after registering."""
    held_back: str = ""
    """Why a version built with ``promote=False`` is left out of production: printed by
    scripts/train_models.py and kept as the version's stage reason."""
    gate: dict[str, Any] = field(default_factory=dict)
    """The model's promotion criteria (common.promotion.gate.GateSpec); empty for the defaults."""
    metrics_fresh_sample: dict[str, float] = field(default_factory=dict)
    """The metrics again on a fresh sample from an independent seed, with ``n`` and ``seed``;
    empty when the data came from a file, which has no generator to draw again."""
    explanation_baseline: dict[str, Any] | None = None
    """The instance explanations are measured against; None when none fits the schema."""


def fresh_seed(seed: int) -> int:
    """The seed of the fresh sample that checks the metrics of a model trained with ``seed``."""
    return seed + FRESH_SEED_OFFSET


def fresh_sample_record(metrics: Mapping[str, float], *, n: int, seed: int) -> dict[str, float]:
    """``metrics_fresh_sample``: the metrics, rounded as the recorded ones, and the sample."""
    return {**{k: round(float(v), 6) for k, v in metrics.items()}, "n": n, "seed": seed}


def model_card(
    *,
    intended_use: str,
    training_data: str,
    limitations: str,
    owner: str = "valuation-models",
    risk_tier: str = "medium",
    validation_date: str | None = None,
) -> dict[str, Any]:
    """A complete model card; every field in MODEL_CARD_FIELDS is required and non-empty."""
    card = {
        "intended_use": intended_use,
        "training_data": training_data,
        "limitations": limitations,
        "owner": owner,
        "risk_tier": risk_tier,
        "validation_date": validation_date or datetime.now(UTC).date().isoformat(),
    }
    missing = [k for k in MODEL_CARD_FIELDS if not str(card.get(k, "")).strip()]
    if missing:
        raise ValueError(f"model card lacks {', '.join(missing)}")
    return card


def golden_set(
    runtime: ModelRuntime,
    rows: Sequence[dict[str, Any]],
    size: int = GOLDEN_SET_SIZE,
    components: Mapping[str, Component] | None = None,
) -> list[dict[str, Any]]:
    """Held-out inputs with the outputs this artifact gives for them."""
    chosen = list(rows[:size])
    outputs = predict_rows(runtime, chosen, components)
    return [{"instance": row, "expected": out} for row, out in zip(chosen, outputs, strict=True)]


def drift_baseline(rows: Sequence[dict[str, Any]], bins: int = BASELINE_BINS) -> dict[str, Any]:
    """Per feature: decile-edged histogram for numbers, frequencies for categories.

    Free text is summarised by its length, the one number every text has.
    """
    if not rows:
        raise ValueError("a drift baseline needs rows")
    baseline: dict[str, Any] = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
            if all(isinstance(v, str) for v in values) and len(set(values)) > 50:
                lengths = np.array([len(v) for v in values], dtype=float)
                baseline[f"{name}.length"] = _histogram(lengths, bins)
                continue
            categories, counts = np.unique(
                np.array(values, dtype=object).astype(str), return_counts=True
            )
            baseline[name] = {
                "type": "categorical",
                "frequencies": {
                    str(c): round(float(n) / len(values), 6)
                    for c, n in zip(categories, counts, strict=True)
                },
                "count": len(values),
            }
        elif all(isinstance(v, int | float) for v in values):
            baseline[name] = _histogram(np.array(values, dtype=float), bins)
    return baseline


def median_instance(
    rows: Sequence[dict[str, Any]], runtime_class: type[ModelRuntime]
) -> dict[str, Any] | None:
    """The training rows' typical instance, an explanation's default baseline: per field
    the median of numbers (the lower median of integers, so a count stays a count) and the
    most frequent value of categories and flags. A field missing or null in any row is
    left out; None when what remains is not a valid instance."""
    if not rows:
        return None
    out: dict[str, Any] = {}
    for name in rows[0]:
        values = [row.get(name) for row in rows]
        if any(v is None for v in values):
            continue
        if all(isinstance(v, str | bool) for v in values):
            kinds, counts = np.unique(
                np.array(values, dtype=object).astype(str), return_counts=True
            )
            top = str(kinds[int(np.argmax(counts))])
            out[name] = next(v for v in values if str(v) == top)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            ordered = sorted(int(v) for v in values if v is not None)
            out[name] = ordered[(len(ordered) - 1) // 2]
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[name] = round(float(np.median(np.array(values, dtype=float))), 6)
    try:
        runtime_class.instances_adapter().validate_python([out])
    except ValueError:
        return None
    return out


def prediction_baseline(
    runtime: ModelRuntime,
    rows: Sequence[dict[str, Any]],
    components: Mapping[str, Component] | None = None,
    bins: int = BASELINE_BINS,
) -> dict[str, Any]:
    """What the artifact answers for held-out rows: a histogram per numeric leaf of its
    predictions, named ``prediction.<dotted path>``; constant leaves say nothing and are
    left out."""
    chosen = list(rows[:PREDICTION_BASELINE_ROWS])
    if not chosen:
        return {}
    leaves: dict[str, list[float]] = {}
    for output in predict_rows(runtime, chosen, components):
        for path, value in prediction_leaves(output):
            leaves.setdefault(path, []).append(value)
    return {
        f"{PREDICTION}{path}": _histogram(np.array(values), bins)
        for path, values in leaves.items()
        if len(values) > 1 and min(values) < max(values)
    }


def _histogram(values: np.ndarray, bins: int) -> dict[str, Any]:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([values.min(), values.min() + 1.0])
    counts, _ = np.histogram(values, bins=edges)
    return {
        "type": "numeric",
        "edges": [round(float(e), 9) for e in edges],
        "proportions": [round(float(c) / len(values), 6) for c in counts],
        "count": len(values),
        "mean": round(float(values.mean()), 9),
        "std": round(float(values.std()), 9),
    }


def latency_p95_ms(
    runtime: ModelRuntime,
    example: dict[str, Any],
    repeats: int = 300,
    components: Mapping[str, Component] | None = None,
) -> float:
    """p95 of single-instance predictions (validation included) on this machine."""
    predict_rows(runtime, [example], components)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_rows(runtime, [example], components)
        timings.append((time.perf_counter() - started) * 1000.0)
    return round(float(np.percentile(timings, 95)), 4)


def finish(
    *,
    model_id: str,
    runtime_class: type[ModelRuntime],
    artifact: bytes,
    description: str,
    metrics: dict[str, float],
    card: dict[str, Any],
    training_rows: Sequence[dict[str, Any]],
    held_out_rows: Sequence[dict[str, Any]],
    reports: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    promote: bool = True,
    held_back: str = "",
    components: Mapping[str, Component] | None = None,
    gate: dict[str, Any] | None = None,
    metrics_fresh_sample: dict[str, float] | None = None,
    explanation_baseline: dict[str, Any] | None = None,
) -> BuiltModel:
    """Load the artifact as serving will, then derive golden set, baselines (inputs from
    the training rows, predictions from the held-out rows) and latency."""
    runtime = runtime_class.from_artifact(artifact)
    example = _rounded(held_out_rows[0])
    return BuiltModel(
        model_id=model_id,
        kind=runtime_class.kind,
        artifact=artifact,
        description=description,
        metrics={
            **{k: round(float(v), 6) for k, v in metrics.items()},
            "latency_p95_ms": latency_p95_ms(runtime, example, components=components),
        },
        example=example,
        model_card=card,
        golden_set=golden_set(runtime, [_rounded(r) for r in held_out_rows], components=components),
        drift_baseline={
            **drift_baseline(training_rows),
            **prediction_baseline(runtime, held_out_rows, components),
        },
        reports=reports or {},
        tags=tags or {},
        promote=promote,
        held_back=held_back,
        gate=gate or {},
        metrics_fresh_sample=metrics_fresh_sample or {},
        explanation_baseline=explanation_baseline,
    )


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def register_built(
    lifecycle: Lifecycle,
    built: BuiltModel,
    *,
    version: str,
    created_by: str,
    promote: bool | None = None,
    reason: str = "",
) -> ModelVersion:
    """Register a built model with all its evidence; if it asks to be promoted, stage it
    and promote it through the gate and verification like any other version, with
    ``reason`` kept on the deployment and on the version it replaces."""
    record = lifecycle.registry.register(
        model_id=built.model_id,
        version=version,
        kind=built.kind,
        artifact=built.artifact,
        created_by=created_by,
        metrics=built.metrics,
        metrics_fresh_sample=built.metrics_fresh_sample,
        description=built.description,
        tags=built.tags,
        input_schema=runtime_of(built.kind).input_schema(),
        example=built.example,
        model_card=built.model_card,
        golden_set=built.golden_set,
        drift_baseline=built.drift_baseline,
        explanation_baseline=built.explanation_baseline,
        reports=built.reports,
        gate=built.gate,
        stage_reason=built.held_back,
    )
    if built.promote if promote is None else promote:
        lifecycle.set_stage(built.model_id, version, "staging", actor=created_by, reason=reason)
        lifecycle.promote(built.model_id, version, actor=created_by, reason=reason)
        record = lifecycle.registry.get_version(built.model_id, version)
    return record
