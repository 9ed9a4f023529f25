"""Prediction: one operation per model, each a route of openapi.yaml."""

from __future__ import annotations

from typing import Any

from common.api.calls import Call, Operation
from common.api.routes import predict_routes
from common.serving import pipeline as serving


def predict_handler(model_id: str) -> Any:
    def handle(call: Call) -> dict[str, Any]:
        services = call.services
        return serving.predict(
            model_id=model_id,
            request=call.body,
            snapshots=services.snapshots,
            pool=services.pool,
            request_id=call.request_id,
            subject=call.principal.subject,
            max_details=services.settings.max_error_details,
            experiments=services.experiments,
            labels=call.labels,
            cache=services.cache,
            hot_keys=services.hot_keys,
            sampler=services.drift_sampler,
        )

    return handle


OPERATIONS: dict[str, Operation] = {
    operation_id: Operation(predict_handler(model_id), body=serving.PREDICT_REQUEST)
    for operation_id, model_id in predict_routes().items()
}
