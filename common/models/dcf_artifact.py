"""What a DCF model version is: its assumption set, stored as JSON.

Nothing runs when it is loaded; the ranges below bound every value a request may leave to
the version's defaults.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from common.core.validation import StrictModel

ARTIFACT_FORMAT = "ipo-dcf/1"
MAX_YEARS = 30
MAX_DRAWS = 100_000


class Defaults(StrictModel):
    """Values an instance may leave out."""

    projection_years: int = Field(ge=1, le=MAX_YEARS)
    growth_fade: float = Field(ge=0, le=1)
    tax_rate: float = Field(ge=0, le=0.6)
    capex_to_revenue: float = Field(ge=0, le=2)
    depreciation_to_revenue: float = Field(ge=0, le=2)
    working_capital_to_revenue: float = Field(ge=-1, le=1)
    equity_risk_premium: float = Field(ge=0, le=0.2)
    debt_weight: float = Field(ge=0, le=0.95)
    credit_spread: float = Field(ge=0, le=0.2)
    terminal_growth: float = Field(ge=-0.1, le=0.1)
    mid_year: bool


class MonteCarloWidths(StrictModel):
    """Standard deviations of the shocks; the exit multiple's is of its logarithm."""

    revenue_growth: float = Field(ge=0, le=0.5)
    operating_margin: float = Field(ge=0, le=0.5)
    discount_rate: float = Field(ge=0, le=0.1)
    terminal_growth: float = Field(ge=0, le=0.05)
    exit_ev_ebitda: float = Field(ge=0, le=1)


SPREAD_TOLERANCE = 1e-12
"""Rounding slack in the ``min_spread`` rule: 0.03 - 0.025 is 0.0049999999999999975, and a
spread of exactly the minimum is allowed."""


class MonteCarloSettings(StrictModel):
    draws: int = Field(ge=100, le=MAX_DRAWS)
    seed: int = Field(ge=0, le=2**63 - 1)
    widths: MonteCarloWidths
    min_discount_rate: float = Field(gt=0, le=0.1)
    min_spread: float = Field(gt=0, le=0.05)


Steps = Annotated[list[float], Field(min_length=1, max_length=11)]


class SensitivitySettings(StrictModel):
    """Offsets added to the point estimate's inputs; each list is sorted and holds 0."""

    discount_rate_steps: Steps
    terminal_growth_steps: Steps
    exit_multiple_steps: Steps

    @field_validator("discount_rate_steps", "terminal_growth_steps", "exit_multiple_steps")
    @classmethod
    def _sorted_with_centre(cls, steps: list[float]) -> list[float]:
        if steps != sorted(set(steps)) or 0.0 not in steps:
            raise ValueError("steps must be strictly increasing and include 0")
        if max(abs(s) for s in steps) > 50:
            raise ValueError("steps must lie within [-50, 50]")
        return steps


class DcfArtifact(StrictModel):
    """A model version: the assumption set, serialised as JSON (nothing runs on load)."""

    format: Literal["ipo-dcf/1"]
    defaults: Defaults
    monte_carlo: MonteCarloSettings
    sensitivity: SensitivitySettings
