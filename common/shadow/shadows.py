"""Shadow evaluations: a candidate version run on the inputs production served, never
answering anyone.

A shadow is started for one model and one candidate that passes what a canary must pass
(its gate, without the shadow criterion this evaluation is there to meet, and its
verification); at most one is active per model, and starting another stops it. The
``shadow_replay`` job (``common/shadow/replay.py``) replays the payload log's kept
predictions into pairs, and the report compares them (``common/shadow/compare.py``). No
latency is added to serving and nothing runs after a response: the candidate runs in the
job, on what the payload log already kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.backends.base import DocumentStore, Filter, Transaction, rfc3339
from common.core.errors import ConflictError, InvalidValuesError, NotFoundError
from common.core.validation import StrictModel
from common.registry.records import ModelVersion, Registry, utcnow

SHADOWS = "shadows"
PAIRS = "shadow_pairs"


class ShadowRequest(StrictModel):
    """The body of ``POST /v1/models/{model_id}/shadow``."""

    version: str = Field(min_length=5, max_length=64)
    sampling_rate: float = Field(1.0, gt=0.0, le=1.0)
    """Share of the kept predictions replayed (a keyed hash of the request id decides)."""
    until: str = Field(max_length=40, description="ISO 8601 with a time zone.")
    reason: str = Field("", max_length=500)

    @field_validator("until")
    @classmethod
    def _moment(cls, text: str) -> str:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("until must be an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise ValueError("until must name its time zone (e.g. 2027-01-31T00:00:00Z)")
        try:
            return rfc3339(moment.astimezone(UTC))
        except OverflowError:  # an offset can carry a time past either end of the calendar
            raise ValueError(
                "until is out of range: in UTC it falls outside years 1 to 9999"
            ) from None


class Shadow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    shadow_id: str
    model_id: str
    version: str
    production_version: str
    sampling_rate: float
    until: str
    status: Literal["active", "stopped"] = "active"
    created_at: str
    created_by: str
    reason: str = ""
    stopped_at: str | None = None
    checkpoint: str = ""
    """Time of the last kept prediction the replay has read (with ``checkpoint_id``)."""
    checkpoint_id: str = ""
    replayed: int = 0
    """Kept predictions replayed (pairs stored), over every run."""

    def running(self, now: str) -> bool:
        return self.status == "active" and now < self.until


def start(
    documents: DocumentStore,
    registry: Registry,
    model_id: str,
    request: ShadowRequest,
    *,
    actor: str,
    serving_problems: Callable[[ModelVersion], list[dict[str, Any]]],
    payload_log_enabled: bool,
    clock: Callable[[], str] = utcnow,
) -> Shadow:
    """Check the candidate as a canary is checked, then make it the model's one shadow."""
    now = clock()
    until = request.until
    if until <= now:
        raise InvalidValuesError(
            f"until must be in the future (it is {until}, now is {now})",
            details=[
                {"field": "until", "path": ["until"], "rule": "future", "message": "in the past"}
            ],
        )
    model = registry.get_model(model_id)
    candidate = registry.get_version(model_id, request.version)
    if model.production_version is None:
        raise ConflictError(f"{model_id} has no production version to compare a shadow with")
    if candidate.version == model.production_version:
        raise ConflictError(f"{model_id} {candidate.version} is the production version")
    if not payload_log_enabled:
        raise ConflictError(
            f"the payload log of {model_id} is off: a shadow replays the predictions it keeps; "
            f"turn it on first (PUT /v1/models/{model_id}/payload-log)"
        )
    problems = []
    if candidate.stage != "staging":
        problems.append(
            {
                "criterion": "stage",
                "passed": False,
                "message": f"{candidate.version} is {candidate.stage}, not staging",
            }
        )
    else:
        problems = serving_problems(candidate)
    if problems:
        raise InvalidValuesError(
            f"{model_id} {candidate.version} cannot be a shadow: "
            + ", ".join(str(p["criterion"]) for p in problems),
            details=problems,
        )
    shadow = Shadow(
        shadow_id=uuid.uuid4().hex,
        model_id=model_id,
        version=candidate.version,
        production_version=model.production_version,
        sampling_rate=request.sampling_rate,
        until=until,
        created_at=now,
        created_by=actor,
        reason=request.reason,
        checkpoint=now,
    )

    def write(tx: Transaction) -> None:
        for doc in active(documents, model_id):
            tx.update(SHADOWS, doc.shadow_id, {"status": "stopped", "stopped_at": now})
        tx.create(SHADOWS, shadow.shadow_id, shadow.model_dump(mode="json"))

    documents.transaction(write)
    return shadow


def active(documents: DocumentStore, model_id: str | None = None) -> list[Shadow]:
    filters = [Filter("status", "==", "active")]
    if model_id is not None:
        filters.append(Filter("model_id", "==", model_id))
    return [Shadow.model_validate(d.data) for d in documents.query(SHADOWS, filters)]


def latest(documents: DocumentStore, model_id: str, version: str | None = None) -> Shadow:
    """The model's newest shadow (of ``version``, when given); 404 if there is none."""
    filters = [Filter("model_id", "==", model_id)]
    if version is not None:
        filters.append(Filter("version", "==", version))
    found = [Shadow.model_validate(d.data) for d in documents.query(SHADOWS, filters)]
    if not found:
        of = f" of {version}" if version else ""
        raise NotFoundError(f"{model_id} has no shadow evaluation{of}")
    return max(found, key=lambda s: (s.created_at, s.shadow_id))


def named(documents: DocumentStore, model_id: str, shadow_id: str) -> Shadow:
    """One shadow of the model by id; 404 for another model's or an unknown one."""
    doc = documents.get(SHADOWS, shadow_id) if shadow_id.isalnum() else None
    if doc is None or doc.data.get("model_id") != model_id:
        raise NotFoundError(f"{model_id} has no shadow evaluation {shadow_id!r}")
    return Shadow.model_validate(doc.data)


def every(documents: DocumentStore, model_id: str) -> list[Shadow]:
    """The model's shadows, newest first."""
    found = [
        Shadow.model_validate(d.data)
        for d in documents.query(SHADOWS, [Filter("model_id", "==", model_id)])
    ]
    return sorted(found, key=lambda s: (s.created_at, s.shadow_id), reverse=True)


def stop(documents: DocumentStore, model_id: str, *, clock: Callable[[], str] = utcnow) -> Shadow:
    running = active(documents, model_id)
    if not running:
        raise ConflictError(f"{model_id} has no active shadow evaluation")
    now = clock()
    for shadow in running:
        documents.update(SHADOWS, shadow.shadow_id, {"status": "stopped", "stopped_at": now})
    return running[0].model_copy(update={"status": "stopped", "stopped_at": now})


def pair_record_id(pair_id: str) -> str:
    """What a pair's sealed outputs are bound to."""
    return f"shadow-pair:{pair_id}"
