"""The Open Inference Protocol routes through the functions: metadata from each model's
schema, inference equal to /v1/predict, explicit versions, readiness, and one clear 400 per
malformed tensor, in the protocol's error shape."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from common.api.routes import served_models
from tests.conftest import function_client
from tests.support.fixtures import Stack, register_risk
from tests.support.oip import columns, layout, request_inputs, rows_of, without_nulls

MODELS = served_models()


def metadata(client: FlaskClient, model_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"/v2/models/{model_id}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def v2_request(meta: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    types = {spec["name"]: spec["datatype"] for spec in meta["inputs"]}
    return {"inputs": request_inputs(columns(meta["inputs"], rows), types)}


@pytest.mark.parametrize("model_id", MODELS)
def test_inference_answers_what_v1_predicts(installed: Stack, model_id: str) -> None:
    headers = installed.headers()
    client = function_client(f"predict_{model_id}")
    record = installed.registry.get_version(model_id, "1.0.0")
    rows = [g["instance"] for g in record.golden_set[:8]]
    rows = [r for r in rows if layout(r) == layout(rows[0])][:3]  # columnar: same fields
    v1 = client.post(f"/v1/predict/{model_id}", json={"instances": rows}, headers=headers)
    assert v1.status_code == 200, v1.get_data(as_text=True)
    meta = metadata(client, model_id, headers)
    body = {**v2_request(meta, rows), "id": "call-7"}
    v2 = client.post(f"/v2/models/{model_id}/infer", json=body, headers=headers)
    assert v2.status_code == 200, v2.get_data(as_text=True)
    answer = v2.get_json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (
        model_id,
        "1.0.0",
        "call-7",
    )
    assert answer["parameters"]["variant"] == "production"
    assert answer["parameters"]["request_id"] == v2.headers["X-Request-Id"]
    assert [o["name"] for o in answer["outputs"]][: len(meta["outputs"])] == [
        o["name"] for o in meta["outputs"]
    ]
    assert without_nulls(rows_of(answer["outputs"], len(rows))) == without_nulls(
        v1.get_json()["predictions"]
    )


def test_metadata_is_the_input_schema_flattened(installed: Stack) -> None:
    headers = installed.headers()
    dcf = {s["name"]: s for s in metadata(function_client("predict_dcf"), "dcf", headers)["inputs"]}
    assert dcf["revenue_musd"] == {
        "name": "revenue_musd",
        "datatype": "FP64",
        "shape": [-1],
        "parameters": {"optional": False},
    }
    assert (dcf["growth_rates"]["shape"], dcf["growth_rates"]["parameters"]["optional"]) == (
        [-1, -1],
        True,
    )
    assert (dcf["projection_years"]["datatype"], dcf["mid_year"]["datatype"]) == ("INT64", "BOOL")
    assert dcf["terminal_method"]["datatype"] == "BYTES"
    ensemble = metadata(function_client("predict_ensemble"), "ensemble", headers)
    names = [s["name"] for s in ensemble["inputs"]]
    assert {"dcf.revenue_musd", "cca.sector", "risk.market_volatility", "sentiment.text"} <= set(
        names
    )
    assert not {"dcf", "cca", "risk", "sentiment"} & set(names)
    outputs = {s["name"]: s for s in ensemble["outputs"]}
    assert outputs["interval.low"]["datatype"] == "FP64"
    assert outputs["contributions.risk.risk_class"]["datatype"] == "BYTES"
    assert (ensemble["platform"], ensemble["versions"]) == ("ipo_ensemble", ["1.0.0"])


def test_an_answer_holds_exactly_the_outputs_of_the_metadata(installed: Stack) -> None:
    """An object a prediction leaves null (DCF's simulations when not asked for, CCA's
    implied values of a multiple that does not apply) is answered as its declared fields,
    null, and never as an output the metadata does not list."""
    headers = installed.headers()
    dcf = installed.registry.get_version("dcf", "1.0.0").example
    cca = installed.registry.get_version("cca", "1.0.0").example
    cases = {
        "dcf": (dcf, {"monte_carlo": False, "sensitivity": False}),
        "cca": ({**cca, "ebitda_musd": -5.0, "net_income_musd": -3.0}, {}),
    }
    for model_id, (row, parameters) in cases.items():
        client = function_client(f"predict_{model_id}")
        meta = metadata(client, model_id, headers)
        body = {**v2_request(meta, [row]), "parameters": parameters}
        response = client.post(f"/v2/models/{model_id}/infer", json=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        outputs = response.get_json()["outputs"]
        assert [(o["name"], o["datatype"]) for o in outputs] == [
            (o["name"], o["datatype"]) for o in meta["outputs"]
        ], model_id
        nulls = {o["name"] for o in outputs if o["data"] == [None]}
        wanted = (
            "monte_carlo.p50" if model_id == "dcf" else "multiples.pe.implied_value_per_share.p50"
        )
        assert wanted in nulls, model_id


@pytest.fixture
def risk_client(stack: Stack) -> FlaskClient:
    return function_client("predict_risk")


def _risk_request(stack: Stack, count: int = 2) -> dict[str, Any]:
    example = stack.registry.get_version("risk", "1.0.0").example
    return {
        "inputs": [
            {
                "name": name,
                "shape": [count],
                "datatype": "BYTES" if isinstance(value, str) else "FP64",
                "data": [value] * count,
            }
            for name, value in example.items()
        ]
    }


def _changed(request: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    inputs = [{**i, **fields} if i["name"] == name else i for i in request["inputs"]]
    return {**request, "inputs": inputs}


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert set(body) == {"error", "code", "details", "request_id"}
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def test_each_malformed_tensor_is_one_clear_400(stack: Stack, risk_client: FlaskClient) -> None:
    headers, good = stack.headers(), _risk_request(stack)
    cases = {
        "data length": (
            _changed(good, "revenue_musd", data=[1.0]),
            "input 'revenue_musd' has shape [2], which holds 2 value(s), but its data has 1",
        ),
        "data nested otherwise": (
            _changed(good, "revenue_musd", data=[[[100.0]], [[120.0]]]),
            "input 'revenue_musd' has shape [2], but its data is nested otherwise",
        ),
        "rows nested unevenly": (
            _changed(good, "revenue_musd", shape=[2, 1], data=[[100.0, 120.0], []]),
            "input 'revenue_musd' has shape [2, 1], but its data is nested otherwise",
        ),
        "unknown input": (
            {"inputs": [*good["inputs"], {**good["inputs"][1], "name": "revenue"}]},
            "unknown input 'revenue'",
        ),
        "missing input": (
            {"inputs": [i for i in good["inputs"] if i["name"] != "sector"]},
            "required input 'sector' is missing (BYTES, shape [-1])",
        ),
        "datatype": (
            _changed(good, "revenue_musd", datatype="FP32"),
            "input 'revenue_musd' has datatype FP32 (wrong); it takes FP64",
        ),
        "element": (
            _changed(good, "revenue_musd", data=["100", 1.0]),
            "input 'revenue_musd' element 0 is str; FP64 takes numbers",
        ),
        "not an integer": (
            _changed(good, "revenue_musd", datatype="INT32", data=[100, 1.5]),
            "input 'revenue_musd' element 1 is float; INT32 takes integers",
        ),
        "out of range": (
            _changed(good, "revenue_musd", datatype="INT8", data=[100, 1000000]),
            "input 'revenue_musd' element 1 is out of INT8's range (-128 to 127)",
        ),
        "rows": (
            _changed(good, "revenue_musd", shape=[3], data=[1.0, 2.0, 3.0]),
            "inputs have different numbers of rows",
        ),
        "envelope": ({"inputs": [{"name": "sector"}]}, "not an inference request: inputs[0]"),
        "binary": (
            _changed(good, "sector", data=None, parameters={"binary_data_size": 16}),
            "input 'sector' is sent as binary tensor data",
        ),
    }
    for case, (body, message) in cases.items():
        response = risk_client.post("/v2/models/risk/infer", json=body, headers=headers)
        answer = _error(response, 400)
        assert answer["error"].startswith(message), (case, answer)
        assert answer["code"] == "malformed_request", case
    wrong_type = _changed(good, "revenue_musd", datatype="FP32")
    (detail,) = _error(
        risk_client.post("/v2/models/risk/infer", json=wrong_type, headers=headers), 400
    )["details"]
    assert (detail["input"], detail["expected"], detail["received"]) == (
        "revenue_musd",
        {"datatype": "FP64", "shape": [-1]},
        {"datatype": "FP32", "shape": [2]},
    )
    not_json = risk_client.post(
        "/v2/models/risk/infer",
        data=b'{"inputs": [',
        headers=headers,
        content_type="application/json",
    )
    assert _error(not_json, 400)["error"].startswith("request body is not valid JSON")


def test_a_value_the_schema_refuses_names_its_input_and_row(
    stack: Stack, risk_client: FlaskClient
) -> None:
    body = _changed(_risk_request(stack), "revenue_musd", data=[100.0, -5.0])
    answer = _error(
        risk_client.post("/v2/models/risk/infer", json=body, headers=stack.headers()), 422
    )
    (detail,) = answer["details"]
    assert (detail["input"], detail["row"], detail["value"]) == ("revenue_musd", 1, -5.0)


def test_a_second_identical_request_is_a_cache_hit(stack: Stack, risk_client: FlaskClient) -> None:
    body, headers = _risk_request(stack, 1), stack.headers()
    first = risk_client.post("/v2/models/risk/infer", json=body, headers=headers).get_json()
    again = risk_client.post("/v2/models/risk/infer", json=body, headers=headers).get_json()
    assert (first["parameters"]["cache_hit"], again["parameters"]["cache_hit"]) == (False, True)
    assert first["outputs"] == again["outputs"]


def test_a_named_version_serves_only_while_it_may(stack: Stack, risk_client: FlaskClient) -> None:
    headers, body = stack.headers(), _risk_request(stack, 1)
    register_risk(stack.lifecycle, "1.1.0", promote=False)  # development
    register_risk(stack.lifecycle, "1.2.0", promote=False)
    stack.lifecycle.set_stage("risk", "1.2.0", "staging")

    def infer(version: str) -> Any:
        url = f"/v2/models/risk/versions/{version}/infer"
        return risk_client.post(url, json=body, headers=headers)

    production, staging = infer("1.0.0"), infer("1.2.0")
    assert (production.status_code, staging.status_code) == (200, 200)
    assert production.get_json()["parameters"]["variant"] == "production"
    assert (staging.get_json()["model_version"], staging.get_json()["parameters"]["variant"]) == (
        "1.2.0",
        "staging",
    )
    development = _error(infer("1.1.0"), 409)
    assert development["error"].startswith("risk 1.1.0 is development;")
    assert _error(infer("9.9.9"), 404)["code"] == "not_found"
    ready = risk_client.get("/v2/models/risk/versions/1.2.0/ready", headers=headers)
    assert (ready.status_code, ready.get_json()) == (200, {"name": "risk", "ready": True})
    not_ready = risk_client.get("/v2/models/risk/versions/1.1.0/ready", headers=headers)
    assert not_ready.status_code == 400
    assert not_ready.get_json()["ready"] is False
    assert not_ready.get_json()["details"][0]["code"] == "conflict"
    listed = risk_client.get("/v2/models/risk/versions/1.1.0", headers=headers).get_json()
    assert (listed["name"], listed["versions"]) == ("risk", ["1.0.0"])


def test_server_ready_names_an_artifact_that_differs_from_its_record(stack: Stack) -> None:
    client, headers = function_client("list_models"), stack.headers()
    ready = client.get("/v2/health/ready", headers=headers)
    assert (ready.status_code, ready.get_json()) == (200, {"ready": True})
    record = stack.registry.get_version("risk", "1.0.0")
    stack.services.backends.artifacts.put(record.artifact_key, b"not the model", overwrite=True)
    damaged = client.get("/v2/health/ready", headers=headers)
    assert damaged.status_code == 400
    (problem,) = damaged.get_json()["details"]
    assert (problem["model"], problem["version"], problem["role"]) == (
        "risk",
        "1.0.0",
        "production",
    )
    assert problem["message"] == "its artifact's SHA-256 differs from the registered one"
    live = client.get("/v2/health/live", headers=headers)
    assert (live.status_code, live.get_json()) == (200, {"live": True})


def test_a_model_without_production_is_not_ready(empty_stack: Stack) -> None:
    client = function_client("predict_risk")
    response = client.get("/v2/models/risk/ready", headers=empty_stack.headers())
    assert response.status_code == 400
    assert response.get_json()["ready"] is False


def test_v2_routes_need_the_model_s_predict_permission(
    stack: Stack, risk_client: FlaskClient
) -> None:
    reader = stack.headers(("model:read",))
    answer = _error(
        risk_client.post("/v2/models/risk/infer", json=_risk_request(stack), headers=reader), 403
    )
    assert answer["code"] == "forbidden"
    predictor = stack.headers(("model:risk:predict",))
    assert risk_client.get("/v2/models/risk", headers=predictor).status_code == 200
    server = function_client("list_models").get("/v2", headers=predictor)
    assert _error(server, 403)["code"] == "forbidden"
    unrouted = function_client("list_models").get("/v2/models/risk/extra", headers=reader)
    assert _error(unrouted, 404)["code"] == "not_found"


def test_a_canary_named_by_version_is_served_as_the_canary(
    stack: Stack, risk_client: FlaskClient
) -> None:
    register_risk(stack.lifecycle, "1.3.0", promote=False)
    stack.lifecycle.set_stage("risk", "1.3.0", "staging")
    stack.lifecycle.promote("risk", "1.3.0", actor="tests", traffic_percentage=10)
    stack.services.snapshots.invalidate("risk")
    headers = stack.headers()
    url = "/v2/models/risk/versions/1.3.0/infer"
    answer = risk_client.post(url, json=_risk_request(stack, 1), headers=headers).get_json()
    assert (answer["model_version"], answer["parameters"]["variant"]) == ("1.3.0", "canary")
    listed = risk_client.get("/v2/models/risk", headers=headers).get_json()
    assert listed["versions"] == ["1.0.0", "1.3.0"]


def test_a_binary_tensor_request_gets_the_binary_data_refusal(
    stack: Stack, risk_client: FlaskClient
) -> None:
    """tritonclient's binary_data=True: the first Inference-Header-Content-Length bytes are
    JSON, the rest raw tensor bytes, which are no JSON to parse."""
    import numpy as np
    import tritonclient.http as triton

    inputs = []
    for name, value in stack.registry.get_version("risk", "1.0.0").example.items():
        text = isinstance(value, str)
        tensor = triton.InferInput(name, [1], "BYTES" if text else "FP64")
        tensor.set_data_from_numpy(
            np.array([value], dtype=np.object_ if text else np.float64), binary_data=True
        )
        inputs.append(tensor)
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs)
    assert json_size is not None
    headers = {
        **stack.headers(),
        "Inference-Header-Content-Length": str(json_size),
        "Content-Type": "application/octet-stream",
    }
    response = risk_client.post("/v2/models/risk/infer", data=body, headers=headers)
    answer = _error(response, 400)
    assert answer["code"] == "malformed_request"
    assert answer["error"].startswith(
        "the request's data (Inference-Header-Content-Length) is sent as binary tensor data"
    )


@pytest.mark.parametrize("rows", [10_000_000, 100_000])
def test_a_shape_of_many_empty_rows_is_refused_without_building_them(
    installed: Stack, rows: int
) -> None:
    """[N, 0] holds no value, so no data length check can catch it: a dimension past
    the protocol's value limit is refused by the request's schema; one under it is
    refused too (building 100,000 empty rows costs milliseconds, 10 million a GiB)."""
    body = {
        "inputs": [{"name": "growth_rates", "datatype": "FP64", "shape": [rows, 0], "data": []}]
    }
    response = function_client("predict_dcf").post(
        "/v2/models/dcf/infer", json=body, headers=installed.headers()
    )
    answer = _error(response, 400)
    assert answer["code"] == "malformed_request"
    if rows > 100_000:
        assert "less than or equal to 100000" in answer["error"]
