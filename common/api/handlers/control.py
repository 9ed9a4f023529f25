"""Control-plane handlers: register a version, move its stage, promote, roll back.

Each handler validates its body (the schemas below), acts through the registry and the
lifecycle, and answers with the records it changed. A change to serving state is seen by
this instance at once and by every other instance within the snapshot TTL.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter

from common.api.calls import Call, Operation, Reply
from common.api.views import model_view, version_view
from common.core.errors import ForbiddenError, GoneError, InvalidValuesError, ServiceError
from common.core.validation import StrictModel, field_name, problems_from
from common.explain.engine import NEEDS_BASELINE
from common.models import kinds, runtime_class
from common.promotion.gate import GateSpec

MAX_GOLDEN_CASES = 200
MAX_NESTING = 16
"""Deepest nesting of a free-form field: Firestore stores at most 20 levels of maps."""


def _nesting(value: Any, depth: int = 0) -> int:
    if isinstance(value, dict):
        return max((_nesting(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_nesting(v, depth + 1) for v in value), default=depth + 1)
    return depth


def _shallow(value: Any) -> Any:
    if _nesting(value) > MAX_NESTING:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels")
    return value


Shallow = Annotated[dict[str, Any], AfterValidator(_shallow)]


class GoldenCase(StrictModel):
    instance: Shallow
    expected: Shallow


class RegisterRequest(StrictModel):
    version: str = Field(min_length=5, max_length=64, description="Semantic version.")
    kind: str = Field(min_length=1, max_length=32, description="Model kind (runtime).")
    artifact_base64: str = Field(
        min_length=4,
        max_length=14 * 1024 * 1024,  # what fits in a 10 MiB body, base64-encoded
        description="The artifact's bytes, base64.",
    )
    description: str = Field("", max_length=4000)
    metrics: dict[str, float] = Field(default_factory=dict, max_length=200)
    metrics_fresh_sample: dict[str, float] = Field(
        default_factory=dict,
        max_length=200,
        description="The metrics again on a fresh sample, with its size n and seed.",
    )
    tags: dict[str, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=50
    )
    model_card: Shallow = Field(default_factory=dict)
    golden_set: list[GoldenCase] = Field(default_factory=list, max_length=MAX_GOLDEN_CASES)
    drift_baseline: Shallow = Field(default_factory=dict)
    explanation_baseline: Shallow | None = Field(
        None, description="The instance explanations are measured against (an instance)."
    )
    example: Shallow = Field(default_factory=dict)
    reports: Shallow = Field(default_factory=dict)
    gate: GateSpec | None = Field(
        None, description="Promotion criteria, with a model's first version only (admin)."
    )


REASON_HELP = "Why: kept in the deployment and in the record of each version it moves."


class StageRequest(StrictModel):
    stage: Literal["development", "staging", "retired"]
    reason: str = Field("", max_length=500, description=REASON_HELP)


class PromoteRequest(StrictModel):
    version: str = Field(min_length=5, max_length=64)
    traffic_percentage: int = Field(100, ge=1, le=100)
    expected_generation: int | None = Field(None, ge=0)
    reason: str = Field("", max_length=500, description=REASON_HELP)


class RollbackRequest(StrictModel):
    deployment_id: str | None = Field(None, min_length=1, max_length=64)
    expected_generation: int | None = Field(None, ge=0)
    reason: str = Field("", max_length=500, description=REASON_HELP)


REGISTER = TypeAdapter(RegisterRequest)
STAGE = TypeAdapter(StageRequest)
PROMOTE = TypeAdapter(PromoteRequest)
ROLLBACK = TypeAdapter(RollbackRequest)


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValuesError(
            "artifact_base64 is not valid base64",
            details=[{"field": "artifact_base64", "rule": "base64"}],
        ) from None


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _check_inputs(kind: str, body: RegisterRequest) -> None:
    """The example, the explanation baseline and every golden input must be valid for the
    kind's schema."""
    from pydantic import ValidationError

    runtime = runtime_class(kind)
    problems: list[dict[str, Any]] = []
    checks: list[tuple[list[str | int], Any]] = []
    if body.example:
        checks.append((["example"], body.example))
    if body.explanation_baseline is not None:
        if kind not in NEEDS_BASELINE:
            raise InvalidValuesError(
                f"a {kind} explanation takes no baseline (docs/EXPLANATIONS.md)",
                details=[{"field": "explanation_baseline", "rule": "no_baseline"}],
            )
        checks.append((["explanation_baseline"], body.explanation_baseline))
    checks += [
        (["golden_set", i, "instance"], case.instance) for i, case in enumerate(body.golden_set)
    ]
    for path, value in checks:
        try:
            runtime.instances_adapter().validate_python([value])
        except ValidationError as exc:
            for problem in problems_from(exc):
                problem["path"] = [*path, *problem["path"][1:]]
                problem["field"] = field_name(problem["path"])
                problems.append(problem)
    if problems:
        raise InvalidValuesError(
            "the example, golden set or explanation baseline does not fit the model's input schema",
            details=problems,
        )


def _gate_to_store(call: Call, model_id: str, gate: GateSpec) -> GateSpec | None:
    """The gate decides what may serve: only admin sets it, and only for a new model. A
    later version may carry the model's gate unchanged (a builder's export does): that
    changes nothing and is accepted; a different one is refused."""
    from common.core.errors import NotFoundError
    from common.promotion.gate import spec_for

    try:
        model = call.services.registry.get_model(model_id)
    except NotFoundError:
        model = None
    if model is not None:
        if spec_for(model.kind, model.gate) == gate:
            return None
        raise InvalidValuesError(
            f"model {model_id!r} already has its promotion gate, set with its first version; "
            "this version's gate differs from it (send the same gate, or none)",
            details=[{"field": "gate", "rule": "first_version_only"}],
        )
    if not call.principal.allows("admin"):
        raise ForbiddenError(
            "setting a model's promotion gate needs the admin permission",
            details=[{"required_permission": "admin"}],
        )
    return gate


def register_version(call: Call) -> Reply:
    body: RegisterRequest = call.body
    model_id = call.params["model_id"]
    artifact = _decode(body.artifact_base64)
    # A pickled artifact runs code when it is loaded: uploading one is deploying code.
    if not _is_json(artifact) and not call.principal.allows("admin"):
        raise ForbiddenError(
            "uploading an artifact that executes code when loaded (pickle/joblib) "
            "needs the admin permission",
            details=[{"required_permission": "admin"}],
        )
    gate = _gate_to_store(call, model_id, body.gate) if body.gate is not None else None
    if body.kind not in kinds():
        raise InvalidValuesError(
            f"unknown model kind {body.kind!r}",
            details=[{"field": "kind", "rule": "enum", "value": body.kind}],
        )
    runtime = runtime_class(body.kind)
    _check_inputs(body.kind, body)
    try:
        runtime.from_artifact(artifact)
    except ServiceError as exc:
        raise InvalidValuesError(
            f"the artifact does not load as a {body.kind} model: {exc.message}",
            details=[{"field": "artifact_base64", "rule": "loads"}],
        ) from None
    except Exception as exc:  # a broken upload must answer 422, never 500
        raise InvalidValuesError(
            f"the artifact does not load as a {body.kind} model ({type(exc).__name__})",
            details=[{"field": "artifact_base64", "rule": "loads"}],
        ) from None
    record = call.services.registry.register(
        model_id=model_id,
        version=body.version,
        kind=body.kind,
        artifact=artifact,
        created_by=call.principal.subject,
        metrics=body.metrics,
        metrics_fresh_sample=body.metrics_fresh_sample,
        description=body.description,
        tags=body.tags,
        input_schema=runtime.input_schema(),
        example=body.example,
        model_card=body.model_card,
        golden_set=[case.model_dump() for case in body.golden_set],
        drift_baseline=body.drift_baseline,
        explanation_baseline=body.explanation_baseline,
        reports=body.reports,
        gate=gate.model_dump() if gate else None,
    )
    call.labels.update(model_id=model_id, model_version=record.version)
    return Reply(version_view(record), status=201)


def get_version(call: Call) -> dict[str, Any]:
    record = call.services.registry.get_version(call.params["model_id"], call.params["version"])
    if record.stage == "retired":
        raise GoneError(f"{record.model_id} {record.version} is retired")
    return version_view(record)


def set_stage(call: Call) -> dict[str, Any]:
    body: StageRequest = call.body
    record = call.services.lifecycle.set_stage(
        call.params["model_id"],
        call.params["version"],
        body.stage,
        actor=call.principal.subject,
        reason=body.reason,
    )
    return version_view(record)


def promote(call: Call) -> dict[str, Any]:
    body: PromoteRequest = call.body
    model_id = call.params["model_id"]
    services = call.services
    deployment = services.lifecycle.promote(
        model_id,
        body.version,
        actor=call.principal.subject,
        traffic_percentage=body.traffic_percentage,
        expected_generation=body.expected_generation,
        reason=body.reason,
    )
    services.snapshots.invalidate(model_id)
    call.labels.update(model_id=model_id, model_version=body.version)
    return {
        "deployment": deployment.as_json(),
        "model": model_view(services.registry.get_model(model_id)),
    }


def rollback(call: Call) -> dict[str, Any]:
    body: RollbackRequest = call.body
    model_id = call.params["model_id"]
    services = call.services
    outcome = services.lifecycle.rollback_outcome(
        model_id,
        actor=call.principal.subject,
        deployment_id=body.deployment_id,
        expected_generation=body.expected_generation,
        reason=body.reason,
    )
    if not outcome.replayed:  # a retry answered with the rollback it repeats changes nothing
        services.snapshots.invalidate(model_id)
        if services.cache is not None:  # a version rolled back is suspect: drop what it served
            services.cache.purge_model(model_id)
    call.labels.update(model_id=model_id)
    return {
        "deployment": outcome.deployment.as_json(),
        "model": model_view(services.registry.get_model(model_id)),
    }


def list_deployments(call: Call) -> dict[str, Any]:
    history = call.services.lifecycle.history(call.params["model_id"])
    return {"deployments": [d.as_json() for d in history]}


OPERATIONS: dict[str, Operation] = {
    "getModelVersion": Operation(get_version),
    "listDeployments": Operation(list_deployments),
    "registerModelVersion": Operation(register_version, body=REGISTER),
    "setVersionStage": Operation(set_stage, body=STAGE),
    "promoteModel": Operation(promote, body=PROMOTE),
    "rollbackModel": Operation(rollback, body=ROLLBACK),
}
