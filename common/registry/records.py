"""The model registry: immutable versions and each model's production pointer.

A version's artifact is stored content-addressed (``models/<id>/sha256/<hex>``), so a
retried registration never collides with its own half-finished attempt; the version
document is the single commit point and is created only if absent. Versions never
change after that. The model document holds the production pointer and a generation
number that every serving-state change increments under a transaction.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.backends.base import ArtifactStore, DocumentStore, Filter, Transaction, rfc3339
from common.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidValuesError,
    NotFoundError,
)
from common.models import kinds

MODELS = "models"
VERSIONS = "model_versions"
GATE_CHANGES = "gate_changes"

Stage = Literal["development", "staging", "production", "deprecated", "retired"]

MODEL_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SEMVER = re.compile(
    r"^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)


MODEL_CARD_FIELDS = (  # what a complete model card states; the compliance scan checks it
    "intended_use",
    "training_data",
    "limitations",
    "owner",
    "risk_tier",
    "validation_date",
)


def utcnow() -> str:
    return rfc3339(datetime.now(UTC))


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Semantic-version ordering: 1.10.0 after 1.9.0; a pre-release before its release."""
    core, _, pre = version.partition("-")
    major, minor, patch = (int(x) for x in core.split("."))
    return (major, minor, patch, 0 if pre else 1, pre)


class ModelVersion(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    model_id: str
    version: str
    kind: str
    artifact_key: str
    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    metrics: dict[str, float] = Field(default_factory=dict)
    metrics_fresh_sample: dict[str, float] = Field(default_factory=dict)
    """The same metrics on a fresh sample from an independent seed, with its size ``n``
    and ``seed``: a test split that flatters the model shows up as a gap (the gate's
    ``max_fresh_sample_gap``). Empty when the training data has no generator."""
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    input_schema: dict[str, Any] = Field(default_factory=dict)
    example: dict[str, Any] = Field(default_factory=dict)
    model_card: dict[str, Any] = Field(default_factory=dict)
    golden_set: list[dict[str, Any]] = Field(default_factory=list)
    drift_baseline: dict[str, Any] = Field(default_factory=dict)
    explanation_baseline: dict[str, Any] | None = None
    """The instance explanations are measured against (training medians or a reference
    company); None when registered without one (docs/EXPLANATIONS.md)."""
    reports: dict[str, Any] = Field(default_factory=dict)
    stage: Stage = "development"
    stage_reason: str = ""
    """Why the version is in its stage: the reason its last move gave (a deprecated
    version names the version that replaced it), so a validator reading the registry
    learns why an older version stopped serving."""
    stage_changed_at: str = ""
    stage_changed_by: str = ""
    created_at: str
    created_by: str


class ModelRecord(BaseModel):
    """A model and its serving state; the generation counts serving-state changes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_id: str
    kind: str
    description: str = ""
    production_version: str | None = None
    canary_version: str | None = None
    canary_percentage: int = 0
    generation: int = 0
    gate: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    updated_at: str


def version_doc_id(model_id: str, version: str) -> str:
    return f"{model_id}@{version}"


def check_model_id(model_id: str) -> str:
    if not MODEL_ID.match(model_id):
        raise InvalidValuesError(
            f"model id {model_id!r} must be lowercase letters, digits and '-', "
            "starting with a letter, at most 63 characters",
            details=[{"field": "model_id", "rule": "pattern", "value": model_id}],
        )
    return model_id


def check_version(version: str) -> str:
    if not SEMVER.match(version):
        raise InvalidValuesError(
            f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH[-pre])",
            details=[{"field": "version", "rule": "semver", "value": version}],
        )
    return version


class Registry:
    def __init__(
        self,
        documents: DocumentStore,
        artifacts: ArtifactStore,
        clock: Callable[[], str] = utcnow,
    ) -> None:
        self._documents = documents
        self._artifacts = artifacts
        self._clock = clock

    # --- reads -------------------------------------------------------------------------
    def get_model(self, model_id: str) -> ModelRecord:
        doc = self._documents.get(MODELS, model_id) if MODEL_ID.match(model_id) else None
        if doc is None:
            raise NotFoundError(f"model {model_id!r} is not registered")
        return ModelRecord.model_validate(doc.data)

    def list_models(self) -> list[ModelRecord]:
        docs = self._documents.query(MODELS)
        return sorted((ModelRecord.model_validate(d.data) for d in docs), key=lambda m: m.model_id)

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        valid = MODEL_ID.match(model_id) and SEMVER.match(version)
        doc = self._documents.get(VERSIONS, version_doc_id(model_id, version)) if valid else None
        if doc is None:
            raise NotFoundError(f"model {model_id!r} has no version {version!r}")
        return ModelVersion.model_validate(doc.data)

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        docs = self._documents.query(VERSIONS, [Filter("model_id", "==", model_id)])
        versions = [ModelVersion.model_validate(d.data) for d in docs]
        return sorted(versions, key=lambda v: version_key(v.version))

    def read_artifact(self, record: ModelVersion) -> bytes:
        """The artifact's bytes, refused unless they hash to what the registry recorded."""
        try:
            data = self._artifacts.get(record.artifact_key)
        except NotFoundError:
            raise IntegrityError(
                f"artifact {record.artifact_key} of {record.model_id} {record.version} is "
                "missing from the artifact store"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.artifact_sha256:
            raise IntegrityError(
                f"artifact of {record.model_id} {record.version} does not match its "
                "registered SHA-256; refusing to load it"
            )
        return data

    # --- writes ------------------------------------------------------------------------
    def register(
        self,
        *,
        model_id: str,
        version: str,
        kind: str,
        artifact: bytes,
        created_by: str,
        metrics: dict[str, float] | None = None,
        metrics_fresh_sample: dict[str, float] | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        input_schema: dict[str, Any] | None = None,
        example: dict[str, Any] | None = None,
        model_card: dict[str, Any] | None = None,
        golden_set: list[dict[str, Any]] | None = None,
        drift_baseline: dict[str, Any] | None = None,
        explanation_baseline: dict[str, Any] | None = None,
        reports: dict[str, Any] | None = None,
        gate: dict[str, Any] | None = None,
        stage_reason: str = "",
    ) -> ModelVersion:
        """Store a new immutable version (stage ``development``).

        ``gate``: the model's promotion criteria, kept if this is its first version.
        ``stage_reason``: why it is left in development, when that is known already.
        """
        check_model_id(model_id)
        check_version(version)
        if kind not in kinds():
            raise InvalidValuesError(
                f"unknown model kind {kind!r}; known kinds: {', '.join(kinds())}",
                details=[{"field": "kind", "rule": "enum", "value": kind}],
            )
        doc_id = version_doc_id(model_id, version)
        if self._documents.get(VERSIONS, doc_id) is not None:
            raise ConflictError(f"model {model_id!r} version {version!r} is already registered")
        sha = hashlib.sha256(artifact).hexdigest()
        key = f"models/{model_id}/sha256/{sha}"
        if self._artifacts.exists(key):
            info_uri = self._artifacts.uri(key)
        else:
            try:
                info_uri = self._artifacts.put(key, artifact).uri
            except ConflictError:  # a concurrent registration stored the same bytes
                info_uri = self._artifacts.uri(key)
        now = self._clock()
        record = ModelVersion(
            model_id=model_id,
            version=version,
            kind=kind,
            artifact_key=key,
            artifact_uri=info_uri,
            artifact_sha256=sha,
            artifact_size=len(artifact),
            metrics=metrics or {},
            metrics_fresh_sample=metrics_fresh_sample or {},
            description=description,
            tags=tags or {},
            input_schema=input_schema or {},
            example=example or {},
            model_card=model_card or {},
            golden_set=golden_set or [],
            drift_baseline=drift_baseline or {},
            explanation_baseline=explanation_baseline or None,
            reports=reports or {},
            stage_reason=stage_reason,
            stage_changed_at=now if stage_reason else "",
            stage_changed_by=created_by if stage_reason else "",
            created_at=now,
            created_by=created_by,
        )

        def commit(tx: Transaction) -> None:
            model = tx.get(MODELS, model_id)
            if tx.get(VERSIONS, doc_id) is not None:
                raise ConflictError(f"model {model_id!r} version {version!r} is already registered")
            if model is not None and model.data.get("kind") != kind:
                raise ConflictError(
                    f"model {model_id!r} is of kind {model.data.get('kind')!r}, not {kind!r}"
                )
            if model is None:
                tx.create(
                    MODELS,
                    model_id,
                    ModelRecord(
                        model_id=model_id,
                        kind=kind,
                        description=description,
                        gate=gate or {},
                        created_at=now,
                        updated_at=now,
                    ).model_dump(mode="json"),
                )
            tx.create(VERSIONS, doc_id, record.model_dump(mode="json"))

        self._documents.transaction(commit)
        return record

    def change_gate(
        self,
        model_id: str,
        gate: dict[str, Any],
        *,
        actor: str,
        reason: str,
    ) -> dict[str, Any]:
        """Replace a model's promotion gate and keep the record of the change (who, when,
        from what, to what, why) in the same transaction; the serving state is untouched."""
        now = self._clock()
        change_id = uuid.uuid4().hex

        def write(tx: Transaction) -> dict[str, Any]:
            doc = tx.get(MODELS, model_id) if MODEL_ID.match(model_id) else None
            if doc is None:
                raise NotFoundError(f"model {model_id!r} is not registered")
            record = {
                "change_id": change_id,
                "model_id": model_id,
                "actor": actor,
                "created_at": now,
                "from": doc.data.get("gate") or {},
                "to": gate,
                "reason": reason,
            }
            tx.update(MODELS, model_id, {"gate": gate, "updated_at": now})
            tx.create(GATE_CHANGES, change_id, record)
            return record

        result: dict[str, Any] = self._documents.transaction(write)
        return result
