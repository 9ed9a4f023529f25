"""The identity provider's signing keys (JWKS), fetched, cached and looked up by ``kid``.

Each key's algorithm is fixed by the key itself (an RSA key verifies RS256 only, a P-256
key ES256 only) and never by the token's header, so a token cannot choose how it is
checked. An unknown ``kid`` triggers at most one refresh, and refreshes are spaced out so
a stream of invented key ids cannot turn the service into a load generator against the
identity provider. When no key set within its TTL is at hand, tokens are refused (503),
never accepted; a refresh that fails keeps the set still within its TTL, so an invented
``kid`` during a provider outage is refused (401) and the valid keys keep verifying.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from common.core.errors import UnauthenticatedError, UnavailableError

log = logging.getLogger("ipo.auth")

MIN_RSA_BITS = 2048
MIN_REFRESH_INTERVAL_S = 30.0
MAX_JWKS_BYTES = 256 * 1024


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: str
    key: Any
    """The public key object PyJWT verifies with."""


def _algorithm_of(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm this key may verify, or None if the platform does not accept it."""
    kty, crv, declared = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if kty == "RSA":
        algorithm = "RS256"
    elif kty == "EC" and crv == "P-256":
        algorithm = "ES256"
    else:
        return None
    if declared is not None and declared != algorithm:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    return algorithm


def parse_jwks(document: Any) -> dict[str, VerificationKey]:
    """Usable signing keys by kid; keys of other types, uses or sizes are left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a 'keys' list")
    keys: dict[str, VerificationKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        algorithm = _algorithm_of(jwk)
        if algorithm is None:
            log.warning("JWKS key %r skipped: unsupported type or use", jwk.get("kid"))
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("JWKS key %r skipped: %s", jwk["kid"], exc)
            continue
        if algorithm == "RS256" and key.key_size < MIN_RSA_BITS:
            log.warning("JWKS key %r skipped: RSA key under %d bits", jwk["kid"], MIN_RSA_BITS)
            continue
        keys[jwk["kid"]] = VerificationKey(jwk["kid"], algorithm, key)
    return keys


def fetch_jwks(url: str, timeout_s: float) -> dict[str, VerificationKey]:
    # imported on the first fetch: a function verifying only its own HS256 tokens, or one
    # that has not yet seen a token, does not pay requests' import at start-up
    import requests

    try:
        response = requests.get(url, timeout=timeout_s, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        return parse_jwks(response.json())
    except (requests.RequestException, ValueError) as exc:
        raise UnavailableError(f"cannot fetch the JWKS from {url}: {exc}") from None


class KeySet:
    """The cached JWKS of one identity provider."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        timeout_s: float,
        fetch: Callable[[str, float], dict[str, VerificationKey]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, VerificationKey] | None = None
        self._fetched_at = float("-inf")
        """When the set in ``_keys`` was fetched: it is trusted for ``ttl_s`` from then."""
        self._attempted_at = float("-inf")
        """When a fetch was last tried, whatever came of it: attempts are spaced out."""
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self, now: float) -> dict[str, VerificationKey]:
        self.fetches += 1
        self._attempted_at = now
        try:
            keys = self._fetch(self._url, self._timeout_s)
        except UnavailableError as exc:
            log.warning("JWKS refresh failed: %s", exc.message)
            raise
        self._keys, self._fetched_at = keys, now
        return keys

    def get(self, kid: str) -> VerificationKey:
        """The key named ``kid``: 401 if the provider does not publish it, 503 if no set
        within its TTL is at hand.

        A failed refresh for an unknown ``kid`` keeps the set still within its TTL, so one
        token with an invented ``kid`` cannot make the valid ones fail while the provider
        is down.
        """
        with self._lock:
            now = self._clock()
            keys = self._keys
            if keys is None or now - self._fetched_at >= self._ttl_s:
                failed = self._attempted_at > self._fetched_at
                if failed and now - self._attempted_at < MIN_REFRESH_INTERVAL_S:
                    raise UnavailableError("the JWKS could not be fetched; retrying shortly")
                keys = self._refresh(now)  # a set past its TTL is not used
            elif kid not in keys and now - self._attempted_at >= MIN_REFRESH_INTERVAL_S:
                # the provider may have rotated in a new key; if it cannot be reached (logged),
                # the cached set still answers, and this kid is not in it
                with contextlib.suppress(UnavailableError):
                    keys = self._refresh(now)
            found = keys.get(kid)
        if found is None:
            raise UnauthenticatedError("token is signed with an unknown key ('kid')")
        return found
