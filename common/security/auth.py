"""Bearer-token verification, principals and permissions.

Tokens are JWTs: RS256 or ES256 from an identity provider's JWKS (by ``kid``), or HS256
under a secret from the SecretSource (no ``kid``). The accepted algorithm is fixed by the
key and never read from the token; ``exp``, ``iat``, ``aud``, ``iss`` (exact) and ``sub``
are required and ``nbf`` honoured; a ``crit`` header is refused because no extension is
understood; a token may live at most ``jwt_max_ttl_s``, so a leaked token is not a
permanent key.

Google-signed ID tokens (``iss`` accounts.google.com) are verified against Google's keys,
and only for the service accounts named in the settings (common/security/service_identity.py);
without any named, such a token's issuer is not trusted.

Permissions are strings such as ``model:read`` or ``model:risk:predict``, of the grammar
in common/core/permissions.py: ``*`` may stand only for a model id or a job name
(``model:*:predict``, ``job:*:run``), and only the literal ``admin`` grants all. A token
holding anything else in ``perms`` is refused outright, not half-honoured.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cachetools import TTLCache
from werkzeug.datastructures import Headers

from common.backends.base import SecretSource, key_secret
from common.core.config import GOOGLE_ISSUERS, Settings
from common.core.errors import ForbiddenError, UnauthenticatedError
from common.core.permissions import Permission, allows, grants, parse_all
from common.security.jwks import KeySet
from common.security.service_identity import (
    RS256,
    ServiceAccounts,
    google_issued,
    unverified_issuer,
)

HS256 = "HS256"
FORWARDED_AUTHORIZATION = "X-Forwarded-Authorization"
GATEWAY_USERINFO = "X-Apigateway-Api-Userinfo"
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
VERIFIED_CACHE_SIZE = 10_000
VERIFIED_CACHE_S = 60.0
"""A key removed from the JWKS stops verifying its cached tokens within this time."""
_SUBJECT = re.compile(r"[A-Za-z0-9_.@:+-]{1,256}")


@dataclass(frozen=True)
class Principal:
    """Who is calling, with their permissions, parsed once (ValueError if one is malformed)."""

    subject: str
    permissions: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    grants: frozenset[Permission] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grants", parse_all(sorted(self.permissions)))

    def allows(self, required: str) -> bool:
        return allows(self.grants, required)

    def require(self, required: str) -> None:
        if not self.allows(required):
            raise ForbiddenError(
                f"principal {self.subject!r} lacks permission {required!r}",
                details=[{"required_permission": required}],
            )


def permission_grants(granted: str, required: str) -> bool:
    """Whether ``granted`` allows ``required``, by the grammar; a malformed one allows nothing."""
    return grants(granted, required)


def _signing_key(secrets: SecretSource, name: str) -> bytes:
    # The platform cannot verify anyone without its key: a configuration fault.
    return key_secret(secrets, name, purpose="token signing")


class TokenVerifier:
    """Verifies bearer tokens: RS256/ES256 by ``kid`` through the JWKS, HS256 without one,
    and the named service accounts' tokens through Google's JWKS.

    The algorithm comes from the key (the JWKS key's type, or HS256 for the shared
    secret), never from the token. The HS256 secret is fetched once per instance.
    """

    def __init__(
        self,
        settings: Settings,
        secrets: SecretSource,
        *,
        key_set: KeySet | None = None,
        google_key_set: KeySet | None = None,
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._key: bytes | None = None
        self._lock = threading.Lock()
        if key_set is None and settings.jwt_jwks_url:
            key_set = KeySet(
                settings.jwt_jwks_url,
                ttl_s=settings.jwt_jwks_ttl_s,
                timeout_s=settings.backend_timeout_s,
            )
        self._key_set = key_set
        self._accounts = ServiceAccounts.from_settings(settings, key_set=google_key_set)
        self._verified: TTLCache[str, Principal] = TTLCache(VERIFIED_CACHE_SIZE, VERIFIED_CACHE_S)
        self._verified_lock = threading.Lock()

    def _get_key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = _signing_key(self._secrets, self._settings.jwt_secret_name)
        return self._key

    def authenticate(self, headers: Headers | Mapping[str, str]) -> Principal:
        """The caller behind a request's headers.

        Behind API Gateway the caller's own token arrives in X-Forwarded-Authorization
        (Authorization then carries the gateway's identity token, checked by IAM before
        the request got here). With ``trust_gateway_identity`` the claims the gateway has
        already verified are read from X-Apigateway-Api-Userinfo instead.
        """
        if self._settings.trust_gateway_identity:
            userinfo = headers.get(GATEWAY_USERINFO)
            if userinfo:
                return self._from_gateway(userinfo)
        authorization = headers.get(FORWARDED_AUTHORIZATION) or headers.get("Authorization")
        if not authorization:
            raise UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("Authorization header must be 'Bearer <token>'")
        return self.verify(token)

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, str]:
        kid = header.get("kid")
        if kid is None:
            if not self._settings.hs256_accepted:
                raise UnauthenticatedError("token has no key id ('kid')")
            return self._get_key(), HS256
        if not isinstance(kid, str) or self._key_set is None:
            raise UnauthenticatedError("token is signed with an unknown key ('kid')")
        found = self._key_set.get(kid)
        return found.key, found.algorithm

    def verify(self, token: str) -> Principal:
        """The token's principal. A token verified in the last minute is not verified again
        (its time claims still are): signature checks are most of a warm request's cost."""
        with self._verified_lock:
            known = self._verified.get(token)
        if known is not None:
            self._check_times(known.claims)
            return known
        principal = self._verify(token)
        with self._verified_lock:
            self._verified[token] = principal
        return principal

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = time.time(), self._settings.jwt_leeway_s
        if claims["exp"] <= now - leeway:
            raise UnauthenticatedError("token has expired")
        if "nbf" in claims and claims["nbf"] > now + leeway:
            raise UnauthenticatedError("token is not valid yet")

    def _verify(self, token: str) -> Principal:
        header = _header(token)
        if google_issued(unverified_issuer(token)):
            accounts = self._service_accounts()
            key = accounts.key_for(header)
            claims = self._decode(token, key, RS256, accounts.audience, GOOGLE_ISSUERS)
            return self._service_principal(accounts, claims)
        key, algorithm = self._key_for(header)
        settings = self._settings
        claims = self._decode(token, key, algorithm, settings.jwt_audience, settings.jwt_issuer)
        return self._principal(claims)

    def _decode(
        self, token: str, key: Any, algorithm: str, audience: str, issuer: str | tuple[str, ...]
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=self._settings.jwt_leeway_s,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(_reason(exc)) from None
        return claims

    def _service_accounts(self) -> ServiceAccounts:
        if self._accounts is None:
            raise UnauthenticatedError("token issuer is not trusted")
        return self._accounts

    def _service_principal(self, accounts: ServiceAccounts, claims: dict[str, Any]) -> Principal:
        """A service account's principal: its e-mail, with the permissions configured for it."""
        self._check_lifetime(claims)
        email, permissions = accounts.grant(claims)
        return Principal(subject=email, permissions=permissions, claims=claims)

    def _from_gateway(self, userinfo: str) -> Principal:
        """Claims API Gateway verified; the time, audience and issuer rules still apply."""
        try:
            claims = json.loads(base64.urlsafe_b64decode(userinfo + "=" * (-len(userinfo) % 4)))
        except ValueError:
            raise UnauthenticatedError(f"{GATEWAY_USERINFO} is not base64url JSON") from None
        if not isinstance(claims, dict):
            raise UnauthenticatedError(f"{GATEWAY_USERINFO} is not a JSON object")
        missing = [name for name in REQUIRED_CLAIMS if name not in claims]
        if missing:
            raise UnauthenticatedError(f"token lacks the required claim {missing[0]!r}")
        if not _is_int(claims["exp"]) or not _is_int(claims.get("nbf", 0)):
            raise UnauthenticatedError("token 'exp' and 'nbf' must be integer timestamps")
        self._check_times(claims)
        if google_issued(claims["iss"]):
            accounts = self._service_accounts()
            accounts.check_audience(claims)
            return self._service_principal(accounts, claims)
        audience = claims["aud"]
        audiences = audience if isinstance(audience, list) else [audience]
        if self._settings.jwt_audience not in audiences:
            raise UnauthenticatedError("token audience is not this service")
        if claims["iss"] != self._settings.jwt_issuer:
            raise UnauthenticatedError("token issuer is not trusted")
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        self._check_lifetime(claims)
        return _principal_from_claims(claims)

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        issued, expires = claims["iat"], claims["exp"]
        if not (_is_int(issued) and _is_int(expires)):
            raise UnauthenticatedError("token 'iat' and 'exp' must be integer timestamps")
        if expires - issued > self._settings.jwt_max_ttl_s:
            raise UnauthenticatedError(
                f"token lifetime exceeds {self._settings.jwt_max_ttl_s} seconds"
            )


def _header(token: str) -> dict[str, Any]:
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise UnauthenticatedError("token is not a well-formed JWT") from None
    if "crit" in header:
        raise UnauthenticatedError("token has a 'crit' header, which is not supported")
    return header


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not valid yet"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the required claim {exc.claim!r}"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not this service"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not trusted"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm is not the one its key verifies"
    return "token signature or claims are invalid"


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise UnauthenticatedError("token subject must be a short identifier string")
    perms = claims.get("perms", [])
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise UnauthenticatedError("token 'perms' claim must be a list of permission strings")
    try:
        return Principal(subject=subject, permissions=frozenset(perms), claims=claims)
    except ValueError as exc:  # names the permission that is not one
        raise UnauthenticatedError(f"token 'perms' claim: {exc}") from None


def issue_token(
    settings: Settings,
    secrets: SecretSource,
    *,
    subject: str,
    permissions: Iterable[str],
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """Sign a token the verifier accepts: for local development and tests."""
    perms = sorted(set(permissions))
    parse_all(perms)  # a token the verifier would refuse is not issued
    if not _SUBJECT.fullmatch(subject):
        raise ValueError(f"invalid subject {subject!r}")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject,
        "perms": perms,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, _signing_key(secrets, settings.jwt_secret_name), HS256)
