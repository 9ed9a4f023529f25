"""The identity provider down: one invented ``kid`` must not lock out every valid token.

An unknown ``kid`` asks for a refresh (the provider may have rotated in a key). When that
refresh fails, the set fetched earlier is still within its TTL and keeps verifying.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from common.core.errors import UnauthenticatedError, UnavailableError
from common.security import jwks
from common.security.jwks import MIN_REFRESH_INTERVAL_S, KeySet, VerificationKey
from common.services import reset_services, use_services
from tests.conftest import function_client
from tests.security.test_token_attacks import AUDIENCE, ISSUER, RSA_KEY, claims, get, rs256
from tests.support.fixtures import embedded_stack
from tests.support.jwks_server import JwksServer, public_jwk


@pytest.fixture
def provider() -> Iterator[JwksServer]:
    with JwksServer([public_jwk(RSA_KEY, "rsa-1")]).running() as server:
        yield server


@pytest.fixture
def client(tmp_path: Path, provider: JwksServer) -> Iterator[FlaskClient]:
    stack = embedded_stack(
        tmp_path, IPO_JWT_JWKS_URL=provider.url, IPO_JWT_ISSUER=ISSUER, IPO_JWT_AUDIENCE=AUDIENCE
    )
    use_services(stack.services)
    try:
        yield function_client("list_models")
    finally:
        reset_services()


def test_an_invented_kid_while_the_provider_is_down_is_401_and_valid_tokens_still_verify(
    client: FlaskClient, provider: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no wait between refreshes, so the invented kid's refresh really reaches the provider
    monkeypatch.setattr(jwks, "MIN_REFRESH_INTERVAL_S", 0.0)
    assert get(client, rs256(claims())).status_code == 200
    provider.down = True
    refused = get(client, rs256(claims(), kid="invented"))
    assert refused.status_code == 401, refused.get_data(as_text=True)
    assert refused.get_json()["error"]["code"] == "unauthenticated"
    assert provider.fetches == 2  # the refresh was tried, and failed
    # another valid token (not one remembered as verified) is checked against the cached set
    again = get(client, rs256(claims(sub="analyst-2")))
    assert again.status_code == 200, again.get_data(as_text=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """A fetch function: the published keys, or UnavailableError while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def __call__(self, url: str, timeout_s: float) -> dict[str, VerificationKey]:
        self.calls += 1
        if self.down:
            raise UnavailableError(f"cannot fetch the JWKS from {url}: 500")
        return {"k1": VerificationKey("k1", "RS256", object())}


def key_set(ttl_s: float = 300.0) -> tuple[KeySet, Provider, Clock]:
    fetch, clock = Provider(), Clock()
    keys = KeySet("https://idp/jwks", ttl_s=ttl_s, timeout_s=1, fetch=fetch, clock=clock)
    return keys, fetch, clock


def refused(keys: KeySet, kid: str) -> type[Exception]:
    with pytest.raises((UnauthenticatedError, UnavailableError)) as raised:
        keys.get(kid)
    return type(raised.value)


def test_a_failed_refresh_keeps_the_set_within_its_ttl_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys, fetch, clock = key_set()
    assert keys.get("k1").kid == "k1"
    fetch.down = True
    clock.now += MIN_REFRESH_INTERVAL_S
    with caplog.at_level(logging.WARNING, logger="ipo.auth"):
        assert refused(keys, "invented") is UnauthenticatedError
    assert fetch.calls == 2
    assert any("JWKS refresh failed" in r.getMessage() for r in caplog.records)
    assert keys.get("k1").kid == "k1"


def test_refreshes_for_unknown_kids_stay_spaced_after_a_failure() -> None:
    keys, fetch, clock = key_set()
    keys.get("k1")
    fetch.down = True
    clock.now += MIN_REFRESH_INTERVAL_S
    refused(keys, "invented-1")
    for n in range(5):
        clock.now += 1
        assert refused(keys, f"invented-{n + 2}") is UnauthenticatedError
    assert fetch.calls == 2
    clock.now += MIN_REFRESH_INTERVAL_S
    refused(keys, "invented-again")
    assert fetch.calls == 3


def test_a_set_past_its_ttl_is_not_used_when_it_cannot_be_refreshed() -> None:
    keys, fetch, clock = key_set(ttl_s=60)
    keys.get("k1")
    fetch.down = True
    clock.now += 60
    assert refused(keys, "k1") is UnavailableError
    assert refused(keys, "k1") is UnavailableError
    assert fetch.calls == 2  # the second was not retried at once
    fetch.down = False
    clock.now += MIN_REFRESH_INTERVAL_S
    assert keys.get("k1").kid == "k1"


def test_a_short_ttl_refreshes_on_time() -> None:
    keys, fetch, clock = key_set(ttl_s=10)
    keys.get("k1")
    clock.now += 10
    keys.get("k1")
    assert fetch.calls == 2
