"""Build the CCA peer set: from the user's peer CSV, or a seeded synthetic demo set.

A CCA model has nothing to fit: its artifact is the peer set itself. What a builder owes
is validation (every peer usable, every sector with enough peers) and evidence: a
leave-one-out test that values each peer from the others, as serving would value a new
company. The generator of the synthetic demo set is documented in docs/models/cca.md;
keep the two in step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from common.models.cca import CcaRuntime
from common.models.cca_schema import (
    MULTIPLES,
    SECTORS,
    PeerSet,
    to_artifact,
)
from tools.training.base import BuiltModel, finish, median_instance, model_card
from tools.training.cca_peers import (
    MAX_MARKET_CAP_MUSD,
    SYNTHETIC_PROFILES,
    peer_set_from_csv,
    synthetic_peer_set,
)

TARGETS = 500
HELD_OUT_SHARE = 0.2


GATE = {
    "criteria": [
        {"metric": "loo_median_abs_log_error_blended", "op": "<=", "threshold": 0.5},
        {"metric": "peers_per_sector_min", "op": ">=", "threshold": 5.0},
        {"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0},
    ]
}
"""CCA's bar: peers value each other within a factor of e^0.5 at the median, enough peers."""


def synthetic_targets(n: int, seed: int) -> list[dict[str, Any]]:
    """Companies to value, valid for CcaInstance; some with negative EBITDA or earnings."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        sector = SECTORS[int(rng.integers(len(SECTORS)))]
        profile = SYNTHETIC_PROFILES[sector]
        revenue = float(np.clip(rng.lognormal(math.log(300.0), 1.2), 1.0, 100_000.0))
        ebitda_margin = float(np.clip(rng.normal(profile.ebitda_margin, 0.15), -1.0, 0.6))
        net_margin = ebitda_margin - float(np.clip(rng.normal(0.09, 0.04), 0.0, 0.3))
        size = revenue * profile.ev_revenue * float(rng.lognormal(0.0, 0.5))
        rows.append(
            {
                "sector": sector,
                "revenue_musd": revenue,
                "ebitda_musd": revenue * ebitda_margin,
                "net_income_musd": revenue * net_margin,
                "net_debt_musd": revenue * float(np.clip(rng.normal(0.2, 0.4), -1.0, 2.0)),
                "shares_outstanding_m": float(np.clip(rng.lognormal(math.log(100.0), 0.8), 1, 1e4)),
                "market_cap_hint_musd": float(np.clip(size, 1.0, MAX_MARKET_CAP_MUSD)),
            }
        )
    return rows


def leave_one_out(runtime: CcaRuntime) -> tuple[dict[str, float], dict[str, Any]]:
    """Value every peer from the other peers of its sector, as serving values a company.

    The peer's own market cap is its size hint. Implied over actual value is
    p50(others) / own multiple (EV for EV multiples, market cap for P/E). The blend treats
    EV as market cap, since a peer set carries no net debt.
    """
    peer_set = runtime.peer_set
    weights = np.array([getattr(peer_set.weights, m) for m in MULTIPLES])
    factor = peer_set.size_band.factor if peer_set.size_band else None
    errors: list[np.ndarray] = []
    blended: list[np.ndarray] = []
    per_sector: dict[str, Any] = {}
    for sector in SECTORS:
        table = runtime.sectors[sector]
        size = len(table.listing)
        eligible = ~np.eye(size, dtype=bool)
        if factor is None:
            mask = eligible
        else:
            mask, _ = table.select(table.market_cap, factor, peer_set.min_peers, eligible)
        medians = table.summarise(mask)[0][:, :, 1]
        own = np.array([[peer[m] for m in MULTIPLES] for peer in table.listing])
        log_error = np.abs(np.log(medians / own))
        log_blend = np.abs(np.log((medians / own) @ weights))
        errors.append(log_error)
        blended.append(log_blend)
        per_sector[sector] = {
            "peers": size,
            **{
                f"median_abs_log_error_{m}": round(float(np.median(log_error[:, i])), 6)
                for i, m in enumerate(MULTIPLES)
            },
            "median_abs_log_error_blended": round(float(np.median(log_blend)), 6),
        }
    all_errors, all_blended = np.vstack(errors), np.concatenate(blended)
    metrics = {
        **{
            f"loo_median_abs_log_error_{m}": float(np.median(all_errors[:, i]))
            for i, m in enumerate(MULTIPLES)
        },
        "loo_median_abs_log_error_blended": float(np.median(all_blended)),
        "loo_share_within_25pct_blended": float(np.mean(all_blended <= math.log(1.25))),
    }
    return metrics, per_sector


def summary(peer_set: PeerSet) -> dict[str, Any]:
    """What a reviewer checks first: peers per sector and their median multiples."""
    runtime = CcaRuntime(peer_set)
    return {
        "source": peer_set.source,
        "peers": len(peer_set.peers),
        "weights": peer_set.weights.model_dump(),
        "size_band": peer_set.size_band.model_dump() if peer_set.size_band else None,
        "min_peers": peer_set.min_peers,
        "sectors": {
            s: {
                "peers": len(t.listing),
                "median": {
                    m: round(float(t.full_percentiles[i, 1]), 6) for i, m in enumerate(MULTIPLES)
                },
            }
            for s, t in runtime.sectors.items()
        },
    }


def package(peer_set: PeerSet, *, seed: int, synthetic: bool) -> BuiltModel:
    artifact = to_artifact(peer_set)
    runtime = CcaRuntime.from_artifact(artifact)
    loo, per_sector = leave_one_out(runtime)
    counts = [len(t.listing) for t in runtime.sectors.values()]
    metrics = {
        **loo,
        "peers_total": float(len(peer_set.peers)),
        "peers_per_sector_min": float(min(counts)),
    }
    targets = synthetic_targets(TARGETS, seed + 1)
    held = int(len(targets) * HELD_OUT_SHARE)
    # Every third held-out company omits its size hint, so the golden set covers both paths.
    held_out = [
        {k: v for k, v in row.items() if i % 3 != 1 or k != "market_cap_hint_musd"}
        for i, row in enumerate(targets[:held])
    ]
    data = (
        "Synthetic demo peer set: fictitious companies drawn from a seeded generator "
        f"(seed {seed}, docs/models/cca.md), not market data"
        if synthetic
        else f"Peer set built from the user's {peer_set.source}"
    )
    card = model_card(
        intended_use=(
            "A market-based cross-check of an IPO's value per share from the trailing "
            "multiples of listed peers, for analysts alongside DCF. Not a price "
            "recommendation."
        ),
        training_data=(
            f"{data}: {len(peer_set.peers)} peers, at least {min(counts)} per sector. "
            f"Golden set and drift baseline use {len(targets)} synthetic target companies."
        ),
        limitations=(
            "Trailing multiples only; peers are matched by sector and optionally size, not by "
            "growth or margins. The leave-one-out blend treats peer EV as market cap, since "
            "the peer set carries no net debt. A synthetic peer set says nothing about real "
            "markets."
        ),
    )
    return finish(
        model_id="cca",
        gate=GATE,
        runtime_class=CcaRuntime,
        artifact=artifact,
        description=(
            "Comparable-company analysis: EV/Revenue, EV/EBITDA and P/E at the sector peers' "
            "25th/50th/75th percentiles, blended into a value per share."
        ),
        metrics=metrics,
        card=card,
        training_rows=targets[held:],
        held_out_rows=held_out,
        reports={"peer_set": summary(peer_set), "leave_one_out": per_sector},
        tags={"framework": "numpy", "peer_set": "synthetic" if synthetic else "csv"},
        explanation_baseline=median_instance(targets[held:], CcaRuntime),
    )


def build(seed: int, data: Path | None = None) -> list[BuiltModel]:
    """The CCA model from the user's peer CSV (``data``), else the synthetic demo set."""
    if data is not None:
        return [package(peer_set_from_csv(data), seed=seed, synthetic=False)]
    return [package(synthetic_peer_set(seed), seed=seed, synthetic=True)]


def parse_weights(text: str) -> dict[str, float]:
    """``ev_revenue=0.3,ev_ebitda=0.4,pe=0.3`` -> a weights mapping (checked by PeerSet)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in MULTIPLES:
            raise ValueError(
                f"weights: {part.strip()!r} is not name=weight, name one of {', '.join(MULTIPLES)}"
            )
        try:
            weights[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"weights: {value.strip()!r} is not a number") from None
    return weights
