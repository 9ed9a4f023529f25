"""HS256 tokens (no ``kid``, the shared secret) are accepted by default only without a JWKS.

With an identity provider configured, a shared secret beside it is a second way to mint
tokens that nobody may be watching; it stays off unless IPO_JWT_HS256_ENABLED turns it on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from common.core.config import Settings
from common.services import reset_services, use_services
from tests.conftest import function_client
from tests.functions.test_predict_risk import assert_error
from tests.security.test_token_attacks import AUDIENCE, ISSUER, RSA_KEY, claims, get, rs256
from tests.support.fixtures import Stack, embedded_stack
from tests.support.jwks_server import JwksServer, public_jwk

Install = Callable[..., tuple[Stack, FlaskClient]]
JWKS_URL = "https://idp.example.com/.well-known/jwks.json"


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    """An embedded deployment with the given settings, served as list_models."""

    def build(**environ: str) -> tuple[Stack, FlaskClient]:
        stack = embedded_stack(tmp_path, **environ)
        use_services(stack.services)
        return stack, function_client("list_models")

    try:
        yield build
    finally:
        reset_services()


@pytest.fixture
def provider() -> Iterator[JwksServer]:
    with JwksServer([public_jwk(RSA_KEY, "rsa-1")]).running() as server:
        yield server


def with_jwks(provider: JwksServer, **environ: str) -> dict[str, str]:
    return {
        "IPO_JWT_JWKS_URL": provider.url,
        "IPO_JWT_ISSUER": ISSUER,
        "IPO_JWT_AUDIENCE": AUDIENCE,
        **environ,
    }


def test_without_a_jwks_hs256_tokens_are_accepted_by_default(install: Install) -> None:
    stack, client = install()
    response = client.get("/v1/models", headers=stack.headers(("model:read",)))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_with_a_jwks_hs256_tokens_are_refused_by_default(
    install: Install, provider: JwksServer
) -> None:
    stack, client = install(**with_jwks(provider))
    refused = client.get("/v1/models", headers=stack.headers(("model:read",)))
    assert_error(refused, 401, "unauthenticated")
    assert get(client, rs256(claims())).status_code == 200  # the provider's tokens work


def test_with_a_jwks_hs256_can_still_be_turned_on(install: Install, provider: JwksServer) -> None:
    stack, client = install(**with_jwks(provider, IPO_JWT_HS256_ENABLED="true"))
    response = client.get("/v1/models", headers=stack.headers(("model:read",)))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert get(client, rs256(claims())).status_code == 200


@pytest.mark.parametrize(
    ("environ", "accepted"),
    [
        ({}, True),
        ({"IPO_JWT_JWKS_URL": JWKS_URL}, False),
        ({"IPO_JWT_JWKS_URL": JWKS_URL, "IPO_JWT_HS256_ENABLED": "true"}, True),
        ({"IPO_JWT_HS256_ENABLED": "false"}, False),
    ],
)
def test_the_setting_and_its_defaults(environ: dict[str, str], accepted: bool) -> None:
    assert Settings.from_environ(environ).hs256_accepted is accepted
