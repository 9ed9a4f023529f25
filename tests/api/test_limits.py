"""OWASP API4 limits: every accepted string, list and map is bounded, numbers are finite,
unknown fields are refused, and each principal has a request rate."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from common.api.operations import all_operations
from common.models import kinds, runtime_class
from common.services import reset_services, use_services
from tests.conftest import function_client
from tests.support.fixtures import Stack, embedded_stack, register_risk
from tests.support.services import RedisServer


def unbounded(schema: Any, path: str, defs: dict[str, Any], seen: frozenset[str]) -> list[str]:
    """Where a JSON Schema accepts a string, list or map of any size, or unknown fields."""
    found: list[str] = []
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            found += unbounded(item, f"{path}[{i}]", defs, seen)
        return found
    if not isinstance(schema, dict):
        return found
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else unbounded(defs[name], f"{path}->{name}", defs, seen | {name})
    kind = schema.get("type")
    bounded_string = {"maxLength", "enum", "const"} & set(schema)
    if kind == "string" and not bounded_string:
        found.append(f"{path}: string without maxLength")
    if kind == "array" and "maxItems" not in schema:
        found.append(f"{path}: array without maxItems")
    if (
        kind == "object"
        and "properties" in schema
        and schema.get("additionalProperties") is not False
    ):
        found.append(f"{path}: object accepts unknown fields")
    if isinstance(schema.get("additionalProperties"), dict) and "maxProperties" not in schema:
        found.append(f"{path}: map without maxProperties")
    for key, value in schema.items():
        if key != "$defs":
            found += unbounded(value, f"{path}/{key}", defs, seen)
    return found


def schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for operation_id, operation in all_operations().items():
        if operation.body is not None:
            yield operation_id, operation.body.json_schema()
    for kind in kinds():
        yield f"{kind} instance", runtime_class(kind).input_schema()


@pytest.mark.parametrize(
    ("name", "schema"), list(schemas()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_input_is_bounded_and_closed(name: str, schema: dict[str, Any]) -> None:
    assert unbounded(schema, name, schema.get("$defs", {}), frozenset()) == []


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Stack]:
    stack = embedded_stack(tmp_path, IPO_RATE_LIMIT_PER_MINUTE="3")
    register_risk(stack.lifecycle)
    use_services(stack.services)
    try:
        yield stack
    finally:
        reset_services()


def example(stack: Stack) -> dict[str, Any]:
    return dict(stack.registry.get_version("risk", "1.0.0").example)


def post(client: FlaskClient, stack: Stack, body: Any, subject: str = "tester") -> Any:
    return client.post("/v1/predict/risk", json=body, headers=stack.headers(subject=subject))


def test_more_than_1000_instances_is_422(limited: Stack) -> None:
    response = post(
        function_client("predict_risk"), limited, {"instances": [example(limited)] * 1001}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "instances"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(limited: Stack, literal: str) -> None:
    instance = example(limited)
    field = next(k for k, v in instance.items() if isinstance(v, float))
    raw = (
        '{"instances":[{'
        + ",".join(f'"{k}":{literal if k == field else json.dumps(v)}' for k, v in instance.items())
        + "}]}"
    )
    response = function_client("predict_risk").post(
        "/v1/predict/risk", data=raw, content_type="application/json", headers=limited.headers()
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert field in response.get_json()["error"]["details"][0]["field"]


def test_unknown_fields_are_refused(limited: Stack) -> None:
    client = function_client("predict_risk")
    response = post(client, limited, {"instances": [{**example(limited), "is_admin": True}]})
    assert response.status_code == 422
    response = post(client, limited, {"instances": [example(limited)], "owner": "me"})
    assert response.status_code == 422


def test_rate_limit_is_per_principal_with_retry_after(limited: Stack) -> None:
    client = function_client("predict_risk")
    body = {"instances": [example(limited)]}
    assert [post(client, limited, body).status_code for _ in range(3)] == [200, 200, 200]
    refused = post(client, limited, body)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert post(client, limited, body, subject="someone-else").status_code == 200


def test_instances_share_the_limit_through_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    """Two function instances, one Redis: together they allow the limit, not twice it."""
    instances = [
        embedded_stack(
            tmp_path / name, IPO_RATE_LIMIT_PER_MINUTE="4", IPO_REDIS_URL=redis_server.url
        )
        for name in ("a", "b")
    ]
    register_risk(instances[0].lifecycle)
    subject = f"shared-{uuid.uuid4().hex[:8]}"
    statuses = []
    try:
        for n in range(8):
            stack = instances[n % 2]
            use_services(stack.services, close_previous=False)
            response = function_client("list_models").get(
                "/v1/models", headers=stack.headers(("model:read",), subject=subject)
            )
            statuses.append(response.status_code)
    finally:
        use_services(None, close_previous=False)
        for stack in instances:
            stack.services.close()
    assert statuses == [200] * 4 + [429] * 4
