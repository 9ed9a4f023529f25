"""Deployment records and the serving state they move between.

A deployment is created once and never updated: the history of a model's deployments says
which version served when, who changed it, and what the gate and verification found.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.registry import ModelRecord

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
