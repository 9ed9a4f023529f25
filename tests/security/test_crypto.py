"""Envelope encryption: what a sealed record hides, what opening it refuses, and how
many key-service calls it costs.

Every behaviour runs on both key wrappers: the local key file and Cloud KMS behind a fake
client that really encrypts and checks the context, as KMS does, and counts the calls.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.api_core import exceptions as gexc

from common.backends.base import KeyWrapper
from common.backends.kms_keys import KmsKeyWrapper
from common.backends.local_keys import LocalKeyWrapper
from common.core.errors import IntegrityError, UnavailableError
from common.security.crypto import ENVELOPE, SENSITIVE_FIELDS, EnvelopeCipher
from tests.backends.test_key_wrappers import FakeKms, kms_settings
from tests.support.fixtures import embedded_stack

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
    assert set(envelope) == {"version", "alg", "key_id", "data_key_id", "wrapped_key", "fields"}
    assert envelope["version"] == 2
    assert envelope["alg"] == "AES-256-GCM"
    assert envelope["key_id"] == wrapper.key_id
    assert re.fullmatch(r"[0-9a-f]{32}", envelope["data_key_id"])
    assert envelope["fields"] == sorted(SENSITIVE_FIELDS)
    assert isinstance(envelope["wrapped_key"], str)
    base64.b64decode(envelope["wrapped_key"], validate=True)
    json.dumps(sealed)  # still a plain JSON document any store can hold


def test_sealing_twice_gives_different_ciphertexts_under_one_data_key(
    cipher: EnvelopeCipher,
) -> None:
    one, two = cipher.seal(RECORD, DOCUMENT), cipher.seal(RECORD, DOCUMENT)
    for field in SENSITIVE_FIELDS:
        assert one[field]["ciphertext"] != two[field]["ciphertext"]
        assert one[field]["nonce"] != two[field]["nonce"]
    assert one[ENVELOPE] == two[ENVELOPE]  # the data key is reused within its bounds


def test_one_record_per_data_key_gives_different_keys(wrapper: KeyWrapper) -> None:
    cipher = EnvelopeCipher(wrapper, max_records=1)
    one, two = cipher.seal(RECORD, DOCUMENT), cipher.seal(RECORD, DOCUMENT)
    assert one[ENVELOPE]["data_key_id"] != two[ENVELOPE]["data_key_id"]
    assert one[ENVELOPE]["wrapped_key"] != two[ENVELOPE]["wrapped_key"]
    assert cipher.open(RECORD, one) == cipher.open(RECORD, two) == DOCUMENT


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


def test_the_envelope_of_another_data_key_fails(
    cipher: EnvelopeCipher, wrapper: KeyWrapper
) -> None:
    mine = cipher.seal(RECORD, DOCUMENT)
    theirs = EnvelopeCipher(wrapper).seal("ipo-2024-0043", DOCUMENT)  # another instance
    assert mine[ENVELOPE]["data_key_id"] != theirs[ENVELOPE]["data_key_id"]
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.open(RECORD, {**mine, ENVELOPE: theirs[ENVELOPE]})


def test_a_data_key_id_moved_to_another_wrapped_key_fails(
    cipher: EnvelopeCipher, wrapper: KeyWrapper
) -> None:
    """The wrap context names the data key id: a wrapped key relabelled does not unwrap."""
    mine = cipher.seal(RECORD, DOCUMENT)
    theirs = EnvelopeCipher(wrapper).seal(RECORD, DOCUMENT)
    relabelled = {**mine[ENVELOPE], "data_key_id": theirs[ENVELOPE]["data_key_id"]}
    with pytest.raises(IntegrityError, match="failed authentication"):
        EnvelopeCipher(wrapper).open(RECORD, {**mine, ENVELOPE: relabelled})


MANGLES: dict[str, Callable[[dict[str, Any]], object]] = {
    "plaintext": lambda d: d.update({"personal_info": "plaintext slipped in"}),
    "unlisted": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "fields": ["financial_data"]}}),
    "alg": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "alg": "none"}}),
    "base64": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "wrapped_key": "not base64!"}}),
    "envelope": lambda d: d.update({ENVELOPE: "garbage"}),
    "nonce-type": lambda d: d.update({"financial_data": {**d["financial_data"], "nonce": 12}}),
    "nonce-size": lambda d: d.update({"financial_data": {**d["financial_data"], "nonce": "AAAA"}}),
    "dropped": lambda d: d.pop("proprietary_metrics"),
    "fields-type": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "fields": "financial_data"}}),
    "key-id-type": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "key_id": 7}}),
    "extra": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "note": "x"}}),
    "version-unknown": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "version": 3}}),
    "version-one": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "version": 1}}),
    "version-text": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "version": "2"}}),
    "version-float": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "version": 2.0}}),
    "version-none": lambda d: d.update({ENVELOPE: {**d[ENVELOPE], "version": None}}),
    "version-dropped": lambda d: d[ENVELOPE].pop("version"),
    "data-key-id-dropped": lambda d: d[ENVELOPE].pop("data_key_id"),
    "data-key-id-short": lambda d: d[ENVELOPE].update({"data_key_id": "ab" * 15}),
    "data-key-id-long": lambda d: d[ENVELOPE].update({"data_key_id": "ab" * 17}),
    "data-key-id-upper": lambda d: d[ENVELOPE].update({"data_key_id": "AB" * 16}),
    "data-key-id-type": lambda d: d[ENVELOPE].update({"data_key_id": 12}),
    "data-key-id-other": lambda d: d[ENVELOPE].update({"data_key_id": "ab" * 16}),
}


@pytest.mark.parametrize("mangle", list(MANGLES))
def test_malformed_sealed_documents_fail(cipher: EnvelopeCipher, mangle: str) -> None:
    sealed = cipher.seal(RECORD, DOCUMENT)
    sealed[ENVELOPE] = dict(sealed[ENVELOPE])
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


# --- data keys reused within bounds ---------------------------------------------------


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kms_cipher(tmp_path: Path, fake: FakeKms, **bounds: Any) -> EnvelopeCipher:
    """A cipher over Cloud KMS whose client is ``fake``; instances sharing ``fake`` share
    the KMS key, as instances of one deployment do."""
    return EnvelopeCipher(KmsKeyWrapper(kms_settings(tmp_path), client=fake), **bounds)


def data_key_id(sealed: dict[str, Any]) -> str:
    value: str = sealed[ENVELOPE]["data_key_id"]
    return value


def test_a_thousand_sealed_records_cost_one_kms_call(tmp_path: Path) -> None:
    fake = FakeKms()
    cipher = kms_cipher(tmp_path, fake)  # the defaults: 10,000 records, 300 s
    records = {f"audit.{n:06d}": cipher.seal(f"audit.{n:06d}", DOCUMENT) for n in range(1000)}
    assert fake.calls("encrypt") <= 1
    assert fake.calls("encrypt") == 1
    assert len({data_key_id(sealed) for sealed in records.values()}) == 1

    for record_id, sealed in records.items():  # the sealing instance needs no unwrap
        assert cipher.open(record_id, sealed) == DOCUMENT
    assert fake.calls("decrypt") == 0

    reader = kms_cipher(tmp_path, fake)  # another instance, e.g. a compliance scan
    for record_id, sealed in records.items():
        assert reader.open(record_id, sealed) == DOCUMENT
    assert fake.calls("decrypt") == 1
    assert fake.calls("encrypt") == 1


def test_the_record_bound_makes_a_new_data_key(tmp_path: Path) -> None:
    fake = FakeKms()
    cipher = kms_cipher(tmp_path, fake, max_records=3)
    ids = []
    for _ in range(7):
        ids.append(data_key_id(cipher.seal(RECORD, DOCUMENT)))
        cipher.seal(RECORD, {"company": "no sensitive field: no key used"})
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5] != ids[6]
    assert len(set(ids)) == 3
    assert fake.calls("encrypt") == 3


def test_one_record_per_data_key_is_one_kms_call_per_record(tmp_path: Path) -> None:
    fake = FakeKms()
    cipher = kms_cipher(tmp_path, fake, max_records=1)
    ids = {data_key_id(cipher.seal(f"rec-{n}", DOCUMENT)) for n in range(10)}
    assert len(ids) == 10
    assert fake.calls("encrypt") == 10


def test_the_age_bound_makes_a_new_data_key(tmp_path: Path) -> None:
    fake, clock = FakeKms(), Clock()
    cipher = kms_cipher(tmp_path, fake, max_age_s=300, clock=clock)
    first = data_key_id(cipher.seal(RECORD, DOCUMENT))
    clock.now += 299.9
    assert data_key_id(cipher.seal(RECORD, DOCUMENT)) == first
    clock.now += 0.1
    second = data_key_id(cipher.seal(RECORD, DOCUMENT))
    assert second != first
    assert fake.calls("encrypt") == 2
    clock.now += 299.9  # the age counts from the new key, not from the first
    assert data_key_id(cipher.seal(RECORD, DOCUMENT)) == second
    assert fake.calls("encrypt") == 2


def test_an_unwrapped_data_key_is_kept_for_the_same_age(tmp_path: Path) -> None:
    fake, clock = FakeKms(), Clock()
    sealed = kms_cipher(tmp_path, fake).seal(RECORD, DOCUMENT)
    reader = kms_cipher(tmp_path, fake, max_age_s=300, clock=clock)
    for _ in range(3):
        assert reader.open(RECORD, sealed) == DOCUMENT
    assert fake.calls("decrypt") == 1
    clock.now += 300
    assert reader.open(RECORD, sealed) == DOCUMENT
    assert fake.calls("decrypt") == 2


def test_opened_data_keys_are_bounded_in_number(tmp_path: Path) -> None:
    fake = FakeKms()
    sealer = kms_cipher(tmp_path, fake, max_records=1)
    records = [(f"rec-{n}", sealer.seal(f"rec-{n}", DOCUMENT)) for n in range(3)]
    reader = kms_cipher(tmp_path, fake, opened_keys=2)
    for _ in range(2):
        for record_id, sealed in records:
            assert reader.open(record_id, sealed) == DOCUMENT
    assert fake.calls("decrypt") == 6  # three keys through a cache of two, in a cycle


def test_a_failed_wrap_keeps_no_key_and_the_next_seal_retries(tmp_path: Path) -> None:
    fake = FakeKms(failures=[gexc.PermissionDenied("no cloudkms.cryptoKeyVersions.useToEncrypt")])
    cipher = kms_cipher(tmp_path, fake)
    with pytest.raises(UnavailableError):
        cipher.seal(RECORD, DOCUMENT)
    sealed = cipher.seal(RECORD, DOCUMENT)
    assert cipher.seal(RECORD, DOCUMENT)[ENVELOPE] == sealed[ENVELOPE]
    assert fake.calls("encrypt") == 2
    assert cipher.open(RECORD, sealed) == DOCUMENT


class GatedWrapper(KeyWrapper):
    """A key service whose wraps wait until ``release`` is set, then fail while ``fail``."""

    def __init__(self, inner: KeyWrapper) -> None:
        self.inner = inner
        self.key_id = inner.key_id
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = True
        self.calls = 0

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        self.calls += 1
        self.entered.set()
        self.release.wait(10)
        if self.fail:
            raise UnavailableError("Cloud KMS unreachable after 3 attempts: ServiceUnavailable")
        return self.inner.wrap(data_key, context=context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        return self.inner.unwrap(wrapped, context=context)


def test_seals_waiting_for_a_failed_wrap_fail_with_it(tmp_path: Path) -> None:
    """One wrap at a time, and a failed one fails its waiters too: a key-service outage
    costs each waiting request one timeout, not one per request queued ahead of it."""
    gate = GatedWrapper(local_wrapper(tmp_path))
    cipher = EnvelopeCipher(gate)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(cipher.seal, RECORD, DOCUMENT)
        assert gate.entered.wait(10)
        waiting = [pool.submit(cipher.seal, RECORD, DOCUMENT) for _ in range(3)]
        time.sleep(0.2)  # the three are now queued behind the wrap in progress
        gate.release.set()
        for future in [first, *waiting]:
            with pytest.raises(UnavailableError, match="ServiceUnavailable"):
                future.result(timeout=10)
    assert gate.calls == 1
    gate.fail = False
    sealed = cipher.seal(RECORD, DOCUMENT)
    assert gate.calls == 2
    assert cipher.open(RECORD, sealed) == DOCUMENT


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_process_seals_under_its_own_data_key(tmp_path: Path) -> None:
    fake = FakeKms()
    cipher = kms_cipher(tmp_path, fake)
    before = cipher.seal(RECORD, DOCUMENT)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: seal two records, send them back, leave at once
        status = 1
        try:
            os.close(read_fd)
            sealed = [cipher.seal(f"child-{n}", DOCUMENT) for n in range(2)]
            reply = {"sealed": sealed, "encrypts": fake.calls("encrypt")}
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(json.dumps(reply).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        reply = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_one, child_two = reply["sealed"]
    assert data_key_id(child_one) != data_key_id(before)  # not the parent's key
    assert data_key_id(child_one) == data_key_id(child_two)  # the child then reuses its own
    assert reply["encrypts"] == 2  # the parent's call, inherited, and the child's own
    assert data_key_id(cipher.seal(RECORD, DOCUMENT)) == data_key_id(before)
    assert fake.calls("encrypt") == 1
    assert cipher.open("child-0", child_one) == cipher.open("child-1", child_two) == DOCUMENT
    assert fake.calls("decrypt") == 1


def test_concurrent_seals_share_data_keys_within_the_bound(tmp_path: Path) -> None:
    fake = FakeKms()
    cipher = kms_cipher(tmp_path, fake, max_records=100)
    threads, per_thread = 8, 250
    start = threading.Barrier(threads)

    def work(thread: int) -> list[tuple[str, dict[str, Any]]]:
        start.wait()
        return [
            (f"t{thread}.{n}", cipher.seal(f"t{thread}.{n}", DOCUMENT)) for n in range(per_thread)
        ]

    with ThreadPoolExecutor(threads) as pool:
        sealed = [pair for chunk in pool.map(work, range(threads)) for pair in chunk]
    assert len(sealed) == threads * per_thread
    uses = Counter(data_key_id(document) for _, document in sealed)
    assert fake.calls("encrypt") == len(uses) == threads * per_thread // 100
    assert set(uses.values()) == {100}
    reader = kms_cipher(tmp_path, fake)
    for record_id, document in sealed:
        assert reader.open(record_id, document) == DOCUMENT
    assert fake.calls("decrypt") == len(uses)


def test_ciphertexts_moved_between_records_of_one_data_key_fail(cipher: EnvelopeCipher) -> None:
    mine = cipher.seal(RECORD, DOCUMENT)
    theirs = cipher.seal("ipo-2024-0043", {**DOCUMENT, "financial_data": {"auditor": "x"}})
    assert data_key_id(mine) == data_key_id(theirs)  # one key: only the AAD tells them apart
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.open(RECORD, {**mine, "financial_data": theirs["financial_data"]})
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.open(RECORD, theirs)
    with pytest.raises(IntegrityError, match="failed authentication"):
        cipher.open(RECORD, {**mine, "personal_info": mine["proprietary_metrics"]})


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_records": 0},
        {"max_records": 1.5},
        {"max_records": True},
        {"max_age_s": 0},
        {"max_age_s": -1},
        {"max_age_s": float("nan")},
        {"opened_keys": 0},
    ],
)
def test_bounds_are_checked(tmp_path: Path, bounds: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bounds))):
        EnvelopeCipher(local_wrapper(tmp_path), **bounds)


def test_services_seal_within_the_configured_bounds(tmp_path: Path) -> None:
    stack = embedded_stack(tmp_path, IPO_DATA_KEY_MAX_RECORDS="3", IPO_DATA_KEY_MAX_AGE_S="7.5")
    try:
        cipher = stack.services.cipher
        assert (cipher.max_records, cipher.max_age_s) == (3, 7.5)
        ids = [data_key_id(cipher.seal(f"rec-{n}", DOCUMENT)) for n in range(4)]
        assert len(set(ids[:3])) == 1
        assert ids[3] != ids[0]
    finally:
        stack.services.close()


# --- records sealed in the version 1 shape --------------------------------------------

V1_KEY_FILE = bytes.fromhex("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f")
V1_RECORD = "ipo-2023-0007"
V1_DOCUMENT: dict[str, Any] = {
    "company": "Acme Robotics",
    "financial_data": {"revenue": [101.5, 122.25], "auditor": "Zq7-very-private-figure"},
    "personal_info": {"founders": [{"name": "Ada Lovelace"}]},
    "proprietary_metrics": [1, "two", None],
}
V1_SEALED: dict[str, Any] = {
    "company": "Acme Robotics",
    "financial_data": {
        "nonce": "7cEfHnOQuD6BBqfk",
        "ciphertext": "+SogMiaKeZNf93/zniJG4gF/9E1dhn1HugBqoerv5UZTQk/ry5/BWn1NzkMsjV0PuWSmy/G2i"
        "S/3Jyhc/extmYqV/or964f56tTnAGBy",
    },
    "personal_info": {
        "nonce": "CNCCY4rKo/dqnO+X",
        "ciphertext": "GO6yRnOWXJoM4cGWsIHt2R/8lrGswDhXJhz5N1qKu2TRk65HLS9ww13qiUzKGHpYPgwJKZX2",
    },
    "proprietary_metrics": {
        "nonce": "l88vw/3bUDKKSYPC",
        "ciphertext": "nZHlfqhewm3FEEbykgnWwqb3behQwVIi34oEFBo6",
    },
    "envelope": {
        "alg": "AES-256-GCM",
        "key_id": "local:ca2a4fe727faaecf",
        "wrapped_key": "AS++0lKZf1/oA6//iYVdYRE1eckRzWoTjlXX/Th964tXxefSbeLk1gHYNil6UArm57bcuVlp"
        "xV66ckx7MQ==",
        "fields": ["financial_data", "personal_info", "proprietary_metrics"],
    },
}
"""A record as the version 1 code stored it, under the local key file ``V1_KEY_FILE``."""


def v1_wrapper(tmp_path: Path) -> LocalKeyWrapper:
    path = tmp_path / "v1.key"
    path.write_bytes(V1_KEY_FILE)
    path.chmod(0o600)
    return LocalKeyWrapper(path)


def test_a_stored_version_1_record_still_opens(tmp_path: Path) -> None:
    cipher = EnvelopeCipher(v1_wrapper(tmp_path))
    assert cipher.open(V1_RECORD, copy.deepcopy(V1_SEALED)) == V1_DOCUMENT
    with pytest.raises(IntegrityError, match="failed authentication"):  # bound to its id
        cipher.open("ipo-2023-0008", copy.deepcopy(V1_SEALED))


V1_MANGLES: dict[str, Callable[[dict[str, Any]], object]] = {
    "version": lambda d: d[ENVELOPE].update({"version": 1}),
    "data-key-id": lambda d: d[ENVELOPE].update({"data_key_id": "ab" * 16}),
    "extra": lambda d: d[ENVELOPE].update({"note": "x"}),
    "key-id-empty": lambda d: d[ENVELOPE].update({"key_id": ""}),
    "wrapped-key": lambda d: d[ENVELOPE].update({"wrapped_key": _flip(d[ENVELOPE]["wrapped_key"])}),
    "field-moved": lambda d: d.update({"personal_info": d["financial_data"]}),
}


@pytest.mark.parametrize("mangle", list(V1_MANGLES))
def test_an_altered_version_1_record_fails(tmp_path: Path, mangle: str) -> None:
    sealed = copy.deepcopy(V1_SEALED)
    V1_MANGLES[mangle](sealed)
    with pytest.raises(IntegrityError):
        EnvelopeCipher(v1_wrapper(tmp_path)).open(V1_RECORD, sealed)


def seal_v1(wrapper: KeyWrapper, record_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """Seal as the version 1 code did: a data key per record, wrapped under its id."""
    data_key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(data_key)
    fields = sorted(name for name in SENSITIVE_FIELDS if name in document)
    sealed = dict(document)
    for name in fields:
        nonce = os.urandom(12)
        plaintext = json.dumps(document[name], separators=(",", ":"), sort_keys=True).encode()
        aad = f"ipo-envelope:v1|{record_id}|{name}".encode()
        sealed[name] = {
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(aead.encrypt(nonce, plaintext, aad)).decode(),
        }
    wrapped = wrapper.wrap(data_key, context=f"ipo-record:v1|{record_id}".encode())
    sealed[ENVELOPE] = {
        "alg": "AES-256-GCM",
        "key_id": wrapper.key_id,
        "wrapped_key": base64.b64encode(wrapped).decode(),
        "fields": fields,
    }
    return sealed


def test_version_1_records_open_beside_version_2_ones(tmp_path: Path) -> None:
    fake = FakeKms()
    wrapper = KmsKeyWrapper(kms_settings(tmp_path), client=fake)
    old = seal_v1(wrapper, "rec-old", DOCUMENT)
    cipher = EnvelopeCipher(wrapper)
    new = cipher.seal("rec-new", DOCUMENT)
    assert cipher.open("rec-old", old) == cipher.open("rec-new", new) == DOCUMENT
    assert cipher.open("rec-old", old) == DOCUMENT
    assert fake.calls("decrypt") == 2  # a version 1 key serves one record: never cached
    with pytest.raises(IntegrityError):
        cipher.open("rec-new", old)
    with pytest.raises(IntegrityError):
        cipher.open("rec-old", {**old, "financial_data": new["financial_data"]})
