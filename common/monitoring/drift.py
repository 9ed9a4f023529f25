"""Statistics of data drift: live feature distributions against a version's baseline.

Every registered version carries a drift baseline (tools/training/base.py
``drift_baseline``): decile-edged histograms for numeric features, category shares for
categorical ones. Serving accumulates a :class:`LiveFeature` per feature over the same
bins; this module compares the two. Pure functions, no I/O.

Per feature it reports two kinds of number:

* size of the shift: the population stability index (PSI) and the Jensen-Shannon
  distance over the aligned bins;
* evidence of a shift: a one-sample Kolmogorov-Smirnov test of the live reservoir sample
  against the baseline CDF (numeric), or a chi-square goodness-of-fit test of the live
  counts against the baseline shares (categorical, and numeric features without a
  sample). The p-values are Benjamini-Hochberg adjusted across the features of a model,
  because checking twenty features at alpha = 0.05 would otherwise raise a false alarm
  most days.

The drift rule: a feature is flagged ``"drift"`` only when it is BOTH statistically
significant (BH-adjusted p < alpha) AND practically large (PSI > PSI_FLAG = 0.1). With
thousands of rows, shifts far too small to matter are "significant", so a test alone
would alert on noise in the data pipeline; with few rows, PSI alone is noisy (its
expectation under no drift is about (bins - 1) / n), so PSI alone would alert on chance.
Requiring both keeps the alert for shifts that are real and big enough to act on. The
PSI gate matters also because the p-values treat the baseline as exact and its CDF as
linear within each decile: from several hundred live values on, those approximations
alone make a stable feature look "significant" (KS on a 500-value reservoir against a
2,000-row baseline: p < 0.05 in 12-44% of drift-free windows).
Features with fewer than ``min_samples`` live rows are ``"insufficient data"``: no PSI or
test is computed, they take no part in the BH adjustment, and they are never flagged.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

MIN_SAMPLES_DEFAULT = 100
PSI_FLAG = 0.1
"""PSI above which a shift is large enough to act on (the reference design's alert)."""
EPSILON = 1e-4
"""Share given to empty bins so that PSI and chi-square stay finite."""

Status = Literal["ok", "drift", "insufficient data"]


@dataclass
class LiveFeature:
    """What serving accumulated for one feature since the window opened.

    Numeric ``counts`` has ``len(edges) + 1`` bins: below ``edges[0]``, the baseline bins,
    above ``edges[-1]`` (see :func:`bin_index`). Categorical ``categories`` counts rows
    per category, unseen categories included.
    """

    kind: Literal["numeric", "categorical"]
    counts: list[int] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    sample: list[float] = field(default_factory=list)
    n: int = 0


def _scipy_stats() -> Any:
    """scipy.stats, imported when first needed: it costs start-up time."""
    from scipy import stats  # type: ignore[import-untyped]

    return stats


def bin_index(edges: Sequence[float], value: float) -> int:
    """Index into ``LiveFeature.counts``: the numpy.histogram rule plus two outer bins.

    Bin i (1 <= i <= len(edges) - 1) is [edges[i-1], edges[i]); the last baseline bin is
    closed on the right so the baseline maximum lands inside, as in the baseline itself.
    """
    if math.isnan(value):
        raise ValueError("cannot bin NaN")
    if value < edges[0]:
        return 0
    if value > edges[-1]:
        return len(edges)
    if value == edges[-1]:
        return len(edges) - 1
    return bisect.bisect_right(edges, value)


def expected_shares(
    baseline: Mapping[str, Any], live: LiveFeature
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and live shares over the same bins, baseline 0 where it saw nothing."""
    kind = baseline.get("type")
    if kind != live.kind:
        raise ValueError(f"baseline is {kind!r} but live data is {live.kind!r}")
    n = max(live.n, 0)
    if kind == "numeric":
        proportions = [float(p) for p in baseline["proportions"]]
        if len(live.counts) != len(proportions) + 2:
            raise ValueError(
                f"live counts have {len(live.counts)} bins, baseline needs {len(proportions) + 2}"
            )
        expected = np.array([0.0, *proportions, 0.0])
        counts = np.asarray(live.counts, dtype=float)
    elif kind == "categorical":
        frequencies: Mapping[str, float] = baseline["frequencies"]
        known = sorted(frequencies)
        unseen = sorted(set(live.categories) - set(frequencies))
        expected = np.array([float(frequencies[c]) for c in known] + [0.0] * len(unseen))
        counts = np.array([float(live.categories.get(c, 0)) for c in [*known, *unseen]])
    else:
        raise ValueError(f"unknown baseline type {kind!r}")
    actual = counts / n if n > 0 else np.zeros_like(counts)
    return expected, actual


def _shares(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0.0):
        raise ValueError(f"{name} must be a 1-d vector of finite non-negative numbers")
    total = values.sum()
    if total <= 0.0:
        raise ValueError(f"{name} has no mass")
    return np.asarray(values / total, dtype=float)


def _aligned(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e, a = _shares(expected, "expected"), _shares(actual, "actual")
    if e.shape != a.shape:
        raise ValueError(f"vectors are not aligned: {e.shape} vs {a.shape}")
    return e, a


def _smoothed(shares: np.ndarray, epsilon: float) -> np.ndarray:
    """Zeros replaced by epsilon and renormalised: an empty bin would make logs infinite."""
    smoothed = np.where(shares > 0.0, shares, epsilon)
    return np.asarray(smoothed / smoothed.sum(), dtype=float)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index ``sum((a - e) ln(a / e))`` of two aligned histograms.

    Inputs may be counts or shares; both are normalised first.
    """
    e, a = _aligned(expected, actual)
    e, a = _smoothed(e, epsilon), _smoothed(a, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2: symmetric, finite with empty bins, in [0, 1]."""
    p, q = _aligned(expected, actual)
    m = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        mask = x > 0.0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return math.sqrt(max((kl(p) + kl(q)) / 2.0, 0.0))


def baseline_cdf(baseline: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline CDF, linear within each decile bin: all the histogram can tell.

    0 below ``edges[0]``, 1 above ``edges[-1]``.
    """
    edges = np.asarray(baseline["edges"], dtype=float)
    proportions = _shares(np.asarray(baseline["proportions"], dtype=float), "proportions")
    if len(edges) != len(proportions) + 1 or np.any(np.diff(edges) < 0.0):
        raise ValueError("baseline edges must be sorted, one more than the proportions")
    cumulative = np.concatenate([[0.0], np.cumsum(proportions)])
    cumulative[-1] = 1.0

    def cdf(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(np.asarray(x, dtype=float), edges, cumulative), dtype=float)

    return cdf


def ks_against_baseline(
    baseline: Mapping[str, Any], sample: Sequence[float]
) -> tuple[float, float]:
    """One-sample two-sided KS test of the live sample against :func:`baseline_cdf`.

    The statistic is the largest gap between the sample's ECDF (both sides of each step)
    and the CDF; the p-value is the exact finite-n distribution, as scipy's ``kstest``.
    """
    x = np.sort(np.asarray(sample, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("the KS test needs a non-empty sample")
    cdf = baseline_cdf(baseline)(x)
    steps = np.arange(1.0, n + 1.0) / n
    stat = float(max(np.max(steps - cdf), np.max(cdf - (steps - 1.0 / n))))
    p = float(_scipy_stats().kstwo.sf(stat, n))
    return stat, min(max(p, 0.0), 1.0)


def chi2_against_baseline(expected: np.ndarray, live_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square goodness of fit of live counts to baseline shares.

    Bins the baseline never saw get share EPSILON: a category that is new in production
    is strong evidence of drift, not a division by zero.
    """
    counts = np.asarray(live_counts, dtype=float)
    shares = _smoothed(_shares(expected, "expected"), EPSILON)
    if counts.shape != shares.shape:
        raise ValueError(f"vectors are not aligned: {shares.shape} vs {counts.shape}")
    total = counts.sum()
    if total <= 0.0:
        raise ValueError("the chi-square test needs counts")
    result = _scipy_stats().chisquare(counts, shares * total)
    return float(result.statistic), float(result.pvalue)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in the input order.

    The i-th smallest p is multiplied by m / i, made non-decreasing in rank from the top
    and capped at 1, so ``adjusted < alpha`` controls the false discovery rate at alpha.
    """
    if any(not math.isfinite(p) for p in p_values):
        raise ValueError("Benjamini-Hochberg needs finite p-values; leave untested features out")
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, i in enumerate(order):
        rank = m - position
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class FeatureDrift:
    """The drift report of one feature; None where nothing was (or could be) computed."""

    feature: str
    kind: str
    n: int
    psi: float | None
    js_distance: float | None
    test: str | None
    """``"ks"`` or ``"chi2"``."""
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    status: Status

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite numbers (a chi-square can overflow) become None."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


def feature_drift(
    name: str, baseline: Mapping[str, Any], live: LiveFeature, *, min_samples: int
) -> FeatureDrift:
    """PSI, JS distance and the unadjusted test of one feature; status not final yet."""
    if live.n < min_samples:
        return FeatureDrift(
            name, live.kind, live.n, None, None, None, None, None, None, "insufficient data"
        )
    expected, actual = expected_shares(baseline, live)
    test: str | None = None
    stat: float | None = None
    p: float | None = None
    if live.kind == "numeric" and live.sample:
        test = "ks"
        stat, p = ks_against_baseline(baseline, live.sample)
    else:
        counts = np.asarray(live.counts, dtype=float) if live.kind == "numeric" else actual * live.n
        if counts.sum() > 0.0:
            test = "chi2"
            stat, p = chi2_against_baseline(expected, counts)
    if p is not None and not math.isfinite(p):  # a one-category feature: no test exists
        test, stat, p = None, None, None
    if actual.sum() <= 0.0:
        return FeatureDrift(name, live.kind, live.n, None, None, test, stat, p, None, "ok")
    size = psi(expected, actual), js_distance(expected, actual)
    return FeatureDrift(name, live.kind, live.n, *size, test, stat, p, None, "ok")


def assess(
    features: Mapping[str, tuple[Mapping[str, Any], LiveFeature]],
    *,
    min_samples: int = MIN_SAMPLES_DEFAULT,
    alpha: float = 0.05,
) -> list[FeatureDrift]:
    """Drift reports of a model's features, in the given order, with the module's rule.

    BH runs across the features that were tested; "drift" needs p_adjusted < alpha AND
    PSI > PSI_FLAG.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    reports = [
        feature_drift(name, baseline, live, min_samples=min_samples)
        for name, (baseline, live) in features.items()
    ]
    tested = [i for i, r in enumerate(reports) if r.p_value is not None]
    adjusted = benjamini_hochberg([float(reports[i].p_value or 0.0) for i in tested])
    out = list(reports)
    for i, p_adj in zip(tested, adjusted, strict=True):
        r = reports[i]
        drifted = p_adj < alpha and r.psi is not None and r.psi > PSI_FLAG
        out[i] = replace(r, p_adjusted=p_adj, status="drift" if drifted else "ok")
    return out
