"""Package the ensemble's weights, validated against the components in production.

The ensemble is built last: its golden set and latency come from running it on the
production versions of its components, exactly as serving will.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from common.models.base import Component, predict_rows
from common.models.ensemble import ARTIFACT_FORMAT, ROLES, EnsembleRuntime
from common.registry.records import Registry
from common.serving.pool import ModelPool
from tools.training.base import BuiltModel, finish, model_card

WEIGHTS = {"dcf": 0.6, "cca": 0.4}
RISK_STRENGTH = 0.15
SENTIMENT_STRENGTH = 0.05
CONFIDENCE = 0.90


GATE = {"criteria": [{"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0}]}
"""The ensemble learns nothing; its bar is speed (its components pass their own gates)."""


def artifact(components: dict[str, str] | None = None) -> bytes:
    body = {
        "format": ARTIFACT_FORMAT,
        "components": components or {role: role for role in ROLES},
        "weights": WEIGHTS,
        "risk_strength": RISK_STRENGTH,
        "sentiment_strength": SENTIMENT_STRENGTH,
        "confidence": CONFIDENCE,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def production_components(registry: Registry, ids: dict[str, str]) -> dict[str, Component]:
    pool = ModelPool(registry, size=len(ids))
    found = {}
    for role, model_id in ids.items():
        version = registry.get_model(model_id).production_version
        if version is None:
            raise ValueError(f"the ensemble needs {model_id!r} in production; promote it first")
        record = registry.get_version(model_id, version)
        found[role] = Component(model_id, version, pool.get(record).runtime)
    return found


def coherent_company(
    dcf: dict[str, Any], cca: dict[str, Any], risk: dict[str, Any], sentiment: dict[str, Any]
) -> dict[str, Any]:
    """One company seen by all four models: the DCF company's figures carried into the
    CCA and risk inputs, so the two valuations describe the same business."""
    revenue = float(dcf["revenue_musd"])
    margin = float(dcf["operating_margin"])
    tax = float(dcf.get("tax_rate", 0.25))
    depreciation = float(dcf.get("depreciation_to_revenue", 0.03))
    growth = dcf.get("revenue_growth", (dcf.get("growth_rates") or [0.1])[0])
    company_cca = {
        "sector": risk["sector"],
        "revenue_musd": revenue,
        "ebitda_musd": round(revenue * (margin + depreciation), 4),
        "net_income_musd": round(revenue * margin * (1 - tax), 4),
        "net_debt_musd": dcf["net_debt_musd"],
        "shares_outstanding_m": dcf["shares_outstanding_m"],
    }
    if "market_cap_hint_musd" in cca:
        company_cca["market_cap_hint_musd"] = cca["market_cap_hint_musd"]
    company_risk = {
        **risk,
        "revenue_musd": revenue,
        "revenue_growth": growth,
        "operating_margin": margin,
    }
    return {"dcf": dcf, "cca": company_cca, "risk": company_risk, "sentiment": sentiment}


def held_out_rows(registry: Registry, components: dict[str, Component]) -> list[dict[str, Any]]:
    """Ensemble inputs built from the components' own held-out golden inputs."""
    sets = {
        role: [g["instance"] for g in registry.get_version(c.model_id, c.version).golden_set]
        for role, c in components.items()
    }
    size = min(len(rows) for rows in sets.values())
    if size == 0:
        raise ValueError("every component needs a golden set to build the ensemble from")
    return [coherent_company(*(sets[role][i] for role in ROLES)) for i in range(size)]


def build(
    seed: int, data: Path | None = None, registry: Registry | None = None
) -> list[BuiltModel]:
    if data is not None:
        raise ValueError("the ensemble learns nothing from data; it takes no --data")
    if registry is None:
        raise ValueError("the ensemble is built against registered components")
    ids = {role: role for role in ROLES}
    components = production_components(registry, ids)
    rows = held_out_rows(registry, components)
    built_artifact = artifact(ids)
    runtime = EnsembleRuntime.from_artifact(built_artifact)
    outputs = predict_rows(runtime, rows, components)
    ratios = [
        abs(math.log(o["contributions"]["dcf"]["value_per_share"] / v))
        for o in outputs
        if (v := o["contributions"]["cca"]["value_per_share"]) > 0
        and o["contributions"]["dcf"]["value_per_share"] > 0
    ]
    ratios.sort()
    metrics = {
        "dcf_cca_median_abs_log_ratio": ratios[len(ratios) // 2] if ratios else float("nan"),
        "held_out_rows": len(rows),
    }
    card = model_card(
        intended_use=(
            "One blended value per share for a company going public, with the DCF, CCA, "
            "risk and sentiment contributions shown, for analysts pricing an offering."
        ),
        training_data=(
            "No training: fixed weights and adjustment strengths (docs/models/ensemble.md), "
            "checked on the components' held-out golden inputs."
        ),
        limitations=(
            "The interval is a normal approximation that treats the DCF and CCA spreads as "
            "independent; adjustments are bounded linear multipliers, not learned effects."
        ),
        risk_tier="high",
    )
    return [
        finish(
            model_id="ensemble",
            gate=GATE,
            runtime_class=EnsembleRuntime,
            artifact=built_artifact,
            description=(
                "Weighted DCF and CCA value per share, adjusted by the risk score and text "
                "sentiment, with an interval and each component's contribution."
            ),
            metrics={k: v for k, v in metrics.items() if not math.isnan(v)},
            card=card,
            training_rows=rows,
            held_out_rows=rows,
            components=components,
            tags={"components": ",".join(f"{r}={c.version}" for r, c in components.items())},
            explanation_baseline=explanation_baseline(registry, components),
        )
    ]


REFERENCE_TEXT = "The company describes its business, its markets and the offering."
"""The sentiment part of the ensemble's baseline: a text with no tone (score 0)."""


def explanation_baseline(
    registry: Registry, components: dict[str, Component]
) -> dict[str, Any] | None:
    """The components' own baselines made one company (``coherent_company``), with a
    toneless text; None when a valuation or the risk component has none."""
    parts = {
        role: registry.get_version(c.model_id, c.version).explanation_baseline
        for role, c in components.items()
        if role != "sentiment"
    }
    if any(part is None for part in parts.values()):
        return None
    return coherent_company(
        parts["dcf"] or {}, parts["cca"] or {}, parts["risk"] or {}, {"text": REFERENCE_TEXT}
    )
