"""Google-signed ID tokens of named service accounts (Cloud Scheduler) on the job routes.

"Google" is real HTTP here: a JWKS served on 127.0.0.1, and RS256 tokens signed with its
key as Google signs the ID tokens Cloud Scheduler sends. Every request goes through the
local gateway to the function, as API Gateway would send it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient

from common.audit.trail import ENTRIES
from common.core.errors import UnauthenticatedError
from common.security.auth import TokenVerifier
from common.services import reset_services, use_services
from tests.support.fixtures import SIGNING_KEY, Stack, embedded_stack
from tests.support.jwks_server import JwksServer, public_jwk
from tools.gateway import create_app

GOOGLE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
GOOGLE = "https://accounts.google.com"
SCHEDULER = "ipo-scheduler@ipo-prod.iam.gserviceaccount.com"
STRANGER = "someone-else@ipo-prod.iam.gserviceaccount.com"
AUDIENCE = "https://ipo-gateway.example.com"
DRIFT_SCAN = "/v1/jobs/drift-scan"
ACCOUNTS = json.dumps({SCHEDULER: ["job:*:run"]})


@pytest.fixture
def google() -> Iterator[JwksServer]:
    """Google's JWKS: one RSA key, and an EC key Google never signs with."""
    keys = [public_jwk(GOOGLE_KEY, "g-1", with_alg=True), public_jwk(EC_KEY, "g-ec", with_alg=True)]
    with JwksServer(keys, path="/oauth2/v3/certs").running() as server:
        yield server


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    return create_app().test_client()


StackOf = Callable[..., Stack]


@pytest.fixture
def stack_of(tmp_path: Path, google: JwksServer) -> Iterator[StackOf]:
    """Installs an embedded deployment that trusts Google's JWKS above, with overrides."""

    def install(**environ: str) -> Stack:
        built = embedded_stack(tmp_path, IPO_GOOGLE_JWKS_URL=google.url, **environ)
        use_services(built.services)
        return built

    try:
        yield install
    finally:
        reset_services()


@pytest.fixture
def stack(stack_of: StackOf) -> Stack:
    return stack_of(IPO_SERVICE_ACCOUNTS=ACCOUNTS, IPO_SERVICE_TOKEN_AUDIENCE=AUDIENCE)


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of the ID token Cloud Scheduler sends for its service account."""
    now = int(time.time())
    base = {
        "iss": GOOGLE,
        "aud": AUDIENCE,
        "azp": "108723456789012345678",
        "sub": "108723456789012345678",
        "email": SCHEDULER,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def google_token(payload: dict[str, Any], kid: str = "g-1", key: Any = GOOGLE_KEY) -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def userinfo(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def audited(stack: Stack) -> list[dict[str, Any]]:
    return [d.data for d in stack.services.backends.documents.query(ENTRIES)]


def test_scheduler_token_runs_the_job(client: FlaskClient, stack: Stack) -> None:
    response = client.post(DRIFT_SCAN, json={}, headers=bearer(google_token(claims())))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "done"
    (entry,) = audited(stack)
    assert (entry["principal"], entry["outcome"], entry["operation"]) == (
        SCHEDULER,
        "ok",
        "driftScan",
    )


def test_issuer_without_scheme_is_google_too(client: FlaskClient, stack: Stack) -> None:
    token = google_token(claims(iss="accounts.google.com"))
    response = client.post(DRIFT_SCAN, json={}, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_forwarded_authorization_carries_the_scheduler_token(
    client: FlaskClient, stack: Stack
) -> None:
    response = client.post(
        DRIFT_SCAN,
        json={},
        headers={
            "Authorization": "Bearer gateway-identity-token-not-for-us",
            "X-Forwarded-Authorization": f"Bearer {google_token(claims())}",
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_platform_tokens_still_work_beside_service_accounts(
    client: FlaskClient, stack: Stack
) -> None:
    response = client.post(DRIFT_SCAN, json={}, headers=stack.headers(("job:drift-scan:run",)))
    assert response.status_code == 200, response.get_data(as_text=True)


REFUSED = {
    "wrong audience": (lambda: google_token(claims(aud="https://other.example.com")), "audience"),
    "audience list holding ours": (
        lambda: google_token(claims(aud=[AUDIENCE, "https://other.example.com"])),
        "audience",
    ),
    "email_verified false": (lambda: google_token(claims(email_verified=False)), "verified"),
    "email_verified missing": (lambda: google_token(claims(email_verified=None)), "verified"),
    "email_verified the string true": (
        lambda: google_token(claims(email_verified="true")),
        "verified",
    ),
    "email missing": (lambda: google_token(claims(email=None)), "'email'"),
    "email not listed": (lambda: google_token(claims(email=STRANGER)), "not a service account"),
    "expired": (
        lambda: google_token(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
        "expired",
    ),
    "lifetime over the maximum": (
        lambda: google_token(claims(exp=int(time.time()) + 2 * 86400)),
        "lifetime",
    ),
    "missing sub": (lambda: google_token(claims(sub=None)), "'sub'"),
    "issuer superstring, so not Google's keys": (
        lambda: google_token(claims(iss=GOOGLE + ".evil.org")),
        "unknown key",
    ),
    "HS256 under the platform secret claiming Google": (
        lambda: jwt.encode(claims(), SIGNING_KEY, algorithm="HS256"),
        "key id",
    ),
    "HS256 with Google's kid": (
        lambda: jwt.encode(claims(), SIGNING_KEY, algorithm="HS256", headers={"kid": "g-1"}),
        "algorithm",
    ),
    "unknown kid": (lambda: google_token(claims(), kid="g-unknown"), "unknown key"),
    "known kid, another key": (lambda: google_token(claims(), key=OTHER_KEY), "signature"),
    "EC key in Google's set": (
        lambda: jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "g-ec"}),
        "algorithm",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_token_is_401_and_audited(case: str, client: FlaskClient, stack: Stack) -> None:
    make, reason = REFUSED[case]
    response = client.post(DRIFT_SCAN, json={}, headers=bearer(make()))
    assert response.status_code == 401, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "unauthenticated"
    assert reason in error["message"]
    (entry,) = audited(stack)
    assert (entry["outcome"], entry["status"], entry["principal"]) == ("unauthenticated", 401, None)
    assert entry["operation"] == "driftScan"


@pytest.mark.parametrize("issuer", [GOOGLE, "accounts.google.com"])
def test_google_issuer_is_not_trusted_without_service_accounts(
    client: FlaskClient, stack_of: StackOf, google: JwksServer, issuer: str
) -> None:
    stack = stack_of()
    response = client.post(DRIFT_SCAN, json={}, headers=bearer(google_token(claims(iss=issuer))))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "token issuer is not trusted"
    (entry,) = audited(stack)
    assert entry["outcome"] == "unauthenticated"
    assert google.fetches == 0  # Google's keys are never fetched for nobody


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/privacy/erasure"), ("POST", "/v1/predict/risk")]
)
def test_scheduler_token_is_forbidden_beyond_its_jobs(
    client: FlaskClient, stack: Stack, method: str, path: str
) -> None:
    response = client.open(path, method=method, json={}, headers=bearer(google_token(claims())))
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "forbidden"
    (entry,) = audited(stack)
    assert (entry["outcome"], entry["status"], entry["principal"]) == ("forbidden", 403, SCHEDULER)


def test_permissions_are_the_mapped_list(client: FlaskClient, stack_of: StackOf) -> None:
    stack = stack_of(
        IPO_SERVICE_ACCOUNTS=json.dumps({SCHEDULER: ["job:warm-cache:run"]}),
        IPO_SERVICE_TOKEN_AUDIENCE=AUDIENCE,
    )
    response = client.post(DRIFT_SCAN, json={}, headers=bearer(google_token(claims())))
    assert response.status_code == 403
    assert response.get_json()["error"]["details"] == [
        {"required_permission": "job:drift-scan:run"}
    ]
    (entry,) = audited(stack)
    assert entry["outcome"] == "forbidden"


@pytest.fixture
def gateway_stack(stack_of: StackOf) -> Stack:
    return stack_of(
        IPO_SERVICE_ACCOUNTS=ACCOUNTS,
        IPO_SERVICE_TOKEN_AUDIENCE=AUDIENCE,
        IPO_TRUST_GATEWAY_IDENTITY="true",
    )


def test_gateway_userinfo_of_the_scheduler_runs_the_job(
    client: FlaskClient, gateway_stack: Stack, google: JwksServer
) -> None:
    headers = {"X-Apigateway-Api-Userinfo": userinfo(claims())}
    response = client.post(DRIFT_SCAN, json={}, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    (entry,) = audited(gateway_stack)
    assert (entry["principal"], entry["outcome"]) == (SCHEDULER, "ok")
    assert google.fetches == 0  # the gateway verified the signature


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(aud="https://other.example.com"), "audience"),
        (claims(aud=[AUDIENCE]), "audience"),
        (claims(email_verified=False), "verified"),
        (claims(email_verified=None), "verified"),
        (claims(email=STRANGER), "not a service account"),
        (claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), "expired"),
        (claims(exp=int(time.time()) + 2 * 86400), "lifetime"),
        (claims(sub=None), "'sub'"),
    ],
)
def test_gateway_userinfo_of_google_is_checked_like_a_token(
    client: FlaskClient, gateway_stack: Stack, payload: dict[str, Any], reason: str
) -> None:
    headers = {"X-Apigateway-Api-Userinfo": userinfo(payload)}
    response = client.post(DRIFT_SCAN, json={}, headers=headers)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert reason in response.get_json()["error"]["message"]
    (entry,) = audited(gateway_stack)
    assert (entry["outcome"], entry["principal"]) == ("unauthenticated", None)


def test_gateway_userinfo_of_google_is_refused_without_service_accounts(
    client: FlaskClient, stack_of: StackOf
) -> None:
    stack_of(IPO_TRUST_GATEWAY_IDENTITY="true")
    headers = {"X-Apigateway-Api-Userinfo": userinfo(claims())}
    response = client.post(DRIFT_SCAN, json={}, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "token issuer is not trusted"


def test_verified_scheduler_token_is_remembered_and_still_expires(
    stack: Stack, google: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(stack.settings, stack.services.backends.secrets)
    now = int(time.time())
    token = google_token(claims(iat=now, exp=now + 120))
    assert verifier.verify(token).subject == SCHEDULER
    assert verifier.verify(token).permissions == frozenset({"job:*:run"})
    assert google.fetches == 1
    monkeypatch.setattr(
        "common.security.auth.time.time", lambda: now + 120 + stack.settings.jwt_leeway_s + 1
    )
    with pytest.raises(UnauthenticatedError, match="expired"):
        verifier.verify(token)
