"""Rollback: restore the serving state before a deployment, once per request.

A rollback restores the state before the deployment that made the current state, or
before a named successful deployment, and is itself recorded as a deployment of kind
``rollback`` that names the deployment it undid (``restores``). It needs no gate and no
verification: the versions it restores already served. Only a version still staging or
deprecated may start serving again (RESTORABLE).

Its precondition, ``expected_generation``, is the generation of the serving state the
caller saw. A rollback made while the model is at any other generation is refused with
``precondition_failed`` (409), naming both.

A retried rollback changes nothing. When the current state was made by a rollback R, a
request that asks for what R did is answered with R itself, and no record or generation is
added. A request asks for what R did when

- it names the deployment R undid, with no ``expected_generation`` or with the generation R
  started from or the one it made; or
- it names no deployment, its ``expected_generation`` is the generation R started from, and
  R undid the deployment that made that generation.

Of two simultaneous identical rollbacks the store commits one (the write requires the
generation both started from); the other finds that one and answers it.

Without any precondition (an empty body) a rollback undoes whatever made the current
state, a rollback included: such a request is not safe to repeat.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import NamedTuple

from common.backends.base import DocumentStore, Filter, valid_name
from common.core.errors import ConflictError, PreconditionFailedError
from common.registry.deployments import DEPLOYMENTS, Deployment, ServingState, commit
from common.registry.records import Registry, utcnow

RESTORABLE: frozenset[str] = frozenset({"staging", "deprecated"})
"""Stages a rollback may bring back into serving: a version since moved to development or
retired stays out."""


class Outcome(NamedTuple):
    deployment: Deployment
    replayed: bool
    """True when ``deployment`` is an earlier rollback answered again: nothing changed."""


def made_by(documents: DocumentStore, model_id: str, generation: int) -> Deployment | None:
    """The succeeded deployment that made this generation of the model's serving state."""
    found = documents.query(
        DEPLOYMENTS,
        [
            Filter("model_id", "==", model_id),
            Filter("status", "==", "succeeded"),
            Filter("to.generation", "==", generation),
        ],
        limit=1,
    )
    return Deployment.model_validate(found[0].data) if found else None


def is_retry(
    documents: DocumentStore,
    latest: Deployment,
    deployment_id: str | None,
    expected_generation: int | None,
) -> bool:
    """Whether a rollback request asks again for what ``latest``, the deployment that made
    the current state, did. A request with neither a deployment id nor a precondition never
    does: it asks to undo whatever made the current state."""
    if latest.kind != "rollback" or latest.to_state is None or latest.restores is None:
        return False
    if deployment_id is None:  # "undo the deployment that made the generation I saw"
        return expected_generation == latest.from_state.generation and _undid_the_latest(
            documents, latest
        )
    # The same deployment undone, seen from the state before it or the state it made.
    return deployment_id == latest.restores and expected_generation in (
        None,
        latest.from_state.generation,
        latest.to_state.generation,
    )


def _undid_the_latest(documents: DocumentStore, rollback: Deployment) -> bool:
    """Whether ``rollback`` undid the deployment that made the state it started from."""
    doc = documents.get(DEPLOYMENTS, rollback.restores) if rollback.restores else None
    undone = Deployment.model_validate(doc.data) if doc else None
    made = undone.to_state if undone else None
    return made is not None and made.generation == rollback.from_state.generation


def _named(documents: DocumentStore, model_id: str, deployment_id: str) -> Deployment:
    doc = documents.get(DEPLOYMENTS, deployment_id) if valid_name(deployment_id) else None
    named = Deployment.model_validate(doc.data) if doc else None
    if named is None or named.model_id != model_id or named.status != "succeeded":
        raise ConflictError(
            f"{model_id} has no successful deployment {deployment_id!r} to roll back"
        )
    return named


def roll_back(
    registry: Registry,
    documents: DocumentStore,
    model_id: str,
    *,
    actor: str,
    deployment_id: str | None = None,
    expected_generation: int | None = None,
    reason: str = "",
    clock: Callable[[], str] = utcnow,
) -> Outcome:
    """Restore the state before the deployment that made the current state (or before
    the named successful deployment), or answer the rollback that already did."""
    before = ServingState.of(registry.get_model(model_id))
    latest = made_by(documents, model_id, before.generation)
    if latest is not None and is_retry(documents, latest, deployment_id, expected_generation):
        return Outcome(latest, replayed=True)
    if expected_generation is not None and expected_generation != before.generation:
        raise PreconditionFailedError(
            f"{model_id} is at generation {before.generation}, not {expected_generation}"
        )
    if deployment_id is not None:
        target = _named(documents, model_id, deployment_id)
    elif latest is not None:
        target = latest
    else:
        raise ConflictError(f"{model_id} has no deployment to roll back")
    rollback = Deployment(
        deployment_id=uuid.uuid4().hex,
        model_id=model_id,
        kind="rollback",
        status="succeeded",
        actor=actor,
        created_at=clock(),
        from_state=before,
        to_state=target.from_state.model_copy(update={"generation": before.generation + 1}),
        restores=target.deployment_id,
        reason=reason,
    )
    try:
        commit(documents, rollback, may_start=RESTORABLE)
        return Outcome(rollback, replayed=False)
    except PreconditionFailedError:
        # Another change committed first: if it was this same rollback, answer it.
        now = ServingState.of(registry.get_model(model_id))
        winner = made_by(documents, model_id, now.generation)
        if winner is not None and is_retry(documents, winner, deployment_id, expected_generation):
            return Outcome(winner, replayed=True)
        raise
