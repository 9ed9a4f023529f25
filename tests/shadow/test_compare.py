"""The shadow comparison's numbers, on pairs whose answers are known by hand."""

from __future__ import annotations

import pytest

from common.shadow.compare import Row, compare, leaves


def rows() -> list[Row]:
    production = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    candidate = [1.1, 2.2, 3.3, 4.4, 5.0, 6.0]
    labels = [("a", "a"), ("b", "a"), ("a", "a"), ("b", "b"), ("a", "a"), ("b", "b")]
    sectors = ["energy", "energy", "energy", "energy", "energy", "finance"]
    return [
        Row(
            {"sector": s},
            {"score": p, "class": lp, "detail": {"p": p}, "list": [1]},
            {"score": c, "class": lc, "detail": {"p": c}, "list": [2]},
        )
        for p, c, (lp, lc), s in zip(production, candidate, labels, sectors, strict=True)
    ]


def test_leaves_are_dotted_scalars_without_lists() -> None:
    assert leaves({"a": 1, "b": {"c": "x", "d": [1]}, "e": True}) == {"a": 1, "b.c": "x", "e": True}


def test_numeric_and_class_outputs_by_hand() -> None:
    found = compare(rows(), tolerance=0.05)
    score = found["outputs"]["score"]
    assert score["n"] == 6
    assert score["mean_rel_diff"] == pytest.approx(0.4 / 6, abs=1e-6)
    assert score["mean_abs_rel_diff"] == pytest.approx(0.4 / 6, abs=1e-6)
    low, high = score["mean_abs_rel_diff_ci95"]
    assert low < 0.4 / 6 < high
    assert score["rank_correlation"] == pytest.approx(1.0)
    assert score["within_tolerance"] == pytest.approx(2 / 6, abs=1e-6)
    assert found["outputs"]["detail.p"]["mean_abs_rel_diff"] == pytest.approx(0.4 / 6, abs=1e-6)
    assert "list" not in found["outputs"]
    labels = found["outputs"]["class"]
    assert labels["agreement"] == pytest.approx(5 / 6, abs=1e-6)
    assert labels["confusion"] == {"a": {"a": 3}, "b": {"a": 1, "b": 2}}
    low, high = labels["agreement_ci95"]
    assert 0 < low < 5 / 6 < high <= 1
    assert found["summary"] == {
        "n": 6,
        "max_mean_abs_rel_diff": pytest.approx(0.4 / 6, abs=1e-6),
        "min_agreement": pytest.approx(5 / 6, abs=1e-6),
    }


def test_a_segment_needs_enough_rows_and_the_most_different_comes_first() -> None:
    found = compare(rows())
    assert [(s["field"], s["value"], s["n"]) for s in found["segments"]] == [
        ("sector", "energy", 5)
    ]  # finance has one row: too few to rank


def test_candidate_errors_count_against_it_and_leave_the_comparison() -> None:
    broken = [*rows(), Row({}, {"score": 1.0}, None, {"code": "invalid_values"})]
    found = compare(broken)
    assert (found["rows"], found["n"], found["candidate_errors"]) == (7, 6, 1)
    assert found["candidate_error_rate"] == pytest.approx(1 / 7, abs=1e-6)


def test_identical_answers_agree_fully() -> None:
    same = [Row({}, {"score": 2.0, "c": "x"}, {"score": 2.0, "c": "x"}) for _ in range(4)]
    found = compare(same)
    assert found["summary"]["max_mean_abs_rel_diff"] == 0.0
    assert found["summary"]["min_agreement"] == 1.0
    assert found["outputs"]["score"]["rank_correlation"] is None  # constant: undefined
