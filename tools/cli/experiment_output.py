"""Plain-text rendering of the A/B experiment answers of ``ipoctl experiment ...``.

Each renderer takes the decoded JSON answer of one experiment call (docs/EXPERIMENTS.md)
and returns the text to print; the generic pieces (tables, times) are tools/cli/output.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tools.cli import output as out


def _unsigned_zero(number: str) -> str:
    """``-0.0000`` (a tiny negative rounded away) as ``0.0000``; other numbers as they are."""
    if number.startswith(("-", "+")) and not number.strip("+-0.%"):
        return number[1:]
    return number


def _fixed(value: Any, digits: int = 4, sign: str = "") -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return _unsigned_zero(f"{value:{sign}.{digits}f}")


def _interval_text(ci: Any) -> str | None:
    if not isinstance(ci, Mapping) or ci.get("low") is None or ci.get("high") is None:
        return None
    return f"[{_fixed(ci['low'])}, {_fixed(ci['high'])}]"


def _lift_text(lift: Any) -> str | None:
    estimate = lift.get("estimate") if isinstance(lift, Mapping) else None
    percent = _fixed(100.0 * estimate, 2, "+") if isinstance(estimate, int | float) else None
    return None if percent is None else percent + "%"


def _p_text(p: Any) -> str | None:
    return f"{p:.2g}" if isinstance(p, int | float) else None


def _level_text(level: Any) -> str | None:
    return f"{100.0 * level:.4g}%" if isinstance(level, int | float) else None


def _window_text(days: Any) -> str | None:
    if not isinstance(days, int) or isinstance(days, bool):
        return None
    return f"{days} day" if days == 1 else f"{days} days"


def _metric_text(metric: Mapping[str, Any]) -> str:
    facts = [out.text(metric.get("type")), out.text(metric.get("direction"))]
    if metric.get("unit"):
        facts.append(f"unit {out.text(metric['unit'])}")
    return f"{out.text(metric.get('name'))} ({', '.join(facts)})"


def render_experiment(data: Mapping[str, Any]) -> str:
    variants, split = data.get("variants") or {}, data.get("split") or {}
    arms = [f"{v} {variants[v]} ({out.percent(100.0 * split.get(v, 0.0))})" for v in variants]
    metrics = [_metric_text(m) for m in data.get("metrics") or [] if isinstance(m, Mapping)]
    conclusions = data.get("conclusions") or {}
    created = f"{out.when(data.get('created_at'))} by {out.text(data.get('created_by'))}"
    items = [
        ("experiment", data.get("experiment_id")),
        ("model", data.get("model_id")),
        ("status", data.get("status")),
        ("variants", ", ".join(sorted(arms))),
        ("metrics", ", ".join(metrics)),
        ("start", out.when(data.get("start"))),
        ("end", out.when(data.get("end"))),
        ("stopped", out.when(data.get("stopped_at"))),
        ("outcome window", _window_text(data.get("outcome_window_days"))),
        ("closes", out.when(data.get("closes_at"))),
        ("created", created),
        ("conclusions", " ".join(f"{k}={conclusions[k]}" for k in sorted(conclusions))),
    ]
    return out.pairs(items)


def render_assignment(data: Mapping[str, Any]) -> str:
    line = (
        f"user {out.text(data.get('user_id'))} is in variant {out.text(data.get('variant'))} "
        f"({out.text(data.get('model_id'))} {out.text(data.get('model_version'))}) "
        f"of experiment {out.text(data.get('experiment_id'))}"
    )
    if data.get("active", True):
        return line
    if data.get("status") == "scheduled":
        return line + " (experiment not started yet)"
    return line + " (experiment no longer active)"


def render_outcome(data: Mapping[str, Any]) -> str:
    return (
        f"recorded outcome of {out.text(data.get('exposure_id'))} "
        f"(variant {out.text(data.get('variant'))}): "
        f"{out.metrics_inline(data.get('values'))}"
    )


def _head(experiment: Mapping[str, Any]) -> str:
    status = experiment.get("status")
    state = out.text(status)
    if experiment.get("closes_at"):
        closes = out.when(experiment["closes_at"])
        state += (
            f", outcomes closed at {closes}"
            if status == "completed"
            else f", outcomes taken until {closes}"
        )
    return (
        f"experiment {out.text(experiment.get('experiment_id'))} on "
        f"{out.text(experiment.get('model_id'))} ({state})"
    )


def _arm_row(metric: str, unit: Any, name: str, arm: Any) -> list[Any]:
    arm = arm if isinstance(arm, Mapping) else {}
    return [
        metric,
        unit,
        name,
        arm.get("users"),
        arm.get("count"),
        _fixed(arm.get("mean")),
        _interval_text(arm.get("ci")),
    ]


def _comparison_row(metric: str, variant: str, cmp: Mapping[str, Any]) -> list[Any]:
    return [
        metric,
        variant,
        _fixed(cmp.get("difference"), sign="+"),
        _interval_text(cmp.get("ci_holm")),
        _level_text(cmp.get("ci_holm_level")),
        _lift_text(cmp.get("lift")),
        _p_text(cmp.get("p_value_adjusted")),
        cmp.get("verdict"),
    ]


def render_results(data: Mapping[str, Any]) -> str:
    """The arms (users, outcomes, mean, the arm's own interval), then each comparison:
    the difference with ``ci_holm``, the interval that agrees with the Holm verdict."""
    experiment = data.get("experiment") or {}
    results = data.get("results") or {}
    control = str(results.get("control") or "control")
    comparisons: Mapping[str, Any] = results.get("comparisons") or {}
    metrics: list[str] = []
    for per_metric in comparisons.values():
        metrics.extend(m for m in per_metric if m not in metrics)
    arms: list[list[Any]] = []
    differences: list[list[Any]] = []
    for metric in metrics:
        cmps = [(v, comparisons[v][metric]) for v in comparisons if metric in comparisons[v]]
        unit = cmps[0][1].get("unit")
        arms.append(_arm_row(metric, unit, control, cmps[0][1].get("control")))
        for variant, cmp in cmps:
            arms.append(_arm_row(metric, unit, variant, cmp.get("variant")))
            differences.append(_comparison_row(metric, variant, cmp))
    if not arms:
        return "\n\n".join(
            [_head(experiment), "no comparisons", srm_text(results.get("srm"), control)]
        )
    alpha = results.get("alpha")
    arm_ci = f"{_level_text(1.0 - alpha)} CI" if isinstance(alpha, int | float) else "CI"
    arm_headers = ("METRIC", "UNIT", "VARIANT", "USERS", "OUTCOMES", "MEAN", arm_ci)
    headers = ("METRIC", "VARIANT", "DIFFERENCE", "CI_HOLM", "LEVEL", "LIFT", "P (HOLM)")
    return "\n\n".join(
        [
            _head(experiment),
            out.table(arm_headers, arms),
            out.table((*headers, "VERDICT"), differences),
            srm_text(results.get("srm"), control),
        ]
    )


def _counts(counts: Any, control: str) -> str | None:
    """Per-arm counts, control first, then the other arms by name."""
    if not isinstance(counts, Mapping) or not counts:
        return None
    arms = sorted(counts, key=lambda arm: (arm != control, str(arm)))
    return ", ".join(f"{arm} {out.text(counts[arm])}" for arm in arms)


def srm_text(srm: Any, control: str = "control") -> str:
    """The split check: its verdict on the unit counted, then the counts it compared."""
    if not isinstance(srm, Mapping) or srm.get("p_value") is None:
        return "sample-ratio check: -"
    verdict = (
        f"MISMATCH: below {out.text(srm.get('threshold'))}, every number is suspect"
        if srm.get("mismatch")
        else "consistent with the design"
    )
    unit = srm.get("unit")
    on = f" on {unit}s" if isinstance(unit, str) and unit else ""
    line = f"sample-ratio check{on}: p = {srm['p_value']:.3g} ({verdict})"
    counts = [
        f"{label}: {text}"
        for label, text in (
            (f"{unit}s" if on else "observed", _counts(srm.get("observed"), control)),
            ("requests", _counts(srm.get("requests"), control) if unit != "request" else None),
        )
        if text is not None
    ]
    return line + ("\n  " + "; ".join(counts) if counts else "")
