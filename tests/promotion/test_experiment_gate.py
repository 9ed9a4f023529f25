"""The promotion gate reads an experiment's conclusion once its outcome window has closed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from common.core.errors import InvalidValuesError
from common.experiments.core import Experiment, ExperimentDesign, Experiments
from common.registry.records import MODELS
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built


def test_a_window_closed_unread_is_concluded_for_the_gate(stack: Stack) -> None:
    gate = {
        "criteria": [{"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0}],
        "require_experiment": True,
    }
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    stack.services.backends.documents.update(MODELS, "risk", {"gate": gate})
    now = ["2020-01-01T00:00:00.000000Z"]
    then = Experiments(stack.services.backends.documents, stack.registry, lambda: now[0])
    design = {
        "model_id": "risk",
        "variants": {"control": "1.0.0", "candidate": "1.1.0"},
        "split": {"control": 0.5, "candidate": 0.5},
        "metrics": [{"name": "first_day_return", "type": "continuous", "direction": "increase"}],
        "start": "2020-01-01T00:00:00Z",
        "end": "2020-01-31T00:00:00Z",
        "outcome_window_days": 7,
    }
    experiment = then.create(ExperimentDesign.model_validate(design), actor="t")
    rng = np.random.default_rng(9)
    for variant in ("control", "candidate"):
        for i in range(120):
            then.expose(experiment, f"{variant}-{i}", variant, f"{variant}-user-{i}")
            value = {"first_day_return": float(rng.normal(0.1, 0.2))}
            then.record_outcome(experiment, f"{variant}-{i}", value)
    # nobody reads the experiment after its window closes; the gate still finds it
    deployment = stack.lifecycle.promote("risk", "1.1.0", actor="t")
    evidence = [g for g in deployment.gate if g["criterion"] == "experiment"]
    assert evidence == [
        {"criterion": "experiment", "passed": True, "experiment_id": experiment.experiment_id}
    ]
    assert then.get(experiment.experiment_id).conclusions == {"1.1.0": "no_regression"}


START = "2020-01-01T00:00:00.000000Z"
GATE = {
    "criteria": [{"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0}],
    "require_experiment": True,
}


def concluded(stack: Stack, variants: dict[str, str], means: dict[str, float]) -> Experiment:
    """An experiment of ``variants`` whose window has closed, each arm's first-day return
    drawn around its mean for 120 users, as the gate finds it."""
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    stack.services.backends.documents.update(MODELS, "risk", {"gate": GATE})
    then = Experiments(stack.services.backends.documents, stack.registry, lambda: START)
    design: dict[str, Any] = {
        "model_id": "risk",
        "variants": variants,
        "split": {name: 1 / len(variants) for name in variants},
        "metrics": [{"name": "first_day_return", "type": "continuous", "direction": "increase"}],
        "start": "2020-01-01T00:00:00Z",
        "end": "2020-01-31T00:00:00Z",
        "outcome_window_days": 7,
    }
    experiment = then.create(ExperimentDesign.model_validate(design), actor="t")
    rng = np.random.default_rng(9)
    for variant in variants:
        for i in range(120):
            then.expose(experiment, f"{variant}-{i}", variant, f"{variant}-user-{i}")
            value = {"first_day_return": float(rng.normal(means[variant], 0.2))}
            then.record_outcome(experiment, f"{variant}-{i}", value)
    return experiment


def test_an_a_a_arm_is_no_evidence_for_its_version(stack: Stack) -> None:
    """1.1.0 against itself says nothing about 1.1.0 against anything else."""
    experiment = concluded(stack, {"control": "1.1.0", "b": "1.1.0"}, {"control": 0.1, "b": 0.1})
    with pytest.raises(InvalidValuesError) as refused:
        stack.lifecycle.promote("risk", "1.1.0", actor="t")
    assert [d["criterion"] for d in refused.value.details] == ["experiment"]
    after = Experiments(stack.services.backends.documents, stack.registry)
    assert after.get(experiment.experiment_id).conclusions == {}
    assert stack.registry.get_model("risk").production_version == "1.0.0"


def test_a_version_with_a_regressing_arm_concluded_a_regression(stack: Stack) -> None:
    """Two arms of 1.1.0, one measured worse than control: 1.1.0 regressed, whichever
    arm is read last, and the gate refuses it."""
    experiment = concluded(
        stack,
        {"control": "1.0.0", "b": "1.1.0", "c": "1.1.0"},
        {"control": 0.3, "b": 0.0, "c": 0.3},
    )
    with pytest.raises(InvalidValuesError) as refused:
        stack.lifecycle.promote("risk", "1.1.0", actor="t")
    assert [d["criterion"] for d in refused.value.details] == ["experiment"]
    after = Experiments(stack.services.backends.documents, stack.registry)
    assert after.get(experiment.experiment_id).conclusions == {"1.1.0": "regression"}
