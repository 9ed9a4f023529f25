"""Moments and the quantile sketch: exact against numpy, and independent of merge order."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from common.experiments.sketch import ArmAggregate, Moments, QuantileSketch


def _moments(values: np.ndarray) -> Moments:
    m = Moments()
    for x in values:
        m.add(float(x))
    return m


def _sketch(values: np.ndarray, **kwargs: float) -> QuantileSketch:
    s = QuantileSketch(**kwargs)  # type: ignore[arg-type]
    for x in values:
        s.add(float(x))
    return s


def test_moments_match_numpy() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, 5000)
    m = _moments(x)
    assert m.count == 5000
    assert m.mean == pytest.approx(x.mean(), abs=1e-12)
    assert m.variance == pytest.approx(x.var(ddof=1), rel=1e-12)


def test_moments_are_stable_with_a_large_offset() -> None:
    """A mean of 1e9 next to a spread of 1 is where sum-of-squares formulas give garbage."""
    x = 1e9 + np.random.default_rng(2).normal(0.0, 1.0, 10_000)
    m = _moments(x)
    assert m.variance == pytest.approx(np.var(x - 1e9, ddof=1), rel=1e-6)


def test_moments_merge_in_any_order() -> None:
    x = np.random.default_rng(3).lognormal(0.0, 1.0, 3000)
    shards = [_moments(part) for part in np.array_split(x, 5)]
    for order in itertools.permutations(range(5)):
        merged = Moments()
        for i in order:
            merged.merge(Moments.from_dict(shards[i].to_dict()))
        assert merged.count == 3000
        assert merged.mean == pytest.approx(x.mean(), abs=1e-9)
        assert merged.variance == pytest.approx(x.var(ddof=1), abs=1e-9)


def test_moments_variance_undefined_below_two_values() -> None:
    m = Moments()
    m.add(1.0)
    assert np.isnan(m.variance)
    with pytest.raises(ValueError, match="finite"):
        m.add(float("nan"))


@pytest.mark.parametrize("alpha", [0.01, 0.02])
def test_sketch_quantiles_within_relative_error(alpha: float) -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.lognormal(0.0, 2.0, 4000), -rng.exponential(5.0, 1000), np.zeros(200)])
    s = _sketch(x, alpha=alpha)
    assert s.count == x.size
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0):
        exact = float(np.quantile(x, q, method="lower"))
        assert abs(s.quantile(q) - exact) <= alpha * abs(exact) * (1 + 1e-9), q


def test_sketch_merge_in_any_order_and_round_trips_through_json() -> None:
    x = np.random.default_rng(5).normal(0.0, 10.0, 2000)
    shards = [_sketch(part) for part in np.array_split(x, 4)]
    whole = _sketch(x).to_dict()
    for order in itertools.permutations(range(4)):
        merged = QuantileSketch()
        for i in order:
            merged.merge(QuantileSketch.from_dict(json.loads(json.dumps(shards[i].to_dict()))))
        assert merged.to_dict() == whole


def test_sketch_folds_lowest_bins_and_keeps_the_tail() -> None:
    x = np.random.default_rng(6).lognormal(0.0, 3.0, 3000)
    s = _sketch(x, max_bins=350)
    assert len(s.positive) <= 350
    assert s.count == 3000
    assert abs(s.quantile(0.0) - x.min()) > 0.01 * x.min()  # the smallest values were folded
    for q in (0.95, 0.99):
        exact = float(np.quantile(x, q, method="lower"))
        assert abs(s.quantile(q) - exact) <= 0.01 * exact * (1 + 1e-9)
    # Folding is order-independent too.
    parts = [_sketch(p, max_bins=350) for p in np.array_split(x, 3)]
    a, b = QuantileSketch(max_bins=350), QuantileSketch(max_bins=350)
    for p in parts:
        a.merge(p)
    for p in reversed(parts):
        b.merge(p)
    assert a.to_dict() == b.to_dict() == s.to_dict()


def test_sketch_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        QuantileSketch().quantile(0.5)
    with pytest.raises(ValueError, match="different"):
        QuantileSketch().merge(QuantileSketch(alpha=0.02))
    with pytest.raises(ValueError, match="alpha"):
        QuantileSketch(alpha=1.5)


def test_aggregate_serialises_without_nested_arrays() -> None:
    agg = ArmAggregate.continuous()
    for x in (1.5, -2.0, 0.0):
        agg.add(x)
    data = json.loads(json.dumps(agg.to_dict()))

    def no_lists(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and no_lists(v) for k, v in value.items())
        return isinstance(value, int | float)

    assert no_lists(data)
    assert ArmAggregate.from_dict(data).to_dict() == agg.to_dict()
    binary = ArmAggregate.binary()
    with pytest.raises(ValueError, match="0 or 1"):
        binary.add(0.5)
    with pytest.raises(ValueError, match="binary"):
        binary.merge(agg)
