"""The CCA model's schemas: the instance it values and the peer-set artifact it loads.

Kept apart from the runtime so the peer-set builder and the runtime share one definition
of a valid peer set.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from common.core.validation import StrictModel

ARTIFACT_FORMAT = "ipo-cca/1"
SECTORS = ("technology", "healthcare", "finance", "retail", "manufacturing")
Sector = Literal["technology", "healthcare", "finance", "retail", "manufacturing"]
MULTIPLES = ("ev_revenue", "ev_ebitda", "pe")
PERCENTILES = (25, 50, 75)
PERCENTILE_KEYS = ("p25", "p50", "p75")
MAX_MULTIPLE = 1000.0
MAX_PEERS = 5000
MAX_PEERS_LISTED = 50
WEIGHT_SUM_TOLERANCE = 1e-6

_QUANTILES = np.array(PERCENTILES, dtype=np.float64) / 100.0
_NOT_APPLICABLE = (
    "revenue_musd is not positive",
    "ebitda_musd is not positive",
    "net_income_musd is not positive",
)
_SELECTION = ("sector", "size_band", "nearest_by_size")


class CcaInstance(StrictModel):
    """A company to value, with the figures its peers' multiples are applied to."""

    sector: Sector = Field(description="Industry sector; peers come from this sector only.")
    revenue_musd: float = Field(
        gt=0,
        le=1_000_000,
        description="Last fiscal year revenue, USD m, above 0 (EV/Revenue applies to all).",
    )
    ebitda_musd: float = Field(
        ge=-1_000_000,
        le=1_000_000,
        description="Last fiscal year EBITDA, USD m; 0 or less makes EV/EBITDA not applicable.",
    )
    net_income_musd: float = Field(
        ge=-1_000_000,
        le=1_000_000,
        description="Last fiscal year net income, USD m; 0 or less makes P/E not applicable.",
    )
    net_debt_musd: float = Field(
        ge=-1_000_000,
        le=1_000_000,
        description="Debt minus cash, USD m (negative: net cash); equity = EV - net debt.",
    )
    shares_outstanding_m: float = Field(
        gt=0, le=1_000_000, description="Shares outstanding after the offering, millions."
    )
    market_cap_hint_musd: float | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        description=(
            "Expected market cap, USD m: with a size band in the peer set, only peers of "
            "similar size are used. Omit to use every peer of the sector."
        ),
    )


class CcaParameters(StrictModel):
    """Per-request options; the percentiles are fixed at 25, 50 and 75."""

    max_peers_listed: int = Field(
        default=5,
        ge=0,
        le=MAX_PEERS_LISTED,
        description="How many of the peers nearest the median to list in the output.",
    )


class Peer(StrictModel):
    """A listed company in the peer set; every multiple is positive and meaningful."""

    name: str = Field(min_length=1, max_length=200)
    sector: Sector
    ev_revenue: float = Field(gt=0, le=MAX_MULTIPLE)
    ev_ebitda: float = Field(gt=0, le=MAX_MULTIPLE)
    pe: float = Field(gt=0, le=MAX_MULTIPLE)
    market_cap_musd: float = Field(gt=0, le=10_000_000)


class Weights(StrictModel):
    """EV/Revenue must weigh something: it is the one multiple that applies to everyone."""

    ev_revenue: float = Field(gt=0, le=1)
    ev_ebitda: float = Field(ge=0, le=1)
    pe: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Weights:
        total = self.ev_revenue + self.ev_ebitda + self.pe
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"weights must sum to 1, not {total}")
        return self


class SizeBand(StrictModel):
    """Peers count as similar in size when within ``factor`` of the target's size hint."""

    factor: float = Field(gt=1, le=1000)


class PeerSet(StrictModel):
    """The whole artifact: validated strictly, so a damaged peer set is never served."""

    format: Literal["ipo-cca/1"]
    source: str = Field(min_length=1, max_length=1000)
    peers: list[Peer] = Field(min_length=1, max_length=MAX_PEERS)
    weights: Weights
    size_band: SizeBand | None = None
    min_peers: int = Field(ge=3, le=1000)

    @model_validator(mode="after")
    def _complete(self) -> PeerSet:
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError("peer names must be unique")
        for sector in SECTORS:
            count = sum(p.sector == sector for p in self.peers)
            if count < self.min_peers:
                raise ValueError(f"sector {sector} has {count} peers, fewer than min_peers")
        return self


def to_artifact(peer_set: PeerSet) -> bytes:
    """Canonical JSON bytes: the same peer set always hashes the same."""
    return json.dumps(
        peer_set.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    ).encode()
