"""Forged and broken tokens against a running function: each gets 401 and is audited.

The identity provider is real HTTP: a JWKS served on 127.0.0.1 with one RSA and one P-256
key, as an organisation's provider would publish them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask.testing import FlaskClient

from common.audit.trail import ENTRIES
from common.services import reset_services, use_services
from tests.conftest import function_client
from tests.support.fixtures import SIGNING_KEY, Stack, embedded_stack
from tests.support.jwks_server import JwksServer, public_jwk

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
AUDIENCE, ISSUER = "ipo-valuation", "https://idp.example.com"


@pytest.fixture
def provider() -> Iterator[JwksServer]:
    with JwksServer([public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]).running() as server:
        yield server


@pytest.fixture
def idp_stack(tmp_path: Path, provider: JwksServer) -> Iterator[Stack]:
    stack = embedded_stack(
        tmp_path,
        IPO_JWT_JWKS_URL=provider.url,
        IPO_JWT_ISSUER=ISSUER,
        IPO_JWT_AUDIENCE=AUDIENCE,
    )
    use_services(stack.services)
    try:
        yield stack
    finally:
        reset_services()


@pytest.fixture
def client(idp_stack: Stack) -> FlaskClient:
    return function_client("list_models")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "analyst-1",
        "perms": ["model:read"],
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def rs256(payload: dict[str, Any], kid: str = "rsa-1", key: Any = RSA_KEY) -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def raw_token(header: dict[str, Any], payload: dict[str, Any], sign: Any) -> str:
    """A token built by hand, as an attacker would, with any header and signature."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hs256_with(secret: bytes, kid: str | None = "rsa-1") -> str:
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    return raw_token(header, claims(), lambda data: hmac.new(secret, data, hashlib.sha256).digest())


def get(client: FlaskClient, token: str, **headers: str) -> Any:
    return client.get("/v1/models", headers={"Authorization": f"Bearer {token}", **headers})


def audited(stack: Stack) -> list[dict[str, Any]]:
    return [d.data for d in stack.services.backends.documents.query(ENTRIES)]


ATTACKS = {
    "alg none": lambda: raw_token({"alg": "none", "typ": "JWT"}, claims(), lambda _: b""),
    "alg none with kid": lambda: raw_token(
        {"alg": "none", "kid": "rsa-1"}, claims(), lambda _: b""
    ),
    "HS256 keyed with the RSA public key (PEM), kid": lambda: hs256_with(RSA_PEM),
    "HS256 keyed with the RSA public key (PEM), no kid": lambda: hs256_with(RSA_PEM, None),
    "HS256 keyed with the RSA public key (JWK)": lambda: hs256_with(
        json.dumps(public_jwk(RSA_KEY, "rsa-1")).encode()
    ),
    "RS256 signed by another key under a known kid": lambda: rs256(claims(), key=OTHER_RSA_KEY),
    "ES256 kid used with RS256": lambda: rs256(claims(), kid="ec-1"),
    "expired": lambda: rs256(claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
    "not yet valid": lambda: rs256(claims(nbf=int(time.time()) + 3600)),
    "wrong audience": lambda: rs256(claims(aud="another-service")),
    "issuer substring": lambda: rs256(claims(iss=ISSUER[:-4])),
    "issuer superstring": lambda: rs256(claims(iss=ISSUER + ".evil.org")),
    "unknown kid": lambda: rs256(claims(), kid="rsa-unknown"),
    "missing sub": lambda: rs256(claims(sub=None)),
    "crit header": lambda: jwt.encode(
        claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1", "crit": ["exp"]}
    ),
    "HS256 under the shared secret with kid of the provider": lambda: jwt.encode(
        claims(), SIGNING_KEY, algorithm="HS256", headers={"kid": "rsa-1"}
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused_and_audited(attack: str, client: FlaskClient, idp_stack: Stack) -> None:
    response = get(client, ATTACKS[attack]())
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "unauthenticated"
    (entry,) = audited(idp_stack)
    assert entry["outcome"] == "unauthenticated"
    assert entry["status"] == 401
    assert entry["principal"] is None
    assert entry["operation"] == "listModels"


@pytest.mark.parametrize(
    ("kid", "key", "alg"), [("rsa-1", RSA_KEY, "RS256"), ("ec-1", EC_KEY, "ES256")]
)
def test_provider_tokens_are_accepted(
    client: FlaskClient, idp_stack: Stack, kid: str, key: Any, alg: str
) -> None:
    token = jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})
    response = get(client, token)
    assert response.status_code == 200, response.get_data(as_text=True)
    (entry,) = audited(idp_stack)
    assert (entry["principal"], entry["outcome"]) == ("analyst-1", "ok")


def test_unknown_kid_refreshes_at_most_once(client: FlaskClient, provider: JwksServer) -> None:
    assert get(client, rs256(claims())).status_code == 200
    assert provider.fetches == 1
    for _ in range(5):
        assert get(client, rs256(claims(), kid="rotated-in")).status_code == 401
    assert provider.fetches == 1  # fetched too recently to refresh again


def test_unreachable_jwks_refuses_tokens(client: FlaskClient, provider: JwksServer) -> None:
    provider.down = True
    response = get(client, rs256(claims()))
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_forwarded_authorization_is_the_callers_token(client: FlaskClient) -> None:
    response = client.get(
        "/v1/models",
        headers={
            "Authorization": "Bearer gateway-identity-token-not-for-us",
            "X-Forwarded-Authorization": f"Bearer {rs256(claims())}",
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def userinfo(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def test_gateway_userinfo_is_ignored_unless_trusted(client: FlaskClient) -> None:
    response = client.get(
        "/v1/models", headers={"X-Apigateway-Api-Userinfo": userinfo(claims(perms=["admin"]))}
    )
    assert response.status_code == 401


def test_trusted_gateway_userinfo_still_checks_claims(tmp_path: Path) -> None:
    stack = embedded_stack(
        tmp_path,
        IPO_TRUST_GATEWAY_IDENTITY="true",
        IPO_JWT_ISSUER=ISSUER,
        IPO_JWT_AUDIENCE=AUDIENCE,
    )
    use_services(stack.services)
    try:
        client = function_client("list_models")
        ok = client.get("/v1/models", headers={"X-Apigateway-Api-Userinfo": userinfo(claims())})
        assert ok.status_code == 200, ok.get_data(as_text=True)
        for bad in (claims(exp=int(time.time()) - 600), claims(iss=ISSUER + "x"), claims(sub=None)):
            refused = client.get("/v1/models", headers={"X-Apigateway-Api-Userinfo": userinfo(bad)})
            assert refused.status_code == 401
    finally:
        reset_services()
