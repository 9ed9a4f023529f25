"""Lifecycle: stages, the gate, verification, canary, rollback and the promotion race."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.core.errors import ConflictError, GoneError, InvalidValuesError, PreconditionFailedError
from common.promotion.arms import EXPERIMENTS
from common.promotion.lifecycle import DEPLOYMENTS, Lifecycle
from common.registry.records import VERSIONS, version_doc_id
from common.serving.pipeline import PredictRequest, bucket
from tests.support.fixtures import Stack, embedded_stack, register_risk, trained_risk
from tools.training.base import BuiltModel


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = embedded_stack(tmp_path)
    try:
        yield built
    finally:
        built.services.close()


@pytest.fixture
def life(stack: Stack) -> Lifecycle:
    return stack.lifecycle


def staged(life: Lifecycle, version: str, built: BuiltModel | None = None) -> None:
    from tools.training.base import register_built

    register_built(life, built or trained_risk(), version=version, created_by="t", promote=False)
    life.set_stage("risk", version, "staging")


def predictions(stack: Stack, subject: str = "user-1") -> dict[str, Any]:
    example = stack.registry.get_version("risk", "1.0.0").example
    stack.services.snapshots.invalidate()
    return stack.services.predictor.predict(
        "risk", PredictRequest(instances=[example]), request_id="r", subject=subject
    )


# --- stages ------------------------------------------------------------------------------


def test_manual_transitions(life: Lifecycle) -> None:
    register_risk(life, promote=False)
    assert life.set_stage("risk", "1.0.0", "staging").stage == "staging"
    assert life.set_stage("risk", "1.0.0", "development").stage == "development"
    for stage in ("production", "deprecated"):
        with pytest.raises(ConflictError, match="promotion and rollback"):
            life.set_stage("risk", "1.0.0", stage)  # type: ignore[arg-type]
    assert life.set_stage("risk", "1.0.0", "retired").stage == "retired"
    with pytest.raises(ConflictError):
        life.set_stage("risk", "1.0.0", "staging")


def test_promotion_needs_staging(life: Lifecycle) -> None:
    register_risk(life, promote=False)
    with pytest.raises(ConflictError, match="staging"):
        life.promote("risk", "1.0.0", actor="t")


def test_retired_versions_cannot_be_promoted(life: Lifecycle) -> None:
    register_risk(life, promote=False)
    life.set_stage("risk", "1.0.0", "retired")
    with pytest.raises(GoneError):
        life.promote("risk", "1.0.0", actor="t")


def test_promotion_moves_stages_and_records_the_deployment(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    deployment = life.promote("risk", "1.1.0", actor="alice")
    registry = life.registry
    assert registry.get_model("risk").production_version == "1.1.0"
    assert registry.get_version("risk", "1.1.0").stage == "production"
    assert registry.get_version("risk", "1.0.0").stage == "deprecated"
    assert deployment.actor == "alice"
    assert deployment.from_state.production_version == "1.0.0"
    assert deployment.to_state is not None
    assert deployment.to_state.production_version == "1.1.0"
    assert deployment.verification["passed"] is True
    assert all(r["passed"] for r in deployment.gate)
    assert life.history("risk")[0].deployment_id == deployment.deployment_id


# --- the gate ----------------------------------------------------------------------------


def weak_model(accuracy: float) -> BuiltModel:
    built = trained_risk()
    return BuiltModel(**{**built.__dict__, "metrics": {**built.metrics, "accuracy": accuracy}})


def test_failed_gate_lists_each_criterion_and_changes_nothing(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0", weak_model(0.81))
    before = life.registry.get_model("risk")
    with pytest.raises(InvalidValuesError) as caught:
        life.promote("risk", "1.1.0", actor="t")
    (failed,) = caught.value.details
    assert failed == {
        "criterion": "accuracy",
        "op": ">=",
        "threshold": 0.85,
        "value": 0.81,
        "passed": False,
    }
    assert life.registry.get_model("risk") == before
    (record, *_) = life.history("risk")
    assert (record.status, record.reason, record.version) == (
        "failed",
        "promotion gate failed",
        "1.1.0",
    )


def test_missing_metric_fails_the_gate(life: Lifecycle) -> None:
    built = trained_risk()
    metrics = {k: v for k, v in built.metrics.items() if k != "recall"}
    staged(life, "1.0.0", BuiltModel(**{**built.__dict__, "metrics": metrics}))
    with pytest.raises(InvalidValuesError) as caught:
        life.promote("risk", "1.0.0", actor="t")
    assert caught.value.details[0]["criterion"] == "recall"
    assert caught.value.details[0]["message"] == "metric not recorded"


def test_experiment_evidence_when_required(life: Lifecycle, stack: Stack) -> None:
    built = trained_risk()
    gate = {
        "criteria": [{"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0}],
        "require_experiment": True,
    }
    staged(life, "1.0.0", BuiltModel(**{**built.__dict__, "gate": gate}))
    with pytest.raises(InvalidValuesError) as caught:
        life.promote("risk", "1.0.0", actor="t")
    assert caught.value.details[0]["criterion"] == "experiment"
    stack.services.backends.documents.create(  # as the experiments service records it
        EXPERIMENTS,
        "exp-1",
        {"model_id": "risk", "status": "completed", "conclusions": {"1.0.0": "no_regression"}},
    )
    deployment = life.promote("risk", "1.0.0", actor="t")
    assert deployment.gate[-1] == {
        "criterion": "experiment",
        "passed": True,
        "experiment_id": "exp-1",
    }


# --- verification ------------------------------------------------------------------------


def test_failed_golden_set_leaves_production_untouched(stack: Stack) -> None:
    register_risk(stack.lifecycle, "1.0.0")
    staged(stack.lifecycle, "1.1.0")
    doc_id = version_doc_id("risk", "1.1.0")
    record = stack.registry.get_version("risk", "1.1.0")
    wrong = [dict(case) for case in record.golden_set]
    wrong[3] = {**wrong[3], "expected": {**wrong[3]["expected"], "risk_score": 12.5}}
    stack.services.backends.documents.update(VERSIONS, doc_id, {"golden_set": wrong})

    before = predictions(stack)
    with pytest.raises(InvalidValuesError, match="verification") as caught:
        stack.lifecycle.promote("risk", "1.1.0", actor="t")
    report = caught.value.details[0]["verification"]
    assert report["golden_mismatches"][0].startswith("case 3.risk_score")
    assert stack.registry.get_model("risk").production_version == "1.0.0"
    assert predictions(stack) == before
    assert stack.lifecycle.history("risk")[0].reason == "verification failed"


# --- canary, rollout, rollback -----------------------------------------------------------


def test_canary_share_is_sticky_and_close_to_target(any_stack: Stack) -> None:
    life = any_stack.lifecycle
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    life.promote("risk", "1.1.0", actor="t", traffic_percentage=10)
    model = life.registry.get_model("risk")
    assert (model.production_version, model.canary_version, model.canary_percentage) == (
        "1.0.0",
        "1.1.0",
        10,
    )
    assert life.registry.get_version("risk", "1.1.0").stage == "staging"
    any_stack.services.snapshots.invalidate()
    snapshot = any_stack.services.snapshots.get("risk")
    users = [f"user-{i}" for i in range(5000)]
    chosen = {u: snapshot.route(u)[0].version for u in users}  # type: ignore[union-attr]
    share = sum(v == "1.1.0" for v in chosen.values()) / len(users)
    assert 0.08 <= share <= 0.12
    assert all(snapshot.route(u)[0].version == chosen[u] for u in users[:200])  # type: ignore[union-attr]
    assert predictions(any_stack, "user-7")["variant"] == (
        "canary" if bucket("risk", "user-7") < 1000 else "production"
    )

    life.promote("risk", "1.1.0", actor="t", traffic_percentage=100)
    model = life.registry.get_model("risk")
    assert (model.production_version, model.canary_version) == ("1.1.0", None)
    assert life.registry.get_version("risk", "1.0.0").stage == "deprecated"

    life.rollback("risk", actor="t")
    model = life.registry.get_model("risk")
    assert (model.production_version, model.canary_version, model.canary_percentage) == (
        "1.0.0",
        "1.1.0",
        10,
    )
    kinds = [(d.kind, d.status) for d in life.history("risk")]
    assert kinds[:3] == [
        ("rollback", "succeeded"),
        ("promote", "succeeded"),
        ("promote", "succeeded"),
    ]


def test_raising_the_share_keeps_earlier_canary_users(stack: Stack) -> None:
    life = stack.lifecycle
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    users = [f"u{i}" for i in range(2000)]

    def canary_users() -> set[str]:
        stack.services.snapshots.invalidate()
        snapshot = stack.services.snapshots.get("risk")
        return {u for u in users if snapshot.route(u)[1] == "canary"}

    life.promote("risk", "1.1.0", actor="t", traffic_percentage=10)
    at10 = canary_users()
    life.promote("risk", "1.1.0", actor="t", traffic_percentage=50)
    at50 = canary_users()
    assert at10 < at50
    assert 0.45 <= len(at50) / len(users) <= 0.55


def test_rollback_to_before_a_named_deployment(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    first = life.history("risk")[0]
    staged(life, "1.1.0")
    life.promote("risk", "1.1.0", actor="t")
    staged(life, "1.2.0")
    life.promote("risk", "1.2.0", actor="t")
    restored = life.rollback("risk", actor="bob", deployment_id=first.deployment_id)
    assert life.registry.get_model("risk").production_version is None
    assert restored.restores == first.deployment_id
    assert life.registry.get_version("risk", "1.2.0").stage == "deprecated"


def test_rollback_without_history_is_409(life: Lifecycle) -> None:
    register_risk(life, promote=False)
    with pytest.raises(ConflictError):
        life.rollback("risk", actor="t")


@pytest.mark.parametrize("deployment_id", ["__main__", '\u00e1"', "-1", ".."])
def test_rollback_to_an_id_no_store_can_hold_is_409(life: Lifecycle, deployment_id: str) -> None:
    register_risk(life, "1.0.0")
    with pytest.raises(ConflictError, match="no successful deployment"):
        life.rollback("risk", actor="t", deployment_id=deployment_id)
    assert life.registry.get_model("risk").production_version == "1.0.0"


def test_deployment_records_never_change(life: Lifecycle, stack: Stack) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    first = stack.services.backends.documents.query(DEPLOYMENTS)
    life.promote("risk", "1.1.0", actor="t")
    life.rollback("risk", actor="t")
    later = {d.id: d for d in stack.services.backends.documents.query(DEPLOYMENTS)}
    assert len(later) == len(first) + 2
    for doc in first:
        assert later[doc.id].data == doc.data
        assert later[doc.id].revision == doc.revision


# --- what may serve ------------------------------------------------------------------------


def test_a_serving_version_cannot_be_retired_or_demoted(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    life.promote("risk", "1.1.0", actor="t", traffic_percentage=50)
    for version, stage in (("1.1.0", "retired"), ("1.1.0", "development"), ("1.0.0", "retired")):
        with pytest.raises(ConflictError, match=r"serving|production"):
            life.set_stage("risk", version, stage)  # type: ignore[arg-type]


def test_a_full_promotion_ends_any_canary(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    staged(life, "1.2.0")
    life.promote("risk", "1.1.0", actor="t", traffic_percentage=50)
    life.promote("risk", "1.2.0", actor="t")
    model = life.registry.get_model("risk")
    assert (model.production_version, model.canary_version, model.canary_percentage) == (
        "1.2.0",
        None,
        0,
    )
    assert life.registry.get_version("risk", "1.1.0").stage == "staging"


def test_a_canary_needs_a_production_version(life: Lifecycle) -> None:
    staged(life, "1.0.0")
    with pytest.raises(ConflictError, match="no production version"):
        life.promote("risk", "1.0.0", actor="t", traffic_percentage=10)


def test_rollback_does_not_bring_back_a_retired_version(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    life.promote("risk", "1.1.0", actor="t")
    life.set_stage("risk", "1.0.0", "retired")
    with pytest.raises(ConflictError, match="retired"):
        life.rollback("risk", actor="t")
    assert life.registry.get_model("risk").production_version == "1.1.0"


def test_rollback_finds_its_deployment_among_many_failures(life: Lifecycle) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    life.promote("risk", "1.1.0", actor="t")
    staged(life, "1.2.0", weak_model(0.5))
    for _ in range(5):
        with pytest.raises(InvalidValuesError):
            life.promote("risk", "1.2.0", actor="t")
    life.rollback("risk", actor="t")
    assert life.registry.get_model("risk").production_version == "1.0.0"


def test_a_candidate_that_cannot_run_fails_verification(life: Lifecycle, stack: Stack) -> None:
    register_risk(life, "1.0.0")
    staged(life, "1.1.0", weak_model(0.9))  # the same bytes under a new version...
    record = life.registry.get_version("risk", "1.1.0")
    (stack.settings.resolved_artifact_dir / record.artifact_key).unlink()  # ...now gone
    with pytest.raises(InvalidValuesError, match="could not be run"):
        life.promote("risk", "1.1.0", actor="t")
    assert life.history("risk")[0].reason == "verification failed"


# --- the race ----------------------------------------------------------------------------


def test_two_simultaneous_promotions_exactly_one_wins(
    any_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both promotions pass verification before either commits; the store decides."""
    from common.promotion import lifecycle as lifecycle_module

    life = any_stack.lifecycle
    register_risk(life, "1.0.0")
    staged(life, "1.1.0")
    staged(life, "1.2.0")
    generation = life.registry.get_model("risk").generation
    both_verified = threading.Barrier(2, timeout=30)
    real_verify = lifecycle_module.verify

    def verify_then_wait(*args: Any, **kwargs: Any) -> dict[str, Any]:
        report = real_verify(*args, **kwargs)
        both_verified.wait()
        return report

    monkeypatch.setattr(lifecycle_module, "verify", verify_then_wait)
    outcomes: list[str] = []

    def promote(version: str) -> None:
        try:
            life.promote("risk", version, actor=version)
            outcomes.append(version)
        except PreconditionFailedError:
            outcomes.append("409")
        except Exception as exc:  # anything else is a failure of the test, reported below
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("1.1.0", "1.2.0")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 2
    assert outcomes.count("409") == 1, outcomes
    winner = next(o for o in outcomes if o != "409")
    model = life.registry.get_model("risk")
    assert (model.production_version, model.generation) == (winner, generation + 1)
