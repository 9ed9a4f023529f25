"""Drift statistics (common/monitoring/drift.py) against independent computations and scipy."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from common.monitoring.drift import (
    EPSILON,
    PSI_FLAG,
    FeatureDrift,
    LiveFeature,
    assess,
    baseline_cdf,
    benjamini_hochberg,
    bin_index,
    chi2_against_baseline,
    expected_shares,
    feature_drift,
    js_distance,
    ks_against_baseline,
    psi,
)
from tools.training.base import drift_baseline

SECTORS = ("tech", "health", "energy")
SECTOR_MIX = (0.5, 0.3, 0.2)
AGE_SHAPE, AGE_SCALE = 4.0, 2.0


def live_numeric(baseline: Mapping[str, Any], values: Sequence[float]) -> LiveFeature:
    counts = [0] * (len(baseline["edges"]) + 1)
    for v in values:
        counts[bin_index(baseline["edges"], float(v))] += 1
    return LiveFeature("numeric", counts, {}, [float(v) for v in values], len(values))


def live_categorical(values: Sequence[str]) -> LiveFeature:
    return LiveFeature("categorical", [], dict(Counter(values)), [], len(values))


def rows(
    n: int, seed: int, *, age_shift: float = 0.0, mix: Sequence[float] = SECTOR_MIX
) -> list[dict[str, Any]]:
    """Synthetic IPO rows: two numeric features and one categorical."""
    rng = np.random.default_rng(seed)
    log_revenue = rng.normal(18.0, 1.5, n)
    age = rng.gamma(AGE_SHAPE, AGE_SCALE, n) + age_shift
    sector = rng.choice(SECTORS, size=n, p=list(mix))
    return [
        {"log_revenue": float(r), "age_years": float(a), "sector": str(s)}
        for r, a, s in zip(log_revenue, age, sector, strict=True)
    ]


def live_from(baseline: Mapping[str, Any], data: list[dict[str, Any]]) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name, entry in baseline.items():
        values = [row[name] for row in data]
        live = (
            live_numeric(entry, values) if entry["type"] == "numeric" else live_categorical(values)
        )
        features[name] = (entry, live)
    return features


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return drift_baseline(rows(2000, seed=1))


def numpy_psi(e: np.ndarray, a: np.ndarray, eps: float = EPSILON) -> float:
    e, a = e / e.sum(), a / a.sum()
    e, a = np.where(e == 0, eps, e), np.where(a == 0, eps, a)
    e, a = e / e.sum(), a / a.sum()
    return float(sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True)))


# --- bins --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "index"),
    [(-0.5, 0), (0.0, 1), (0.5, 1), (1.0, 2), (2.999, 3), (3.0, 3), (3.5, 4), (-math.inf, 0)],
)
def test_bin_index_edges(value: float, index: int) -> None:
    assert bin_index([0.0, 1.0, 2.0, 3.0], value) == index


def test_bin_index_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        bin_index([0.0, 1.0], math.nan)


def test_bin_index_matches_numpy_histogram_inside_the_range() -> None:
    rng = np.random.default_rng(3)
    edges = np.unique(np.quantile(rng.normal(size=500), np.linspace(0, 1, 11)))
    values = np.concatenate([rng.normal(size=2000), edges])
    live = live_numeric({"edges": edges.tolist()}, values.tolist())
    inside, _ = np.histogram(values, bins=edges)
    assert live.counts[1:-1] == inside.tolist()
    assert live.counts[0] == int(np.sum(values < edges[0]))
    assert live.counts[-1] == int(np.sum(values > edges[-1]))


def test_expected_shares_aligns_bins_and_categories(baseline: dict[str, Any]) -> None:
    entry = baseline["age_years"]
    live = live_numeric(entry, [-1.0, 1e9, entry["edges"][0]])
    e, a = expected_shares(entry, live)
    assert e.tolist() == [0.0, *entry["proportions"], 0.0]
    assert a[0] == a[1] == a[-1] == pytest.approx(1 / 3)
    base = {"type": "categorical", "frequencies": {"b": 0.4, "a": 0.6}, "count": 10}
    e, a = expected_shares(base, live_categorical(["z", "a", "a", "y"]))
    assert e.tolist() == [0.6, 0.4, 0.0, 0.0]
    assert a.tolist() == [0.5, 0.0, 0.25, 0.25]
    with pytest.raises(ValueError, match="categorical"):
        expected_shares(base, live)


# --- PSI and JS ---------------------------------------------------------------------------


def test_psi_known_value_and_identity() -> None:
    expected = 0.25 * (math.log(2.0) + math.log(1.5))
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(shares, shares) == pytest.approx(0.0, abs=1e-15)
    assert psi(shares * 7, shares * 100) == pytest.approx(0.0, abs=1e-15)


def test_psi_of_a_half_sd_shift_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    base = drift_baseline([{"x": float(v)} for v in rng.normal(0.0, 1.0, 5000)])["x"]
    same = live_numeric(base, rng.normal(0.0, 1.0, 5000).tolist())
    shifted = live_numeric(base, rng.normal(0.5, 1.0, 5000).tolist())
    for live in (same, shifted):
        e, a = expected_shares(base, live)
        ref_e = np.array([0.0, *base["proportions"], 0.0])
        ref_a = np.array(live.counts, dtype=float)
        assert psi(e, a) == pytest.approx(numpy_psi(ref_e, ref_a), rel=1e-12)
    assert psi(*expected_shares(base, same)) < 0.02
    # J-divergence of N(0,1) and N(0.5,1) is 0.25; decile binning loses a little of it.
    assert 0.18 < psi(*expected_shares(base, shifted)) < 0.3


def test_psi_with_empty_bins_is_finite_and_matches_numpy() -> None:
    e, a = np.array([0.3, 0.7, 0.0]), np.array([0.0, 5.0, 5.0])
    assert psi(e, a) == pytest.approx(numpy_psi(e, a), rel=1e-12)


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ([0.1, 0.2, 0.7], [0.3, 0.3, 0.4]),
        ([1.0, 0.0, 0.0], [0.0, 0.5, 0.5]),
        ([3, 0, 9, 1], [1, 1, 1, 1]),
        ([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]),
    ],
)
def test_js_distance_matches_scipy(p: list[float], q: list[float]) -> None:
    ours = js_distance(np.array(p, dtype=float), np.array(q, dtype=float))
    theirs = float(jensenshannon(np.array(p, dtype=float), np.array(q, dtype=float), base=2))
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert 0.0 <= ours <= 1.0


def test_vectors_are_validated() -> None:
    with pytest.raises(ValueError, match="aligned"):
        psi(np.array([0.5, 0.5]), np.array([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="non-negative"):
        js_distance(np.array([0.5, -0.5]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="no mass"):
        psi(np.array([0.0, 0.0]), np.array([0.5, 0.5]))


# --- tests of significance ----------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ks_matches_scipy_kstest(shift: float) -> None:
    rng = np.random.default_rng(11)
    base = drift_baseline([{"x": float(v)} for v in rng.normal(0.0, 1.0, 2000)])["x"]
    sample = rng.normal(shift, 1.0, 500)
    sample[:3] = [base["edges"][0] - 1.0, base["edges"][-1] + 1.0, base["edges"][4]]
    stat, p = ks_against_baseline(base, sample.tolist())
    reference = stats.kstest(sample, baseline_cdf(base))
    assert stat == pytest.approx(reference.statistic, rel=1e-9)
    assert p == pytest.approx(reference.pvalue, rel=1e-6)
    if shift:
        assert p < 1e-6


def test_baseline_cdf_is_piecewise_linear_through_the_deciles() -> None:
    base = {"type": "numeric", "edges": [0.0, 1.0, 3.0], "proportions": [0.25, 0.75]}
    cdf = baseline_cdf(base)
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 9.0])
    assert cdf(x).tolist() == pytest.approx([0.0, 0.0, 0.125, 0.25, 0.625, 1.0, 1.0])


def test_chi2_matches_scipy_chisquare_with_an_unseen_category() -> None:
    expected = np.array([0.5, 0.3, 0.2, 0.0])
    counts = np.array([40.0, 35.0, 20.0, 5.0])
    stat, p = chi2_against_baseline(expected, counts)
    smoothed = np.where(expected > 0, expected, EPSILON)
    smoothed /= smoothed.sum()
    reference = stats.chisquare(counts, smoothed * counts.sum())
    assert stat == pytest.approx(reference.statistic, rel=1e-12)
    assert p == pytest.approx(reference.pvalue, rel=1e-9)


@pytest.mark.parametrize(
    "p_values",
    [
        [0.01, 0.04, 0.03, 0.2, 0.9],
        [0.001, 0.001, 0.5, 0.5, 0.049],
        [0.8],
        [0.3, 0.02, 0.02, 0.7, 1.0, 0.0],
    ],
)
def test_benjamini_hochberg_matches_scipy(p_values: list[float]) -> None:
    reference = stats.false_discovery_control(p_values, method="bh")
    assert benjamini_hochberg(p_values) == pytest.approx(reference.tolist(), rel=1e-12)


def test_benjamini_hochberg_of_nothing() -> None:
    assert benjamini_hochberg([]) == []


def test_benjamini_hochberg_refuses_an_undefined_p_value() -> None:
    """A NaN sorts nowhere: it once made 0.3 come out as 1.5e-30."""
    with pytest.raises(ValueError, match="finite"):
        benjamini_hochberg([1e-30, 0.2, float("nan"), 0.3])


def test_a_one_category_feature_has_no_test_and_stays_out_of_bh() -> None:
    """A baseline that only ever saw one value (a DCF's terminal_method, gordon) has no
    chi-square to run; the model's other features are adjusted among themselves only."""
    one = {"type": "categorical", "frequencies": {"gordon": 1.0}}
    mixed = {"type": "categorical", "frequencies": dict(zip(SECTORS, SECTOR_MIX, strict=True))}
    live = live_categorical(["tech"] * 60 + ["health"] * 30 + ["energy"] * 30)
    reports = {
        r.feature: r
        for r in assess(
            {"method": (one, live_categorical(["gordon"] * 120)), "sector": (mixed, live)}
        )
    }
    method, sector = reports["method"], reports["sector"]
    assert (method.test, method.p_value, method.p_adjusted) == (None, None, None)
    assert method.status == "ok"
    assert sector.p_value is not None
    assert sector.p_adjusted is not None
    assert sector.p_adjusted == pytest.approx(sector.p_value)  # adjusted alone: m = 1


# --- assess -------------------------------------------------------------------------------


def status_of(reports: list[FeatureDrift]) -> dict[str, str]:
    return {r.feature: r.status for r in reports}


@pytest.mark.parametrize("seed", [2, 3, 4, 5, 6])
def test_same_generator_flags_nothing(baseline: dict[str, Any], seed: int) -> None:
    reports = assess(live_from(baseline, rows(1000, seed)))
    assert set(status_of(reports).values()) == {"ok"}
    for r in reports:
        assert r.psi is not None
        assert r.psi < PSI_FLAG
        assert r.p_adjusted is not None
        assert r.p_value is not None
        assert r.p_adjusted >= r.p_value
        assert r.test == ("chi2" if r.kind == "categorical" else "ks")


def test_one_sd_shift_flags_only_that_feature(baseline: dict[str, Any]) -> None:
    shift = math.sqrt(AGE_SHAPE) * AGE_SCALE
    reports = assess(live_from(baseline, rows(1000, 8, age_shift=shift)))
    assert status_of(reports) == {"log_revenue": "ok", "age_years": "drift", "sector": "ok"}
    age = next(r for r in reports if r.feature == "age_years")
    assert age.p_adjusted is not None
    assert age.p_adjusted < 1e-6
    assert age.psi is not None
    assert age.psi > 0.5


def test_new_category_mix_flags_only_the_category(baseline: dict[str, Any]) -> None:
    reports = assess(live_from(baseline, rows(1000, 9, mix=(0.2, 0.3, 0.5))))
    assert status_of(reports) == {"log_revenue": "ok", "age_years": "ok", "sector": "drift"}


def test_a_significant_but_tiny_shift_is_not_flagged(baseline: dict[str, Any]) -> None:
    entry = baseline["log_revenue"]
    values = np.random.default_rng(10).normal(18.0 + 0.1 * 1.5, 1.5, 20000)
    [report] = assess({"log_revenue": (entry, live_numeric(entry, values.tolist()))})
    assert report.p_adjusted is not None
    assert report.p_adjusted < 0.05
    assert report.psi is not None
    assert report.psi < PSI_FLAG
    assert report.status == "ok"


def test_a_large_but_noisy_psi_is_not_flagged() -> None:
    base = {"type": "categorical", "frequencies": dict(zip(SECTORS, SECTOR_MIX, strict=True))}
    live = LiveFeature("categorical", [], {"tech": 6, "health": 9, "energy": 5}, [], 20)
    [report] = assess({"sector": (base, live)}, min_samples=20)
    assert report.psi is not None
    assert report.psi > PSI_FLAG
    assert report.p_adjusted is not None
    assert report.p_adjusted > 0.05
    assert report.status == "ok"


def test_too_few_rows_is_insufficient_data_and_left_out_of_bh(baseline: dict[str, Any]) -> None:
    shift = math.sqrt(AGE_SHAPE) * AGE_SCALE
    features = live_from(baseline, rows(1000, 12, age_shift=shift))
    few = live_from(baseline, rows(50, 13, age_shift=shift))
    features["log_revenue"] = few["log_revenue"]
    features["age_years"] = few["age_years"]
    reports = assess(features)
    assert status_of(reports) == {
        "log_revenue": "insufficient data",
        "age_years": "insufficient data",
        "sector": "ok",
    }
    for r in reports[:2]:
        assert (r.psi, r.js_distance, r.test, r.p_value, r.p_adjusted) == (None,) * 5
    sector = reports[2]
    assert sector.p_adjusted == pytest.approx(sector.p_value)


def test_numeric_without_a_sample_falls_back_to_chi2_on_bins(baseline: dict[str, Any]) -> None:
    entry = baseline["age_years"]
    values = [row["age_years"] for row in rows(1000, 14, age_shift=4.0)]
    live = live_numeric(entry, values)
    live.sample = []
    report = feature_drift("age_years", entry, live, min_samples=100)
    assert report.test == "chi2"
    assert report.p_value is not None
    assert report.p_value < 1e-6
    assert report.p_adjusted is None


def test_as_json(baseline: dict[str, Any]) -> None:
    [report] = assess(live_from({"sector": baseline["sector"]}, rows(500, 15)))
    out = report.as_json()
    assert set(out) == {
        "feature", "kind", "n", "psi", "js_distance", "test",
        "statistic", "p_value", "p_adjusted", "status",
    }  # fmt: skip
    assert out["feature"] == "sector"
    assert out["test"] == "chi2"
    assert out["n"] == 500
    broken = FeatureDrift("x", "categorical", 9, math.inf, 0.1, "chi2", math.nan, 0.0, 0.0, "ok")
    assert broken.as_json()["psi"] is None
    assert broken.as_json()["statistic"] is None


def test_alpha_is_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        assess({}, alpha=1.5)
