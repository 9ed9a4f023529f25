"""Experiment statistics from aggregates, checked against scipy on the raw data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sp

from common.experiments.results import compare, conclusion, results
from common.experiments.sketch import ArmAggregate, Moments
from common.experiments.stats import (
    Metric,
    always_valid_interval,
    holm,
    sample_ratio_mismatch,
    two_proportion_z_test,
    welch_t_test,
)

TOL = 1e-6


def _continuous(values: np.ndarray, shards: int = 3) -> ArmAggregate:
    """Feed values through several shard aggregates and merge them, as production does."""
    merged = ArmAggregate.continuous()
    for part in np.array_split(values, shards):
        shard = ArmAggregate.continuous()
        for x in part:
            shard.add(float(x))
        merged.merge(ArmAggregate.from_dict(json.loads(json.dumps(shard.to_dict()))))
    return merged


def _binary(values: np.ndarray) -> ArmAggregate:
    agg = ArmAggregate.binary()
    for x in values:
        agg.add(int(x))
    return agg


FIXTURES = [
    (0, 50.0, 10.0, 400, 51.0, 14.0, 250),
    (1, 0.12, 0.3, 120, 0.10, 0.05, 900),
    (2, -3.0, 1.0, 1000, -3.0, 1.0, 1000),
    (3, 1e6, 5.0, 300, 1e6 + 1.0, 8.0, 150),
]


@pytest.mark.parametrize(("seed", "mc", "sc", "nc", "mt", "st", "nt"), FIXTURES)
def test_welch_matches_scipy(
    seed: int, mc: float, sc: float, nc: int, mt: float, st: float, nt: int
) -> None:
    rng = np.random.default_rng(seed)
    control, variant = rng.normal(mc, sc, nc), rng.normal(mt, st, nt)
    c, v = _continuous(control), _continuous(variant)
    got = welch_t_test(c.moments, v.moments)
    ref = sp.ttest_ind(variant, control, equal_var=False)
    assert got.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert got.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert got.df == pytest.approx(ref.df, rel=TOL)
    diff = variant.mean() - control.mean()
    se = math.sqrt(variant.var(ddof=1) / nt + control.var(ddof=1) / nc)
    low, high = sp.t.interval(0.95, ref.df, loc=diff, scale=se)
    assert got.difference == pytest.approx(diff, abs=TOL)
    assert got.low == pytest.approx(low, abs=TOL)
    assert got.high == pytest.approx(high, abs=TOL)
    ci = ref.confidence_interval(0.95)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), abs=TOL)


def test_compare_continuous_reports_every_number() -> None:
    rng = np.random.default_rng(10)
    control, variant = rng.lognormal(0.0, 0.5, 600), rng.lognormal(0.1, 0.5, 500)
    out = compare(_continuous(control), _continuous(variant), "continuous", "increase")
    json.dumps(out, allow_nan=False)
    for arm, raw in (("control", control), ("variant", variant)):
        summary = out[arm]
        assert summary["count"] == raw.size
        assert summary["mean"] == pytest.approx(raw.mean(), abs=TOL)
        assert summary["std"] == pytest.approx(raw.std(ddof=1), abs=TOL)
        low, high = sp.t.interval(0.95, raw.size - 1, loc=raw.mean(), scale=sp.sem(raw))
        assert (summary["ci"]["low"], summary["ci"]["high"]) == pytest.approx((low, high), abs=TOL)
        for q, key in ((0.95, "p95"), (0.99, "p99")):
            exact = np.quantile(raw, q, method="lower")
            assert abs(summary[key] - exact) <= 0.01 * exact * (1 + 1e-9)
    ref = sp.ttest_ind(variant, control, equal_var=False)
    assert out["p_value"] == pytest.approx(ref.pvalue, abs=TOL)
    assert out["verdict"] == ("better" if ref.pvalue < 0.05 else "no significant difference")
    # Delta-method lift from the raw arrays.
    mc, mt = control.mean(), variant.mean()
    vc, vt = control.var(ddof=1) / control.size, variant.var(ddof=1) / variant.size
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    crit = sp.t.ppf(0.975, ref.df)
    assert out["lift"]["estimate"] == pytest.approx(mt / mc - 1, abs=TOL)
    assert out["lift"]["low"] == pytest.approx(mt / mc - 1 - crit * se, abs=TOL)
    assert out["lift"]["high"] == pytest.approx(mt / mc - 1 + crit * se, abs=TOL)


@pytest.mark.parametrize(
    ("pc", "nc", "pt", "nt"), [(0.30, 2000, 0.33, 1800), (0.05, 500, 0.04, 700)]
)
def test_two_proportion_z_matches_direct_formulas(pc: float, nc: int, pt: float, nt: int) -> None:
    rng = np.random.default_rng(20)
    control, variant = rng.random(nc) < pc, rng.random(nt) < pt
    c, v = _binary(control), _binary(variant)
    got = two_proportion_z_test(c.moments, v.moments)
    xc, xt = int(control.sum()), int(variant.sum())
    p1, p2 = xc / nc, xt / nt
    pooled = (xc + xt) / (nc + nt)
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nt))
    assert got.statistic == pytest.approx(z, abs=TOL)
    assert got.p_value == pytest.approx(2 * sp.norm.sf(abs(z)), abs=TOL)
    assert got.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=TOL)
    se = math.sqrt(p1 * (1 - p1) / nc + p2 * (1 - p2) / nt)
    zc = sp.norm.ppf(0.975)
    assert (got.low, got.high) == pytest.approx((p2 - p1 - zc * se, p2 - p1 + zc * se), abs=TOL)

    out = compare(c, v, "binary", "increase")
    summary = out["control"]
    assert summary["ci_method"] == "wilson"
    denom = 1 + zc**2 / nc
    centre = (p1 + zc**2 / (2 * nc)) / denom
    half = zc * math.sqrt(p1 * (1 - p1) / nc + zc**2 / (4 * nc**2)) / denom
    assert (summary["ci"]["low"], summary["ci"]["high"]) == pytest.approx(
        (centre - half, centre + half), abs=TOL
    )
    se_lift = math.sqrt((p2 * (1 - p2) / nt) / p1**2 + p2**2 * (p1 * (1 - p1) / nc) / p1**4)
    assert out["lift"]["low"] == pytest.approx(p2 / p1 - 1 - zc * se_lift, abs=TOL)


def test_lift_is_none_when_control_mean_is_zero() -> None:
    out = compare(
        _binary(np.zeros(200)), _binary(np.r_[np.ones(5), np.zeros(195)]), "binary", "increase"
    )
    assert out["lift"] is None
    assert out["difference"] == pytest.approx(0.025)


def _holm_by_hand(p: list[float]) -> list[float]:
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    for k, i in enumerate(order):
        adj[i] = min(1.0, max((m - j) * p[order[j]] for j in range(k + 1)))
    return adj.tolist()


def test_holm_textbook_example() -> None:
    # Four hypotheses: sorted p 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x, then monotone.
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    rng = np.random.default_rng(30)
    for _ in range(50):
        p = (rng.random(int(rng.integers(1, 12))) ** 3).tolist()
        assert holm(p) == pytest.approx(_holm_by_hand(p), abs=1e-12)
    assert holm([]) == []


def test_srm_matches_scipy_and_fires_on_a_55_45_split() -> None:
    bad = sample_ratio_mismatch({"control": 5500, "b": 4500}, {"control": 0.5, "b": 0.5})
    assert bad["p_value"] == pytest.approx(sp.chisquare([4500, 5500]).pvalue, abs=TOL)
    assert bad["p_value"] < 1e-20
    assert bad["mismatch"] is True
    fine = sample_ratio_mismatch({"control": 5020, "b": 4980}, {"control": 50, "b": 50})
    assert fine["p_value"] == pytest.approx(sp.chisquare([4980, 5020]).pvalue, abs=TOL)
    assert fine["mismatch"] is False
    three = sample_ratio_mismatch(
        {"control": 510, "b": 240, "c": 262}, {"control": 2, "b": 1, "c": 1}
    )
    ref = sp.chisquare([240, 262, 510], f_exp=[253.0, 253.0, 506.0])
    assert three["p_value"] == pytest.approx(ref.pvalue, abs=TOL)
    assert three["statistic"] == pytest.approx(ref.statistic, abs=TOL)


def test_not_enough_data_still_reports_numbers() -> None:
    rng = np.random.default_rng(40)
    c, v = _continuous(rng.normal(0, 1, 60)), _continuous(rng.normal(5, 1, 60))
    out = compare(c, v, "continuous", "increase", min_n=100)
    assert out["verdict"] == "not enough data"
    assert out["regression"] is False
    assert out["p_value"] < 1e-10
    assert out["difference"] == pytest.approx(5, abs=0.5)
    assert compare(c, v, "continuous", "increase", min_n=50)["verdict"] == "better"
    worse = compare(c, v, "continuous", "decrease", min_n=50)
    assert worse["verdict"] == "worse"
    assert worse["regression"] is True
    empty = compare(ArmAggregate.continuous(), v, "continuous", "increase")
    assert empty["verdict"] == "not enough data"
    assert empty["p_value"] is None


def test_always_valid_interval_contains_the_fixed_one() -> None:
    rng = np.random.default_rng(50)
    for n in (100, 1000, 10_000):
        c, v = _continuous(rng.normal(0, 1, n), 1), _continuous(rng.normal(0.05, 1, n), 1)
        out = compare(c, v, "continuous", "increase")
        assert out["always_valid_ci"]["low"] < out["ci"]["low"]
        assert out["always_valid_ci"]["high"] > out["ci"]["high"]
    for var in (1e-4, 1e-2, 1.0):
        _, high = always_valid_interval(0.0, var, 0.01, 0.05)
        assert high > 1.96 * math.sqrt(var)


def test_always_valid_interval_survives_daily_peeking() -> None:
    """A/A tests peeked every 50 outcomes: the naive CI cries wolf, the sequence does not."""
    rng = np.random.default_rng(60)
    experiments, n_max, step, alpha = 300, 2000, 50, 0.05
    a, b = rng.normal(0, 1, (2, experiments, n_max))
    n = np.arange(step, n_max + 1, step)
    idx = n - 1
    sums = np.cumsum(a, axis=1)[:, idx], np.cumsum(b, axis=1)[:, idx]
    sqs = np.cumsum(a * a, axis=1)[:, idx], np.cumsum(b * b, axis=1)[:, idx]
    means = sums[0] / n, sums[1] / n
    var_mean = [(sq - n * m * m) / (n - 1) / n for sq, m in zip(sqs, means, strict=True)]
    diff, v = means[1] - means[0], var_mean[0] + var_mean[1]
    tau2 = 0.1**2
    av_reject = np.zeros(experiments, dtype=bool)
    for e in range(experiments):
        for k in range(n.size):
            low, high = always_valid_interval(float(diff[e, k]), float(v[e, k]), tau2, alpha)
            if low > 0 or high < 0:
                av_reject[e] = True
                break
    naive_reject = (np.abs(diff) > sp.norm.ppf(1 - alpha / 2) * np.sqrt(v)).any(axis=1)
    tolerance = 3 * math.sqrt(alpha * (1 - alpha) / experiments)
    assert av_reject.mean() <= alpha + tolerance
    assert naive_reject.mean() > alpha + 2 * tolerance


def _experiment(seed: int) -> dict[str, dict[str, ArmAggregate]]:
    rng = np.random.default_rng(seed)
    return {
        "control": {
            "first_day_return": _continuous(rng.normal(0.10, 0.2, 800)),
            "priced_in_range": _binary(rng.random(800) < 0.60),
        },
        "v2": {
            "first_day_return": _continuous(rng.normal(0.10, 0.2, 800)),
            "priced_in_range": _binary(rng.random(800) < 0.45),
        },
        "v3": {
            "first_day_return": _continuous(rng.normal(0.11, 0.2, 800)),
            "priced_in_range": _binary(rng.random(800) < 0.61),
        },
    }


METRICS = [
    Metric(name="first_day_return", type="continuous", direction="increase"),
    Metric(name="priced_in_range", type="binary", direction="increase"),
]


def test_results_apply_holm_and_conclude() -> None:
    arms = _experiment(70)
    out = results(
        arms, METRICS, {"control": 1, "v2": 1, "v3": 1}, {"control": 1000, "v2": 990, "v3": 1010}
    )
    json.dumps(out, allow_nan=False)
    assert out["family_size"] == 4
    cmps = [c for per in out["comparisons"].values() for c in per.values()]
    adjusted = holm([c["p_value"] for c in cmps])
    assert [c["p_value_adjusted"] for c in cmps] == pytest.approx(adjusted, abs=1e-12)
    assert out["comparisons"]["v2"]["priced_in_range"]["regression"] is True
    assert out["srm"]["mismatch"] is False
    assert conclusion(out) == {"v2": "regression", "v3": "no_regression"}


def test_holm_can_remove_a_marginal_finding() -> None:
    rng = np.random.default_rng(80)
    c, v = rng.normal(0, 1, 400), rng.normal(0, 1, 400) + 0.16
    single = compare(_continuous(c), _continuous(v), "continuous", "increase")
    assert 0.01 < single["p_value"] < 0.05
    arms = {
        "control": {m: _continuous(c) for m in ("a", "b", "c")},
        "v": {"a": _continuous(v), "b": _continuous(c[::-1]), "c": _continuous(c)},
    }
    metrics = [Metric(name=m, type="continuous", direction="increase") for m in ("a", "b", "c")]
    out = results(arms, metrics, {"control": 1, "v": 1}, {"control": 400, "v": 400})
    assert out["comparisons"]["v"]["a"]["verdict"] == "no significant difference"
    assert out["comparisons"]["v"]["a"]["p_value_adjusted"] == pytest.approx(
        3 * single["p_value"], abs=1e-12
    )


def test_conclusion_is_inconclusive_without_data_or_with_srm() -> None:
    arms = _experiment(90)
    del arms["v3"]["priced_in_range"]
    out = results(
        arms, METRICS, {"control": 1, "v2": 1, "v3": 1}, {"control": 1000, "v2": 990, "v3": 1010}
    )
    assert out["comparisons"]["v3"]["priced_in_range"]["verdict"] == "not enough data"
    assert conclusion(out)["v3"] == "inconclusive"
    skewed = results(
        _experiment(90),
        METRICS,
        {"control": 1, "v2": 1, "v3": 1},
        {"control": 1200, "v2": 900, "v3": 900},
    )
    assert skewed["srm"]["mismatch"] is True
    assert conclusion(skewed)["v3"] == "inconclusive"
    with pytest.raises(ValueError, match="control"):
        results({"v2": arms["v2"]}, METRICS, {"control": 1, "v2": 1}, {})


def test_degenerate_inputs() -> None:
    same = Moments(count=10, mean=1.0, m2=0.0)
    assert welch_t_test(same, same).p_value == 1.0
    with pytest.raises(ValueError, match="two values"):
        welch_t_test(Moments(count=1, mean=1.0), same)
    assert always_valid_interval(0.3, 0.0, 0.1) == (0.3, 0.3)
    with pytest.raises(ValueError, match="tau2"):
        always_valid_interval(0.0, 1.0, 0.0)


def test_a_zero_weight_arm_is_judged_not_raised() -> None:
    quiet = sample_ratio_mismatch({"control": 500, "b": 0}, {"control": 1.0, "b": 0.0})
    assert quiet["mismatch"] is False
    served = sample_ratio_mismatch({"control": 500, "b": 3}, {"control": 1.0, "b": 0.0})
    assert served["mismatch"] is True
    assert served["p_value"] == 0.0
    three = sample_ratio_mismatch(
        {"control": 510, "b": 490, "c": 0}, {"control": 1, "b": 1, "c": 0}
    )
    assert three["p_value"] == pytest.approx(sp.chisquare([510, 490]).pvalue, abs=TOL)
