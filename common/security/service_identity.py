"""Google-signed ID tokens of named service accounts (Cloud Scheduler's scheduled jobs).

Cloud Scheduler calls the job routes with an OIDC ID token that Google signs for a
dedicated service account. Such a token carries no ``perms`` claim, so what it may do
comes from the settings (``IPO_SERVICE_ACCOUNTS``: e-mail -> permissions). Only accounts
named there are trusted, only with ``email_verified`` true, and only for the exact
audience ``IPO_SERVICE_TOKEN_AUDIENCE``: a Google token minted for another service, or
for any other Google account, is refused. Google's keys come from its JWKS
(``IPO_GOOGLE_JWKS_URL``) by ``kid``; they are RSA keys, so RS256 only. The time and
lifetime rules of platform tokens apply unchanged (common/security/auth.py does both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from common.core.config import GOOGLE_ISSUERS, Settings
from common.core.errors import UnauthenticatedError
from common.security.jwks import KeySet

RS256 = "RS256"


def google_issued(issuer: Any) -> bool:
    return isinstance(issuer, str) and issuer in GOOGLE_ISSUERS


def unverified_issuer(token: str) -> Any:
    """The token's ``iss`` before any check: it only chooses whose keys verify the token,
    and each path then verifies the issuer again."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None  # the ordinary path explains what is wrong with it
    return claims.get("iss")


class ServiceAccounts:
    """The service accounts trusted by name, and Google's keys that sign their tokens."""

    def __init__(self, settings: Settings, *, key_set: KeySet | None = None) -> None:
        if settings.service_token_audience is None:
            raise ValueError("IPO_SERVICE_TOKEN_AUDIENCE is required with IPO_SERVICE_ACCOUNTS")
        self.audience: str = settings.service_token_audience
        self._accounts = {
            email: frozenset(permissions)
            for email, permissions in settings.service_accounts.items()
        }
        if key_set is None:
            key_set = KeySet(
                settings.google_jwks_url,
                ttl_s=settings.jwt_jwks_ttl_s,
                timeout_s=settings.backend_timeout_s,
            )
        self._key_set = key_set

    @classmethod
    def from_settings(
        cls, settings: Settings, *, key_set: KeySet | None = None
    ) -> ServiceAccounts | None:
        """None when no account is named: then Google-issued tokens are not trusted at all."""
        return cls(settings, key_set=key_set) if settings.service_accounts else None

    def key_for(self, header: Mapping[str, Any]) -> Any:
        """Google's public key named by the token's ``kid``; the caller verifies RS256 only."""
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise UnauthenticatedError("token has no key id ('kid')")
        found = self._key_set.get(kid)
        if found.algorithm != RS256:
            raise UnauthenticatedError("token algorithm is not the one its key verifies")
        return found.key

    def check_audience(self, claims: Mapping[str, Any]) -> None:
        """For claims API Gateway decoded: one ``aud`` string, exactly this service's."""
        if claims.get("aud") != self.audience:
            raise UnauthenticatedError("token audience is not this service")

    def grant(self, claims: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
        """The account's e-mail and the permissions configured for it.

        Google vouches for ``email`` only when ``email_verified`` is true; the ``sub`` (a
        number) is not what operators name accounts by.
        """
        if claims.get("email_verified") is not True:
            raise UnauthenticatedError("token e-mail is not verified ('email_verified')")
        email = claims.get("email")
        if not isinstance(email, str):
            raise UnauthenticatedError("token lacks the required claim 'email'")
        permissions = self._accounts.get(email)
        if permissions is None:
            raise UnauthenticatedError("token e-mail is not a service account this service trusts")
        return email, permissions
