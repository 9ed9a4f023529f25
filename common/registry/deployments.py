"""Deployment records, the serving state they move between, and the one write that moves it.

A deployment is created once and never updated: the history of a model's deployments says
which version served when, who changed it, and what the gate and verification found.
Promotion and rollback (common/promotion/lifecycle.py and rollback.py) decide what to
change;
``commit`` is the only code that changes a model's serving state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.backends.base import DocumentStore, Transaction
from common.core.errors import ConflictError, PreconditionFailedError
from common.registry.records import MODELS, VERSIONS, ModelRecord, ModelVersion, version_doc_id

DEPLOYMENTS = "deployments"


class ServingState(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    production_version: str | None = None
    canary_version: str | None = None
    canary_percentage: int = 0
    generation: int = 0

    @classmethod
    def of(cls, model: ModelRecord) -> ServingState:
        return cls.model_validate(model.model_dump())

    def versions(self) -> set[str]:
        return {v for v in (self.production_version, self.canary_version) if v}


class Deployment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    deployment_id: str
    model_id: str
    kind: Literal["promote", "rollback"]
    status: Literal["succeeded", "failed"]
    actor: str
    created_at: str
    version: str | None = None
    traffic_percentage: int | None = None
    from_state: ServingState = Field(alias="from")
    to_state: ServingState | None = Field(default=None, alias="to")
    reason: str = ""
    """Why: the cause of a refused deployment, or the reason its actor gave."""
    gate: list[dict[str, Any]] = Field(default_factory=list)
    verification: dict[str, Any] = Field(default_factory=dict)
    restores: str | None = None
    """For a rollback: the deployment whose prior state was restored."""

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def for_the_record(report: dict[str, Any]) -> dict[str, Any]:
    """The verification report as deployments keep it: where golden outputs differed, not
    the values (readers of the history need not see golden data)."""
    if not report:
        return {}
    mismatches = [m.split(":", 1)[0] for m in report.get("golden_mismatches", [])]
    return {**report, "golden_mismatches": mismatches}


def stage_after(version: str, stage: str, after: ServingState) -> str:
    """Stages follow serving: production serves all, a canary stays staging, a version
    that stopped serving production becomes deprecated."""
    if version == after.production_version:
        return "production"
    if version == after.canary_version:
        return "staging"
    if stage == "production":
        return "deprecated"
    return stage


def stage_reason(deployment: Deployment, after: ServingState, stage: str) -> str:
    """What a version's record says about the move a deployment made it take."""
    given = f": {deployment.reason}" if deployment.reason else ""
    ref = f"deployment {deployment.deployment_id}"
    if stage == "deprecated":
        if deployment.kind == "rollback":
            return f"rolled back; production restored to {after.production_version} ({ref}){given}"
        return f"replaced in production by {after.production_version} ({ref}){given}"
    if deployment.kind == "rollback":
        return f"restored by rollback ({ref}){given}"
    what = "promoted to production" if stage == "production" else "serving as the canary"
    return f"{what} ({ref}){given}"


def commit(
    documents: DocumentStore,
    deployment: Deployment,
    may_start: frozenset[str],
    *,
    check: Callable[[Transaction], None] | None = None,
) -> None:
    """Make the change a succeeded ``deployment`` describes, in one store transaction.

    The transaction requires the generation the change started from (``from``), writes the
    model's serving state (``to``), moves the stages of the versions it touches and appends
    the record. A version that starts serving must be in one of the stages ``may_start``:
    that is checked here again, so a version retired meanwhile does not start serving.
    ``check`` runs in the same transaction after those reads and before any write (it may
    read, and raise to refuse): promotion passes the experiment-arm check through it.
    """
    model_id, before, after = deployment.model_id, deployment.from_state, deployment.to_state
    if after is None or deployment.status != "succeeded":
        raise ValueError("only a succeeded deployment with a state after it can be committed")
    touched = sorted(before.versions() | after.versions())

    def write(tx: Transaction) -> None:
        doc = tx.get(MODELS, model_id)
        current = ServingState.of(ModelRecord.model_validate(doc.data if doc else {}))
        if current.generation != before.generation:
            change = "promotion" if deployment.kind == "promote" else "rollback"
            raise PreconditionFailedError(
                f"{model_id} changed while this {change} was being made (generation "
                f"{current.generation}, expected {before.generation}); reread and retry"
            )
        stages = {}
        for v in touched:
            vdoc = tx.get(VERSIONS, version_doc_id(model_id, v))
            stages[v] = ModelVersion.model_validate(vdoc.data if vdoc else {}).stage
        for v in after.versions() - before.versions():
            if stages[v] not in may_start:
                raise ConflictError(
                    f"{model_id} {v} is {stages[v]}; it cannot start serving "
                    f"(allowed: {', '.join(sorted(may_start))})"
                )
        if check is not None:
            check(tx)
        tx.update(
            MODELS,
            model_id,
            {
                "production_version": after.production_version,
                "canary_version": after.canary_version,
                "canary_percentage": after.canary_percentage,
                "generation": after.generation,
                "updated_at": deployment.created_at,
            },
        )
        for v in touched:
            stage = stage_after(v, stages[v], after)
            if stage != stages[v]:
                tx.update(
                    VERSIONS,
                    version_doc_id(model_id, v),
                    {
                        "stage": stage,
                        "stage_reason": stage_reason(deployment, after, stage),
                        "stage_changed_at": deployment.created_at,
                        "stage_changed_by": deployment.actor,
                    },
                )
        tx.create(DEPLOYMENTS, deployment.deployment_id, deployment.as_json())

    documents.transaction(write)
