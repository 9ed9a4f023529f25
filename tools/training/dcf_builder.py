"""Package the DCF assumption set as a model version, with the evidence that it computes right.

A DCF is not fitted: a version is its assumption set (defaults, Monte Carlo draws, seed
and widths, sensitivity steps). What a version must show is that the runtime values
companies as the method says. The metrics compare it with a plain textbook valuation
(year by year, discounted with ``(1 + r) ** -t`` as ``numpy_financial.npv`` does) on
held-out companies, check that batches equal single calls and that the Monte Carlo
repeats, and describe the simulated ranges. The synthetic companies are documented in
docs/models/dcf.md ("Synthetic companies").
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.core.validation import validate
from common.models.dcf import ARTIFACT_FORMAT, DcfInstance, DcfRuntime
from common.models.dcf_math import standard_normals
from tools.training.base import BuiltModel, finish, median_instance, model_card

ASSUMPTIONS: dict[str, Any] = {
    "defaults": {
        "projection_years": 10,
        "growth_fade": 0.3,
        "tax_rate": 0.25,
        "capex_to_revenue": 0.05,
        "depreciation_to_revenue": 0.04,
        "working_capital_to_revenue": 0.10,
        "equity_risk_premium": 0.055,
        "debt_weight": 0.0,
        "credit_spread": 0.02,
        "terminal_growth": 0.025,
        "mid_year": True,
    },
    "monte_carlo": {
        "draws": 10_000,
        "widths": {
            "revenue_growth": 0.05,
            "operating_margin": 0.03,
            "discount_rate": 0.01,
            "terminal_growth": 0.005,
            "exit_ev_ebitda": 0.2,
        },
        "min_discount_rate": 0.01,
        "min_spread": 0.005,
    },
    "sensitivity": {
        "discount_rate_steps": [-0.02, -0.01, 0.0, 0.01, 0.02],
        "terminal_growth_steps": [-0.01, -0.005, 0.0, 0.005, 0.01],
        "exit_multiple_steps": [-2.0, -1.0, 0.0, 1.0, 2.0],
    },
}
"""Assumption set 1. A change here is a new model version, not a code change."""

CHECKS: dict[str, tuple[str, float]] = {
    "npv_max_rel_error": ("<=", 1e-9),
    "batch_matches_single": (">=", 1.0),
    "mc_reproducible": (">=", 1.0),
    "mc_point_inside_p5_p95": (">=", 0.95),
}
"""The version's own promotion criteria: it is promoted only if every one holds."""

COMPANIES = 1000
HELD_OUT = 200
CONSISTENCY_ROWS = 40


GATE = {
    "criteria": [
        {"metric": "npv_max_rel_error", "op": "<=", "threshold": 1e-6},
        {"metric": "batch_matches_single", "op": ">=", "threshold": 1.0},
        {"metric": "mc_reproducible", "op": ">=", "threshold": 1.0},
        {"metric": "mc_point_inside_p5_p95", "op": ">=", "threshold": 0.95},
        {"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0},
    ]
}
"""The DCF declares its own bar: exact arithmetic, reproducible simulation, honest range."""


def artifact(seed: int) -> bytes:
    """The assumption set as canonical JSON: the same seed always gives the same bytes."""
    body = {
        "format": ARTIFACT_FORMAT,
        **ASSUMPTIONS,
        "monte_carlo": {**ASSUMPTIONS["monte_carlo"], "seed": seed},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def synthetic_companies(n: int, seed: int) -> list[dict[str, float]]:
    """Plausible companies at IPO, every input drawn; rendering picks which are sent."""
    rng = np.random.default_rng(seed)
    revenue = np.clip(rng.lognormal(np.log(150.0), 1.2, n), 1.0, 100_000.0)
    depreciation = rng.uniform(0.02, 0.08, n)
    rf = rng.uniform(0.02, 0.05, n)
    columns = {
        "revenue_musd": revenue,
        "revenue_growth": np.clip(rng.normal(0.25, 0.15, n), -0.3, 0.9),
        "growth_fade": rng.uniform(0.15, 0.5, n),
        "projection_years": rng.choice(np.array([5, 7, 10]), n, p=[0.25, 0.25, 0.5]),
        "operating_margin": np.clip(rng.normal(0.12, 0.10, n), -0.3, 0.45),
        "tax_rate": rng.uniform(0.15, 0.30, n),
        "depreciation_to_revenue": depreciation,
        "capex_to_revenue": depreciation * rng.uniform(1.0, 1.8, n),
        "working_capital_to_revenue": np.clip(rng.normal(0.10, 0.06, n), -0.1, 0.3),
        "wacc": np.clip(rng.normal(0.10, 0.015, n), 0.06, 0.16),
        "risk_free_rate": rf,
        "beta": np.clip(rng.lognormal(np.log(1.2), 0.3, n), 0.5, 2.5),
        "equity_risk_premium": rng.uniform(0.045, 0.065, n),
        "debt_weight": rng.uniform(0.0, 0.3, n),
        "cost_of_debt": rf + rng.uniform(0.01, 0.04, n),
        "terminal_growth": rng.uniform(0.01, 0.035, n),
        "exit_ev_ebitda": np.clip(rng.lognormal(np.log(12.0), 0.3, n), 4.0, 30.0),
        "mid_year": rng.random(n) < 0.7,
        "net_debt_musd": revenue * rng.normal(0.2, 0.4, n),
        "shares_outstanding_m": np.clip(revenue * rng.lognormal(np.log(0.15), 0.5, n), 1, 1e5),
    }
    return [{k: v[i].item() for k, v in columns.items()} for i in range(n)]


CORE = ("revenue_musd", "operating_margin", "net_debt_musd", "shares_outstanding_m")
OPERATING = (
    "tax_rate",
    "capex_to_revenue",
    "depreciation_to_revenue",
    "working_capital_to_revenue",
)
CAPM = ("risk_free_rate", "beta", "equity_risk_premium", "debt_weight", "cost_of_debt")


def canonical_row(c: dict[str, Any]) -> dict[str, Any]:
    """Every input given: fade growth, wacc, Gordon. The drift baseline's shape."""
    names = (*CORE, "revenue_growth", "growth_fade", "projection_years", *OPERATING)
    row = {k: c[k] for k in names}
    row.update(
        wacc=c["wacc"],
        terminal_method="gordon",
        terminal_growth=c["terminal_growth"],
        mid_year=c["mid_year"],
    )
    return row


def fade_path(c: dict[str, Any]) -> list[float]:
    decay = [(1.0 - c["growth_fade"]) ** t for t in range(int(c["projection_years"]))]
    return [d * c["revenue_growth"] + (1.0 - d) * c["terminal_growth"] for d in decay]


def styled_row(c: dict[str, Any], i: int) -> dict[str, Any]:
    """Row i in one of four request styles, so a golden set exercises every path."""
    style = i % 4
    if style == 0:
        return canonical_row(c)
    if style == 1:  # CAPM, Gordon, operating inputs left to the defaults
        return {k: c[k] for k in (*CORE, "revenue_growth", *CAPM)}
    if style == 2:  # explicit growth, wacc, exit multiple, end-of-year
        row = {k: c[k] for k in (*CORE, *OPERATING, "wacc", "exit_ev_ebitda")}
        row.update(growth_rates=fade_path(c), terminal_method="exit_multiple", mid_year=False)
        return row
    row = {k: c[k] for k in (*CORE, "revenue_growth", "risk_free_rate", "beta", "exit_ev_ebitda")}
    row["terminal_method"] = "exit_multiple"
    return row


def read_companies(path: Path) -> list[dict[str, Any]]:
    """A CSV whose columns are instance fields; empty cells are left to the defaults.

    ``growth_rates`` is semicolon-separated. A cell that does not parse is passed on as
    text, so validation names the row, the field and the value.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            {k: _parse(k, v) for k, v in record.items() if v is not None and v.strip()}
            for record in csv.DictReader(handle)
        ]
    validate(DcfRuntime.instances_adapter(), rows, prefix=("rows",), what="data")
    return rows


def _parse(name: str, cell: str) -> Any:
    text = cell.strip()
    try:
        if name == "growth_rates":
            return [float(part) for part in text.split(";")]
        if name == "projection_years":
            return int(text)
        if name == "mid_year":
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        if name == "terminal_method":
            return text
        return float(text)
    except (ValueError, KeyError):
        return text


def reference_enterprise_value(
    instance: dict[str, Any], output: dict[str, Any]
) -> tuple[float, float]:
    """The textbook valuation, one year at a time, from the inputs the runtime resolved.

    NOPAT + D&A - capex - change in working capital per year, discounted by
    ``(1 + r) ** -(t - 0.5)`` mid-year or ``(1 + r) ** -t``; Gordon on the year after the
    horizon, or the exit multiple on the last year's EBITDA. Returns the value and the
    sum of the absolute present values, the scale a rounding error is measured against.
    """
    a = output["assumptions"]
    r, g = output["discount_rate"], output["terminal_growth"]
    margin: float = instance["operating_margin"]
    tax: float = a["tax_rate"]
    dep: float = a["depreciation_to_revenue"]
    capex: float = a["capex_to_revenue"]
    wc: float = a["working_capital_to_revenue"]
    if "growth_rates" in instance:
        growth = list(instance["growth_rates"])
    else:
        keep = 1 - a["growth_fade"]
        growth = [
            keep**t * instance["revenue_growth"] + (1 - keep**t) * g
            for t in range(a["projection_years"])
        ]

    def cash_flow(revenue: float, previous: float) -> float:
        ebit = margin * revenue
        nopat = ebit - tax * max(ebit, 0.0)
        return nopat + dep * revenue - capex * revenue - wc * (revenue - previous)

    revenue, flows = instance["revenue_musd"], [0.0]
    for rate in growth:
        previous, revenue = revenue, revenue * (1 + rate)
        flows.append(cash_flow(revenue, previous))
    shift = (1 + r) ** 0.5 if a["mid_year"] else 1.0
    present = [v / (1 + r) ** t * shift for t, v in enumerate(flows)]
    years = len(growth)
    if output["terminal_method"] == "gordon":
        terminal = cash_flow(revenue * (1 + g), revenue) / (r - g) / (1 + r) ** years * shift
    else:
        terminal = instance["exit_ev_ebitda"] * (margin + dep) * revenue / (1 + r) ** years
    return sum(present) + terminal, sum(abs(v) for v in present) + abs(terminal)


def evaluate(
    runtime: DcfRuntime, rows: Sequence[dict[str, Any]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics and the promotion report for a set of held-out rows."""
    instances = runtime.instances_adapter().validate_python(list(rows))
    params = runtime.parameters_adapter().validate_python({})
    outputs = runtime.predict(instances, params)
    errors = []
    for row, out in zip(rows, outputs, strict=True):
        expected, scale = reference_enterprise_value(row, out)
        errors.append(abs(out["enterprise_value_musd"] - expected) / max(scale, 1e-12))
    few = instances[:CONSISTENCY_ROWS]
    one_by_one = [runtime.predict([x], params)[0] for x in few]
    # Reproducible means from the artifact alone: a fresh runtime, no cached draws.
    standard_normals.cache_clear()
    again = type(runtime)(runtime.artifact).predict(few, params)
    point = np.array([o["value_per_share"] for o in outputs])
    mc = {k: np.array([o["monte_carlo"][k] for o in outputs]) for k in ("p5", "p50", "p95")}
    positive = point > 0
    shares = [o["terminal_value_share"] for o in outputs if o["terminal_value_share"] is not None]
    metrics = {
        "npv_max_rel_error": max(errors),
        "batch_matches_single": float(one_by_one == outputs[:CONSISTENCY_ROWS]),
        "mc_reproducible": float(again == outputs[:CONSISTENCY_ROWS]),
        "mc_point_inside_p5_p95": float(np.mean((mc["p5"] <= point) & (point <= mc["p95"]))),
        "held_out_rows": float(len(rows)),
    }
    # Descriptive medians, recorded only when there is something to take them over.
    if positive.any():
        metrics["mc_p50_over_point_median"] = float(
            np.median(mc["p50"][positive] / point[positive])
        )
        metrics["mc_relative_width_median"] = float(
            np.median((mc["p95"] - mc["p5"])[positive] / point[positive])
        )
    if shares:
        metrics["terminal_value_share_median"] = float(np.median(shares))
    checks = {
        name: {
            "operator": op,
            "threshold": bound,
            "value": metrics[name],
            "passed": _holds(metrics[name], op, bound),
        }
        for name, (op, bound) in CHECKS.items()
    }
    return metrics, {"checks": checks, "passed": all(c["passed"] for c in checks.values())}


def _holds(value: float, op: str, bound: float) -> bool:
    return math.isfinite(value) and (value <= bound if op == "<=" else value >= bound)


def build(seed: int, data: Path | None = None) -> list[BuiltModel]:
    """The DCF assumption set, checked on synthetic companies or the user's CSV (``data``)."""
    if data is not None:
        rows = read_companies(data)
        if not rows:
            raise ValueError(f"{data} has no companies")
        order = np.random.default_rng(seed).permutation(len(rows))
        cut = max(1, len(rows) // 4)
        held_out = [rows[i] for i in order[:cut]]
        fields = DcfInstance.model_fields
        training = [
            {k: rows[i].get(k, fields[k].default) for k in fields} for i in order[cut:]
        ] or [dict(r) for r in held_out]
        source = f"{len(rows)} companies from {data.name}"
    else:
        companies = synthetic_companies(COMPANIES, seed)
        training = [canonical_row(c) for c in companies[:-HELD_OUT]]
        held_out = [styled_row(c, i) for i, c in enumerate(companies[-HELD_OUT:])]
        source = (
            f"{COMPANIES} synthetic companies (seeded generator in docs/models/dcf.md): "
            f"{len(training)} as the drift baseline, {len(held_out)} held out in four "
            "request styles for the checks and the golden set"
        )
    body = artifact(seed)
    runtime = DcfRuntime.from_artifact(body)
    held_out = [_rounded(r) for r in held_out]
    metrics, report = evaluate(runtime, held_out)
    card = model_card(
        intended_use=(
            "Intrinsic value of a company going public from its own projections, with the "
            "range its uncertain inputs imply; one input to the ensemble valuation. Not an "
            "investment recommendation."
        ),
        training_data=(f"No fitting: the version is an assumption set. Checked on {source}."),
        limitations=(
            "As good as the inputs: constant margin and reinvestment shares, no tax credit "
            "on losses, independent Monte Carlo shocks, terminal value often most of the "
            "value. See docs/models/dcf.md."
        ),
        risk_tier="high",
    )
    return [
        finish(
            model_id="dcf",
            gate=GATE,
            runtime_class=DcfRuntime,
            artifact=body,
            description=(
                "Free-cash-flow-to-firm DCF with Gordon or exit-multiple terminal value, a "
                "discount-rate x terminal sensitivity grid and a seeded Monte Carlo range."
            ),
            metrics=metrics,
            card=card,
            training_rows=training,
            held_out_rows=held_out,
            reports={"promotion": report, "assumption_set": json.loads(body)},
            tags={"method": "fcff-dcf", "artifact_format": ARTIFACT_FORMAT},
            promote=bool(report["passed"]),
            explanation_baseline=median_instance(training, DcfRuntime),
        )
    ]


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Inputs as ``finish`` stores them (4 decimals), so checks see the golden set's rows."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, float):
            out[k] = round(v, 4)
        elif isinstance(v, list):
            out[k] = [round(x, 4) for x in v]
        else:
            out[k] = v
    return out
