"""Shadow evaluations: start, stop, the report (the job: ``shadow_replay.py``)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation, Reply
from common.core.errors import InvalidValuesError
from common.shadow import shadows
from common.shadow.compare import DEFAULT_TOLERANCE

START = TypeAdapter(shadows.ShadowRequest)


def start(call: Call) -> Reply:
    model_id = call.params["model_id"]
    services = call.services
    shadow = shadows.start(
        services.backends.documents,
        services.registry,
        model_id,
        call.body,
        actor=call.principal.subject,
        serving_problems=lambda candidate: services.lifecycle.serving_problems(
            candidate, shadow=False
        ),
        payload_log_enabled=bool(services.payload_log.state(model_id)["enabled"]),
    )
    call.labels.update(model_id=model_id, model_version=shadow.version)
    return Reply(shadow.model_dump(mode="json"), status=201)


def stop(call: Call) -> dict[str, Any]:
    model_id = call.params["model_id"]
    call.services.registry.get_model(model_id)  # 404 for an unknown model
    return shadows.stop(call.services.backends.documents, model_id).model_dump(mode="json")


def _tolerance(call: Call) -> float:
    text = call.query.get("tolerance")
    if text is None:
        return DEFAULT_TOLERANCE
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise InvalidValuesError(
            f"tolerance must be a number in (0, 1], not {text!r}",
            details=[
                {"field": "tolerance", "path": ["tolerance"], "rule": "range", "message": "(0, 1]"}
            ],
        )
    return value


def report(call: Call) -> dict[str, Any]:
    from common.monitoring.html import report_key
    from common.shadow.report import report as build

    model_id = call.params["model_id"]
    services = call.services
    services.registry.get_model(model_id)
    documents = services.backends.documents
    shadow_id = call.query.get("shadow_id")
    shadow = (
        shadows.named(documents, model_id, shadow_id)
        if shadow_id
        else shadows.latest(documents, model_id, call.query.get("version"))
    )
    found = build(services.backends.documents, services.cipher, shadow, tolerance=_tolerance(call))
    html = report_key("shadow", shadow.shadow_id)
    found["report_html"] = html if services.backends.artifacts.exists(html) else None
    return found


def list_shadows(call: Call) -> dict[str, Any]:
    model_id = call.params["model_id"]
    call.services.registry.get_model(model_id)
    found = shadows.every(call.services.backends.documents, model_id)
    return {"shadows": [s.model_dump(mode="json") for s in found]}


OPERATIONS: dict[str, Operation] = {
    "startShadow": Operation(start, body=START),
    "stopShadow": Operation(stop),
    "getShadowReport": Operation(report),
    "listShadows": Operation(list_shadows),
}
