"""The factory picks each implementation from Settings and builds it without I/O."""

from __future__ import annotations

from pathlib import Path

from common.backends import build_backends
from common.backends.env_secrets import EnvSecretSource
from common.backends.firestore_store import FirestoreDocumentStore
from common.backends.gcs_artifacts import GCSArtifactStore
from common.backends.local_artifacts import LocalArtifactStore
from common.backends.secret_manager import SecretManagerSource
from common.backends.sqlite_store import SQLiteDocumentStore
from common.core.config import Settings


def test_embedded_defaults(settings: Settings, tmp_path: Path) -> None:
    backends = build_backends(settings)
    try:
        assert isinstance(backends.documents, SQLiteDocumentStore)
        assert isinstance(backends.artifacts, LocalArtifactStore)
        assert isinstance(backends.secrets, EnvSecretSource)
        backends.documents.set("c", "x", {"v": 1})
        assert (tmp_path / "data" / "ipo.sqlite3").is_file()
        info = backends.artifacts.put("k", b"x")
        assert info.uri == (tmp_path / "data" / "artifacts" / "k").as_uri()
    finally:
        backends.close()


def test_cloud_backends_are_built_lazily() -> None:
    """No credentials, no network: the clients are only made on first use."""
    settings = Settings(
        document_store="firestore",
        artifact_store="gcs",
        secret_source="secret-manager",
        gcp_project="p",
        artifact_bucket="b",
    )
    backends = build_backends(settings)
    assert isinstance(backends.documents, FirestoreDocumentStore)
    assert isinstance(backends.artifacts, GCSArtifactStore)
    assert isinstance(backends.secrets, SecretManagerSource)
    assert backends.artifacts.uri("m/1") == "gs://b/m/1"
    backends.close()
