"""What a compliance rule is, what it is given and how it answers: the shared types and
helpers of ``common/monitoring/compliance/checks.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from common.backends import Backends
from common.backends.base import DocumentStore
from common.core.config import Settings
from common.core.errors import NotFoundError
from common.registry.records import ModelRecord, ModelVersion, Registry
from common.security.crypto import EnvelopeCipher


class ComplianceSources(Protocol):
    """What the compliance checks read; the instance's Services is one."""

    @property
    def backends(self) -> Backends: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def cipher(self) -> EnvelopeCipher: ...


Severity = Literal["critical", "high", "medium", "low"]
RuleId = Literal[
    "GDPR_001", "MODEL_001", "MODEL_002", "AUDIT_001", "FAIRNESS_001", "SEC_001", "MON_001"
]
Verdict = tuple[bool | None, list[dict[str, Any]]]


@dataclass(frozen=True)
class PersonalRecords:
    """A collection whose records hold personal data until ``purge_retention`` removes it:
    GDPR_001 fails on any dated (``time_field``) before the retention period that still
    holds one of ``fields``. A value in ``cleared`` (what erasure writes) holds nothing."""

    collection: str
    time_field: str
    fields: tuple[str, ...]
    cleared: tuple[str, ...] = ()

    def held(self, data: dict[str, Any]) -> list[str]:
        """The names of the fields of ``data`` that hold personal data."""
        return [
            name
            for name in self.fields
            if _filled(data.get(name)) and data.get(name) not in self.cleared
        ]


@dataclass(frozen=True)
class ComplianceContext:
    services: ComplianceSources
    now: datetime
    more_personal: tuple[PersonalRecords, ...] = ()
    """Collections owned by packages above this one (batch jobs), given by the caller."""

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("a compliance context needs a timezone-aware time")

    @property
    def documents(self) -> DocumentStore:
        return self.services.backends.documents

    def production(self) -> list[tuple[ModelRecord, ModelVersion | None]]:
        """Every model with a production version, and that version (None if unregistered)."""
        registry, found = self.services.registry, []
        for model in registry.list_models():
            if model.production_version is not None:
                try:
                    version: ModelVersion | None = registry.get_version(
                        model.model_id, model.production_version
                    )
                except NotFoundError:
                    version = None
                found.append((model, version))
        return found


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    name: str
    category: str
    severity: Severity
    passed: bool | None
    """None: not applicable."""
    details: list[dict[str, Any]] = field(default_factory=list)
    remediation: str = ""


@dataclass(frozen=True)
class Rule:
    rule_id: RuleId
    name: str
    category: str
    severity: Severity
    remediation: str
    check: Callable[[ComplianceContext], Verdict]


# --- helpers ---------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string as an aware UTC datetime; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def finding(passed: bool | None, reason: str = "", **fields: Any) -> dict[str, Any]:
    """One detail: what was checked (``fields``), whether it passed, and, unless it
    passed, why."""
    return {**fields, "passed": passed, **({"reason": reason} if reason and not passed else {})}


def verdict(details: list[dict[str, Any]]) -> Verdict:
    """Failed if any finding failed, passed if any passed, else not applicable."""
    states = [d.get("passed") for d in details]
    return (False if False in states else True if True in states else None), details


def _filled(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and value != [] and value != {}


def _hour(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H")


def _per_production_version(
    ctx: ComplianceContext, judge: Callable[[ModelRecord, ModelVersion], dict[str, Any]]
) -> Verdict:
    details = []
    for model, version in ctx.production():
        where = {"model_id": model.model_id, "version": model.production_version}
        reason = "the production pointer names a version that is not registered"
        details.append(
            finding(False, reason, **where) if version is None else judge(model, version)
        )
    return verdict(details or [finding(None, "no model has a production version")])


# --- the checks ------------------------------------------------------------------------
