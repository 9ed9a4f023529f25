"""The key wrappers: a local key file on a laptop, Cloud KMS in the cloud.

Cloud KMS has no emulator, so it is exercised through a fake at the client boundary that
really encrypts (AES-GCM with the context as associated data, as KMS does) and answers
with the real request and response types.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError
from google.cloud.kms_v1 import DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse

from common.backends import build_key_wrapper
from common.backends.kms_keys import KmsKeyWrapper
from common.backends.local_keys import LocalKeyWrapper
from common.core.config import Settings
from common.core.errors import IntegrityError, UnavailableError

KEY_NAME = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
VERSION_NAME = KEY_NAME + "/cryptoKeyVersions/1"
OTHER_KEY_VERSION = KEY_NAME + "-old/cryptoKeyVersions/1"  # shares the key's name as a prefix
DATA_KEY = bytes(range(32))
CONTEXT = b"ipo-record:v1|rec-1"


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class FakeKms:
    """Stands in for KeyManagementServiceClient: same calls, same checks, same responses."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.failures = list(failures or [])
        self.requests: list[dict[str, Any]] = []
        self.tamper: set[str] = set()

    def calls(self, method: str) -> int:
        """How many ``encrypt`` or ``decrypt`` requests reached the client (retries too)."""
        return sum(1 for r in self.requests if r["method"] == method)

    def _record(self, method: str, request: Any, retry: Any, timeout: Any) -> None:
        self.requests.append({"method": method, **request, "retry": retry, "timeout": timeout})
        if self.failures:
            raise self.failures.pop(0)

    def encrypt(
        self, *, request: dict[str, Any], retry: Any = None, timeout: float | None = None
    ) -> EncryptResponse:
        self._record("encrypt", request, retry, timeout)
        req = EncryptRequest(request)
        if req.name != KEY_NAME:
            raise gexc.NotFound(f"{req.name} not found")
        if req.plaintext_crc32c != crc(req.plaintext):
            raise gexc.InvalidArgument("plaintext_crc32c did not match")
        nonce = os.urandom(12)
        ciphertext = nonce + self.aead.encrypt(
            nonce, req.plaintext, req.additional_authenticated_data
        )
        return EncryptResponse(
            name=OTHER_KEY_VERSION if "name" in self.tamper else VERSION_NAME,
            ciphertext=ciphertext,
            ciphertext_crc32c=crc(ciphertext) ^ (1 if "ciphertext_crc32c" in self.tamper else 0),
            verified_plaintext_crc32c="verified_plaintext" not in self.tamper,
            verified_additional_authenticated_data_crc32c="verified_aad" not in self.tamper,
        )

    def decrypt(
        self, *, request: dict[str, Any], retry: Any = None, timeout: float | None = None
    ) -> DecryptResponse:
        self._record("decrypt", request, retry, timeout)
        req = DecryptRequest(request)
        if req.ciphertext_crc32c != crc(req.ciphertext):
            raise gexc.InvalidArgument("ciphertext_crc32c did not match")
        blob = bytes(req.ciphertext)
        try:
            plaintext = self.aead.decrypt(blob[:12], blob[12:], req.additional_authenticated_data)
        except (InvalidTag, ValueError):
            raise gexc.InvalidArgument("Decryption failed: the ciphertext is invalid.") from None
        bad = 1 if "plaintext_crc32c" in self.tamper else 0
        return DecryptResponse(plaintext=plaintext, plaintext_crc32c=crc(plaintext) ^ bad)


def kms_settings(tmp_path: Path, **extra: str) -> Settings:
    env = {"IPO_DATA_DIR": str(tmp_path), "IPO_KEY_WRAPPER": "kms", "IPO_KMS_KEY_NAME": KEY_NAME}
    return Settings.from_environ({**env, **extra})


# --- the local key file ---------------------------------------------------------------


def test_local_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "wrapping.key"
    first = build_key_wrapper(Settings.from_environ({"IPO_DATA_DIR": str(tmp_path)}))
    assert isinstance(first, LocalKeyWrapper)
    assert first.path == path
    assert not path.exists()  # nothing happens until first use
    wrapped = first.wrap(DATA_KEY, context=CONTEXT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert len(path.read_bytes()) == 32
    assert [p.name for p in path.parent.iterdir()] == ["wrapping.key"]

    second = LocalKeyWrapper(path)
    assert second.key_id == first.key_id
    assert second.key_id.startswith("local:")
    assert len(second.key_id) == len("local:") + 16
    assert second.unwrap(wrapped, context=CONTEXT) == DATA_KEY


def test_a_lost_creation_race_reads_the_winners_key(tmp_path: Path) -> None:
    path = tmp_path / "wrapping.key"
    loser = LocalKeyWrapper(path)
    winner = LocalKeyWrapper(path)
    wrapped = winner.wrap(DATA_KEY, context=CONTEXT)
    assert loser._create() == path.read_bytes()  # as if it had seen no file a moment ago
    assert loser.unwrap(wrapped, context=CONTEXT) == DATA_KEY
    assert [p.name for p in tmp_path.iterdir()] == ["wrapping.key"]


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrapping.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(UnavailableError, match="chmod 600") as info:
        LocalKeyWrapper(path).wrap(DATA_KEY, context=CONTEXT)
    assert str(path) in info.value.message


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_wrong_length_key_file_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "wrapping.key"
    path.write_bytes(os.urandom(size))
    path.chmod(0o600)
    with pytest.raises(UnavailableError, match=f"holds {size} bytes, not 32") as info:
        LocalKeyWrapper(path).key_id  # noqa: B018 - loading is the point
    assert str(path) in info.value.message


def test_local_wrong_context_fails_authentication(tmp_path: Path) -> None:
    wrapper = LocalKeyWrapper(tmp_path / "wrapping.key")
    wrapped = wrapper.wrap(DATA_KEY, context=CONTEXT)
    with pytest.raises(IntegrityError, match="failed authentication"):
        wrapper.unwrap(wrapped, context=b"ipo-record:v1|rec-2")
    with pytest.raises(IntegrityError, match="failed authentication"):
        LocalKeyWrapper(tmp_path / "other.key").unwrap(wrapped, context=CONTEXT)


def test_local_wrapping_is_randomised_and_versioned(tmp_path: Path) -> None:
    wrapper = LocalKeyWrapper(tmp_path / "wrapping.key")
    one, two = (wrapper.wrap(DATA_KEY, context=CONTEXT) for _ in range(2))
    assert one != two
    assert one[:1] == b"\x01"
    assert len(one) == 1 + 12 + 32 + 16
    assert DATA_KEY not in one


WRAPPED_MANGLES: dict[str, Callable[[bytes], bytes]] = {
    "tag": lambda b: b[:-1] + bytes([b[-1] ^ 1]),
    "nonce": lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:],
    "version": lambda b: b"\x02" + b[1:],
    "truncated": lambda b: b[:-1],
    "empty": lambda b: b"",
}


@pytest.mark.parametrize("mangle", list(WRAPPED_MANGLES))
def test_local_altered_wrapped_key_fails(tmp_path: Path, mangle: str) -> None:
    wrapper = LocalKeyWrapper(tmp_path / "wrapping.key")
    wrapped = wrapper.wrap(DATA_KEY, context=CONTEXT)
    with pytest.raises(IntegrityError, match="failed authentication"):
        wrapper.unwrap(WRAPPED_MANGLES[mangle](wrapped), context=CONTEXT)


@pytest.mark.parametrize("bad", [b"", b"short", bytes(33)])
def test_only_32_byte_data_keys_are_wrapped(tmp_path: Path, bad: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalKeyWrapper(tmp_path / "wrapping.key").wrap(bad, context=CONTEXT)


# --- Cloud KMS at the client boundary -------------------------------------------------


def test_kms_round_trip_sends_aad_checksums_and_timeout(tmp_path: Path) -> None:
    fake = FakeKms()
    wrapper = KmsKeyWrapper(kms_settings(tmp_path, IPO_BACKEND_TIMEOUT_S="2"), client=fake)
    assert wrapper.key_id == KEY_NAME
    wrapped = wrapper.wrap(DATA_KEY, context=CONTEXT)
    assert wrapper.unwrap(wrapped, context=CONTEXT) == DATA_KEY
    encrypt, decrypt = fake.requests
    assert encrypt == {
        "method": "encrypt",
        "name": KEY_NAME,
        "plaintext": DATA_KEY,
        "plaintext_crc32c": crc(DATA_KEY),
        "additional_authenticated_data": CONTEXT,
        "additional_authenticated_data_crc32c": crc(CONTEXT),
        "retry": None,
        "timeout": 2.0,
    }
    assert decrypt == {
        "method": "decrypt",
        "name": KEY_NAME,
        "ciphertext": wrapped,
        "ciphertext_crc32c": crc(wrapped),
        "additional_authenticated_data": CONTEXT,
        "additional_authenticated_data_crc32c": crc(CONTEXT),
        "retry": None,
        "timeout": 2.0,
    }


def test_kms_wrong_context_is_an_integrity_error(tmp_path: Path) -> None:
    wrapper = KmsKeyWrapper(kms_settings(tmp_path), client=FakeKms())
    wrapped = wrapper.wrap(DATA_KEY, context=CONTEXT)
    with pytest.raises(IntegrityError, match="failed authentication"):
        wrapper.unwrap(wrapped, context=b"ipo-record:v1|rec-2")
    with pytest.raises(IntegrityError):
        wrapper.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), context=CONTEXT)


@pytest.mark.parametrize(
    "tamper", ["ciphertext_crc32c", "verified_plaintext", "verified_aad", "name"]
)
def test_kms_encrypt_response_checks(tmp_path: Path, tamper: str) -> None:
    fake = FakeKms()
    fake.tamper.add(tamper)
    with pytest.raises(IntegrityError):
        KmsKeyWrapper(kms_settings(tmp_path), client=fake).wrap(DATA_KEY, context=CONTEXT)


def test_kms_decrypt_plaintext_crc_mismatch(tmp_path: Path) -> None:
    fake = FakeKms()
    wrapper = KmsKeyWrapper(kms_settings(tmp_path), client=fake)
    wrapped = wrapper.wrap(DATA_KEY, context=CONTEXT)
    fake.tamper.add("plaintext_crc32c")
    with pytest.raises(IntegrityError, match="CRC32C"):
        wrapper.unwrap(wrapped, context=CONTEXT)


def test_kms_transient_errors_are_retried(tmp_path: Path) -> None:
    fake = FakeKms(failures=[gexc.ServiceUnavailable("down"), gexc.DeadlineExceeded("slow")])
    wrapper = KmsKeyWrapper(kms_settings(tmp_path, IPO_BACKEND_ATTEMPTS="3"), client=fake)
    wrapped = wrapper.wrap(DATA_KEY, context=CONTEXT)
    assert len(fake.requests) == 3
    fake.failures = [gexc.InternalServerError("oops"), ConnectionResetError("reset")]
    assert wrapper.unwrap(wrapped, context=CONTEXT) == DATA_KEY
    assert len(fake.requests) == 6


def test_kms_persistent_outage_is_unavailable(tmp_path: Path) -> None:
    fake = FakeKms(failures=[gexc.ServiceUnavailable("down")] * 2)
    wrapper = KmsKeyWrapper(kms_settings(tmp_path, IPO_BACKEND_ATTEMPTS="2"), client=fake)
    with pytest.raises(UnavailableError, match="2 attempts") as info:
        wrapper.wrap(DATA_KEY, context=CONTEXT)
    assert info.value.status == 503
    assert len(fake.requests) == 2


def test_kms_permission_denied_is_unavailable_at_once(tmp_path: Path) -> None:
    fake = FakeKms(failures=[gexc.PermissionDenied("no cloudkms.cryptoKeyVersions.useToEncrypt")])
    wrapper = KmsKeyWrapper(kms_settings(tmp_path), client=fake)
    with pytest.raises(UnavailableError, match="PermissionDenied"):
        wrapper.wrap(DATA_KEY, context=CONTEXT)
    assert len(fake.requests) == 1


def test_kms_invalid_argument_on_decrypt_is_integrity(tmp_path: Path) -> None:
    fake = FakeKms(failures=[gexc.InvalidArgument("Decryption failed")])
    wrapper = KmsKeyWrapper(kms_settings(tmp_path), client=fake)
    with pytest.raises(IntegrityError):
        wrapper.unwrap(b"\x00" * 60, context=CONTEXT)
    assert len(fake.requests) == 1


def test_kms_missing_credentials_are_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_credentials() -> None:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr("google.cloud.kms.KeyManagementServiceClient", no_credentials)
    wrapper = build_key_wrapper(kms_settings(tmp_path))
    assert isinstance(wrapper, KmsKeyWrapper)
    assert wrapper.key_id == KEY_NAME  # no client needed to name the key
    with pytest.raises(UnavailableError, match="credentials"):
        wrapper.wrap(DATA_KEY, context=CONTEXT)
