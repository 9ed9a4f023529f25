"""Envelope encryption of the sensitive fields of a record.

Fields are encrypted with AES-256-GCM under a data key that is stored only wrapped by a
KeyWrapper (Cloud KMS in the cloud), which sees 32 key bytes and never the data. One data
key serves at most ``max_records`` records or ``max_age_s`` seconds of one process,
whichever ends first, so sealing costs one wrap (one KMS call) per data key, not per
record (docs/SECURITY.md, "Data keys"). Every field has its own random 96-bit nonce, and
its associated data names its record and field, so a ciphertext copied to another record
or field fails to open instead of decrypting to the wrong place.

A sealed document's ``envelope`` has one of two shapes, and both open:

- version 2, written now: ``version`` (2), ``alg``, ``key_id`` (the wrapping key),
  ``data_key_id`` (32 hex digits), ``wrapped_key``, ``fields``. The data key is wrapped
  under the context ``ipo-datakey:v2|<data_key_id>``.
- version 1, opened but no longer written: no ``version`` and no ``data_key_id``; a data
  key per record, wrapped under the context ``ipo-record:v1|<record id>``.

Opening unwraps each distinct data key once and keeps it in a small cache bounded in count
and age, so reading many records sealed under one data key costs one unwrap.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.backends.base import KeyWrapper
from common.core.errors import IntegrityError, UnavailableError

SENSITIVE_FIELDS: tuple[str, ...] = ("financial_data", "personal_info", "proprietary_metrics")
ENVELOPE = "envelope"
"""The key under which a sealed document stores its wrapped data key."""

ALGORITHM = "AES-256-GCM"
NONCE_BYTES = 12
KEY_BYTES = 32
ENVELOPE_VERSION = 2
DATA_KEY_ID_BYTES = 16

DATA_KEY_MAX_RECORDS = 10_000
"""Records sealed under one data key, at most (the default of IPO_DATA_KEY_MAX_RECORDS)."""
DATA_KEY_MAX_AGE_S = 300.0
"""Seconds one data key seals records, at most (the default of IPO_DATA_KEY_MAX_AGE_S)."""
OPENED_KEYS = 256
"""Unwrapped data keys kept for opening, at most; each for at most ``max_age_s``."""

_DATA_KEY_ID = re.compile(f"[0-9a-f]{{{2 * DATA_KEY_ID_BYTES}}}")
_V1_FIELDS = frozenset({"alg", "key_id", "wrapped_key", "fields"})
_V2_FIELDS = _V1_FIELDS | {"version", "data_key_id"}


def _field_aad(record_id: str, field: str) -> bytes:
    return f"ipo-envelope:v1|{record_id}|{field}".encode()


def _record_wrap_context(record_id: str) -> bytes:
    """Version 1: the data key of one record."""
    return f"ipo-record:v1|{record_id}".encode()


def _data_key_wrap_context(data_key_id: str) -> bytes:
    """Version 2: a data key shared by many records, named by its own random id."""
    return f"ipo-datakey:v2|{data_key_id}".encode()


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


@dataclass
class _DataKey:
    """The data key this process seals with, and how much of its bounds is used."""

    id: str
    wrapped: bytes
    aead: AESGCM
    pid: int
    created: float
    records: int = 0


class EnvelopeCipher:
    """Seals and opens the sensitive fields of documents under bounded, shared data keys.

    ``max_records`` and ``max_age_s`` bound one data key (``1`` record: a key per record);
    ``clock`` measures its age (monotonic seconds). A data key never crosses a fork: a
    process whose id differs from the one that made it makes its own. Safe for concurrent
    use from many threads.
    """

    def __init__(
        self,
        wrapper: KeyWrapper,
        *,
        max_records: int = DATA_KEY_MAX_RECORDS,
        max_age_s: float = DATA_KEY_MAX_AGE_S,
        opened_keys: int = OPENED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ValueError("max_records must be an integer of at least 1")
        if not max_age_s > 0:
            raise ValueError("max_age_s must be greater than 0")
        if opened_keys < 1:
            raise ValueError("opened_keys must be at least 1")
        self._wrapper = wrapper
        self._max_records = max_records
        self._max_age_s = float(max_age_s)
        self._clock = clock
        self._sealing_lock = threading.Lock()
        self._current: _DataKey | None = None
        self._wrap_failures = 0
        self._last_wrap_failure = ""
        self._opened_lock = threading.Lock()
        self._opened: TTLCache[tuple[bytes, bytes], AESGCM] = TTLCache(
            maxsize=opened_keys, ttl=self._max_age_s, timer=clock
        )

    @property
    def max_records(self) -> int:
        return self._max_records

    @property
    def max_age_s(self) -> float:
        return self._max_age_s

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
        key = self._data_key()
        for name in fields:
            nonce = secrets.token_bytes(NONCE_BYTES)
            ciphertext = key.aead.encrypt(nonce, plaintexts[name], _field_aad(record_id, name))
            sealed[name] = {"nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
        sealed[ENVELOPE] = {
            "version": ENVELOPE_VERSION,
            "alg": ALGORITHM,
            "key_id": self._wrapper.key_id,
            "data_key_id": key.id,
            "wrapped_key": _b64(key.wrapped),
            "fields": fields,
        }
        return sealed

    def _data_key(self) -> _DataKey:
        """The data key for one more record: the current one while within its bounds, else
        a new one. Wrapping happens under the lock, so threads that find the key spent
        wait for one new key instead of each wrapping their own; if that wrap fails, the
        threads that waited for it fail at once instead of each retrying in turn."""
        failures_seen = self._wrap_failures
        with self._sealing_lock:
            key = self._current
            if (
                key is None
                or key.records >= self._max_records
                or self._clock() - key.created >= self._max_age_s
                or key.pid != os.getpid()
            ):
                if self._wrap_failures != failures_seen:
                    raise UnavailableError(
                        "no data key: the key service failed while this record waited for "
                        f"one ({self._last_wrap_failure})"
                    )
                try:
                    key = self._new_data_key()
                except Exception as exc:
                    self._wrap_failures += 1
                    self._last_wrap_failure = f"{type(exc).__name__}: {exc}"
                    raise
                self._current = key
            key.records += 1
            return key

    def _new_data_key(self) -> _DataKey:
        created = self._clock()
        data_key = AESGCM.generate_key(bit_length=256)
        key_id = secrets.token_hex(DATA_KEY_ID_BYTES)
        context = _data_key_wrap_context(key_id)
        wrapped = self._wrapper.wrap(data_key, context=context)
        aead = AESGCM(data_key)
        with self._opened_lock:  # this process opens what it sealed without an unwrap
            self._opened[(context, wrapped)] = aead
        return _DataKey(id=key_id, wrapped=wrapped, aead=aead, pid=os.getpid(), created=created)

    def open(self, record_id: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """The plaintext copy; IntegrityError if anything sealed was altered or moved."""
        _check_record_id(record_id)
        opened = dict(document)
        envelope = opened.pop(ENVELOPE, None)
        if envelope is None:
            return opened
        fields, context, shared = _check_envelope(envelope, document, record_id)
        if envelope["key_id"] != self._wrapper.key_id:
            raise IntegrityError(
                f"record {record_id!r} was sealed under key {envelope['key_id']!r}, "
                f"not {self._wrapper.key_id!r}"
            )
        wrapped = _unb64(envelope["wrapped_key"], "wrapped_key")
        aead = self._unwrap(wrapped, context, cache=shared)
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

    def _unwrap(self, wrapped: bytes, context: bytes, *, cache: bool) -> AESGCM:
        """The data key of ``wrapped``. A shared (version 2) key is cached by its wrapped
        bytes and context together, exactly what the wrapper authenticates, so a cache hit
        is the answer the wrapper would give. A version 1 key serves one record: not cached.
        """
        entry = (context, wrapped)
        if cache:
            with self._opened_lock:
                aead = self._opened.get(entry)
            if aead is not None:
                return aead
        data_key = self._wrapper.unwrap(wrapped, context=context)
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise IntegrityError("unwrapped data key has the wrong length")
        aead = AESGCM(data_key)
        if cache:
            with self._opened_lock:
                self._opened[entry] = aead
        return aead


def _encode(field: str, value: Any) -> bytes:
    try:
        text = json.dumps(
            value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: not a JSON value: {exc}") from None
    return text.encode()


def _check_envelope(
    envelope: Any, document: Mapping[str, Any], record_id: str
) -> tuple[list[str], bytes, bool]:
    """The sealed field names, the wrap context, and whether the data key is shared
    (version 2), after checking the envelope has exactly one known shape and lists
    exactly the sensitive fields present: a plaintext value slipped in beside the sealed
    ones is refused."""
    if not isinstance(envelope, Mapping):
        raise IntegrityError(f"sealed record is malformed: bad {ENVELOPE!r} field")
    if "version" in envelope:
        version = envelope["version"]
        if type(version) is not int or version != ENVELOPE_VERSION:
            raise IntegrityError(f"sealed record has an unknown envelope version {version!r}")
        expected = _V2_FIELDS
    else:
        expected = _V1_FIELDS
    if set(envelope) != expected:
        raise IntegrityError(
            f"sealed record is malformed: {ENVELOPE!r} has fields {sorted(envelope)!r}, "
            f"not {sorted(expected)!r}"
        )
    key_id = envelope["key_id"]
    if envelope["alg"] != ALGORITHM or not isinstance(key_id, str) or not key_id:
        raise IntegrityError(f"sealed record is malformed: bad {ENVELOPE!r} field")
    if expected is _V2_FIELDS:
        data_key_id = envelope["data_key_id"]
        if not isinstance(data_key_id, str) or not _DATA_KEY_ID.fullmatch(data_key_id):
            raise IntegrityError(
                f"sealed record is malformed: data_key_id must be {2 * DATA_KEY_ID_BYTES} "
                "lower-case hex digits"
            )
        context, shared = _data_key_wrap_context(data_key_id), True
    else:
        context, shared = _record_wrap_context(record_id), False
    fields = envelope["fields"]
    present = sorted(name for name in SENSITIVE_FIELDS if name in document)
    if not isinstance(fields, list) or fields != present:
        raise IntegrityError(
            f"sealed record is malformed: {ENVELOPE!r} lists fields {fields!r}, the document "
            f"has {present!r}"
        )
    return present, context, shared
