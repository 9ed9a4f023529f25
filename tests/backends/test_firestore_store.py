"""What only the Firestore store promises: revisions are update times, the emulator is
reached without touching the environment, an unreachable server fails fast, and
``expire_at`` is held as a Timestamp a TTL policy can act on."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from common.backends.base import EXPIRE_AT, Transaction
from common.backends.firestore_store import FirestoreDocumentStore
from common.core.config import Settings
from common.core.errors import PreconditionFailedError, UnavailableError
from tests.support.services import (
    FirestoreEmulator,
    closed_port,
    find_firestore_emulator,
    firestore_settings,
)

pytestmark = pytest.mark.firestore

RFC3339_NANOS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture
def store(firestore_emulator: FirestoreEmulator) -> FirestoreDocumentStore:
    return FirestoreDocumentStore(firestore_settings(firestore_emulator.host))


def test_revision_is_the_update_time_with_nanoseconds(store: FirestoreDocumentStore) -> None:
    created = store.create("c", "x", {"v": 1})
    assert RFC3339_NANOS.match(created.revision)
    updated = store.update("c", "x", {"v": 2}, if_revision=created.revision)
    assert updated.revision > created.revision  # RFC 3339 in UTC sorts as text


def test_set_many_is_one_commit_where_a_transaction_is_two_round_trips(
    store: FirestoreDocumentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = store._get_client()._firestore_api
    calls: list[str] = []

    def counting(name: str) -> Any:
        real = getattr(api, name)

        def counted(*args: Any, **kw: Any) -> Any:
            calls.append(name)
            return real(*args, **kw)

        return counted

    for name in ("begin_transaction", "commit"):
        monkeypatch.setattr(api, name, counting(name))
    store.set_many([("c", "a", {"v": 1}), ("c", "b", {"v": 2}), ("d", "head", {"last": 2})])
    assert calls == ["commit"]

    def write(txn: Transaction) -> None:
        txn.set("c", "a", {"v": 3})

    store.transaction(write)
    assert calls == ["commit", "begin_transaction", "commit"]
    assert [doc.data for doc in store.query("c")] == [{"v": 3}, {"v": 2}]


def test_expire_at_is_stored_as_a_timestamp_on_every_write_path(
    firestore_emulator: FirestoreEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read back with the plain client: what the TTL policy sees is a Timestamp."""
    settings = firestore_settings(firestore_emulator.host)
    store = FirestoreDocumentStore(settings)
    moment = "2031-05-06T07:08:09.101112Z"
    expected = datetime(2031, 5, 6, 7, 8, 9, 101112, tzinfo=UTC)
    store.create("c", "created", {"v": 1, EXPIRE_AT: moment})
    store.set("c", "set", {"v": 1, EXPIRE_AT: moment})
    store.create("c", "updated", {"v": 1})
    store.update("c", "updated", {EXPIRE_AT: moment})
    store.create("c", "txn-updated", {"v": 1})

    def write(txn: Transaction) -> None:
        txn.create("c", "txn-created", {"v": 1, EXPIRE_AT: moment})
        txn.set("c", "txn-set", {"v": 1, EXPIRE_AT: moment})
        txn.update("c", "txn-updated", {EXPIRE_AT: moment})

    store.transaction(write)
    store.close()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    raw = firestore.Client(
        project=settings.gcp_project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]  # untyped upstream
    )
    try:
        held = {snap.id: snap.to_dict() for snap in raw.collection("c").stream()}
    finally:
        raw.close()  # type: ignore[no-untyped-call]  # untyped upstream
    assert sorted(held) == ["created", "set", "txn-created", "txn-set", "txn-updated", "updated"]
    for doc_id, data in held.items():
        assert data is not None
        assert isinstance(data[EXPIRE_AT], datetime), doc_id
        assert data[EXPIRE_AT] == expected, doc_id


def test_emulator_is_reached_without_the_environment_variable(
    store: FirestoreDocumentStore,
) -> None:
    """A decoy variable pointing nowhere is ignored: the setting decides."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{closed_port()}"
    store.set("c", "x", {"v": 1})
    assert store.get("c", "x") is not None


def test_store_does_not_set_the_environment_variable(store: FirestoreDocumentStore) -> None:
    os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    store.set("c", "x", {"v": 1})
    assert "FIRESTORE_EMULATOR_HOST" not in os.environ


def test_unparseable_revision_is_a_failed_precondition(store: FirestoreDocumentStore) -> None:
    store.create("c", "x", {"v": 1})
    with pytest.raises(PreconditionFailedError):
        store.update("c", "x", {"v": 2}, if_revision="not-a-time")
    with pytest.raises(PreconditionFailedError):
        store.delete("c", "x", if_revision="2999-01-01T00:00:00.000000000Z")


def test_project_is_required() -> None:
    settings = Settings.from_environ({"IPO_FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"})
    with pytest.raises(ValueError, match="IPO_GCP_PROJECT"):
        FirestoreDocumentStore(settings)


def test_unreachable_emulator_fails_fast_as_unavailable() -> None:
    """Nothing listens on the port: every call gives 503 within its one-second budget."""
    settings = firestore_settings(f"127.0.0.1:{closed_port()}", IPO_BACKEND_TIMEOUT_S="1")
    store = FirestoreDocumentStore(settings)
    calls = {
        "get": lambda: store.get("c", "x"),
        "create": lambda: store.create("c", "x", {"v": 1}),
        "query": lambda: store.query("c"),
        "transaction": lambda: store.transaction(lambda txn: txn.get("c", "x")),
    }
    try:
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="Firestore unavailable") as info:
                call()
            elapsed = time.monotonic() - started
            assert elapsed < 5, f"{name} took {elapsed:.1f}s to give up"
            assert info.value.status == 503
    finally:
        store.close()


def test_emulator_stop_leaves_no_process(tmp_path: Path) -> None:
    """The emulator's JVM is a child of its launcher script; stopping kills the group."""
    from tests.support.services import _group_alive

    script, reason = find_firestore_emulator()
    if script is None:
        pytest.skip(reason)
    emulator = FirestoreEmulator(script, tmp_path / "emulator.log")
    emulator.start()
    assert emulator.process is not None
    pgid = emulator.process.pid
    assert _group_alive(pgid)
    emulator.stop()
    assert not _group_alive(pgid)
