"""Rollback: its precondition, the answer to a retry, and simultaneous identical rollbacks."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from common.core.errors import PreconditionFailedError
from common.promotion import rollback as rollback_module
from common.promotion.lifecycle import Lifecycle
from common.promotion.rollback import Outcome
from common.registry import deployments
from common.registry.deployments import Deployment
from tests.support.fixtures import Stack, register_risk


@pytest.fixture
def stack(empty_stack: Stack) -> Stack:
    return empty_stack


def two_promotions(life: Lifecycle) -> Deployment:
    """1.0.0, then 1.1.0 in production: generation 2. The promotion of 1.1.0."""
    register_risk(life, "1.0.0")
    register_risk(life, "1.1.0")
    promotion = life.history("risk")[0]
    assert (promotion.version, life.registry.get_model("risk").generation) == ("1.1.0", 2)
    return promotion


def rollbacks(life: Lifecycle) -> list[Deployment]:
    return [d for d in life.history("risk") if d.kind == "rollback"]


def test_a_precondition_that_no_longer_holds_is_refused(stack: Stack) -> None:
    life = stack.lifecycle
    two_promotions(life)
    with pytest.raises(PreconditionFailedError, match=r"^risk is at generation 2, not 1$"):
        life.rollback("risk", actor="t", expected_generation=1)
    assert rollbacks(life) == []
    done = life.rollback("risk", actor="t", expected_generation=2)
    assert done.to_state is not None
    assert (done.to_state.production_version, done.to_state.generation) == ("1.0.0", 3)


def test_retries_answer_the_rollback_they_repeat(stack: Stack) -> None:
    life = stack.lifecycle
    promotion = two_promotions(life)
    first = life.rollback_outcome("risk", actor="alice", expected_generation=2)
    assert not first.replayed
    retries: list[dict[str, Any]] = [
        {"expected_generation": 2},
        {"deployment_id": promotion.deployment_id},
        {"deployment_id": promotion.deployment_id, "expected_generation": 2},
        {"deployment_id": promotion.deployment_id, "expected_generation": 3},
    ]
    for retry in retries:
        again = life.rollback_outcome("risk", actor="bob", **retry)
        assert again == Outcome(first.deployment, replayed=True), retry
    assert rollbacks(life) == [first.deployment]
    model = life.registry.get_model("risk")
    assert (model.production_version, model.generation) == ("1.0.0", 3)


def test_what_is_not_a_retry_of_the_last_rollback(stack: Stack) -> None:
    life = stack.lifecycle
    promotion = two_promotions(life)
    first = life.rollback("risk", actor="t", deployment_id=promotion.deployment_id)
    # Another deployment named, with the precondition the first one started from: refused.
    with pytest.raises(PreconditionFailedError, match="generation 3, not 2"):
        life.rollback("risk", actor="t", deployment_id=first.deployment_id, expected_generation=2)
    # The generation the rollback made: a new rollback, which undoes the first one.
    second = life.rollback("risk", actor="t", expected_generation=3)
    assert (second.restores, second.from_state.generation) == (first.deployment_id, 3)
    assert life.registry.get_model("risk").production_version == "1.1.0"
    # No precondition and no deployment: undoes whatever made the state, every time.
    third = life.rollback("risk", actor="t")
    assert third.restores == second.deployment_id
    assert len(rollbacks(life)) == 3
    assert life.registry.get_model("risk").production_version == "1.0.0"


def test_a_rollback_further_back_does_not_answer_a_request_to_undo_the_latest(
    stack: Stack,
) -> None:
    """Both saw generation 2: one asked for the state before 1.0.0's promotion, the other
    to undo the latest promotion. The second did not ask for what the first did."""
    life = stack.lifecycle
    two_promotions(life)
    first_promotion = life.history("risk")[-1]
    life.rollback(
        "risk", actor="a", deployment_id=first_promotion.deployment_id, expected_generation=2
    )
    assert life.registry.get_model("risk").production_version is None
    with pytest.raises(PreconditionFailedError, match="generation 3, not 2"):
        life.rollback("risk", actor="b", expected_generation=2)
    assert len(rollbacks(life)) == 1


def test_a_retry_after_another_change_is_refused(stack: Stack) -> None:
    life = stack.lifecycle
    two_promotions(life)
    life.rollback("risk", actor="t", expected_generation=2)
    life.promote("risk", "1.1.0", actor="t")  # generation 4
    with pytest.raises(PreconditionFailedError, match="generation 4, not 2"):
        life.rollback("risk", actor="t", expected_generation=2)
    assert life.registry.get_model("risk").production_version == "1.1.0"
    assert len(rollbacks(life)) == 1


# --- simultaneous rollbacks ----------------------------------------------------------------


def run_together(calls: int, call: Any) -> list[Any]:
    """``call()`` in ``calls`` threads released at once; what each returned or raised."""
    start = threading.Barrier(calls, timeout=30)
    results: list[Any] = [None] * calls

    def worker(i: int) -> None:
        start.wait()
        try:
            results[i] = call()
        except Exception as exc:  # reported by the assertions of the test
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_rollbacks_that_both_read_the_state_first_flip_it_once(
    any_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests read generation 2 and ask to commit before either has: the store
    commits one; the other finds it and answers it."""
    life = any_stack.lifecycle
    two_promotions(life)
    both_ready = threading.Barrier(2, timeout=30)
    real_commit = deployments.commit

    def commit_when_both_are_ready(*args: Any, **kwargs: Any) -> None:
        both_ready.wait()
        real_commit(*args, **kwargs)

    monkeypatch.setattr(rollback_module, "commit", commit_when_both_are_ready)
    results = run_together(
        2, lambda: life.rollback_outcome("risk", actor="t", expected_generation=2)
    )
    assert all(isinstance(r, Outcome) for r in results), results
    assert sorted(r.replayed for r in results) == [False, True]
    assert results[0].deployment == results[1].deployment
    assert rollbacks(life) == [results[0].deployment]
    model = life.registry.get_model("risk")
    assert (model.production_version, model.generation) == ("1.0.0", 3)


def test_many_simultaneous_identical_rollbacks_flip_the_state_at_most_once(stack: Stack) -> None:
    life = stack.lifecycle
    two_promotions(life)
    results = run_together(8, lambda: life.rollback("risk", actor="t", expected_generation=2))
    answered = [r for r in results if isinstance(r, Deployment)]
    others = [r for r in results if not isinstance(r, Deployment | PreconditionFailedError)]
    assert others == []
    assert answered, results
    assert {d.deployment_id for d in answered} == {rollbacks(life)[0].deployment_id}
    assert len(rollbacks(life)) == 1
    model = life.registry.get_model("risk")
    assert (model.production_version, model.generation) == ("1.0.0", 3)
