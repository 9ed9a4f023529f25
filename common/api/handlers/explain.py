"""Explanation: one operation per model, ``POST /v1/explain/<model>``, served by the
model's own prediction function (docs/EXPLANATIONS.md)."""

from __future__ import annotations

from typing import Any

from common.api.calls import Call, Handler, Operation
from common.api.routes import all_routes
from common.serving.explanations import explain_request
from common.serving.pipeline import PREDICT_REQUEST


def explain_handler(model_id: str) -> Handler:
    def handle(call: Call) -> dict[str, Any]:
        return explain_request(
            call.services.predictor,
            model_id,
            call.body,
            budget=call.services.settings.explain_budget,
            request_id=call.request_id,
            subject=call.principal.subject,
            labels=call.labels,
        )

    return handle


OPERATIONS: dict[str, Operation] = {
    route.operation_id: Operation(
        explain_handler(route.path.rsplit("/", 1)[1]), body=PREDICT_REQUEST
    )
    for route in all_routes()
    if route.handler == "explain"
}
