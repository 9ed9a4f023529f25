"""A stage change and an experiment naming the same version, racing: the store serialises
the two decisions, so a development version never ends up serving an arm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from common.core.errors import ConflictError, InvalidValuesError
from common.experiments.core import ExperimentDesign, Experiments
from common.registry.records import ModelVersion
from tests.support.fixtures import Stack, trained_risk
from tools.training.base import register_built

T = TypeVar("T")

DESIGN = ExperimentDesign.model_validate(
    {
        "model_id": "risk",
        "variants": {"control": "1.0.0", "candidate": "1.1.0"},
        "split": {"control": 0.5, "candidate": 0.5},
        "metrics": [{"name": "first_day_return", "type": "continuous", "direction": "increase"}],
    }
)


@pytest.fixture
def staged(stack: Stack) -> Stack:
    """Risk 1.0.0 in production, 1.1.0 in staging."""
    register_built(stack.lifecycle, trained_risk(), version="1.1.0", created_by="t", promote=False)
    stack.lifecycle.set_stage("risk", "1.1.0", "staging")
    return stack


def experiments(stack: Stack) -> Experiments:
    return Experiments(stack.services.backends.documents, stack.registry)


def create_at_first_transaction(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, design: ExperimentDesign
) -> list[str]:
    """Create the experiment when the store's next transaction begins, after whatever
    checks came before it: the list gets its id."""
    documents = stack.services.backends.documents
    transaction = documents.transaction
    created: list[str] = []

    def experiment_first(fn: Callable[[Any], T], **kwargs: Any) -> T:
        if not created:
            created.append("creating")
            created[0] = experiments(stack).create(design, actor="t").experiment_id
        return transaction(fn, **kwargs)

    monkeypatch.setattr(documents, "transaction", experiment_first)
    return created


def test_an_experiment_created_while_the_stage_moves_refuses_the_move(
    staged: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The experiment is created after the stage change has looked for experiments and
    before its transaction: the transaction still sees it, and the move is 409."""
    created = create_at_first_transaction(staged, monkeypatch, DESIGN)
    with pytest.raises(ConflictError) as refused:
        staged.lifecycle.set_stage("risk", "1.1.0", "development")
    assert refused.value.details == [{"experiment_id": created[0], "variant": "candidate"}]
    assert staged.registry.get_version("risk", "1.1.0").stage == "staging"


def test_a_stage_moved_while_the_experiment_is_admitted_refuses_the_experiment(
    staged: Stack,
) -> None:
    """The version moves to development after the experiment's arms were checked and
    before its transaction: the transaction reads the stage again, and the design is 422."""

    def move_meanwhile(record: ModelVersion) -> list[dict[str, Any]]:
        staged.lifecycle.set_stage("risk", record.version, "development")
        return []

    with pytest.raises(InvalidValuesError) as refused:
        experiments(staged).create(DESIGN, actor="t", admit=move_meanwhile)
    (detail,) = refused.value.details
    assert (detail["field"], detail["rule"], detail["stage"]) == (
        "variants.candidate",
        "stage",
        "development",
    )
    assert experiments(staged).active_for("risk") is None
    assert staged.registry.get_version("risk", "1.1.0").stage == "development"


def test_an_experiment_created_while_production_is_replaced_refuses_the_promotion(
    staged: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The experiment (production as its control) is created after the promotion has
    looked for arms and before the transaction that deprecates production: that
    transaction looks again, and the promotion is 409; production still serves."""
    register_built(staged.lifecycle, trained_risk(), version="1.2.0", created_by="t", promote=False)
    staged.lifecycle.set_stage("risk", "1.2.0", "staging")
    design = DESIGN.model_copy(update={"variants": {"control": "1.0.0", "candidate": "1.2.0"}})
    created = create_at_first_transaction(staged, monkeypatch, design)
    with pytest.raises(ConflictError) as refused:
        staged.lifecycle.promote("risk", "1.1.0", actor="t")
    assert created[0] in refused.value.message
    model = staged.registry.get_model("risk")
    assert (model.production_version, model.generation) == ("1.0.0", 1)
