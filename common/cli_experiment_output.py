"""Plain-text rendering of the A/B experiment answers of ``ipoctl experiment ...``.

Each renderer takes the decoded JSON answer of one experiment call (docs/EXPERIMENTS.md)
and returns the text to print; the generic pieces (tables, times) are common/cli_output.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import cli_output as out


def _fixed(value: Any, digits: int = 4) -> str | None:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else None


def _interval_text(ci: Any) -> str | None:
    if not isinstance(ci, Mapping) or ci.get("low") is None or ci.get("high") is None:
        return None
    return f"[{_fixed(ci['low'])}, {_fixed(ci['high'])}]"


def _lift_text(lift: Any) -> str | None:
    estimate = lift.get("estimate") if isinstance(lift, Mapping) else None
    return f"{100.0 * estimate:+.2f}%" if isinstance(estimate, int | float) else None


def _p_text(p: Any) -> str | None:
    return f"{p:.2g}" if isinstance(p, int | float) else None


def render_experiment(data: Mapping[str, Any]) -> str:
    variants, split = data.get("variants") or {}, data.get("split") or {}
    arms = [f"{v} {variants[v]} ({out.percent(100.0 * split.get(v, 0.0))})" for v in variants]
    metrics = [
        f"{m.get('name')} ({m.get('type')}, {m.get('direction')})"
        for m in data.get("metrics") or []
    ]
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
    return line if data.get("active", True) else line + " (experiment no longer active)"


def render_outcome(data: Mapping[str, Any]) -> str:
    return (
        f"recorded outcome of {out.text(data.get('exposure_id'))} "
        f"(variant {out.text(data.get('variant'))}): "
        f"{out.metrics_inline(data.get('values'))}"
    )


def _arm_row(metric: str, name: str, arm: Any) -> list[Any]:
    arm = arm if isinstance(arm, Mapping) else {}
    return [metric, name, arm.get("count"), _fixed(arm.get("mean")), _interval_text(arm.get("ci"))]


def render_results(data: Mapping[str, Any]) -> str:
    experiment = data.get("experiment") or {}
    results = data.get("results") or {}
    control = str(results.get("control") or "control")
    comparisons: Mapping[str, Any] = results.get("comparisons") or {}
    head = (
        f"experiment {out.text(experiment.get('experiment_id'))} on "
        f"{out.text(experiment.get('model_id'))} ({out.text(experiment.get('status'))})"
    )
    metrics: list[str] = []
    for per_metric in comparisons.values():
        metrics.extend(m for m in per_metric if m not in metrics)
    rows: list[list[Any]] = []
    for metric in metrics:
        cmps = [(v, comparisons[v][metric]) for v in comparisons if metric in comparisons[v]]
        rows.append([*_arm_row(metric, control, cmps[0][1].get("control")), None, None, None])
        for variant, cmp in cmps:
            lift, p = _lift_text(cmp.get("lift")), _p_text(cmp.get("p_value_adjusted"))
            rows.append([*_arm_row(metric, variant, cmp.get("variant")), lift, p, cmp["verdict"]])
    headers = ("METRIC", "VARIANT", "N", "MEAN", "95% CI", "LIFT", "P (HOLM)", "VERDICT")
    body = out.table(headers, rows) if rows else "no comparisons"
    return "\n\n".join([head, body, srm_line(results.get("srm"))])


def srm_line(srm: Any) -> str:
    if not isinstance(srm, Mapping) or srm.get("p_value") is None:
        return "sample-ratio check: -"
    verdict = (
        f"MISMATCH: below {out.text(srm.get('threshold'))}, every number is suspect"
        if srm.get("mismatch")
        else "consistent with the design"
    )
    return f"sample-ratio check: p = {srm['p_value']:.3g} ({verdict})"
