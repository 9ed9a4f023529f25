"""Users as the unit: delta-method sums, their calibration on correlated outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp

from common.experiments.results import results
from common.experiments.sketch import ArmAggregate, Moments, UserSums
from common.experiments.stats import (
    Metric,
    Unit,
    delta_z_test,
    ratio_variance,
    sample_ratio_mismatch,
)


def sums_of(totals: np.ndarray, counts: np.ndarray) -> UserSums:
    return UserSums(
        users=int((counts > 0).sum()),
        sy=float(totals.sum()),
        sn=float(counts.sum()),
        syy=float((totals**2).sum()),
        snn=float((counts**2).sum()),
        syn=float((totals * counts).sum()),
    )


def test_outcome_deltas_in_any_shards_merge_to_the_user_level_sums() -> None:
    rng = np.random.default_rng(5)
    users = rng.integers(0, 40, 600)
    values = rng.normal(1.0, 2.0, 600)
    shards = [UserSums() for _ in range(7)]
    seen: dict[int, tuple[float, int]] = {}
    for user, value in zip(users.tolist(), values.tolist(), strict=True):
        y, n = seen.get(user, (0.0, 0))
        shards[int(rng.integers(7))].add(y, n, value)
        seen[user] = (y + value, n + 1)
    merged = UserSums()
    for shard in reversed(shards):
        merged.merge(UserSums.from_dict(shard.to_dict()))
    totals = np.array([seen[u][0] for u in sorted(seen)])
    counts = np.array([seen[u][1] for u in sorted(seen)], dtype=float)
    direct = sums_of(totals, counts)
    assert merged.users == direct.users == len(seen)
    for name in ("sy", "sn", "syy", "snn", "syn"):
        assert getattr(merged, name) == pytest.approx(getattr(direct, name), rel=1e-12)
    # the delta-method variance is the cluster-robust (CR1) variance of the mean
    ratio = totals.sum() / counts.sum()
    n = len(totals)
    cr1 = ((totals - ratio * counts) ** 2).sum() / counts.sum() ** 2 * n / (n - 1)
    assert ratio_variance(merged) == pytest.approx(cr1, rel=1e-9)


def test_one_outcome_per_user_is_welchs_statistic() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 1, 300), rng.normal(0.2, 1.5, 250)
    ones_a, ones_b = np.ones_like(a), np.ones_like(b)
    found = delta_z_test(sums_of(a, ones_a), sums_of(b, ones_b))
    welch = sp.ttest_ind(b, a, equal_var=False)
    assert found.statistic == pytest.approx(welch.statistic, rel=1e-9)
    assert found.p_value == pytest.approx(2 * sp.norm.sf(abs(welch.statistic)), rel=1e-9)


def _arm(
    rng: np.random.Generator, users: int, per_user: int, icc: float
) -> tuple[ArmAggregate, UserSums]:
    """Outcomes of ``users`` users with ``per_user`` each, intra-user correlation ``icc``."""
    effect = rng.normal(0.0, np.sqrt(icc), (users, 1))
    values = effect + rng.normal(0.0, np.sqrt(1.0 - icc), (users, per_user))
    flat = values.ravel()
    moments = Moments(
        count=flat.size, mean=float(flat.mean()), m2=float(((flat - flat.mean()) ** 2).sum())
    )
    totals, counts = values.sum(axis=1), np.full(users, float(per_user))
    return ArmAggregate(moments=moments), sums_of(totals, counts)


def test_correlated_outcomes_of_one_user_keep_the_aa_false_positive_rate() -> None:
    """5 requests per user, intra-user correlation 0.2: per-request analysis rejects a true
    null about 15% of the time at alpha 0.05; per-user analysis about 5%."""
    rng = np.random.default_rng(2024)
    runs, rejected = 600, {"user": 0, "request": 0}
    units: tuple[Unit, ...] = ("user", "request")
    for _ in range(runs):
        arms = {name: _arm(rng, 200, 5, 0.2) for name in ("control", "candidate")}
        for unit in units:
            metric = Metric(name="x", type="continuous", direction="increase", unit=unit)
            out = results(
                {k: {"x": v[0]} for k, v in arms.items()},
                [metric],
                {"control": 0.5, "candidate": 0.5},
                {"control": 200, "candidate": 200},
                users={k: {"x": v[1]} for k, v in arms.items()},
            )
            rejected[unit] += out["comparisons"]["candidate"]["x"]["p_value"] < 0.05
    assert rejected["user"] / runs == pytest.approx(0.05, abs=0.025)
    assert rejected["request"] / runs > 0.10


def test_the_split_check_on_users_does_not_alarm_on_repeat_use() -> None:
    """1 + Poisson(5) requests per user: counting requests alarms far above the 0.1% the
    threshold promises; counting users keeps it."""
    rng = np.random.default_rng(77)
    runs, alarms = 2000, {"user": 0, "request": 0}
    for _ in range(runs):
        arm = rng.random(2000) < 0.5
        requests = 1 + rng.poisson(5, 2000)
        users = {"control": int(arm.sum()), "b": int((~arm).sum())}
        per_request = {"control": int(requests[arm].sum()), "b": int(requests[~arm].sum())}
        for unit, counts in (("user", users), ("request", per_request)):
            alarms[unit] += sample_ratio_mismatch(counts, {"control": 0.5, "b": 0.5})["mismatch"]
    assert alarms["user"] / runs < 0.005
    assert alarms["request"] / runs > 0.1


def binary_arm(per_user: list[tuple[int, int]]) -> tuple[ArmAggregate, UserSums]:
    """(successes, outcomes) per user -> the arm's per-request aggregate and user sums."""
    arm, sums = ArmAggregate.binary(), UserSums()
    for successes, outcomes in per_user:
        y = 0.0
        for k in range(outcomes):
            value = 1.0 if k < successes else 0.0
            arm.add(value)
            sums.add(y, k, value)
            y += value
    return arm, sums


@pytest.mark.parametrize(
    "per_user",
    [
        [(3, 3)] * 6 + [(0, 3)],  # a high rate over few, clustered users
        [(0, 4)] * 8 + [(4, 4)],  # a low one
        [(2, 2)] * 12,  # every outcome a success
    ],
)
def test_per_arm_intervals_of_a_binary_metric_stay_within_0_and_1(
    per_user: list[tuple[int, int]],
) -> None:
    arm, sums = binary_arm(per_user)
    metric = Metric(name="hit", type="binary", direction="increase")
    found = results(
        {"control": {"hit": arm}, "b": {"hit": arm}},
        [metric],
        {"control": 0.5, "b": 0.5},
        {"control": len(per_user), "b": len(per_user)},
        users={"control": {"hit": sums}, "b": {"hit": sums}},
    )
    shown = found["comparisons"]["b"]["hit"]["control"]
    low, high, mean = shown["ci"]["low"], shown["ci"]["high"], shown["mean"]
    assert 0.0 <= low <= mean <= high <= 1.0
    assert low < high  # a sample, however unanimous, does not pin the rate down exactly
    assert shown["ci_method"] == "wilson_effective_n"


def test_a_binary_rate_far_from_0_and_1_keeps_its_delta_method_width() -> None:
    rng = np.random.default_rng(12)
    per_user = [(int(rng.binomial(3, 0.5)), 3) for _ in range(3000)]
    arm, sums = binary_arm(per_user)
    metric = Metric(name="hit", type="binary", direction="increase")
    found = results(
        {"control": {"hit": arm}, "b": {"hit": arm}},
        [metric],
        {"control": 0.5, "b": 0.5},
        {"control": 3000, "b": 3000},
        users={"control": {"hit": sums}, "b": {"hit": sums}},
    )
    shown = found["comparisons"]["b"]["hit"]["control"]["ci"]
    half = 1.959964 * ratio_variance(sums) ** 0.5
    assert shown["high"] - shown["low"] == pytest.approx(2 * half, rel=1e-3)


def test_below_the_minimum_sample_the_verdict_waits_whatever_ci_holm_says() -> None:
    metric = Metric(name="hit", type="binary", direction="increase")
    control, control_sums = binary_arm([(0, 2)] * 30 + [(1, 2)] * 2)
    variant, variant_sums = binary_arm([(2, 2)] * 30 + [(1, 2)] * 2)
    found = results(
        {"control": {"hit": control}, "b": {"hit": variant}},
        [metric],
        {"control": 0.5, "b": 0.5},
        {"control": 32, "b": 32},
        users={"control": {"hit": control_sums}, "b": {"hit": variant_sums}},
    )["comparisons"]["b"]["hit"]
    assert found["ci_holm"]["low"] > 0.0
    assert (found["verdict"], found["enough_data"], found["regression"]) == (
        "not enough data",
        False,
        False,
    )


def test_below_two_users_an_arm_the_comparison_is_null() -> None:
    metric = Metric(name="hit", type="binary", direction="increase")
    control, control_sums = binary_arm([(1, 2)])
    variant, variant_sums = binary_arm([(1, 1), (0, 1)])
    found = results(
        {"control": {"hit": control}, "b": {"hit": variant}},
        [metric],
        {"control": 0.5, "b": 0.5},
        {"control": 1, "b": 2},
        users={"control": {"hit": control_sums}, "b": {"hit": variant_sums}},
    )["comparisons"]["b"]["hit"]
    nulls = ("difference", "ci", "p_value", "statistic", "df", "lift", "always_valid_ci", "tau2")
    assert {k: found[k] for k in nulls} == dict.fromkeys(nulls)
    assert (found["p_value_adjusted"], found["ci_holm"], found["ci_holm_level"]) == (None,) * 3
    assert (found["control"]["mean"], found["control"]["std"], found["control"]["ci"]) == (
        0.5,
        pytest.approx(0.7071, abs=1e-4),
        None,
    )
    assert found["variant"]["ci"] is not None
