"""The one seam to the outside world: stores, artifacts, secrets, key wrapping.

Nothing outside this package imports a Google Cloud client. ``build_backends`` picks each
implementation from Settings and imports it only when chosen, so a function that runs on
the embedded default never pays for the cloud clients' import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.backends.base import (
    ArtifactInfo,
    ArtifactStore,
    Document,
    DocumentStore,
    Filter,
    KeyWrapper,
    Order,
    SecretSource,
    Transaction,
)
from common.core.config import Settings

__all__ = [
    "ArtifactInfo",
    "ArtifactStore",
    "Backends",
    "Document",
    "DocumentStore",
    "Filter",
    "KeyWrapper",
    "Order",
    "SecretSource",
    "Transaction",
    "build_artifact_store",
    "build_backends",
    "build_document_store",
    "build_key_wrapper",
    "build_secret_source",
]


@dataclass(frozen=True)
class Backends:
    documents: DocumentStore
    artifacts: ArtifactStore
    secrets: SecretSource
    keys: KeyWrapper

    def close(self) -> None:
        self.documents.close()


def build_document_store(settings: Settings) -> DocumentStore:
    if settings.document_store == "firestore":
        from common.backends.firestore_store import FirestoreDocumentStore

        return FirestoreDocumentStore(settings)
    from common.backends.local_files import secure_data_dir
    from common.backends.sqlite_store import SQLiteDocumentStore

    secure_data_dir(settings.data_dir, settings.resolved_sqlite_path)
    return SQLiteDocumentStore(
        settings.resolved_sqlite_path,
        timeout_s=settings.backend_timeout_s,
        checkpoints=settings.sqlite_checkpoints,
    )


def build_artifact_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "gcs":
        from common.backends.gcs_artifacts import GCSArtifactStore

        return GCSArtifactStore(settings)
    from common.backends.local_artifacts import LocalArtifactStore
    from common.backends.local_files import secure_data_dir

    secure_data_dir(settings.data_dir, settings.resolved_artifact_dir)
    return LocalArtifactStore(settings.resolved_artifact_dir)


def build_secret_source(settings: Settings) -> SecretSource:
    if settings.secret_source == "secret-manager":  # noqa: S105 - a backend name
        from common.backends.secret_manager import SecretManagerSource

        return SecretManagerSource(settings)
    from common.backends.env_secrets import EnvSecretSource

    return EnvSecretSource(env_file=settings.env_file)


def build_key_wrapper(settings: Settings) -> KeyWrapper:
    if settings.key_wrapper == "kms":
        from common.backends.kms_keys import KmsKeyWrapper

        return KmsKeyWrapper(settings)
    from common.backends.local_files import secure_data_dir
    from common.backends.local_keys import LocalKeyWrapper

    secure_data_dir(settings.data_dir, settings.resolved_key_file)
    return LocalKeyWrapper(settings.resolved_key_file)


def build_backends(settings: Settings) -> Backends:
    return Backends(
        documents=build_document_store(settings),
        artifacts=build_artifact_store(settings),
        secrets=build_secret_source(settings),
        keys=build_key_wrapper(settings),
    )
