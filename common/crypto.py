"""Envelope encryption of the sensitive fields of a record.

Each record gets its own fresh AES-256-GCM data key, so one leaked data key exposes one
record, not the store. The data key is stored only wrapped by a KeyWrapper (Cloud KMS in
the cloud), which sees 32 key bytes and never the data. Every field's associated data
names its record and field, so a ciphertext copied to another record or field fails to
open instead of decrypting to the wrong place.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.backends.base import KeyWrapper
from common.errors import IntegrityError

SENSITIVE_FIELDS: tuple[str, ...] = ("financial_data", "personal_info", "proprietary_metrics")
ENVELOPE = "envelope"
"""The key under which a sealed document stores its wrapped data key."""

ALGORITHM = "AES-256-GCM"
NONCE_BYTES = 12
KEY_BYTES = 32


def _field_aad(record_id: str, field: str) -> bytes:
    return f"ipo-envelope:v1|{record_id}|{field}".encode()


def _wrap_context(record_id: str) -> bytes:
    return f"ipo-record:v1|{record_id}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise IntegrityError(f"sealed record is malformed: {what} is not base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise IntegrityError(f"sealed record is malformed: {what} is not base64") from None


def _check_record_id(record_id: str) -> None:
    if not isinstance(record_id, str) or not record_id:
        raise ValueError("record_id must be a non-empty string")


class EnvelopeCipher:
    """Seals and opens the sensitive fields of documents under per-record data keys."""

    def __init__(self, wrapper: KeyWrapper) -> None:
        self._wrapper = wrapper

    @staticmethod
    def is_sealed(document: Mapping[str, Any]) -> bool:
        return ENVELOPE in document

    def seal(self, record_id: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """A copy whose sensitive fields are ciphertext; the wrapper's errors propagate."""
        _check_record_id(record_id)
        if ENVELOPE in document:
            raise ValueError(f"document already has an {ENVELOPE!r} field (sealed twice?)")
        fields = sorted(name for name in SENSITIVE_FIELDS if name in document)
        sealed = dict(document)
        if not fields:
            return sealed
        plaintexts = {name: _encode(name, document[name]) for name in fields}
        data_key = AESGCM.generate_key(bit_length=256)
        wrapped = self._wrapper.wrap(data_key, context=_wrap_context(record_id))
        aead = AESGCM(data_key)
        for name in fields:
            nonce = secrets.token_bytes(NONCE_BYTES)
            ciphertext = aead.encrypt(nonce, plaintexts[name], _field_aad(record_id, name))
            sealed[name] = {"nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
        sealed[ENVELOPE] = {
            "alg": ALGORITHM,
            "key_id": self._wrapper.key_id,
            "wrapped_key": _b64(wrapped),
            "fields": fields,
        }
        return sealed

    def open(self, record_id: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """The plaintext copy; IntegrityError if anything sealed was altered or moved."""
        _check_record_id(record_id)
        opened = dict(document)
        envelope = opened.pop(ENVELOPE, None)
        if envelope is None:
            return opened
        fields = _check_envelope(envelope, document)
        if envelope["key_id"] != self._wrapper.key_id:
            raise IntegrityError(
                f"record {record_id!r} was sealed under key {envelope['key_id']!r}, "
                f"not {self._wrapper.key_id!r}"
            )
        wrapped = _unb64(envelope["wrapped_key"], "wrapped_key")
        data_key = self._wrapper.unwrap(wrapped, context=_wrap_context(record_id))
        if len(data_key) != KEY_BYTES:
            raise IntegrityError("unwrapped data key has the wrong length")
        aead = AESGCM(data_key)
        for name in fields:
            sealed = document[name]
            if not isinstance(sealed, Mapping) or set(sealed) != {"nonce", "ciphertext"}:
                raise IntegrityError(f"sealed field {name!r} is malformed")
            nonce = _unb64(sealed["nonce"], f"{name}.nonce")
            ciphertext = _unb64(sealed["ciphertext"], f"{name}.ciphertext")
            if len(nonce) != NONCE_BYTES:
                raise IntegrityError(f"sealed field {name!r} has a malformed nonce")
            try:
                plaintext = aead.decrypt(nonce, ciphertext, _field_aad(record_id, name))
            except InvalidTag:
                raise IntegrityError(
                    f"sealed field {name!r} of record {record_id!r} failed authentication: "
                    "it was altered or belongs to another record or field"
                ) from None
            try:
                opened[name] = json.loads(plaintext)
            except ValueError:
                raise IntegrityError(f"sealed field {name!r} is not JSON") from None
        return opened


def _encode(field: str, value: Any) -> bytes:
    try:
        text = json.dumps(
            value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: not a JSON value: {exc}") from None
    return text.encode()


def _check_envelope(envelope: Any, document: Mapping[str, Any]) -> list[str]:
    """The sealed field names, after checking the envelope lists exactly the sensitive
    fields present: a plaintext value slipped in beside the sealed ones is refused."""
    if (
        not isinstance(envelope, Mapping)
        or envelope.get("alg") != ALGORITHM
        or not isinstance(envelope.get("key_id"), str)
        or "wrapped_key" not in envelope
    ):
        raise IntegrityError(f"sealed record is malformed: bad {ENVELOPE!r} field")
    fields = envelope.get("fields")
    present = sorted(name for name in SENSITIVE_FIELDS if name in document)
    if not isinstance(fields, list) or fields != present:
        raise IntegrityError(
            f"sealed record is malformed: {ENVELOPE!r} lists fields {fields!r}, the document "
            f"has {present!r}"
        )
    return present
