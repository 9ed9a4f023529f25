"""Secrets from Google Secret Manager, always at a pinned version.

Asking for ``latest`` would let a secret change under a running service without a
deploy; instead every secret's version comes from ``IPO_PINNED_SECRETS`` and a secret
without a pin is refused. Payloads are checked against their CRC32C, values are cached
for the life of the instance, and each call has the configured timeout and attempts.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from common.backends import _support
from common.backends.base import SecretSource
from common.core.config import Settings
from common.core.errors import IntegrityError, NotFoundError, UnavailableError


class SecretManagerClient(Protocol):
    """The one method used, so tests can stand in at the client boundary."""

    def access_secret_version(self, *, request: Any, retry: Any, timeout: float) -> Any: ...


def _crc32c(payload: Any) -> int | None:
    """The payload's checksum when the server sent one (``data_crc32c`` is optional)."""
    try:
        present = "data_crc32c" in payload
    except TypeError:  # not a proto message: fall back to the attribute
        present = getattr(payload, "data_crc32c", None) is not None
    return int(payload.data_crc32c) if present else None


class SecretManagerSource(SecretSource):
    def __init__(self, settings: Settings, client: SecretManagerClient | None = None) -> None:
        if not settings.gcp_project:
            raise ValueError("IPO_GCP_PROJECT is required for the Secret Manager source")
        self._project = settings.gcp_project
        self._pins = dict(settings.pinned_secret_versions)
        self._timeout_s = settings.backend_timeout_s
        self._attempts = settings.backend_attempts
        self._client = client
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def _get_client(self) -> SecretManagerClient:
        """Built on first use: importing and authenticating cost start-up time."""
        with self._lock:
            if self._client is None:
                from google.auth.exceptions import GoogleAuthError
                from google.cloud import secretmanager

                try:
                    self._client = secretmanager.SecretManagerServiceClient()
                except GoogleAuthError as exc:
                    raise UnavailableError(f"Secret Manager credentials: {exc}") from None
            return self._client

    def version_name(self, name: str) -> str:
        """``projects/p/secrets/name/versions/N``; NotFoundError when ``name`` has no pin."""
        version = self._pins.get(name)
        if version is None:
            raise NotFoundError(
                f"secret {name!r} has no pinned version: add {name}=<version number> to "
                "IPO_PINNED_SECRETS ('latest' is never used)"
            )
        return f"projects/{self._project}/secrets/{name}/versions/{version}"

    def get(self, name: str) -> str:
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None:
            return cached
        resource = self.version_name(name)
        payload = self._access(resource).payload
        data = bytes(payload.data)
        expected = _crc32c(payload)
        if expected is not None:
            import google_crc32c

            if google_crc32c.value(data) != expected:
                raise IntegrityError(f"secret {resource} failed its CRC32C check")
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(f"secret {resource} is not UTF-8 text") from None
        with self._lock:
            self._cache[name] = value
        return value

    def _access(self, resource: str) -> Any:
        """One bounded retry loop of our own; the client's 60-second default is disabled."""
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import TransportError

        client = self._get_client()
        transient = (
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
            gexc.InternalServerError,
            gexc.TooManyRequests,
            TransportError,
        )
        for attempt in range(self._attempts):
            try:
                return client.access_secret_version(
                    request={"name": resource}, retry=None, timeout=self._timeout_s
                )
            except gexc.NotFound:
                raise NotFoundError(f"secret version {resource} does not exist") from None
            except transient as exc:
                if attempt == self._attempts - 1:
                    raise UnavailableError(
                        f"Secret Manager unreachable after {self._attempts} attempts: "
                        f"{type(exc).__name__}"
                    ) from None
            except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
                raise UnavailableError(
                    f"Secret Manager refused {resource}: {type(exc).__name__}: {exc}"
                ) from None
            time.sleep(_support.backoff_s(attempt, base_s=0.1, cap_s=1.0))
        raise AssertionError("unreachable")
