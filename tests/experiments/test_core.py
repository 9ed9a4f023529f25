"""Experiments: assignment, idempotent delayed outcomes, sharded aggregates, results."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats as sp

from common.backends.base import EXPIRE_AT
from common.core.errors import ConflictError, InvalidValuesError, NotFoundError
from common.experiments.core import (
    ASSIGNMENTS,
    EXPERIMENTS,
    Experiment,
    ExperimentDesign,
    Experiments,
)
from common.experiments.stats import Metric
from tests.support.fixtures import Stack, register_risk

METRICS = [
    {"name": "first_day_return", "type": "continuous", "direction": "increase"},
    {"name": "priced_in_range", "type": "binary", "direction": "increase"},
]


@pytest.fixture
def stack(any_stack: Stack) -> Stack:
    """Risk 1.0.0 in production and 1.1.0 registered, on every document store."""
    register_risk(any_stack.lifecycle, "1.0.0")
    register_risk(any_stack.lifecycle, "1.1.0", promote=False)
    any_stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    return any_stack


def experiments(stack: Stack) -> Experiments:
    return Experiments(stack.services.backends.documents, stack.registry)


def design(**changes: Any) -> ExperimentDesign:
    body: dict[str, Any] = {
        "model_id": "risk",
        "variants": {"control": "1.0.0", "candidate": "1.1.0"},
        "split": {"control": 0.5, "candidate": 0.5},
        "metrics": METRICS,
        **changes,
    }
    return ExperimentDesign.model_validate(body)


def sketch_of(split: dict[str, float]) -> Experiment:
    return Experiment(
        experiment_id="e1",
        model_id="m",
        variants=dict.fromkeys(split, "1.0.0"),
        split=split,
        metrics=(Metric(name="x", type="binary", direction="increase"),),
        start="2026-01-01T00:00:00Z",
        end="2027-01-01T00:00:00Z",
        salt="s",
        status="active",
        created_by="t",
        created_at="2026-01-01T00:00:00Z",
    )


def test_split_lands_within_a_point_and_is_sticky() -> None:
    experiment = sketch_of({"control": 0.5, "b": 0.3, "c": 0.2})
    users = [f"user-{i}" for i in range(100_000)]
    first = [experiment.assign(u) for u in users]
    shares = Counter(first)
    for name, weight in experiment.split.items():
        assert abs(shares[name] / len(users) - weight) < 0.01
    assert [experiment.assign(u) for u in users[:5000]] == first[:5000]


def test_changing_weights_moves_only_the_users_it_must() -> None:
    before = sketch_of({"control": 0.5, "b": 0.5})
    after = sketch_of({"control": 0.4, "b": 0.6})
    users = [f"u{i}" for i in range(20_000)]
    moved = [u for u in users if before.assign(u) != after.assign(u)]
    assert all(before.assign(u) == "control" and after.assign(u) == "b" for u in moved)
    assert abs(len(moved) / len(users) - 0.1) < 0.01


@pytest.mark.parametrize(
    "changes",
    [
        {"split": {"control": 0.5, "candidate": 0.6}},
        {"variants": {"a": "1.0.0", "candidate": "1.1.0"}, "split": {"a": 0.5, "candidate": 0.5}},
        {"metrics": [METRICS[0], METRICS[0]]},
    ],
)
def test_incoherent_designs_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        design(**changes)


def test_unknown_versions_are_422(stack: Stack) -> None:
    with pytest.raises(InvalidValuesError, match="no version"):
        experiments(stack).create(
            design(variants={"control": "1.0.0", "candidate": "9.9.9"}), actor="t"
        )


def test_one_active_experiment_per_model(stack: Stack) -> None:
    experiments(stack).create(design(), actor="t")
    with pytest.raises(ConflictError):
        experiments(stack).create(design(), actor="t")


def _days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def test_a_scheduled_experiment_counts_against_one_that_would_overlap_it(stack: Stack) -> None:
    """Before its start an experiment is scheduled, not active, yet an experiment whose
    running time meets its own is refused; one that ends at its start is not."""
    service = experiments(stack)
    later = service.create(design(start=_days(10), end=_days(20)), actor="t")
    assert later.status == "scheduled"
    assert service.get(later.experiment_id).status == "scheduled"
    with pytest.raises(ConflictError) as refused:
        service.create(design(), actor="t")  # from now for 30 days
    assert refused.value.details == [
        {"experiment_id": later.experiment_id, "start": later.start, "end": later.end}
    ]
    with pytest.raises(ConflictError):
        service.create(design(start=_days(19), end=_days(40)), actor="t")
    before = service.create(design(end=later.start), actor="t")
    assert before.status == "active"
    after = service.create(design(start=later.end, end=_days(30)), actor="t")
    assert after.status == "scheduled"


def test_a_stopped_experiment_leaves_its_time_free(stack: Stack) -> None:
    service = experiments(stack)
    first = service.create(design(start=_days(10), end=_days(20)), actor="t")
    service.finish(service.get(first.experiment_id), "stopped")
    assert service.create(design(start=_days(10), end=_days(20)), actor="t").status == "scheduled"


def test_simultaneous_creations_start_one_experiment(stack: Stack) -> None:
    """The overlap check and the create are one transaction: of eight identical designs
    sent at once, one is created and seven are 409."""
    service = experiments(stack)
    barrier = threading.Barrier(8)
    created: list[str] = []
    refused: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            created.append(service.create(design(), actor="t").experiment_id)
        except BaseException as exc:  # reported below
            refused.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1
    assert [type(e) for e in refused] == [ConflictError] * 7
    stored = stack.services.backends.documents.query(EXPERIMENTS)
    assert [d.id for d in stored] == created


def test_outcomes_are_idempotent_and_joined_by_request_id(stack: Stack) -> None:
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    service.expose(experiment, "req-1", "candidate", "user-1")
    values = {"first_day_return": 0.12, "priced_in_range": True}
    first = service.record_outcome(experiment, "req-1", values)
    again = service.record_outcome(experiment, "req-1", values)
    assert first["written"] is True
    assert again["written"] is False
    assert {k: v for k, v in again.items() if k != "written"} == {
        k: v for k, v in first.items() if k != "written"
    }
    with pytest.raises(ConflictError):
        service.record_outcome(experiment, "req-1", {**values, "first_day_return": 0.5})
    with pytest.raises(NotFoundError):
        service.record_outcome(experiment, "never-assigned", values)
    with pytest.raises(InvalidValuesError):
        service.record_outcome(experiment, "req-1", {"unknown": 1.0})
    with pytest.raises(InvalidValuesError):
        service.record_outcome(experiment, "req-1", {"priced_in_range": 0.5})
    result = service.results(experiment)
    assert result["srm"] is not None


def test_an_assignment_expires_when_its_retention_ends(stack: Stack) -> None:
    """expire_at = at + IPO_RETENTION_DAYS, read back as written on every store."""
    documents, at = stack.services.backends.documents, "2026-03-01T10:00:00.000000Z"
    service = Experiments(documents, stack.registry, lambda: at, retention_days=30)
    experiment = service.create(design(), actor="t")
    service.expose(experiment, "req-1", "candidate", "user-1")
    found = documents.get(ASSIGNMENTS, f"{experiment.experiment_id}:req-1")
    assert found is not None
    assert (found.data["at"], found.data[EXPIRE_AT]) == (at, "2026-03-31T10:00:00.000000Z")


def test_assignments_keep_the_default_retention(stack: Stack) -> None:
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    service.expose(experiment, "req-1", "control", "user-1")
    (found,) = stack.services.backends.documents.query(ASSIGNMENTS)
    kept = datetime.fromisoformat(found.data[EXPIRE_AT]) - datetime.fromisoformat(found.data["at"])
    assert kept == timedelta(days=stack.settings.retention_days)


@pytest.mark.parametrize("experiment_id", ["__main__", ".x", "-x", "\u00e9"])
def test_an_experiment_id_no_store_can_hold_is_404(stack: Stack, experiment_id: str) -> None:
    with pytest.raises(NotFoundError):
        experiments(stack).get(experiment_id)


def test_a_request_id_no_store_can_hold_was_never_assigned(stack: Stack) -> None:
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    with pytest.raises(NotFoundError):
        service.record_outcome(experiment, "\u00e9", {"priced_in_range": True})


def test_fifty_concurrent_writers_lose_nothing(stack: Stack) -> None:
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    rng = np.random.default_rng(1)
    values = rng.normal(0.1, 0.2, 50).round(6)
    for i in range(50):
        service.expose(experiment, f"r{i}", "candidate", f"u{i}")
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            service.record_outcome(
                experiment,
                f"r{i}",
                {"first_day_return": float(values[i]), "priced_in_range": i % 2 == 0},
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    documents = stack.services.backends.documents
    from common.experiments.core import AGGREGATES, EXPOSURES
    from common.experiments.sketch import ArmAggregate

    merged = ArmAggregate.continuous()
    for doc in documents.query(AGGREGATES):
        if doc.data["metric"] == "first_day_return":
            merged.merge(ArmAggregate.from_dict(doc.data["aggregate"]))
    assert merged.moments.count == 50
    assert merged.moments.mean == pytest.approx(float(np.mean(values)), abs=1e-12)
    assert sum(int(d.data["count"]) for d in documents.query(EXPOSURES)) == 50


def test_results_match_scipy_on_the_same_outcomes(stack: Stack) -> None:
    service = experiments(stack)
    per_request = [{**m, "unit": "request"} for m in METRICS]
    experiment = service.create(design(metrics=per_request), actor="t")
    rng = np.random.default_rng(7)
    data = {"control": rng.normal(0.10, 0.3, 150), "candidate": rng.normal(0.16, 0.3, 150)}
    for variant, xs in data.items():
        for i, x in enumerate(xs):
            request = f"{variant}-{i}"
            service.expose(experiment, request, variant, request)
            service.record_outcome(
                experiment, request, {"first_day_return": float(x), "priced_in_range": bool(x > 0)}
            )
    result = service.results(experiment)
    expected = sp.ttest_ind(data["candidate"], data["control"], equal_var=False)
    found = _find(result, "candidate", "first_day_return")
    assert found["p_value"] == pytest.approx(expected.pvalue, abs=1e-6)


def _find(result: dict[str, Any], variant: str, metric: str) -> dict[str, Any]:
    found: dict[str, Any] = result["comparisons"][variant][metric]
    return found


def test_a_completed_experiment_is_evidence_for_the_gate(stack: Stack) -> None:
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    rng = np.random.default_rng(3)
    for variant in ("control", "candidate"):
        for i in range(150):
            request = f"{variant}-{i}"
            service.expose(experiment, request, variant, request)
            service.record_outcome(
                experiment,
                request,
                {"first_day_return": float(rng.normal(0.1, 0.2)), "priced_in_range": bool(i % 3)},
            )
    done = service.finish(experiment, "completed")
    assert done.conclusions == {"1.1.0": "no_regression"}
    assert service.get(experiment.experiment_id).status == "completed"


def test_the_simulation_prints_a_results_table() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "scripts/simulate_experiment.py", "--users", "150"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    assert "label_correct" in done.stdout
    assert "sample-ratio check" in done.stdout


def test_the_conclusion_waits_for_the_outcome_window_and_never_disagrees(stack: Stack) -> None:
    """Late outcomes that turn the results to `worse` are in the conclusion a gate reads."""
    documents, now = stack.services.backends.documents, ["2026-03-01T00:00:00.000000Z"]
    service = Experiments(documents, stack.registry, lambda: now[0])
    window = design(
        start="2026-03-01T00:00:00Z", end="2026-03-08T00:00:00Z", outcome_window_days=14
    )
    experiment = service.create(window, actor="t")
    rng = np.random.default_rng(11)
    for variant in ("control", "candidate"):
        for i in range(330):
            service.expose(experiment, f"{variant}-{i}", variant, f"{variant}-user-{i}")
    service.expose(experiment, "spare", "control", "control-user-0")
    for variant in ("control", "candidate"):
        for i in range(150):
            on_time = {"first_day_return": float(rng.normal(0.1, 0.2)), "priced_in_range": True}
            service.record_outcome(experiment, f"{variant}-{i}", on_time)
    now[0] = "2026-03-09T00:00:00.000000Z"  # past the end, inside the window
    collecting = service.get(experiment.experiment_id)
    assert (collecting.status, collecting.conclusions) == ("collecting", {})
    for variant, mean in (("control", 0.1), ("candidate", -0.2)):
        for i in range(150, 330):
            late = {"first_day_return": float(rng.normal(mean, 0.2)), "priced_in_range": True}
            service.record_outcome(experiment, f"{variant}-{i}", late)
    now[0] = "2026-03-23T00:00:00.000000Z"  # the window has closed
    done = service.get(experiment.experiment_id)
    assert (done.status, done.conclusions) == ("completed", {"1.1.0": "regression"})
    found = _find(service.results(done), "candidate", "first_day_return")
    assert found["verdict"] == "worse"
    with pytest.raises(ConflictError, match="outcome window"):
        service.record_outcome(experiment, "spare", {"first_day_return": 5.0})
    assert service.get(experiment.experiment_id).conclusions == {"1.1.0": "regression"}


def test_the_split_is_checked_on_users_and_outcomes_analysed_per_user(stack: Stack) -> None:
    """Candidate users come back twice as often: requests are 1:2, users 1:1."""
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    rng = np.random.default_rng(8)
    for variant, visits in (("control", 1), ("candidate", 2)):
        for i in range(120):
            for visit in range(visits):
                exposure = f"{variant}-{i}-{visit}"
                service.expose(experiment, exposure, variant, f"{variant}-user-{i}")
                value = {"first_day_return": float(rng.normal(0.1, 0.2)), "priced_in_range": True}
                service.record_outcome(experiment, exposure, value)
    result = service.results(experiment)
    assert result["srm"]["unit"] == "user"
    assert result["srm"]["observed"] == {"control": 120, "candidate": 120}
    assert result["srm"]["requests"] == {"control": 120, "candidate": 240}
    assert result["srm"]["mismatch"] is False
    found = _find(result, "candidate", "first_day_return")
    assert (found["unit"], found["test"]) == ("user", "delta_z")
    assert (found["variant"]["users"], found["variant"]["count"]) == (120, 240)


def test_an_experiment_stored_before_users_and_windows_still_reads(stack: Stack) -> None:
    """Documents as written before: no unit, no window, exposures counting requests only."""
    from common.experiments.core import AGGREGATES, EXPERIMENTS, EXPOSURES
    from common.experiments.sketch import ArmAggregate

    documents = stack.services.backends.documents
    legacy = {
        "experiment_id": "old1",
        "model_id": "risk",
        "variants": {"control": "1.0.0", "candidate": "1.1.0"},
        "split": {"control": 0.5, "candidate": 0.5},
        "metrics": METRICS,
        "start": "2026-01-01T00:00:00.000000Z",
        "end": "2026-01-31T00:00:00.000000Z",
        "salt": "s",
        "status": "active",
        "created_by": "t",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "conclusions": {},
    }
    documents.create(EXPERIMENTS, "old1", legacy)
    rng = np.random.default_rng(4)
    for variant in ("control", "candidate"):
        arm = ArmAggregate.continuous()
        for x in rng.normal(0.1, 0.2, 150):
            arm.add(float(x))
        doc = {"experiment_id": "old1", "variant": variant, "shard": 0}
        documents.set(EXPOSURES, f"old1:{variant}:0", {**doc, "count": 150})
        documents.set(
            AGGREGATES,
            f"old1:{variant}:first_day_return:0",
            {**doc, "metric": "first_day_return", "aggregate": arm.to_dict()},
        )
    service = experiments(stack)
    done = service.get("old1")  # past its end with no window: completed at this touch
    assert done.status == "completed"
    result = service.results(done)
    assert result["srm"]["unit"] == "request"
    found = _find(result, "candidate", "first_day_return")
    assert (found["unit"], found["test"], found["control"]["count"]) == ("request", "welch_t", 150)


def test_a_stop_recorded_before_stop_times_still_takes_its_outcomes(stack: Stack) -> None:
    """A stopped experiment stored without ``stopped_at``: its own exposures still join."""
    from common.experiments.core import EXPERIMENTS

    documents = stack.services.backends.documents
    service = experiments(stack)
    experiment = service.create(design(), actor="t")
    service.expose(experiment, "req-1", "candidate", "user-1")
    documents.update(EXPERIMENTS, experiment.experiment_id, {"status": "stopped"})
    stopped = service.get(experiment.experiment_id)
    answer = service.record_outcome(stopped, "req-1", {"priced_in_range": True})
    assert (answer["variant"], answer["written"]) == ("candidate", True)
    assert service.serving(stopped, stopped.start) is False
