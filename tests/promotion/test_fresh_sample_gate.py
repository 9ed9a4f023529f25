"""The gate's ``max_fresh_sample_gap``: a version whose test-split metrics do not hold on a
fresh sample is refused, with both numbers in the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.core.errors import InvalidValuesError
from common.promotion.gate import CLASSIFIER_DEFAULTS, GateSpec, evaluate
from common.promotion.lifecycle import Lifecycle
from tests.support.fixtures import Stack, embedded_stack, trained_risk
from tools.training.base import BuiltModel, register_built

GAP = {"accuracy": 0.03, "calibration_ece": 0.02}
GATE = CLASSIFIER_DEFAULTS.model_copy(update={"max_fresh_sample_gap": GAP}).model_dump(mode="json")


@pytest.fixture
def life(tmp_path: Path) -> Iterator[Lifecycle]:
    stack: Stack = embedded_stack(tmp_path)
    try:
        yield stack.lifecycle
    finally:
        stack.services.close()


def with_fresh_sample(**shift: float) -> BuiltModel:
    """The session's risk model, its fresh sample its own metrics moved by ``shift``."""
    built = trained_risk()
    fresh = {k: built.metrics[k] + shift.get(k, 0.0) for k in ("accuracy", "calibration_ece")}
    return BuiltModel(
        **{
            **built.__dict__,
            "gate": GATE,
            "metrics_fresh_sample": {**fresh, "n": 1500, "seed": 1000010},
        }
    )


def promote(life: Lifecycle, built: BuiltModel) -> None:
    register_built(life, built, version="1.0.0", created_by="t", promote=False)
    life.set_stage("risk", "1.0.0", "staging")
    life.promote("risk", "1.0.0", actor="t")


def test_the_version_records_its_fresh_sample(life: Lifecycle) -> None:
    built = with_fresh_sample(accuracy=-0.01)
    register_built(life, built, version="1.0.0", created_by="t", promote=False)
    record = life.registry.get_version("risk", "1.0.0")
    assert record.metrics_fresh_sample == built.metrics_fresh_sample
    assert (record.metrics_fresh_sample["n"], record.metrics_fresh_sample["seed"]) == (
        1500,
        1000010,
    )


def test_metrics_that_agree_pass(life: Lifecycle) -> None:
    promote(life, with_fresh_sample(accuracy=-0.029, calibration_ece=0.019))
    assert life.registry.get_model("risk").production_version == "1.0.0"
    (deployment,) = life.history("risk")
    gaps = [r for r in deployment.gate if r["criterion"].startswith("fresh_sample_gap.")]
    assert [(r["criterion"], r["passed"]) for r in gaps] == [
        ("fresh_sample_gap.accuracy", True),
        ("fresh_sample_gap.calibration_ece", True),
    ]


def test_a_gap_beyond_its_tolerance_is_refused_with_both_numbers(life: Lifecycle) -> None:
    built = with_fresh_sample(accuracy=-0.05)
    with pytest.raises(InvalidValuesError) as caught:
        promote(life, built)
    assert "fresh_sample_gap.accuracy" in caught.value.message
    (failed,) = caught.value.details
    recorded = built.metrics["accuracy"]
    assert failed["criterion"] == "fresh_sample_gap.accuracy"
    assert (failed["op"], failed["threshold"], failed["passed"]) == ("<=", 0.03, False)
    assert failed["value"] == pytest.approx(0.05)
    assert failed["message"] == (
        f"accuracy is {recorded:g} on the test split but {recorded - 0.05:g} on a fresh "
        "sample (n=1500, seed=1000010): a gap of 0.05, more than 0.03"
    )
    assert life.registry.get_model("risk").production_version is None


def test_no_fresh_sample_is_no_pass(life: Lifecycle) -> None:
    built = BuiltModel(**{**trained_risk().__dict__, "gate": GATE})
    with pytest.raises(InvalidValuesError) as caught:
        promote(life, built)
    assert [(f["criterion"], f["message"]) for f in caught.value.details] == [
        ("fresh_sample_gap.accuracy", "accuracy not recorded on a fresh sample"),
        ("fresh_sample_gap.calibration_ece", "calibration_ece not recorded on a fresh sample"),
    ]


def test_a_metric_missing_from_the_split_fails_too() -> None:
    spec = GateSpec.model_validate(GATE)
    results = evaluate(spec, {"accuracy": 0.9}, {"accuracy": 0.9, "calibration_ece": 0.01})
    by_name = {r["criterion"]: r for r in results}
    assert by_name["fresh_sample_gap.accuracy"]["passed"] is True
    assert by_name["fresh_sample_gap.calibration_ece"]["message"] == (
        "calibration_ece not recorded on the test split"
    )


@pytest.mark.parametrize("tolerance", [-0.01, float("nan"), float("inf")])
def test_a_tolerance_must_be_a_finite_number_at_least_zero(tolerance: float) -> None:
    with pytest.raises(ValidationError):
        GateSpec.model_validate({**GATE, "max_fresh_sample_gap": {"accuracy": tolerance}})


@pytest.mark.parametrize(
    ("shift", "refused"), [(-0.01, []), (-0.05, ["fresh_sample_gap.accuracy"])]
)
def test_an_experiment_arm_is_held_to_the_same_gap(
    life: Lifecycle, shift: float, refused: list[str]
) -> None:
    built = with_fresh_sample(accuracy=shift)
    register_built(life, built, version="1.0.0", created_by="t", promote=False)
    candidate = life.set_stage("risk", "1.0.0", "staging")
    assert [r["criterion"] for r in life.serving_problems(candidate)] == refused
