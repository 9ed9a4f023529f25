"""Service fixtures (one emulator per session) and one store per test on every backend.

Each Firestore test gets its own project id on the shared emulator, and each GCS test its
own bucket, so tests never see each other's data and need no clean-up calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.backends.base import ArtifactStore, DocumentStore
from tests.support.services import (
    FakeGCS,
    FirestoreEmulator,
    create_bucket,
    firestore_settings,
    gcs_settings,
)


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.firestore)])
def document_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocumentStore]:
    store: DocumentStore
    if request.param == "sqlite":
        from common.backends.sqlite_store import SQLiteDocumentStore

        store = SQLiteDocumentStore(tmp_path / "db" / "store.sqlite3", timeout_s=5)
    else:
        from common.backends.firestore_store import FirestoreDocumentStore

        emulator: FirestoreEmulator = request.getfixturevalue("firestore_emulator")
        store = FirestoreDocumentStore(firestore_settings(emulator.host))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs)])
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        from common.backends.local_artifacts import LocalArtifactStore

        return LocalArtifactStore(tmp_path / "artifacts")
    from common.backends.gcs_artifacts import GCSArtifactStore

    server: FakeGCS = request.getfixturevalue("fake_gcs")
    return GCSArtifactStore(gcs_settings(server.url, create_bucket(server.url)))
