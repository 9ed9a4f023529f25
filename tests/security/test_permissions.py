"""Every endpoint, against every model, with each permission set: 403 exactly when the
permission the endpoint needs is not granted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from common.api.routes import all_routes, predict_routes, served_models
from common.security.auth import permission_grants
from common.services import reset_services, use_services
from tests.support.fixtures import Stack, embedded_stack
from tools.gateway import create_app

MODELS = served_models()
ACTIONS = ("predict", "explain", "register", "promote", "rollback")

# What each operation needs, written out independently of openapi.yaml.
NEEDS = {
    "listModels": "model:read",
    "getModel": "model:read",
    "getModelVersion": "model:read",
    "listDeployments": "model:read",
    "registerModelVersion": "model:{model_id}:register",
    "setVersionStage": "model:{model_id}:promote",
    "promoteModel": "model:{model_id}:promote",
    "rollbackModel": "model:{model_id}:rollback",
    "createExperiment": "experiment:write",
    "stopExperiment": "experiment:write",
    "recordOutcome": "experiment:write",
    "getExperiment": "experiment:read",
    "assignVariant": "experiment:read",
    "experimentResults": "experiment:read",
    "warmCache": "job:warm-cache:run",
    "complianceScan": "job:compliance-scan:run",
    "purgeRetention": "job:purge-retention:run",
    "eraseSubject": "admin",
    "driftScan": "job:drift-scan:run",
    "createBatchJob": "batch:submit",
    "getBatchJob": "batch:submit",
    "cancelBatchJob": "batch:submit",
    "runBatchJobs": "job:batch-jobs:run",
    "shadowReplay": "job:shadow-replay:run",
    "startShadow": "model:{model_id}:promote",
    "stopShadow": "model:{model_id}:promote",
    "getShadowReport": "model:read",
    "listShadows": "model:read",
    "changeGate": "admin",
    "getPayloadLog": "model:read",
    "setPayloadLog": "model:{model_id}:promote",
    "getPrediction": "model:read",
    "explainPrediction": "model:read",
    **{operation: f"model:{m}:predict" for operation, m in predict_routes().items()},
    **{f"explain{m.capitalize()}": f"model:{m}:explain" for m in served_models()},
    **{f"explain{m.capitalize()}V2": f"model:{m}:explain" for m in served_models()},
    # the Open Inference Protocol: server routes to readers, a model's routes to its users
    "serverLive": "model:read",
    "serverReady": "model:read",
    "serverMetadata": "model:read",
    **{
        operation.format(m.capitalize()): f"model:{m}:predict"
        for m in served_models()
        for operation in (
            "modelMetadata{}",
            "modelMetadata{}Version",
            "modelReady{}",
            "modelReady{}Version",
            "predict{}V2",
            "predict{}VersionV2",
        )
    },
}

PERMISSION_SETS: list[tuple[str, ...]] = [
    (),
    ("model:read",),
    ("model:*:predict",),
    ("model:*:explain",),
    ("model:*:register", "model:*:promote", "model:*:rollback"),
    ("experiment:read",),
    ("experiment:write",),
    ("admin",),
    ("job:*:run",),
    ("job:drift-scan:run", "job:purge-retention:run"),
    *[(f"model:{m}:{a}",) for m in MODELS for a in ACTIONS],
]


def test_every_operation_declares_the_permission_this_table_expects() -> None:
    declared = {route.operation_id: route.permission for route in all_routes()}
    assert declared == NEEDS


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlaskClient, Stack]]:
    stack = embedded_stack(Path(tmp_path_factory.mktemp("matrix")), IPO_RATE_LIMIT_PER_MINUTE="0")
    use_services(stack.services)
    try:
        yield create_app().test_client(), stack
    finally:
        reset_services()


def cases() -> Iterator[tuple[str, str, str, str]]:
    """(operation id, method, concrete path, required permission) for every model."""
    for route in all_routes():
        models = MODELS if "{model_id}" in route.path else (None,)
        for model in models:
            values = {
                "model_id": model or "",
                "version": "1.0.0",
                "experiment_id": "exp-1",
                "job_id": "job-1",
                "request_id": "req-1",
            }
            path = route.path.format(**values)
            yield route.operation_id, route.method, path, NEEDS[route.operation_id].format(**values)


@pytest.mark.parametrize("permissions", PERMISSION_SETS, ids=lambda p: ",".join(p) or "none")
def test_permission_matrix(
    gateway: tuple[FlaskClient, Stack], permissions: tuple[str, ...]
) -> None:
    client, stack = gateway
    headers = stack.headers(permissions, subject="matrix")
    wrong = []
    for operation, method, path, required in cases():
        response = client.open(path, method=method, headers=headers)
        allowed = any(permission_grants(granted, required) for granted in permissions)
        if (response.status_code == 403) == allowed or response.status_code == 401:
            wrong.append(f"{method} {path} ({operation}, needs {required}): {response.status_code}")
    assert not wrong, "\n".join(wrong)
