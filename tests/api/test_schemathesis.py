"""The running gateway against its own contract, ``common/api/openapi.yaml``.

Schemathesis generates requests for every operation, valid and invalid ones, the same ones
on every run, and sends them with an admin token to the local gateway with every model
in production. Every answer must be documented: no 5xx, a documented status code and
content type, a body matching the response schema; and a request the spec forbids must be
refused. Without credentials, every protected operation answers 401 in the error shape.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import strategies as st

from common.api.routes import (
    OIP_ERRORS,
    SPEC_PATH,
    Route,
    all_routes,
    load_spec,
    predict_routes,
    served_models,
)
from common.backends.env_secrets import EnvSecretSource
from common.core.config import Settings
from common.security.auth import issue_token
from tests.support.gateway_process import Gateway, running_gateway

pytestmark = pytest.mark.gateway

MODELS = served_models()
VERSIONS = ("1.0.0", "1.1.0")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)

schema = schemathesis.openapi.from_path(
    SPEC_PATH,
    config=schemathesis.Config.from_dict(
        {
            "suppress-health-check": ["all"],
            "generation": {"max-examples": 20, "deterministic": True, "database": "none"},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            # v2 inference bodies (tensors of up to 100,000 values) are slow to generate:
            # fewer per route, over ten routes of the same handler
            "operations": [
                {
                    "include-path-regex": "^/v2/.*/infer$",
                    "generation": {"max-examples": 6, "deterministic": True, "database": "none"},
                }
            ],
        }
    ),
)


@schema.hook("flatmap_path_parameters")
def _known_ids_half_the_time(
    _context: schemathesis.HookContext, parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Generated ids name nothing; half the cases name a trained model and version instead,
    so requests get past the lookups into the registry, the lifecycle and the models."""
    if not parameters:
        return st.just(parameters)
    known = {
        name: st.sampled_from(values)
        for name, values in (("model_id", MODELS), ("version", VERSIONS))
        if isinstance(parameters.get(name), str)
    }
    if not known:
        return st.just(parameters)
    return st.one_of(
        st.just(parameters), st.fixed_dictionaries(known).map(lambda ids: {**parameters, **ids})
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with every model in production, its secrets given and no rate limit."""
    environ = {
        "IPO_SECRET_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
        "IPO_SECRET_AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
        "IPO_RATE_LIMIT_PER_MINUTE": "0",
    }
    tmp = tmp_path_factory.mktemp("schemathesis")
    with running_gateway(tmp, models=None, extra_environ=environ) as started:
        yield started


@pytest.fixture(scope="module")
def admin(fuzzed: Gateway) -> dict[str, str]:
    token = issue_token(
        Settings.from_environ(fuzzed.environ),
        EnvSecretSource(env_file=None, environ=fuzzed.environ),
        subject="schemathesis",
        permissions=("admin",),
    )
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
def test_every_answer_matches_the_spec(
    case: schemathesis.Case, fuzzed: Gateway, admin: dict[str, str]
) -> None:
    case.call_and_validate(base_url=fuzzed.base, headers=admin, timeout=30)


# --- without credentials -----------------------------------------------------------------

PATH_VALUES = {
    "model_id": "risk",
    "version": "1.0.0",
    "experiment_id": "5" * 32,
    "job_id": "5" * 32,
    "request_id": "req-1",
}
BODIES: dict[str, dict[str, Any]] = {
    "registerModelVersion": {"version": "9.0.0", "kind": "risk", "artifact_base64": "AAAA"},
    "setVersionStage": {"stage": "staging"},
    "promoteModel": {"version": "1.0.0"},
    "rollbackModel": {},
    "createExperiment": {
        "model_id": "risk",
        "variants": {"control": "1.0.0", "candidate": "1.0.0"},
        "split": {"control": 0.5, "candidate": 0.5},
        "metrics": [{"name": "priced", "type": "binary", "direction": "increase"}],
    },
    "stopExperiment": {},
    "assignVariant": {"user_id": "user-1"},
    "recordOutcome": {"exposure_id": "exp-1", "values": {"priced": 1}},
    "eraseSubject": {"subject": "user-1"},
    "createBatchJob": {
        "model": "risk",
        "stage": "production",
        "input_uri": "batch/in/",
        "output_prefix": "batch/out/",
    },
    "runBatchJobs": {},
    "setPayloadLog": {"enabled": True, "sampling_rate": 0.5},
    "startShadow": {"version": "1.0.0", "until": "2099-01-01T00:00:00Z"},
    "shadowReplay": {},
    "changeGate": {
        "gate": {"criteria": [{"metric": "accuracy", "op": ">=", "threshold": 0.5}]},
        "reason": "schema check",
    },
    **{operation: {"instances": [{}]} for operation in predict_routes()},
    **{r.operation_id: {"instances": [{}]} for r in all_routes() if r.handler == "explain"},
    **{
        route.operation_id: {
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]
        }
        for route in all_routes()
        if route.errors == OIP_ERRORS and route.method == "POST"
    },
}


def _body_schema(route: Route) -> dict[str, Any] | None:
    spec = load_spec()
    operation = spec["paths"][route.path][route.method.lower()]
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "body":
            return {**parameter["schema"], "definitions": spec["definitions"]}
    return None


def _requests(route: Route) -> list[bytes]:
    """An empty body, and one the spec accepts where the operation takes a body."""
    body_schema = _body_schema(route)
    if body_schema is None:
        return [b""]
    body = BODIES.get(route.operation_id, {})
    problem = jsonschema.exceptions.best_match(
        jsonschema.Draft4Validator(body_schema).iter_errors(body)
    )
    assert problem is None, f"BODIES needs a valid {route.operation_id} body: {problem.message}"
    return [b"", json.dumps(body).encode()]


@pytest.mark.parametrize(
    "route", [r for r in all_routes() if r.permission], ids=lambda route: route.operation_id
)
def test_every_protected_operation_is_401_without_credentials(
    fuzzed: Gateway, route: Route
) -> None:
    url = fuzzed.base + route.path.format(**PATH_VALUES)
    for body in _requests(route):
        response = requests.request(
            route.method,
            url,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 401, (body, response.text)
        assert response.headers["Content-Type"] == "application/json"
        answer = response.json()
        assert answer["request_id"] == response.headers["X-Request-Id"]
        if route.errors == OIP_ERRORS:  # the protocol's shape, the platform's fields beside
            assert set(answer) == {"error", "code", "details", "request_id"}
            assert (answer["code"], answer["details"]) == ("unauthenticated", [])
            continue
        assert set(answer) == {"error", "request_id"}
        assert set(answer["error"]) == {"code", "message", "details"}
        assert answer["error"]["code"] == "unauthenticated"
