"""Token verification: what is accepted, what is refused and why."""

from __future__ import annotations

import time

import jwt
import pytest

from common.backends.env_secrets import EnvSecretSource
from common.core.config import Settings
from common.core.errors import ForbiddenError, UnauthenticatedError, UnavailableError
from common.security.auth import Principal, TokenVerifier, issue_token, permission_grants
from tests.support.fixtures import SIGNING_KEY

SETTINGS = Settings.from_environ({})
SECRETS = EnvSecretSource(None, {"IPO_SECRET_JWT_SIGNING_KEY": SIGNING_KEY})


def verifier() -> TokenVerifier:
    return TokenVerifier(SETTINGS, SECRETS)


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "analyst-1",
        "perms": ["model:read"],
        "aud": SETTINGS.jwt_audience,
        "iss": SETTINGS.jwt_issuer,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, object], key: str = SIGNING_KEY, **kw: object) -> str:
    return jwt.encode(payload, key, algorithm="HS256", **kw)  # type: ignore[arg-type]


def test_issued_token_verifies() -> None:
    token = issue_token(SETTINGS, SECRETS, subject="svc", permissions=["model:*:predict"])
    principal = verifier().authenticate({"Authorization": f"Bearer {token}"})
    assert principal.subject == "svc"
    assert principal.permissions == frozenset({"model:*:predict"})


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": -3600}, "expired"),
        ({"nbf": 3600}, "not valid yet"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": SETTINGS.jwt_issuer + "-evil"}, "issuer"),
        ({"iss": SETTINGS.jwt_issuer[:-1]}, "issuer"),
        ({"sub": None}, "'sub'"),
        ({"exp": None}, "'exp'"),
        ({"iat": None}, "'iat'"),
        ({"perms": "admin"}, "perms"),
    ],
)
def test_bad_claims_are_refused(overrides: dict[str, object], reason: str) -> None:
    """Claims made when the test runs, not when it is collected: a long suite must not turn
    the valid ones into expired ones. ``exp`` and ``nbf`` are offsets from now."""
    now = int(time.time())
    timed = {
        k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v
        for k, v in overrides.items()
    }
    with pytest.raises(UnauthenticatedError, match=reason):
        verifier().verify(sign(claims(**timed)))


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(UnauthenticatedError, match="lifetime"):
        verifier().verify(sign(claims(iat=now - 10, exp=now + SETTINGS.jwt_max_ttl_s)))
    verifier().verify(sign(claims(iat=now, exp=now + SETTINGS.jwt_max_ttl_s)))


@pytest.mark.parametrize("field", ["exp", "iat"])
def test_timestamps_must_be_integers(field: str) -> None:
    value = int(time.time()) + (600 if field == "exp" else 0)
    with pytest.raises(UnauthenticatedError):
        verifier().verify(sign(claims(**{field: str(value)})))


def test_wrong_key_is_refused() -> None:
    with pytest.raises(UnauthenticatedError, match="signature"):
        verifier().verify(sign(claims(), key="another-key-that-is-also-long-enough-0123"))


def test_alg_none_is_refused() -> None:
    token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(UnauthenticatedError):
        verifier().verify(token)


def test_crit_header_is_refused() -> None:
    token = sign(claims(), headers={"crit": ["exp"]})
    with pytest.raises(UnauthenticatedError):
        verifier().verify(token)


def test_short_signing_secret_is_a_configuration_fault() -> None:
    short = EnvSecretSource(None, {"IPO_SECRET_JWT_SIGNING_KEY": "too-short"})
    with pytest.raises(UnavailableError):
        TokenVerifier(SETTINGS, short).verify(sign(claims()))


def test_missing_signing_secret_is_503_not_401() -> None:
    with pytest.raises(UnavailableError, match="IPO_SECRET_JWT_SIGNING_KEY"):
        TokenVerifier(SETTINGS, EnvSecretSource(None, {})).verify(sign(claims()))


@pytest.mark.parametrize(
    ("granted", "required", "allowed"),
    [
        ("admin", "model:risk:promote", True),
        ("model:read", "model:read", True),
        ("model:*:predict", "model:risk:predict", True),
        ("model:*:predict", "model:risk:promote", False),
        ("model:risk:predict", "model:dcf:predict", False),
        ("model:*", "model:risk:predict", False),
        ("model", "model:read", False),
        ("job:*:run", "job:drift-scan:run", True),
        ("*", "admin", False),
        ("*", "model:read", False),
        ("*:*", "model:read", False),
        ("*:*:*", "job:drift-scan:run", False),
        ("model:*:*", "model:risk:promote", False),
        ("job:*:*", "job:drift-scan:run", False),
        ("admin", "model:*:predict", True),
    ],
)
def test_permission_matching(granted: str, required: str, allowed: bool) -> None:
    assert permission_grants(granted, required) is allowed


def test_require_raises_forbidden_naming_the_permission() -> None:
    principal = Principal("a", frozenset({"model:read"}))
    with pytest.raises(ForbiddenError, match=r"model:risk:predict"):
        principal.require("model:risk:predict")


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = verifier()
    now = int(time.time())
    token = sign(claims(iat=now, exp=now + 120))
    assert checker.verify(token).subject == "analyst-1"
    monkeypatch.setattr(
        "common.security.auth.time.time", lambda: now + 120 + SETTINGS.jwt_leeway_s + 1
    )
    with pytest.raises(UnauthenticatedError, match="expired"):
        checker.verify(token)
