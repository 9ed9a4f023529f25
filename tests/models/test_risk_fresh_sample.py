"""The risk model's recorded metrics hold on companies drawn again as docs/models/risk.md
describes them: one draw per company for every input, and a fresh sample recorded beside
the test split."""

from __future__ import annotations

import numpy as np
import pytest

from common.models.risk import CLASSES, FEATURES, SECTORS, RiskRuntime
from tests.support.fixtures import SEED
from tools.training import risk_builder, synthetic
from tools.training.base import BuiltModel, fresh_seed

DEMO_SEED = 20261127  # scripts/train_models.py --seed default
DEMO_ROWS = 8000


@pytest.fixture(scope="module")
def demo() -> BuiltModel:
    (built,) = risk_builder.build(DEMO_SEED)
    return built


def test_every_input_varies_within_each_sector() -> None:
    data = synthetic.generate(2000, SEED)
    for index, sector in enumerate(SECTORS):
        rows = data.X[data.X[:, 0] == index]
        for column, name in enumerate(FEATURES[1:], start=1):
            distinct = len(np.unique(rows[:, column]))
            assert distinct > len(rows) // 2, f"{name} takes {distinct} values in {sector}"


def test_the_demo_version_records_a_fresh_sample_that_agrees(demo: BuiltModel) -> None:
    fresh = demo.metrics_fresh_sample
    assert (fresh["n"], fresh["seed"]) == (DEMO_ROWS, fresh_seed(DEMO_SEED))
    assert set(demo.metrics) - {"train_rows", "test_rows", "latency_p95_ms"} == set(fresh) - {
        "n",
        "seed",
    }
    assert abs(fresh["accuracy"] - demo.metrics["accuracy"]) <= 0.03
    assert abs(fresh["calibration_ece"] - demo.metrics["calibration_ece"]) <= 0.02
    assert demo.gate["max_fresh_sample_gap"] == {"accuracy": 0.03, "calibration_ece": 0.02}
    assert f"fresh sample of {DEMO_ROWS} companies" in demo.model_card["training_data"]


@pytest.mark.parametrize("seed", [7, 123456])
def test_the_served_artifact_holds_on_any_other_seed(demo: BuiltModel, seed: int) -> None:
    """Companies drawn with a seed the builder never saw, scored by the served artifact."""
    data = synthetic.generate(DEMO_ROWS, seed)
    proba = RiskRuntime.from_artifact(demo.artifact).probabilities(data.X)
    classes = np.array(CLASSES)
    predicted = classes[proba.argmax(axis=1)]
    accuracy = float(np.mean(predicted == data.y))
    ece = risk_builder.calibration(proba, predicted, data.y, classes)["calibration_ece"]
    assert abs(accuracy - demo.metrics["accuracy"]) <= 0.03
    assert abs(ece - demo.metrics["calibration_ece"]) <= 0.02


def test_data_from_a_file_has_no_fresh_sample_and_declares_no_gate() -> None:
    built = risk_builder.train(synthetic.generate(600, SEED), seed=SEED)
    assert built.metrics_fresh_sample == {}
    assert built.gate == {}
