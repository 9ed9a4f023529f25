"""What a shadow comparison says: the candidate's predictions against production's, on the
same inputs, output by output.

Each prediction is flattened to its leaves (``probabilities.high``); lists are left out.
A numeric leaf is compared by its relative difference, ``(candidate - production)``
over ``max(|production|, 1% of the output's mean |production|)``: the mean signed and the
mean absolute difference with 95% Student-t intervals, Spearman's rank correlation, and
the share within a tolerance. A
text or boolean leaf is a class: agreement with its 95% Wilson interval and the confusion
matrix. Segments are the values of the instances' text inputs (``sector``, ``source``):
those where the candidate differs most are listed. Everything is computed from the
stored pairs, so the report is the same however often it is read.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

EPSILON = 1e-9
SCALE_FLOOR = 0.01
"""A relative difference is taken against at least this share of the output's mean
absolute production value, so a probability of 0.0001 against 0.0 is not a difference of
a million times."""
DEFAULT_TOLERANCE = 0.05
MIN_SEGMENT_ROWS = 5
MAX_SEGMENT_VALUES = 20
TOP_SEGMENTS = 5


@dataclass(frozen=True)
class Row:
    """One instance replayed: its text inputs (for segments) and both predictions, or the
    candidate's error."""

    segments: Mapping[str, str]
    production: Any
    candidate: Any
    error: Mapping[str, Any] | None = None


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A prediction's scalar leaves by dotted name."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(leaves(inner, f"{prefix}{key}."))
        return out
    if isinstance(value, bool | str | int | float) and prefix:
        return {prefix[:-1]: value}
    return {}


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _t_interval(values: np.ndarray) -> list[float] | None:
    from scipy import stats  # type: ignore[import-untyped]

    n = len(values)
    if n < 2:
        return None
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    mean = float(values.mean())
    return [round(mean - half, 6), round(mean + half, 6)]


def _wilson(agree: int, n: int) -> list[float] | None:
    if n == 0:
        return None
    z, p = 1.959964, agree / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)]


def _floor(production: np.ndarray) -> float:
    return max(SCALE_FLOOR * float(np.abs(production).mean()), EPSILON)


def _numeric(pairs: list[tuple[float, float]], tolerance: float) -> dict[str, Any]:
    from scipy import stats

    production = np.array([p for p, _ in pairs], dtype=float)
    candidate = np.array([c for _, c in pairs], dtype=float)
    floor = _floor(production)
    relative = (candidate - production) / np.maximum(np.abs(production), floor)
    absolute = np.abs(relative)
    rho = None
    if len(pairs) >= 3 and np.ptp(production) > 0 and np.ptp(candidate) > 0:
        rho = round(float(stats.spearmanr(production, candidate).statistic), 6)
    return {
        "type": "numeric",
        "n": len(pairs),
        "mean_rel_diff": round(float(relative.mean()), 6),
        "mean_rel_diff_ci95": _t_interval(relative),
        "mean_abs_rel_diff": round(float(absolute.mean()), 6),
        "mean_abs_rel_diff_ci95": _t_interval(absolute),
        "rank_correlation": rho,
        "within_tolerance": round(float((absolute <= tolerance).mean()), 6),
    }


def _classes(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    matrix: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for production, candidate in pairs:
        matrix[production][candidate] += 1
    agree = sum(1 for p, c in pairs if p == c)
    return {
        "type": "class",
        "n": len(pairs),
        "agreement": round(agree / len(pairs), 6),
        "agreement_ci95": _wilson(agree, len(pairs)),
        "confusion": {p: dict(sorted(row.items())) for p, row in sorted(matrix.items())},
    }


def _differs(production: Any, candidate: Any, floors: Mapping[str, float]) -> float:
    """How far one instance's candidate output is from production's: the mean absolute
    relative difference over numeric leaves plus the share of class leaves that differ."""
    before, after = leaves(production), leaves(candidate)
    numeric, classes = [], []
    for name, value in before.items():
        other = after.get(name)
        if _is_number(value) and _is_number(other):
            numeric.append(abs(other - value) / max(abs(value), floors.get(name, EPSILON)))
        elif isinstance(value, str | bool):
            classes.append(0.0 if value == other else 1.0)
    parts = [float(np.mean(numeric))] if numeric else []
    parts += [float(np.mean(classes))] if classes else []
    return float(np.mean(parts)) if parts else 0.0


def _segments(rows: Sequence[Row], floors: Mapping[str, float]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    values: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.error is not None:
            continue
        score = _differs(row.production, row.candidate, floors)
        for field, value in row.segments.items():
            values[field].add(value)
            groups[(field, value)].append(score)
    ranked = sorted(
        (
            (-float(np.mean(s)), f, v, len(s))
            for (f, v), s in groups.items()
            if len(s) >= MIN_SEGMENT_ROWS and len(values[f]) <= MAX_SEGMENT_VALUES
        )
    )
    return [
        {"field": f, "value": v, "n": n, "mean_difference": round(-score, 6)}
        for score, f, v, n in ranked[:TOP_SEGMENTS]
    ]


def compare(
    rows: Iterable[Row],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Per output, segments, error rates and the summary the promotion gate reads."""
    rows = list(rows)
    compared = [r for r in rows if r.error is None]
    numeric: dict[str, list[tuple[float, float]]] = defaultdict(list)
    classes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in compared:
        after = leaves(row.candidate)
        for name, value in leaves(row.production).items():
            other = after.get(name)
            if _is_number(value) and _is_number(other):
                numeric[name].append((float(value), float(other)))
            elif isinstance(value, str | bool) and isinstance(other, str | bool):
                classes[name].append((str(value), str(other)))
    outputs = {name: _numeric(p, tolerance) for name, p in sorted(numeric.items())}
    outputs |= {name: _classes(p) for name, p in sorted(classes.items())}
    worst = max(
        (o["mean_abs_rel_diff"] for o in outputs.values() if o["type"] == "numeric"), default=None
    )
    lowest = min((o["agreement"] for o in outputs.values() if o["type"] == "class"), default=None)
    return {
        "n": len(compared),
        "rows": len(rows),
        "candidate_errors": len(rows) - len(compared),
        "candidate_error_rate": round((len(rows) - len(compared)) / len(rows), 6) if rows else None,
        "tolerance": tolerance,
        "outputs": outputs,
        "segments": _segments(
            compared, {name: _floor(np.array([p for p, _ in v])) for name, v in numeric.items()}
        ),
        "summary": {"n": len(compared), "max_mean_abs_rel_diff": worst, "min_agreement": lowest},
    }
