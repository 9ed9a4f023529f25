"""The vectorised free-cash-flow-to-firm arithmetic behind the DCF runtime.

Every company is a row and every scenario (the point estimate, a sensitivity cell, a
Monte Carlo draw) a column, so a whole batch is valued with one pass of array operations
per projected year. Batches must equal single-instance calls bit for bit, so the code
keeps to operations whose result for one element never depends on the rest of the array:
IEEE arithmetic, ``sqrt``, ``minimum``/``maximum``, ``where`` and sequential products.
Discount factors are built by repeated multiplication by 1 / (1 + r) instead of
``power``, and the one transcendental function (the log-normal exit multiple) is applied
to the shared draws before they meet any company. A year beyond a company's horizon
leaves its sums untouched, so padding a short horizon to a longer one changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

GROWTH_BOUNDS = (-1.0, 1.0)
"""Yearly revenue growth never leaves this range, in a draw as in an instance."""
MARGIN_BOUNDS = (-5.0, 1.0)
TERMINAL_GROWTH_FLOOR = -0.1
MAX_DISCOUNT_RATE = 0.5
CHUNK_ELEMENTS = 1 << 16
"""Rows x scenarios valued at once: 512 KB per array, near the L2 cache of a core."""


@dataclass(frozen=True)
class Companies:
    """What is fixed per company, as (n, 1) columns that broadcast over scenarios."""

    revenue: Floats
    first_growth: Floats
    """Year-1 growth of fade-style rows (0 for explicit rows)."""
    fade: Floats
    """Share of the excess over terminal growth lost each year (fade-style rows)."""
    explicit: Bools
    rates: Floats
    """(n, horizon) explicit growth per year; zero where unused."""
    years: NDArray[np.int64]
    tax: Floats
    capex: Floats
    depreciation: Floats
    working_capital: Floats
    mid_year: Bools
    gordon: Bools

    def take(self, rows: NDArray[np.intp]) -> Companies:
        """Some companies, trimmed to their own longest horizon."""
        years = self.years[rows]
        return Companies(
            revenue=self.revenue[rows],
            first_growth=self.first_growth[rows],
            fade=self.fade[rows],
            explicit=self.explicit[rows],
            rates=self.rates[rows, : int(years.max())],
            years=years,
            tax=self.tax[rows],
            capex=self.capex[rows],
            depreciation=self.depreciation[rows],
            working_capital=self.working_capital[rows],
            mid_year=self.mid_year[rows],
            gordon=self.gordon[rows],
        )

    def batches(self, scenarios: int) -> list[NDArray[np.intp]]:
        """Row groups of similar companies, each small enough to stay in cache.

        Sorting by horizon and growth style keeps a short horizon from being padded to a
        long one and a group from computing both growth styles; results do not depend
        on the grouping.
        """
        order = np.lexsort((self.explicit[:, 0], self.years[:, 0]))
        size = max(1, CHUNK_ELEMENTS // max(scenarios, 1))
        return [order[start : start + size] for start in range(0, len(order), size)]


@dataclass(frozen=True)
class Scenarios:
    """What varies across scenarios: arrays broadcastable to (n, m)."""

    growth_shift: Floats
    margin: Floats
    discount_rate: Floats
    terminal_growth: Floats
    exit_multiple: Floats

    def take(self, rows: NDArray[np.intp]) -> Scenarios:
        return Scenarios(*(a if a.shape[0] == 1 else a[rows] for a in self._arrays()))

    def _arrays(self) -> tuple[Floats, ...]:
        return (
            self.growth_shift,
            self.margin,
            self.discount_rate,
            self.terminal_growth,
            self.exit_multiple,
        )


@dataclass(frozen=True)
class Valuation:
    """Per company and scenario, in the units of revenue (USD m)."""

    pv_explicit: Floats
    pv_terminal: Floats
    terminal_value: Floats

    @property
    def enterprise_value(self) -> Floats:
        total: Floats = self.pv_explicit + self.pv_terminal
        return total


@dataclass(frozen=True)
class Projection:
    """The year-by-year path of the point estimate, (n, horizon); zero past a row's horizon."""

    growth: Floats
    revenue: Floats
    free_cash_flow: Floats
    discount_factor: Floats


@dataclass(frozen=True)
class Widths:
    """Standard deviations of the Monte Carlo shocks (the exit multiple's is in logs)."""

    revenue_growth: float
    operating_margin: float
    discount_rate: float
    terminal_growth: float
    exit_ev_ebitda: float


def _column0(x: Floats, rows: int) -> Floats:
    """Scenario 0 of every row, whatever the array's broadcast shape."""
    col: Floats = x[:, 0] if x.shape[0] == rows else np.full(rows, x[0, 0])
    return col


def value(c: Companies, s: Scenarios, *, keep_path: bool = False) -> tuple[Valuation, Projection]:
    """Value every company under every scenario; ``keep_path`` keeps scenario 0's path.

    Free cash flow to the firm in year t, on revenue R_t:
    ``FCF_t = R_t * (m' + d - k - w) + w * R_{t-1}``, where m' is the after-tax margin
    (``m * (1 - tax)`` for a profit, ``m`` for a loss: no tax credit), d depreciation,
    k capex and w working capital, all as shares of revenue. It is NOPAT + D&A - capex -
    the increase in working capital, regrouped so a year costs a handful of array
    operations. Revenue never goes negative (growth >= -100%), so the sign of EBIT is
    the sign of the margin.
    """
    shape = np.broadcast_shapes(c.revenue.shape, *(a.shape for a in s._arrays()))  # (n, m)
    n, horizon = shape[0], int(c.years.max())
    one_plus_r = 1.0 + s.discount_rate
    inverse = 1.0 / one_plus_r
    mid = np.where(c.mid_year, np.sqrt(one_plus_r), 1.0) if bool(c.mid_year.any()) else None
    after_tax = np.where(s.margin > 0.0, s.margin * (1.0 - c.tax), s.margin)
    per_revenue = after_tax + ((c.depreciation - c.capex) - c.working_capital)
    all_explicit, no_explicit = bool(c.explicit.all()), not bool(c.explicit.any())
    first = np.clip(c.first_growth + s.growth_shift, *GROWTH_BOUNDS)
    # Fade: 1 + g_t = (1 + g_inf) + (g_1 - g_inf) * decay_t, decay_t = (1 - fade)^(t-1).
    base, excess = 1.0 + s.terminal_growth, first - s.terminal_growth
    keep = 1.0 - c.fade

    # Buffers are reused year to year: in-place operations do the same arithmetic as
    # fresh arrays, without the allocations that dominate at 10,000 draws.
    revenue = np.array(np.broadcast_to(c.revenue, shape))
    grown, factor, fcf, scratch = (np.empty(shape) for _ in range(4))
    discount = np.ones(shape)
    pv = np.zeros(shape)
    decay = np.ones_like(c.fade)
    revenues: list[Floats] = []
    flows: list[Floats] = []
    for t in range(horizon):
        if not all_explicit:
            np.multiply(excess, decay, out=factor)
            factor += base
        if not no_explicit:
            explicit = np.clip((1.0 + c.rates[:, t : t + 1]) + s.growth_shift, 0.0, 2.0)
            np.copyto(factor, explicit, where=c.explicit)
        np.multiply(revenue, factor, out=grown)
        np.multiply(grown, per_revenue, out=fcf)
        np.multiply(c.working_capital, revenue, out=scratch)
        fcf += scratch
        active = t < c.years
        if bool(active.all()):
            discount *= inverse
            np.multiply(fcf, discount, out=scratch)
            pv += scratch
            revenue, grown = grown, revenue
        else:
            np.multiply(fcf, discount * inverse, out=scratch)
            np.add(pv, scratch, out=pv, where=active)
            np.copyto(revenue, grown, where=active)
            np.multiply(discount, inverse, out=discount, where=active)
        if keep_path:  # past a row's horizon these are not its path: callers slice them off
            revenues.append(_column0(grown if not bool(active.all()) else revenue, n).copy())
            flows.append(_column0(fcf, n).copy())
        decay = decay * keep
    if mid is not None:
        pv = pv * mid

    # Terminal value at the end of the horizon: Gordon on the year after, or a multiple
    # of the last year's EBITDA. Exit rows get a dummy spread so nothing divides by zero.
    following = revenue * base
    fcf_next = following * per_revenue + c.working_capital * revenue
    spread = np.where(c.gordon, s.discount_rate - s.terminal_growth, 1.0)
    ebitda = (s.margin + c.depreciation) * revenue
    terminal = np.where(c.gordon, fcf_next / spread, s.exit_multiple * ebitda)
    # A Gordon value sums flows that arrive mid-year like the explicit ones; an exit
    # multiple is a price paid at the end of the last year.
    tv_discount = np.where(c.gordon, discount * mid, discount) if mid is not None else discount
    valuation = Valuation(
        pv_explicit=pv, pv_terminal=terminal * tv_discount, terminal_value=terminal
    )
    if not keep_path:
        empty = np.zeros((n, 0))
        return valuation, Projection(empty, empty, empty, empty)
    # Growth and discount factors of scenario 0, by the same sequential products.
    steps = np.hstack([np.ones((n, 1)), np.repeat(keep, horizon - 1, axis=1)])
    decays: Floats = np.multiply.accumulate(steps, axis=1)
    stated = (
        decays * _column0(first, n)[:, None]
        + (1.0 - decays) * _column0(s.terminal_growth, n)[:, None]
    )
    factors: Floats = np.multiply.accumulate(
        np.repeat(_column0(inverse, n)[:, None], horizon, axis=1), axis=1
    )
    if mid is not None:
        factors = factors * _column0(mid, n)[:, None]
    projection = Projection(
        growth=np.where(c.explicit, c.rates, stated),
        revenue=np.stack(revenues, axis=1),
        free_cash_flow=np.stack(flows, axis=1),
        discount_factor=factors,
    )
    return valuation, projection


def concatenate(parts: list[Scenarios], rows: int) -> Scenarios:
    """Side by side along the scenario axis: one pass values them all."""
    widths = [np.broadcast_shapes(*(a.shape for a in part._arrays()))[1] for part in parts]
    fields = zip(*(part._arrays() for part in parts), strict=True)
    return Scenarios(
        *(
            np.concatenate(
                [np.broadcast_to(a, (rows, w)) for a, w in zip(arrays, widths, strict=True)],
                axis=1,
            )
            for arrays in fields
        )
    )


@lru_cache(maxsize=8)
def standard_normals(seed: int, draws: int) -> Floats:
    """(4, draws) shocks for growth, margin, discount rate and the terminal input.

    They depend on the seed and the draw count only: every company in every batch sees
    the same shocks (common random numbers), so a company's result never depends on
    its neighbours or its position. Cached read-only: drawing costs more than using.
    """
    z = np.random.default_rng(seed).standard_normal((4, draws))
    z.setflags(write=False)
    return z


@lru_cache(maxsize=8)
def _multiple_factors(seed: int, draws: int, log_sd: float) -> Floats:
    """exp(sd * z): median-one log-normal factors, computed once per shared draw."""
    factors: Floats = np.exp(log_sd * standard_normals(seed, draws)[3])[None, :]
    factors.setflags(write=False)
    return factors


def draw_scenarios(
    point: Scenarios,
    gordon: Bools,
    *,
    seed: int,
    draws: int,
    widths: Widths,
    min_discount_rate: float,
    min_spread: float,
) -> Scenarios:
    """Independent normal shocks around each company's point inputs, clipped to sense.

    The discount rate stays within [min_discount_rate, 0.5]; a Gordon row's terminal
    growth stays at least ``min_spread`` below its drawn discount rate (and above -10%),
    which caps the terminal multiple of cash flow at 1 / min_spread.
    """
    z = standard_normals(seed, draws)
    shift = (widths.revenue_growth * z[0])[None, :]
    margin = np.clip(point.margin + (widths.operating_margin * z[1])[None, :], *MARGIN_BOUNDS)
    rate = np.clip(
        point.discount_rate + (widths.discount_rate * z[2])[None, :],
        min_discount_rate,
        MAX_DISCOUNT_RATE,
    )
    drawn_growth = np.minimum(
        np.maximum(
            point.terminal_growth + (widths.terminal_growth * z[3])[None, :],
            TERMINAL_GROWTH_FLOOR,
        ),
        rate - min_spread,
    )
    terminal_growth = np.where(gordon, drawn_growth, point.terminal_growth)
    multiple = point.exit_multiple * _multiple_factors(seed, draws, widths.exit_ev_ebitda)
    return Scenarios(shift, margin, rate, terminal_growth, multiple)


@dataclass(frozen=True)
class Grid:
    """Sensitivity cells as extra scenarios, and what is needed to show them per company."""

    scenarios: Scenarios
    valid: NDArray[np.bool_]
    rates: Floats
    growths: Floats
    multiples: Floats
    gordon: list[bool]
    cols: int

    def table(self, i: int, values: Floats) -> dict[str, Any]:
        """Row i's grid as JSON: one object per discount rate, null outside the model.

        Objects rather than a list of lists: Firestore, where golden sets are kept, cannot
        store an array directly inside an array.
        """
        gordon = self.gordon[i]
        width = self.growths.shape[1] if gordon else self.multiples.shape[1]
        shown = np.where(self.valid[i] & np.isfinite(values), values, np.nan)
        table = shown.reshape(self.rates.shape[1], self.cols)[:, :width].tolist()
        return {
            "terminal_growths": self.growths[i].tolist() if gordon else None,
            "exit_ev_ebitda": None if gordon else self.multiples[i].tolist(),
            "rows": [
                {"discount_rate": rate, "value_per_share": [None if v != v else v for v in line]}
                for rate, line in zip(self.rates[i].tolist(), table, strict=True)
            ],
        }


def sensitivity_grid(
    c: Companies,
    point: Scenarios,
    *,
    rate_steps: Sequence[float],
    growth_steps: Sequence[float],
    multiple_steps: Sequence[float],
    min_spread: float,
) -> Grid:
    """Discount rate (rows) x terminal growth or exit multiple (columns), flattened.

    Each axis is the point input plus the steps. Cells outside the model (r <= 0, a spread
    r - g below ``min_spread``, a negative multiple) are valued at the point inputs, shown null.
    """
    dr, dg, dm = np.array(rate_steps), np.array(growth_steps), np.array(multiple_steps)
    rates = point.discount_rate + dr[None, :]  # (n, R)
    growths = point.terminal_growth + dg[None, :]  # (n, G)
    multiples = point.exit_multiple + dm[None, :]  # (n, M)
    cols = max(len(dg), len(dm))
    cell_rate = np.repeat(rates, cols, axis=1)  # (n, R * cols)
    # The shorter terminal axis repeats its last value; those cells are marked invalid.
    g_axis = growths[:, np.minimum(np.arange(cols), len(dg) - 1)]
    m_axis = multiples[:, np.minimum(np.arange(cols), len(dm) - 1)]
    cell_growth = np.where(c.gordon, np.tile(g_axis, len(dr)), point.terminal_growth)
    cell_multiple = np.where(c.gordon, point.exit_multiple, np.tile(m_axis, len(dr)))
    column = np.tile(np.arange(cols), len(dr))[None, :]
    valid = (cell_rate > 0.0) & np.where(
        c.gordon,
        (cell_rate - cell_growth >= min_spread) & (column < len(dg)),
        (cell_multiple >= 0.0) & (column < len(dm)),
    )
    scenarios = Scenarios(
        growth_shift=np.zeros((1, 1)),
        margin=point.margin,
        discount_rate=np.where(valid, cell_rate, point.discount_rate),
        terminal_growth=np.where(valid, cell_growth, point.terminal_growth),
        exit_multiple=np.where(valid, cell_multiple, point.exit_multiple),
    )
    return Grid(scenarios, valid, rates, growths, multiples, c.gordon[:, 0].tolist(), cols)


def summarise(per_share: Floats) -> Floats:
    """p5, p50, p95, mean, std and the share of negative values, per row."""
    out = np.empty((per_share.shape[0], 6))
    out[:, :3] = np.percentile(per_share, [5.0, 50.0, 95.0], axis=1).T
    out[:, 3] = per_share.mean(axis=1)
    out[:, 4] = per_share.std(axis=1)
    out[:, 5] = (per_share < 0.0).mean(axis=1)
    return out
