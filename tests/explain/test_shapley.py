"""The attribution engine on functions whose Shapley values are known by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from common.core.errors import InvalidValuesError
from common.explain.engine import explain
from common.explain.features import MAX_PASSAGES, field_coalitions, sentence_coalitions, sentences
from common.explain.shapley import Coalitions, sampled_shapley
from common.models.cca import CcaRuntime
from tools.training.cca_builder import build as build_cca

NAMES = ("a", "b", "c", "unused")


def mixer(instance: dict[str, float], baseline: dict[str, float]) -> Coalitions:
    return field_coalitions(instance, baseline, NAMES)


class Counting:
    """f = 2a + 3bc, blind to ``unused``; counts its calls and rows."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0

    def __call__(self, rows: list[Any]) -> np.ndarray:
        self.calls += 1
        self.rows += len(rows)
        return np.array([[2 * r["a"] + 3 * r["b"] * r["c"]] for r in rows])


ZERO = {"a": 0.0, "b": 0.0, "c": 0.0, "unused": 0.0}


def test_sampled_shapley_matches_the_known_values_and_adds_up() -> None:
    instance = {"a": 1.0, "b": 2.0, "c": 3.0, "unused": 5.0}
    [[found]] = sampled_shapley(Counting(), [mixer(instance, ZERO)], ["f"], paths=200, seed=3)
    values = found.feature_attributions
    # a is additive: exact on every path; b and c share the interaction 3bc = 18 equally
    assert values["a"] == pytest.approx(2.0, abs=1e-12)
    assert values["b"] + values["c"] == pytest.approx(18.0, abs=1e-12)
    assert values["b"] == pytest.approx(9.0, abs=4 * found.approximation_error)
    assert values["unused"] == 0.0
    assert (found.baseline_output_value, found.instance_output_value) == (0.0, 20.0)
    total = found.baseline_output_value + sum(values.values())
    assert abs(total - found.instance_output_value) <= found.approximation_error + 1e-12
    assert abs(total - found.instance_output_value) <= 1e-12  # efficient on every path


def test_same_request_same_numbers_and_the_seed_moves_them() -> None:
    instance = {"a": 1.0, "b": 2.0, "c": 3.0, "unused": 5.0}

    def run(seed: int) -> dict[str, float]:
        [[found]] = sampled_shapley(Counting(), [mixer(instance, ZERO)], ["f"], paths=5, seed=seed)
        return found.feature_attributions

    assert run(11) == run(11)
    assert any(run(11) != run(seed) for seed in range(12, 20))


def test_a_batch_is_one_evaluation_and_each_instance_its_own() -> None:
    rows = [{"a": float(i), "b": 1.0 + i, "c": 2.0, "unused": 1.0} for i in range(6)]
    counting = Counting()
    batch = sampled_shapley(counting, [mixer(r, ZERO) for r in rows], ["f"], paths=8, seed=1)
    assert counting.calls == 1
    # identical coalitions are evaluated once: at most 2^4 distinct mixes per instance
    assert counting.rows <= 6 * 16
    alone = sampled_shapley(Counting(), [mixer(rows[4], ZERO)], ["f"], paths=8, seed=1)
    assert batch[4] == alone[0]


def test_a_feature_equal_to_the_baseline_gets_exactly_zero() -> None:
    instance = {"a": 1.0, "b": 0.0, "c": 3.0, "unused": 0.0}
    [[found]] = sampled_shapley(Counting(), [mixer(instance, ZERO)], ["f"], paths=4, seed=0)
    assert found.feature_attributions == {"a": 2.0, "b": 0.0, "c": 0.0, "unused": 0.0}


def test_fewer_than_two_paths_is_refused() -> None:
    with pytest.raises(ValueError, match="two paths"):
        sampled_shapley(Counting(), [mixer(ZERO, ZERO)], ["f"], paths=1, seed=0)


def test_sentences_rebuild_the_text() -> None:
    text = "Revenue rose. Losses widened; the outlook is uncertain!  No fraud"
    parts = sentences(text)
    assert parts == [
        "Revenue rose. ",
        "Losses widened; ",
        "the outlook is uncertain!  ",
        "No fraud",
    ]
    assert "".join(parts) == text


@pytest.fixture(scope="module")
def cca() -> tuple[CcaRuntime, list[dict[str, Any]]]:
    built = build_cca(7)[0]
    return CcaRuntime.from_artifact(built.artifact), [g["instance"] for g in built.golden_set]


def test_a_version_without_a_baseline_asks_for_one(cca: tuple[CcaRuntime, Any]) -> None:
    runtime, rows = cca
    with pytest.raises(InvalidValuesError, match=r"parameters\.explanation\.baseline"):
        explain(runtime, rows[:1], None)


def test_a_baseline_that_is_not_an_instance_is_a_422_naming_its_field(
    cca: tuple[CcaRuntime, Any],
) -> None:
    runtime, rows = cca
    with pytest.raises(InvalidValuesError) as caught:
        explain(runtime, rows[:1], {**rows[1], "sector": "mining"})
    assert caught.value.details[0]["field"] == "parameters.explanation.baseline.sector"


def test_a_long_text_is_explained_over_runs_of_sentences() -> None:
    text = "".join(f"Sentence {i} rose. " for i in range(70))
    coalitions, values = sentence_coalitions(text)
    assert len(coalitions.names) == MAX_PASSAGES
    assert coalitions.names[:2] == ("sentences_1-3", "sentences_4-6")
    assert "".join(values.values()) == text
    assert coalitions.compose(np.ones(MAX_PASSAGES, dtype=bool)) == text


def test_a_features_order_is_the_schemas_not_the_clients() -> None:
    instance = {"c": 3.0, "unused": 5.0, "a": 1.0, "b": 2.0}
    [[found]] = sampled_shapley(Counting(), [mixer(instance, ZERO)], ["f"], paths=5, seed=2)
    in_order = {name: instance[name] for name in NAMES}
    [[same]] = sampled_shapley(Counting(), [mixer(in_order, ZERO)], ["f"], paths=5, seed=2)
    assert list(found.feature_attributions) == list(NAMES)
    assert found == same


def test_every_kind_has_an_explanation_plan() -> None:
    from common.explain.engine import NEEDS_BASELINE, PLANS
    from common.models import kinds

    assert set(PLANS) == set(kinds())
    assert set(NEEDS_BASELINE) <= set(kinds())


class SquaredPipeline:
    """A risk estimator that is not linear in its inputs: scikit-learn's interface only."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = np.column_stack([np.zeros(len(X)), X[:, 3] ** 2, X[:, 7] * X[:, 8] / 100])
        exps = np.exp(logits - logits.max(axis=1, keepdims=True))
        result: np.ndarray = exps / exps.sum(axis=1, keepdims=True)
        return result


def test_a_risk_pipeline_without_linear_numbers_is_explained_by_sampling() -> None:
    from common.models.risk import CLASSES, RiskRuntime

    runtime = RiskRuntime(CLASSES, None, pipeline=SquaredPipeline())
    baseline = {
        "sector": "retail",
        "revenue_musd": 100.0,
        "revenue_growth": 0.1,
        "operating_margin": 0.1,
        "debt_to_equity": 1.0,
        "company_age_years": 10.0,
        "offering_size_musd": 50.0,
        "underwriter_rank": 5.0,
        "market_volatility": 20.0,
        "insider_ownership": 0.3,
    }
    instance = {**baseline, "operating_margin": 0.5, "underwriter_rank": 8.0, "sector": "finance"}
    found = explain(runtime, [instance], baseline, paths=10, seed=4)
    assert found.method == "sampled_shapley"
    for attribution in found.attributions[0]:
        values = attribution.feature_attributions
        total = attribution.baseline_output_value + sum(values.values())
        assert abs(total - attribution.instance_output_value) <= attribution.approximation_error
        # the estimator ignores the sector and reads only these three inputs
        assert {k for k, v in values.items() if v != 0} <= {
            "operating_margin",
            "underwriter_rank",
            "market_volatility",
        }
        assert values["sector"] == 0.0
    high = found.attributions[0][2]
    logits = [0.0, 0.25, 8.0 * 20.0 / 100]
    expected = logits[2] - sum(logits) / 3
    assert high.instance_output_value == pytest.approx(expected, abs=1e-12)
