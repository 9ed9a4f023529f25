"""Statistics of A/B experiments, computed from mergeable aggregates only.

Each (variant, success metric) pair is compared with the ``control`` arm: Welch's t-test
for continuous metrics, a two-proportion z-test for binary ones, a delta-method lift, and
an always-valid confidence interval that stays honest when results are looked at daily.
common/experiments/results.py puts them together into an experiment's results.
docs/STATISTICS.md gives the formulas and how to read the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.experiments.sketch import Moments, UserSums

MetricType = Literal["continuous", "binary"]
Direction = Literal["increase", "decrease"]
Verdict = Literal["not enough data", "better", "worse", "no significant difference"]
Conclusion = Literal["no_regression", "regression", "inconclusive"]
Unit = Literal["user", "request"]

CONTROL = "control"
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_N = 100
"""Outcomes per arm below which no verdict is given: the normal approximations behind the
tests are not to be trusted on fewer, and early tiny samples are where noise looks like
an effect."""
SRM_THRESHOLD = 0.001
"""SRM p-value below which the split is flagged: strict, because with large exposure
counts a real assignment bug gives p-values far smaller, and a false alarm stops a test."""
DEFAULT_EFFECT_SD = 0.1
"""Mixing scale of the always-valid interval: tau = 0.1 standard deviations of the metric,
the size of effect model versions are expected to have."""


class Metric(BaseModel):
    """A success metric of an experiment and which way is good."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    type: MetricType
    direction: Direction
    unit: Unit = Field(
        "user",
        description="What is analysed as independent: each user's outcomes together (the "
        "unit that is randomised), or each request on its own.",
    )


@dataclass(frozen=True)
class Difference:
    """A test of variant minus control: estimate, standard error, interval, p-value."""

    difference: float
    se: float
    low: float
    high: float
    p_value: float
    statistic: float
    df: float | None
    """Welch-Satterthwaite degrees of freedom; None for the z-test."""


def _special() -> Any:
    """scipy.special, imported when first needed: it costs start-up time."""
    from scipy import special  # type: ignore[import-untyped]

    return special


def z_critical(alpha: float) -> float:
    return float(_special().ndtri(1.0 - alpha / 2.0))


def t_critical(alpha: float, df: float) -> float:
    return float(_special().stdtrit(df, 1.0 - alpha / 2.0))


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def welch_t_test(control: Moments, variant: Moments, alpha: float = DEFAULT_ALPHA) -> Difference:
    """Welch's unequal-variance t-test and the (1 - alpha) CI of the difference in means.

    Matches ``scipy.stats.ttest_ind(variant, control, equal_var=False)``.
    """
    check_alpha(alpha)
    if control.count < 2 or variant.count < 2:
        raise ValueError("Welch's t-test needs at least two values per arm")
    diff = variant.mean - control.mean
    vc, vt = control.variance / control.count, variant.variance / variant.count
    se2 = vc + vt
    if se2 == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
        stat = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return Difference(diff, 0.0, diff, diff, p, stat, None)
    se = math.sqrt(se2)
    df = se2 * se2 / (vc * vc / (control.count - 1) + vt * vt / (variant.count - 1))
    stat = diff / se
    p = float(2.0 * _special().stdtr(df, -abs(stat)))
    half = t_critical(alpha, df) * se
    return Difference(diff, se, diff - half, diff + half, min(p, 1.0), stat, df)


def two_proportion_z_test(
    control: Moments, variant: Moments, alpha: float = DEFAULT_ALPHA
) -> Difference:
    """Two-proportion z-test: pooled SE for the p-value, unpooled SE for the CI.

    Pooling is right under the null (one common rate); the CI is about rates that may
    differ, so it uses each arm's own rate.
    """
    check_alpha(alpha)
    nc, nt = control.count, variant.count
    if nc < 1 or nt < 1:
        raise ValueError("the two-proportion test needs at least one outcome per arm")
    pc, pt = control.mean, variant.mean
    diff = pt - pc
    pooled = (pc * nc + pt * nt) / (nc + nt)
    se_pooled = math.sqrt(max(pooled * (1.0 - pooled), 0.0) * (1.0 / nc + 1.0 / nt))
    if se_pooled == 0.0:
        stat, p = 0.0, 1.0
    else:
        stat = diff / se_pooled
        p = float(2.0 * _special().ndtr(-abs(stat)))
    se = math.sqrt(max(pc * (1.0 - pc), 0.0) / nc + max(pt * (1.0 - pt), 0.0) / nt)
    half = z_critical(alpha) * se
    return Difference(diff, se, diff - half, diff + half, p, stat, None)


def ratio_variance(sums: UserSums) -> float:
    """Delta-method variance of the ratio ``sum Y / sum N`` with users as the unit.

    Deng, Knoblich and Lu (2018): ``Var(R) ~ sum (Y_u - R N_u)^2 / (sum N)^2 * n/(n-1)``,
    expanded into the merged sums; NaN below two users.
    """
    if sums.users < 2 or sums.sn <= 0.0:
        return math.nan
    ratio = sums.sy / sums.sn
    residual = max(sums.syy - 2.0 * ratio * sums.syn + ratio * ratio * sums.snn, 0.0)
    return residual / (sums.sn * sums.sn) * sums.users / (sums.users - 1)


def ratio_interval(sums: UserSums, alpha: float = DEFAULT_ALPHA) -> tuple[float, float] | None:
    """Normal (1 - alpha) CI of one arm's per-outcome mean, users as the unit."""
    variance = ratio_variance(sums)
    if math.isnan(variance):
        return None
    ratio, half = sums.sy / sums.sn, z_critical(alpha) * math.sqrt(variance)
    return ratio - half, ratio + half


def delta_z_test(control: UserSums, variant: UserSums, alpha: float = DEFAULT_ALPHA) -> Difference:
    """z-test of the difference of two per-outcome means, each ``sum Y / sum N`` over the
    arm's users, with delta-method variances: outcomes of one user may be correlated,
    users are independent."""
    check_alpha(alpha)
    if control.users < 2 or variant.users < 2:
        raise ValueError("the delta-method test needs at least two users per arm")
    diff = variant.sy / variant.sn - control.sy / control.sn
    se = math.sqrt(ratio_variance(control) + ratio_variance(variant))
    if se == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
        stat = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return Difference(diff, 0.0, diff, diff, p, stat, None)
    stat = diff / se
    p = float(2.0 * _special().ndtr(-abs(stat)))
    half = z_critical(alpha) * se
    return Difference(diff, se, diff - half, diff + half, p, stat, None)


def lift_interval(
    control_mean: float,
    variant_mean: float,
    control_var_of_mean: float,
    variant_var_of_mean: float,
    critical: float,
) -> tuple[float, float, float] | None:
    """Relative lift ``variant/control - 1`` and its delta-method interval.

    ``Var(mt/mc) ~ Var(mt)/mc^2 + mt^2 Var(mc)/mc^4`` for independent arms. None when the
    control mean is 0: a lift relative to nothing is undefined.
    """
    if control_mean == 0.0:
        return None
    lift = variant_mean / control_mean - 1.0
    var = (
        variant_var_of_mean / control_mean**2
        + variant_mean**2 * control_var_of_mean / control_mean**4
    )
    half = critical * math.sqrt(var)
    return lift, lift - half, lift + half


def always_valid_interval(
    difference: float, variance: float, tau2: float, alpha: float = DEFAULT_ALPHA
) -> tuple[float, float]:
    """Normal-mixture confidence sequence (mSPRT of Johari, Koomen, Pekelis and Walsh).

    For an estimate with variance V and mixing variance tau^2 the interval is
    ``diff +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V)))``; it
    holds at every sample size at once, so stopping when it first excludes 0 keeps the
    false-positive rate at alpha however often one looks.
    """
    check_alpha(alpha)
    if tau2 <= 0.0:
        raise ValueError(f"tau2 must be positive, got {tau2}")
    if variance <= 0.0:
        return difference, difference
    v = variance
    half = math.sqrt(
        v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((v + tau2) / v))
    )
    return difference - half, difference + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The i-th smallest p is multiplied by (m - i + 1), capped at 1, and made non-decreasing
    in rank, so ``adjusted < alpha`` controls the family-wise error rate at alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def sample_ratio_mismatch(
    exposures: Mapping[str, int],
    design_split: Mapping[str, float],
    threshold: float = SRM_THRESHOLD,
) -> dict[str, Any]:
    """Chi-square goodness-of-fit of exposure counts against the designed split.

    A mismatch means assignment or logging is broken (bots, redirects, crashes in one
    arm), and then every comparison in the experiment is suspect.
    """
    arms = sorted(design_split)
    if len(arms) < 2:
        raise ValueError("a design split needs at least two arms")
    weights = [float(design_split[a]) for a in arms]
    if any(w < 0.0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"design weights must not be negative, got {dict(design_split)}")
    unknown = set(exposures) - set(arms)
    if unknown:
        raise ValueError(f"exposures for arms not in the design: {sorted(unknown)}")
    observed = [int(exposures.get(a, 0)) for a in arms]
    total = sum(observed)
    unplanned = [a for a, w, o in zip(arms, weights, observed, strict=True) if w == 0.0 and o]
    if unplanned or (total and sum(weights) == 0.0):
        # an arm the design gives no traffic was served: no test needed to call it broken
        return {
            "statistic": math.inf,
            "df": len(arms) - 1,
            "p_value": 0.0,
            "mismatch": True,
            "threshold": threshold,
            "observed": dict(zip(arms, observed, strict=True)),
            "expected": {
                a: total * w / (sum(weights) or 1.0) for a, w in zip(arms, weights, strict=True)
            },
        }
    planned = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0.0]
    expected = [total * w / sum(weights) for w in weights]
    if total == 0 or len(planned) < 2:
        return {
            "statistic": 0.0,
            "df": len(arms) - 1,
            "p_value": 1.0,
            "mismatch": False,
            "observed": dict(zip(arms, observed, strict=True)),
            "expected": dict(zip(arms, expected, strict=True)),
            "threshold": threshold,
        }
    stat = sum((o - total * w / sum(weights)) ** 2 / (total * w / sum(weights)) for o, w in planned)
    p = float(_special().chdtrc(len(planned) - 1, stat))
    return {
        "statistic": stat,
        "df": len(planned) - 1,
        "p_value": p,
        "mismatch": p < threshold,
        "threshold": threshold,
        "observed": dict(zip(arms, observed, strict=True)),
        "expected": dict(zip(arms, expected, strict=True)),
    }


def mean_interval(moments: Moments, alpha: float = DEFAULT_ALPHA) -> tuple[float, float] | None:
    """t-based (1 - alpha) CI of one arm's mean; None below two values."""
    if moments.count < 2:
        return None
    half = t_critical(alpha, moments.count - 1) * math.sqrt(moments.variance / moments.count)
    return moments.mean - half, moments.mean + half


def wilson_interval(moments: Moments, alpha: float = DEFAULT_ALPHA) -> tuple[float, float] | None:
    """Wilson score (1 - alpha) CI of a rate: stays inside [0, 1] and is sane near 0 or 1."""
    if moments.count < 1:
        return None
    return _wilson(moments.mean, float(moments.count), alpha)


def rate_interval(sums: UserSums, alpha: float = DEFAULT_ALPHA) -> tuple[float, float] | None:
    """(1 - alpha) CI of one arm's rate with users as the unit: the Wilson score interval at
    the effective sample size ``p (1 - p) / Var(R)`` (Var(R) the delta-method variance), so
    it stays inside [0, 1] and, away from 0 and 1, is about as wide as ``R +- z sqrt(Var(R))``.
    When every outcome agrees (``p`` is 0 or 1, variance 0) the users are the sample size."""
    if sums.users < 2 or sums.sn <= 0.0:
        return None
    p = sums.sy / sums.sn
    spread, variance = p * (1.0 - p), ratio_variance(sums)
    n = spread / variance if spread > 0.0 and variance > 0.0 else float(sums.users)
    return _wilson(p, n, alpha)


def _wilson(p: float, n: float, alpha: float) -> tuple[float, float]:
    z = z_critical(alpha)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
