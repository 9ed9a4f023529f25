"""Bearer-token verification, principals and permissions.

Tokens are JWTs signed with HS256 under a secret from the SecretSource. The accepted
algorithm is fixed here and never read from the token; ``exp``, ``iat``, ``aud``, ``iss``
and ``sub`` are required; a ``crit`` header is refused because no extension is understood;
a token may live at most ``jwt_max_ttl_s``, so a leaked token is not a permanent key.

Permissions are strings such as ``model:read`` or ``model:risk:predict``. A granted
permission may use ``*`` for one whole segment (``model:*:predict``); ``admin`` grants all.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from common.backends.base import SecretSource
from common.config import Settings
from common.errors import ForbiddenError, NotFoundError, UnauthenticatedError, UnavailableError

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
MIN_SECRET_BYTES = 32
ADMIN = "admin"
_PERMISSION = re.compile(r"^[a-z*][a-z0-9_*-]*(:[a-z0-9*][a-z0-9_.*-]*)*$")
_SUBJECT = re.compile(r"^[A-Za-z0-9_.@:+-]{1,256}$")


@dataclass(frozen=True)
class Principal:
    subject: str
    permissions: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def allows(self, required: str) -> bool:
        return any(permission_grants(granted, required) for granted in self.permissions)

    def require(self, required: str) -> None:
        if not self.allows(required):
            raise ForbiddenError(
                f"principal {self.subject!r} lacks permission {required!r}",
                details=[{"required_permission": required}],
            )


def permission_grants(granted: str, required: str) -> bool:
    if granted in (ADMIN, required):
        return True
    want = required.split(":")
    have = granted.split(":")
    return len(want) == len(have) and all(h in ("*", w) for h, w in zip(have, want, strict=True))


def _signing_key(secrets: SecretSource, name: str) -> bytes:
    try:
        key = secrets.get(name).encode()
    except NotFoundError as exc:
        # The platform cannot verify anyone without its key: a configuration fault.
        raise UnavailableError(f"token signing secret is not configured: {exc.message}") from None
    if len(key) < MIN_SECRET_BYTES:
        raise UnavailableError(
            f"token signing secret {name!r} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    return key


class TokenVerifier:
    """Verifies bearer tokens; the signing key is fetched once per instance."""

    def __init__(self, settings: Settings, secrets: SecretSource) -> None:
        self._settings = settings
        self._secrets = secrets
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _get_key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = _signing_key(self._secrets, self._settings.jwt_secret_name)
        return self._key

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("Authorization header must be 'Bearer <token>'")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        key = self._get_key()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_s,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise UnauthenticatedError("token is not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise UnauthenticatedError(f"token lacks the required claim {exc.claim!r}") from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError("token audience is not this service") from None
        except jwt.InvalidIssuerError:
            raise UnauthenticatedError("token issuer is not trusted") from None
        except jwt.PyJWTError:  # bad signature, malformed, unsupported 'crit', wrong alg
            raise UnauthenticatedError("token signature or claims are invalid") from None
        issued, expires = claims["iat"], claims["exp"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (issued, expires)):
            raise UnauthenticatedError("token 'iat' and 'exp' must be integer timestamps")
        if expires - issued > self._settings.jwt_max_ttl_s:
            raise UnauthenticatedError(
                f"token lifetime exceeds {self._settings.jwt_max_ttl_s} seconds"
            )
        return _principal_from_claims(claims)


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _SUBJECT.match(subject):
        raise UnauthenticatedError("token subject must be a short identifier string")
    perms = claims.get("perms", [])
    if not isinstance(perms, list) or not all(
        isinstance(p, str) and _PERMISSION.match(p) for p in perms
    ):
        raise UnauthenticatedError("token 'perms' claim must be a list of permission strings")
    return Principal(subject=subject, permissions=frozenset(perms), claims=claims)


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
    for perm in perms:
        if not _PERMISSION.match(perm):
            raise ValueError(f"invalid permission {perm!r}")
    if not _SUBJECT.match(subject):
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
    return jwt.encode(claims, _signing_key(secrets, settings.jwt_secret_name), ALGORITHM)
