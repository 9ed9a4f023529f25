"""The promotion gate reads an experiment's conclusion once its outcome window has closed."""

from __future__ import annotations

import numpy as np

from common.experiments.core import ExperimentDesign, Experiments
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
