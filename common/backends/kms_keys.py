"""Data keys wrapped by Cloud KMS, so the key-encryption key never leaves Google's HSMs.

Only the 32-byte data key crosses the network, never a record. The context travels as
additional authenticated data, so KMS itself refuses to unwrap a key under another
context (another data key's id, or another record's for version 1 records). Every request
and response carries the CRC32C checksums Google documents for end-to-end integrity; a
mismatch is refused rather than trusted. Each call has the configured timeout and a
bounded, jittered retry of our own.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import google_crc32c

from common.backends import _support
from common.backends.base import KeyWrapper
from common.backends.local_keys import check_data_key
from common.core.config import Settings
from common.core.errors import IntegrityError, UnavailableError


class KmsClient(Protocol):
    """The two methods used, so tests can stand in at the client boundary."""

    def encrypt(self, *, request: Any, retry: Any, timeout: float) -> Any: ...

    def decrypt(self, *, request: Any, retry: Any, timeout: float) -> Any: ...


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class KmsKeyWrapper(KeyWrapper):
    def __init__(self, settings: Settings, client: KmsClient | None = None) -> None:
        if not settings.kms_key_name:
            raise ValueError("IPO_KMS_KEY_NAME is required for the Cloud KMS key wrapper")
        self.key_id = settings.kms_key_name
        self._timeout_s = settings.backend_timeout_s
        self._attempts = settings.backend_attempts
        self._client = client
        self._lock = threading.Lock()

    def _get_client(self) -> KmsClient:
        """Built on first use: importing and authenticating cost start-up time."""
        with self._lock:
            if self._client is None:
                from google.auth.exceptions import GoogleAuthError
                from google.cloud import kms

                try:
                    self._client = kms.KeyManagementServiceClient()
                except GoogleAuthError as exc:
                    raise UnavailableError(f"Cloud KMS credentials: {exc}") from None
            return self._client

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        check_data_key(data_key)
        request = {
            "name": self.key_id,
            "plaintext": data_key,
            "plaintext_crc32c": _crc(data_key),
            "additional_authenticated_data": context,
            "additional_authenticated_data_crc32c": _crc(context),
        }
        response = self._call("encrypt", request)
        ciphertext = bytes(response.ciphertext)
        if not response.verified_plaintext_crc32c:
            raise IntegrityError("Cloud KMS did not verify the data key's CRC32C on encrypt")
        if not response.verified_additional_authenticated_data_crc32c:
            raise IntegrityError("Cloud KMS did not verify the context's CRC32C on encrypt")
        if response.ciphertext_crc32c != _crc(ciphertext):
            raise IntegrityError("wrapped data key from Cloud KMS failed its CRC32C check")
        name = str(response.name)
        if name != self.key_id and not name.startswith(self.key_id + "/cryptoKeyVersions/"):
            raise IntegrityError(f"Cloud KMS encrypted under {name!r}, not {self.key_id!r}")
        return ciphertext

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        request = {
            "name": self.key_id,
            "ciphertext": wrapped,
            "ciphertext_crc32c": _crc(wrapped),
            "additional_authenticated_data": context,
            "additional_authenticated_data_crc32c": _crc(context),
        }
        response = self._call("decrypt", request)
        plaintext = bytes(response.plaintext)
        if response.plaintext_crc32c != _crc(plaintext):
            raise IntegrityError("data key from Cloud KMS failed its CRC32C check")
        return plaintext

    def _call(self, method: str, request: dict[str, Any]) -> Any:
        """One bounded retry loop of our own; the client's 60-second default is disabled."""
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError, TransportError

        client = self._get_client()
        call = client.encrypt if method == "encrypt" else client.decrypt
        transient = (
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
            gexc.InternalServerError,
            gexc.TooManyRequests,
            TransportError,
            ConnectionError,
        )
        for attempt in range(self._attempts):
            try:
                return call(request=request, retry=None, timeout=self._timeout_s)
            except transient as exc:
                if attempt == self._attempts - 1:
                    raise UnavailableError(
                        f"Cloud KMS unreachable after {self._attempts} attempts: "
                        f"{type(exc).__name__}"
                    ) from None
            except gexc.InvalidArgument as exc:
                if method == "decrypt":
                    raise IntegrityError(
                        "wrapped data key failed authentication: Cloud KMS refused it "
                        f"(altered, or under another context): {exc.message}"
                    ) from None
                raise UnavailableError(f"Cloud KMS refused encrypt: {exc.message}") from None
            except GoogleAuthError as exc:
                raise UnavailableError(f"Cloud KMS credentials: {exc}") from None
            except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
                raise UnavailableError(
                    f"Cloud KMS refused {method} with {self.key_id}: {type(exc).__name__}: {exc}"
                ) from None
            time.sleep(_support.backoff_s(attempt, base_s=0.1, cap_s=1.0))
        raise AssertionError("unreachable")
