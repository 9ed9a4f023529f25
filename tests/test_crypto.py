"""Envelope encryption: what a sealed record hides, and what opening it refuses.

Every behaviour runs on both key wrappers: the local key file and Cloud KMS behind a fake
client that really encrypts and checks the context, as KMS does.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.backends.base import KeyWrapper
from common.backends.kms_keys import KmsKeyWrapper
from common.backends.local_keys import LocalKeyWrapper
from common.crypto import ENVELOPE, SENSITIVE_FIELDS, EnvelopeCipher
from common.errors import IntegrityError, UnavailableError
from tests.backends.test_key_wrappers import FakeKms, kms_settings

RECORD = "ipo-2024-0042"
SECRET = "Zq7-very-private-figure"

DOCUMENT: dict[str, Any] = {
    "company": "Acme Robotics",
    "sector": "industrials",
    "shares_offered": 12_500_000,
    "financial_data": {
        "revenue": [101.5, 122.25, 150.0],
        "ebitda": {"2023": -4.5, "2024": 12.0},
        "auditor": SECRET,
        "restated": False,
        "notes": None,
    },
    "personal_info": {"founders": [{"name": "Ada Lovelace", "email": "ada@example.com"}]},
    "proprietary_metrics": [1, "two", 3.5, True, None, {"nested": ["déjà vu", "✓"]}],
}


def local_wrapper(tmp_path: Path) -> KeyWrapper:
    return LocalKeyWrapper(tmp_path / "keys" / "wrapping.key")


def kms_wrapper(tmp_path: Path) -> KeyWrapper:
    return KmsKeyWrapper(kms_settings(tmp_path), client=FakeKms())


@pytest.fixture(params=[local_wrapper, kms_wrapper], ids=["local", "kms"])
def wrapper(request: pytest.FixtureRequest, tmp_path: Path) -> KeyWrapper:
    factory: Callable[[Path], KeyWrapper] = request.param
    return factory(tmp_path)


@pytest.fixture
def cipher(wrapper: KeyWrapper) -> EnvelopeCipher:
    return EnvelopeCipher(wrapper)


class RecordingWrapper(KeyWrapper):
    """Passes through to a real wrapper and remembers every data key it was given."""

    def __init__(self, inner: KeyWrapper) -> None:
        self.inner = inner
        self.key_id = inner.key_id
        self.data_keys: list[bytes] = []

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        self.data_keys.append(data_key)
        return self.inner.wrap(data_key, context=context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        return self.inner.unwrap(wrapped, context=context)


class DownWrapper(KeyWrapper):
    """A key service that cannot be reached."""

    key_id = "down"

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        self.calls += 1
        raise UnavailableError("Cloud KMS unreachable after 3 attempts: ServiceUnavailable")

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        self.calls += 1
        raise UnavailableError("Cloud KMS unreachable after 3 attempts: ServiceUnavailable")


# --- sealing and opening --------------------------------------------------------------


def test_round_trip_restores_every_sensitive_field(cipher: EnvelopeCipher) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    assert EnvelopeCipher.is_sealed(sealed)
    assert not EnvelopeCipher.is_sealed(DOCUMENT)
    for field in SENSITIVE_FIELDS:
        assert set(sealed[field]) == {"nonce", "ciphertext"}
        assert len(base64.b64decode(sealed[field]["nonce"], validate=True)) == 12
    assert cipher.open(RECORD, sealed) == DOCUMENT


@pytest.mark.parametrize("field", SENSITIVE_FIELDS)
@pytest.mark.parametrize("value", [None, 0, "", "text", [], {}, {"a": [1, {"b": None}]}])
def test_each_field_alone_round_trips_any_json_value(
    cipher: EnvelopeCipher, field: str, value: Any
) -> None:
    document = {"name": "x", field: value}
    sealed = cipher.seal(RECORD, document)
    assert sealed[ENVELOPE]["fields"] == [field]
    assert cipher.open(RECORD, sealed) == document


def test_envelope_and_non_sensitive_fields(cipher: EnvelopeCipher, wrapper: KeyWrapper) -> None:
    original = copy.deepcopy(DOCUMENT)
    sealed = cipher.seal(RECORD, DOCUMENT)
    assert original == DOCUMENT  # the input is not modified
    for field in ("company", "sector", "shares_offered"):
        assert sealed[field] == DOCUMENT[field]
    envelope = sealed[ENVELOPE]
    assert envelope["alg"] == "AES-256-GCM"
    assert envelope["key_id"] == wrapper.key_id
    assert envelope["fields"] == sorted(SENSITIVE_FIELDS)
    assert isinstance(envelope["wrapped_key"], str)
    base64.b64decode(envelope["wrapped_key"], validate=True)
    json.dumps(sealed)  # still a plain JSON document any store can hold


def test_sealing_twice_gives_different_ciphertexts_and_keys(cipher: EnvelopeCipher) -> None:
    one, two = cipher.seal(RECORD, DOCUMENT), cipher.seal(RECORD, DOCUMENT)
    for field in SENSITIVE_FIELDS:
        assert one[field]["ciphertext"] != two[field]["ciphertext"]
        assert one[field]["nonce"] != two[field]["nonce"]
    assert one[ENVELOPE]["wrapped_key"] != two[ENVELOPE]["wrapped_key"]


def test_no_plaintext_or_data_key_in_the_sealed_document(wrapper: KeyWrapper) -> None:
    recording = RecordingWrapper(wrapper)
    sealed = EnvelopeCipher(recording).seal(RECORD, DOCUMENT)
    (data_key,) = recording.data_keys
    assert len(data_key) == 32
    text = json.dumps(sealed, ensure_ascii=False)
    raw = text.encode()
    for needle in (SECRET, "Ada Lovelace", "ada@example.com", "déjà vu", "122.25"):
        assert needle.encode() not in raw
    assert data_key not in raw
    assert base64.b64encode(data_key).decode() not in text
    assert data_key.hex() not in text
    for field in SENSITIVE_FIELDS:  # nor in the decoded ciphertexts
        blob = base64.b64decode(sealed[field]["ciphertext"])
        assert SECRET.encode() not in blob
        assert b"Ada Lovelace" not in blob
    assert data_key not in base64.b64decode(sealed[ENVELOPE]["wrapped_key"])


def test_document_without_sensitive_fields_is_copied_without_a_key(tmp_path: Path) -> None:
    down = DownWrapper()
    cipher = EnvelopeCipher(down)
    document = {"company": "Acme", "sector": "retail"}
    sealed = cipher.seal(RECORD, document)
    assert sealed == document
    assert sealed is not document
    assert not EnvelopeCipher.is_sealed(sealed)
    opened = cipher.open(RECORD, sealed)
    assert opened == document
    assert opened is not sealed
    assert down.calls == 0


def test_unreachable_key_service_fails_the_seal() -> None:
    down = DownWrapper()
    with pytest.raises(UnavailableError):
        EnvelopeCipher(down).seal(RECORD, DOCUMENT)
    assert down.calls == 1


def test_unreachable_key_service_fails_the_open(
    cipher: EnvelopeCipher, wrapper: KeyWrapper
) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    down = DownWrapper()
    down.key_id = wrapper.key_id
    with pytest.raises(UnavailableError):
        EnvelopeCipher(down).open(RECORD, sealed)
    assert down.calls == 1


def test_sealing_a_sealed_document_is_refused(cipher: EnvelopeCipher) -> None:
    with pytest.raises(ValueError, match=ENVELOPE):
        cipher.seal(RECORD, cipher.seal(RECORD, DOCUMENT))


def test_non_json_values_are_refused(cipher: EnvelopeCipher) -> None:
    with pytest.raises(ValueError, match="financial_data"):
        cipher.seal(RECORD, {"financial_data": float("nan")})
    with pytest.raises(ValueError, match="personal_info"):
        cipher.seal(RECORD, {"personal_info": {1, 2}})


# --- what opening refuses -------------------------------------------------------------


def test_another_record_id_fails(cipher: EnvelopeCipher) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    with pytest.raises(IntegrityError):
        cipher.open("ipo-2024-0043", sealed)


def test_a_field_moved_to_another_name_fails(cipher: EnvelopeCipher) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    swapped = dict(sealed)
    swapped["financial_data"], swapped["personal_info"] = (
        sealed["personal_info"],
        sealed["financial_data"],
    )
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.open(RECORD, swapped)


def test_a_field_copied_from_another_record_fails(cipher: EnvelopeCipher) -> None:
    mine = cipher.seal(RECORD, DOCUMENT)
    theirs = cipher.seal("ipo-2024-0043", {**DOCUMENT, "financial_data": {"auditor": "x"}})
    with pytest.raises(IntegrityError):
        cipher.open(RECORD, {**mine, "financial_data": theirs["financial_data"]})


def _flip(b64: str, index: int = -1) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("part", ["ciphertext", "nonce"])
@pytest.mark.parametrize("index", [0, -1])
def test_tampered_field_fails(cipher: EnvelopeCipher, part: str, index: int) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    field = dict(sealed["personal_info"])
    field[part] = _flip(field[part], index)
    with pytest.raises(IntegrityError):
        cipher.open(RECORD, {**sealed, "personal_info": field})


@pytest.mark.parametrize("index", [0, 5, -1])
def test_tampered_wrapped_key_fails(cipher: EnvelopeCipher, index: int) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    envelope = {**sealed[ENVELOPE], "wrapped_key": _flip(sealed[ENVELOPE]["wrapped_key"], index)}
    with pytest.raises(IntegrityError):
        cipher.open(RECORD, {**sealed, ENVELOPE: envelope})


def test_wrapped_key_from_another_record_fails(cipher: EnvelopeCipher) -> None:
    mine = cipher.seal(RECORD, DOCUMENT)
    theirs = cipher.seal("ipo-2024-0043", DOCUMENT)
    with pytest.raises(IntegrityError):
        cipher.open(RECORD, {**mine, ENVELOPE: theirs[ENVELOPE]})


MANGLES: dict[str, Callable[[dict[str, Any]], object]] = {
    "plaintext": lambda d: d.update({"personal_info": "plaintext slipped in"}),
    "unlisted": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "fields": ["financial_data"]}}),
    "alg": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "alg": "none"}}),
    "base64": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "wrapped_key": "not base64!"}}),
    "envelope": lambda d: d.update({ENVELOPE: "garbage"}),
    "nonce-type": lambda d: d.update({"financial_data": {**d["financial_data"], "nonce": 12}}),
    "nonce-size": lambda d: d.update({"financial_data": {**d["financial_data"], "nonce": "AAAA"}}),
    "dropped": lambda d: d.pop("proprietary_metrics"),
}


@pytest.mark.parametrize("mangle", list(MANGLES))
def test_malformed_sealed_documents_fail(cipher: EnvelopeCipher, mangle: str) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    MANGLES[mangle](sealed)
    with pytest.raises(IntegrityError):
        cipher.open(RECORD, sealed)


def test_a_record_sealed_under_another_key_names_it(tmp_path: Path) -> None:
    sealed = EnvelopeCipher(LocalKeyWrapper(tmp_path / "a.key")).seal(RECORD, DOCUMENT)
    other = LocalKeyWrapper(tmp_path / "b.key")
    with pytest.raises(IntegrityError, match=sealed[ENVELOPE]["key_id"]):
        EnvelopeCipher(other).open(RECORD, sealed)


def test_sealed_records_open_in_a_new_process(tmp_path: Path) -> None:
    sealed = EnvelopeCipher(local_wrapper(tmp_path)).seal(RECORD, DOCUMENT)
    stored = json.loads(json.dumps(sealed))
    assert EnvelopeCipher(local_wrapper(tmp_path)).open(RECORD, stored) == DOCUMENT
