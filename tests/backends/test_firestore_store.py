"""What only the Firestore store promises: revisions are update times, the emulator is
reached without touching the environment, and an unreachable server fails fast."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from common.backends.firestore_store import FirestoreDocumentStore
from common.config import Settings
from common.errors import PreconditionFailedError, UnavailableError
from tests.services import (
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
    from tests.services import _group_alive

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
