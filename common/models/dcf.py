"""DCF: a free-cash-flow-to-firm valuation with a sensitivity grid and a Monte Carlo range.

A model version is an assumption set, not a fitted model: the defaults an instance may
leave out, the Monte Carlo draw count, seed and shock widths, and the sensitivity steps,
stored as JSON (``ipo-dcf/1``) so that loading runs no code. The method, every input and
the simulation design are documented in docs/models/dcf.md; the arithmetic lives in
``dcf_math`` and the schemas and cross-field rules in ``dcf_schema``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from common.core.errors import IntegrityError
from common.core.validation import StrictModel, problems_from, raise_invalid
from common.models import input_echoes
from common.models.base import ModelRuntime
from common.models.dcf_artifact import ARTIFACT_FORMAT, SPREAD_TOLERANCE, DcfArtifact, Defaults
from common.models.dcf_math import (
    Companies,
    Floats,
    Grid,
    Scenarios,
    Widths,
    concatenate,
    draw_scenarios,
    sensitivity_grid,
    summarise,
    value,
)
from common.models.dcf_schema import (
    Capm,
    DcfInstance,
    DcfParameters,
    capm,
    discount_rate,
    terminal_growth,
    value_errors,
    work_errors,
)

__all__ = ["ARTIFACT_FORMAT", "DcfArtifact", "DcfInstance", "DcfParameters", "DcfRuntime"]


@dataclass(frozen=True)
class Resolved:
    """One instance with every default filled in: exactly what gets valued."""

    first_growth: float | None
    growth_fade: float | None
    rates: list[float] | None
    projection_years: int
    tax_rate: float
    capex_to_revenue: float
    depreciation_to_revenue: float
    working_capital_to_revenue: float
    discount_rate: float
    capm: Capm | None
    terminal_growth: float | None
    mid_year: bool
    defaults_applied: list[str]

    def assumptions(self) -> dict[str, Any]:
        """The resolved inputs, so a caller sees the defaults its answer rests on."""
        out: dict[str, Any] = {
            "projection_years": self.projection_years,
            "growth_fade": self.growth_fade,
            "tax_rate": self.tax_rate,
            "capex_to_revenue": self.capex_to_revenue,
            "depreciation_to_revenue": self.depreciation_to_revenue,
            "working_capital_to_revenue": self.working_capital_to_revenue,
            "mid_year": self.mid_year,
            "cost_of_equity": None,
            "equity_risk_premium": None,
            "debt_weight": None,
            "cost_of_debt": None,
        }
        if self.capm is not None:
            out["cost_of_equity"] = self.capm.cost_of_equity
            out["equity_risk_premium"] = self.capm.equity_risk_premium
            out["debt_weight"] = self.capm.debt_weight
            out["cost_of_debt"] = self.capm.cost_of_debt
        return out


def resolve(x: DcfInstance, d: Defaults) -> Resolved:
    """Fill the instance's gaps from the assumption set, recording which were filled."""
    used: list[str] = []

    def pick(given: Any, name: str) -> Any:
        if given is not None:
            return given
        used.append(name)
        return getattr(d, name)

    explicit = x.growth_rates is not None
    growth_fade = None if explicit else pick(x.growth_fade, "growth_fade")
    if x.growth_rates is not None:
        years = len(x.growth_rates)
    else:
        years = pick(x.projection_years, "projection_years")
    operating = {
        name: pick(getattr(x, name), name)
        for name in (
            "tax_rate",
            "capex_to_revenue",
            "depreciation_to_revenue",
            "working_capital_to_revenue",
            "mid_year",
        )
    }
    growth = terminal_growth(x, d)
    if x.terminal_growth is None and growth is not None:
        used.append("terminal_growth")
    inputs = capm(x, d)
    if inputs is not None:
        used.extend(n for n in ("equity_risk_premium", "debt_weight") if getattr(x, n) is None)
        if x.cost_of_debt is None and inputs.debt_weight > 0:
            used.append("cost_of_debt")
    return Resolved(
        first_growth=x.revenue_growth,
        growth_fade=growth_fade,
        rates=x.growth_rates,
        projection_years=years,
        discount_rate=_known(discount_rate(x, d)),
        capm=inputs,
        terminal_growth=growth,
        defaults_applied=used,
        **operating,
    )


def _known(rate: float | None) -> float:
    if rate is None:  # unreachable for a validated instance once defaults are known
        raise ValueError("a validated instance always has a discount rate")
    return rate


def _column(values: Sequence[Any], dtype: type = np.float64) -> Any:
    return np.array(values, dtype=dtype).reshape(-1, 1)


def _companies(xs: Sequence[DcfInstance], rs: Sequence[Resolved]) -> Companies:
    horizon = max(r.projection_years for r in rs)
    rates = np.zeros((len(rs), horizon))
    for i, r in enumerate(rs):
        if r.rates is not None:
            rates[i, : len(r.rates)] = r.rates
    return Companies(
        revenue=_column([x.revenue_musd for x in xs]),
        first_growth=_column([r.first_growth or 0.0 for r in rs]),
        fade=_column([r.growth_fade or 0.0 for r in rs]),
        explicit=_column([r.rates is not None for r in rs], np.bool_),
        rates=rates,
        years=_column([r.projection_years for r in rs], np.int64),
        tax=_column([r.tax_rate for r in rs]),
        capex=_column([r.capex_to_revenue for r in rs]),
        depreciation=_column([r.depreciation_to_revenue for r in rs]),
        working_capital=_column([r.working_capital_to_revenue for r in rs]),
        mid_year=_column([r.mid_year for r in rs], np.bool_),
        gordon=_column([x.terminal_method == "gordon" for x in xs], np.bool_),
    )


def _json_floats(values: Floats) -> list[float | None]:
    """Plain floats for JSON; a non-finite value (unreachable within the schema) is null."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


class DcfRuntime(ModelRuntime):
    kind: ClassVar[str] = "dcf"
    instance_schema: ClassVar[type[StrictModel]] = DcfInstance
    parameters_schema: ClassVar[type[StrictModel]] = DcfParameters
    input_echoes: ClassVar[Mapping[str, tuple[str, ...]]] = input_echoes.DCF

    def __init__(self, artifact: DcfArtifact) -> None:
        self.artifact = artifact
        widths = artifact.monte_carlo.widths
        self._widths = Widths(
            revenue_growth=widths.revenue_growth,
            operating_margin=widths.operating_margin,
            discount_rate=widths.discount_rate,
            terminal_growth=widths.terminal_growth,
            exit_ev_ebitda=widths.exit_ev_ebitda,
        )

    @classmethod
    def from_artifact(cls, data: bytes) -> DcfRuntime:
        try:
            artifact = DcfArtifact.model_validate_json(data)
        except ValidationError as exc:
            first = problems_from(exc)[0]
            raise IntegrityError(
                f"artifact is not a valid {ARTIFACT_FORMAT} assumption set "
                f"({first['field']}: {first['message']})"
            ) from None
        return cls(artifact)

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        params = (
            parameters
            if isinstance(parameters, DcfParameters)
            else DcfParameters.model_validate(parameters or {})
        )
        xs: list[DcfInstance] = list(instances)
        if not xs:
            return []
        mc = self.artifact.monte_carlo
        draws = (params.draws or mc.draws) if params.monte_carlo else 0
        seed = params.seed if params.seed is not None else mc.seed
        too_much = work_errors(draws, len(xs))
        if too_much:
            exc = ValidationError.from_exception_data("DcfParameters", too_much)
            raise_invalid(problems_from(exc, ("parameters",)), max_details=100)
        resolved = self._resolve_all(xs)
        c = _companies(xs, resolved)
        point = Scenarios(
            growth_shift=np.zeros((1, 1)),
            margin=_column([x.operating_margin for x in xs]),
            discount_rate=_column([r.discount_rate for r in resolved]),
            terminal_growth=_column([r.terminal_growth or 0.0 for r in resolved]),
            exit_multiple=_column([x.exit_ev_ebitda or 0.0 for x in xs]),
        )
        steps = self.artifact.sensitivity
        grid = (
            sensitivity_grid(
                c,
                point,
                rate_steps=steps.discount_rate_steps,
                growth_steps=steps.terminal_growth_steps,
                multiple_steps=steps.exit_multiple_steps,
                min_spread=mc.min_spread - SPREAD_TOLERANCE,
            )
            if params.sensitivity
            else None
        )
        net_debt = _column([x.net_debt_musd for x in xs])
        shares = _column([x.shares_outstanding_m for x in xs])
        results = self._value_all(c, point, grid, net_debt, shares, draws=draws, seed=seed)
        return _answers(xs, resolved, results, grid, net_debt, shares, draws=draws, seed=seed)

    def _value_all(
        self,
        c: Companies,
        point: Scenarios,
        grid: Grid | None,
        net_debt: Floats,
        shares: Floats,
        *,
        draws: int,
        seed: int,
    ) -> Results:
        """One pass per group of companies values the point estimate (scenario 0), the
        sensitivity cells and the Monte Carlo draws side by side."""
        mc = self.artifact.monte_carlo
        n, horizon = c.revenue.shape[0], c.rates.shape[1]
        cells = grid.scenarios.discount_rate.shape[1] if grid is not None else 0
        out = Results(
            point=np.empty((n, 3)),
            paths=np.zeros((4, n, horizon)),
            grid=np.empty((n, cells)),
            stats=np.empty((n, 6)),
        )
        for rows in c.batches(1 + cells + draws):
            parts = [point.take(rows)]
            if grid is not None:
                parts.append(grid.scenarios.take(rows))
            if draws:
                parts.append(
                    draw_scenarios(
                        parts[0],
                        c.gordon[rows],
                        seed=seed,
                        draws=draws,
                        widths=self._widths,
                        min_discount_rate=mc.min_discount_rate,
                        min_spread=mc.min_spread,
                    )
                )
            valuation, path = value(c.take(rows), concatenate(parts, len(rows)), keep_path=True)
            out.point[rows] = np.column_stack(
                [
                    valuation.pv_explicit[:, 0],
                    valuation.pv_terminal[:, 0],
                    valuation.terminal_value[:, 0],
                ]
            )
            out.paths[:, rows, : path.growth.shape[1]] = (
                path.growth,
                path.revenue,
                path.free_cash_flow,
                path.discount_factor,
            )
            per_share = (valuation.enterprise_value - net_debt[rows]) / shares[rows]
            out.grid[rows] = per_share[:, 1 : 1 + cells]
            if draws:
                out.stats[rows] = summarise(np.ascontiguousarray(per_share[:, 1 + cells :]))
        return out

    def _resolve_all(self, xs: Sequence[DcfInstance]) -> list[Resolved]:
        """Defaults in; rules that needed them re-checked, reported per instance as a 422."""
        defaults, min_spread = self.artifact.defaults, self.artifact.monte_carlo.min_spread
        errors: list[InitErrorDetails] = []
        for i, x in enumerate(xs):
            for e in value_errors(x, defaults, min_spread):
                errors.append(
                    InitErrorDetails(type=e["type"], loc=(i, *e["loc"]), input=e["input"])
                )
        if errors:
            exc = ValidationError.from_exception_data("DcfInstance", errors)
            raise_invalid(problems_from(exc, ("instances",)), max_details=100)
        return [resolve(x, defaults) for x in xs]


@dataclass(frozen=True)
class Results:
    """Per company: pv explicit, pv terminal and terminal value; the four year-by-year
    paths; the grid's values per share; the Monte Carlo summary (see ``summarise``)."""

    point: Floats
    paths: Floats
    grid: Floats
    stats: Floats


def _answers(
    xs: Sequence[DcfInstance],
    resolved: Sequence[Resolved],
    results: Results,
    grid: Grid | None,
    net_debt: Floats,
    shares: Floats,
    *,
    draws: int,
    seed: int,
) -> list[dict[str, Any]]:
    """The JSON answer per instance, in order."""
    ev = results.point[:, 0] + results.point[:, 1]
    equity = ev - net_debt[:, 0]
    columns = {
        "enterprise_value_musd": _json_floats(ev),
        "equity_value_musd": _json_floats(equity),
        "value_per_share": _json_floats(equity / shares[:, 0]),
        "pv_explicit_musd": _json_floats(results.point[:, 0]),
        "pv_terminal_musd": _json_floats(results.point[:, 1]),
        "terminal_value_musd": _json_floats(results.point[:, 2]),
    }
    paths = [p.tolist() for p in results.paths]
    out = []
    for i, (x, r) in enumerate(zip(xs, resolved, strict=True)):
        row: dict[str, Any] = {name: values[i] for name, values in columns.items()}
        enterprise, terminal = row["enterprise_value_musd"], row["pv_terminal_musd"]
        row["terminal_value_share"] = (
            terminal / enterprise
            if enterprise is not None and terminal is not None and enterprise > 0
            else None
        )
        row["discount_rate"] = r.discount_rate
        row["terminal_method"] = x.terminal_method
        row["terminal_growth"] = r.terminal_growth
        row["exit_ev_ebitda"] = x.exit_ev_ebitda
        years = r.projection_years
        row["projection"] = {
            name: values[i][:years] for name, values in zip(PATH_NAMES, paths, strict=True)
        }
        row["assumptions"] = r.assumptions()
        row["defaults_applied"] = r.defaults_applied
        row["sensitivity"] = grid.table(i, results.grid[i]) if grid is not None else None
        row["monte_carlo"] = (
            _monte_carlo_output(draws, seed, results.stats[i].tolist()) if draws else None
        )
        out.append(row)
    return out


PATH_NAMES = ("growth", "revenue_musd", "free_cash_flow_musd", "discount_factor")


def _monte_carlo_output(draws: int, seed: int, stats: list[float]) -> dict[str, Any]:
    p5, p50, p95, mean, std, negative = (v if math.isfinite(v) else None for v in stats)
    return {
        "draws": draws,
        "seed": seed,
        "p5": p5,
        "p50": p50,
        "p95": p95,
        "mean": mean,
        "std": std,
        "negative_share": negative,
    }
