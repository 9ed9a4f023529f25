"""What a DCF request may contain, and the rules across its fields.

Single-field ranges are declared on the fields. Rules across fields (one growth style,
one discount style, terminal growth below the discount rate, ...) are checked after the
fields and reported at the field a client should change, so a 422 names
``instances[3].terminal_growth`` rather than the whole instance. Rules that depend on a
value the request leaves to the model version's defaults are checked again by the
runtime once the defaults are known (``value_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from common.core.validation import StrictModel
from common.models.dcf_artifact import MAX_DRAWS, MAX_YEARS, SPREAD_TOLERANCE, Defaults

MAX_SIMULATED = 10_000_000
"""Draws x instances per request: a full batch of 1,000 at the default 10,000 draws."""

GrowthRate = Annotated[float, Field(ge=-1, le=1)]
DEFAULT = " Default: the model version's assumption set."


class DcfInstance(StrictModel):
    """One company to value by free cash flow to the firm; amounts in USD millions."""

    revenue_musd: float = Field(ge=0, le=1_000_000, description="Last fiscal year revenue, USD m.")
    operating_margin: float = Field(
        ge=-5, le=1, description="EBIT / revenue, held for every projected year."
    )
    net_debt_musd: float = Field(
        ge=-1_000_000,
        le=1_000_000,
        description="Debt minus cash, USD m (negative = net cash); EV minus this is equity.",
    )
    shares_outstanding_m: float = Field(
        ge=0.001, le=1_000_000, description="Diluted shares after the offering, millions."
    )
    revenue_growth: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Year-1 revenue growth (0.25 = 25%), fading toward terminal_growth. "
        "Give this or growth_rates.",
    )
    growth_fade: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of year-1 growth's excess over terminal_growth lost each year "
        "(0 = no fade, 1 = terminal growth from year 2). Only with revenue_growth." + DEFAULT,
    )
    growth_rates: list[GrowthRate] | None = Field(
        None,
        min_length=1,
        max_length=MAX_YEARS,
        description="Explicit revenue growth per projected year; its length is the horizon. "
        "Give this or revenue_growth.",
    )
    projection_years: int | None = Field(
        None,
        ge=1,
        le=MAX_YEARS,
        description="Years projected explicitly. With growth_rates it must equal their "
        "count." + DEFAULT,
    )
    tax_rate: float | None = Field(
        None, ge=0, le=0.6, description="Tax on positive EBIT (no credit on losses)." + DEFAULT
    )
    capex_to_revenue: float | None = Field(
        None, ge=0, le=2, description="Capital expenditure / revenue." + DEFAULT
    )
    depreciation_to_revenue: float | None = Field(
        None, ge=0, le=2, description="Depreciation and amortisation / revenue." + DEFAULT
    )
    working_capital_to_revenue: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Net working capital / revenue; each year invests this share of the "
        "revenue increase." + DEFAULT,
    )
    wacc: float | None = Field(
        None, gt=0, le=0.5, description="Discount rate given directly. Or give CAPM inputs."
    )
    risk_free_rate: float | None = Field(
        None, ge=-0.02, le=0.2, description="CAPM: risk-free rate. Needs beta; not with wacc."
    )
    beta: float | None = Field(
        None, ge=0, le=5, description="CAPM: equity beta. Needs risk_free_rate; not with wacc."
    )
    equity_risk_premium: float | None = Field(
        None, ge=0, le=0.2, description="CAPM: equity risk premium." + DEFAULT
    )
    cost_of_debt: float | None = Field(
        None,
        ge=0,
        le=0.5,
        description="CAPM: pre-tax cost of debt. Default: risk_free_rate plus the assumption "
        "set's credit spread.",
    )
    debt_weight: float | None = Field(
        None, ge=0, le=0.95, description="CAPM: target debt / (debt + equity)." + DEFAULT
    )
    terminal_method: Literal["gordon", "exit_multiple"] = Field(
        "gordon", description="Terminal value by Gordon growth or by an EV/EBITDA exit multiple."
    )
    terminal_growth: float | None = Field(
        None,
        ge=-0.1,
        le=0.1,
        description="Perpetual growth after the horizon (Gordon), and the rate revenue_growth "
        "fades toward; must be below the discount rate." + DEFAULT,
    )
    exit_ev_ebitda: float | None = Field(
        None,
        ge=0,
        le=100,
        description="EV / last projected year's EBITDA; required by, and only with, "
        "terminal_method exit_multiple.",
    )
    mid_year: bool | None = Field(
        None, description="Discount each year's cash flow from mid-year." + DEFAULT
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> DcfInstance:
        """Runs only once every field is valid, so no rule reports a knock-on error.

        A ValueError here would be located at the instance (loc ``()``); a ValidationError
        carries one located error per broken rule, which pydantic nests under the
        instance's own location (``instances[3].terminal_growth``).
        """
        errors = structure_errors(self) + value_errors(self, None)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


class DcfParameters(StrictModel):
    """Per-request switches; the defaults make every answer reproducible."""

    monte_carlo: bool = Field(True, description="Run the Monte Carlo simulation.")
    draws: int | None = Field(
        None,
        ge=100,
        le=MAX_DRAWS,
        description="Monte Carlo draws per instance; draws x instances at most 10,000,000. "
        "Default: the artifact's.",
    )
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="Monte Carlo seed. Default: the artifact's."
    )
    sensitivity: bool = Field(True, description="Compute the sensitivity grid.")


@dataclass(frozen=True)
class Rule:
    field: str
    rule: str
    message: str


def _error(rule: Rule, value: Any, **ctx: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(rule.rule, rule.message, {k: str(v) for k, v in ctx.items()}),
        loc=(rule.field,),
        input=value,
    )


def structure_errors(x: DcfInstance) -> list[InitErrorDetails]:
    """Exactly one growth style, one discount style, and terminal inputs that fit the method."""
    out: list[InitErrorDetails] = []
    fade_style, explicit_style = x.revenue_growth is not None, x.growth_rates is not None
    if fade_style and explicit_style:
        rule = Rule(
            "growth_rates", "one_growth_style", "give revenue_growth or growth_rates, not both"
        )
        out.append(_error(rule, x.growth_rates))
    elif not fade_style and not explicit_style:
        rule = Rule("revenue_growth", "growth_required", "give revenue_growth or growth_rates")
        out.append(_error(rule, None))
    if x.growth_fade is not None and explicit_style:
        rule = Rule(
            "growth_fade",
            "growth_fade_needs_revenue_growth",
            "growth_fade applies only to revenue_growth",
        )
        out.append(_error(rule, x.growth_fade))
    rates, years = x.growth_rates, x.projection_years
    if rates is not None and years is not None and len(rates) != years:
        rule = Rule(
            "growth_rates",
            "growth_rates_length",
            "growth_rates has {count} rate(s) but projection_years is {years}",
        )
        out.append(_error(rule, rates, count=len(rates), years=years))

    capm = x.risk_free_rate is not None or x.beta is not None
    if x.wacc is not None and capm:
        rule = Rule(
            "wacc",
            "one_discount_style",
            "give wacc or CAPM inputs (risk_free_rate, beta), not both",
        )
        out.append(_error(rule, x.wacc))
    elif x.wacc is None and not capm:
        rule = Rule(
            "wacc", "discount_rate_required", "give wacc or CAPM inputs (risk_free_rate, beta)"
        )
        out.append(_error(rule, None))
    elif capm and x.beta is None:
        out.append(
            _error(Rule("beta", "capm_incomplete", "CAPM needs beta with risk_free_rate"), None)
        )
    elif capm and x.risk_free_rate is None:
        rule = Rule("risk_free_rate", "capm_incomplete", "CAPM needs risk_free_rate with beta")
        out.append(_error(rule, None))
    if x.wacc is not None:
        for name in ("equity_risk_premium", "cost_of_debt", "debt_weight"):
            if getattr(x, name) is not None:
                rule = Rule(
                    name, "capm_input_with_wacc", f"{name} is a CAPM input; wacc was given directly"
                )
                out.append(_error(rule, getattr(x, name)))

    if x.terminal_method == "exit_multiple":
        if x.exit_ev_ebitda is None:
            rule = Rule(
                "exit_ev_ebitda",
                "exit_multiple_required",
                "terminal_method exit_multiple needs exit_ev_ebitda",
            )
            out.append(_error(rule, None))
        if explicit_style and x.terminal_growth is not None:
            rule = Rule(
                "terminal_growth",
                "terminal_growth_unused",
                "terminal_growth is used by Gordon growth or by the growth fade; "
                "neither applies with growth_rates and an exit multiple",
            )
            out.append(_error(rule, x.terminal_growth))
    elif x.exit_ev_ebitda is not None:
        rule = Rule(
            "exit_ev_ebitda",
            "exit_multiple_needs_exit_method",
            "exit_ev_ebitda needs terminal_method exit_multiple",
        )
        out.append(_error(rule, x.exit_ev_ebitda))
    return out


@dataclass(frozen=True)
class Capm:
    """The discount-rate inputs of a CAPM instance, defaults filled where known."""

    risk_free_rate: float
    beta: float
    equity_risk_premium: float
    debt_weight: float
    cost_of_debt: float | None
    tax_rate: float | None

    @property
    def cost_of_equity(self) -> float:
        return self.risk_free_rate + self.beta * self.equity_risk_premium

    @property
    def rate(self) -> float | None:
        """(1 - w) * cost of equity + w * cost of debt * (1 - tax); None if not yet known."""
        if self.debt_weight == 0.0:
            return self.cost_of_equity
        if self.cost_of_debt is None or self.tax_rate is None:
            return None
        return (1.0 - self.debt_weight) * self.cost_of_equity + (
            self.debt_weight * self.cost_of_debt * (1.0 - self.tax_rate)
        )


def capm(x: DcfInstance, defaults: Defaults | None) -> Capm | None:
    """The CAPM inputs, or None for a wacc instance or while a needed default is unknown.

    Without a cost_of_debt the default is risk_free_rate + the assumption set's credit spread.
    """
    if x.risk_free_rate is None or x.beta is None:
        return None
    erp = _given_or_default(x.equity_risk_premium, defaults, "equity_risk_premium")
    weight = _given_or_default(x.debt_weight, defaults, "debt_weight")
    if erp is None or weight is None:
        return None
    debt = x.cost_of_debt
    if debt is None and defaults is not None:
        debt = x.risk_free_rate + defaults.credit_spread
    return Capm(
        risk_free_rate=x.risk_free_rate,
        beta=x.beta,
        equity_risk_premium=erp,
        debt_weight=weight,
        cost_of_debt=debt,
        tax_rate=_given_or_default(x.tax_rate, defaults, "tax_rate"),
    )


def discount_rate(x: DcfInstance, defaults: Defaults | None) -> float | None:
    """The WACC, given or from CAPM; None when it needs a default that is not known yet."""
    if x.wacc is not None:
        return x.wacc
    inputs = capm(x, defaults)
    return inputs.rate if inputs is not None else None


def terminal_growth(x: DcfInstance, defaults: Defaults | None) -> float | None:
    """The rate used, None when unused (explicit growth with an exit multiple) or unknown."""
    if x.terminal_method == "exit_multiple" and x.growth_rates is not None:
        return None
    return _given_or_default(x.terminal_growth, defaults, "terminal_growth")


def _given_or_default(value: float | None, defaults: Defaults | None, name: str) -> float | None:
    if value is not None or defaults is None:
        return value
    default: float = getattr(defaults, name)
    return default


def work_errors(draws: int, instances: int) -> list[InitErrorDetails]:
    """A request's simulation must fit one function call: bounded draws x instances."""
    if draws * instances <= MAX_SIMULATED:
        return []
    rule = Rule(
        "draws",
        "draws_times_instances",
        "{draws} draws x {instances} instances exceeds {limit} simulated values per request",
    )
    return [_error(rule, draws, draws=draws, instances=instances, limit=MAX_SIMULATED)]


def value_errors(
    x: DcfInstance, defaults: Defaults | None, min_spread: float | None = None
) -> list[InitErrorDetails]:
    """Rules on derived values: checked with what is known, again once defaults (and the
    assumption set's ``min_spread``, below which a Gordon value explodes) are known."""
    out: list[InitErrorDetails] = []
    rate = discount_rate(x, defaults)
    if rate is not None and x.wacc is None and not 0.0 < rate <= 0.5:
        rule = Rule(
            "beta",
            "discount_rate_out_of_range",
            "the CAPM inputs give a discount rate of {rate}, outside (0, 0.5]",
        )
        out.append(_error(rule, x.beta, rate=f"{rate:.6g}"))
        return out
    growth = terminal_growth(x, defaults)
    if x.terminal_method == "gordon" and rate is not None and growth is not None and growth >= rate:
        source = "" if x.terminal_growth is not None else " (this model version's default)"
        rule = Rule(
            "terminal_growth",
            "terminal_growth_below_discount_rate",
            "terminal growth {growth}" + source + " must be below the discount rate "
            "{rate} for a Gordon growth terminal value",
        )
        out.append(_error(rule, growth, growth=f"{growth:.6g}", rate=f"{rate:.6g}"))
    elif (
        x.terminal_method == "gordon"
        and rate is not None
        and growth is not None
        and min_spread is not None
        and rate - growth < min_spread - SPREAD_TOLERANCE
    ):
        given = "" if x.terminal_growth is not None else " (this model version's default)"
        source = "" if x.wacc is not None else " (from CAPM)"
        rule = Rule(
            "terminal_growth",
            "terminal_spread_below_minimum",
            "the discount rate {rate}"
            + source
            + " less terminal growth {growth}"
            + given
            + " leaves a spread of {spread}, below this model version's minimum {minimum} "
            "for a Gordon growth terminal value",
        )
        spread = f"{rate - growth:.6g}"
        ctx = {"rate": f"{rate:.6g}", "growth": f"{growth:.6g}", "minimum": f"{min_spread:.6g}"}
        out.append(_error(rule, growth, spread=spread, **ctx))
    return out
