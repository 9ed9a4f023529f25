"""Operation handlers, keyed by the OpenAPI operationId.

Routes and permissions live in ``openapi.yaml``; this table says what runs and which body
schema it takes. A test checks that the two name the same operations.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from common import (
    compliance_scan,
    control,
    drift_scan,
    experiments_api,
    retention,
    serving,
    warm_cache,
)
from common.http import Call, Operation
from common.views import model_view, version_view


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


def run_warm_cache(call: Call) -> dict[str, Any]:
    return warm_cache.warm_cache(call.services, call.body)


def run_purge_retention(call: Call) -> dict[str, Any]:
    return retention.purge_retention(call.services, call.body)


def run_erasure(call: Call) -> dict[str, Any]:
    return retention.erase_subject(call.services, call.body)


def run_compliance_scan(call: Call) -> dict[str, Any]:
    return compliance_scan.compliance_scan(call.services, call.body)


def run_drift_scan(call: Call) -> dict[str, Any]:
    return drift_scan.drift_scan(call.services, call.body)


OPERATIONS: dict[str, Operation] = {
    "warmCache": Operation(run_warm_cache, body=TypeAdapter(warm_cache.WarmCacheRequest)),
    "driftScan": Operation(run_drift_scan, body=TypeAdapter(drift_scan.DriftScanRequest)),
    "purgeRetention": Operation(run_purge_retention, body=TypeAdapter(retention.RetentionRequest)),
    "eraseSubject": Operation(run_erasure, body=TypeAdapter(retention.ErasureRequest)),
    "complianceScan": Operation(
        run_compliance_scan, body=TypeAdapter(compliance_scan.ComplianceScanRequest)
    ),
    "listModels": Operation(list_models),
    "getModel": Operation(get_model),
    "getModelVersion": Operation(control.get_version),
    "listDeployments": Operation(control.list_deployments),
    "registerModelVersion": Operation(control.register_version, body=control.REGISTER),
    "setVersionStage": Operation(control.set_stage, body=control.STAGE),
    "promoteModel": Operation(control.promote, body=control.PROMOTE),
    "rollbackModel": Operation(control.rollback, body=control.ROLLBACK),
    "createExperiment": Operation(experiments_api.create, body=experiments_api.DESIGN),
    "getExperiment": Operation(experiments_api.get),
    "stopExperiment": Operation(experiments_api.stop, body=experiments_api.STOP),
    "assignVariant": Operation(experiments_api.assign, body=experiments_api.ASSIGN),
    "recordOutcome": Operation(experiments_api.outcome, body=experiments_api.OUTCOME),
    "experimentResults": Operation(experiments_api.results),
    **{
        f"predict{model_id.capitalize()}": Operation(
            predict_handler(model_id), body=serving.PREDICT_REQUEST
        )
        for model_id in ("cca", "dcf", "ensemble", "risk", "sentiment")
    },
}
