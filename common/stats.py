"""Statistics of A/B experiments, computed from mergeable aggregates only.

Each (variant, success metric) pair is compared with the ``control`` arm: Welch's t-test
for continuous metrics, a two-proportion z-test for binary ones, a delta-method lift, and
an always-valid confidence interval that stays honest when results are looked at daily.
``results`` runs every comparison, adjusts the p-values with Holm-Bonferroni and checks
the exposure split for a sample-ratio mismatch; ``conclusion`` reduces that to what the
promotion gate needs. docs/STATISTICS.md gives the formulas and how to read the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.stats_sketch import ArmAggregate, Moments

MetricType = Literal["continuous", "binary"]
Direction = Literal["increase", "decrease"]
Verdict = Literal["not enough data", "better", "worse", "no significant difference"]
Conclusion = Literal["no_regression", "regression", "inconclusive"]

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


def _z(alpha: float) -> float:
    return float(_special().ndtri(1.0 - alpha / 2.0))


def _t(alpha: float, df: float) -> float:
    return float(_special().stdtrit(df, 1.0 - alpha / 2.0))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def welch_t_test(control: Moments, variant: Moments, alpha: float = DEFAULT_ALPHA) -> Difference:
    """Welch's unequal-variance t-test and the (1 - alpha) CI of the difference in means.

    Matches ``scipy.stats.ttest_ind(variant, control, equal_var=False)``.
    """
    _check_alpha(alpha)
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
    half = _t(alpha, df) * se
    return Difference(diff, se, diff - half, diff + half, min(p, 1.0), stat, df)


def two_proportion_z_test(
    control: Moments, variant: Moments, alpha: float = DEFAULT_ALPHA
) -> Difference:
    """Two-proportion z-test: pooled SE for the p-value, unpooled SE for the CI.

    Pooling is right under the null (one common rate); the CI is about rates that may
    differ, so it uses each arm's own rate.
    """
    _check_alpha(alpha)
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
    half = _z(alpha) * se
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
    _check_alpha(alpha)
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
    if any(w <= 0.0 or not math.isfinite(w) for w in weights):
        raise ValueError(f"design weights must be positive, got {dict(design_split)}")
    unknown = set(exposures) - set(arms)
    if unknown:
        raise ValueError(f"exposures for arms not in the design: {sorted(unknown)}")
    observed = [int(exposures.get(a, 0)) for a in arms]
    total = sum(observed)
    if total == 0:
        return {
            "statistic": 0.0,
            "df": len(arms) - 1,
            "p_value": 1.0,
            "mismatch": False,
            "observed": dict(zip(arms, observed, strict=True)),
            "expected": dict.fromkeys(arms, 0.0),
            "threshold": threshold,
        }
    expected = [total * w / sum(weights) for w in weights]
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    p = float(_special().chdtrc(len(arms) - 1, stat))
    return {
        "statistic": stat,
        "df": len(arms) - 1,
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
    half = _t(alpha, moments.count - 1) * math.sqrt(moments.variance / moments.count)
    return moments.mean - half, moments.mean + half


def wilson_interval(moments: Moments, alpha: float = DEFAULT_ALPHA) -> tuple[float, float] | None:
    """Wilson score (1 - alpha) CI of a rate: stays inside [0, 1] and is sane near 0 or 1."""
    n = moments.count
    if n < 1:
        return None
    p, z = moments.mean, _z(alpha)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _interval(bounds: tuple[float, float] | None) -> dict[str, float] | None:
    return None if bounds is None else {"low": bounds[0], "high": bounds[1]}


def _arm_summary(arm: ArmAggregate, metric_type: MetricType, alpha: float) -> dict[str, Any]:
    m = arm.moments
    out: dict[str, Any] = {
        "count": m.count,
        "mean": m.mean if m.count else None,
        "std": m.std if m.count >= 2 else None,
    }
    if metric_type == "binary":
        out["ci"] = _interval(wilson_interval(m, alpha))
        out["ci_method"] = "wilson"
    else:
        out["ci"] = _interval(mean_interval(m, alpha))
        out["ci_method"] = "t"
        sketch = arm.sketch
        filled = sketch is not None and sketch.count > 0
        out["p95"] = sketch.quantile(0.95) if sketch is not None and filled else None
        out["p99"] = sketch.quantile(0.99) if sketch is not None and filled else None
    return out


def _verdict(
    enough: bool,
    p_value: float | None,
    difference: float | None,
    direction: Direction,
    alpha: float,
) -> Verdict:
    if not enough or p_value is None or difference is None:
        return "not enough data"
    if p_value >= alpha or difference == 0.0:
        return "no significant difference"
    good = difference > 0.0 if direction == "increase" else difference < 0.0
    return "better" if good else "worse"


def compare(
    control: ArmAggregate,
    variant: ArmAggregate,
    metric_type: MetricType,
    direction: Direction,
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    tau2: float | None = None,
) -> dict[str, Any]:
    """One variant against control on one metric, as a JSON-serialisable dict.

    The verdict here uses the unadjusted p-value; ``results`` re-judges it after Holm.
    ``tau2`` defaults to ``(DEFAULT_EFFECT_SD * pooled sd)^2``.
    """
    _check_alpha(alpha)
    c, v = control.moments, variant.moments
    enough = min(c.count, v.count) >= min_n
    out: dict[str, Any] = {
        "metric_type": metric_type,
        "direction": direction,
        "alpha": alpha,
        "min_n": min_n,
        "enough_data": enough,
        "control": _arm_summary(control, metric_type, alpha),
        "variant": _arm_summary(variant, metric_type, alpha),
        "test": "welch_t" if metric_type == "continuous" else "two_proportion_z",
        "difference": None,
        "ci": None,
        "p_value": None,
        "statistic": None,
        "df": None,
        "lift": None,
        "always_valid_ci": None,
        "tau2": None,
    }
    computable = min(c.count, v.count) >= (2 if metric_type == "continuous" else 1)
    if computable:
        if metric_type == "continuous":
            test = welch_t_test(c, v, alpha)
            var_c, var_t = c.variance, v.variance
            critical = _t(alpha, test.df) if test.df is not None else 0.0
        else:
            test = two_proportion_z_test(c, v, alpha)
            var_c, var_t = c.mean * (1.0 - c.mean), v.mean * (1.0 - v.mean)
            critical = _z(alpha)
        vm_c, vm_t = var_c / c.count, var_t / v.count
        out.update(
            difference=test.difference,
            ci={"low": test.low, "high": test.high},
            p_value=test.p_value,
            statistic=test.statistic if math.isfinite(test.statistic) else None,
            df=test.df,
        )
        lift = lift_interval(c.mean, v.mean, vm_c, vm_t, critical)
        if lift is not None:
            out["lift"] = {"estimate": lift[0], "low": lift[1], "high": lift[2]}
        scale2 = (var_c + var_t) / 2.0
        t2 = tau2 if tau2 is not None else DEFAULT_EFFECT_SD**2 * scale2
        if t2 > 0.0:
            out["tau2"] = t2
            out["always_valid_ci"] = _interval(
                always_valid_interval(test.difference, vm_c + vm_t, t2, alpha)
            )
    verdict = _verdict(enough, out["p_value"], out["difference"], direction, alpha)
    out["verdict"] = verdict
    out["regression"] = verdict == "worse"
    return out


def results(
    arms: Mapping[str, Mapping[str, ArmAggregate]],
    metrics: Sequence[Metric],
    design_split: Mapping[str, float],
    exposures: Mapping[str, int],
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    tau2: Mapping[str, float] | None = None,
    control: str = CONTROL,
) -> dict[str, Any]:
    """Every variant against control on every metric, Holm-adjusted, with the SRM check.

    ``arms`` maps arm name -> metric name -> aggregate; a missing aggregate counts as no
    outcomes yet. The Holm family is every comparison that has a p-value.
    """
    if control not in arms:
        raise ValueError(f"no {control!r} arm among {sorted(arms)}")
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    for name in sorted(a for a in arms if a != control):
        comparisons[name] = {}
        for metric in metrics:
            empty = ArmAggregate.continuous() if metric.type == "continuous" else ArmAggregate()
            comparisons[name][metric.name] = compare(
                arms[control].get(metric.name, empty),
                arms[name].get(metric.name, empty),
                metric.type,
                metric.direction,
                alpha=alpha,
                min_n=min_n,
                tau2=(tau2 or {}).get(metric.name),
            )
    family = [
        (name, metric, cmp)
        for name, per_metric in comparisons.items()
        for metric, cmp in per_metric.items()
        if cmp["p_value"] is not None
    ]
    adjusted = holm([cmp["p_value"] for _, _, cmp in family])
    for (_, _, cmp), p_adj in zip(family, adjusted, strict=True):
        cmp["p_value_adjusted"] = p_adj
        verdict = _verdict(cmp["enough_data"], p_adj, cmp["difference"], cmp["direction"], alpha)
        cmp["verdict"] = verdict
        cmp["regression"] = verdict == "worse"
    for per_metric in comparisons.values():
        for cmp in per_metric.values():
            cmp.setdefault("p_value_adjusted", None)
    return {
        "control": control,
        "alpha": alpha,
        "min_n": min_n,
        "correction": "holm",
        "family_size": len(family),
        "srm": sample_ratio_mismatch(exposures, design_split),
        "comparisons": comparisons,
    }


def conclusion(result: Mapping[str, Any]) -> dict[str, Conclusion]:
    """Per variant: "regression" if any metric regressed significantly after Holm;
    otherwise "inconclusive" if any metric lacks data or the split mismatches (a broken
    split makes every number suspect); otherwise "no_regression"."""
    srm = bool(result["srm"]["mismatch"])
    out: dict[str, Conclusion] = {}
    for name, per_metric in result["comparisons"].items():
        cmps = list(per_metric.values())
        if any(c["regression"] for c in cmps):
            out[name] = "regression"
        elif srm or not cmps or any(c["verdict"] == "not enough data" for c in cmps):
            out[name] = "inconclusive"
        else:
            out[name] = "no_regression"
    return out


__all__ = [
    "CONTROL",
    "DEFAULT_ALPHA",
    "DEFAULT_EFFECT_SD",
    "DEFAULT_MIN_N",
    "SRM_THRESHOLD",
    "Difference",
    "Metric",
    "always_valid_interval",
    "compare",
    "conclusion",
    "holm",
    "lift_interval",
    "mean_interval",
    "results",
    "sample_ratio_mismatch",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_interval",
]
