"""A/B experiment results: every comparison, Holm's adjustment, the split check, verdicts.

``results`` runs every (variant, metric) comparison against ``control`` with the tests in
common/experiments/stats.py, adjusts the p-values with Holm-Bonferroni and checks the exposure split
for a sample-ratio mismatch; ``conclusion`` reduces that to what the promotion gate needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from common.experiments.sketch import ArmAggregate, Moments, UserSums
from common.experiments.stats import (
    CONTROL,
    DEFAULT_ALPHA,
    DEFAULT_EFFECT_SD,
    DEFAULT_MIN_N,
    SRM_THRESHOLD,
    Conclusion,
    Difference,
    Direction,
    Metric,
    MetricType,
    Verdict,
    always_valid_interval,
    check_alpha,
    delta_z_test,
    holm,
    lift_interval,
    mean_interval,
    rate_interval,
    ratio_interval,
    ratio_variance,
    sample_ratio_mismatch,
    t_critical,
    two_proportion_z_test,
    welch_t_test,
    wilson_interval,
    z_critical,
)


def _interval(bounds: tuple[float, float] | None) -> dict[str, float] | None:
    return None if bounds is None else {"low": bounds[0], "high": bounds[1]}


def _arm_summary(
    arm: ArmAggregate, metric_type: MetricType, alpha: float, users: UserSums | None = None
) -> dict[str, Any]:
    m = arm.moments
    out: dict[str, Any] = {
        "count": m.count,
        "mean": m.mean if m.count else None,
        "std": m.std if m.count >= 2 else None,
    }
    if users is not None and metric_type == "binary":
        out["users"] = users.users
        out["ci"] = _interval(rate_interval(users, alpha))
        out["ci_method"] = "wilson_effective_n"
    elif users is not None:
        out["users"] = users.users
        out["ci"] = _interval(ratio_interval(users, alpha))
        out["ci_method"] = "delta"
    elif metric_type == "binary":
        out["ci"] = _interval(wilson_interval(m, alpha))
        out["ci_method"] = "wilson"
    else:
        out["ci"] = _interval(mean_interval(m, alpha))
        out["ci_method"] = "t"
    if metric_type == "continuous":
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
    users: tuple[UserSums, UserSums] | None = None,
) -> dict[str, Any]:
    """One variant against control on one metric, as a JSON-serialisable dict.

    With ``users`` (control's and the variant's user-level sums) users are the unit: the
    per-outcome means are compared by the delta-method z-test and ``min_n`` counts users.
    Without, every outcome is taken as independent (Welch or two-proportion z).
    The verdict here uses the unadjusted p-value; ``results`` re-judges it after Holm.
    ``tau2`` defaults to ``(DEFAULT_EFFECT_SD * pooled sd)^2``.
    """
    out = _compare(control, variant, metric_type, direction, alpha, min_n, tau2, users)
    del out["_test_se"]
    return out


def _compare(
    control: ArmAggregate,
    variant: ArmAggregate,
    metric_type: MetricType,
    direction: Direction,
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    tau2: float | None = None,
    users: tuple[UserSums, UserSums] | None = None,
) -> dict[str, Any]:
    """``compare`` with the test's standard error kept in ``_test_se``."""
    check_alpha(alpha)
    c, v = control.moments, variant.moments
    units = (users[0].users, users[1].users) if users is not None else (c.count, v.count)
    enough = min(units) >= min_n
    out: dict[str, Any] = {
        "metric_type": metric_type,
        "unit": "user" if users is not None else "request",
        "direction": direction,
        "alpha": alpha,
        "min_n": min_n,
        "enough_data": enough,
        "control": _arm_summary(control, metric_type, alpha, users[0] if users else None),
        "variant": _arm_summary(variant, metric_type, alpha, users[1] if users else None),
        "test": "welch_t" if metric_type == "continuous" else "two_proportion_z",
        "difference": None,
        "ci": None,
        "p_value": None,
        "statistic": None,
        "df": None,
        "lift": None,
        "always_valid_ci": None,
        "tau2": None,
        "_test_se": None,
    }
    if users is not None:
        out["test"] = "delta_z"
    computable = min(units) >= (1 if metric_type == "binary" and users is None else 2)
    if computable:
        if users is not None:
            test = delta_z_test(users[0], users[1], alpha)
            var_c, var_t = _outcome_variance(c, metric_type), _outcome_variance(v, metric_type)
            vm_c, vm_t = ratio_variance(users[0]), ratio_variance(users[1])
            means = (users[0].sy / users[0].sn, users[1].sy / users[1].sn)
            critical, test_se = z_critical(alpha), test.se
        elif metric_type == "continuous":
            test = welch_t_test(c, v, alpha)
            var_c, var_t = c.variance, v.variance
            vm_c, vm_t = var_c / c.count, var_t / v.count
            means = (c.mean, v.mean)
            critical = t_critical(alpha, test.df) if test.df is not None else 0.0
            test_se = test.se
        else:
            test = two_proportion_z_test(c, v, alpha)
            var_c, var_t = c.mean * (1.0 - c.mean), v.mean * (1.0 - v.mean)
            vm_c, vm_t = var_c / c.count, var_t / v.count
            means = (c.mean, v.mean)
            critical = z_critical(alpha)
            pooled = (c.mean * c.count + v.mean * v.count) / (c.count + v.count)
            test_se = math.sqrt(max(pooled * (1.0 - pooled), 0.0) * (1 / c.count + 1 / v.count))
        out.update(
            difference=test.difference,
            ci={"low": test.low, "high": test.high},
            p_value=test.p_value,
            statistic=test.statistic if math.isfinite(test.statistic) else None,
            df=test.df,
            _test_se=test_se,
        )
        lift = lift_interval(means[0], means[1], vm_c, vm_t, critical)
        if lift is not None:
            out["lift"] = {"estimate": lift[0], "low": lift[1], "high": lift[2]}
        scale2 = (var_c + var_t) / 2.0
        t2 = tau2 if tau2 is not None else DEFAULT_EFFECT_SD**2 * scale2
        if t2 > 0.0 and math.isfinite(t2):
            out["tau2"] = t2
            out["always_valid_ci"] = _interval(
                always_valid_interval(test.difference, vm_c + vm_t, t2, alpha)
            )
    verdict = _verdict(enough, out["p_value"], out["difference"], direction, alpha)
    out["verdict"] = verdict
    out["regression"] = verdict == "worse"
    return out


def _outcome_variance(moments: Moments, metric_type: MetricType) -> float:
    """The spread of single outcomes, the scale of the always-valid interval's tau."""
    if metric_type == "binary":
        return float(moments.mean * (1.0 - moments.mean))
    return float(moments.variance) if moments.count >= 2 else math.nan


def _holm_intervals(family: list[dict[str, Any]], p_values: Sequence[float], alpha: float) -> None:
    """Each comparison's interval at the level at which Holm judged it.

    Holm tests the k-th smallest of m p-values at alpha / (m - k + 1) and stops at the
    first it cannot reject; the ones after are judged at that step's level. The interval
    ``difference +- critical(level) * se`` uses the test's own standard error, so it
    excludes 0 exactly when the Holm-adjusted p-value is below alpha.
    """
    m = len(family)
    order = sorted(range(m), key=lambda i: p_values[i])
    level = alpha / m if m else alpha
    stopped = False
    for rank, i in enumerate(order):
        if not stopped:
            level = alpha / (m - rank)
            stopped = p_values[i] >= level
        cmp = family[i]
        se, d = cmp["_test_se"], cmp["difference"]
        if cmp["df"] is not None:
            half = t_critical(level, cmp["df"]) * se
        else:
            half = z_critical(level) * se
        cmp["ci_holm"] = {"low": d - half, "high": d + half}
        cmp["ci_holm_level"] = 1.0 - level


def results(
    arms: Mapping[str, Mapping[str, ArmAggregate]],
    metrics: Sequence[Metric],
    design_split: Mapping[str, float],
    exposures: Mapping[str, int],
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    tau2: Mapping[str, float] | None = None,
    control: str = CONTROL,
    users: Mapping[str, Mapping[str, UserSums]] | None = None,
    exposure_unit: str = "user",
) -> dict[str, Any]:
    """Every variant against control on every metric, Holm-adjusted, with the SRM check.

    ``arms`` maps arm name -> metric name -> aggregate; a missing aggregate counts as no
    outcomes yet. ``users`` holds the user-level sums the metrics declared per user are
    analysed with (none: every metric per request). ``exposures`` counts ``exposure_unit``
    per arm. The Holm family is every comparison that has a p-value.
    """
    if control not in arms:
        raise ValueError(f"no {control!r} arm among {sorted(arms)}")
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    for name in sorted(a for a in arms if a != control):
        comparisons[name] = {}
        for metric in metrics:
            empty = ArmAggregate.continuous() if metric.type == "continuous" else ArmAggregate()
            pair = None
            if users is not None and metric.unit == "user":
                pair = (
                    users.get(control, {}).get(metric.name, UserSums()),
                    users.get(name, {}).get(metric.name, UserSums()),
                )
            comparisons[name][metric.name] = _compare(
                arms[control].get(metric.name, empty),
                arms[name].get(metric.name, empty),
                metric.type,
                metric.direction,
                alpha=alpha,
                min_n=min_n,
                tau2=(tau2 or {}).get(metric.name),
                users=pair,
            )
    family = [
        (name, metric, cmp)
        for name, per_metric in comparisons.items()
        for metric, cmp in per_metric.items()
        if cmp["p_value"] is not None
    ]
    adjusted = holm([cmp["p_value"] for _, _, cmp in family])
    _holm_intervals([cmp for _, _, cmp in family], [cmp["p_value"] for _, _, cmp in family], alpha)
    for (_, _, cmp), p_adj in zip(family, adjusted, strict=True):
        cmp["p_value_adjusted"] = p_adj
        verdict = _verdict(cmp["enough_data"], p_adj, cmp["difference"], cmp["direction"], alpha)
        cmp["verdict"] = verdict
        cmp["regression"] = verdict == "worse"
    for per_metric in comparisons.values():
        for cmp in per_metric.values():
            cmp.setdefault("p_value_adjusted", None)
            cmp.setdefault("ci_holm", None)
            cmp.setdefault("ci_holm_level", None)
            del cmp["_test_se"]
    srm = sample_ratio_mismatch(exposures, design_split)
    srm["unit"] = exposure_unit
    return {
        "control": control,
        "alpha": alpha,
        "min_n": min_n,
        "correction": "holm",
        "family_size": len(family),
        "srm": srm,
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


WORST_FIRST: tuple[Conclusion, ...] = ("regression", "inconclusive", "no_regression")


def by_version(
    variants: Mapping[str, str], by_variant: Mapping[str, Conclusion]
) -> dict[str, Conclusion]:
    """Each arm's conclusion keyed by its version, what a promotion gate looks up.

    An arm serving the control's own version (an A/A arm) compared that version with
    itself: it is evidence about the experiment, never about the version, so it is left
    out. Arms serving one version are combined worst first: the version shows no
    regression only if none of its arms regressed and every one of them concluded.
    """
    control = variants[CONTROL]
    out: dict[str, Conclusion] = {}
    for name, found in sorted(by_variant.items()):
        version = variants[name]
        if name == CONTROL or version == control:
            continue
        seen = out.get(version)
        out[version] = found if seen is None else min(seen, found, key=WORST_FIRST.index)
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
    "by_version",
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
