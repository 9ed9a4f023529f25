"""Real Open Inference Protocol clients against the running local gateway.

tritonclient's HTTP client (health, server and model metadata, readiness, inference) for
every served model, its numbers equal to /v1/predict's for the same rows; and the kserve
SDK's v2 data models reading every kind of answer and writing an inference request.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from common.api.routes import served_models
from common.backends import build_artifact_store, build_document_store
from common.backends.env_secrets import EnvSecretSource
from common.core.config import Settings
from common.registry.records import Registry
from common.security.auth import issue_token
from tests.support.gateway_process import Gateway, running_gateway
from tests.support.oip import columns, layout, lookup, rows_of, without_nulls

pytestmark = pytest.mark.gateway

MODELS = served_models()


def kserve_v2_models() -> ModuleType:
    """kserve/protocol/rest/v2_datamodels.py alone: the package's __init__ starts its whole
    server stack, whose dependencies are not installed (requirements-kserve.txt says why)."""
    spec = importlib.util.find_spec("kserve")
    assert spec is not None, "kserve is not installed (make test installs it)"
    assert spec.origin is not None
    path = Path(spec.origin).parent / "protocol" / "rest" / "v2_datamodels.py"
    module_spec = importlib.util.spec_from_file_location("kserve_v2_datamodels", path)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    environ = {
        "IPO_SECRET_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
        "IPO_SECRET_AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
        "IPO_RATE_LIMIT_PER_MINUTE": "0",
    }
    with running_gateway(tmp_path_factory.mktemp("oip"), models=None, extra_environ=environ) as g:
        yield g


@pytest.fixture(scope="module")
def auth(gateway: Gateway) -> dict[str, str]:
    token = issue_token(
        Settings.from_environ(gateway.environ),
        EnvSecretSource(env_file=None, environ=gateway.environ),
        subject="oip-client",
        permissions=("model:read", "model:*:predict"),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(url=gateway.base.removeprefix("http://"))
    try:
        yield connection
    finally:
        connection.close()


def golden_rows(gateway: Gateway, model_id: str, count: int = 3) -> list[dict[str, Any]]:
    """Rows of the production version's golden set that share one layout (columnar)."""
    settings = Settings.from_environ(gateway.environ)
    registry = Registry(build_document_store(settings), build_artifact_store(settings))
    model = registry.get_model(model_id)
    record = registry.get_version(model_id, model.production_version or "")
    rows = [g["instance"] for g in record.golden_set]
    return [r for r in rows if layout(r) == layout(rows[0])][:count]


def v1_predictions(
    gateway: Gateway, model_id: str, rows: list[dict[str, Any]], auth: dict[str, str]
) -> list[Any]:
    response = requests.post(
        f"{gateway.base}/v1/predict/{model_id}", json={"instances": rows}, headers=auth, timeout=30
    )
    assert response.status_code == 200, response.text
    predictions: list[Any] = response.json()["predictions"]
    return predictions


def test_tritonclient_reads_the_server(
    client: triton.InferenceServerClient, auth: dict[str, str]
) -> None:
    assert client.is_server_live(headers=auth)
    assert client.is_server_ready(headers=auth)
    assert client.get_server_metadata(headers=auth) == {
        "name": "ipo-valuation",
        "version": "1.0.0",
        "extensions": ["explain"],
    }
    assert not client.is_server_live()  # no token: 401, which reads as not live


@pytest.mark.parametrize("model_id", MODELS)
def test_tritonclient_infers_what_v1_predicts(
    gateway: Gateway, client: triton.InferenceServerClient, auth: dict[str, str], model_id: str
) -> None:
    assert client.is_model_ready(model_id, headers=auth)
    metadata = client.get_model_metadata(model_id, headers=auth)
    assert metadata["name"] == model_id
    rows = golden_rows(gateway, model_id)
    inputs = []
    for name, array in columns(metadata["inputs"], rows).items():
        datatype = next(s["datatype"] for s in metadata["inputs"] if s["name"] == name)
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    result = client.infer(model_id, inputs, headers=auth, request_id=f"{model_id}-1")
    answer = result.get_response()
    assert (answer["model_name"], answer["id"]) == (model_id, f"{model_id}-1")
    expected = v1_predictions(gateway, model_id, rows, auth)
    assert without_nulls(rows_of(answer["outputs"], len(rows))) == without_nulls(expected)
    for spec in metadata["outputs"]:
        if spec["datatype"] == "FP64" and spec["shape"] == [-1]:
            values = [lookup(p, spec["name"]) for p in expected]
            wanted = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            np.testing.assert_array_equal(result.as_numpy(spec["name"]), wanted)


def test_kserve_data_models_read_every_answer(gateway: Gateway, auth: dict[str, str]) -> None:
    v2 = kserve_v2_models()

    def get(path: str) -> Any:
        response = requests.get(gateway.base + path, headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    assert v2.ServerLiveResponse.model_validate(get("/v2/health/live")).live is True
    assert v2.ServerReadyResponse.model_validate(get("/v2/health/ready")).ready is True
    assert v2.ServerMetadataResponse.model_validate(get("/v2")).name == "ipo-valuation"
    assert v2.ModelReadyResponse.model_validate(get("/v2/models/risk/ready")).ready is True
    metadata = v2.ModelMetadataResponse.model_validate(get("/v2/models/risk"))
    rows = golden_rows(gateway, "risk")
    arrays = columns([m.model_dump() for m in metadata.inputs], rows)
    types = {m.name: m.datatype for m in metadata.inputs}
    request = v2.InferenceRequest(
        id="kserve-1",
        inputs=[
            v2.RequestInput(name=n, shape=list(a.shape), datatype=types[n], data=a.tolist())
            for n, a in arrays.items()
        ],
    )
    response = requests.post(
        f"{gateway.base}/v2/models/risk/infer",
        data=request.model_dump_json(),
        headers={**auth, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer = v2.InferenceResponse.model_validate(response.json())
    assert (answer.model_name, answer.id) == ("risk", "kserve-1")
    assert answer.parameters["variant"] == "production"
    outputs = [o.model_dump() for o in answer.outputs]
    expected = v1_predictions(gateway, "risk", rows, auth)
    assert without_nulls(rows_of(outputs, len(rows))) == without_nulls(expected)
