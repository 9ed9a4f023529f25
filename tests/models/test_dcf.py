"""The DCF runtime: hand-worked values, numpy-financial agreement, properties, rules, batches."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy_financial as npf
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from common.backends._support import check_document
from common.core.errors import IntegrityError, InvalidValuesError
from common.core.validation import validate
from common.models.dcf import DcfRuntime
from common.models.dcf_math import standard_normals
from common.models.dcf_schema import work_errors
from tests.support.fixtures import SEED, hand_company
from tools.training import dcf_builder

RUNTIME = DcfRuntime.from_artifact(dcf_builder.artifact(SEED))
QUICK = {"monte_carlo": False, "sensitivity": False}

OUTPUT_KEYS = {
    "enterprise_value_musd",
    "equity_value_musd",
    "value_per_share",
    "pv_explicit_musd",
    "pv_terminal_musd",
    "terminal_value_musd",
    "terminal_value_share",
    "discount_rate",
    "terminal_method",
    "terminal_growth",
    "exit_ev_ebitda",
    "projection",
    "assumptions",
    "defaults_applied",
    "sensitivity",
    "monte_carlo",
}


def predict(
    rows: list[dict[str, Any]], runtime: DcfRuntime = RUNTIME, **params: Any
) -> list[dict[str, Any]]:
    """As serving does: validate the batch and the parameters, then one call."""
    instances = validate(runtime.instances_adapter(), rows, prefix=("instances",))
    parameters = validate(runtime.parameters_adapter(), params, prefix=("parameters",))
    return runtime.predict(instances, parameters)


# --- Worked by hand ----------------------------------------------------------------------


def test_three_year_gordon_example_by_hand() -> None:
    # Revenue 100 grows 20%, 10%, 5%: 120, 132, 138.6; then 3% a year forever.
    # FCF = EBIT (20% of revenue) x (1 - 25% tax) + D&A (5%) - capex (7%)
    #       - working capital (10%) x the revenue increase.
    fcf1 = 120 * 0.20 * 0.75 + 120 * 0.05 - 120 * 0.07 - 0.10 * (120 - 100)
    fcf2 = 132 * 0.20 * 0.75 + 132 * 0.05 - 132 * 0.07 - 0.10 * (132 - 120)
    fcf3 = 138.6 * 0.20 * 0.75 + 138.6 * 0.05 - 138.6 * 0.07 - 0.10 * (138.6 - 132)
    assert (fcf1, fcf2, fcf3) == pytest.approx((13.6, 15.96, 17.358))
    revenue4 = 138.6 * 1.03
    fcf4 = revenue4 * 0.20 * 0.75 + revenue4 * 0.05 - revenue4 * 0.07 - 0.10 * (revenue4 - 138.6)
    terminal = fcf4 / (0.10 - 0.03)  # Gordon: next year's cash flow over (r - g)
    pv_explicit = fcf1 / 1.1 + fcf2 / 1.1**2 + fcf3 / 1.1**3
    pv_terminal = terminal / 1.1**3
    enterprise = pv_explicit + pv_terminal
    equity = enterprise - 50.0
    assert enterprise == pytest.approx(233.3223, abs=1e-4)

    (out,) = predict([hand_company()], **QUICK)
    assert out["projection"]["revenue_musd"] == pytest.approx([120.0, 132.0, 138.6])
    assert out["projection"]["free_cash_flow_musd"] == pytest.approx([fcf1, fcf2, fcf3])
    assert out["projection"]["discount_factor"] == pytest.approx([1 / 1.1, 1 / 1.21, 1 / 1.331])
    assert out["terminal_value_musd"] == pytest.approx(terminal, rel=1e-12)
    assert out["pv_explicit_musd"] == pytest.approx(pv_explicit, rel=1e-12)
    assert out["pv_terminal_musd"] == pytest.approx(pv_terminal, rel=1e-12)
    assert out["enterprise_value_musd"] == pytest.approx(enterprise, rel=1e-12)
    assert out["equity_value_musd"] == pytest.approx(equity, rel=1e-12)
    assert out["value_per_share"] == pytest.approx(equity / 10.0, rel=1e-12)
    assert out["terminal_value_share"] == pytest.approx(pv_terminal / enterprise, rel=1e-12)
    assert out["discount_rate"] == 0.10
    assert out["defaults_applied"] == []
    assert out["sensitivity"] is None
    assert out["monte_carlo"] is None


def test_exit_multiple_with_mid_year_discounting_by_hand() -> None:
    fcfs = [13.6, 15.96, 17.358]
    # Cash flows arrive mid-year: discounted 0.5, 1.5 and 2.5 years.
    pv_explicit = sum(f / 1.1 ** (t + 0.5) for t, f in enumerate(fcfs))
    # The exit is a price paid at the end of year 3: 8 x EBITDA (EBIT 20% + D&A 5%).
    terminal = 8.0 * (0.20 + 0.05) * 138.6
    pv_terminal = terminal / 1.1**3
    row = hand_company(
        terminal_method="exit_multiple", terminal_growth=None, exit_ev_ebitda=8.0, mid_year=True
    )
    del row["terminal_growth"]
    (out,) = predict([row], **QUICK)
    assert out["terminal_value_musd"] == pytest.approx(277.2)
    assert out["pv_explicit_musd"] == pytest.approx(pv_explicit, rel=1e-12)
    assert out["pv_terminal_musd"] == pytest.approx(pv_terminal, rel=1e-12)
    assert out["projection"]["discount_factor"][0] == pytest.approx(1 / 1.1**0.5)
    assert out["terminal_growth"] is None


def test_mid_year_gordon_value_is_discounted_like_the_flows() -> None:
    end, mid = predict([hand_company(), hand_company(mid_year=True)], **QUICK)
    # Every flow, the perpetuity's included, arrives half a year earlier.
    assert mid["enterprise_value_musd"] == pytest.approx(
        end["enterprise_value_musd"] * 1.1**0.5, rel=1e-12
    )


def test_losses_earn_no_tax_credit_and_negative_values_are_reported() -> None:
    row = hand_company(
        growth_rates=[0.0],
        operating_margin=-0.10,
        tax_rate=0.30,
        depreciation_to_revenue=0.0,
        capex_to_revenue=0.0,
        working_capital_to_revenue=0.0,
        terminal_growth=0.0,
        net_debt_musd=5.0,
    )
    (out,) = predict([row], **QUICK)
    # EBIT -10 is taxed at nothing, so FCF is -10 a year for ever: -10/1.1 - (-10/0.1)/1.1.
    assert out["projection"]["free_cash_flow_musd"] == pytest.approx([-10.0])
    assert out["enterprise_value_musd"] == pytest.approx(-10 / 1.1 - 100 / 1.1)
    assert out["value_per_share"] == pytest.approx((-100.0 - 5.0) / 10.0)
    assert out["terminal_value_share"] is None  # undefined for a non-positive EV


def test_fade_path_by_hand() -> None:
    row = hand_company(revenue_growth=0.30, growth_fade=0.5, projection_years=4)
    del row["growth_rates"]
    row["terminal_growth"] = 0.02
    (out,) = predict([row], **QUICK)
    # g_t = 2% + (30% - 2%) x (1 - 0.5)^(t - 1)
    expected = [0.02 + 0.28 * 0.5**t for t in range(4)]
    assert expected == pytest.approx([0.30, 0.16, 0.09, 0.055])
    assert out["projection"]["growth"] == pytest.approx(expected)
    revenue = 100 * 1.30 * 1.16 * 1.09 * 1.055
    assert out["projection"]["revenue_musd"][-1] == pytest.approx(revenue)
    assert out["assumptions"]["growth_fade"] == 0.5


def test_capm_discount_rate_by_hand() -> None:
    row = hand_company(
        risk_free_rate=0.04, beta=1.2, equity_risk_premium=0.05, debt_weight=0.2, cost_of_debt=0.06
    )
    del row["wacc"]
    (out,) = predict([row], **QUICK)
    cost_of_equity = 0.04 + 1.2 * 0.05  # 10%
    wacc = 0.8 * cost_of_equity + 0.2 * 0.06 * (1 - 0.25)  # after-tax cost of debt
    assert wacc == pytest.approx(0.089)
    assert out["discount_rate"] == pytest.approx(wacc, rel=1e-12)
    assert out["assumptions"]["cost_of_equity"] == pytest.approx(0.10)
    # Without a cost of debt: risk-free + the assumption set's credit spread (2%).
    row.pop("cost_of_debt")
    row["risk_free_rate"] = 0.03
    (out,) = predict([row], **QUICK)
    assert out["assumptions"]["cost_of_debt"] == pytest.approx(0.05)
    assert out["discount_rate"] == pytest.approx(0.8 * 0.09 + 0.2 * 0.05 * 0.75)
    assert "cost_of_debt" in out["defaults_applied"]


def test_defaults_come_from_the_assumption_set_and_are_listed() -> None:
    row = {
        "revenue_musd": 200.0,
        "revenue_growth": 0.2,
        "operating_margin": 0.15,
        "risk_free_rate": 0.04,
        "beta": 1.1,
        "net_debt_musd": 0.0,
        "shares_outstanding_m": 20.0,
    }
    (out,) = predict([row], **QUICK)
    defaults = dcf_builder.ASSUMPTIONS["defaults"]
    assert out["assumptions"]["projection_years"] == defaults["projection_years"]
    assert out["assumptions"]["tax_rate"] == defaults["tax_rate"]
    assert out["terminal_growth"] == defaults["terminal_growth"]
    assert out["discount_rate"] == pytest.approx(0.04 + 1.1 * defaults["equity_risk_premium"])
    assert set(out["defaults_applied"]) == {
        "growth_fade",
        "projection_years",
        "tax_rate",
        "capex_to_revenue",
        "depreciation_to_revenue",
        "working_capital_to_revenue",
        "mid_year",
        "terminal_growth",
        "equity_risk_premium",
        "debt_weight",
    }
    assert len(out["projection"]["free_cash_flow_musd"]) == defaults["projection_years"]


# --- numpy-financial on random companies ------------------------------------------------


def random_company(rng: np.random.Generator) -> dict[str, Any]:
    """Every input drawn and given explicitly, in a random growth/discount/terminal style."""
    years = int(rng.integers(1, 16))
    row: dict[str, Any] = {
        "revenue_musd": float(rng.uniform(1, 5000)),
        "operating_margin": float(rng.uniform(-0.4, 0.5)),
        "tax_rate": float(rng.uniform(0, 0.4)),
        "capex_to_revenue": float(rng.uniform(0, 0.15)),
        "depreciation_to_revenue": float(rng.uniform(0, 0.1)),
        "working_capital_to_revenue": float(rng.uniform(-0.1, 0.3)),
        "mid_year": bool(rng.random() < 0.5),
        "net_debt_musd": float(rng.uniform(-500, 500)),
        "shares_outstanding_m": float(rng.uniform(1, 500)),
    }
    if rng.random() < 0.5:
        row["growth_rates"] = rng.uniform(-0.3, 0.8, years).tolist()
    else:
        row |= {
            "revenue_growth": float(rng.uniform(-0.3, 0.8)),
            "growth_fade": float(rng.uniform(0, 1)),
            "projection_years": years,
        }
    if rng.random() < 0.5:
        row["wacc"] = float(rng.uniform(0.05, 0.2))
    else:
        row |= {
            "risk_free_rate": float(rng.uniform(0.01, 0.05)),
            "beta": float(rng.uniform(0.5, 2.0)),
            "equity_risk_premium": float(rng.uniform(0.04, 0.07)),
            "debt_weight": float(rng.uniform(0, 0.5)),
            "cost_of_debt": float(rng.uniform(0.03, 0.09)),
        }
    if rng.random() < 0.5:
        row |= {"terminal_method": "gordon", "terminal_growth": float(rng.uniform(-0.02, 0.03))}
    else:
        row |= {"terminal_method": "exit_multiple", "exit_ev_ebitda": float(rng.uniform(2, 25))}
        if "revenue_growth" in row:
            row["terminal_growth"] = float(rng.uniform(-0.02, 0.03))
    return row


def textbook(row: dict[str, Any]) -> tuple[float, list[float], float, float]:
    """Discount rate, yearly FCF, terminal value and scale, one plain step at a time."""
    if "wacc" in row:
        r = row["wacc"]
    else:
        equity = row["risk_free_rate"] + row["beta"] * row["equity_risk_premium"]
        w = row["debt_weight"]
        r = (1 - w) * equity + w * row["cost_of_debt"] * (1 - row["tax_rate"])
    g = row.get("terminal_growth", 0.0)
    if "growth_rates" in row:
        growth = row["growth_rates"]
    else:
        keep = 1 - row["growth_fade"]
        growth = [g + (row["revenue_growth"] - g) * keep**t for t in range(row["projection_years"])]

    def fcf(revenue: float, previous: float) -> float:
        ebit = row["operating_margin"] * revenue
        tax = row["tax_rate"] * ebit if ebit > 0 else 0.0
        da = row["depreciation_to_revenue"] * revenue
        capex = row["capex_to_revenue"] * revenue
        return ebit - tax + da - capex - row["working_capital_to_revenue"] * (revenue - previous)

    revenue, flows = row["revenue_musd"], []
    for rate in growth:
        previous, revenue = revenue, revenue * (1 + rate)
        flows.append(fcf(revenue, previous))
    if row["terminal_method"] == "gordon":
        terminal = fcf(revenue * (1 + g), revenue) / (r - g)
    else:
        ebitda = (row["operating_margin"] + row["depreciation_to_revenue"]) * revenue
        terminal = row["exit_ev_ebitda"] * ebitda
    return r, flows, terminal, sum(abs(f) for f in flows) + abs(terminal)


def test_enterprise_value_agrees_with_numpy_financial_npv() -> None:
    rng = np.random.default_rng(SEED)
    rows = [random_company(rng) for _ in range(300)]
    outputs = predict(rows, **QUICK)
    for row, out in zip(rows, outputs, strict=True):
        r, flows, terminal, scale = textbook(row)
        years = len(flows)
        # npv discounts values[t] by (1 + r)^t, t from 0: the leading 0 is "today".
        if row["terminal_method"] == "gordon":
            # The perpetuity's flows arrive mid-year too, so it shifts with the others.
            expected = npf.npv(r, [0.0, *flows[:-1], flows[-1] + terminal])
            if row["mid_year"]:
                expected *= (1 + r) ** 0.5
        else:
            expected = npf.npv(r, [0.0, *flows]) * ((1 + r) ** 0.5 if row["mid_year"] else 1.0)
            expected += terminal / (1 + r) ** years
        assert out["discount_rate"] == pytest.approx(r, rel=1e-12)
        assert out["projection"]["free_cash_flow_musd"] == pytest.approx(
            flows, rel=1e-9, abs=1e-9 * scale
        )
        assert out["terminal_value_musd"] == pytest.approx(terminal, rel=1e-9, abs=1e-9 * scale)
        assert out["enterprise_value_musd"] == pytest.approx(expected, rel=1e-9, abs=1e-9 * scale)
        equity = out["enterprise_value_musd"] - row["net_debt_musd"]
        assert out["value_per_share"] == pytest.approx(equity / row["shares_outstanding_m"])


# --- Properties -------------------------------------------------------------------------


@st.composite
def healthy_company(draw: st.DrawFn) -> dict[str, Any]:
    """Every year's FCF is positive: margin >= 10%, tax <= 35%, capex at most 2 points above
    D&A, working capital <= 10% and growth <= 50% keep FCF / revenue >= 0.1 x 0.65 - 0.02
    - 0.1 x 0.5 / 1.5 > 0.01 (and a fall in revenue releases working capital)."""
    depreciation = draw(st.floats(0.0, 0.10))
    method = draw(st.sampled_from(["gordon", "exit_multiple"]))
    row: dict[str, Any] = {
        "revenue_musd": draw(st.floats(1.0, 10_000.0)),
        "revenue_growth": draw(st.floats(-0.5, 0.5)),
        "growth_fade": draw(st.floats(0.0, 1.0)),
        "projection_years": draw(st.integers(1, 15)),
        "operating_margin": draw(st.floats(0.10, 0.50)),
        "tax_rate": draw(st.floats(0.0, 0.35)),
        "depreciation_to_revenue": depreciation,
        "capex_to_revenue": depreciation + draw(st.floats(0.0, 0.02)),
        "working_capital_to_revenue": draw(st.floats(0.0, 0.10)),
        "terminal_method": method,
        "terminal_growth": draw(st.floats(-0.02, 0.03)),
        "mid_year": draw(st.booleans()),
        "net_debt_musd": draw(st.floats(-1000.0, 1000.0)),
        "shares_outstanding_m": draw(st.floats(1.0, 1000.0)),
    }
    if method == "exit_multiple":
        row["exit_ev_ebitda"] = draw(st.floats(1.0, 30.0))
    return row


@settings(max_examples=60, deadline=None)
@given(healthy_company(), st.floats(0.05, 0.40), st.floats(0.001, 0.10))
def test_value_falls_as_the_discount_rate_rises(
    row: dict[str, Any], rate: float, step: float
) -> None:
    """With every cash flow (and the terminal value) positive, each is worth less at a
    higher rate: 1 / (1 + r)^t falls in r, and so does 1 / (r - g)."""
    low, high = predict([{**row, "wacc": rate}, {**row, "wacc": rate + step}], **QUICK)
    assert min(low["projection"]["free_cash_flow_musd"]) > 0
    assert low["terminal_value_musd"] > 0
    assert high["enterprise_value_musd"] < low["enterprise_value_musd"]
    assert high["value_per_share"] < low["value_per_share"]


@settings(max_examples=60, deadline=None)
@given(healthy_company(), st.floats(0.05, 0.30), st.floats(0.01, 0.3))
def test_value_rises_with_growth(row: dict[str, Any], rate: float, step: float) -> None:
    """FCF_t = R_t (m(1 - tax) + d - capex - w) + w R_{t-1} rises with every revenue when
    m > 0 and m(1 - tax) + d - capex > w >= 0, and more growth means more revenue every
    year; the Gordon flow and the exit EBITDA rise with the last revenue too."""
    per_revenue = (
        row["operating_margin"] * (1 - row["tax_rate"])
        + row["depreciation_to_revenue"]
        - row["capex_to_revenue"]
        - row["working_capital_to_revenue"]
    )
    assume(per_revenue > 0.001)
    assume(row["revenue_growth"] + step <= 1.0)
    slow = {**row, "wacc": rate}
    fast = {**slow, "revenue_growth": row["revenue_growth"] + step}
    low, high = predict([slow, fast], **QUICK)
    assert high["enterprise_value_musd"] > low["enterprise_value_musd"]
    assert high["value_per_share"] > low["value_per_share"]


# --- Sensitivity grid -------------------------------------------------------------------


def test_sensitivity_grid_centre_is_the_point_estimate_and_moves_the_right_way() -> None:
    (out,) = predict([hand_company()], monte_carlo=False)
    grid = out["sensitivity"]
    steps = dcf_builder.ASSUMPTIONS["sensitivity"]
    rates = [row["discount_rate"] for row in grid["rows"]]
    assert rates == pytest.approx([0.1 + d for d in steps["discount_rate_steps"]])
    assert grid["terminal_growths"] == pytest.approx(
        [0.03 + d for d in steps["terminal_growth_steps"]]
    )
    assert grid["exit_ev_ebitda"] is None
    table = np.array([row["value_per_share"] for row in grid["rows"]], dtype=float)
    centre = steps["discount_rate_steps"].index(0.0), steps["terminal_growth_steps"].index(0.0)
    assert table[centre] == out["value_per_share"]
    assert (np.diff(table, axis=0) < 0).all()  # higher discount rate, lower value
    assert (np.diff(table, axis=1) > 0).all()  # higher terminal growth, higher value


def test_sensitivity_cells_outside_the_model_are_null() -> None:
    # r = 2.2%, g = 0%: cells whose spread r - g is below min_spread (0.5 points) have no
    # Gordon value the point estimate would give; r <= 0 has no meaning.
    (out,) = predict([hand_company(wacc=0.022, terminal_growth=0.0)], monte_carlo=False)
    grid = out["sensitivity"]
    minimum = dcf_builder.ASSUMPTIONS["monte_carlo"]["min_spread"]
    nulls = 0
    for row in grid["rows"]:
        rate = row["discount_rate"]
        for growth, cell in zip(grid["terminal_growths"], row["value_per_share"], strict=True):
            outside = rate <= 0 or rate - growth < minimum - 1e-12
            assert (cell is None) == outside, (rate, growth)
            nulls += 0 < rate - growth < minimum - 1e-12
    assert nulls  # a cell with 0 < r - g < min_spread is among them
    json.dumps(out, allow_nan=False)


def test_point_and_simulation_agree_at_the_smallest_spread_allowed() -> None:
    """At r - g = min_spread the point value is finite and inside its own 90% range; a
    hair below, the instance is refused rather than valued at thousands of times more."""
    (out,) = predict([hand_company(wacc=0.03, terminal_growth=0.025)])
    mc = out["monte_carlo"]
    assert mc["p5"] <= out["value_per_share"] <= mc["p95"]
    (detail,) = problems([hand_company(wacc=0.03, terminal_growth=0.0299)])
    assert "spread of 0.0001" in detail["message"]


def test_exit_multiple_grid_varies_the_multiple() -> None:
    row = hand_company(terminal_method="exit_multiple", exit_ev_ebitda=1.5)
    del row["terminal_growth"]
    (out,) = predict([row], monte_carlo=False)
    grid = out["sensitivity"]
    assert grid["terminal_growths"] is None
    assert grid["exit_ev_ebitda"] == pytest.approx([-0.5, 0.5, 1.5, 2.5, 3.5])
    lines = [row["value_per_share"] for row in grid["rows"]]
    assert all(line[0] is None for line in lines)  # a negative multiple
    assert all(cell is not None for line in lines for cell in line[1:])


# --- Monte Carlo ------------------------------------------------------------------------


def test_monte_carlo_is_reproducible_and_seeded() -> None:
    rows = [hand_company(), hand_company(revenue_growth=0.2, growth_rates=None)]
    del rows[1]["growth_rates"]
    first = predict(rows)
    standard_normals.cache_clear()  # reproducible from the seed, not from a cache
    assert predict(rows) == first
    assert first[0]["monte_carlo"]["seed"] == SEED
    assert first[0]["monte_carlo"]["draws"] == dcf_builder.ASSUMPTIONS["monte_carlo"]["draws"]
    other = predict(rows, seed=SEED + 1)
    assert other[0]["monte_carlo"]["p50"] != first[0]["monte_carlo"]["p50"]
    assert other[0]["value_per_share"] == first[0]["value_per_share"]
    assert predict(rows, seed=SEED + 1) == other


def test_monte_carlo_percentiles_are_ordered_and_honest() -> None:
    rng = np.random.default_rng(SEED + 1)
    rows = [random_company(rng) for _ in range(40)]
    for out in predict(rows, sensitivity=False, draws=2000):
        mc = out["monte_carlo"]
        assert mc["draws"] == 2000
        assert mc["p5"] < mc["p50"] < mc["p95"]
        assert 0.0 <= mc["negative_share"] <= 1.0
        assert mc["std"] > 0
    # Around the canonical company the simulation is centred on the point estimate.
    (out,) = predict([hand_company()], sensitivity=False)
    assert out["monte_carlo"]["p50"] == pytest.approx(out["value_per_share"], rel=0.05)
    assert out["monte_carlo"]["p5"] < out["value_per_share"] < out["monte_carlo"]["p95"]


def test_zero_widths_collapse_the_simulation_onto_the_point_estimate() -> None:
    body = json.loads(dcf_builder.artifact(SEED))
    body["monte_carlo"]["widths"] = dict.fromkeys(body["monte_carlo"]["widths"], 0.0)
    runtime = DcfRuntime.from_artifact(json.dumps(body).encode())
    rng = np.random.default_rng(SEED + 2)
    rows = [random_company(rng) for _ in range(20)]
    for row, out in zip(rows, predict(rows, runtime, sensitivity=False), strict=True):
        if row.get("terminal_growth", -1) > out["discount_rate"] - 0.005:
            continue  # the draws keep g at least min_spread below r
        mc = out["monte_carlo"]
        assert mc["p5"] == mc["p50"] == mc["p95"] == out["value_per_share"]


def test_wider_shocks_give_a_wider_range() -> None:
    body = json.loads(dcf_builder.artifact(SEED))
    body["monte_carlo"]["widths"]["operating_margin"] *= 3
    wide = DcfRuntime.from_artifact(json.dumps(body).encode())
    (narrow_out,) = predict([hand_company()], sensitivity=False)
    (wide_out,) = predict([hand_company()], wide, sensitivity=False)
    narrow_mc, wide_mc = narrow_out["monte_carlo"], wide_out["monte_carlo"]
    assert wide_mc["p95"] - wide_mc["p5"] > narrow_mc["p95"] - narrow_mc["p5"]


# --- Batches ----------------------------------------------------------------------------


def test_batch_equals_one_by_one_exactly() -> None:
    rng = np.random.default_rng(SEED + 3)
    rows = [random_company(rng) for _ in range(60)]
    batch = predict(rows)
    assert batch == [predict([row])[0] for row in rows]
    order = rng.permutation(len(rows))
    assert predict([rows[i] for i in order]) == [batch[i] for i in order]


def test_large_batch_in_many_chunks_equals_its_parts() -> None:
    rng = np.random.default_rng(SEED + 4)
    rows = [random_company(rng) for _ in range(300)]
    batch = predict(rows, draws=20_000)
    assert batch[:7] + batch[150:157] == predict(rows[:7] + rows[150:157], draws=20_000)
    assert predict([]) == []


# --- Rules and 422s ---------------------------------------------------------------------


def problems(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with pytest.raises(InvalidValuesError) as caught:
        predict(rows, **QUICK)
    return caught.value.details


def without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


FADE = without(hand_company(revenue_growth=0.2), "growth_rates")
CAPM = without(hand_company(risk_free_rate=0.04, beta=1.2), "wacc")
EXIT = without(hand_company(terminal_method="exit_multiple", exit_ev_ebitda=9.0), "terminal_growth")

RULES = [
    ({**FADE, "growth_rates": [0.1, 0.1, 0.1]}, "growth_rates", "one_growth_style"),
    (without(FADE, "revenue_growth"), "revenue_growth", "growth_required"),
    (hand_company(growth_fade=0.3), "growth_fade", "growth_fade_needs_revenue_growth"),
    (hand_company(projection_years=5), "growth_rates", "growth_rates_length"),
    ({**CAPM, "wacc": 0.1}, "wacc", "one_discount_style"),
    (without(hand_company(), "wacc"), "wacc", "discount_rate_required"),
    (without(CAPM, "beta"), "beta", "capm_incomplete"),
    (without(CAPM, "risk_free_rate"), "risk_free_rate", "capm_incomplete"),
    (hand_company(debt_weight=0.3), "debt_weight", "capm_input_with_wacc"),
    (without(EXIT, "exit_ev_ebitda"), "exit_ev_ebitda", "exit_multiple_required"),
    (hand_company(exit_ev_ebitda=9.0), "exit_ev_ebitda", "exit_multiple_needs_exit_method"),
    ({**EXIT, "terminal_growth": 0.02}, "terminal_growth", "terminal_growth_unused"),
    (hand_company(terminal_growth=0.10), "terminal_growth", "terminal_growth_below_discount_rate"),
    (
        hand_company(wacc=0.03, terminal_growth=0.0299),
        "terminal_growth",
        "terminal_spread_below_minimum",
    ),
    (
        {
            **CAPM,
            "risk_free_rate": 0.01,
            "beta": 0.4,
            "equity_risk_premium": 0.05,
            "debt_weight": 0.0,
            "terminal_growth": 0.03 - 1e-9,
        },
        "terminal_growth",
        "terminal_spread_below_minimum",
    ),
    (
        {**CAPM, "beta": 5.0, "equity_risk_premium": 0.2, "debt_weight": 0.0},
        "beta",
        "discount_rate_out_of_range",
    ),
    (hand_company(revenue_musd=-1.0), "revenue_musd", "greater_than_equal"),
    (hand_company(wacc="0.1"), "wacc", "float_type"),
    (hand_company(shares_outstanding_m=0.0), "shares_outstanding_m", "greater_than_equal"),
    (hand_company(colour="blue"), "colour", "extra_forbidden"),
]


@pytest.mark.parametrize(("row", "field", "rule"), RULES)
def test_every_rule_names_the_field_the_value_and_the_rule(
    row: dict[str, Any], field: str, rule: str
) -> None:
    details = problems([hand_company(), row])
    assert [(d["field"], d["rule"]) for d in details] == [(f"instances[1].{field}", rule)]
    assert details[0]["message"]
    if rule == "terminal_growth_below_discount_rate":
        assert details[0]["value"] == 0.10
        assert "0.1" in details[0]["message"]


def test_terminal_growth_rule_uses_the_default_discount_inputs_at_prediction() -> None:
    # CAPM at 0% + 0.4 x ERP (default 5.5%) = 2.2%, below the default terminal growth 2.5%:
    # the schema cannot know the default, the runtime refuses with the same 422 shape.
    row = without(CAPM, "terminal_growth") | {"risk_free_rate": 0.0, "beta": 0.4}
    instances = RUNTIME.instances_adapter().validate_python([hand_company(), row])
    with pytest.raises(InvalidValuesError) as caught:
        RUNTIME.predict(instances, None)
    (detail,) = caught.value.details
    assert detail["field"] == "instances[1].terminal_growth"
    assert detail["rule"] == "terminal_growth_below_discount_rate"
    assert detail["value"] == 0.025
    assert "default" in detail["message"]


def test_parameters_are_strict_and_bounded() -> None:
    for params, field in (
        ({"draws": 100_001}, "parameters.draws"),
        ({"draws": 10.5}, "parameters.draws"),
        ({"seed": -1}, "parameters.seed"),
        ({"monte_carlo": "yes"}, "parameters.monte_carlo"),
        ({"confidence": 0.9}, "parameters.confidence"),
    ):
        with pytest.raises(InvalidValuesError) as caught:
            predict([hand_company()], **params)
        assert caught.value.details[0]["field"] == field


def test_a_request_simulates_at_most_ten_million_values() -> None:
    with pytest.raises(InvalidValuesError) as caught:
        predict([hand_company()] * 101, draws=100_000)
    (detail,) = caught.value.details
    assert detail["field"] == "parameters.draws"
    assert detail["rule"] == "draws_times_instances"
    assert detail["value"] == 100_000
    assert work_errors(100_000, 100) == work_errors(10_000, 1000) == []  # the limit itself


# --- Contract and artifact --------------------------------------------------------------


def test_outputs_are_json_safe_even_at_the_edges() -> None:
    extremes = [
        hand_company(revenue_musd=0.0),
        hand_company(growth_rates=[-1.0, 1.0], operating_margin=-5.0),
        hand_company(growth_rates=[1.0] * 30, revenue_musd=1e6, shares_outstanding_m=0.001),
        hand_company(wacc=0.035, terminal_growth=0.03),
    ]
    outputs = predict(extremes)
    text = json.dumps(outputs, allow_nan=False)
    assert json.loads(text) == outputs
    check_document({"outputs": outputs})  # storable in Firestore too: no nested arrays
    for out in outputs:
        assert set(out) == OUTPUT_KEYS
        assert math.isfinite(out["value_per_share"])


def test_input_schema_documents_every_field() -> None:
    schema = DcfRuntime.input_schema()
    assert set(schema["required"]) == {
        "revenue_musd",
        "operating_margin",
        "net_debt_musd",
        "shares_outstanding_m",
    }
    assert all(prop.get("description") for prop in schema["properties"].values())


def mutated(change: Callable[[dict[str, Any]], Any]) -> bytes:
    body = json.loads(dcf_builder.artifact(SEED))
    change(body)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x80\x04not json", id="pickle-bytes"),
        pytest.param(b"[1, 2, 3]", id="not-an-object"),
        pytest.param(json.dumps({"format": "ipo-risk/1"}).encode(), id="other-format"),
        pytest.param(mutated(lambda b: b.update(format="ipo-dcf/2")), id="future-format"),
        pytest.param(
            mutated(lambda b: b["sensitivity"].update(discount_rate_steps=[0.01, 0.02])),
            id="grid-without-centre",
        ),
        pytest.param(mutated(lambda b: b["monte_carlo"].update(draws=10**7)), id="draws"),
        pytest.param(mutated(lambda b: b["defaults"].pop("tax_rate")), id="missing-default"),
        pytest.param(mutated(lambda b: b.update(extra=1)), id="unknown-key"),
    ],
)
def test_foreign_or_invalid_artifacts_are_refused(body: bytes) -> None:
    with pytest.raises(IntegrityError):
        DcfRuntime.from_artifact(body)
