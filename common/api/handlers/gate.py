"""A model's promotion gate changed after its first version: admin only, with a reason,
recorded (``gate_changes``). The gate decides what may serve, so a change is as visible
as a deployment: ``GET /v1/models/{id}`` shows the gate in force."""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter

from common.api.calls import Call, Operation
from common.api.views import model_view
from common.core.validation import StrictModel
from common.promotion.gate import GateSpec


class GateChange(StrictModel):
    gate: GateSpec
    reason: str = Field(min_length=1, max_length=500)


def change_gate(call: Call) -> dict[str, Any]:
    body: GateChange = call.body
    model_id = call.params["model_id"]
    registry = call.services.registry
    record = registry.change_gate(
        model_id,
        body.gate.model_dump(mode="json"),
        actor=call.principal.subject,
        reason=body.reason,
    )
    call.labels.update(model_id=model_id)
    return {"change": record, "model": model_view(registry.get_model(model_id))}


OPERATIONS: dict[str, Operation] = {
    "changeGate": Operation(change_gate, body=TypeAdapter(GateChange)),
}
