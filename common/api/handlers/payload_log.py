"""The payload log's settings per model, and reading a kept prediction back."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation
from common.audit.payload_log import PayloadLogChange, model_input_fields, output_echoes
from common.core.errors import InvalidValuesError
from common.core.permissions import ADMIN
from common.core.validation import validate

CHANGE = TypeAdapter(PayloadLogChange)


def get_settings(call: Call) -> dict[str, Any]:
    model_id = call.params["model_id"]
    model = call.services.registry.get_model(model_id)  # 404 for an unknown model
    payload_log = call.services.payload_log
    state = payload_log.state(model_id)
    return {
        **state,
        "redacted_outputs": output_echoes(model.kind, state["redact_fields"]),
        "changes": payload_log.history(model_id),
    }


def set_settings(call: Call) -> dict[str, Any]:
    model_id = call.params["model_id"]
    model = call.services.registry.get_model(model_id)
    known = model_input_fields(model.kind)
    result = call.services.payload_log.change(
        model_id, call.body, actor=call.principal.subject, known_fields=known
    )
    call.labels.update(model_id=model_id)
    return result


def _kept(call: Call) -> dict[str, Any]:
    """A kept prediction, to the principal who made it or an admin: to anyone else it
    does not exist (404), so request ids cannot be probed."""
    request_id, principal = call.params["request_id"], call.principal
    own = None if principal.allows(ADMIN) else principal.subject
    kept = call.services.payload_log.get(request_id, own)
    call.labels.update(model_id=kept.get("model_id"), model_version=kept.get("model_version"))
    return kept


def get_prediction(call: Call) -> dict[str, Any]:
    return _kept(call)


def _query_int(call: Call, name: str, default: int) -> Any:
    text = call.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return text  # the options' schema refuses it with its own message


def explain_prediction(call: Call) -> dict[str, Any]:
    """The kept prediction explained again: its stored inputs, the version that served it,
    that version's baseline, and the seed and path count asked for (default 0 and the
    engine's default), so the same call gives the same numbers."""
    from common.explain.engine import DEFAULT_PATHS
    from common.serving.explanations import (
        EXPLANATION_PARAMETERS,
        check_budget,
        explain_version,
    )

    kept = _kept(call)
    model_id, version = str(kept["model_id"]), str(kept["model_version"])
    call.principal.require(f"model:{model_id}:explain")
    if kept.get("redacted_fields"):
        fields = ", ".join(kept["redacted_fields"])
        raise InvalidValuesError(
            f"this prediction was kept without {fields} (the payload log's redact_fields), "
            "so it cannot be explained again",
            details=[{"field": "redacted_fields", "rule": "redacted", "message": fields}],
        )
    services = call.services
    options = validate(
        EXPLANATION_PARAMETERS,
        {"paths": _query_int(call, "paths", DEFAULT_PATHS), "seed": _query_int(call, "seed", 0)},
        max_details=services.settings.max_error_details,
    )
    check_budget(len(kept["instances"]), options, services.settings.explain_budget)
    record = services.registry.get_version(model_id, version)
    explained = explain_version(services.predictor, record, kept["instances"], options)
    return {
        "request_id": kept["request_id"],
        "model_id": model_id,
        "model_version": version,
        "predictions": kept["predictions"],
        **explained,
    }


OPERATIONS: dict[str, Operation] = {
    "getPayloadLog": Operation(get_settings),
    "setPayloadLog": Operation(set_settings, body=CHANGE),
    "getPrediction": Operation(get_prediction),
    "explainPrediction": Operation(explain_prediction),
}
