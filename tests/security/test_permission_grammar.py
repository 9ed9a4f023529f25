"""The permission grammar as a caller meets it: ``*`` stands only for a model or a job.

Tokens are signed here by hand with the platform's secret, as a misconfigured identity
provider would issue them (``issue_token`` itself refuses to sign these permissions).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from common.api.routes import all_routes
from common.core.config import Settings
from common.core.permissions import SHAPES, parse
from common.registry.records import ModelVersion
from tests.conftest import function_client
from tests.functions.test_control import register_body
from tests.functions.test_predict_risk import assert_error, example
from tests.support.fixtures import SIGNING_KEY, Stack, pickled_risk_artifact, trained_risk


def signed(stack: Stack, perms: list[str], subject: str = "holder") -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": subject,
        "perms": perms,
        "aud": stack.settings.jwt_audience,
        "iss": stack.settings.jwt_issuer,
        "iat": now,
        "exp": now + 600,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, SIGNING_KEY, algorithm='HS256')}"}


def assert_refused_naming(response: Any, permission: str) -> None:
    """401 in the one error shape, the message naming the permission that is not one."""
    body = assert_error(response, 401, "unauthenticated")
    assert repr(permission) in body["error"]["message"]


def test_a_star_is_not_admin_for_erasure(stack: Stack) -> None:
    client = function_client("purge_retention")
    response = client.post(
        "/v1/privacy/erasure", json={"subject": "analyst-7"}, headers=signed(stack, ["*"])
    )
    assert_refused_naming(response, "*")


def test_star_star_cannot_read_models(stack: Stack) -> None:
    response = function_client("list_models").get("/v1/models", headers=signed(stack, ["*:*"]))
    assert_refused_naming(response, "*:*")


def test_star_star_star_cannot_run_jobs(stack: Stack) -> None:
    client = function_client("drift_scan")
    response = client.post("/v1/jobs/drift-scan", json={}, headers=signed(stack, ["*:*:*"]))
    assert_refused_naming(response, "*:*:*")


def test_model_star_star_cannot_promote(stack: Stack) -> None:
    client = function_client("promote_model")
    response = client.post(
        "/v1/models/risk/promote", json={"version": "1.0.0"}, headers=signed(stack, ["model:*:*"])
    )
    assert_refused_naming(response, "model:*:*")


def test_a_star_with_register_cannot_register_a_pickle(stack: Stack) -> None:
    pickled = base64.b64encode(pickled_risk_artifact()).decode()
    body = register_body(trained_risk(), "1.1.0", artifact_base64=pickled)
    response = function_client("register_model").post(
        "/v1/models/risk/versions", json=body, headers=signed(stack, ["*", "model:risk:register"])
    )
    assert_refused_naming(response, "*")
    versions: list[ModelVersion] = stack.registry.list_versions("risk")
    assert [v.version for v in versions] == ["1.0.0"]


@pytest.mark.parametrize(
    "perm", ["job:*:*", "*:read", "model:*", "model:ri*:predict", "admin:*", "ADMIN", "model:x:y"]
)
def test_any_other_wildcard_or_shape_is_refused(stack: Stack, perm: str) -> None:
    response = function_client("list_models").get(
        "/v1/models", headers=signed(stack, ["model:read", perm])
    )
    assert_refused_naming(response, perm)


def test_the_allowed_wildcards_still_work(stack: Stack) -> None:
    predicted = function_client("predict_risk").post(
        "/v1/predict/risk",
        json={"instances": [example(stack)]},
        headers=signed(stack, ["model:*:predict"]),
    )
    assert predicted.status_code == 200, predicted.get_data(as_text=True)
    ran = function_client("drift_scan").post(
        "/v1/jobs/drift-scan", json={}, headers=signed(stack, ["job:*:run"])
    )
    assert ran.status_code == 200, ran.get_data(as_text=True)
    # ...and grant only what they name
    denied = function_client("list_models").get(
        "/v1/models", headers=signed(stack, ["model:*:predict", "job:*:run"])
    )
    assert_error(denied, 403, "forbidden")


def test_admin_is_still_everything(stack: Stack) -> None:
    client = function_client("purge_retention")
    response = client.post(
        "/v1/privacy/erasure", json={"subject": "analyst-7"}, headers=signed(stack, ["admin"])
    )
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("perm", ["*", "job:*:*", "*:*:run", "admin:*"])
def test_service_accounts_obey_the_same_grammar(perm: str) -> None:
    accounts = json.dumps({"sched@p.iam.gserviceaccount.com": ["job:*:run", perm]})
    with pytest.raises(ValueError, match="IPO_SERVICE_ACCOUNTS") as refused:
        Settings.from_environ(
            {"IPO_SERVICE_ACCOUNTS": accounts, "IPO_SERVICE_TOKEN_AUDIENCE": "https://gw"}
        )
    assert repr(perm) in str(refused.value)


def test_every_route_permission_is_one_of_the_shapes() -> None:
    """The grammar's table and the routes agree: each shape is needed somewhere."""
    used = set()
    for route in all_routes():
        assert route.permission is not None, route.operation_id
        concrete = route.permission.format(model_id="risk", version="1.0.0", experiment_id="e")
        used.add(parse(concrete, wildcard=False).shape)
    assert used == set(SHAPES)
