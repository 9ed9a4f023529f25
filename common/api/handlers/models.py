"""Reading the registry: the models and one model with its versions."""

from __future__ import annotations

from typing import Any

from common.api.calls import Call, Operation
from common.api.views import model_view, version_view


def list_models(call: Call) -> dict[str, Any]:
    return {"models": [model_view(m) for m in call.services.registry.list_models()]}


def get_model(call: Call) -> dict[str, Any]:
    registry = call.services.registry
    model = registry.get_model(call.params["model_id"])
    versions = registry.list_versions(model.model_id)
    production = next((v for v in versions if v.version == model.production_version), None)
    return {
        **model_view(model),
        "production": version_view(production) if production else None,
        "versions": [version_view(v, full=False) for v in versions],
    }


OPERATIONS: dict[str, Operation] = {
    "listModels": Operation(list_models),
    "getModel": Operation(get_model),
}
