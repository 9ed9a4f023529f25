"""The payload log's settings per model, and reading a kept prediction back."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.audit.payload_log import PayloadLogChange, model_input_fields
from common.core.errors import NotFoundError
from common.core.permissions import ADMIN

CHANGE = TypeAdapter(PayloadLogChange)


def get_settings(call: Call) -> dict[str, Any]:
    model_id = call.params["model_id"]
    call.services.registry.get_model(model_id)  # 404 for an unknown model
    payload_log = call.services.payload_log
    return {**payload_log.state(model_id), "changes": payload_log.history(model_id)}


def set_settings(call: Call) -> dict[str, Any]:
    model_id = call.params["model_id"]
    model = call.services.registry.get_model(model_id)
    known = model_input_fields(model.kind)
    result = call.services.payload_log.change(
        model_id, call.body, actor=call.principal.subject, known_fields=known
    )
    call.labels.update(model_id=model_id)
    return result


def get_prediction(call: Call) -> dict[str, Any]:
    """A kept prediction, to the principal who made it or an admin: to anyone else it
    does not exist (404), so request ids cannot be probed."""
    request_id = call.params["request_id"]
    kept = call.services.payload_log.get(request_id)
    principal = call.principal
    if kept.get("principal") != principal.subject and not principal.allows(ADMIN):
        raise NotFoundError(f"no prediction with request id {request_id!r} is kept")
    call.labels.update(model_id=kept.get("model_id"), model_version=kept.get("model_version"))
    return kept


OPERATIONS: dict[str, Operation] = {
    "getPayloadLog": Operation(get_settings),
    "setPayloadLog": Operation(set_settings, body=CHANGE),
    "getPrediction": Operation(get_prediction),
}
