"""Which prediction fields repeat an input, per model kind.

A DCF answer shows the assumptions it rests on (``assumptions``, ``discount_rate``,
``terminal_growth``, the sensitivity grid around them) and paths worked out from one or two
of them by plain arithmetic (the discount factors from the rate, the growth path from the
first year's growth, its fade and the terminal growth); a CCA answer names the sector it
compared against. When the payload log redacts an input, these go too
(``common.audit.payload_log``): redacting ``wacc`` and keeping ``discount_rate`` would keep
the wacc. The valuation itself (enterprise and equity value, value per share, the terminal
value, the Monte Carlo spread) depends on every input, and is kept: with the other inputs
kept too, a reader could still solve for a redacted one from it (docs/PAYLOAD_LOG.md says
so). A test (tests/functions/test_payload_log_redaction.py) checks that no other prediction
field of every served model's example equals one of its redacted inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

_DISCOUNT = ("discount_rate", "sensitivity", "projection.discount_factor")
"""The discount rate, the grid of values around it, and the discount factors, each year's
the last one's over one plus the rate."""
_GROWTH = ("projection.growth",)
"""The growth path: the first year's rate, fading towards the terminal growth."""

DCF: Mapping[str, tuple[str, ...]] = {
    "revenue_musd": ("projection",),  # the revenue path starts from it
    "revenue_growth": _GROWTH,
    "growth_fade": ("assumptions.growth_fade", *_GROWTH),
    "growth_rates": _GROWTH,
    "projection_years": ("assumptions.projection_years", "projection"),  # the paths' length
    "tax_rate": ("assumptions.tax_rate",),
    "capex_to_revenue": ("assumptions.capex_to_revenue",),
    "depreciation_to_revenue": ("assumptions.depreciation_to_revenue",),
    "working_capital_to_revenue": ("assumptions.working_capital_to_revenue",),
    "wacc": _DISCOUNT,
    "risk_free_rate": ("assumptions.cost_of_equity", *_DISCOUNT),
    "beta": ("assumptions.cost_of_equity", *_DISCOUNT),
    "equity_risk_premium": (
        "assumptions.equity_risk_premium",
        "assumptions.cost_of_equity",
        *_DISCOUNT,
    ),
    "cost_of_debt": ("assumptions.cost_of_debt", *_DISCOUNT),
    "debt_weight": ("assumptions.debt_weight", *_DISCOUNT),
    "terminal_method": ("terminal_method",),
    "terminal_growth": ("terminal_growth", "sensitivity", *_GROWTH),
    "exit_ev_ebitda": ("exit_ev_ebitda", "sensitivity"),
    "mid_year": ("assumptions.mid_year", "projection.discount_factor"),
}

CCA: Mapping[str, tuple[str, ...]] = {"sector": ("sector",)}
