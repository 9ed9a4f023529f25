"""Operation handlers, keyed by the OpenAPI operationId.

Routes and permissions live in ``openapi.yaml``; this table says what runs and which body
schema it takes. A test checks that the two name the same operations.
"""

from __future__ import annotations

from typing import Any

from common import serving
from common.http import Call, Operation
from common.registry import ModelRecord, ModelVersion

_EVIDENCE = {"golden_set", "drift_baseline", "artifact_key", "artifact_uri"}
"""Kept in the registry for verification, monitoring and loading; not part of the API
answer (storage locations are nobody's business but the platform's)."""
_VERSION_SUMMARY = {"input_schema", "example", "model_card", "reports", *_EVIDENCE}


def _summary(model: ModelRecord) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _version(record: ModelVersion, *, full: bool) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude=_EVIDENCE if full else _VERSION_SUMMARY)


def list_models(call: Call) -> dict[str, Any]:
    return {"models": [_summary(m) for m in call.services.registry.list_models()]}


def get_model(call: Call) -> dict[str, Any]:
    registry = call.services.registry
    model = registry.get_model(call.params["model_id"])
    versions = registry.list_versions(model.model_id)
    production = next((v for v in versions if v.version == model.production_version), None)
    return {
        **_summary(model),
        "production": _version(production, full=True) if production else None,
        "versions": [_version(v, full=False) for v in versions],
    }


def predict_handler(model_id: str) -> Any:
    def handle(call: Call) -> dict[str, Any]:
        services = call.services
        return serving.predict(
            model_id=model_id,
            request=call.body,
            snapshots=services.snapshots,
            pool=services.pool,
            request_id=call.request_id,
            max_details=services.settings.max_error_details,
            labels=call.labels,
        )

    return handle


OPERATIONS: dict[str, Operation] = {
    "listModels": Operation(list_models),
    "getModel": Operation(get_model),
    **{
        f"predict{model_id.capitalize()}": Operation(
            predict_handler(model_id), body=serving.PREDICT_REQUEST
        )
        for model_id in ("cca", "dcf", "ensemble", "risk", "sentiment")
    },
}
