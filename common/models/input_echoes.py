"""Which prediction fields repeat an input, per model kind.

A DCF answer shows the assumptions it rests on (``assumptions``, ``discount_rate``,
``terminal_growth``, the sensitivity grid around them, the growth path); a CCA answer names
the sector it compared against. When the payload log redacts an input, these go too
(``common.audit.payload_log``): redacting ``wacc`` and keeping ``discount_rate`` would
keep the wacc. Values the model works out from several inputs together (enterprise value,
the projected revenue) are its answer and are kept. A test
(tests/functions/test_payload_log_redaction.py) checks that no other prediction field of
every served model's example equals one of its redacted inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

_DISCOUNT = ("discount_rate", "sensitivity")
"""The discount rate, and the grid of values around it."""

DCF: Mapping[str, tuple[str, ...]] = {
    "revenue_growth": ("projection.growth",),
    "growth_fade": ("assumptions.growth_fade", "projection.growth"),
    "growth_rates": ("projection.growth",),
    "projection_years": ("assumptions.projection_years",),
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
    "terminal_growth": ("terminal_growth", "sensitivity"),
    "exit_ev_ebitda": ("exit_ev_ebitda", "sensitivity"),
    "mid_year": ("assumptions.mid_year",),
    "draws": ("monte_carlo.draws",),
    "seed": ("monte_carlo.seed",),
}

CCA: Mapping[str, tuple[str, ...]] = {"sector": ("sector",)}
