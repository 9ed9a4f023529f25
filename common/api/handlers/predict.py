"""Prediction: one operation per model, each a route of openapi.yaml."""

from __future__ import annotations

from typing import Any

from common.api.calls import Call, Operation, Reply, Served
from common.api.routes import predict_routes
from common.serving.pipeline import PREDICT_REQUEST


def predict_handler(model_id: str) -> Any:
    def handle(call: Call) -> Reply:
        body = call.body
        served = call.services.predictor.serve(
            model_id, body, subject=call.principal.subject, labels=call.labels
        )
        answer = served.body(call.request_id)
        return Reply(answer, served=Served(body.instances, body.parameters, answer, served.kind))

    return handle


OPERATIONS: dict[str, Operation] = {
    operation_id: Operation(predict_handler(model_id), body=PREDICT_REQUEST)
    for operation_id, model_id in predict_routes().items()
}
